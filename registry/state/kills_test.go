package state

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestKillSwitches(t *testing.T) {
	a := &applier{t: t, f: newTestFSM(t)}
	const reason = "incident 4411: wrong balances"

	pulled := a.mustOK(PutKill{Kind: KillServer, Name: "corp.finance/ledger", Reason: reason, By: "alice", At: t0})
	if r := a.mustOK(PutKill{Kind: KillServer, Name: "corp.finance/ledger", Reason: reason, By: "bob", At: t0.Add(time.Minute)}); !r.Unchanged {
		t.Error("pulling a switch again with the same reason changed it")
	}
	k, err := a.f.Kill(KillServer, "corp.finance/ledger")
	if err != nil {
		t.Fatal(err)
	}
	want := Kill{Kind: KillServer, Name: "corp.finance/ledger", Reason: reason, By: "alice", At: t0, Index: pulled.Index}
	if diff := cmp.Diff(want, k); diff != "" {
		t.Errorf("stored switch (-want +got):\n%s", diff)
	}
	// A new reason replaces the old one, with its author.
	changed := a.mustOK(PutKill{Kind: KillServer, Name: "corp.finance/ledger", Reason: "incident 4411: still wrong", By: "bob", At: t0.Add(time.Hour)})
	if k, _ := a.f.Kill(KillServer, "corp.finance/ledger"); k.Reason != "incident 4411: still wrong" || k.By != "bob" || k.Index != changed.Index {
		t.Errorf("switch after a new reason = %+v", k)
	}

	a.mustOK(PutKill{Kind: KillTool, Name: "corp.finance/ledger/transfer_funds", Reason: reason, By: "alice", At: t0})
	a.mustOK(PutKill{Kind: KillTenant, Name: "payroll", Reason: reason, By: "alice", At: t0})
	a.mustOK(PutKill{Kind: KillAgent, Name: "spiffe://hr.example.corp/agent/x", Reason: reason, By: "alice", At: t0})
	a.mustOK(PutKill{Kind: KillAgent, Name: "apikey:aaaaaaaaaaaa", Reason: reason, By: "alice", At: t0})
	a.mustOK(PutKill{Kind: KillAgent, Name: "oidc:248289761001", Reason: reason, By: "alice", At: t0})
	a.mustOK(PutKill{Kind: KillAgent, Name: "anonymous", Reason: reason, By: "alice", At: t0})
	ks, err := a.f.Kills()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, k := range ks {
		got = append(got, string(k.Kind)+" "+k.Name)
	}
	wantList := []string{"agent anonymous", "agent apikey:aaaaaaaaaaaa", "agent oidc:248289761001", "agent spiffe://hr.example.corp/agent/x",
		"server corp.finance/ledger", "tenant payroll", "tool corp.finance/ledger/transfer_funds"}
	if diff := cmp.Diff(wantList, got); diff != "" {
		t.Errorf("Kills (-want +got):\n%s", diff)
	}

	a.mustOK(Revive{Kind: KillServer, Name: "corp.finance/ledger", By: "carol", At: t0.Add(2 * time.Hour)})
	if _, err := a.f.Kill(KillServer, "corp.finance/ledger"); !errors.Is(err, ErrNotFound) {
		t.Errorf("revived switch: err = %v, want ErrNotFound", err)
	}
	// The tool of the revived server stays killed: switches are independent.
	if _, err := a.f.Kill(KillTool, "corp.finance/ledger/transfer_funds"); err != nil {
		t.Errorf("tool switch after reviving its server: %v", err)
	}
	a.mustFail(Revive{Kind: KillServer, Name: "corp.finance/ledger", By: "carol", At: t0}, KindNotFound, "server corp.finance/ledger is not killed")
	a.mustFail(Revive{Kind: KillTenant, Name: "benefits", By: "carol", At: t0}, KindNotFound, "not killed")
}

func TestKillSwitchValidation(t *testing.T) {
	a := &applier{t: t, f: newTestFSM(t)}
	const reason = "incident 4411"
	for _, tc := range []struct {
		kind      KillKind
		name      string
		reason    string
		wantInMsg string
	}{
		{"process", "x", reason, "want tool, server, tenant or agent"},
		{"", "x", reason, "want tool, server, tenant or agent"},
		{KillServer, "", reason, "<namespace>/<server>"},
		{KillServer, "ledger", reason, "<namespace>/<server>"},
		{KillServer, "corp.finance/ledger/transfer_funds", reason, "<namespace>/<server>"},
		{KillTool, "corp.finance/ledger", reason, "<server>/<tool>"},
		{KillTool, "finance.transfer_funds", reason, "is not accepted"},
		{KillTool, "corp.finance/ledger/", reason, "<server>/<tool>"},
		{KillTool, "corp.finance/ledger/bad tool", reason, "<server>/<tool>"},
		{KillTenant, "Payroll", reason, "lowercase"},
		{KillTenant, "", reason, "tenant name"},
		{KillAgent, "", reason, "principal"},
		{KillAgent, "alice", reason, "want a principal id"},
		{KillAgent, "apikey:short", reason, "12 characters"},
		{KillAgent, "spiffe://", reason, "SPIFFE ID"},
		{KillAgent, "oidc:", reason, "want a principal id"},
		{KillAgent, "spiffe://hr.example.corp/agent/a b", reason, "spaces"},
		{KillServer, "corp.finance/ledger", "", "reason is required"},
		{KillServer, "corp.finance/ledger", "   ", "reason is required"},
		{KillServer, "corp.finance/ledger", "two\nlines", "control characters"},
		{KillServer, "corp.finance/ledger", "bell\a", "control characters"},
		{KillServer, "corp.finance/ledger", strings.Repeat("x", MaxKillReasonLen+1), "at most 1024"},
	} {
		a.mustFail(PutKill{Kind: tc.kind, Name: tc.name, Reason: tc.reason, By: "alice", At: t0}, KindInvalid, tc.wantInMsg)
	}
	a.mustOK(PutKill{Kind: KillServer, Name: "corp.finance/ledger", Reason: strings.Repeat("x", MaxKillReasonLen), By: "alice", At: t0})
	a.mustOK(PutKill{Kind: KillTool, Name: "corp.finance/ledger/ledger.v2-read", Reason: "naïve reason, 💥", By: "alice", At: t0})
	if ks, _ := a.f.Kills(); len(ks) != 2 {
		t.Errorf("Kills after refusals = %+v, want the 2 valid ones", ks)
	}
}

func TestKillSwitchesSurviveSnapshots(t *testing.T) {
	a := &applier{t: t, f: newTestFSM(t)}
	a.mustOK(PutKill{Kind: KillServer, Name: "corp.finance/ledger", Reason: "incident 4411", By: "alice", At: t0})
	a.mustOK(PutKill{Kind: KillAgent, Name: "apikey:aaaaaaaaaaaa", Reason: "leaked key", By: "alice", At: t0})
	want, _ := a.f.Kills()

	// Both a Raft snapshot and an operator's snapshot carry the switches.
	snap, err := a.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	var saved bytes.Buffer
	if err := a.f.WriteSnapshot(&saved); err != nil {
		t.Fatal(err)
	}
	for what, data := range map[string][]byte{"raft snapshot": sink.Bytes(), "operator snapshot": saved.Bytes()} {
		other := &applier{t: t, f: newTestFSM(t)}
		other.mustOK(PutKill{Kind: KillTenant, Name: "stale", Reason: "gone after restore", By: "x", At: t0})
		if err := other.f.Restore(nopCloser{bytes.NewReader(data)}); err != nil {
			t.Fatal(err)
		}
		got, _ := other.f.Kills()
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("kill switches after restoring a %s (-want +got):\n%s", what, diff)
		}
	}
}
