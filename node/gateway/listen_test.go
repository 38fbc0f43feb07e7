package gateway

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpmesh/mcpmesh/registry/state"
)

// resourceUpstream serves resources file:///a and file:///b, takes
// subscriptions (counting them) and returns its server, to send updates.
func resourceUpstream(t *testing.T, stateless bool) (string, *mcp.Server, *atomic.Int64) {
	t.Helper()
	var subs atomic.Int64
	s := mcp.NewServer(&mcp.Implementation{Name: "res", Version: "1"}, &mcp.ServerOptions{
		SubscribeHandler:   func(context.Context, *mcp.SubscribeRequest) error { subs.Add(1); return nil },
		UnsubscribeHandler: func(context.Context, *mcp.UnsubscribeRequest) error { return nil },
	})
	for _, u := range []string{"file:///a", "file:///b"} {
		s.AddResource(&mcp.Resource{URI: u, Name: u}, func(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
			return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: req.Params.URI, Text: "x"}}}, nil
		})
	}
	s.AddTool(&mcp.Tool{Name: "lookup", InputSchema: map[string]any{"type": "object"}}, func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return &mcp.CallToolResult{}, nil
	})
	srv := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{Stateless: stateless}))
	t.Cleanup(srv.Close)
	return srv.URL, s, &subs
}

// A 2026-07-28 agent's subscriptions/listen gets the updates of the
// resources it subscribed to, with the URIs of the endpoint it listens on;
// every agent's subscription to a resource shares one upstream
// subscription; an agent that may no longer read the resource (here: its
// server killed) gets nothing more.
func TestListenRelaysResourceUpdates(t *testing.T) {
	for _, era := range []struct {
		name      string
		stateless bool
	}{{"2026-07-28 upstream", true}, {"2025-11-25 upstream", false}} {
		t.Run(era.name, func(t *testing.T) {
			r := newRegistry(t)
			url, up, upstreamSubs := resourceUpstream(t, era.stateless)
			r.register("corp.hr/res", "1.0.0", url, lookupTool, true)
			g, srv := newGateway(t, r)

			type listener struct {
				name, path, uri string
				mu              sync.Mutex
				got             []string
			}
			listeners := []*listener{
				{name: "aggregated a", path: "/mcp", uri: "mcpmesh://hr/corp.hr%2Fres/file:///a"},
				{name: "per-server a", path: "/mcp/s/hr/corp.hr/res", uri: "file:///a"},
				{name: "per-server b", path: "/mcp/s/hr/corp.hr/res", uri: "file:///b"},
			}
			for _, l := range listeners {
				c := mcp.NewClient(&mcp.Implementation{Name: "agent", Version: "1"}, &mcp.ClientOptions{
					ResourceUpdatedHandler: func(_ context.Context, req *mcp.ResourceUpdatedNotificationRequest) {
						l.mu.Lock()
						l.got = append(l.got, req.Params.URI)
						l.mu.Unlock()
					},
				})
				hc := &http.Client{Transport: headerTransport{http.Header{"Authorization": {"Bearer " + testKey}}}}
				s, err := c.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: srv.URL + l.path, HTTPClient: hc}, &mcp.ClientSessionOptions{ProtocolVersion: "2026-07-28"})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				if err := s.Subscribe(t.Context(), &mcp.SubscribeParams{URI: l.uri}); err != nil {
					t.Fatalf("%s: subscribe: %v", l.name, err)
				}
			}
			seen := func() string {
				var out []string
				for _, l := range listeners {
					l.mu.Lock()
					out = append(out, fmt.Sprintf("%s: %v", l.name, l.got))
					l.mu.Unlock()
				}
				return strings.Join(out, "; ")
			}
			// The listens open in the background: update until both
			// listeners of a have one.
			waitFor(t, "the update of file:///a on both of its listens", func() (bool, string) {
				up.ResourceUpdated(t.Context(), &mcp.ResourceUpdatedNotificationParams{URI: "file:///a"})
				time.Sleep(20 * time.Millisecond)
				ok := true
				for _, l := range listeners[:2] {
					l.mu.Lock()
					ok = ok && len(l.got) > 0
					l.mu.Unlock()
				}
				return ok, seen()
			})
			for _, l := range listeners {
				l.mu.Lock()
				for _, u := range l.got {
					if u != l.uri || l.uri == "file:///b" {
						t.Errorf("%s got an update of %q; subscribed to %q", l.name, u, l.uri)
					}
				}
				l.got = nil
				l.mu.Unlock()
			}
			if n := upstreamSubs.Load(); n != 2 {
				t.Errorf("upstream got %d subscriptions; want 2 (one per resource, shared by the agents)", n)
			}

			// b's listener gets b.
			waitFor(t, "the update of file:///b", func() (bool, string) {
				up.ResourceUpdated(t.Context(), &mcp.ResourceUpdatedNotificationParams{URI: "file:///b"})
				time.Sleep(20 * time.Millisecond)
				l := listeners[2]
				l.mu.Lock()
				ok := slices.Contains(l.got, "file:///b")
				l.mu.Unlock()
				return ok, seen()
			})

			// Killed: nothing more reaches any listener.
			r.kill(state.KillServer, "corp.hr/res", "incident")
			if err := g.Sync(); err != nil {
				t.Fatal(err)
			}
			for _, l := range listeners {
				l.mu.Lock()
				l.got = nil
				l.mu.Unlock()
			}
			for range 5 {
				up.ResourceUpdated(t.Context(), &mcp.ResourceUpdatedNotificationParams{URI: "file:///a"})
				up.ResourceUpdated(t.Context(), &mcp.ResourceUpdatedNotificationParams{URI: "file:///b"})
			}
			// Bounded: the updates are through the node once a later
			// one, sent after them, would be; give them as long as the
			// first one needed at most.
			time.Sleep(300 * time.Millisecond)
			for _, l := range listeners {
				l.mu.Lock()
				if len(l.got) > 0 {
					t.Errorf("%s got %v after its server was killed", l.name, l.got)
				}
				l.mu.Unlock()
			}
		})
	}
}
