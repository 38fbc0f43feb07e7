package state

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var testBinding = ApprovalBinding{
	Caller: "apikey:aaaaaaaaaaaa", Tenant: "payroll",
	Server: "corp.finance/ledger", Tool: "transfer_funds", Version: "1.0.0", DefinitionHash: "sha256:def",
	ArgumentsDigest: "1f2e", PolicyVersion: "0123456789abcdef",
}

func requestAt(id string, at time.Time) RequestApproval {
	return RequestApproval{ID: id, ApprovalBinding: testBinding, Policies: []string{"big-transfers"}, Node: "n1", At: at, ExpiresAt: at.Add(15 * time.Minute)}
}

func TestApprovalLifecycle(t *testing.T) {
	a := &applier{t: t, f: newTestFSM(t)}
	created := a.mustOK(requestAt("apr-aaaaaaaa", t0))
	if r := a.mustOK(requestAt("apr-aaaaaaaa", t0)); !r.Unchanged {
		t.Error("a retried request changed the approval")
	}
	other := requestAt("apr-aaaaaaaa", t0)
	other.ArgumentsDigest = "ffff"
	a.mustFail(other, KindConflict, "already exists for another call")

	// Nothing runs before a decision.
	a.mustFail(ConsumeApproval{ID: "apr-aaaaaaaa", ApprovalBinding: testBinding, Node: "n2", At: t0.Add(time.Second)}, KindConflict, "is pending, not approved")

	decided := a.mustOK(DecideApproval{ID: "apr-aaaaaaaa", Approve: true, By: "spiffe://hr.example.corp/admin/alice", Reason: "ok", At: t0.Add(time.Minute)})
	// Deny after approve is refused; so is approving twice.
	a.mustFail(DecideApproval{ID: "apr-aaaaaaaa", By: "spiffe://hr.example.corp/admin/bob", Reason: "no", At: t0.Add(2 * time.Minute)}, KindConflict, "is approved, not pending")

	// Binding mismatches are refused, each naming what differs.
	for field, mutate := range map[string]func(*ApprovalBinding){
		"caller":         func(b *ApprovalBinding) { b.Caller = "apikey:bbbbbbbbbbbb" },
		"tool":           func(b *ApprovalBinding) { b.Tool = "get_balance" },
		"tool version":   func(b *ApprovalBinding) { b.DefinitionHash = "sha256:other" },
		"arguments":      func(b *ApprovalBinding) { b.ArgumentsDigest = "ffff" },
		"policy version": func(b *ApprovalBinding) { b.PolicyVersion = "fedcba9876543210" },
	} {
		b := testBinding
		mutate(&b)
		a.mustFail(ConsumeApproval{ID: "apr-aaaaaaaa", ApprovalBinding: b, Node: "n2", At: t0.Add(3 * time.Minute)}, KindConflict, "its "+field+" differs")
	}

	consumed := a.mustOK(ConsumeApproval{ID: "apr-aaaaaaaa", ApprovalBinding: testBinding, Node: "n2", At: t0.Add(3 * time.Minute)})
	if consumed.Unchanged {
		t.Fatal("consume changed nothing")
	}
	// The same command again (a retried forward) is not a second use;
	// any other is.
	if r := a.mustOK(ConsumeApproval{ID: "apr-aaaaaaaa", ApprovalBinding: testBinding, Node: "n2", At: t0.Add(3 * time.Minute)}); !r.Unchanged {
		t.Error("a retried consume changed the approval")
	}
	a.mustFail(ConsumeApproval{ID: "apr-aaaaaaaa", ApprovalBinding: testBinding, Node: "n3", At: t0.Add(4 * time.Minute)}, KindConflict, "it was already used, on n2")

	got, err := a.f.Approval("apr-aaaaaaaa")
	if err != nil {
		t.Fatal(err)
	}
	want := Approval{ID: "apr-aaaaaaaa", ApprovalBinding: testBinding, Policies: []string{"big-transfers"}, State: ApprovalConsumed,
		RequestedOn: "n1", CreatedAt: t0, ExpiresAt: t0.Add(15 * time.Minute),
		DecidedBy: "spiffe://hr.example.corp/admin/alice", DecidedAt: t0.Add(time.Minute), Reason: "ok",
		ConsumedOn: "n2", ConsumedAt: t0.Add(3 * time.Minute), CreateIndex: created.Index, ModifyIndex: consumed.Index}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("approval (-want +got):\n%s", diff)
	}
	if decided.Index >= consumed.Index {
		t.Errorf("indexes: decided %d, consumed %d", decided.Index, consumed.Index)
	}
}

func TestApprovalDenyAndExpiry(t *testing.T) {
	a := &applier{t: t, f: newTestFSM(t)}
	a.mustOK(requestAt("apr-denied00", t0))
	a.mustFail(DecideApproval{ID: "apr-denied00", By: "token:bootstrap", At: t0.Add(time.Minute)}, KindInvalid, "reason is required to deny")
	a.mustOK(DecideApproval{ID: "apr-denied00", By: "token:bootstrap", Reason: "above the limit", At: t0.Add(time.Minute)})
	a.mustFail(DecideApproval{ID: "apr-denied00", Approve: true, By: "spiffe://hr.example.corp/admin/bob", At: t0.Add(2 * time.Minute)}, KindConflict, `denied by token:bootstrap: "above the limit"`)
	a.mustFail(ConsumeApproval{ID: "apr-denied00", ApprovalBinding: testBinding, Node: "n1", At: t0.Add(2 * time.Minute)}, KindConflict, "is denied, not approved")

	// Expiry is decided by the command's time, never a clock: deciding
	// at ExpiresAt is too late, a moment before is not.
	a.mustOK(requestAt("apr-late0000", t0))
	a.mustFail(DecideApproval{ID: "apr-late0000", Approve: true, By: "token:bootstrap", At: t0.Add(15 * time.Minute)}, KindConflict, "is expired, not pending")
	a.mustOK(DecideApproval{ID: "apr-late0000", Approve: true, By: "token:bootstrap", At: t0.Add(15*time.Minute - time.Nanosecond)})
	// Approved in time, but used too late.
	a.mustFail(ConsumeApproval{ID: "apr-late0000", ApprovalBinding: testBinding, Node: "n1", At: t0.Add(16 * time.Minute)}, KindConflict, "is expired, not approved; it expired at")
	ap, _ := a.f.Approval("apr-late0000")
	if ap.State != ApprovalApproved || ap.StateAt(t0.Add(16*time.Minute)) != ApprovalExpired || ap.StateAt(t0) != ApprovalApproved {
		t.Errorf("stored %s, at +16m %s, at t0 %s", ap.State, ap.StateAt(t0.Add(16*time.Minute)), ap.StateAt(t0))
	}

	a.mustFail(DecideApproval{ID: "apr-nothere0", Approve: true, By: "token:bootstrap", At: t0}, KindNotFound, "does not exist")
	a.mustFail(ConsumeApproval{ID: "apr-nothere0", ApprovalBinding: testBinding, At: t0}, KindNotFound, "does not exist")
	a.mustFail(DecideApproval{ID: "../x", Approve: true, By: "token:bootstrap", At: t0}, KindInvalid, "want apr-")
	bad := requestAt("apr-badtimes", t0)
	bad.ExpiresAt = t0
	a.mustFail(bad, KindInvalid, "is not after")
	bad = requestAt("apr-nocaller", t0)
	bad.Caller = ""
	a.mustFail(bad, KindInvalid, "caller is required")
}

// TestSelfApprovalRefused: the caller's own identity cannot decide its
// call, whichever way, while another administrator can.
func TestSelfApprovalRefused(t *testing.T) {
	a := &applier{t: t, f: newTestFSM(t)}
	req := requestAt("apr-selfself", t0)
	req.Caller = "spiffe://hr.example.corp/ops/alice"
	a.mustOK(req)
	for _, by := range []string{"spiffe://hr.example.corp/ops/alice", "spiffe://hr.example.corp/ops/alice/"} {
		a.mustFail(DecideApproval{ID: "apr-selfself", Approve: true, By: by, At: t0.Add(time.Second)}, KindConflict, "made the call and cannot decide it")
		a.mustFail(DecideApproval{ID: "apr-selfself", By: by, Reason: "x", At: t0.Add(time.Second)}, KindConflict, "made the call and cannot decide it")
	}
	a.mustOK(DecideApproval{ID: "apr-selfself", Approve: true, By: "spiffe://hr.example.corp/ops/bob", At: t0.Add(time.Second)})
}

func TestApprovalsPruneAndSnapshot(t *testing.T) {
	a := &applier{t: t, f: newTestFSM(t)}
	a.mustOK(requestAt("apr-old00000", t0))
	a.mustOK(requestAt("apr-new00000", t0.Add(time.Hour)))
	a.mustOK(DecideApproval{ID: "apr-new00000", Approve: true, By: "token:bootstrap", At: t0.Add(time.Hour + time.Minute)})
	want, _ := a.f.Approvals()
	if len(want) != 2 {
		t.Fatalf("approvals = %+v", want)
	}

	snap, err := a.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	other := &applier{t: t, f: newTestFSM(t)}
	other.mustOK(requestAt("apr-stale000", t0))
	if err := other.f.Restore(nopCloser{bytes.NewReader(sink.Bytes())}); err != nil {
		t.Fatal(err)
	}
	got, _ := other.f.Approvals()
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("approvals after restoring a snapshot (-want +got):\n%s", diff)
	}

	// Pruning drops what expired before the cut, and only that.
	a.mustOK(PruneApprovals{Before: t0.Add(30 * time.Minute)})
	if _, err := a.f.Approval("apr-old00000"); !errors.Is(err, ErrNotFound) {
		t.Errorf("pruned approval: err = %v", err)
	}
	if _, err := a.f.Approval("apr-new00000"); err != nil {
		t.Errorf("unexpired approval after prune: %v", err)
	}
	if r := a.mustOK(PruneApprovals{Before: t0.Add(30 * time.Minute)}); !r.Unchanged {
		t.Error("a prune with nothing to prune changed the state")
	}
}
