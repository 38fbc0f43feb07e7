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
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// talkbackUpstream is a stateful (legacy-era) server whose tools talk back
// to the client on the caller's session: "ask" elicits a name, "sample"
// asks for a sampling, "roots" lists the client's roots and "chatty" logs
// a message naming its argument. It serves test://x and test://y, which can
// be subscribed to; update tells the subscribers that uri changed.
func talkbackUpstream(t *testing.T) (url string, update func(uri string)) {
	t.Helper()
	s := mcp.NewServer(&mcp.Implementation{Name: "talkback", Version: "1"}, &mcp.ServerOptions{
		SubscribeHandler:   func(context.Context, *mcp.SubscribeRequest) error { return nil },
		UnsubscribeHandler: func(context.Context, *mcp.UnsubscribeRequest) error { return nil },
	})
	text := func(s string) *mcp.CallToolResult {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: s}}}
	}
	obj := json.RawMessage(`{"type":"object","properties":{"who":{"type":"string"}}}`)
	s.AddTool(&mcp.Tool{Name: "ask", InputSchema: obj}, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		res, err := req.Session.Elicit(ctx, &mcp.ElicitParams{Message: "Your name?", RequestedSchema: map[string]any{
			"type": "object", "properties": map[string]any{"name": map[string]any{"type": "string"}}}})
		if err != nil {
			return nil, err
		}
		return text(fmt.Sprintf("hello %v", res.Content["name"])), nil
	})
	s.AddTool(&mcp.Tool{Name: "sample", InputSchema: obj}, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		res, err := req.Session.CreateMessage(ctx, &mcp.CreateMessageParams{MaxTokens: 10,
			Messages: []*mcp.SamplingMessage{{Role: "user", Content: &mcp.TextContent{Text: "say hi"}}}})
		if err != nil {
			return nil, err
		}
		return text("model said " + res.Content.(*mcp.TextContent).Text), nil
	})
	s.AddTool(&mcp.Tool{Name: "roots", InputSchema: obj}, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		res, err := req.Session.ListRoots(ctx, nil)
		if err != nil {
			return nil, err
		}
		var uris []string
		for _, r := range res.Roots {
			uris = append(uris, r.URI)
		}
		return text(strings.Join(uris, ",")), nil
	})
	s.AddTool(&mcp.Tool{Name: "chatty", InputSchema: obj}, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		var args struct{ Who string }
		json.Unmarshal(req.Params.Arguments, &args)
		req.Session.Log(ctx, &mcp.LoggingMessageParams{Level: "info", Logger: "chatty", Data: "secret of " + args.Who})
		return text("logged"), nil
	})
	for _, uri := range []string{"test://x", "test://y"} {
		s.AddResource(&mcp.Resource{URI: uri, Name: uri}, func(context.Context, *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
			return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: uri, Text: "v"}}}, nil
		})
	}
	srv := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil))
	t.Cleanup(srv.Close)
	return srv.URL, func(uri string) {
		if err := s.ResourceUpdated(context.Background(), &mcp.ResourceUpdatedNotificationParams{URI: uri}); err != nil {
			t.Errorf("upstream ResourceUpdated: %v", err)
		}
	}
}

const talkbackTools = `{"name":"ask","inputSchema":{"type":"object","properties":{"who":{"type":"string"}}}},
	{"name":"sample","inputSchema":{"type":"object","properties":{"who":{"type":"string"}}}},
	{"name":"roots","inputSchema":{"type":"object","properties":{"who":{"type":"string"}}}},
	{"name":"chatty","inputSchema":{"type":"object","properties":{"who":{"type":"string"}}}}`

// legacyAgent is an agent on a 2025-11-25 session that answers as name and
// records what reached it.
type legacyAgent struct {
	name    string
	session *mcp.ClientSession
	mu      sync.Mutex
	logs    []string
	updates []string
}

func (a *legacyAgent) seen() (logs, updates []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.logs), slices.Clone(a.updates)
}

func newLegacyAgent(t *testing.T, url, name string) *legacyAgent {
	t.Helper()
	a := &legacyAgent{name: name}
	c := mcp.NewClient(&mcp.Implementation{Name: "agent-" + name, Version: "1"}, &mcp.ClientOptions{
		ElicitationHandler: func(context.Context, *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"name": name}}, nil
		},
		CreateMessageHandler: func(context.Context, *mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
			return &mcp.CreateMessageResult{Model: "m", Role: "assistant", Content: &mcp.TextContent{Text: "hi from " + name}}, nil
		},
		LoggingMessageHandler: func(_ context.Context, req *mcp.LoggingMessageRequest) {
			a.mu.Lock()
			a.logs = append(a.logs, fmt.Sprint(req.Params.Data))
			a.mu.Unlock()
		},
		ResourceUpdatedHandler: func(_ context.Context, req *mcp.ResourceUpdatedNotificationRequest) {
			a.mu.Lock()
			a.updates = append(a.updates, req.Params.URI)
			a.mu.Unlock()
		},
	})
	c.AddRoots(&mcp.Root{URI: "file:///home/" + name})
	s, err := c.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: url}, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	if err != nil {
		t.Fatalf("connect %s: %v", name, err)
	}
	t.Cleanup(func() { s.Close() })
	a.session = s
	return a
}

func (a *legacyAgent) call(t *testing.T, tool string) string {
	t.Helper()
	res, err := a.session.CallTool(t.Context(), &mcp.CallToolParams{Name: tool, Arguments: map[string]any{"who": a.name}})
	if err != nil {
		t.Fatalf("%s calls %s: %v", a.name, tool, err)
	}
	if res.IsError {
		t.Fatalf("%s calls %s: tool error %v", a.name, tool, res.Content)
	}
	return res.Content[0].(*mcp.TextContent).Text
}

// waitFor polls cond for up to 10s and fails with what it last saw.
func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		var ok bool
		if ok, last = cond(); ok {
			return
		}
	}
	t.Fatalf("timed out waiting for %s; last saw %s", what, last)
}

// Legacy agents get their own upstream sessions: what an upstream asks or
// tells on them reaches the agent that called, and no other.
func TestLegacyAgentsTalkBackThroughTheirOwnSessions(t *testing.T) {
	r := newRegistry(t)
	url, update := talkbackUpstream(t)
	r.register("corp.hr/talkback", "1.0.0", url, talkbackTools, true)
	g, srv := newGateway(t, r)
	for _, path := range []string{"/mcp/s/hr/corp.hr/talkback", "/mcp"} {
		t.Run(path, func(t *testing.T) {
			prefix := ""
			if path == "/mcp" {
				prefix = "hr."
			}
			ada, bob := newLegacyAgent(t, srv.URL+path, "ada"), newLegacyAgent(t, srv.URL+path, "bob")
			var wg sync.WaitGroup
			got := map[string]string{}
			var mu sync.Mutex
			for _, a := range []*legacyAgent{ada, bob} {
				for _, tool := range []string{"ask", "sample", "roots"} {
					wg.Go(func() {
						out := a.call(t, prefix+tool)
						mu.Lock()
						got[a.name+" "+tool] = out
						mu.Unlock()
					})
				}
			}
			wg.Wait()
			want := map[string]string{
				"ada ask": "hello ada", "ada sample": "model said hi from ada", "ada roots": "file:///home/ada",
				"bob ask": "hello bob", "bob sample": "model said hi from bob", "bob roots": "file:///home/bob",
			}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}

			// Logging: only after the agent sets a level, and only its own.
			ada.call(t, prefix+"chatty")
			for _, a := range []*legacyAgent{ada, bob} {
				if err := a.session.SetLoggingLevel(t.Context(), &mcp.SetLoggingLevelParams{Level: "info"}); err != nil {
					t.Fatal(err)
				}
			}
			ada.call(t, prefix+"chatty")
			bob.call(t, prefix+"chatty")
			for _, a := range []*legacyAgent{ada, bob} {
				waitFor(t, a.name+"'s log", func() (bool, string) {
					logs, _ := a.seen()
					return len(logs) > 0, fmt.Sprint(logs)
				})
				if logs, _ := a.seen(); !slices.Equal(logs, []string{"secret of " + a.name}) {
					t.Errorf("%s received logs %q, want only its own call's (and none from before it set a level)", a.name, logs)
				}
			}
		})
	}

	// Resource updates reach the subscriber once, and nobody else.
	path := srv.URL + "/mcp/s/hr/corp.hr/talkback"
	ada, bob, cyd := newLegacyAgent(t, path, "ada"), newLegacyAgent(t, path, "bob"), newLegacyAgent(t, path, "cyd")
	for _, a := range []*legacyAgent{ada, bob} {
		if err := a.session.Subscribe(t.Context(), &mcp.SubscribeParams{URI: "test://x"}); err != nil {
			t.Fatalf("%s subscribes: %v", a.name, err)
		}
	}
	for _, a := range []*legacyAgent{ada, bob, cyd} {
		if err := a.session.Subscribe(t.Context(), &mcp.SubscribeParams{URI: "test://y"}); err != nil {
			t.Fatalf("%s subscribes: %v", a.name, err)
		}
	}
	update("test://x")
	update("test://y")
	for _, a := range []*legacyAgent{ada, bob, cyd} {
		waitFor(t, a.name+"'s update of test://y", func() (bool, string) {
			_, updates := a.seen()
			return slices.Contains(updates, "test://y"), fmt.Sprint(updates)
		})
	}
	for _, a := range []*legacyAgent{ada, bob, cyd} {
		_, updates := a.seen()
		want := 1
		if a == cyd {
			want = 0
		}
		if n := countOf(updates, "test://x"); n != want {
			t.Errorf("%s got %d updates of test://x (%v), want %d", a.name, n, updates, want)
		}
	}
	if err := ada.session.Unsubscribe(t.Context(), &mcp.UnsubscribeParams{URI: "test://x"}); err != nil {
		t.Errorf("unsubscribe: %v", err)
	}

	// An agent's upstream sessions end with its session.
	ada.session.Close()
	waitFor(t, "ada's link to be dropped", func() (bool, string) {
		n := 0
		g.links.Range(func(any, any) bool { n++; return true })
		return n == 2, fmt.Sprintf("%d links", n) // bob and cyd; the subtests' agents closed at their end
	})
}

func countOf(xs []string, x string) int {
	n := 0
	for _, v := range xs {
		if v == x {
			n++
		}
	}
	return n
}

// Closing the gateway ends legacy agents' sessions and their own upstream
// sessions, and does not wait for the agents to leave.
func TestCloseEndsLegacyAgentsSessions(t *testing.T) {
	r := newRegistry(t)
	url, _ := talkbackUpstream(t)
	r.register("corp.hr/talkback", "1.0.0", url, talkbackTools, true)
	g, srv := newGateway(t, r)
	ada := newLegacyAgent(t, srv.URL+"/mcp/s/hr/corp.hr/talkback", "ada")
	if got := ada.call(t, "ask"); got != "hello ada" {
		t.Fatalf("ask = %q", got)
	}
	closed := make(chan error, 1)
	go func() { closed <- g.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Gateway.Close did not return within 10s with a legacy agent connected")
	}
	n := 0
	g.links.Range(func(any, any) bool { n++; return true })
	if n != 0 {
		t.Errorf("%d agent links left after Close", n)
	}
}
