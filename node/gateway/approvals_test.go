package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/raft"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mcpmesh/mcpmesh/node/upstream"
	"github.com/mcpmesh/mcpmesh/registry/state"
)

// holdAll asks for approval of every call it allows.
const holdAll = `permit (principal, action == Action::"list", resource);
@id("hold-all")
@approval("required")
permit (principal, action == Action::"call", resource);
`

// proposer applies commands to r's FSM one at a time, as Raft would, and
// returns the state machine's refusals as errors.
func (r *registry) proposer() Proposer {
	var mu sync.Mutex
	return func(_ context.Context, cmd []byte) error {
		mu.Lock()
		defer mu.Unlock()
		r.index++
		if res, ok := r.fsm.Apply(&raft.Log{Index: r.index, Type: raft.LogCommand, Data: cmd}).(error); ok {
			return res
		}
		return nil
	}
}

// newApprovalGateway serves r with approvals configured by cfg, on the
// wall clock (a held call waits for real time).
func newApprovalGateway(t *testing.T, r *registry, cfg ApprovalConfig) (*Gateway, *httptest.Server, Proposer) {
	t.Helper()
	pool := upstream.NewPool(upstream.Config{CallTimeout: 10 * time.Second})
	t.Cleanup(func() { pool.Close() })
	propose := r.proposer()
	g := New(Config{Namespace: "hr"}, r.fsm, pool, WithMetrics(prometheus.NewRegistry()), WithApprovals(cfg, propose))
	t.Cleanup(func() { g.Close() })
	if err := g.Sync(); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(authenticated(r, g))
	t.Cleanup(srv.Close)
	return g, srv, propose
}

// approvalError returns err's approval code and data.
func approvalError(t *testing.T, err error) (int64, string, ApprovalData) {
	t.Helper()
	var je *jsonrpc.Error
	if !errors.As(err, &je) {
		t.Fatalf("want a JSON-RPC error, got %v", err)
	}
	var d ApprovalData
	json.Unmarshal(je.Data, &d)
	return je.Code, je.Message, d
}

// TestApprovalHoldCap: with one call held and approval_max_held 1, the
// next call is not held: it is answered at once with -32016 and its
// approval id, its approval is recorded, and the overflow is counted; once
// approved, a retry with the id runs.
func TestApprovalHoldCap(t *testing.T) {
	r := newRegistry(t)
	up := newUpstream(t, "dir")
	r.register("example.com/dir", "1.0.0", up.URL, lookupTool, true)
	r.setPolicies(holdAll)
	// A held call would outlast the test: one that returns was not held.
	const hold = time.Hour
	g, srv, propose := newApprovalGateway(t, r, ApprovalConfig{Hold: hold, TTL: 2 * time.Hour, MaxHeld: 1})
	s := connect(t, srv.URL+"/mcp", "2026-07-28")
	call := func(q, approval string) (*mcp.CallToolResult, error) {
		p := &mcp.CallToolParams{Name: "hr.lookup", Arguments: map[string]any{"q": q}}
		if approval != "" {
			p.Meta = mcp.Meta{MetaApproval: approval}
		}
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		return s.CallTool(ctx, p)
	}
	decide := func(id string) {
		t.Helper()
		cmd, _ := state.Encode(state.DecideApproval{ID: id, Approve: true, By: "token:bootstrap", At: time.Now().UTC()})
		if err := propose(t.Context(), cmd); err != nil {
			t.Fatal(err)
		}
	}
	pendingIDs := func() []string {
		all, err := r.fsm.Approvals()
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, a := range all {
			if a.State == state.ApprovalPending {
				ids = append(ids, a.ID)
			}
		}
		return ids
	}

	type outcome struct {
		res *mcp.CallToolResult
		err error
	}
	first := make(chan outcome, 1)
	go func() {
		res, err := call("first", "")
		first <- outcome{res, err}
	}()
	// Wait (bounded) until the first call is held.
	deadline := time.Now().Add(10 * time.Second)
	for g.approvals.held.Load() != 1 || len(pendingIDs()) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the first call is not held: held %d, pending %v", g.approvals.held.Load(), pendingIDs())
		}
		time.Sleep(10 * time.Millisecond)
	}
	firstID := pendingIDs()[0]

	_, err := call("second", "")
	code, msg, data := approvalError(t, err)
	if code != CodeApprovalPending || !strings.HasPrefix(data.ID, "apr-") || data.ID == firstID ||
		!strings.Contains(msg, "approval_max_held") || !strings.Contains(data.NotHeld, "already holds 1 calls") {
		t.Fatalf("call beyond the cap: %d %q %+v", code, msg, data)
	}
	if ids := pendingIDs(); len(ids) != 2 {
		t.Errorf("pending approvals after the overflow: %v, want the held call's and the overflowed call's", ids)
	}
	if n := testutil.ToFloat64(g.metrics.approvals.overflow.WithLabelValues("hr")); n != 1 {
		t.Errorf("mcpmesh_approval_hold_overflow_total = %v, want 1", n)
	}
	if n := testutil.ToFloat64(g.metrics.approvals.held.WithLabelValues("hr")); n != 1 {
		t.Errorf("mcpmesh_approval_held_calls = %v, want 1", n)
	}

	// The held call runs once approved and gives its slot back.
	decide(firstID)
	o := <-first
	if o.err != nil || o.res.IsError {
		t.Fatalf("the approved held call: %v %+v", o.err, o.res)
	}
	if n := g.approvals.held.Load(); n != 0 {
		t.Errorf("%d calls still counted as held after the held call returned", n)
	}
	// The overflowed call, approved, runs on retry with its id.
	decide(data.ID)
	res, err := call("second", data.ID)
	if err != nil || res.IsError {
		t.Fatalf("retry of the overflowed call with its id: %v %+v", err, res)
	}
	up.mu.Lock()
	calls := strings.Join(up.calls, ",")
	up.mu.Unlock()
	if calls != "first,second" {
		t.Errorf("the upstream saw %q, want first,second once each", calls)
	}
}

// confirmSome asks the user to confirm calls of lookup for q "risky".
const confirmSome = `permit (principal, action, resource);
@id("confirm-risky")
@approval("confirm")
permit (principal, action == Action::"call", resource)
when { context.stringArguments.hasTag("q") && context.stringArguments.getTag("q") == "risky" };
`

// TestConfirmByTheUser: a call its policy marks @approval("confirm") is
// confirmed by the user through elicitation, in every era: accepted it
// runs once, declined or cancelled it is refused with -32017 and never
// reaches the upstream; a client that cannot elicit is held for an
// administrator instead, and told why.
func TestConfirmByTheUser(t *testing.T) {
	r := newRegistry(t)
	up := newUpstream(t, "dir")
	r.register("example.com/dir", "1.0.0", up.URL, lookupTool, true)
	r.setPolicies(confirmSome)
	_, srv, _ := newApprovalGateway(t, r, ApprovalConfig{Hold: 0, TTL: time.Hour})
	upstreamSaw := func(q string) int {
		up.mu.Lock()
		defer up.mu.Unlock()
		n := 0
		for _, c := range up.calls {
			if c == q {
				n++
			}
		}
		return n
	}
	for _, era := range eras {
		for _, action := range []string{"accept", "decline", "cancel"} {
			t.Run(era+"/"+action, func(t *testing.T) {
				var asked []string
				c := mcp.NewClient(&mcp.Implementation{Name: "agent", Version: "1"}, &mcp.ClientOptions{
					ElicitationHandler: func(ctx context.Context, req *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
						asked = append(asked, req.Params.Message)
						return &mcp.ElicitResult{Action: action}, nil
					},
				})
				s, err := c.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: srv.URL + "/mcp",
					HTTPClient: &http.Client{Transport: headerTransport{bearer(testKey)}}}, &mcp.ClientSessionOptions{ProtocolVersion: era})
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				before := upstreamSaw("risky")
				// A call no policy asks to confirm is not asked about.
				if res, err := s.CallTool(t.Context(), &mcp.CallToolParams{Name: "hr.lookup", Arguments: map[string]any{"q": "safe"}}); err != nil || res.IsError || len(asked) != 0 {
					t.Fatalf("unconfirmed call: %v %+v, asked %q", err, res, asked)
				}
				res, err := s.CallTool(t.Context(), &mcp.CallToolParams{Name: "hr.lookup", Arguments: map[string]any{"q": "risky"}})
				if len(asked) != 1 || !strings.Contains(asked[0], "hr.lookup (example.com/dir/lookup, version 1.0.0)") ||
					!strings.Contains(asked[0], `q="risky"`) || !strings.Contains(asked[0], "confirm-risky") {
					t.Fatalf("the user was asked %q, want one question naming the tool, version, arguments and policy", asked)
				}
				if action == "accept" {
					if err != nil || res.IsError || res.Content[0].(*mcp.TextContent).Text != "dir:risky" {
						t.Fatalf("accepted call: %v %+v", err, res)
					}
					if n := upstreamSaw("risky") - before; n != 1 {
						t.Errorf("the upstream saw the confirmed call %d times, want 1", n)
					}
					return
				}
				code, msg, data := approvalError(t, err)
				if code != CodeApprovalRefused || !strings.Contains(msg, "declined by the user") || data.Reason != "declined by the user" || data.State != "declined" {
					t.Errorf("%s: %d %q %+v", action, code, msg, data)
				}
				if n := upstreamSaw("risky") - before; n != 0 {
					t.Errorf("the upstream saw a declined call %d times", n)
				}
			})
		}
	}
	// A client without elicitation: held for an administrator (answered
	// at once here: the hold is 0s), with the reason in the data.
	for _, era := range eras {
		s := connect(t, srv.URL+"/mcp", era)
		_, err := s.CallTool(t.Context(), &mcp.CallToolParams{Name: "hr.lookup", Arguments: map[string]any{"q": "risky"}})
		code, msg, data := approvalError(t, err)
		if code != CodeApprovalPending || !strings.HasPrefix(data.ID, "apr-") || !strings.Contains(data.Fallback, "declared no (form) elicitation capability") ||
			!strings.Contains(msg, "an administrator approves it instead") {
			t.Errorf("%s: client without elicitation: %d %q %+v", era, code, msg, data)
		}
	}
}

// TestConfirmedCallKeepsItsConfirmation: when a confirmed call's upstream
// asks for input of its own, the user is not asked to confirm again.
func TestConfirmedCallKeepsItsConfirmation(t *testing.T) {
	r := newRegistry(t)
	url, _ := inputUpstream(t)
	r.register("example.com/asker", "1.0.0", url, greetTool, true)
	r.setPolicies(`permit (principal, action, resource);
@id("confirm-all") @approval("confirm") permit (principal, action == Action::"call", resource);`)
	_, srv, _ := newApprovalGateway(t, r, ApprovalConfig{TTL: time.Hour})
	for _, era := range eras {
		t.Run(era, func(t *testing.T) {
			var asked []string
			c := mcp.NewClient(&mcp.Implementation{Name: "agent", Version: "1"}, &mcp.ClientOptions{
				ElicitationHandler: func(ctx context.Context, req *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
					asked = append(asked, req.Params.Message)
					return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"name": "Ada"}}, nil
				},
			})
			s, err := c.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: srv.URL + "/mcp",
				HTTPClient: &http.Client{Transport: headerTransport{bearer(testKey)}}}, &mcp.ClientSessionOptions{ProtocolVersion: era})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			res, err := s.CallTool(t.Context(), &mcp.CallToolParams{Name: "hr.greet"})
			if err != nil || res.IsError || res.Content[0].(*mcp.TextContent).Text != "hello Ada" {
				t.Fatalf("call: %v %+v", err, res)
			}
			if len(asked) != 2 || !strings.HasPrefix(asked[0], "Confirm that hr.greet") || asked[1] != "Your name?" {
				t.Errorf("the user was asked %q; want the confirmation, then the upstream's question, once each", asked)
			}
		})
	}
}

// TestApprovalMetricsAtExpiry: runApprovals sleeps while no approval can
// expire (it used to wake every second), counts an approval expired and
// off the queue exactly when it expires, and sees one requested while it
// sleeps.
func TestApprovalMetricsAtExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRegistry(t)
		pool := upstream.NewPool(upstream.Config{CallTimeout: 10 * time.Second})
		defer pool.Close()
		propose := r.proposer()
		g := New(Config{Namespace: "hr"}, r.fsm, pool, WithMetrics(prometheus.NewRegistry()), WithApprovals(ApprovalConfig{Hold: time.Minute, TTL: time.Hour, MaxHeld: 1}, propose))
		defer g.Close()
		if err := g.Sync(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { g.runApprovals(ctx); close(done) }()
		defer func() { cancel(); <-done }()
		refreshes := func() int {
			g.approvals.mu.Lock()
			defer g.approvals.mu.Unlock()
			return g.approvals.refreshes
		}
		time.Sleep(time.Second) // the first refresh, a second after start
		synctest.Wait()
		idle := refreshes()
		time.Sleep(approvalPruneEvery - time.Second)
		synctest.Wait()
		if n := refreshes() - idle; n != 0 {
			t.Fatalf("%d refreshes in an hour with no approval, want 0", n)
		}

		expires := time.Now().Add(10 * time.Minute)
		cmd, _ := state.Encode(state.RequestApproval{ID: "apr-0123456789", ApprovalBinding: state.ApprovalBinding{
			Caller: "apikey:" + testKeyID, Server: "example.com/dir", Tool: "lookup", Version: "1.0.0", ArgumentsDigest: "d", PolicyVersion: "p",
		}, At: time.Now(), ExpiresAt: expires})
		if err := propose(t.Context(), cmd); err != nil {
			t.Fatal(err)
		}
		if err := g.loadApprovals(); err != nil {
			t.Fatal(err)
		}
		m := g.metrics.approvals
		pending := func() float64 { return testutil.ToFloat64(m.pending.WithLabelValues("hr")) }
		expired := func() float64 { return testutil.ToFloat64(m.total.WithLabelValues("hr", "expired")) }
		time.Sleep(time.Until(expires) - time.Millisecond)
		synctest.Wait()
		if p, e := pending(), expired(); p != 1 || e != 0 {
			t.Fatalf("a millisecond before the expiry: pending %v, expired %v; want 1, 0", p, e)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if p, e := pending(), expired(); p != 0 || e != 1 {
			t.Fatalf("at the expiry: pending %v, expired %v; want 0, 1", p, e)
		}
	})
}
