package upstream

import (
	"context"
	"sync"
	"time"
)

// releases cancels the contexts of finished upstream calls between
// releaseGrace and twice that after they finished (see detach), in
// batches: one timer for all of them instead of one per call. A timer per
// call fired, and woke the scheduler, once for every call a second after
// it: at hundreds of calls a second that was a wake-up every few
// milliseconds, which kept an idle node busy for a second after each
// burst of calls and cost every call a little.
var releases releaser

// releaser holds cancel functions in two generations: those added since
// the timer last fired (young) and those added before (old). Each firing
// cancels the old and ages the young, so a cancel runs one to two periods
// after it was added. The timer runs only while a generation holds any.
// It is safe for concurrent use; the zero value is ready.
type releaser struct {
	mu         sync.Mutex
	young, old []context.CancelFunc
	timer      *time.Timer
	armed      bool
	// fired counts the timer's firings (for tests).
	fired int
}

// add schedules cancel, releaseGrace to twice that from now.
func (r *releaser) add(cancel context.CancelFunc) {
	r.mu.Lock()
	r.young = append(r.young, cancel)
	if !r.armed {
		r.armed = true
		if r.timer == nil {
			r.timer = time.AfterFunc(releaseGrace, r.fire)
		} else {
			r.timer.Reset(releaseGrace)
		}
	}
	r.mu.Unlock()
}

// fire cancels the old generation, ages the young one, and sets the timer
// again if anything is left.
func (r *releaser) fire() {
	r.mu.Lock()
	r.fired++
	due := r.old
	r.old, r.young = r.young, nil
	if len(r.old) > 0 {
		r.timer.Reset(releaseGrace)
	} else {
		r.armed = false
	}
	r.mu.Unlock()
	for _, cancel := range due {
		cancel()
	}
}
