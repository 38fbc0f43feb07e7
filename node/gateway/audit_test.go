package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpmesh/mcpmesh/node/audit"
	"github.com/mcpmesh/mcpmesh/node/policy"
	"github.com/mcpmesh/mcpmesh/node/upstream"
	"github.com/mcpmesh/mcpmesh/registry/card"
	"github.com/mcpmesh/mcpmesh/registry/state"
)

const (
	wipeDirTool   = `{"name":"wipe","inputSchema":{"type":"object"}}`
	brokenDirTool = `{"name":"broken","inputSchema":{"type":"object"}}`
	nodeSPIFFEID  = "spiffe://hr.example.corp/mcpmesh/node/n1"
	auditPolicies = `permit (principal, action, resource);
@id("no-wipe")
forbid (principal, action == Action::"call", resource in Tool::"corp.hr/directory/wipe");`
)

// auditUpstream serves lookup (which reports records and its own cost),
// wipe and broken (which answers isError), and counts calls.
func auditUpstream(t *testing.T, calls *atomic.Int64) string {
	t.Helper()
	s := mcp.NewServer(&mcp.Implementation{Name: "audited", Version: "1"}, nil)
	for _, raw := range []string{lookupTool, wipeDirTool, brokenDirTool} {
		var def mcp.Tool
		if err := json.Unmarshal([]byte(raw), &def); err != nil {
			t.Fatal(err)
		}
		s.AddTool(&def, func(_ context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			calls.Add(1)
			switch req.Params.Name {
			case "broken":
				return &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: "no such row"}}}, nil
			case "lookup":
				return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "three rows"}},
					Meta: mcp.Meta{MetaRecords: 3, MetaCost: 0.25}}, nil
			}
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "ok"}}}, nil
		})
	}
	srv := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{Stateless: true}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// newAuditedGateway is newGateway with an auditor.
func newAuditedGateway(t *testing.T, r *registry, a Auditor, args *audit.Arguments) *httptest.Server {
	t.Helper()
	pool := upstream.NewPool(upstream.Config{CallTimeout: 10 * time.Second})
	t.Cleanup(func() { pool.Close() })
	g := New(Config{Namespace: "hr"}, r.fsm, pool, WithClock(func() time.Time { return t0.Add(time.Hour) }), WithAudit(a, args, nodeSPIFFEID))
	t.Cleanup(func() { g.Close() })
	if err := g.Sync(); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(authenticated(r, g))
	t.Cleanup(srv.Close)
	return srv
}

func openAuditLog(t *testing.T) *audit.Log {
	t.Helper()
	l, err := audit.Open(audit.Config{Dir: t.TempDir(), Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// TestEveryCallIsAudited: each outcome of a tools/call leaves one record
// that says who, what, why and how, in both eras.
func TestEveryCallIsAudited(t *testing.T) {
	r := newRegistry(t)
	var calls atomic.Int64
	raw := json.RawMessage(strings.Replace(string(cardJSON("corp.hr/directory", "1.0.0", auditUpstream(t, &calls), lookupTool+","+wipeDirTool+","+brokenDirTool)),
		`"costPerCall":0`, `"costPerCall":0.5,"currency":"EUR"`, 1))
	r.apply(state.SubmitVersion{Card: raw, By: "ci", At: t0})
	r.apply(state.Transition{Server: "corp.hr/directory", Version: "1.0.0", To: card.StateApproved, By: "rev", At: t0})
	r.setPolicies(auditPolicies)
	tvs, err := r.fsm.ToolVersions("corp.hr/directory", "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	hashes := map[string]string{}
	for _, tv := range tvs {
		hashes[tv.Name] = tv.Hash
	}
	pols, err := r.fsm.Policies()
	if err != nil {
		t.Fatal(err)
	}
	set, err := policy.Compile(pols.Files)
	if err != nil {
		t.Fatal(err)
	}
	log := openAuditLog(t)
	args, err := audit.NewArguments([]byte(strings.Repeat("k", 32)), []string{"corp.hr/directory/wipe"})
	if err != nil {
		t.Fatal(err)
	}
	srv := newAuditedGateway(t, r, log, args)

	const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, era := range []string{"2026-07-28", "2025-11-25"} {
		t.Run(era, func(t *testing.T) {
			s := connectWith(t, srv.URL+"/mcp", era, http.Header{"Authorization": {"Bearer " + testKey}, "Traceparent": {traceparent}})
			before, _ := log.Head()
			type want struct {
				tool    string
				outcome audit.Outcome
				code    int
			}
			var wants []want
			do := func(name string, args map[string]any, meta mcp.Meta, w want) *mcp.CallToolResult {
				t.Helper()
				res, err := s.CallTool(t.Context(), &mcp.CallToolParams{Name: name, Arguments: args, Meta: meta})
				var je *jsonrpc.Error
				if (w.code == 0) != (err == nil) || (err != nil && (!errors.As(err, &je) || int(je.Code) != w.code)) {
					t.Fatalf("call %s: err = %v, want code %d", name, err, w.code)
				}
				wants = append(wants, w)
				return res
			}
			ok := do("hr.lookup", map[string]any{"q": "x"}, mcp.Meta{MetaWorkflowID: "wf-42"}, want{"corp.hr/directory/lookup", audit.OutcomeOK, 0})
			do("hr.lookup", map[string]any{}, nil, want{"corp.hr/directory/lookup", audit.OutcomeInvalidArguments, int(jsonrpc.CodeInvalidParams)})
			do("hr.wipe", map[string]any{"all": true}, nil, want{"corp.hr/directory/wipe", audit.OutcomeDenied, CodeDenied})
			do("hr.broken", nil, nil, want{"corp.hr/directory/broken", audit.OutcomeToolError, 0})
			do("hr.lookup", map[string]any{"q": "x"}, mcp.Meta{MetaVersion: "9.9.9"}, want{"hr.lookup", audit.OutcomeRefused, int(jsonrpc.CodeInvalidParams)})
			do("hr.nosuchtool", nil, nil, want{"hr.nosuchtool", audit.OutcomeRefused, int(jsonrpc.CodeInvalidParams)})

			recs, err := log.Query(t.Context(), audit.Filter{})
			if err != nil {
				t.Fatal(err)
			}
			var mine []audit.Record
			for _, rec := range recs {
				if rec.Seq > before {
					mine = append(mine, rec)
				}
			}
			if len(mine) != len(wants) {
				t.Fatalf("%d records for %d calls: %+v", len(mine), len(wants), mine)
			}
			for i, rec := range mine {
				w := wants[i]
				if rec.Tool != w.tool || rec.Outcome != w.outcome || rec.ErrorCode != w.code {
					t.Errorf("record %d: tool %q outcome %q code %d; want %q %q %d", i, rec.Tool, rec.Outcome, rec.ErrorCode, w.tool, w.outcome, w.code)
				}
				if rec.Kind != audit.KindCall || rec.Principal != "apikey:"+testKeyID || rec.Tenant != "payroll" || rec.AuthMethod != "api-key" ||
					len(rec.Actors) != 2 || rec.Actors[1] != nodeSPIFFEID || rec.Namespace != "hr" || rec.Node != "n1" {
					t.Errorf("record %d: who = %q %q %q %v in %q on %q", i, rec.Principal, rec.Tenant, rec.AuthMethod, rec.Actors, rec.Namespace, rec.Node)
				}
				if rec.RequestID == "" || rec.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" {
					t.Errorf("record %d: request id %q, trace id %q", i, rec.RequestID, rec.TraceID)
				}
				if rec.DurationMs < 0 || (w.outcome == audit.OutcomeOK && rec.DurationMs == 0) || rec.Time.IsZero() {
					t.Errorf("record %d: duration %v time %v", i, rec.DurationMs, rec.Time)
				}
			}
			// The successful call: what, why, impact and cost.
			okRec := mine[0]
			if okRec.RequestID != ok.Meta[MetaRequestID] || okRec.WorkflowID != "wf-42" || okRec.CalledAs != "hr.lookup" {
				t.Errorf("ok record: request id %q (result says %v), workflow %q, calledAs %q", okRec.RequestID, ok.Meta[MetaRequestID], okRec.WorkflowID, okRec.CalledAs)
			}
			if okRec.Server != "corp.hr/directory" || okRec.Version != "1.0.0" || okRec.DefinitionHash != hashes["lookup"] || okRec.DefinitionHash == "" {
				t.Errorf("ok record: %s@%s definition %q, want the pinned %q", okRec.Server, okRec.Version, okRec.DefinitionHash, hashes["lookup"])
			}
			if okRec.Decision != "allow" || okRec.PolicyVersion != set.Digest() {
				t.Errorf("ok record: decision %q policy version %q", okRec.Decision, okRec.PolicyVersion)
			}
			if okRec.ResultBytes == 0 || okRec.Records == nil || *okRec.Records != 3 || okRec.Cost != 0.25 || okRec.CostSource != "upstream" || okRec.Currency != "EUR" {
				t.Errorf("ok record: %d bytes, records %v, cost %v %s from %q; want the upstream's 3 records and 0.25 EUR", okRec.ResultBytes, okRec.Records, okRec.Cost, okRec.Currency, okRec.CostSource)
			}
			if len(okRec.ArgumentsHMAC) != 64 || okRec.Arguments != nil {
				t.Errorf("ok record: arguments hmac %q, raw %s; want the hash only", okRec.ArgumentsHMAC, okRec.Arguments)
			}
			// The denial: its deciding policy, and the raw arguments the BU asked for.
			deny := mine[2]
			if deny.Decision != "deny" || len(deny.Policies) != 1 || deny.Policies[0] != "no-wipe" || !strings.Contains(deny.Reason, "no-wipe") || deny.PolicyVersion != okRec.PolicyVersion {
				t.Errorf("denial record: decision %q policies %v reason %q", deny.Decision, deny.Policies, deny.Reason)
			}
			if string(deny.Arguments) != `{"all":true}` || deny.Cost != 0 {
				t.Errorf("denial record: arguments %s cost %v; want the raw arguments of a listed tool, no cost", deny.Arguments, deny.Cost)
			}
			if broken := mine[3]; broken.Cost != 0.5 || broken.CostSource != "card" {
				t.Errorf("tool error record: cost %v from %q, want the card's 0.5", broken.Cost, broken.CostSource)
			}
			if invalid := mine[1]; invalid.Reason == "" || invalid.Cost != 0 || invalid.Decision != "allow" {
				t.Errorf("invalid arguments record: reason %q cost %v decision %q", invalid.Reason, invalid.Cost, invalid.Decision)
			}
		})
	}
	if rep, err := log.Verify(t.Context(), nil); err != nil || !rep.OK {
		t.Errorf("Verify: %+v %v", rep, err)
	}
}

// failingAuditor refuses every record.
type failingAuditor struct {
	appendErr, err error
	appends        atomic.Int64
}

func (f *failingAuditor) Append(context.Context, audit.Record) (uint64, error) {
	f.appends.Add(1)
	return 0, f.appendErr
}

func (f *failingAuditor) Err() error { return f.err }

// TestAuditFailureFailsTheCall: no answer goes out without its record, and
// a node whose log takes no records calls no upstream.
func TestAuditFailureFailsTheCall(t *testing.T) {
	r := newRegistry(t)
	var calls atomic.Int64
	r.register("corp.hr/directory", "1.0.0", auditUpstream(t, &calls), lookupTool, true)
	code := func(err error) int {
		var je *jsonrpc.Error
		if errors.As(err, &je) {
			return int(je.Code)
		}
		return 0
	}

	broken := &failingAuditor{appendErr: errors.New("disk full")}
	s := connect(t, newAuditedGateway(t, r, broken, nil).URL+"/mcp", "2026-07-28")
	_, err := s.CallTool(t.Context(), &mcp.CallToolParams{Name: "hr.lookup", Arguments: map[string]any{"q": "x"}})
	if code(err) != CodeAuditUnavailable || !strings.Contains(err.Error(), "disk full") || !strings.Contains(err.Error(), "withheld") {
		t.Errorf("call whose record fails: err = %v, want %d saying the result is withheld and why", err, CodeAuditUnavailable)
	}
	if broken.appends.Load() != 1 || calls.Load() != 1 {
		t.Errorf("%d appends, %d upstream calls; want the call made and its record tried once", broken.appends.Load(), calls.Load())
	}

	down := &failingAuditor{err: audit.ErrClosed}
	s = connect(t, newAuditedGateway(t, r, down, nil).URL+"/mcp", "2026-07-28")
	for _, name := range []string{"hr.lookup", "hr.nosuchtool"} {
		_, err = s.CallTool(t.Context(), &mcp.CallToolParams{Name: name, Arguments: map[string]any{"q": "x"}})
		if code(err) != CodeAuditUnavailable {
			t.Errorf("%s with the log down: err = %v, want %d", name, err, CodeAuditUnavailable)
		}
	}
	if calls.Load() != 1 || down.appends.Load() != 0 {
		t.Errorf("with the log down: %d upstream calls, %d appends; want no new upstream call", calls.Load(), down.appends.Load())
	}
}

// TestCardCostDefaultsToUSD: a card that prices its calls without naming a
// currency costs in USD, as the card format says, so its calls count
// against a USD budget.
func TestCardCostDefaultsToUSD(t *testing.T) {
	r := newRegistry(t)
	raw := json.RawMessage(strings.Replace(string(cardJSON("corp.hr/directory", "1.0.0", newUpstream(t, "v1").URL, lookupTool)),
		`"costPerCall":0`, `"costPerCall":0.5`, 1))
	r.apply(state.SubmitVersion{Card: raw, By: "ci", At: t0})
	r.apply(state.Transition{Server: "corp.hr/directory", Version: "1.0.0", To: card.StateApproved, By: "rev", At: t0})
	g, _ := newGateway(t, r)
	rt := g.agg.route("hr.lookup")
	if rt == nil {
		t.Fatal("hr.lookup is not served")
	}
	if e := rt.newest; e.cost != 0.5 || e.currency != "USD" {
		t.Errorf("entry cost %v %q, want 0.5 USD", e.cost, e.currency)
	}
}
