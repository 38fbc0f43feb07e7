package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mcpmesh/mcpmesh/registry/state"
)

const otherTool = `{"name":"other","inputSchema":{"type":"object"}}`

// kill pulls a switch as alice, at t0.
func (r *registry) kill(kind state.KillKind, name, reason string) {
	r.t.Helper()
	r.apply(state.PutKill{Kind: kind, Name: name, Reason: reason, By: "alice", At: t0})
}

func (r *registry) revive(kind state.KillKind, name string) {
	r.t.Helper()
	r.apply(state.Revive{Kind: kind, Name: name, By: "alice", At: t0})
}

// killedBy reports whether err is the gateway's kill switch refusal
// naming "<kind> <name>" and its reason.
func killedBy(err error, kind state.KillKind, name, reason string) bool {
	var je *jsonrpc.Error
	if !errors.As(err, &je) || je.Code != CodeKilled {
		return false
	}
	want := fmt.Sprintf("killed: %s %s: %q (by alice at 2026-11-01T00:00:00Z); contact the operators of namespace hr", kind, name, reason)
	var data KilledData
	return strings.Contains(je.Message, want) && json.Unmarshal(je.Data, &data) == nil && data.Kind == kind && data.Name == name && data.Reason == reason
}

func callLookup(t *testing.T, s *mcp.ClientSession, name string) error {
	t.Helper()
	_, err := s.CallTool(t.Context(), &mcp.CallToolParams{Name: name, Arguments: map[string]any{"q": "x"}})
	return err
}

func TestKillServerAndTool(t *testing.T) {
	r := newRegistry(t)
	one := newUpstream(t, "one")
	r.register("corp.hr/one", "1.0.0", one.URL, lookupTool, true)
	r.register("corp.hr/two", "1.0.0", anyToolUpstream(t, otherTool), otherTool, true)
	g, srv := newGateway(t, r)
	const reason = "incident 4411: wrong balances"

	r.kill(state.KillServer, "corp.hr/one", reason)
	if err := g.Sync(); err != nil {
		t.Fatal(err)
	}
	for _, era := range eras {
		t.Run(era, func(t *testing.T) {
			agg := connect(t, srv.URL+"/mcp", era)
			if err := callLookup(t, agg, "hr.lookup"); !killedBy(err, state.KillServer, "corp.hr/one", reason) {
				t.Errorf("call of a killed server's tool: err = %v; want -32012 naming the server and the reason", err)
			}
			if err := callLookup(t, agg, "hr.other"); err != nil {
				t.Errorf("call of another server's tool: %v", err)
			}
			if names := toolNames(t, agg); !slices.Equal(names, []string{"hr.other"}) {
				t.Errorf("/mcp tools = %v; want the killed server's left out", names)
			}
			per := connect(t, srv.URL+"/mcp/s/hr/corp.hr/one", era)
			if names := toolNames(t, per); len(names) != 0 {
				t.Errorf("killed server's own endpoint lists %v; want nothing", names)
			}
			if err := callLookup(t, per, "lookup"); !killedBy(err, state.KillServer, "corp.hr/one", reason) {
				t.Errorf("call on the killed server's own endpoint: err = %v", err)
			}
		})
	}
	one.mu.Lock()
	calls := len(one.calls)
	one.mu.Unlock()
	if calls != 0 {
		t.Errorf("the killed server's upstream got %d calls", calls)
	}
	if n := testutil.ToFloat64(g.metrics.killRefusals.WithLabelValues("hr", "server")); n != float64(2*len(eras)) {
		t.Errorf("refusals counted = %v, want %d", n, 2*len(eras))
	}
	if n := testutil.ToFloat64(g.metrics.calls.WithLabelValues("hr", "hr.lookup", "killed")); n != float64(len(eras)) {
		t.Errorf("calls of hr.lookup with outcome killed = %v, want %d", n, len(eras))
	}
	if n := testutil.ToFloat64(g.metrics.killSwitches.WithLabelValues("server")); n != 1 {
		t.Errorf("server switches gauge = %v, want 1", n)
	}

	// A killed tool stops that tool only, at every version.
	r.revive(state.KillServer, "corp.hr/one")
	r.kill(state.KillTool, "corp.hr/two/other", "returns stale data")
	if err := g.Sync(); err != nil {
		t.Fatal(err)
	}
	s := connect(t, srv.URL+"/mcp", "2026-07-28")
	if err := callLookup(t, s, "hr.lookup"); err != nil {
		t.Errorf("call after revive: %v", err)
	}
	if err := callLookup(t, s, "hr.other"); !killedBy(err, state.KillTool, "corp.hr/two/other", "returns stale data") {
		t.Errorf("call of a killed tool: err = %v", err)
	}
	pinned := &mcp.CallToolParams{Name: "hr.other", Arguments: map[string]any{}, Meta: mcp.Meta{MetaVersion: "1.0.0"}}
	if _, err := s.CallTool(t.Context(), pinned); !killedBy(err, state.KillTool, "corp.hr/two/other", "returns stale data") {
		t.Errorf("call of a killed tool pinning a version: err = %v", err)
	}
	if names := toolNames(t, s); !slices.Equal(names, []string{"hr.lookup"}) {
		t.Errorf("/mcp tools with a killed tool = %v", names)
	}
	if n := testutil.ToFloat64(g.metrics.killSwitches.WithLabelValues("server")); n != 0 {
		t.Errorf("server switches gauge after revive = %v, want 0", n)
	}
	r.revive(state.KillTool, "corp.hr/two/other")
	if err := g.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := callLookup(t, s, "hr.other"); err != nil {
		t.Errorf("call of a revived tool: %v", err)
	}
}

func TestKillTenantAndAgent(t *testing.T) {
	r := newRegistry(t)
	r.register("corp.hr/one", "1.0.0", newUpstream(t, "one").URL, lookupTool, true)
	r.apply(state.PutTenant{Tenant: state.Tenant{Name: "benefits", Owners: []string{"bob"}}, By: "admin", At: t0})
	other := r.key("benefitsaaaa", "benefits", nil, nil)
	g, srv := newGateway(t, r)

	for _, tc := range []struct {
		kind state.KillKind
		name string
	}{
		{state.KillAgent, "apikey:" + testKeyID},
		{state.KillTenant, "payroll"},
	} {
		t.Run(string(tc.kind), func(t *testing.T) {
			r.kill(tc.kind, tc.name, "compromised credentials")
			if err := g.Sync(); err != nil {
				t.Fatal(err)
			}
			for _, era := range eras {
				s := connect(t, srv.URL+"/mcp", era) // testKey: tenant payroll
				if err := callLookup(t, s, "hr.lookup"); !killedBy(err, tc.kind, tc.name, "compromised credentials") {
					t.Errorf("%s: killed caller's call: err = %v", era, err)
				}
				if names := toolNames(t, s); len(names) != 0 {
					t.Errorf("%s: killed caller lists %v; want nothing", era, names)
				}
				if res, err := s.ListPrompts(t.Context(), nil); err != nil || len(res.Prompts) != 0 {
					t.Errorf("%s: killed caller's prompts = %+v, %v; want none", era, res, err)
				}
				o := connectWith(t, srv.URL+"/mcp", era, bearer(other))
				if err := callLookup(t, o, "hr.lookup"); err != nil {
					t.Errorf("%s: another tenant's call: %v", era, err)
				}
			}
			r.revive(tc.kind, tc.name)
			if err := g.Sync(); err != nil {
				t.Fatal(err)
			}
			if err := callLookup(t, connect(t, srv.URL+"/mcp", "2026-07-28"), "hr.lookup"); err != nil {
				t.Errorf("call after revive: %v", err)
			}
		})
	}
}

func TestKillServerStopsResourcesAndPrompts(t *testing.T) {
	r := newRegistry(t)
	r.register("corp.hr/rich", "1.0.0", richUpstream(t), lookupTool, true)
	r.register("corp.hr/rich2", "1.0.0", richUpstream(t), otherTool, true)
	g, srv := newGateway(t, r)
	const rich = "mcpmesh://hr/corp.hr%2Frich/"
	// Listed before the kill: prompts/get finds the name without listing again.
	s := connect(t, srv.URL+"/mcp", "2025-11-25")
	if pl, err := s.ListPrompts(t.Context(), nil); err != nil || len(pl.Prompts) != 2 {
		t.Fatalf("prompts before the kill = %+v, %v", pl, err)
	}
	r.kill(state.KillServer, "corp.hr/rich", "leaks salaries")
	if err := g.Sync(); err != nil {
		t.Fatal(err)
	}
	killed := func(what string, err error) {
		t.Helper()
		if !killedBy(err, state.KillServer, "corp.hr/rich", "leaks salaries") {
			t.Errorf("%s: err = %v; want -32012", what, err)
		}
	}
	_, err := s.ReadResource(t.Context(), &mcp.ReadResourceParams{URI: rich + "test://readme"})
	killed("/mcp resources/read", err)
	_, err = s.GetPrompt(t.Context(), &mcp.GetPromptParams{Name: "hr.rich.greet", Arguments: map[string]string{"who": "x"}})
	killed("/mcp prompts/get", err)
	_, err = s.Complete(t.Context(), &mcp.CompleteParams{Ref: &mcp.CompleteReference{Type: "ref/resource", URI: rich + "test://items/{id}"}, Argument: mcp.CompleteParamsArgument{Name: "id", Value: "1"}})
	killed("/mcp resource completion", err)
	rl, err := s.ListResources(t.Context(), nil)
	if err != nil || len(rl.Resources) != 1 || !strings.Contains(rl.Resources[0].URI, "rich2") {
		t.Errorf("/mcp resources = %+v, %v; want rich2's only", rl, err)
	}
	pl, err := s.ListPrompts(t.Context(), nil)
	if err != nil || len(pl.Prompts) != 1 || pl.Prompts[0].Name != "hr.greet" {
		t.Errorf("/mcp prompts = %+v, %v; want rich2's only, named without its server", pl, err)
	}
	if _, err := s.ReadResource(t.Context(), &mcp.ReadResourceParams{URI: "mcpmesh://hr/corp.hr%2Frich2/test://readme"}); err != nil {
		t.Errorf("the other server's resource: %v", err)
	}

	per := connect(t, srv.URL+"/mcp/s/hr/corp.hr/rich", "2026-07-28")
	_, err = per.ReadResource(t.Context(), &mcp.ReadResourceParams{URI: "test://readme"})
	killed("per-server resources/read", err)
	_, err = per.GetPrompt(t.Context(), &mcp.GetPromptParams{Name: "greet", Arguments: map[string]string{"who": "x"}})
	killed("per-server prompts/get", err)
	if rl, err := per.ListResources(t.Context(), nil); err != nil || len(rl.Resources) != 0 {
		t.Errorf("per-server resources = %+v, %v; want none", rl, err)
	}
	if tl, err := per.ListResourceTemplates(t.Context(), nil); err != nil || len(tl.ResourceTemplates) != 0 {
		t.Errorf("per-server templates = %+v, %v; want none", tl, err)
	}
	if pl, err := per.ListPrompts(t.Context(), nil); err != nil || len(pl.Prompts) != 0 {
		t.Errorf("per-server prompts = %+v, %v; want none", pl, err)
	}

	r.revive(state.KillServer, "corp.hr/rich")
	if err := g.Sync(); err != nil {
		t.Fatal(err)
	}
	if _, err := per.ReadResource(t.Context(), &mcp.ReadResourceParams{URI: "test://readme"}); err != nil {
		t.Errorf("read after revive: %v", err)
	}
}

// TestKillIsCheckedBeforePolicy: a switch refuses what the policy would
// allow, and what it would deny says killed, not denied.
func TestKillIsCheckedBeforePolicy(t *testing.T) {
	r := newRegistry(t)
	r.register("corp.hr/one", "1.0.0", newUpstream(t, "one").URL, lookupTool, true)
	r.setPolicies(`permit (principal, action == Action::"list", resource);`)
	g, srv := newGateway(t, r)
	r.kill(state.KillServer, "corp.hr/one", "incident")
	if err := g.Sync(); err != nil {
		t.Fatal(err)
	}
	s := connect(t, srv.URL+"/mcp", "2026-07-28")
	if err := callLookup(t, s, "hr.lookup"); !killedBy(err, state.KillServer, "corp.hr/one", "incident") {
		t.Errorf("call denied by policy and killed: err = %v; want killed", err)
	}
	if n := testutil.ToFloat64(g.metrics.decisions.WithLabelValues("hr", "call", "deny")); n != 0 {
		t.Errorf("the policy decided a killed call (%v denials)", n)
	}
}

func ExampleCodeKilled() {
	fmt.Println(CodeKilled)
	// Output: -32012
}

// TestKillNotifiesListChanged: pulling and releasing a switch sends
// tools/list_changed to the sessions of /mcp and of the server's own
// endpoint, in both eras (2026-07-28 through subscriptions/listen).
func TestKillNotifiesListChanged(t *testing.T) {
	r := newRegistry(t)
	r.register("corp.hr/one", "1.0.0", newUpstream(t, "one").URL, lookupTool, true)
	g, srv := newGateway(t, r)

	type watcher struct {
		name    string
		changes atomic.Int64
	}
	var watchers []*watcher
	for _, era := range []string{"2026-07-28", "2025-11-25"} {
		for _, path := range []string{"/mcp", "/mcp/s/hr/corp.hr/one"} {
			w := &watcher{name: era + " " + path}
			c := mcp.NewClient(&mcp.Implementation{Name: "agent", Version: "1"}, &mcp.ClientOptions{
				ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) { w.changes.Add(1) },
			})
			hc := &http.Client{Transport: headerTransport{http.Header{"Authorization": {"Bearer " + testKey}}}}
			s, err := c.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: srv.URL + path, HTTPClient: hc}, &mcp.ClientSessionOptions{ProtocolVersion: era})
			if err != nil {
				t.Fatalf("connect %s: %v", w.name, err)
			}
			t.Cleanup(func() { s.Close() })
			watchers = append(watchers, w)
		}
	}
	// A 2026-07-28 client opens its listen stream in the background; a
	// notification sent before it is open would be lost, so each flip
	// is repeated until every watcher has seen one.
	notified := func(what string, flip func(), want int64) {
		t.Helper()
		waitFor(t, what+" notifies every session", func() (bool, string) {
			flip()
			if err := g.Sync(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond)
			var seen []string
			all := true
			for _, w := range watchers {
				n := w.changes.Load()
				seen = append(seen, fmt.Sprintf("%s: %d", w.name, n))
				all = all && n >= want
			}
			return all, strings.Join(seen, "; ")
		})
	}
	killed := false
	notified("a kill", func() {
		if killed {
			r.revive(state.KillTool, "corp.hr/one/lookup")
		}
		r.kill(state.KillTool, "corp.hr/one/lookup", "incident")
		killed = true
	}, 1)
	for _, w := range watchers {
		w.changes.Store(0)
	}
	notified("a revive", func() {
		if !killed {
			r.kill(state.KillTool, "corp.hr/one/lookup", "incident")
		}
		r.revive(state.KillTool, "corp.hr/one/lookup")
		killed = false
	}, 1)
}
