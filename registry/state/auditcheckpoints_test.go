package state

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func head(i int) string { return fmt.Sprintf("%064x", i) }

func TestAuditCheckpoints(t *testing.T) {
	a := &applier{t: t, f: newTestFSM(t)}
	a.mustOK(CheckpointAudit{Node: "n1", Seq: 10, Head: head(10), At: t0})
	a.mustOK(CheckpointAudit{Node: "n2", Seq: 3, Head: head(3), At: t0})
	a.mustOK(CheckpointAudit{Node: "n1", Seq: 25, Head: head(25), At: t0.Add(time.Minute)})
	if r := a.mustOK(CheckpointAudit{Node: "n1", Seq: 10, Head: head(10), At: t0.Add(time.Hour)}); !r.Unchanged {
		t.Error("the same checkpoint again changed the state")
	}
	// The same record with another hash: the node rewrote its history.
	a.mustFail(CheckpointAudit{Node: "n1", Seq: 10, Head: head(11), At: t0}, KindConflict, "rewritten")
	for _, bad := range []struct {
		cmd  CheckpointAudit
		want string
	}{
		{CheckpointAudit{Node: "N 1", Seq: 1, Head: head(1), At: t0}, "node id"},
		{CheckpointAudit{Node: "n1", Seq: 0, Head: head(1), At: t0}, "record number 0"},
		{CheckpointAudit{Node: "n1", Seq: 1, Head: "abc", At: t0}, "hex SHA-256"},
		{CheckpointAudit{Node: "n1", Seq: 1, Head: head(1)}, "time"},
	} {
		a.mustFail(bad.cmd, KindInvalid, bad.want)
	}

	cps, err := a.f.AuditCheckpoints("n1")
	if err != nil {
		t.Fatal(err)
	}
	if len(cps) != 2 || cps[0].Seq != 10 || cps[0].Head != head(10) || cps[1].Seq != 25 || cps[1].Index == 0 {
		t.Fatalf("n1's checkpoints = %+v", cps)
	}
	heads, err := a.f.AuditHeads()
	if err != nil {
		t.Fatal(err)
	}
	if len(heads) != 2 || heads[0].Node != "n1" || heads[0].Seq != 25 || heads[1].Node != "n2" || heads[1].Seq != 3 {
		t.Fatalf("heads = %+v", heads)
	}
	// A node id that is a prefix of another's does not see its checkpoints.
	a.mustOK(CheckpointAudit{Node: "n10", Seq: 1, Head: head(1), At: t0})
	if cps, _ := a.f.AuditCheckpoints("n1"); len(cps) != 2 {
		t.Errorf("n1 sees %d checkpoints after n10's first", len(cps))
	}
}

func TestAuditCheckpointsAreBounded(t *testing.T) {
	a := &applier{t: t, f: newTestFSM(t)}
	for i := 1; i <= maxAuditCheckpoints+10; i++ {
		a.mustOK(CheckpointAudit{Node: "n1", Seq: uint64(i * 100), Head: head(i), At: t0})
	}
	cps, err := a.f.AuditCheckpoints("n1")
	if err != nil {
		t.Fatal(err)
	}
	if len(cps) != maxAuditCheckpoints || cps[0].Seq != 1100 || cps[len(cps)-1].Seq != uint64((maxAuditCheckpoints+10)*100) {
		t.Fatalf("%d checkpoints kept, from %d to %d; want the newest %d", len(cps), cps[0].Seq, cps[len(cps)-1].Seq, maxAuditCheckpoints)
	}
	if !strings.Contains(CmdCheckpointAudit.String(), "checkpoint-audit") {
		t.Errorf("command name %q", CmdCheckpointAudit)
	}
}
