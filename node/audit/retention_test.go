package audit

import (
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

func TestPruneKeepsTheChainVerifiable(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l, _ := newTestLog(t)
	var cps []Checkpoint
	for i := range 10 {
		r := callRecord(i)
		r.Time = base.Add(time.Duration(i) * 24 * time.Hour)
		mustAppend(t, l, r)
		seq, head := l.Head()
		cps = append(cps, Checkpoint{Seq: seq, Head: head})
	}
	n, err := l.Prune(t.Context(), base.Add(4*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if n != 4 {
		t.Fatalf("Prune removed %d records, want the 4 older than the cutoff", n)
	}
	recs, err := l.Query(t.Context(), Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 6 || recs[0].Seq != 5 {
		t.Fatalf("after pruning: %d records from %d; want 6 from record 5", len(recs), recs[0].Seq)
	}
	rep := mustVerify(t, l, cps)
	if !rep.OK || rep.Anchor != 4 || rep.Records != 6 || rep.CheckpointsPruned != 3 || rep.Checkpoints != 7 {
		t.Errorf("Verify after pruning: %+v; want OK from anchor 4, checkpoints 1-3 pruned, 4-10 checked", rep)
	}
	// Pruning again with the same cutoff removes nothing; new records chain on.
	if n, err := l.Prune(t.Context(), base.Add(4*24*time.Hour)); err != nil || n != 0 {
		t.Errorf("second Prune = %d, %v", n, err)
	}
	mustAppend(t, l, callRecord(10))
	if rep := mustVerify(t, l, cps); !rep.OK || rep.Last != 11 {
		t.Errorf("Verify after pruning and appending: %+v", rep)
	}
	// A forged anchor is seen by its checkpoint.
	if err := l.db.Set(keyAnchor, position{seq: 4, hash: [32]byte{1}}.encode(), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if rep := mustVerify(t, l, cps); rep.OK {
		t.Error("a forged anchor passed Verify with the checkpoints")
	}
}

func TestPruneEverything(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l, _ := newTestLog(t)
	for i := range 3 {
		r := callRecord(i)
		r.Time = base
		mustAppend(t, l, r)
	}
	_, head := l.Head()
	if n, err := l.Prune(t.Context(), base.Add(time.Hour)); err != nil || n != 3 {
		t.Fatalf("Prune = %d, %v; want all 3", n, err)
	}
	rep := mustVerify(t, l, []Checkpoint{{Seq: 3, Head: head}})
	if !rep.OK || rep.Records != 0 || rep.Anchor != 3 || rep.Head != head {
		t.Errorf("Verify of a fully pruned log: %+v", rep)
	}
	if seq := mustAppend(t, l, callRecord(3)); seq != 4 {
		t.Errorf("next record after pruning everything got seq %d, want 4", seq)
	}
	if rep := mustVerify(t, l, nil); !rep.OK {
		t.Errorf("Verify: %+v", rep)
	}
}

// TestPruneKeepsEvidence: retention stops at a record that does not
// verify, so it never removes the evidence of tampering.
func TestPruneKeepsEvidence(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l, _ := newTestLog(t)
	for i := range 6 {
		r := callRecord(i)
		r.Time = base
		mustAppend(t, l, r)
	}
	tp := tamperer{t, l.db}
	e := tp.get(3)
	e.body = changeOutcome(e.body)
	tp.set(RecordKey(3), encodeEntry(e))
	if n, err := l.Prune(t.Context(), base.Add(time.Hour)); err != nil || n != 2 {
		t.Fatalf("Prune = %d, %v; want it to stop before the modified record 3", n, err)
	}
	rep := mustVerify(t, l, nil)
	if rep.OK || len(rep.Problems) != 1 || rep.Problems[0].Seq != 3 || rep.Problems[0].Kind != ProblemModified {
		t.Errorf("Verify after pruning: %+v; want record 3 still reported modified", rep)
	}
}
