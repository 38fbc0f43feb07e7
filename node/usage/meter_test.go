package usage

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/raft"

	"github.com/mcpmesh/mcpmesh/node/audit"
	"github.com/mcpmesh/mcpmesh/registry/state"
)

var nov = time.Date(2026, 11, 14, 10, 0, 0, 0, time.UTC)

// testRegistry is a registry state that proposals apply to directly, as a
// single-node Raft would.
type testRegistry struct {
	t     *testing.T
	fsm   *state.FSM
	mu    sync.Mutex
	index uint64
	// loseReply, when set, applies the next proposal but reports a failure,
	// as a leader that dies after committing would.
	loseReply bool
}

func newTestRegistry(t *testing.T) *testRegistry {
	t.Helper()
	f, err := state.Open("state", state.WithFS(vfs.NewMem()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &testRegistry{t: t, fsm: f}
}

func (r *testRegistry) propose(_ context.Context, cmd []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.index++
	res := r.fsm.Apply(&raft.Log{Index: r.index, Term: 1, Type: raft.LogCommand, Data: cmd})
	if err, ok := res.(error); ok {
		return err
	}
	if r.loseReply {
		r.loseReply = false
		return errors.New("connection reset")
	}
	return nil
}

func (r *testRegistry) registry() Registry {
	return Registry{FSM: r.fsm, Propose: r.propose, Barrier: func(context.Context) error { return nil }}
}

func openLog(t *testing.T, dir string) *audit.Log {
	t.Helper()
	l, err := audit.Open(audit.Config{Dir: dir, Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func newMeter(t *testing.T, l *audit.Log, reg *testRegistry) *Meter {
	t.Helper()
	m, err := New(Config{Node: "n1", Namespace: "hr"}, l, reg.registry())
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Recover(t.Context()); err != nil {
		t.Fatal(err)
	}
	return m
}

// call is the record of an answered call of tenant at, costing cost EUR.
func call(tenant string, at time.Time, cost float64) audit.Record {
	return audit.Record{Time: at, Kind: audit.KindCall, Namespace: "hr", Tenant: tenant, Principal: "apikey:aaaaaaaaaaaa",
		Tool: "corp.hr/directory/lookup", Outcome: audit.OutcomeOK, Cost: cost, Currency: "EUR", CostSource: "card"}
}

func appendAll(t *testing.T, l *audit.Log, recs ...audit.Record) {
	t.Helper()
	for _, r := range recs {
		if _, err := l.Append(t.Context(), r); err != nil {
			t.Fatal(err)
		}
	}
}

func mustUsed(t *testing.T, m *Meter, month, tenant string) (int64, int64) {
	t.Helper()
	calls, cost, err := m.Used(month, tenant)
	if err != nil {
		t.Fatal(err)
	}
	return calls, cost["EUR"]
}

func flushed(t *testing.T, reg *testRegistry, month, tenant string) (int64, int64) {
	t.Helper()
	tu, err := reg.fsm.TenantUsage(month, tenant)
	if err != nil {
		t.Fatal(err)
	}
	return tu.Calls, tu.Cost["EUR"]
}

func TestMeterCountsAndFlushes(t *testing.T) {
	reg := newTestRegistry(t)
	l := openLog(t, t.TempDir())
	defer l.Close()
	m := newMeter(t, l, reg)

	refused := call("payroll", nov, 0)
	refused.Outcome, refused.CostSource = audit.OutcomeOverQuota, ""
	admin := audit.Record{Kind: audit.KindAdmin, Action: "tenant.put", Outcome: audit.OutcomeOK}
	appendAll(t, l, call("payroll", nov, 0.25), call("payroll", nov, 0.25), refused, admin, call("benefits", nov, 0.1))

	// Counted as soon as Append returned, before any flush.
	if calls, cost := mustUsed(t, m, "2026-11", "payroll"); calls != 2 || cost != 500_000 {
		t.Fatalf("payroll before the flush: %d calls, %d µEUR; want 2, 500000", calls, cost)
	}
	if err := m.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if calls, cost := flushed(t, reg, "2026-11", "payroll"); calls != 2 || cost != 500_000 {
		t.Errorf("payroll in the registry: %d calls, %d µEUR; want 2, 500000", calls, cost)
	}
	// Not counted twice after the flush.
	if calls, cost := mustUsed(t, m, "2026-11", "payroll"); calls != 2 || cost != 500_000 {
		t.Errorf("payroll after the flush: %d calls, %d µEUR; want 2, 500000", calls, cost)
	}
	if from, to := m.Pending(); from != 5 || to != 5 {
		t.Errorf("pending after the flush = (%d, %d], want (5, 5]", from, to)
	}
	mark, _ := reg.fsm.UsageMark("n1")
	if mark.Seq != 5 {
		t.Errorf("mark = %d, want 5 (the admin record and the refusal are covered too)", mark.Seq)
	}
	rows, _ := reg.fsm.UsageRows("2026-11")
	want := []state.UsageRow{
		{Month: "2026-11", Tenant: "benefits", Tool: "corp.hr/directory/lookup", CallerBU: "hr", Currency: "EUR", Calls: 1, CostMicros: 100_000},
		{Month: "2026-11", Tenant: "payroll", Tool: "corp.hr/directory/lookup", CallerBU: "hr", Currency: "EUR", Calls: 2, CostMicros: 500_000},
	}
	if diff := cmp.Diff(want, rows); diff != "" {
		t.Errorf("rows (-want +got):\n%s", diff)
	}
	// Nothing new: no flush, no Raft entry.
	before := reg.index
	if err := m.Flush(t.Context()); err != nil || reg.index != before {
		t.Errorf("an idle flush proposed (%v)", err)
	}
}

func TestMeterMonthBoundary(t *testing.T) {
	reg := newTestRegistry(t)
	l := openLog(t, t.TempDir())
	defer l.Close()
	m := newMeter(t, l, reg)
	last := time.Date(2026, 11, 30, 23, 59, 59, 999_999_999, time.UTC)
	appendAll(t, l, call("payroll", last, 1), call("payroll", last.Add(time.Nanosecond), 2))
	if err := m.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	for month, want := range map[string]int64{"2026-11": 1_000_000, "2026-12": 2_000_000} {
		if calls, cost := flushed(t, reg, month, "payroll"); calls != 1 || cost != want {
			t.Errorf("%s: %d calls, %d µEUR; want 1, %d", month, calls, cost, want)
		}
	}
}

// A node killed before it flushed re-derives its unflushed calls from its
// audit log when it starts again; a batch retried or replayed is not
// counted twice.
func TestMeterRecoversFromTheAuditLog(t *testing.T) {
	reg := newTestRegistry(t)
	dir := t.TempDir()
	l := openLog(t, dir)
	// Calls made before the meter existed are found too.
	appendAll(t, l, call("payroll", nov, 0.1))
	m := newMeter(t, l, reg)
	appendAll(t, l, call("payroll", nov, 0.1), call("payroll", nov, 0.1))
	if err := m.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	appendAll(t, l, call("payroll", nov, 0.1), call("payroll", nov, 0.1)) // acknowledged, never flushed
	// The node dies: no flush, the meter is gone; the audit log holds it all.
	l.SetObserver(nil)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	l = openLog(t, dir)
	defer l.Close()
	m = newMeter(t, l, reg)
	if calls, _ := mustUsed(t, m, "2026-11", "payroll"); calls != 5 {
		t.Errorf("after the restart the node knows of %d calls, want 5", calls)
	}
	if err := m.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if calls, cost := flushed(t, reg, "2026-11", "payroll"); calls != 5 || cost != 500_000 {
		t.Errorf("registry after recovery: %d calls, %d µEUR; want 5, 500000", calls, cost)
	}
	// A second restart finds nothing left to flush.
	m2 := newMeter(t, l, reg)
	if from, to := m2.Pending(); from != to {
		t.Errorf("second restart: pending (%d, %d]", from, to)
	}
}

// A flush whose reply is lost was committed anyway: the next flush starts
// from the old mark, is refused, and the meter re-derives from the
// registry's mark instead of counting the batch twice.
func TestMeterLostReply(t *testing.T) {
	reg := newTestRegistry(t)
	l := openLog(t, t.TempDir())
	defer l.Close()
	m := newMeter(t, l, reg)
	appendAll(t, l, call("payroll", nov, 0.5), call("payroll", nov, 0.5))
	reg.loseReply = true
	if err := m.Flush(t.Context()); err == nil {
		t.Fatal("the flush with a lost reply succeeded")
	}
	appendAll(t, l, call("payroll", nov, 0.5))
	// Refused as a conflict, re-derived: no error, and the next flush
	// carries only the third call.
	if err := m.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if from, to := m.Pending(); from != 2 || to != 3 {
		t.Errorf("after the re-derivation pending = (%d, %d], want (2, 3]", from, to)
	}
	if err := m.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if calls, cost := flushed(t, reg, "2026-11", "payroll"); calls != 3 || cost != 1_500_000 {
		t.Errorf("registry: %d calls, %d µEUR; want 3, 1500000", calls, cost)
	}
	if calls, _ := mustUsed(t, m, "2026-11", "payroll"); calls != 3 {
		t.Errorf("Used = %d calls, want 3", calls)
	}
}

// Concurrent calls are each counted once.
func TestMeterConcurrentCalls(t *testing.T) {
	reg := newTestRegistry(t)
	l := openLog(t, t.TempDir())
	defer l.Close()
	m := newMeter(t, l, reg)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			m.Flush(ctx)
		}
	}()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				if _, err := l.Append(t.Context(), call("payroll", nov, 0.01)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	cancel()
	<-done
	if err := m.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if calls, cost := flushed(t, reg, "2026-11", "payroll"); calls != 400 || cost != 4_000_000 {
		t.Errorf("registry: %d calls, %d µEUR; want 400, 4000000", calls, cost)
	}
}

// memSource is an audit log in memory: Append hands each record to the
// observer, as audit.Log does once a record is durable.
type memSource struct {
	mu      sync.Mutex
	recs    []audit.Record
	observe func(audit.Record)
}

func (s *memSource) SetObserver(fn func(audit.Record)) { s.observe = fn }

func (s *memSource) After(_ context.Context, seq uint64, fn func(audit.Record) error) error {
	s.mu.Lock()
	recs := slices.Clone(s.recs)
	s.mu.Unlock()
	for _, r := range recs {
		if r.Seq > seq {
			if err := fn(r); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *memSource) append(r audit.Record) {
	s.mu.Lock()
	r.Seq = uint64(len(s.recs) + 1)
	s.recs = append(s.recs, r)
	s.mu.Unlock()
	s.observe(r)
}

func (r *testRegistry) proposals() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.index
}

// TestMeterIdleKeepsNoTimer: an idle meter does not wake; a call is
// flushed one FlushInterval after it was counted, and the meter is idle
// again after that flush.
func TestMeterIdleKeepsNoTimer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := newTestRegistry(t)
		src := &memSource{}
		m, err := New(Config{Node: "n1", Namespace: "hr", FlushInterval: time.Second}, src, reg.registry())
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- m.Run(ctx) }()
		defer func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		}()
		time.Sleep(time.Hour)
		synctest.Wait()
		if w := m.wakes.Load(); w != 0 {
			t.Fatalf("idle meter woke %d times in an hour, want 0", w)
		}
		src.append(call("acme", nov, 0.5))
		time.Sleep(time.Second - time.Millisecond)
		synctest.Wait()
		if p := reg.proposals(); p != 0 {
			t.Fatalf("%d flushes before FlushInterval passed, want 0", p)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if p := reg.proposals(); p != 1 {
			t.Fatalf("%d flushes once FlushInterval passed, want 1", p)
		}
		if calls, cost := flushed(t, reg, "2026-11", "acme"); calls != 1 || cost != 500000 {
			t.Fatalf("flushed %d calls, %d µEUR; want 1, 500000", calls, cost)
		}
		time.Sleep(time.Hour)
		synctest.Wait()
		if w, p := m.wakes.Load(), reg.proposals(); w != 1 || p != 1 {
			t.Fatalf("after an idle hour: %d wakes, %d flushes; want 1, 1", w, p)
		}
		// Calls every 300ms from 0.1s to 2.8s: each batch is flushed
		// FlushInterval after its first call (1.1s, 2.3s, 3.5s).
		time.Sleep(100 * time.Millisecond)
		for i := range 10 {
			src.append(call("acme", nov, 0.5))
			if i < 9 {
				time.Sleep(300 * time.Millisecond)
			}
		}
		time.Sleep(3500*time.Millisecond - 2800*time.Millisecond)
		synctest.Wait()
		if p := reg.proposals(); p != 4 {
			t.Fatalf("%d flushes in all, want 4 (one, then three batches)", p)
		}
		if calls, _ := flushed(t, reg, "2026-11", "acme"); calls != 11 {
			t.Fatalf("flushed %d calls, want 11", calls)
		}
	})
}
