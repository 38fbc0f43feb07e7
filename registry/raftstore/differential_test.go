package raftstore

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/raft"
)

// getResult is one read's outcome, comparable across stores.
type getResult struct {
	Log raft.Log
	Val []byte
	N   uint64
	Err string
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestDifferentialAgainstInmemStore applies the same seeded random sequence
// of writes and reads to raft.InmemStore, Raft's reference implementation,
// and to a Store, and compares every result.
func TestDifferentialAgainstInmemStore(t *testing.T) {
	runSeeded(t, func(t *testing.T, rng *rand.Rand) {
		ref := raft.NewInmemStore()
		s := newTestStore(t)
		gen := &opGen{rng: rng, term: 1}
		const ops = 400
		for i := range ops {
			o := gen.next()
			if err := apply(ref, o); err != nil {
				t.Fatalf("op %d %v: InmemStore: %v", i, o, err)
			}
			if err := apply(s, o); err != nil {
				t.Fatalf("op %d %v: Store: %v", i, o, err)
			}

			type bounds struct{ First, Last uint64 }
			var want, got bounds
			want.First, _ = ref.FirstIndex()
			want.Last, _ = ref.LastIndex()
			var err error
			if got.First, err = s.FirstIndex(); err != nil {
				t.Fatalf("op %d %v: FirstIndex: %v", i, o, err)
			}
			if got.Last, err = s.LastIndex(); err != nil {
				t.Fatalf("op %d %v: LastIndex: %v", i, o, err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("op %d %v: bounds (-InmemStore +Store):\n%s", i, o, diff)
			}

			// Every index in and just around the log, and a few far away.
			lo := uint64(0)
			if want.First > 3 {
				lo = want.First - 3
			}
			idxs := []uint64{want.Last + 1, want.Last + 1000, rng.Uint64()}
			for j := lo; j <= want.Last+3; j++ {
				idxs = append(idxs, j)
			}
			for _, idx := range idxs {
				var w, g getResult
				w.Err = errString(ref.GetLog(idx, &w.Log))
				g.Err = errString(s.GetLog(idx, &g.Log))
				// Equal encodings mean equal logs; this keeps the loop fast
				// under -race. cmp explains any difference.
				if w.Err == g.Err && bytes.Equal(appendLog(nil, &w.Log), appendLog(nil, &g.Log)) {
					continue
				}
				if diff := cmp.Diff(w, g, logOpts); diff != "" {
					t.Fatalf("op %d %v: GetLog(%d) (-InmemStore +Store):\n%s", i, o, idx, diff)
				}
			}

			for _, k := range randomBytesKeys {
				var w, g getResult
				var err error
				w.Val, err = ref.Get([]byte(k))
				w.Err = errString(err)
				g.Val, err = s.Get([]byte(k))
				g.Err = errString(err)
				if diff := cmp.Diff(w, g); diff != "" {
					t.Fatalf("op %d %v: Get(%q) (-InmemStore +Store):\n%s", i, o, k, diff)
				}
			}
			for _, k := range randomUint64Keys {
				var w, g getResult
				var err error
				w.N, err = ref.GetUint64([]byte(k))
				w.Err = errString(err)
				g.N, err = s.GetUint64([]byte(k))
				// InmemStore answers a missing uint64 key with 0 and no error;
				// raft treats that and (0, "not found") alike.
				if !errors.Is(err, ErrKeyNotFound) {
					g.Err = errString(err)
				}
				if diff := cmp.Diff(w, g); diff != "" {
					t.Fatalf("op %d %v: GetUint64(%q) (-InmemStore +Store):\n%s", i, o, k, diff)
				}
			}
		}
	})
}
