// Package pebblesched schedules the compactions of one pebble database
// of a node (the Raft log, the registry state, the audit log) without
// waking up while no compaction waits.
//
// pebble's default scheduler (pebble.ConcurrencyLimitScheduler) grants
// the same compaction concurrency, but samples the database every 100ms
// for ever, whether or not a compaction waits: 10 wake-ups a second per
// database, 30 for an idle node with three, most of an idle node's CPU.
// A database waits for a compaction only after the scheduler refused one
// (TrySchedule returning false); until the scheduler finds the database
// no longer waiting, this one samples it every 100ms exactly as pebble's
// does, and otherwise sleeps until pebble pokes it (after a flush) or a
// compaction ends. It owns nothing else of pebble's configuration.
package pebblesched

import (
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// sampleEvery is how often a database with a waiting compaction is
// sampled for more permitted concurrency, as pebble's own scheduler does.
const sampleEvery = 100 * time.Millisecond

// Scheduler is a pebble.CompactionScheduler for one database that limits
// its running compactions to what the database allows without permission
// (pebble.DBForCompaction.GetAllowedWithoutPermission), like pebble's
// default, but keeps no timer while no compaction waits. Give each
// database its own (pebble.Options.Experimental.CompactionScheduler =
// New()). It is safe for concurrent use, as pebble requires.
type Scheduler struct {
	// poke wakes the sampler: a refusal (start sampling) or a possible
	// rise of the permitted concurrency (grant now).
	poke chan struct{}
	stop chan struct{}
	done chan struct{}

	mu struct {
		sync.Mutex
		db           pebble.DBForCompaction
		running      int
		lastAllowed  int
		unregistered bool
		// waiting says the database may hold a compaction it was refused;
		// refusals counts them, so a grant that found nothing waiting does
		// not clear a refusal made meanwhile.
		waiting  bool
		refusals uint64
		// granting is true while one goroutine grants, with mu released;
		// grantingDone is broadcast when it ends.
		granting     bool
		grantingDone *sync.Cond
	}
}

var (
	_ pebble.CompactionScheduler   = (*Scheduler)(nil)
	_ pebble.CompactionGrantHandle = (*Scheduler)(nil)
)

// New returns a scheduler for one database, to be registered by it.
func New() *Scheduler {
	s := &Scheduler{poke: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	s.mu.grantingDone = sync.NewCond(&s.mu.Mutex)
	return s
}

// Register implements pebble.CompactionScheduler: pebble calls it once,
// as the database opens. It starts the sampler.
func (s *Scheduler) Register(_ int, db pebble.DBForCompaction) {
	s.mu.Lock()
	s.mu.db = db
	s.mu.Unlock()
	go s.sample()
}

// Unregister implements pebble.CompactionScheduler: pebble calls it as
// the database closes. It stops the sampler and returns once no grant is
// under way; the database is not called again.
func (s *Scheduler) Unregister() {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.unregistered = true
	for s.mu.granting {
		s.mu.grantingDone.Wait()
	}
}

// TrySchedule implements pebble.CompactionScheduler: it grants a
// compaction the database wants to start if fewer than it allows run. A
// refusal makes the database wait, and the sampler watch it.
func (s *Scheduler) TrySchedule() (bool, pebble.CompactionGrantHandle) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.unregistered {
		return false, nil
	}
	s.mu.lastAllowed = s.mu.db.GetAllowedWithoutPermission()
	if s.mu.lastAllowed > s.mu.running {
		s.mu.running++
		return true, s
	}
	s.mu.waiting = true
	s.mu.refusals++
	s.wake()
	return false, nil
}

// UpdateGetAllowedWithoutPermission implements pebble.CompactionScheduler:
// pebble calls it after a flush, which may raise the concurrency the
// database allows; if it rose, a waiting compaction is granted now.
func (s *Scheduler) UpdateGetAllowedWithoutPermission() {
	s.mu.Lock()
	allowed := s.mu.db.GetAllowedWithoutPermission()
	rose := allowed > s.mu.lastAllowed
	s.mu.lastAllowed = allowed
	s.mu.Unlock()
	if rose {
		s.wake()
	}
}

// Started implements pebble.CompactionGrantHandle.
func (s *Scheduler) Started() {}

// MeasureCPU implements pebble.CompactionGrantHandle.
func (s *Scheduler) MeasureCPU(pebble.CompactionGoroutineKind) {}

// CumulativeStats implements pebble.CompactionGrantHandle.
func (s *Scheduler) CumulativeStats(pebble.CompactionGrantHandleStats) {}

// Done implements pebble.CompactionGrantHandle: a granted compaction
// ended, so a waiting one may start.
func (s *Scheduler) Done() {
	s.mu.Lock()
	s.mu.running--
	s.grantLockedAndUnlock()
}

// wake pokes the sampler without blocking.
func (s *Scheduler) wake() {
	select {
	case s.poke <- struct{}{}:
	default:
	}
}

// sample grants on every poke, and every sampleEvery while the database
// waits, until Unregister.
func (s *Scheduler) sample() {
	defer close(s.done)
	var tick <-chan time.Time
	var t *time.Timer
	for {
		select {
		case <-s.stop:
			if t != nil {
				t.Stop()
			}
			return
		case <-s.poke:
			s.mu.Lock()
			s.grantLockedAndUnlock()
		case <-tick:
			// A grant elsewhere (Done) may have found the database no
			// longer waiting since the timer was set.
			s.mu.Lock()
			if s.mu.waiting {
				s.grantLockedAndUnlock()
			} else {
				s.mu.Unlock()
			}
		}
		s.mu.Lock()
		waiting := s.mu.waiting
		s.mu.Unlock()
		switch {
		case !waiting:
			tick = nil
		case t == nil:
			t = time.NewTimer(sampleEvery)
			tick = t.C
		default:
			t.Reset(sampleEvery)
			tick = t.C
		}
	}
}

// grantLockedAndUnlock grants the database's waiting compactions while
// it allows more than run, as pebble's scheduler does, and notes when it
// no longer waits. s.mu is held on entry and released on return.
func (s *Scheduler) grantLockedAndUnlock() {
	defer s.mu.Unlock()
	for s.mu.granting {
		s.mu.grantingDone.Wait()
	}
	if s.mu.unregistered || s.mu.db == nil {
		return
	}
	db := s.mu.db
	s.mu.lastAllowed = db.GetAllowedWithoutPermission()
	toGrant := s.mu.lastAllowed - s.mu.running
	if toGrant <= 0 {
		return
	}
	refusals := s.mu.refusals
	s.mu.granting = true
	s.mu.Unlock()
	// GetWaitingCompaction picks a compaction, so it is called only when
	// one can be granted.
	stillWaiting := true
	for toGrant > 0 {
		if waiting, _ := db.GetWaitingCompaction(); !waiting {
			stillWaiting = false
			break
		}
		if !db.Schedule(s) {
			stillWaiting = false
			break
		}
		s.mu.Lock()
		s.mu.running++
		s.mu.Unlock()
		toGrant--
	}
	s.mu.Lock()
	if !stillWaiting && s.mu.refusals == refusals {
		s.mu.waiting = false
	}
	s.mu.granting = false
	s.mu.grantingDone.Broadcast()
}
