package gateway

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpmesh/mcpmesh/registry/state"
)

// listUpstream serves a prompt, a resource and the lookup tool, and returns
// its server, whose prompts and resources the test changes.
func listUpstream(t *testing.T, stateless bool) (string, *mcp.Server) {
	t.Helper()
	s := mcp.NewServer(&mcp.Implementation{Name: "lists", Version: "1"}, nil)
	s.AddPrompt(&mcp.Prompt{Name: "greet"}, func(context.Context, *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
		return &mcp.GetPromptResult{Messages: []*mcp.PromptMessage{{Role: "user", Content: &mcp.TextContent{Text: "hi"}}}}, nil
	})
	s.AddResource(&mcp.Resource{URI: "file:///a", Name: "a"}, func(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: req.Params.URI, Text: "x"}}}, nil
	})
	s.AddTool(&mcp.Tool{Name: "lookup", InputSchema: map[string]any{"type": "object"}}, func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return &mcp.CallToolResult{}, nil
	})
	srv := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{Stateless: stateless}))
	t.Cleanup(srv.Close)
	return srv.URL, s
}

// listAgent counts the list changes one agent hears.
type listAgent struct {
	name            string
	mu              sync.Mutex
	prompts, resres int
}

func (a *listAgent) counts() (int, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.prompts, a.resres
}

func (a *listAgent) connect(t *testing.T, url, version string) *mcp.ClientSession {
	t.Helper()
	c := mcp.NewClient(&mcp.Implementation{Name: a.name, Version: "1"}, &mcp.ClientOptions{
		PromptListChangedHandler: func(context.Context, *mcp.PromptListChangedRequest) {
			a.mu.Lock()
			a.prompts++
			a.mu.Unlock()
		},
		ResourceListChangedHandler: func(context.Context, *mcp.ResourceListChangedRequest) {
			a.mu.Lock()
			a.resres++
			a.mu.Unlock()
		},
	})
	hc := &http.Client{Transport: headerTransport{http.Header{"Authorization": {"Bearer " + testKey}}}}
	s, err := c.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: url, HTTPClient: hc}, &mcp.ClientSessionOptions{ProtocolVersion: version})
	if err != nil {
		t.Fatalf("%s: %v", a.name, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// An upstream's prompt and resource list changes reach the agents that see
// its server, in both eras and on both endpoints: once per change and
// agent (a legacy agent with its own upstream session included), and no
// more once the server is killed.
func TestUpstreamListChangesReachAgents(t *testing.T) {
	for _, era := range []struct {
		name      string
		stateless bool
	}{{"2026-07-28 upstream", true}, {"2025-11-25 upstream", false}} {
		t.Run(era.name, func(t *testing.T) {
			r := newRegistry(t)
			url, up := listUpstream(t, era.stateless)
			otherURL, other := listUpstream(t, true)
			r.register("corp.hr/lists", "1.0.0", url, lookupTool, true)
			r.register("corp.hr/other", "1.0.0", otherURL, lookupTool, true)
			g, srv := newGateway(t, r)

			agents := []*listAgent{{name: "legacy on /mcp"}, {name: "legacy on /mcp with its own upstream session"}, {name: "2026-07-28 on /mcp"}, {name: "2026-07-28 on the server's endpoint"}}
			agents[0].connect(t, srv.URL+"/mcp", "2025-11-25")
			own := agents[1].connect(t, srv.URL+"/mcp", "2025-11-25")
			if _, err := own.ListPrompts(t.Context(), nil); err != nil { // opens its own upstream sessions
				t.Fatal(err)
			}
			agents[2].connect(t, srv.URL+"/mcp", "2026-07-28")
			agents[3].connect(t, srv.URL+"/mcp/s/hr/corp.hr/lists", "2026-07-28")
			seen := func() string {
				var out []string
				for _, a := range agents {
					p, res := a.counts()
					out = append(out, fmt.Sprintf("%s: %d prompts, %d resources", a.name, p, res))
				}
				g.lists.mu.Lock()
				out = append(out, fmt.Sprintf("watching %d servers, audience of %d endpoints", len(g.lists.watching), len(g.lists.audience)))
				g.lists.mu.Unlock()
				return strings.Join(out, "; ")
			}
			waitFor(t, "the node to watch both servers' lists for 4 agents on 2 endpoints", func() (bool, string) {
				g.lists.mu.Lock()
				n := 0
				for _, a := range g.lists.audience {
					n += len(a)
				}
				ok := len(g.lists.watching) == 2 && n == 4
				g.lists.mu.Unlock()
				return ok, seen()
			})

			// One prompt change, then one resource change: every agent
			// hears each once.
			up.AddPrompt(&mcp.Prompt{Name: "farewell"}, func(context.Context, *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
				return &mcp.GetPromptResult{}, nil
			})
			waitFor(t, "the prompt change at every agent", func() (bool, string) {
				for _, a := range agents {
					if p, _ := a.counts(); p == 0 {
						return false, seen()
					}
				}
				return true, seen()
			})
			up.AddResource(&mcp.Resource{URI: "file:///b", Name: "b"}, func(context.Context, *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
				return &mcp.ReadResourceResult{}, nil
			})
			waitFor(t, "the resource change at every agent", func() (bool, string) {
				for _, a := range agents {
					if _, res := a.counts(); res == 0 {
						return false, seen()
					}
				}
				return true, seen()
			})
			for _, a := range agents {
				if p, res := a.counts(); p != 1 || res != 1 {
					t.Errorf("%s heard %d prompt and %d resource list changes; want 1 of each", a.name, p, res)
				}
			}

			// Killed: a change of the server reaches no one; a change of
			// the other server still reaches the agents of /mcp.
			r.kill(state.KillServer, "corp.hr/lists", "incident")
			if err := g.Sync(); err != nil {
				t.Fatal(err)
			}
			up.AddPrompt(&mcp.Prompt{Name: "later"}, func(context.Context, *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
				return &mcp.GetPromptResult{}, nil
			})
			other.AddResource(&mcp.Resource{URI: "file:///c", Name: "c"}, func(context.Context, *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
				return &mcp.ReadResourceResult{}, nil
			})
			waitFor(t, "the other server's resource change at the agents of /mcp", func() (bool, string) {
				for _, a := range agents[:3] {
					if _, res := a.counts(); res < 2 {
						return false, seen()
					}
				}
				return true, seen()
			})
			for _, a := range agents {
				if p, _ := a.counts(); p != 1 {
					t.Errorf("%s heard %d prompt list changes; want 1 (the later one is of a killed server)", a.name, p)
				}
			}
			if _, res := agents[3].counts(); res != 1 {
				t.Errorf("%s heard %d resource list changes; want 1 (the other server is not on its endpoint)", agents[3].name, res)
			}
		})
	}
}
