package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

const chattyTool = `{"name":"chatty","inputSchema":{"type":"object","properties":{"q":{"type":"string"}}}}`

// chattyUpstream serves a tool that logs "<level> <q>" at debug, info and
// warning while it serves a call; stateless or stateful (legacy era).
func chattyUpstream(t *testing.T, stateless bool) string {
	t.Helper()
	s := mcp.NewServer(&mcp.Implementation{Name: "chatty", Version: "1"}, nil)
	s.AddTool(&mcp.Tool{Name: "chatty", InputSchema: json.RawMessage(`{"type":"object","properties":{"q":{"type":"string"}}}`)}, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		var args struct{ Q string }
		json.Unmarshal(req.Params.Arguments, &args)
		for _, l := range []mcp.LoggingLevel{"debug", "info", "warning"} {
			req.Session.Log(ctx, &mcp.LoggingMessageParams{Level: l, Logger: "chatty", Data: fmt.Sprintf("%s %s", l, args.Q)})
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "said " + args.Q}}}, nil
	})
	srv := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{Stateless: stateless}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// A 2026-07-28 agent that asks for log messages in a call's _meta gets
// the ones its upstream logged while serving that call, at its level and
// above, before the result; an agent that asks for none gets none, and no
// agent gets another's.
func TestModernAgentGetsTheLogsOfItsCall(t *testing.T) {
	for _, upstreamEra := range []struct {
		name      string
		stateless bool
	}{{"2026-07-28 upstream", true}, {"legacy upstream", false}} {
		t.Run(upstreamEra.name, func(t *testing.T) {
			r := newRegistry(t)
			r.register("corp.hr/chatty", "1.0.0", chattyUpstream(t, upstreamEra.stateless), chattyTool, true)
			_, srv := newGateway(t, r)
			type agent struct {
				level mcp.LoggingLevel
				mu    sync.Mutex
				got   []string
				s     *mcp.ClientSession
			}
			agents := []*agent{{level: "info"}, {level: "warning"}, {}}
			for _, a := range agents {
				c := mcp.NewClient(&mcp.Implementation{Name: "agent", Version: "1"}, &mcp.ClientOptions{
					LoggingMessageHandler: func(_ context.Context, req *mcp.LoggingMessageRequest) {
						a.mu.Lock()
						a.got = append(a.got, fmt.Sprint(req.Params.Data))
						a.mu.Unlock()
					},
				})
				hc := &http.Client{Transport: headerTransport{http.Header{"Authorization": {"Bearer " + testKey}}}}
				s, err := c.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: srv.URL + "/mcp", HTTPClient: hc}, &mcp.ClientSessionOptions{ProtocolVersion: "2026-07-28"})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				a.s = s
			}
			var wg sync.WaitGroup
			for i, a := range agents {
				for j := range 5 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						params := &mcp.CallToolParams{Name: "hr.chatty", Arguments: map[string]any{"q": fmt.Sprintf("a%d-%d", i, j)}}
						if a.level != "" {
							params.Meta = mcp.Meta{mcp.MetaKeyLogLevel: string(a.level)}
						}
						if _, err := a.s.CallTool(t.Context(), params); err != nil {
							t.Error(err)
						}
					}()
				}
			}
			wg.Wait()
			want := func(i int, levels ...string) []string {
				var out []string
				for j := range 5 {
					for _, l := range levels {
						out = append(out, fmt.Sprintf("%s a%d-%d", l, i, j))
					}
				}
				slices.Sort(out)
				return out
			}
			wants := [][]string{want(0, "info", "warning"), want(1, "warning"), nil}
			waitFor(t, "every agent's logs", func() (bool, string) {
				var seen []string
				ok := true
				for i, a := range agents {
					a.mu.Lock()
					got := slices.Clone(a.got)
					a.mu.Unlock()
					slices.Sort(got)
					ok = ok && slices.Equal(got, wants[i])
					seen = append(seen, fmt.Sprintf("agent %d (%q): %s", i, a.level, strings.Join(got, ",")))
				}
				return ok, strings.Join(seen, "; ")
			})
		})
	}
}
