package bundles

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// TestWatcherWakesOnlyWhenDue: with LeaderChanged, a follower's watcher
// does not wake to poll IsLeader (it used to every MinRefresh); told it
// leads, it fetches at once; then it wakes when the next fetch is due and
// not before.
func TestWatcherWakesOnlyWhenDue(t *testing.T) {
	finance := newCA(t, financeTD)
	base := ownBundle(t, finance)
	dead := deadURL(t)
	p := newFSMProposer(t) // pebble's goroutines live outside the bubble
	synctest.Test(t, func(t *testing.T) {
		var leading atomic.Bool
		var checks atomic.Int64
		leaderChanged := make(chan struct{}, 1)
		w, err := NewWatcher(WatcherConfig{
			IsLeader:      func() bool { checks.Add(1); return leading.Load() },
			LeaderChanged: leaderChanged, Propose: p.propose, Store: p.fsm, By: "spiffe://hr.example.corp/mcpmesh/node/n1",
			MinRefresh: 5 * time.Minute, MaxRefresh: 2 * time.Hour, FetchTimeout: 5 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		id := spiffeid.RequireFromPath(financeTD, "/mcpmesh/node/n1")
		if err := w.SetTargets([]Target{{TrustDomain: financeTD, Bootstrap: base, Endpoints: []Endpoint{{URL: dead, ID: id}}}}); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- w.Run(ctx) }()
		defer func() {
			cancel()
			<-done
		}()
		fetches := func() float64 { return testutil.ToFloat64(w.fetchErrors.WithLabelValues(financeTD.Name())) }

		time.Sleep(time.Hour)
		synctest.Wait()
		if n, f := checks.Load(), fetches(); n > 2 || f != 0 {
			t.Fatalf("a follower idle for an hour: %d leadership checks, %v fetches; want at most 2 (start, SetTargets) and none", n, f)
		}
		leading.Store(true)
		leaderChanged <- struct{}{}
		synctest.Wait()
		if f := fetches(); f != 1 {
			t.Fatalf("on becoming leader: %v fetches, want 1 at once", f)
		}
		// The failed fetch is tried again MinRefresh later.
		before := checks.Load()
		time.Sleep(5*time.Minute - time.Second)
		synctest.Wait()
		if n, f := checks.Load()-before, fetches(); n > 1 || f != 1 {
			t.Fatalf("a leader with nothing due for almost MinRefresh: %d wake-ups, %v fetches; want at most 1 (the fetch's result) and 1", n, f)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if f := fetches(); f != 2 {
			t.Fatalf("when the retry is due: %v fetches, want 2", f)
		}
	})
}
