package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpmesh/mcpmesh/test/internal/testcluster"
)

// notifyingUpstream is a stateful (2025-11-25) upstream on a fixed
// address, with a resource and a prompt, that the test restarts.
type notifyingUpstream struct {
	t    *testing.T
	addr string

	mu   sync.Mutex
	srv  *http.Server
	s    *mcp.Server
	subs *atomic.Int64
}

func (u *notifyingUpstream) start() {
	u.t.Helper()
	var subs atomic.Int64
	s := mcp.NewServer(&mcp.Implementation{Name: "notifying", Version: "1"}, &mcp.ServerOptions{
		SubscribeHandler:   func(context.Context, *mcp.SubscribeRequest) error { subs.Add(1); return nil },
		UnsubscribeHandler: func(context.Context, *mcp.UnsubscribeRequest) error { return nil },
	})
	var def mcp.Tool
	if err := json.Unmarshal([]byte(upstreamTool), &def); err != nil {
		u.t.Fatal(err)
	}
	s.AddTool(&def, func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "ok"}}}, nil
	})
	s.AddResource(&mcp.Resource{URI: "file:///a", Name: "a"}, func(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: req.Params.URI, Text: "x"}}}, nil
	})
	s.AddPrompt(&mcp.Prompt{Name: "greet"}, func(context.Context, *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
		return &mcp.GetPromptResult{}, nil
	})
	addr := u.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var ln net.Listener
	var err error
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if ln, err = net.Listen("tcp", addr); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		u.t.Fatalf("upstream listen on %s: %v", addr, err)
	}
	srv := &http.Server{Handler: mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil)}
	go srv.Serve(ln)
	u.mu.Lock()
	u.srv, u.s, u.subs, u.addr = srv, s, &subs, ln.Addr().String()
	u.mu.Unlock()
}

// stop ends the upstream as a process exit would: connections and
// sessions gone.
func (u *notifyingUpstream) stop() {
	u.mu.Lock()
	srv, s := u.srv, u.s
	u.mu.Unlock()
	srv.Close()
	for _, ss := range slices.Collect(s.Sessions()) {
		ss.Close()
	}
}

func (u *notifyingUpstream) server() (*mcp.Server, int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.s, u.subs.Load()
}

// TestUpstreamNotificationsReachAgents: through the real binary, a legacy
// (stateful) upstream's resource updates reach a 2026-07-28 agent listening
// for them, its prompt list changes reach a 2026-07-28 listener and a
// legacy agent; and after the upstream restarts under them, the node
// subscribes again and both keep hearing it.
func TestUpstreamNotificationsReachAgents(t *testing.T) {
	t.Parallel()
	up := &notifyingUpstream{t: t}
	up.start()
	t.Cleanup(up.stop)
	c := startCluster(t, testcluster.Options{NoSync: true})
	leader := c.Leader(leaderTimeout)
	mustCLI(t, c, leader, "tenant", "add", "payroll", "-owner", "alice@corp.example")
	mustCLI(t, c, leader, "apply", "-f", permitAll(t))
	key := createKey(t, c, leader, "payroll", "e2e agent").Secret
	mustCLI(t, c, leader, "registry", "submit", "-f", writeCard(t, upstreamCard("corp.hr/directory", "1.0.0", "http://"+up.addr)))
	mustCLI(t, c, leader, "registry", "approve", "corp.hr/directory@1.0.0")

	type heard struct {
		mu              sync.Mutex
		updates, prompt int
	}
	connect := func(version string, h *heard) *mcp.ClientSession {
		cl := mcp.NewClient(&mcp.Implementation{Name: "e2e-agent", Version: "1"}, &mcp.ClientOptions{
			ResourceUpdatedHandler: func(context.Context, *mcp.ResourceUpdatedNotificationRequest) {
				h.mu.Lock()
				h.updates++
				h.mu.Unlock()
			},
			PromptListChangedHandler: func(context.Context, *mcp.PromptListChangedRequest) {
				h.mu.Lock()
				h.prompt++
				h.mu.Unlock()
			},
		})
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		s, err := cl.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: "http://" + leader.HTTPAddr + "/mcp", HTTPClient: &http.Client{Transport: credentialTransport{key}}},
			&mcp.ClientSessionOptions{ProtocolVersion: version})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	var modern, legacy heard
	ms := connect("2026-07-28", &modern)
	ls := connect("2025-11-25", &legacy)
	var last error
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if _, last = ls.CallTool(t.Context(), &mcp.CallToolParams{Name: "hr.lookup", Arguments: map[string]any{"q": "x"}}); last == nil {
			break
		}
	}
	if last != nil {
		t.Fatalf("the upstream never became callable: %v", last)
	}
	if err := ms.Subscribe(t.Context(), &mcp.SubscribeParams{URI: "mcpmesh://hr/corp.hr%2Fdirectory/file:///a"}); err != nil {
		t.Fatal(err)
	}
	counts := func() string {
		modern.mu.Lock()
		legacy.mu.Lock()
		defer modern.mu.Unlock()
		defer legacy.mu.Unlock()
		_, subs := up.server()
		return fmt.Sprintf("2026-07-28 agent: %d updates, %d prompt list changes; legacy agent: %d prompt list changes; upstream subscriptions: %d",
			modern.updates, modern.prompt, legacy.prompt, subs)
	}
	wait := func(what string, cond func() bool, poke func()) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if poke != nil {
				poke()
			}
			modern.mu.Lock()
			legacy.mu.Lock()
			ok := cond()
			legacy.mu.Unlock()
			modern.mu.Unlock()
			if ok {
				return
			}
		}
		t.Fatalf("timed out waiting for %s; last saw %s", what, counts())
	}
	reset := func() {
		modern.mu.Lock()
		legacy.mu.Lock()
		modern.updates, modern.prompt, legacy.prompt = 0, 0, 0
		legacy.mu.Unlock()
		modern.mu.Unlock()
	}
	n := 0
	changePrompts := func() {
		s, _ := up.server()
		n++
		s.AddPrompt(&mcp.Prompt{Name: fmt.Sprintf("p%d", n)}, func(context.Context, *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			return &mcp.GetPromptResult{}, nil
		})
	}
	update := func() {
		s, _ := up.server()
		s.ResourceUpdated(t.Context(), &mcp.ResourceUpdatedNotificationParams{URI: "file:///a"})
	}
	wait("the legacy upstream's resource update at the 2026-07-28 listener", func() bool { return modern.updates > 0 }, update)
	wait("the prompt list change at both agents", func() bool { return modern.prompt > 0 && legacy.prompt > 0 }, changePrompts)

	// The upstream restarts under the live listeners: the node subscribes
	// again (and says the resource may have changed meanwhile).
	up.stop()
	reset()
	up.start()
	wait("the node's subscription on the restarted upstream", func() bool {
		_, subs := up.server()
		return subs > 0 && modern.updates > 0
	}, nil)
	reset()
	wait("the restarted upstream's resource update at the 2026-07-28 listener", func() bool { return modern.updates > 0 }, update)
	wait("the restarted upstream's prompt list change at both agents", func() bool { return modern.prompt > 0 && legacy.prompt > 0 }, changePrompts)
	t.Logf("after the restart: %s", counts())
}
