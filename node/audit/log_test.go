package audit

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// newTestLog opens a log in a temporary directory, closed at cleanup.
func newTestLog(t testing.TB, opts ...Option) (*Log, string) {
	t.Helper()
	dir := t.TempDir()
	l, err := Open(Config{Dir: dir, Node: "n1"}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, dir
}

// callRecord is a plausible record of call i.
func callRecord(i int) Record {
	return Record{
		Kind: KindCall, Namespace: "hr", Principal: fmt.Sprintf("apikey:agent%d", i%3), Tenant: []string{"payroll", "benefits"}[i%2],
		Tool: "corp.hr/directory/lookup", CalledAs: "hr.lookup", Server: "corp.hr/directory", Version: "1.0.0",
		DefinitionHash: "sha256:abc", RequestID: fmt.Sprintf("req-%d", i), Decision: "allow", PolicyVersion: "sha256:def",
		Outcome: OutcomeOK, DurationMs: 1.5, ResultBytes: 120, Cost: 0.0005, Currency: "USD", CostSource: "card",
	}
}

func mustAppend(t testing.TB, l *Log, r Record) uint64 {
	t.Helper()
	seq, err := l.Append(t.Context(), r)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	return seq
}

func mustVerify(t *testing.T, l *Log, cps []Checkpoint) Report {
	t.Helper()
	rep, err := l.Verify(t.Context(), cps)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return rep
}

func TestAppendBuildsAChain(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.FixedZone("CET", 3600))
	l, _ := newTestLog(t, WithClock(func() time.Time { return at }))
	for i := range 3 {
		if seq := mustAppend(t, l, callRecord(i)); seq != uint64(i+1) {
			t.Fatalf("record %d got seq %d", i, seq)
		}
	}
	recs, err := l.Query(t.Context(), Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 {
		t.Fatalf("Query returned %d records, want 3", len(recs))
	}
	prev := hex.EncodeToString(make([]byte, 32))
	for i, r := range recs {
		if r.Seq != uint64(i+1) || r.Prev != prev || len(r.Hash) != 64 {
			t.Errorf("record %d: seq %d prev %s hash %s; want seq %d linked to %s", i, r.Seq, r.Prev, r.Hash, i+1, prev)
		}
		if r.Node != "n1" || !r.Time.Equal(at) || r.Time.Location() != time.UTC {
			t.Errorf("record %d: node %q time %v; want n1 and %v in UTC", i, r.Node, r.Time, at)
		}
		want := callRecord(i)
		want.Seq, want.Prev, want.Hash, want.Node, want.Time = r.Seq, r.Prev, r.Hash, "n1", at.UTC()
		if diff := cmp.Diff(want, r); diff != "" {
			t.Errorf("record %d as read back (-appended +read):\n%s", i, diff)
		}
		prev = r.Hash
	}
	if seq, hash := l.Head(); seq != 3 || hash != recs[2].Hash {
		t.Errorf("Head() = %d %s, want 3 %s", seq, hash, recs[2].Hash)
	}
	if rep := mustVerify(t, l, []Checkpoint{{Seq: 2, Head: recs[1].Hash}}); !rep.OK || rep.Records != 3 || rep.Checkpoints != 1 {
		t.Errorf("Verify of an intact chain: %+v", rep)
	}
}

// TestTimeIsRFC3339NanoUTC pins the JSON form of times that exports rely on.
func TestTimeIsRFC3339NanoUTC(t *testing.T) {
	at := time.Date(2026, 3, 1, 13, 0, 0, 5, time.FixedZone("CET", 3600))
	l, _ := newTestLog(t, WithClock(func() time.Time { return at }))
	mustAppend(t, l, callRecord(0))
	it, err := l.db.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	if !it.SeekGE(RecordKey(1)) {
		t.Fatal("record 1 not stored")
	}
	e, err := decodeEntry(it.Value())
	if err != nil {
		t.Fatal(err)
	}
	if want := `"time":"2026-03-01T12:00:00.000000005Z"`; !strings.Contains(string(e.body), want) {
		t.Errorf("stored body %s lacks %s", e.body, want)
	}
}

// TestGroupCommit: concurrent appends share commits, every one gets its
// own seq, and the chain they form verifies.
func TestGroupCommit(t *testing.T) {
	reg := prometheus.NewRegistry()
	l, _ := newTestLog(t, WithMetrics(reg))
	const writers, each = 32, 20
	var mu sync.Mutex
	seen := map[uint64]bool{}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				seq, err := l.Append(t.Context(), callRecord(w*each+i))
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if seen[seq] {
					t.Errorf("seq %d given twice", seq)
				}
				seen[seq] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(seen) != writers*each {
		t.Fatalf("%d distinct seqs, want %d", len(seen), writers*each)
	}
	commits := testutil.CollectAndCount(reg, "mcpmesh_audit_commit_seconds")
	if commits != 1 {
		t.Fatalf("commit histogram series = %d", commits)
	}
	batches := histogramCount(t, reg, "mcpmesh_audit_batch_records")
	if batches >= writers*each {
		t.Errorf("%d commits for %d records from %d concurrent writers: appends are not grouped", batches, writers*each, writers)
	}
	t.Logf("%d records in %d commits", writers*each, batches)
	if got := testutil.ToFloat64(l.metrics.records.WithLabelValues("call")); got != writers*each {
		t.Errorf("records counter = %v, want %d", got, writers*each)
	}
	if rep := mustVerify(t, l, nil); !rep.OK || rep.Records != writers*each {
		t.Errorf("Verify: %+v", rep)
	}
}

func histogramCount(t *testing.T, reg *prometheus.Registry, name string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}

// TestCrashKeepsAcknowledgedRecords: a crash at any moment of a load of
// appends keeps every record whose Append returned, and the recovered
// chain verifies and takes new records.
func TestCrashKeepsAcknowledgedRecords(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	fs := vfs.NewCrashableMem()
	l, err := Open(Config{Dir: "/audit", Node: "n1"}, WithFS(fs))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var mu sync.Mutex
	acked := map[uint64]string{}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				r := callRecord(i)
				r.RequestID = fmt.Sprintf("w%d-%d", w, i)
				seq, err := l.Append(ctx, r)
				if err != nil {
					return
				}
				mu.Lock()
				acked[seq] = r.RequestID
				mu.Unlock()
			}
		})
	}
	ackedCount := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked)
	}
	for crash := range 5 {
		// Let the load run on for a random number of records; the crash
		// lands wherever the committer is then.
		target := ackedCount() + 1 + rng.IntN(200)
		for deadline := time.Now().Add(30 * time.Second); ackedCount() < target; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("crash %d: the load acknowledged %d records, not %d, in 30s", crash, ackedCount(), target)
			}
		}
		mu.Lock()
		want := make(map[uint64]string, len(acked))
		for k, v := range acked {
			want[k] = v
		}
		mu.Unlock()
		crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: []int{0, 50, 100}[rng.IntN(3)], RNG: rng})
		rl, err := Open(Config{Dir: "/audit", Node: "n1"}, WithFS(crashed))
		if err != nil {
			t.Fatalf("crash %d: reopen: %v", crash, err)
		}
		got := map[uint64]string{}
		if err := rl.Export(t.Context(), Filter{}, func(r Record) error { got[r.Seq] = r.RequestID; return nil }); err != nil {
			t.Fatal(err)
		}
		for seq, id := range want {
			if got[seq] != id {
				t.Errorf("crash %d: acknowledged record %d (%s) recovered as %q", crash, seq, id, got[seq])
			}
		}
		rep := mustVerify(t, rl, nil)
		if !rep.OK {
			t.Errorf("crash %d: the recovered chain does not verify: %+v", crash, rep)
		}
		// The recovered log goes on from its head.
		seq := mustAppend(t, rl, callRecord(0))
		if rep := mustVerify(t, rl, nil); !rep.OK || seq != rep.Last {
			t.Errorf("crash %d: after appending record %d to the recovered log: %+v", crash, seq, rep)
		}
		if err := rl.Close(); err != nil {
			t.Fatal(err)
		}
		t.Logf("crash %d: %d acknowledged, %d recovered", crash, len(want), len(got))
	}
	cancel()
	wg.Wait()
	if len(acked) == 0 {
		t.Fatal("no append was acknowledged")
	}
}

// TestCrashCloneLosesUnsynced guards the crash test: without fsync, a
// crash must be able to lose records, or the test above proves nothing.
func TestCrashCloneLosesUnsynced(t *testing.T) {
	fs := vfs.NewCrashableMem()
	l, err := Open(Config{Dir: "/audit", Node: "n1", NoSync: true}, WithFS(fs))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	mustAppend(t, l, callRecord(0))
	rl, err := Open(Config{Dir: "/audit", Node: "n1"}, WithFS(fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})))
	if err != nil {
		t.Fatal(err)
	}
	defer rl.Close()
	if recs, _ := rl.Query(t.Context(), Filter{}); len(recs) != 0 {
		t.Fatalf("an unsynced record survived a crash that keeps no unsynced data: %+v", recs)
	}
}

func TestClose(t *testing.T) {
	l, err := Open(Config{Dir: t.TempDir(), Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	// Appends racing Close either land or fail with ErrClosed; none hangs.
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			if _, err := l.Append(t.Context(), callRecord(i)); err != nil && !errors.Is(err, ErrClosed) {
				t.Errorf("Append during Close: %v", err)
			}
		})
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if _, err := l.Append(t.Context(), callRecord(0)); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close = %v, want ErrClosed", err)
	}
	if _, err := l.Query(t.Context(), Filter{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Query after Close = %v, want ErrClosed", err)
	}
	if err := l.Err(); !errors.Is(err, ErrClosed) {
		t.Errorf("Err after Close = %v", err)
	}
	if err := l.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close = %v, want ErrClosed", err)
	}
}

// TestReopenContinuesTheChain: a restarted node appends after its head.
func TestReopenContinuesTheChain(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(Config{Dir: dir, Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, l, callRecord(0))
	mustAppend(t, l, callRecord(1))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, err = Open(Config{Dir: dir, Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if seq := mustAppend(t, l, callRecord(2)); seq != 3 {
		t.Errorf("first append after reopening got seq %d, want 3", seq)
	}
	if rep := mustVerify(t, l, nil); !rep.OK || rep.Records != 3 {
		t.Errorf("Verify: %+v", rep)
	}
}

func TestQuery(t *testing.T) {
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	l, _ := newTestLog(t)
	for i := range 10 {
		r := callRecord(i)
		r.Time = base.Add(time.Duration(i) * time.Hour)
		if i%4 == 0 {
			r.Outcome = OutcomeDenied
		}
		mustAppend(t, l, r)
	}
	mustAppend(t, l, Record{Kind: KindAdmin, Principal: "token:bootstrap", Action: "registry.approve", Target: "corp.hr/directory@1.0.0", Outcome: OutcomeOK, Time: base.Add(20 * time.Hour)})
	seqs := func(f Filter) []uint64 {
		t.Helper()
		recs, err := l.Query(t.Context(), f)
		if err != nil {
			t.Fatal(err)
		}
		var out []uint64
		for _, r := range recs {
			out = append(out, r.Seq)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		f    Filter
		want []uint64
	}{
		{"all", Filter{}, []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}},
		{"principal", Filter{Principal: "apikey:agent1"}, []uint64{2, 5, 8}},
		{"tenant", Filter{Tenant: "benefits"}, []uint64{2, 4, 6, 8, 10}},
		{"outcome", Filter{Outcome: OutcomeDenied}, []uint64{1, 5, 9}},
		{"tool by id", Filter{Tool: "corp.hr/directory/lookup", Outcome: OutcomeDenied}, []uint64{1, 5, 9}},
		{"tool as called", Filter{Tool: "hr.lookup", Tenant: "payroll"}, []uint64{1, 3, 5, 7, 9}},
		{"tool by server", Filter{Tool: "corp.hr/directory", Limit: 2}, []uint64{9, 10}},
		{"time", Filter{Since: base.Add(2 * time.Hour), Until: base.Add(5 * time.Hour)}, []uint64{3, 4, 5}},
		{"kind", Filter{Kind: KindAdmin}, []uint64{11}},
		{"newest first under a limit", Filter{Limit: 3}, []uint64{9, 10, 11}},
		{"request id", Filter{RequestID: "req-3"}, []uint64{4}},
		{"request id and outcome", Filter{RequestID: "req-4", Outcome: OutcomeDenied}, []uint64{5}},
		{"request id of another outcome", Filter{RequestID: "req-3", Outcome: OutcomeDenied}, nil},
		{"request id that is a prefix", Filter{RequestID: "req-"}, nil},
		{"nothing", Filter{Principal: "nobody"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, seqs(tc.f)); diff != "" {
				t.Errorf("seqs (-want +got):\n%s", diff)
			}
		})
	}
	var exported []uint64
	if err := l.Export(t.Context(), Filter{Tenant: "payroll", Limit: 1}, func(r Record) error { exported = append(exported, r.Seq); return nil }); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]uint64{1, 3, 5, 7, 9}, exported); diff != "" {
		t.Errorf("Export ignores Limit and goes oldest first (-want +got):\n%s", diff)
	}
}

// TestQueryByRequestID: a query by request id finds a record whatever
// characters its id has (encoding/json escapes some of them in the stored
// body), and not a record that merely mentions the id in another field.
func TestQueryByRequestID(t *testing.T) {
	l, _ := newTestLog(t)
	ids := []string{"plain-Id_0", "<script>&amp;", "quote\"back\\slash", "naïve\u2028line", "tab\there"}
	for i, id := range ids {
		r := callRecord(i)
		r.RequestID = id
		mustAppend(t, l, r)
	}
	// Mentions of another record's id, in a field of their own.
	decoy := callRecord(9)
	decoy.RequestID = "decoy"
	decoy.Reason = `{"requestId":"plain-Id_0"} "requestId":"<script>&amp;"`
	decoy.Target = "plain-Id_0"
	mustAppend(t, l, decoy)
	for i, id := range ids {
		recs, err := l.Query(t.Context(), Filter{RequestID: id})
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 1 || recs[0].Seq != uint64(i+1) || recs[0].RequestID != id {
			t.Errorf("Query(request id %q) = %+v; want record %d alone", id, recs, i+1)
		}
		var n int
		if err := l.Export(t.Context(), Filter{RequestID: id}, func(Record) error { n++; return nil }); err != nil || n != 1 {
			t.Errorf("Export(request id %q): %d records, %v; want 1", id, n, err)
		}
	}
}

// BenchmarkQueryByRequestID reads a log of 20 000 records for the one
// with a request id, against a filter every record must be decoded for
// (same answer): the ratio is what skipping the decode saves.
func BenchmarkQueryByRequestID(b *testing.B) {
	l, _ := newTestLog(b)
	const n = 20000
	recs := make([]Record, 0, 500)
	for i := range n {
		r := callRecord(i)
		r.Principal = fmt.Sprintf("apikey:agent%d", i)
		recs = append(recs, r)
		if len(recs) == cap(recs) || i == n-1 {
			var wg sync.WaitGroup
			for _, r := range recs {
				wg.Go(func() { mustAppend(b, l, r) })
			}
			wg.Wait()
			recs = recs[:0]
		}
	}
	for _, bc := range []struct {
		name string
		f    Filter
	}{{"request-id", Filter{RequestID: "req-777"}}, {"principal", Filter{Principal: "apikey:agent777"}}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				got, err := l.Query(b.Context(), bc.f)
				if err != nil || len(got) != 1 {
					b.Fatalf("Query = %d records, %v", len(got), err)
				}
			}
		})
	}
}

func TestAppendRefusesWhatCannotBeStored(t *testing.T) {
	l, _ := newTestLog(t)
	big := Record{Kind: KindCall, Arguments: []byte(`"` + strings.Repeat("x", maxBody) + `"`)}
	if _, err := l.Append(t.Context(), big); err == nil {
		t.Error("a record over the size limit was accepted")
	}
	if _, err := l.Append(t.Context(), Record{Kind: KindCall, Arguments: []byte("{not json")}); err == nil {
		t.Error("a record with arguments that are not JSON was accepted")
	}
	if seq, _ := l.Head(); seq != 0 {
		t.Errorf("refused records moved the head to %d", seq)
	}
}
