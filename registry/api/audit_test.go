package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/mcpmesh/mcpmesh/node/audit"
	"github.com/mcpmesh/mcpmesh/registry/cluster"
	"github.com/mcpmesh/mcpmesh/registry/state"
	"github.com/mcpmesh/mcpmesh/trust/ca"
	"github.com/mcpmesh/mcpmesh/trust/mtls"
	"github.com/mcpmesh/mcpmesh/trust/svid"
)

// newOneNodeCluster starts a single-replica cluster on loopback and waits
// until it leads.
func newOneNodeCluster(t *testing.T) *cluster.Cluster {
	t.Helper()
	td := spiffeid.RequireTrustDomainFromString("hr.example.corp")
	authority, err := ca.Init(t.TempDir()+"/ca", td)
	if err != nil {
		t.Fatal(err)
	}
	rot, err := svid.NewRotator(authority, spiffeid.RequireFromSegments(td, "mcpmesh", "node", "n1"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	authz := mtls.NodeAuthorizer(td, slog.New(slog.DiscardHandler))
	c, err := cluster.New(cluster.Config{
		NodeID: "n1", Listener: ln, Dir: t.TempDir(),
		ServerTLS:        mtls.ServerConfig(rot, authority.Bundle(), authz, "mcpmesh-node/1"),
		ClientTLS:        mtls.ClientConfig(rot, authority.Bundle(), authz, "mcpmesh-node/1"),
		Peers:            []cluster.Peer{{ID: "n1", Address: ln.Addr().String()}},
		HeartbeatTimeout: 100 * time.Millisecond, ElectionTimeout: 100 * time.Millisecond, LeaderLeaseTimeout: 50 * time.Millisecond,
		NoSync: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Shutdown() })
	for deadline := time.Now().Add(10 * time.Second); !c.IsLeader(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the one-node cluster elected no leader in 10s")
		}
	}
	return c
}

// memAuditor keeps records in memory, or fails every one with err.
type memAuditor struct {
	mu        sync.Mutex
	recs      []audit.Record
	err       error
	failAfter int // when > 0, appends fail once this many records are held
}

func (m *memAuditor) Append(_ context.Context, r audit.Record) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return 0, m.err
	}
	if m.failAfter > 0 && len(m.recs) >= m.failAfter {
		return 0, errors.New("disk full")
	}
	m.recs = append(m.recs, r)
	return uint64(len(m.recs)), nil
}

func (m *memAuditor) Query(_ context.Context, f audit.Filter) ([]audit.Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []audit.Record
	for _, r := range m.recs {
		if f.Match(r) {
			out = append(out, r)
		}
	}
	return out, nil
}

func (m *memAuditor) Export(ctx context.Context, f audit.Filter, fn func(audit.Record) error) error {
	recs, _ := m.Query(ctx, f)
	for _, r := range recs {
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

func (m *memAuditor) Verify(context.Context, []audit.Checkpoint) (audit.Report, error) {
	return audit.Report{OK: true}, nil
}

func (m *memAuditor) last(t *testing.T) audit.Record {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.recs) == 0 {
		t.Fatal("no audit record")
	}
	return m.recs[len(m.recs)-1]
}

// do sends an admin request as the bootstrap token's administrator.
func do(t *testing.T, h http.Handler, method, path, body string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	r = r.WithContext(WithPrincipal(r.Context(), Principal{ID: "token:bootstrap", Method: "token"}))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// TestAdminChangesAreAudited: every change through the admin API leaves a
// record of who did what to what and how it ended; a change whose record
// fails is answered with an error that says so.
func TestAdminChangesAreAudited(t *testing.T) {
	c := newOneNodeCluster(t)
	a := &memAuditor{}
	h := New(c, WithAudit(a, "hr", "n1"))

	if w := do(t, h, "POST", "/v1/tenants", `{"name":"payroll","owners":["alice@corp.example"]}`); w.Code != http.StatusCreated {
		t.Fatalf("create tenant: HTTP %d %s", w.Code, w.Body)
	}
	rec := a.last(t)
	if rec.Kind != audit.KindAdmin || rec.Namespace != "hr" || rec.Principal != "token:bootstrap" || rec.AuthMethod != "token" ||
		rec.Action != "tenant.put" || rec.Target != "payroll" || rec.Outcome != audit.OutcomeOK || rec.ErrorCode != 0 || rec.Remote == "" {
		t.Errorf("record of a tenant put: %+v", rec)
	}
	do(t, h, "POST", "/v1/tenants", `{"name":"payroll","owners":["alice@corp.example"]}`)
	if rec := a.last(t); rec.Outcome != audit.OutcomeOK || !strings.Contains(rec.Reason, "unchanged") {
		t.Errorf("record of a put that changed nothing: %+v", rec)
	}
	if w := do(t, h, "POST", "/v1/registry/servers/corp.hr%2Fnone/versions/1.0.0/approve", `{"reason":"looks fine"}`); w.Code != http.StatusNotFound {
		t.Fatalf("approve an unknown version: HTTP %d %s", w.Code, w.Body)
	}
	if rec := a.last(t); rec.Action != "registry.approve" || rec.Target != "corp.hr/none@1.0.0" || rec.Outcome != audit.OutcomeError ||
		rec.ErrorCode != http.StatusNotFound || !strings.Contains(rec.Reason, "looks fine") || !strings.Contains(rec.Reason, "not registered") {
		t.Errorf("record of a refused approval: %+v", rec)
	}
	n := len(a.recs)
	if w := do(t, h, "GET", "/v1/tenants", ""); w.Code != http.StatusOK || len(a.recs) != n {
		t.Errorf("a read made a record (HTTP %d, %d records, want %d)", w.Code, len(a.recs), n)
	}

	// Each change is on record before it is proposed, as requested, under
	// the id its outcome's record repeats.
	for i := 0; i+1 < len(a.recs); i += 2 {
		intent, outcome := a.recs[i], a.recs[i+1]
		if intent.Outcome != audit.OutcomeRequested || intent.RequestID == "" || intent.RequestID != outcome.RequestID ||
			intent.Action != outcome.Action || intent.Target != outcome.Target || outcome.Outcome == audit.OutcomeRequested {
			t.Errorf("records %d and %d are not a change's intent and outcome:\n%+v\n%+v", i, i+1, intent, outcome)
		}
	}
	if len(a.recs)%2 != 0 || len(a.recs) < 6 {
		t.Errorf("%d records for 3 changes, want an intent and an outcome each", len(a.recs))
	}

	// The log cannot take the intent: the change is not made.
	a.err = errors.New("disk full")
	w := do(t, h, "POST", "/v1/tenants", `{"name":"benefits","owners":["bob@corp.example"]}`)
	if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "tenant.put benefits was not done: the audit log cannot take its record (disk full)") {
		t.Errorf("change whose intent cannot be recorded: HTTP %d %s", w.Code, w.Body)
	}
	if _, err := c.FSM.Tenant("benefits"); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("a change that could not be recorded was made: %v", err)
	}
	// The log takes the intent, then fails: the change is made, and the
	// answer says it is not fully on record.
	a.err, a.failAfter = nil, len(a.recs)+1
	w = do(t, h, "POST", "/v1/tenants", `{"name":"benefits","owners":["bob@corp.example"]}`)
	if w.Code != http.StatusInternalServerError || !strings.Contains(w.Body.String(), "tenant.put benefits was done, but its audit record could not be written") {
		t.Errorf("change whose outcome's record fails: HTTP %d %s", w.Code, w.Body)
	}
	if last := a.recs[len(a.recs)-1]; last.Outcome != audit.OutcomeRequested || last.Target != "benefits" {
		t.Errorf("the change's intent is not on record: %+v", last)
	}
}

// asAdmin serves h with every request authenticated as the bootstrap
// token's administrator, as adminauth's middleware would.
func asAdmin(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), Principal{ID: "token:bootstrap", Method: "token"})))
	})
}

// TestAuditLogAPI: the node's log is queried, exported and verified
// against the checkpoints in Raft through the admin API and its client.
func TestAuditLogAPI(t *testing.T) {
	c := newOneNodeCluster(t)
	l, err := audit.Open(audit.Config{Dir: t.TempDir(), Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	srv := httptest.NewServer(asAdmin(New(c, WithAudit(l, "hr", "n1"))))
	defer srv.Close()
	cl, err := NewClient(ClientConfig{Addr: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	base := time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)
	for i := range 6 {
		rec := audit.Record{Kind: audit.KindCall, Principal: "apikey:a", Tenant: []string{"payroll", "benefits"}[i%2], Tool: "corp.hr/directory/lookup",
			CalledAs: "hr.lookup", Outcome: audit.OutcomeOK, Time: base.Add(time.Duration(i) * time.Hour)}
		if i == 5 {
			rec.Outcome = audit.OutcomeDenied
		}
		rec.RequestID = fmt.Sprintf("rid-%d", i)
		if _, err := l.Append(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	got, err := cl.AuditQuery(ctx, AuditQuery{Tenant: "payroll", Since: base.Add(time.Hour), Limit: 5})
	if err != nil {
		t.Fatal(err)
	}
	if got.Node != "n1" || len(got.Records) != 2 || got.Records[0].Seq != 3 || got.Records[1].Seq != 5 {
		t.Errorf("query tenant payroll since 01:00: %+v", got)
	}
	if got, err := cl.AuditQuery(ctx, AuditQuery{Outcome: "denied", Tool: "hr.lookup"}); err != nil || len(got.Records) != 1 || got.Records[0].Seq != 6 {
		t.Errorf("query denied: %+v, %v", got, err)
	}
	var apiErr *Error
	if _, err := cl.AuditQuery(ctx, AuditQuery{Outcome: "fine"}); !errors.As(err, &apiErr) || apiErr.Status != http.StatusBadRequest || !strings.Contains(err.Error(), "outcome") {
		t.Errorf("query with an unknown outcome: %v", err)
	}
	if got, err := cl.AuditQuery(ctx, AuditQuery{RequestID: "rid-4"}); err != nil || len(got.Records) != 1 || got.Records[0].Seq != 5 || got.Records[0].RequestID != "rid-4" {
		t.Errorf("query request id rid-4: %+v, %v; want record 5 alone", got, err)
	}
	if got, err := cl.AuditQuery(ctx, AuditQuery{RequestID: "rid-4", Tenant: "benefits"}); err != nil || len(got.Records) != 0 {
		t.Errorf("query request id rid-4 of tenant benefits (it is payroll's): %+v, %v; want none", got, err)
	}
	var ids strings.Builder
	if err := cl.AuditExport(ctx, AuditQuery{RequestID: "rid-2"}, &ids); err != nil || strings.Count(ids.String(), "\n") != 1 || !strings.Contains(ids.String(), `"requestId":"rid-2"`) {
		t.Errorf("export request id rid-2: %q, %v; want its one record", ids.String(), err)
	}
	for _, bad := range []struct{ raw, want string }{
		{"request_id=", "empty"},
		{"request_id=" + strings.Repeat("x", MaxRequestIDBytes+1), "longer than any request id"},
		{"request_id=a%0Ab", "control character"},
		{"request_id=%FF", "UTF-8"},
	} {
		resp, err := http.Get(srv.URL + "/v1/audit?" + bad.raw)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "request_id") || !strings.Contains(string(body), bad.want) {
			t.Errorf("GET /v1/audit?%.40s: %d %s; want 400 saying request_id: %s", bad.raw, resp.StatusCode, body, bad.want)
		}
	}
	var out strings.Builder
	if err := cl.AuditExport(ctx, AuditQuery{Until: base.Add(3 * time.Hour), Limit: 1}, &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("export until 03:00: %d lines, want 3:\n%s", len(lines), out.String())
	}
	for i, line := range lines {
		var rec audit.Record
		if err := json.Unmarshal([]byte(line), &rec); err != nil || rec.Seq != uint64(i+1) || len(rec.Hash) != 64 {
			t.Errorf("export line %d: %s (%v)", i, line, err)
		}
	}

	// Verify against what Raft holds: first the true head, then a forged one.
	seq, head := l.Head()
	for _, cp := range []state.CheckpointAudit{{Node: "n1", Seq: seq, Head: head, At: base}, {Node: "n1", Seq: 2, Head: strings.Repeat("0", 64), At: base}} {
		cmd, err := state.Encode(cp)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Apply(ctx, cmd); err != nil {
			t.Fatal(err)
		}
	}
	cps, err := cl.AuditCheckpoints(ctx, "")
	if err != nil || len(cps) != 2 || cps[1].Seq != seq {
		t.Fatalf("checkpoints: %+v, %v", cps, err)
	}
	rep, err := cl.AuditVerify(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Node != "n1" || rep.OK || rep.Checkpoints != 2 || len(rep.Problems) != 1 || rep.Problems[0].Seq != 2 || rep.Problems[0].Kind != audit.ProblemCheckpoint {
		t.Errorf("verify against a true and a forged checkpoint: %+v", rep)
	}
}

// TestRecordOfCommittedButNotApplied: a write committed in Raft whose
// application on this node outlasted the wait is recorded as made, with
// its index; a refused one as refused; an identical one as unchanged.
func TestRecordOfCommittedButNotApplied(t *testing.T) {
	late := errors.New("context deadline exceeded")
	reason, err := recordOf("off-boarding", state.ApplyResult{Index: 42}, fmt.Errorf("write committed at index 42 but not yet applied on this node: %w", late))
	if err != nil || !strings.Contains(reason, "committed at index 42") || !strings.HasPrefix(reason, "off-boarding; ") {
		t.Errorf("committed, not applied: %q %v; want a change made, with its index", reason, err)
	}
	refused := &state.Error{Kind: state.KindConflict, Message: "stale"}
	if reason, err := recordOf("", state.ApplyResult{}, refused); err != refused || reason != "" {
		t.Errorf("refused: %q %v; want the refusal recorded", reason, err)
	}
	if reason, err := recordOf("", state.ApplyResult{Index: 7, Unchanged: true}, nil); err != nil || reason != "unchanged (already so)" {
		t.Errorf("unchanged: %q %v", reason, err)
	}
}
