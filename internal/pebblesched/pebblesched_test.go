package pebblesched

import (
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// fakeDB is a pebble.DBForCompaction with queued compactions: it counts
// every call the scheduler makes, so a test sees when it samples.
type fakeDB struct {
	mu      sync.Mutex
	allowed int
	queued  int // compactions the database wants to run
	calls   int // calls from the scheduler
	started []pebble.CompactionGrantHandle
}

func (d *fakeDB) GetAllowedWithoutPermission() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls++
	return d.allowed
}

func (d *fakeDB) GetWaitingCompaction() (bool, pebble.WaitingCompaction) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls++
	return d.queued > 0, pebble.WaitingCompaction{}
}

func (d *fakeDB) Schedule(h pebble.CompactionGrantHandle) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls++
	if d.queued == 0 {
		return false
	}
	d.queued--
	d.started = append(d.started, h)
	return true
}

func (d *fakeDB) set(allowed, queued int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.allowed, d.queued = allowed, queued
}

func (d *fakeDB) snapshot() (calls, started int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.calls, len(d.started)
}

// TestIdleDatabaseIsNotSampled: with no compaction refused, the scheduler
// makes no call to the database however long it stays idle (pebble's own
// samples it ten times a second).
func TestIdleDatabaseIsNotSampled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		db := &fakeDB{allowed: 1}
		s := New()
		s.Register(2, db)
		defer s.Unregister()
		ok, h := s.TrySchedule()
		if !ok || h == nil {
			t.Fatal("TrySchedule with nothing running was refused")
		}
		h.Done()
		synctest.Wait()
		expectNoCalls(t, db, "an idle database")
	})
}

// TestWaitingCompactionIsSampled: a refused compaction is granted by
// sampling within 100ms once the database allows more, even if nothing
// pokes the scheduler; once the database waits no more, sampling stops.
func TestWaitingCompactionIsSampled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		db, s, first := oneRunningOneWaiting(t)
		defer s.Unregister()
		time.Sleep(time.Second)
		synctest.Wait()
		if _, started := db.snapshot(); started != 0 {
			t.Fatalf("%d compactions started beyond the allowed concurrency", started)
		}
		// The database now allows two (its backlog grew), without a poke.
		db.set(2, 1)
		time.Sleep(sampleEvery)
		synctest.Wait()
		if _, started := db.snapshot(); started != 1 {
			t.Fatalf("waiting compaction not granted one sample period after the database allowed it (started %d)", started)
		}
		// While both run the database may still wait (pebble's does
		// until asked); when one ends the scheduler finds nothing waiting
		// and stops sampling.
		first.Done()
		synctest.Wait()
		expectNoCalls(t, db, "a database that stopped waiting")
	})
}

// TestDoneGrantsWaiting: a compaction that ends lets a waiting one start
// at once.
func TestDoneGrantsWaiting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		db, s, h := oneRunningOneWaiting(t)
		defer s.Unregister()
		h.Done()
		if _, started := db.snapshot(); started != 1 {
			t.Fatalf("Done did not start the waiting compaction (started %d)", started)
		}
	})
}

// TestPebbleCompactsWithScheduler: a real pebble database on this
// scheduler flushes and compacts under writes, reads back what it wrote,
// and closes.
func TestPebbleCompactsWithScheduler(t *testing.T) {
	opts := &pebble.Options{
		FS:                    vfs.NewMem(),
		MemTableSize:          256 << 10,
		L0CompactionThreshold: 2,
		L0StopWritesThreshold: 1000,
		Logger:                quiet{},
	}
	opts.Experimental.CompactionScheduler = New()
	db, err := pebble.Open("db", opts)
	if err != nil {
		t.Fatal(err)
	}
	val := make([]byte, 1024)
	const n = 4000
	for i := range n {
		if err := db.Set(fmt.Appendf(nil, "k%06d", i), val, pebble.NoSync); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	// Compactions run in the background: wait for one, bounded.
	deadline := time.Now().Add(30 * time.Second)
	var m *pebble.Metrics
	for {
		m = db.Metrics()
		if m.Compact.Count > 0 && m.Compact.NumInProgress == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no compaction finished within 30s; last metrics: compactions %d, in progress %d, L0 files %d",
				m.Compact.Count, m.Compact.NumInProgress, m.Levels[0].TablesCount)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("compactions %d, L0 files %d", m.Compact.Count, m.Levels[0].TablesCount)
	for _, i := range []int{0, n / 2, n - 1} {
		v, closer, err := db.Get(fmt.Appendf(nil, "k%06d", i))
		if err != nil {
			t.Fatalf("read k%06d back: %v", i, err)
		}
		if len(v) != len(val) {
			t.Fatalf("k%06d: %d bytes, want %d", i, len(v), len(val))
		}
		closer.Close()
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

type quiet struct{}

func (quiet) Infof(string, ...any)  {}
func (quiet) Errorf(string, ...any) {}
func (quiet) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}

// expectNoCalls fails unless the scheduler leaves db alone for ten
// (synctest) minutes from now.
func expectNoCalls(t *testing.T, db *fakeDB, what string) {
	t.Helper()
	before, _ := db.snapshot()
	time.Sleep(10 * time.Minute)
	synctest.Wait()
	if after, _ := db.snapshot(); after != before {
		t.Fatalf("%s called %d times in 10 minutes, want 0", what, after-before)
	}
}

// oneRunningOneWaiting registers a database that allows one compaction,
// starts one, and has a second refused: the database then waits. The
// caller unregisters the scheduler.
func oneRunningOneWaiting(t *testing.T) (*fakeDB, *Scheduler, pebble.CompactionGrantHandle) {
	t.Helper()
	db := &fakeDB{allowed: 1}
	s := New()
	s.Register(2, db)
	ok, first := s.TrySchedule()
	if !ok {
		t.Fatal("first compaction refused")
	}
	db.set(1, 1)
	if ok, _ := s.TrySchedule(); ok {
		t.Fatal("second compaction granted beyond the allowed 1")
	}
	return db, s, first
}
