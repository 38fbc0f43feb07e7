package upstream

import (
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// TestReleaserBatches: a second of calls, one every millisecond, has each
// call's context cancelled between releaseGrace and twice that after it
// finished, by a handful of timer firings rather than one per call; once
// all are cancelled the timer stays off.
func TestReleaserBatches(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var r releaser
		const calls = 1000
		var mu sync.Mutex
		added := make([]time.Time, calls)
		cancelled := make([]time.Time, calls)
		for i := range calls {
			added[i] = time.Now()
			r.add(func() {
				mu.Lock()
				defer mu.Unlock()
				if !cancelled[i].IsZero() {
					t.Errorf("call %d cancelled twice", i)
				}
				cancelled[i] = time.Now()
			})
			time.Sleep(time.Millisecond)
		}
		time.Sleep(2 * releaseGrace)
		synctest.Wait()
		mu.Lock()
		for i := range calls {
			if cancelled[i].IsZero() {
				t.Fatalf("call %d not cancelled %s after the last call", i, 2*releaseGrace)
			}
			if d := cancelled[i].Sub(added[i]); d < releaseGrace || d > 2*releaseGrace {
				t.Fatalf("call %d cancelled %s after it finished, want %s to %s", i, d, releaseGrace, 2*releaseGrace)
			}
		}
		mu.Unlock()
		r.mu.Lock()
		fired, armed := r.fired, r.armed
		r.mu.Unlock()
		if fired > 3 || armed {
			t.Fatalf("timer fired %d times for %d calls (want at most 3), armed after all were cancelled: %v", fired, calls, armed)
		}
		time.Sleep(time.Hour)
		synctest.Wait()
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.fired != fired {
			t.Fatalf("timer fired %d times in an idle hour, want 0", r.fired-fired)
		}
	})
}
