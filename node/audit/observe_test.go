package audit

import (
	"sync"
	"testing"
)

// The observer sees every record committed after it was set, in seq
// order, before Append returns; After reads back those before.
func TestObserverAndAfter(t *testing.T) {
	l, _ := newTestLog(t)
	mustAppend(t, l, callRecord(0)) // before the observer: not reported
	var mu sync.Mutex
	var seen []uint64
	l.SetObserver(func(r Record) {
		mu.Lock()
		seen = append(seen, r.Seq)
		mu.Unlock()
	})
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			seq := mustAppend(t, l, callRecord(i))
			mu.Lock()
			defer mu.Unlock()
			if len(seen) == 0 || seen[len(seen)-1] < seq {
				t.Errorf("Append of record %d returned before the observer saw it", seq)
			}
		})
	}
	wg.Wait()
	if len(seen) != 40 {
		t.Fatalf("observer saw %d records, want 40", len(seen))
	}
	for i, s := range seen {
		if s != uint64(i+2) {
			t.Fatalf("observer saw seqs %v; want 2..41 in order", seen)
		}
	}
	var after []uint64
	if err := l.After(t.Context(), 39, func(r Record) error {
		after = append(after, r.Seq)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(after) != 2 || after[0] != 40 || after[1] != 41 {
		t.Errorf("After(39) = %v, want [40 41]", after)
	}
	l.SetObserver(nil)
	mustAppend(t, l, callRecord(1))
	if len(seen) != 40 {
		t.Errorf("the observer was called after it was removed")
	}
}
