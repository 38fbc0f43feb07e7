package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/raft"

	"github.com/mcpmesh/mcpmesh/registry/card"
)

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func newTestFSM(t *testing.T) *FSM {
	t.Helper()
	f, err := Open("state", WithFS(vfs.NewMem()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func testCard(name, version string) json.RawMessage {
	return json.RawMessage(`{"name":"` + name + `","description":"d","version":"` + version + `",
	"_meta":{"io.mcpmesh/governance":{"owner":"o","team":"t","dataClassification":"internal","riskTier":"low","costPerCall":0.5,
	"upstream":{"transport":"streamable-http","url":"http://127.0.0.1:9/mcp"}},
	"io.mcpmesh/tools":[{"name":"b_tool","inputSchema":{"type":"object"}},{"name":"a_tool","inputSchema":{"type":"object","properties":{}}}]}}`)
}

// applier feeds commands to an FSM at increasing indexes, as Raft would.
type applier struct {
	t     *testing.T
	f     *FSM
	index uint64
}

func (a *applier) apply(cmd any) any {
	a.t.Helper()
	data, err := Encode(cmd)
	if err != nil {
		a.t.Fatal(err)
	}
	a.index++
	return a.f.Apply(&raft.Log{Index: a.index, Term: 1, Type: raft.LogCommand, Data: data})
}

func (a *applier) mustOK(cmd any) ApplyResult {
	a.t.Helper()
	res := a.apply(cmd)
	r, ok := res.(ApplyResult)
	if !ok {
		a.t.Fatalf("apply %T: got %v, want success", cmd, res)
	}
	return r
}

func (a *applier) mustFail(cmd any, kind Kind, substr string) {
	a.t.Helper()
	res := a.apply(cmd)
	e, ok := res.(*Error)
	if !ok {
		a.t.Fatalf("apply %T: got %#v, want a %s error", cmd, res, kind)
	}
	if e.Kind != kind || !strings.Contains(e.Message, substr) {
		a.t.Fatalf("apply %T: got %s %q, want %s containing %q", cmd, e.Kind, e.Message, kind, substr)
	}
}

func TestSubmitStoresCardToolsAndHashes(t *testing.T) {
	a := &applier{t: t, f: newTestFSM(t)}
	raw := testCard("corp.hr/directory", "1.0.0")
	a.mustOK(SubmitVersion{Card: raw, By: "alice", At: t0})

	sv, err := a.f.ServerVersion("corp.hr/directory", "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	if sv.State != card.StateSubmitted || sv.SubmittedBy != "alice" || !sv.SubmittedAt.Equal(t0) {
		t.Errorf("got state %s by %s at %s", sv.State, sv.SubmittedBy, sv.SubmittedAt)
	}
	// Stored compacted (encoding/json compacts RawMessage) but
	// canonically identical, so every pinned hash holds.
	gotHash, _ := card.CanonicalHash(sv.Card)
	wantHash, _ := card.CanonicalHash(raw)
	if gotHash != wantHash || sv.CardHash != wantHash {
		t.Errorf("card hash: stored card %s, CardHash %s, want %s", gotHash, sv.CardHash, wantHash)
	}
	if sv.Governance.RiskTier != "low" || sv.Governance.CostPerCall != 0.5 {
		t.Errorf("governance = %+v", sv.Governance)
	}
	tvs, err := a.f.ToolVersions("corp.hr/directory", "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	if len(tvs) != 2 || tvs[0].Name != "a_tool" || tvs[1].Name != "b_tool" {
		t.Fatalf("tool versions = %+v, want a_tool and b_tool in name order", tvs)
	}
	for _, tv := range tvs {
		want, _ := card.CanonicalHash(tv.Definition)
		if tv.Hash != want || !strings.HasPrefix(tv.Hash, "sha256:") {
			t.Errorf("%s: hash %s, want %s", tv.Name, tv.Hash, want)
		}
	}
}

func TestVersionsAreImmutable(t *testing.T) {
	a := &applier{t: t, f: newTestFSM(t)}
	a.mustOK(SubmitVersion{Card: testCard("corp.hr/directory", "1.0.0"), By: "alice", At: t0})
	// The same card again (even reformatted) is an idempotent no-op.
	var v any
	json.Unmarshal(testCard("corp.hr/directory", "1.0.0"), &v)
	reformatted, _ := json.MarshalIndent(v, "", "    ")
	if r := a.mustOK(SubmitVersion{Card: reformatted, By: "bob", At: t0.Add(time.Hour)}); !r.Unchanged {
		t.Errorf("identical resubmission: Unchanged = false")
	}
	changed := bytes.Replace(testCard("corp.hr/directory", "1.0.0"), []byte(`"description":"d"`), []byte(`"description":"other"`), 1)
	a.mustFail(SubmitVersion{Card: changed, By: "mallory", At: t0}, KindConflict, "versions are immutable")
	sv, _ := a.f.ServerVersion("corp.hr/directory", "1.0.0")
	if sv.SubmittedBy != "alice" || sv.Description != "d" {
		t.Errorf("refused resubmission changed the version: %+v", sv)
	}
}

func TestLifecycle(t *testing.T) {
	a := &applier{t: t, f: newTestFSM(t)}
	const s = "corp.finance/ledger"
	a.mustOK(SubmitVersion{Card: testCard(s, "1.0.0"), By: "ci", At: t0})
	a.mustOK(SubmitVersion{Card: testCard(s, "2.0.0"), By: "ci", At: t0})

	a.mustFail(Transition{Server: s, Version: "1.0.0", To: card.StateDeprecated, By: "rev", At: t0, Deprecation: &card.Deprecation{Sunset: t0.Add(48 * time.Hour), Replacement: "2.0.0"}}, KindConflict, "submitted")
	a.mustOK(Transition{Server: s, Version: "1.0.0", To: card.StateApproved, By: "rev", At: t0.Add(time.Minute), Reason: "reviewed"})
	a.mustFail(Transition{Server: s, Version: "1.0.0", To: card.StateDeprecated, By: "rev", At: t0, Deprecation: &card.Deprecation{Sunset: t0.Add(48 * time.Hour), Replacement: "2.0.0"}}, KindConflict, "replacement 2.0.0 must be an approved version")
	a.mustFail(Transition{Server: s, Version: "1.0.0", To: card.StateDeprecated, By: "rev", At: t0}, KindInvalid, "sunset")
	a.mustOK(Transition{Server: s, Version: "2.0.0", To: card.StateApproved, By: "rev", At: t0.Add(2 * time.Minute)})
	dep := &card.Deprecation{Sunset: t0.Add(30 * 24 * time.Hour), Replacement: "2.0.0", Note: "use v2"}
	a.mustOK(Transition{Server: s, Version: "1.0.0", To: card.StateDeprecated, By: "rev", At: t0.Add(3 * time.Minute), Deprecation: dep})
	a.mustFail(Transition{Server: s, Version: "1.0.0", To: card.StateQuarantined, By: "rev", At: t0}, KindInvalid, "reason is required")
	a.mustOK(Transition{Server: s, Version: "1.0.0", To: card.StateRetired, By: "rev", At: t0.Add(4 * time.Minute)})
	a.mustFail(Transition{Server: s, Version: "1.0.0", To: card.StateApproved, By: "rev", At: t0.Add(5 * time.Minute)}, KindConflict, "retired")
	a.mustFail(Transition{Server: s, Version: "9.9.9", To: card.StateApproved, By: "rev", At: t0}, KindNotFound, "not registered")

	sv, _ := a.f.ServerVersion(s, "1.0.0")
	want := []card.Transition{
		{To: card.StateSubmitted, By: "ci", At: t0},
		{From: card.StateSubmitted, To: card.StateApproved, By: "rev", At: t0.Add(time.Minute), Reason: "reviewed"},
		{From: card.StateApproved, To: card.StateDeprecated, By: "rev", At: t0.Add(3 * time.Minute)},
		{From: card.StateDeprecated, To: card.StateRetired, By: "rev", At: t0.Add(4 * time.Minute)},
	}
	if diff := cmp.Diff(want, sv.History); diff != "" {
		t.Errorf("history (-want +got):\n%s", diff)
	}
	if sv.Deprecation == nil || sv.Deprecation.Replacement != "2.0.0" || !sv.Deprecation.DeprecatedAt.Equal(t0.Add(3*time.Minute)) {
		t.Errorf("deprecation = %+v", sv.Deprecation)
	}
	vs, _ := a.f.ServerVersions(s)
	if len(vs) != 2 || vs[0].Version != "1.0.0" || vs[1].Version != "2.0.0" {
		t.Errorf("versions not in semver order: %v", vs)
	}
}

func TestRetriedTransitionIsIdempotent(t *testing.T) {
	a := &applier{t: t, f: newTestFSM(t)}
	a.mustOK(SubmitVersion{Card: testCard("corp.hr/d", "1.0.0"), By: "ci", At: t0})
	cmd := Transition{Server: "corp.hr/d", Version: "1.0.0", To: card.StateApproved, By: "rev", At: t0.Add(time.Second)}
	a.mustOK(cmd)
	if r := a.mustOK(cmd); !r.Unchanged {
		t.Errorf("retried command: Unchanged = false")
	}
	// A different approval (another time) of an approved version is refused.
	cmd.At = cmd.At.Add(time.Second)
	a.mustFail(cmd, KindConflict, "approved")
	sv, _ := a.f.ServerVersion("corp.hr/d", "1.0.0")
	if len(sv.History) != 2 {
		t.Errorf("history has %d entries, want 2", len(sv.History))
	}
}

func TestTenants(t *testing.T) {
	a := &applier{t: t, f: newTestFSM(t)}
	a.mustOK(PutTenant{Tenant: Tenant{Name: "payroll", Owners: []string{"alice"}}, By: "admin", At: t0})
	a.mustOK(PutTenant{Tenant: Tenant{Name: "benefits", Owners: []string{"bob"}}, By: "admin", At: t0})
	if r := a.mustOK(PutTenant{Tenant: Tenant{Name: "payroll", Owners: []string{"alice"}}, By: "admin", At: t0.Add(time.Hour)}); !r.Unchanged {
		t.Error("identical put: Unchanged = false")
	}
	a.mustOK(PutTenant{Tenant: Tenant{Name: "payroll", Owners: []string{"alice", "carol"}}, By: "admin2", At: t0.Add(time.Hour)})
	a.mustFail(PutTenant{Tenant: Tenant{Name: "Bad Name", Owners: []string{"x"}}, By: "a", At: t0}, KindInvalid, "tenant name")
	a.mustFail(PutTenant{Tenant: Tenant{Name: "noowner"}, By: "a", At: t0}, KindInvalid, "owner")

	ts, err := a.f.Tenants()
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 2 || ts[0].Name != "benefits" || ts[1].Name != "payroll" {
		t.Fatalf("tenants = %+v", ts)
	}
	p := ts[1]
	if p.CreatedBy != "admin" || !p.CreatedAt.Equal(t0) || !p.UpdatedAt.Equal(t0.Add(time.Hour)) || len(p.Owners) != 2 {
		t.Errorf("payroll = %+v", p)
	}
	if _, err := a.f.Tenant("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing tenant: err = %v, want ErrNotFound", err)
	}
}

func TestReplayedEntriesAreSkipped(t *testing.T) {
	dir := t.TempDir()
	f, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	a := &applier{t: t, f: f}
	a.mustOK(SubmitVersion{Card: testCard("corp.hr/d", "1.0.0"), By: "ci", At: t0})
	a.mustOK(Transition{Server: "corp.hr/d", Version: "1.0.0", To: card.StateApproved, By: "rev", At: t0})
	f.Close()

	// After a restart Raft may replay entries the state already holds.
	f, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.AppliedIndex() != 2 {
		t.Fatalf("applied index after reopen = %d, want 2", f.AppliedIndex())
	}
	a = &applier{t: t, f: f}
	a.mustOK(SubmitVersion{Card: testCard("corp.hr/d", "1.0.0"), By: "ci", At: t0})
	if r := a.mustOK(Transition{Server: "corp.hr/d", Version: "1.0.0", To: card.StateApproved, By: "rev", At: t0}); !r.Unchanged {
		t.Errorf("replayed entry was applied again")
	}
	sv, _ := f.ServerVersion("corp.hr/d", "1.0.0")
	if sv.State != card.StateApproved || len(sv.History) != 2 {
		t.Errorf("after replay: state %s, %d history entries", sv.State, len(sv.History))
	}
}

func TestUnknownCommandTypes(t *testing.T) {
	f := newTestFSM(t)
	res := f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: []byte{byte(IgnorableFlag | 0x33), '{', '}'}})
	if r, ok := res.(ApplyResult); !ok || !r.Unchanged {
		t.Errorf("ignorable unknown command: got %v, want a skipped success", res)
	}
	if f.AppliedIndex() != 1 {
		t.Errorf("applied index = %d, want 1", f.AppliedIndex())
	}
	defer func() {
		r := recover()
		if r == nil || !strings.Contains(r.(string), "unknown command type 51") {
			t.Errorf("unknown command: recovered %v, want a panic naming the type", r)
		}
	}()
	f.Apply(&raft.Log{Index: 2, Type: raft.LogCommand, Data: []byte{0x33, '{', '}'}})
}

func TestMalformedCommandIsRefused(t *testing.T) {
	f := newTestFSM(t)
	res := f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: []byte{byte(CmdTransition), '{'}})
	if e, ok := res.(*Error); !ok || e.Kind != KindInvalid {
		t.Errorf("got %v, want a KindInvalid error", res)
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	a := &applier{t: t, f: newTestFSM(t)}
	a.mustOK(SubmitVersion{Card: testCard("corp.hr/d", "1.0.0"), By: "ci", At: t0})
	a.mustOK(Transition{Server: "corp.hr/d", Version: "1.0.0", To: card.StateApproved, By: "rev", At: t0})
	a.mustOK(PutTenant{Tenant: Tenant{Name: "payroll", Owners: []string{"alice"}}, By: "admin", At: t0})

	var snap bytes.Buffer
	if err := a.f.WriteSnapshot(&snap); err != nil {
		t.Fatal(err)
	}
	idx, err := ReadSnapshot(bytes.NewReader(snap.Bytes()))
	if err != nil || idx != 3 {
		t.Fatalf("ReadSnapshot = %d, %v; want 3", idx, err)
	}

	other := &applier{t: t, f: newTestFSM(t)}
	other.mustOK(PutTenant{Tenant: Tenant{Name: "stale", Owners: []string{"x"}}, By: "admin", At: t0})
	other.mustOK(PutTenant{Tenant: Tenant{Name: "stale2", Owners: []string{"x"}}, By: "admin", At: t0})
	other.mustOK(PutTenant{Tenant: Tenant{Name: "stale3", Owners: []string{"x"}}, By: "admin", At: t0})
	other.mustOK(PutTenant{Tenant: Tenant{Name: "stale4", Owners: []string{"x"}}, By: "admin", At: t0})
	if err := other.f.Restore(nopCloser{bytes.NewReader(snap.Bytes())}); err != nil {
		t.Fatal(err)
	}
	if other.f.AppliedIndex() != 3 {
		t.Errorf("applied index after restore = %d, want 3", other.f.AppliedIndex())
	}
	want, _ := a.f.AllVersions()
	got, _ := other.f.AllVersions()
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("versions after restore (-want +got):\n%s", diff)
	}
	wt, _ := a.f.Tenants()
	gt, _ := other.f.Tenants()
	if diff := cmp.Diff(wt, gt); diff != "" {
		t.Errorf("tenants after restore (-want +got):\n%s", diff)
	}
}

func TestCorruptSnapshotChangesNothing(t *testing.T) {
	a := &applier{t: t, f: newTestFSM(t)}
	a.mustOK(PutTenant{Tenant: Tenant{Name: "payroll", Owners: []string{"alice"}}, By: "admin", At: t0})
	var snap bytes.Buffer
	a.f.WriteSnapshot(&snap)
	good := snap.Bytes()

	cases := map[string][]byte{
		"empty":      nil,
		"bad header": append([]byte("XX"), good[2:]...),
		"truncated":  good[:len(good)-10],
		"flipped":    flip(good, len(good)/2),
		"trailing":   append(bytes.Clone(good), 'x'),
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			target := &applier{t: t, f: newTestFSM(t)}
			target.mustOK(PutTenant{Tenant: Tenant{Name: "keep", Owners: []string{"k"}}, By: "admin", At: t0})
			err := target.f.Restore(nopCloser{bytes.NewReader(data)})
			if !errors.Is(err, ErrCorruptSnapshot) {
				t.Fatalf("Restore = %v, want ErrCorruptSnapshot", err)
			}
			if _, err := target.f.Tenant("keep"); err != nil {
				t.Errorf("state changed by a refused restore: %v", err)
			}
		})
	}
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0x01
	return c
}

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }

func FuzzReadSnapshot(f *testing.F) {
	fsm, err := Open("state", WithFS(vfs.NewMem()))
	if err != nil {
		f.Fatal(err)
	}
	a := &applier{t: &testing.T{}, f: fsm}
	data, _ := Encode(PutTenant{Tenant: Tenant{Name: "payroll", Owners: []string{"alice"}}, By: "admin", At: t0})
	a.f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: data})
	var snap bytes.Buffer
	fsm.WriteSnapshot(&snap)
	fsm.Close()
	f.Add(snap.Bytes())
	f.Add([]byte(snapshotMagic))
	f.Fuzz(func(t *testing.T, data []byte) {
		ReadSnapshot(bytes.NewReader(data)) // must not panic or allocate without bound
	})
}
