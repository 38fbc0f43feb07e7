package cluster

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
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
