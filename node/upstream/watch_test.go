package upstream

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// restartable is an upstream on a fixed address that the test stops and
// starts again, with a new server each time (as a restarted process).
type restartable struct {
	t         *testing.T
	addr      string
	stateless bool

	mu   sync.Mutex
	srv  *httptest.Server
	s    *mcp.Server
	subs *atomic.Int64
}

func newRestartable(t *testing.T, stateless bool) *restartable {
	t.Helper()
	u := &restartable{t: t, stateless: stateless}
	u.start()
	t.Cleanup(u.stop)
	return u
}

func (u *restartable) start() {
	u.t.Helper()
	var subs atomic.Int64
	s := mcp.NewServer(&mcp.Implementation{Name: "restartable", Version: "1"}, &mcp.ServerOptions{
		SubscribeHandler:   func(context.Context, *mcp.SubscribeRequest) error { subs.Add(1); return nil },
		UnsubscribeHandler: func(context.Context, *mcp.UnsubscribeRequest) error { return nil },
	})
	s.AddResource(&mcp.Resource{URI: "file:///a", Name: "a"}, func(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: req.Params.URI, Text: "x"}}}, nil
	})
	s.AddPrompt(&mcp.Prompt{Name: "p"}, func(context.Context, *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
		return &mcp.GetPromptResult{}, nil
	})
	srv := httptest.NewUnstartedServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{Stateless: u.stateless}))
	if u.addr != "" {
		var l net.Listener
		var err error
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if l, err = net.Listen("tcp", u.addr); err == nil || time.Now().After(deadline) {
				break
			}
		}
		if err != nil {
			u.t.Fatalf("listen again on %s: %v", u.addr, err)
		}
		srv.Listener.Close()
		srv.Listener = l
	}
	srv.Start()
	u.mu.Lock()
	u.srv, u.s, u.subs, u.addr = srv, s, &subs, srv.Listener.Addr().String()
	u.mu.Unlock()
}

func (u *restartable) stop() {
	u.mu.Lock()
	srv, s := u.srv, u.s
	u.mu.Unlock()
	srv.CloseClientConnections()
	srv.Close()
	// As with a process that exits, its sessions end too.
	for _, ss := range slices.Collect(s.Sessions()) {
		ss.Close()
	}
}

func (u *restartable) server() (*mcp.Server, int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.s, u.subs.Load()
}

// A watch outlives its upstream's restart: the node re-dials, subscribes
// again and tells its watchers they may have missed something; updates and
// list changes of the restarted upstream then reach the same watchers.
func TestWatchSurvivesAnUpstreamRestart(t *testing.T) {
	for _, era := range []struct {
		name      string
		stateless bool
	}{{"2026-07-28 upstream", true}, {"2025-11-25 upstream", false}} {
		t.Run(era.name, func(t *testing.T) {
			up := newRestartable(t, era.stateless)
			p := NewPool(Config{CallTimeout: 5 * time.Second})
			defer p.Close()
			target := Target{Server: "corp.test/res", Version: "1.0.0", Transport: TransportStreamableHTTP, URL: "http://" + up.addr}

			var mu sync.Mutex
			var updates, lists []string
			stop, err := p.WatchResource(t.Context(), target, "file:///a", func(u *mcp.ResourceUpdatedNotificationParams) {
				mu.Lock()
				updates = append(updates, u.URI)
				mu.Unlock()
			})
			if err != nil {
				t.Fatal(err)
			}
			defer stop()
			stopLists, err := p.WatchLists(target, func(kind string) {
				mu.Lock()
				lists = append(lists, kind)
				mu.Unlock()
			})
			if err != nil {
				t.Fatal(err)
			}
			defer stopLists()
			seen := func() string {
				mu.Lock()
				defer mu.Unlock()
				_, subs := up.server()
				return fmt.Sprintf("updates %v, list changes %v, upstream subscriptions %d", updates, lists, subs)
			}
			got := func(want string, of *[]string) func() (bool, string) {
				return func() (bool, string) {
					mu.Lock()
					ok := slices.Contains(*of, want)
					mu.Unlock()
					return ok, seen()
				}
			}
			reset := func() {
				mu.Lock()
				updates, lists = nil, nil
				mu.Unlock()
			}
			s, _ := up.server()
			s.ResourceUpdated(t.Context(), &mcp.ResourceUpdatedNotificationParams{URI: "file:///a"})
			poll(t, "the update before the restart", got("file:///a", &updates))
			s.AddPrompt(&mcp.Prompt{Name: "q"}, func(context.Context, *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
				return &mcp.GetPromptResult{}, nil
			})
			poll(t, "the prompt list change before the restart", got(ListPrompts, &lists))

			up.stop()
			reset()
			up.start()
			// Re-subscribed, and told that the resource and the lists may
			// have changed meanwhile.
			poll(t, "the subscription on the restarted upstream", func() (bool, string) {
				_, subs := up.server()
				return subs > 0, seen()
			})
			poll(t, "the update after the re-dial", got("file:///a", &updates))
			poll(t, "the list change after the re-dial", got(ListResources, &lists))

			reset()
			s, _ = up.server()
			s.ResourceUpdated(t.Context(), &mcp.ResourceUpdatedNotificationParams{URI: "file:///a"})
			poll(t, "the restarted upstream's update", got("file:///a", &updates))
			s.AddPrompt(&mcp.Prompt{Name: "r"}, func(context.Context, *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
				return &mcp.GetPromptResult{}, nil
			})
			poll(t, "the restarted upstream's prompt list change", got(ListPrompts, &lists))
		})
	}
}

// A stdio upstream's resource updates reach the watchers of their URI, and
// do again once the process was restarted.
func TestStdioResourceUpdatesAndRestart(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := NewPool(Config{CallTimeout: 10 * time.Second})
	defer p.Close()
	target := Target{Server: "corp.test/stdio", Version: "1.0.0", Transport: TransportStdio, Command: exe,
		Env: map[string]string{"MCPMESH_TEST_STDIO_SERVER": "1"}}
	var mu sync.Mutex
	var got []string
	watch := func(uri string) func() {
		stop, err := p.WatchResource(t.Context(), target, uri, func(u *mcp.ResourceUpdatedNotificationParams) {
			mu.Lock()
			got = append(got, uri+" heard "+u.URI)
			mu.Unlock()
		})
		if err != nil {
			t.Fatal(err)
		}
		return stop
	}
	defer watch("file:///a")()
	defer watch("file:///b")()
	seen := func() string {
		mu.Lock()
		defer mu.Unlock()
		return fmt.Sprint(got)
	}
	touch := func() (bool, string) {
		// The upstream updates file:///a when the tool is called.
		if _, err := p.CallTool(t.Context(), target, &mcp.CallToolParams{Name: "touch"}, nil); err != nil {
			return false, fmt.Sprintf("touch: %v; %s", err, seen())
		}
		mu.Lock()
		defer mu.Unlock()
		return slices.Contains(got, "file:///a heard file:///a"), fmt.Sprint(got)
	}
	poll(t, "the stdio upstream's update", touch)
	mu.Lock()
	for _, g := range got {
		if g != "file:///a heard file:///a" {
			t.Errorf("%s: only file:///a was updated, and only its watcher should hear it", g)
		}
	}
	got = nil
	mu.Unlock()

	if _, err := p.CallTool(t.Context(), target, &mcp.CallToolParams{Name: "exit"}, nil); err == nil {
		t.Fatal("the call that ended the stdio server succeeded")
	}
	poll(t, "the restarted stdio upstream's update", touch)
}

// poll waits, boundedly, for cond, and reports what it last saw.
func poll(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		var ok bool
		if ok, last = cond(); ok {
			return
		}
	}
	t.Fatalf("timed out waiting for %s; last saw: %s", what, last)
}
