package raftstore

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/raft"
)

// storeState is everything observable in a store: its log and the stable
// keys the random ops use.
type storeState struct {
	Log    logState
	Stable map[string]string
}

// fingerprint returns a string equal for two states exactly when they hold
// the same log entries and stable values.
func (st storeState) fingerprint() string {
	var b []byte
	for _, l := range st.Log.Logs {
		b = appendLog(b, &l)
	}
	b = append(b, 0xff)
	for _, k := range append(slices.Clone(randomBytesKeys), randomUint64Keys...) {
		if v, ok := st.Stable[k]; ok {
			b = fmt.Appendf(b, "%q=%q;", k, v)
		}
	}
	return string(b)
}

// readStoreState reads s's state, failing the test on a gap in the log.
func readStoreState(t *testing.T, s storeUnderTest) storeState {
	t.Helper()
	st := storeState{Stable: map[string]string{}}
	first, err := s.FirstIndex()
	if err != nil {
		t.Fatalf("FirstIndex: %v", err)
	}
	last, err := s.LastIndex()
	if err != nil {
		t.Fatalf("LastIndex: %v", err)
	}
	if (first == 0) != (last == 0) || first > last {
		t.Fatalf("FirstIndex %d, LastIndex %d: inconsistent", first, last)
	}
	st.Log.First, st.Log.Last = first, last
	for i := first; first != 0 && i <= last; i++ {
		var l raft.Log
		if err := s.GetLog(i, &l); err != nil {
			t.Fatalf("GetLog(%d) between first %d and last %d: %v", i, first, last, err)
		}
		st.Log.Logs = append(st.Log.Logs, l)
	}
	for _, k := range randomBytesKeys {
		v, err := s.Get([]byte(k))
		switch {
		case err == nil:
			st.Stable[k] = string(v)
		case err.Error() != "not found":
			t.Fatalf("Get(%q): %v", k, err)
		}
	}
	for _, k := range randomUint64Keys {
		n, err := s.GetUint64([]byte(k))
		switch {
		case err == nil && n != 0:
			st.Stable[k] = fmt.Sprint(n)
		case err != nil && err.Error() != "not found":
			t.Fatalf("GetUint64(%q): %v", k, err)
		}
	}
	return st
}

// openCrashed opens a store on a crash clone of fs taken now. The clone keeps
// everything synced and, at random, unsyncedPercent of what was not.
func openCrashed(t *testing.T, fs *vfs.MemFS, unsyncedPercent int, rng *rand.Rand) *Store {
	t.Helper()
	crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: unsyncedPercent, RNG: rng})
	s, err := Open(Config{Dir: "/raft", NoSync: true}, WithFS(crashed))
	if err != nil {
		t.Fatalf("Open after a simulated crash (unsynced data kept: %d%%): %v", unsyncedPercent, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestCrashSyncedWritesSurvive checks that with syncing on (the default)
// every write that returned is present after a crash at any point, whatever
// part of the unsynced data the crash kept.
func TestCrashSyncedWritesSurvive(t *testing.T) {
	runSeeded(t, func(t *testing.T, rng *rand.Rand) {
		fs := vfs.NewCrashableMem()
		s, err := Open(Config{Dir: "/raft"}, WithFS(fs))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		model := raft.NewInmemStore()
		gen := &opGen{rng: rng, term: 1}
		for crash := range 8 {
			// Enough ops between crashes for pebble to flush memtables now
			// and then, so crashes also land during background work.
			n := 1 + rng.IntN(150)
			for i := range n {
				o := gen.next()
				if err := apply(s, o); err != nil {
					t.Fatalf("crash %d, op %d %v: %v", crash, i, o, err)
				}
				if err := apply(model, o); err != nil {
					t.Fatal(err)
				}
			}
			unsynced := []int{0, 50, 100}[rng.IntN(3)]
			crashed := openCrashed(t, fs, unsynced, rng)
			want := readStoreState(t, model)
			got := readStoreState(t, crashed)
			if diff := cmp.Diff(want, got, logOpts); diff != "" {
				t.Fatalf("crash %d (unsynced data kept: %d%%): acknowledged writes lost or changed by the crash (-acknowledged +recovered):\n%s", crash, unsynced, diff)
			}
			if err := crashed.Close(); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// TestCrashNoSyncLosesOnlyATail checks that with NoSync a crash loses at most
// the most recent writes: the recovered store opens, has no gaps, and equals
// the state after some prefix of the writes, never less than what was synced
// before NoSync was switched on.
func TestCrashNoSyncLosesOnlyATail(t *testing.T) {
	runSeeded(t, func(t *testing.T, rng *rand.Rand) {
		fs := vfs.NewCrashableMem()
		model := raft.NewInmemStore()
		gen := &opGen{rng: rng, term: 1}

		// Phase 1: synced writes, then a clean close.
		s, err := Open(Config{Dir: "/raft"}, WithFS(fs))
		if err != nil {
			t.Fatal(err)
		}
		for i := range 100 {
			o := gen.next()
			if err := apply(s, o); err != nil {
				t.Fatalf("synced op %d %v: %v", i, o, err)
			}
			if err := apply(model, o); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}

		// Phase 2: unsynced writes; history[k] is the state after k of them.
		s, err = Open(Config{Dir: "/raft", NoSync: true}, WithFS(fs))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		history := []storeState{readStoreState(t, model)}
		index := map[string]int{history[0].fingerprint(): 0}
		for i := range 300 {
			o := gen.next()
			if err := apply(s, o); err != nil {
				t.Fatalf("unsynced op %d %v: %v", i, o, err)
			}
			if err := apply(model, o); err != nil {
				t.Fatal(err)
			}
			history = append(history, readStoreState(t, model))
			index[history[len(history)-1].fingerprint()] = len(history) - 1
		}

		for _, unsynced := range []int{0, 30, 70, 100} {
			crashed := openCrashed(t, fs, unsynced, rng)
			got := readStoreState(t, crashed) // fails on gaps
			k, ok := index[got.fingerprint()]
			if !ok {
				// Show the closest candidates: the synced state and the last.
				t.Fatalf("unsynced data kept %d%%: recovered state is not the state after any prefix of the writes\nvs synced state (-synced +got):\n%s\nvs final state (-final +got):\n%s",
					unsynced, cmp.Diff(history[0], got, logOpts), cmp.Diff(history[len(history)-1], got, logOpts))
			}
			t.Logf("unsynced data kept %d%%: recovered the state after %d of %d unsynced writes", unsynced, k, len(history)-1)
			if err := crashed.Close(); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// TestCrashCloneIsReal guards the crash tests themselves: on a crashable file
// system, an unsynced write must be able to disappear, or the tests above
// would pass for any store.
func TestCrashCloneIsReal(t *testing.T) {
	fs := vfs.NewCrashableMem()
	s, err := Open(Config{Dir: "/raft", NoSync: true}, WithFS(fs))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.StoreLogs(testLogs(1, 10)); err != nil {
		t.Fatal(err)
	}
	crashed := openCrashed(t, fs, 0, nil)
	var l raft.Log
	if err := crashed.GetLog(1, &l); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("after a crash keeping no unsynced data, GetLog(1) of a NoSync write = %v, want ErrLogNotFound", err)
	}
}
