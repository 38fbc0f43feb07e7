package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/raft"
)

func TestPlanLive(t *testing.T) {
	now := time.Date(2026, 11, 3, 12, 0, 0, 0, time.UTC)
	const grace = 500 * time.Millisecond
	voters := []string{"n1", "n2", "n3"}
	for _, tc := range []struct {
		name      string
		voters    []string
		failing   map[string]time.Time
		wantCount int
		wantDown  []string
	}{
		{"all live", voters, nil, 3, nil},
		{"single node", []string{"n1"}, nil, 1, nil},
		{"one blip is not down", voters, map[string]time.Time{"n2": now.Add(-grace)}, 3, nil},
		{"failing past grace", voters, map[string]time.Time{"n3": now.Add(-2 * grace)}, 2, []string{"n3"}},
		{"two down", voters, map[string]time.Time{"n3": now.Add(-time.Minute), "n2": now.Add(-time.Minute)}, 1, []string{"n2", "n3"}},
		{"the leader always counts", voters, map[string]time.Time{"n1": now.Add(-time.Minute)}, 3, nil},
		{"a removed voter does not count", []string{"n1", "n2"}, map[string]time.Time{"n3": now.Add(-time.Minute)}, 2, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			count, down := planLive(tc.voters, "n1", tc.failing, now, grace)
			if count != tc.wantCount || !slices.Equal(down, tc.wantDown) {
				t.Errorf("planLive = %d %v, want %d %v", count, down, tc.wantCount, tc.wantDown)
			}
		})
	}
}

// TestLiveReplicasFollowHeartbeats: the leader commits 3 live replicas,
// 2 while a follower is cut off, 3 again once it is back; every replica
// reads the count from its state.
func TestLiveReplicasFollowHeartbeats(t *testing.T) {
	tc := newTestCluster(t, 3)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for _, c := range tc.nodes {
		wg.Go(func() { c.RunLiveReplicas(ctx) })
	}
	want := func(c *Cluster, count int) func() (bool, string) {
		return func() (bool, string) {
			lr, err := c.FSM.LiveReplicas()
			return err == nil && lr.Count == count && lr.Index != 0, fmt.Sprintf("%+v %v", lr, err)
		}
	}
	leader := tc.leader()
	for id, c := range tc.nodes {
		waitFor(t, id+" reads 3 live replicas", 10*time.Second, want(c, 3))
	}
	f := tc.follower(leader)
	tc.net.isolate(f.cfg.NodeID, true)
	waitFor(t, "the leader counts 2 live replicas", 10*time.Second, want(leader, 2))
	if lr, _ := leader.FSM.LiveReplicas(); !slices.Equal(lr.Down, []string{f.cfg.NodeID}) {
		t.Errorf("down = %v, want [%s]", lr.Down, f.cfg.NodeID)
	}
	tc.net.isolate(f.cfg.NodeID, false)
	leader = tc.leader()
	for id, c := range tc.nodes {
		waitFor(t, id+" reads 3 live replicas again", 10*time.Second, want(c, 3))
	}
}

// liveProbe records the calls runLive makes to its check: the count
// planLive gives at each, for voters n1 (the leader), n2 and n3.
type liveProbe struct {
	mu     sync.Mutex
	counts []int
	fail   bool
}

func (p *liveProbe) check(grace time.Duration) func(map[string]time.Time) error {
	return func(failing map[string]time.Time) error {
		count, _ := planLive([]string{"n1", "n2", "n3"}, "n1", failing, time.Now(), grace)
		p.mu.Lock()
		defer p.mu.Unlock()
		p.counts = append(p.counts, count)
		if p.fail {
			return errors.New("not committed")
		}
		return nil
	}
}

func (p *liveProbe) seen() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.counts)
}

// TestLiveCountIdle: with nothing observed the leader checks the count
// once at start and then only every liveResync (it used to every 250ms).
func TestLiveCountIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		obs := make(chan raft.Observation)
		var p liveProbe
		go runLive(t.Context(), obs, time.Now, 500*time.Millisecond, p.check(500*time.Millisecond))
		time.Sleep(10*time.Minute - time.Second)
		synctest.Wait()
		if got, want := len(p.seen()), int((10*time.Minute-time.Second)/liveResync)+1; got != want {
			t.Fatalf("%d checks in 10 idle minutes, want %d (one at start, one every %s)", got, want, liveResync)
		}
	})
}

// TestLiveCountFollowerDown: a follower's first failed heartbeat is
// checked at once (still live: within grace), repeated failures are not,
// and it is counted down as soon as grace has passed since its last
// contact; its resumed heartbeat is checked at once.
func TestLiveCountFollowerDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const grace = 500 * time.Millisecond
		obs := make(chan raft.Observation)
		var p liveProbe
		go runLive(t.Context(), obs, time.Now, grace, p.check(grace))
		synctest.Wait()
		if got := p.seen(); !slices.Equal(got, []int{3}) {
			t.Fatalf("checks at start: %v, want [3]", got)
		}
		lastContact := time.Now()
		time.Sleep(100 * time.Millisecond)
		obs <- raft.Observation{Data: raft.FailedHeartbeatObservation{PeerID: "n2", LastContact: lastContact}}
		synctest.Wait()
		for range 3 {
			time.Sleep(50 * time.Millisecond)
			obs <- raft.Observation{Data: raft.FailedHeartbeatObservation{PeerID: "n2", LastContact: lastContact}}
		}
		synctest.Wait()
		if got := p.seen(); !slices.Equal(got, []int{3, 3}) {
			t.Fatalf("checks after n2's failed heartbeats: %v, want [3 3] (one check, n2 within grace)", got)
		}
		// grace after the last contact, plus the millisecond planLive needs.
		time.Sleep(time.Until(lastContact.Add(grace + time.Millisecond)))
		synctest.Wait()
		if got := p.seen(); !slices.Equal(got, []int{3, 3, 2}) {
			t.Fatalf("checks once n2's grace ran out: %v, want [3 3 2]", got)
		}
		obs <- raft.Observation{Data: raft.ResumedHeartbeatObservation{PeerID: "n2"}}
		synctest.Wait()
		if got := p.seen(); !slices.Equal(got, []int{3, 3, 2, 3}) {
			t.Fatalf("checks after n2 resumed: %v, want [3 3 2 3]", got)
		}
	})
}

// TestLiveCountRetry: a check that fails is tried again liveRetry later
// until it succeeds, then not until liveResync.
func TestLiveCountRetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		obs := make(chan raft.Observation)
		p := liveProbe{fail: true}
		go runLive(t.Context(), obs, time.Now, 500*time.Millisecond, p.check(500*time.Millisecond))
		time.Sleep(3*liveRetry + liveRetry/2)
		synctest.Wait()
		if got := len(p.seen()); got != 4 {
			t.Fatalf("%d checks in 3.5 retry periods while failing, want 4", got)
		}
		p.mu.Lock()
		p.fail = false
		p.mu.Unlock()
		time.Sleep(liveRetry)
		synctest.Wait()
		time.Sleep(liveResync - 2*liveRetry)
		synctest.Wait()
		if got := len(p.seen()); got != 5 {
			t.Fatalf("%d checks, want 5 (four failed, one that succeeded, none since)", got)
		}
	})
}
