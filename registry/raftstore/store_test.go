package raftstore

import (
	"bytes"
	"errors"
	"log/slog"
	"math"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/raft"
)

// newTestStore opens a store on a fresh in-memory file system and closes it
// when the test ends.
func newTestStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(Config{Dir: "/raft", NoSync: true}, WithFS(vfs.NewMem()))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil && !errors.Is(err, ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// testLog returns a deterministic entry for index in term 1.
func testLog(index uint64) *raft.Log {
	return &raft.Log{
		Index:      index,
		Term:       1 + index/10,
		Type:       raft.LogCommand,
		Data:       []byte("data-" + string(rune('a'+index%26))),
		Extensions: []byte{byte(index)},
		AppendedAt: time.Unix(1_700_000_000+int64(index), int64(index)*1000),
	}
}

// testLogs returns testLog(i) for i in [from, to].
func testLogs(from, to uint64) []*raft.Log {
	var ls []*raft.Log
	for i := from; i <= to; i++ {
		ls = append(ls, testLog(i))
	}
	return ls
}

// logOpts compares logs treating nil and empty byte slices alike (the codec
// decodes an empty Data as nil). Comparing bytes as strings also keeps the
// randomized tests fast; times compare by instant through time.Time.Equal.
var logOpts = cmp.Options{cmp.Transformer("bytes", func(b []byte) string { return string(b) })}

// logState is everything observable about a store's log.
type logState struct {
	First, Last uint64
	Logs        []raft.Log
}

// readLogState reads First, Last and every entry between them, failing the
// test if any index in between is missing (the log must have no gaps).
func readLogState(t *testing.T, s *Store) logState {
	t.Helper()
	var st logState
	var err error
	if st.First, err = s.FirstIndex(); err != nil {
		t.Fatalf("FirstIndex: %v", err)
	}
	if st.Last, err = s.LastIndex(); err != nil {
		t.Fatalf("LastIndex: %v", err)
	}
	if (st.First == 0) != (st.Last == 0) || st.First > st.Last {
		t.Fatalf("FirstIndex %d, LastIndex %d: inconsistent", st.First, st.Last)
	}
	if st.First == 0 {
		return st
	}
	for i := st.First; i <= st.Last; i++ {
		var l raft.Log
		if err := s.GetLog(i, &l); err != nil {
			t.Fatalf("GetLog(%d) between first %d and last %d: %v", i, st.First, st.Last, err)
		}
		st.Logs = append(st.Logs, l)
	}
	return st
}

// stateOf returns the logState holding exactly ls, which must be contiguous.
func stateOf(ls []*raft.Log) logState {
	var st logState
	if len(ls) == 0 {
		return st
	}
	st.First, st.Last = ls[0].Index, ls[len(ls)-1].Index
	for _, l := range ls {
		st.Logs = append(st.Logs, *l)
	}
	return st
}

func TestLogStore(t *testing.T) {
	type step struct {
		store  []*raft.Log
		delMin uint64 // delete [delMin, delMax] when delMax > 0
		delMax uint64
	}
	tests := []struct {
		name  string
		steps []step
		want  []*raft.Log
	}{
		{name: "empty"},
		{name: "one entry", steps: []step{{store: testLogs(1, 1)}}, want: testLogs(1, 1)},
		{name: "batch", steps: []step{{store: testLogs(1, 64)}}, want: testLogs(1, 64)},
		{name: "starts above 1 (after snapshot restore)", steps: []step{{store: testLogs(1000, 1010)}}, want: testLogs(1000, 1010)},
		{name: "appends across batches", steps: []step{{store: testLogs(1, 3)}, {store: testLogs(4, 4)}, {store: testLogs(5, 9)}}, want: testLogs(1, 9)},
		{name: "index 255/256 boundary sorts numerically", steps: []step{{store: testLogs(250, 260)}}, want: testLogs(250, 260)},
		{name: "head compaction", steps: []step{{store: testLogs(1, 20)}, {delMin: 1, delMax: 15}}, want: testLogs(16, 20)},
		{name: "head compaction with min below first", steps: []step{{store: testLogs(5, 20)}, {delMin: 1, delMax: 9}}, want: testLogs(10, 20)},
		{name: "tail truncation", steps: []step{{store: testLogs(1, 20)}, {delMin: 12, delMax: 20}}, want: testLogs(1, 11)},
		{name: "tail truncation to max uint64", steps: []step{{store: testLogs(1, 20)}, {delMin: 12, delMax: math.MaxUint64}}, want: testLogs(1, 11)},
		{
			name:  "conflict: truncate tail then append new term",
			steps: []step{{store: testLogs(1, 10)}, {delMin: 7, delMax: 10}, {store: []*raft.Log{{Index: 7, Term: 99, Data: []byte("new")}}}},
			want:  append(testLogs(1, 6), &raft.Log{Index: 7, Term: 99, Data: []byte("new")}),
		},
		{
			name:  "overwrite in place",
			steps: []step{{store: testLogs(1, 3)}, {store: []*raft.Log{{Index: 3, Term: 7, Type: raft.LogNoop}}}},
			want:  append(testLogs(1, 2), &raft.Log{Index: 3, Term: 7, Type: raft.LogNoop}),
		},
		{name: "delete everything", steps: []step{{store: testLogs(1, 20)}, {delMin: 1, delMax: 20}}},
		{name: "delete everything then restart at a higher index", steps: []step{{store: testLogs(1, 20)}, {delMin: 1, delMax: 20}, {store: testLogs(100, 102)}}, want: testLogs(100, 102)},
		{name: "delete range beyond the log", steps: []step{{store: testLogs(1, 5)}, {delMin: 10, delMax: 20}}, want: testLogs(1, 5)},
		{name: "delete with min > max is a no-op", steps: []step{{store: testLogs(1, 5)}, {delMin: 4, delMax: 2}}, want: testLogs(1, 5)},
		{name: "delete on empty store", steps: []step{{delMin: 1, delMax: 5}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestStore(t)
			for i, st := range tt.steps {
				if st.store != nil {
					var err error
					if len(st.store) == 1 {
						err = s.StoreLog(st.store[0])
					} else {
						err = s.StoreLogs(st.store)
					}
					if err != nil {
						t.Fatalf("step %d: store: %v", i, err)
					}
				}
				if st.delMax > 0 {
					if err := s.DeleteRange(st.delMin, st.delMax); err != nil {
						t.Fatalf("step %d: DeleteRange(%d, %d): %v", i, st.delMin, st.delMax, err)
					}
				}
			}
			got := readLogState(t, s)
			if diff := cmp.Diff(stateOf(tt.want), got, logOpts); diff != "" {
				t.Errorf("log state (-want +got):\n%s", diff)
			}
		})
	}
}

func TestGetLogMissing(t *testing.T) {
	s := newTestStore(t)
	if err := s.StoreLogs(testLogs(10, 20)); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRange(10, 12); err != nil {
		t.Fatal(err)
	}
	for _, idx := range []uint64{0, 1, 9, 10, 12, 21, math.MaxUint64} {
		var l raft.Log
		if err := s.GetLog(idx, &l); err != raft.ErrLogNotFound {
			t.Errorf("GetLog(%d) = %v, want raft.ErrLogNotFound unwrapped", idx, err)
		}
	}
	var l raft.Log
	if err := s.GetLog(13, &l); err != nil {
		t.Errorf("GetLog(13) = %v, want the entry", err)
	}
}

func TestGetLogCorruptRecord(t *testing.T) {
	s := newTestStore(t)
	tests := []struct {
		name  string
		index uint64
		value []byte
	}{
		{"truncated", 1, appendLog(nil, testLog(1))[:5]},
		{"unknown version", 2, append([]byte{9}, appendLog(nil, testLog(2))[1:]...)},
		{"index mismatch", 3, appendLog(nil, testLog(4))},
		{"empty", 5, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.db.Set(logKey(tt.index), tt.value, pebble.NoSync); err != nil {
				t.Fatal(err)
			}
			var l raft.Log
			if err := s.GetLog(tt.index, &l); !errors.Is(err, ErrCorrupt) {
				t.Errorf("GetLog(%d) = %v, want an error wrapping ErrCorrupt", tt.index, err)
			}
		})
	}
}

func TestStableStore(t *testing.T) {
	s := newTestStore(t)
	tests := []struct {
		name string
		key  string
		set  func() error
		get  func() (any, error)
		want any
	}{
		{
			name: "bytes",
			set:  func() error { return s.Set([]byte("CurrentTermCand"), []byte("node-1")) },
			get:  func() (any, error) { return s.Get([]byte("CurrentTermCand")) },
			want: []byte("node-1"),
		},
		{
			name: "bytes overwritten",
			set: func() error {
				if err := s.Set([]byte("k"), []byte("old")); err != nil {
					return err
				}
				return s.Set([]byte("k"), []byte("new"))
			},
			get:  func() (any, error) { return s.Get([]byte("k")) },
			want: []byte("new"),
		},
		{
			name: "empty value is present, not missing",
			set:  func() error { return s.Set([]byte("empty"), nil) },
			get:  func() (any, error) { return s.Get([]byte("empty")) },
			want: []byte{},
		},
		{
			name: "uint64",
			set:  func() error { return s.SetUint64([]byte("CurrentTerm"), 42) },
			get:  func() (any, error) { return s.GetUint64([]byte("CurrentTerm")) },
			want: uint64(42),
		},
		{
			name: "uint64 max",
			set:  func() error { return s.SetUint64([]byte("max"), math.MaxUint64) },
			get:  func() (any, error) { return s.GetUint64([]byte("max")) },
			want: uint64(math.MaxUint64),
		},
		{
			name: "uint64 readable as bytes (shared keyspace, like raft-boltdb)",
			set:  func() error { return s.SetUint64([]byte("shared"), 258) },
			get:  func() (any, error) { return s.Get([]byte("shared")) },
			want: []byte{0, 0, 0, 0, 0, 0, 1, 2},
		},
		{
			name: "empty key",
			set:  func() error { return s.Set(nil, []byte("v")) },
			get:  func() (any, error) { return s.Get([]byte{}) },
			want: []byte("v"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.set(); err != nil {
				t.Fatalf("set: %v", err)
			}
			got, err := tt.get()
			if err != nil {
				t.Fatalf("get: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("value (-want +got):\n%s", diff)
			}
		})
	}
}

func TestStableStoreMissingKeys(t *testing.T) {
	s := newTestStore(t)
	// Log entries must not leak into the stable keyspace and vice versa.
	if err := s.StoreLogs(testLogs(1, 3)); err != nil {
		t.Fatal(err)
	}
	if err := s.Set([]byte("present"), []byte("x")); err != nil {
		t.Fatal(err)
	}
	// raft compares err.Error() with "not found" exactly; see api.go NewRaft.
	for _, key := range []string{"CurrentTerm", "LastVoteTerm", "LastVoteCand", "presen", "present\x00", "l"} {
		v, err := s.Get([]byte(key))
		if err == nil || err.Error() != "not found" || v != nil {
			t.Errorf("Get(%q) = %q, %v; want nil, error %q", key, v, err, "not found")
		}
		n, err := s.GetUint64([]byte(key))
		if err == nil || err.Error() != "not found" || n != 0 {
			t.Errorf("GetUint64(%q) = %d, %v; want 0, error %q", key, n, err, "not found")
		}
	}
	if _, err := s.GetUint64([]byte("present")); !errors.Is(err, ErrCorrupt) {
		t.Errorf("GetUint64 of a 1-byte value = %v, want an error wrapping ErrCorrupt", err)
	}
}

// TestFreshStoreHasNoRaftState checks the store with raft's own reader of
// durable state: a fresh store must read as "no existing state", and one
// with a current term as existing state.
func TestFreshStoreHasNoRaftState(t *testing.T) {
	s := newTestStore(t)
	snaps := raft.NewInmemSnapshotStore()
	got, err := raft.HasExistingState(s, s, snaps)
	if err != nil || got {
		t.Fatalf("HasExistingState on a fresh store = %v, %v; want false, nil", got, err)
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 3); err != nil {
		t.Fatal(err)
	}
	got, err = raft.HasExistingState(s, s, snaps)
	if err != nil || !got {
		t.Fatalf("HasExistingState with a term = %v, %v; want true, nil", got, err)
	}
}

func TestReopenPersists(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.StoreLogs(testLogs(1, 100)); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRange(1, 40); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRange(91, 100); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 7); err != nil {
		t.Fatal(err)
	}
	if err := s.Set([]byte("LastVoteCand"), []byte("node-2")); err != nil {
		t.Fatal(err)
	}
	want := readLogState(t, s)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s, err = Open(Config{Dir: dir})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	got := readLogState(t, s)
	if diff := cmp.Diff(stateOf(testLogs(41, 90)), got, logOpts); diff != "" {
		t.Errorf("log after reopen (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, got, logOpts); diff != "" {
		t.Errorf("log after reopen differs from before close (-before +after):\n%s", diff)
	}
	if term, err := s.GetUint64([]byte("CurrentTerm")); err != nil || term != 7 {
		t.Errorf("GetUint64(CurrentTerm) after reopen = %d, %v; want 7", term, err)
	}
	if cand, err := s.Get([]byte("LastVoteCand")); err != nil || string(cand) != "node-2" {
		t.Errorf("Get(LastVoteCand) after reopen = %q, %v; want node-2", cand, err)
	}
}

func TestOpenErrors(t *testing.T) {
	t.Run("no dir", func(t *testing.T) {
		_, err := Open(Config{})
		if err == nil || !strings.Contains(err.Error(), "dir is required") {
			t.Errorf("Open with empty Dir = %v, want an error saying dir is required", err)
		}
	})
	t.Run("locked by another store", func(t *testing.T) {
		fs := vfs.NewMem()
		s, err := Open(Config{Dir: "/raft"}, WithFS(fs))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		if s2, err := Open(Config{Dir: "/raft"}, WithFS(fs)); err == nil {
			s2.Close()
			t.Error("second Open of the same dir succeeded, want a lock error")
		}
	})
	t.Run("unknown layout version", func(t *testing.T) {
		fs := vfs.NewMem()
		s, err := Open(Config{Dir: "/raft"}, WithFS(fs))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.db.Set(metaLayoutKey, []byte{layoutVersion + 1}, pebble.Sync); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s, err = Open(Config{Dir: "/raft"}, WithFS(fs))
		if !errors.Is(err, ErrCorrupt) {
			if err == nil {
				s.Close()
			}
			t.Fatalf("Open of a database with layout %d = %v, want ErrCorrupt", layoutVersion+1, err)
		}
		// The failed Open must have released the database lock.
		s, err = Open(Config{Dir: "/raft"}, WithFS(fs))
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("second Open = %v, want ErrCorrupt again (lock released)", err)
		}
	})
}

func TestClosed(t *testing.T) {
	s := newTestStore(t)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	var l raft.Log
	calls := map[string]error{
		"Close":       s.Close(),
		"StoreLog":    s.StoreLog(testLog(1)),
		"DeleteRange": s.DeleteRange(1, 2),
		"GetLog":      s.GetLog(1, &l),
		"Set":         s.Set([]byte("k"), []byte("v")),
	}
	_, calls["FirstIndex"] = s.FirstIndex()
	_, calls["LastIndex"] = s.LastIndex()
	_, calls["Get"] = s.Get([]byte("k"))
	_, calls["GetUint64"] = s.GetUint64([]byte("k"))
	for name, err := range calls {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
}

func TestWithLoggerRoutesPebbleThroughSlog(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := Open(Config{Dir: "/raft"}, WithFS(vfs.NewMem()), WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.StoreLogs(testLogs(1, 10)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "component=pebble") {
		t.Errorf("no pebble message reached the slog logger at debug level; got:\n%s", buf.String())
	}
	if strings.Contains(buf.String(), "level=INFO") || strings.Contains(buf.String(), "level=ERROR") {
		t.Errorf("pebble's routine messages should be debug level; got:\n%s", buf.String())
	}
}

// TestConcurrentUseAndClose runs readers against a writer and closes the
// store under them: nothing may panic (pebble panics on a closed DB) and the
// only error allowed is ErrClosed.
func TestConcurrentUseAndClose(t *testing.T) {
	s, err := Open(Config{Dir: "/raft", NoSync: true}, WithFS(vfs.NewMem()))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.StoreLogs(testLogs(1, 10)); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	wg.Go(func() { // writer: append and compact the head, like a leader
		for next := uint64(11); ; next += 10 {
			if err := s.StoreLogs(testLogs(next, next+9)); err != nil {
				errs <- err
				return
			}
			if err := s.DeleteRange(next-10, next-1); err != nil {
				errs <- err
				return
			}
		}
	})
	for range 3 {
		wg.Go(func() { // reader: the entry at FirstIndex exists unless compacted meanwhile
			for {
				first, err := s.FirstIndex()
				if err != nil {
					errs <- err
					return
				}
				var l raft.Log
				if err := s.GetLog(first, &l); err != nil && err != raft.ErrLogNotFound {
					errs <- err
					return
				}
			}
		})
	}
	// Let the goroutines make progress: wait until the writer has compacted
	// at least ten times, then close under them.
	for {
		first, err := s.FirstIndex()
		if err != nil {
			t.Fatal(err)
		}
		if first > 100 {
			break
		}
		runtime.Gosched()
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close under load: %v", err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("operation concurrent with Close returned %v, want ErrClosed", err)
		}
	}
}
