package gateway

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// A 2026-07-28 agent that asks for logs in the _meta of a resources/read
// or prompts/get gets what the upstream logged while serving it, on /mcp
// and on the server's endpoint, from upstreams of both eras; without
// asking it gets none.
func TestLogsOfReadsAndPrompts(t *testing.T) {
	for _, era := range []struct {
		name      string
		stateless bool
	}{{"2026-07-28 upstream", true}, {"2025-11-25 upstream", false}} {
		t.Run(era.name, func(t *testing.T) {
			s := mcp.NewServer(&mcp.Implementation{Name: "logging", Version: "1"}, nil)
			s.AddResource(&mcp.Resource{URI: "file:///a", Name: "a"}, func(ctx context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
				req.Session.Log(ctx, &mcp.LoggingMessageParams{Level: "info", Data: "read " + req.Params.URI})
				return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: req.Params.URI, Text: "x"}}}, nil
			})
			s.AddPrompt(&mcp.Prompt{Name: "greet"}, func(ctx context.Context, req *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
				req.Session.Log(ctx, &mcp.LoggingMessageParams{Level: "info", Data: "got " + req.Params.Name})
				return &mcp.GetPromptResult{Messages: []*mcp.PromptMessage{{Role: "user", Content: &mcp.TextContent{Text: "hi"}}}}, nil
			})
			s.AddTool(&mcp.Tool{Name: "lookup", InputSchema: map[string]any{"type": "object"}}, func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				return &mcp.CallToolResult{}, nil
			})
			up := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{Stateless: era.stateless}))
			t.Cleanup(up.Close)
			r := newRegistry(t)
			r.register("corp.hr/logging", "1.0.0", up.URL, lookupTool, true)
			_, srv := newGateway(t, r)

			var mu sync.Mutex
			var got []string
			connect := func(path string) *mcp.ClientSession {
				c := mcp.NewClient(&mcp.Implementation{Name: "agent", Version: "1"}, &mcp.ClientOptions{
					LoggingMessageHandler: func(_ context.Context, req *mcp.LoggingMessageRequest) {
						mu.Lock()
						got = append(got, fmt.Sprint(req.Params.Data))
						mu.Unlock()
					},
				})
				hc := &http.Client{Transport: headerTransport{http.Header{"Authorization": {"Bearer " + testKey}}}}
				cs, err := c.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: srv.URL + path, HTTPClient: hc}, &mcp.ClientSessionOptions{ProtocolVersion: "2026-07-28"})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { cs.Close() })
				return cs
			}
			agg, own := connect("/mcp"), connect("/mcp/s/hr/corp.hr/logging")
			take := func() []string {
				// The logs came before the result: nothing to wait for.
				mu.Lock()
				defer mu.Unlock()
				out := got
				got = nil
				return out
			}
			asking := mcp.Meta{mcp.MetaKeyLogLevel: "info"}
			for _, step := range []struct {
				name string
				do   func(meta mcp.Meta) error
				want string
			}{
				{"resources/read on /mcp", func(meta mcp.Meta) error {
					_, err := agg.ReadResource(t.Context(), &mcp.ReadResourceParams{URI: "mcpmesh://hr/corp.hr%2Flogging/file:///a", Meta: meta})
					return err
				}, "read file:///a"},
				{"prompts/get on /mcp", func(meta mcp.Meta) error {
					_, err := agg.GetPrompt(t.Context(), &mcp.GetPromptParams{Name: "hr.greet", Meta: meta})
					return err
				}, "got greet"},
				{"resources/read on the server's endpoint", func(meta mcp.Meta) error {
					_, err := own.ReadResource(t.Context(), &mcp.ReadResourceParams{URI: "file:///a", Meta: meta})
					return err
				}, "read file:///a"},
				{"prompts/get on the server's endpoint", func(meta mcp.Meta) error {
					_, err := own.GetPrompt(t.Context(), &mcp.GetPromptParams{Name: "greet", Meta: meta})
					return err
				}, "got greet"},
			} {
				if err := step.do(nil); err != nil {
					t.Fatalf("%s: %v", step.name, err)
				}
				if logs := take(); len(logs) != 0 {
					t.Errorf("%s without asking got logs %q", step.name, logs)
				}
				if err := step.do(asking); err != nil {
					t.Fatalf("%s: %v", step.name, err)
				}
				if logs := take(); !slices.Equal(logs, []string{step.want}) {
					t.Errorf("%s asking for info got logs %q; want [%q]", step.name, logs, step.want)
				}
			}
		})
	}
}
