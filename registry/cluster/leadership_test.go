package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestWatchLeadershipSignalsANewLeader: when the leader is cut off, the
// node elected in its place is told, and it then reads itself leader.
func TestWatchLeadershipSignalsANewLeader(t *testing.T) {
	tc := newTestCluster(t, 3)
	old := tc.leader()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	watches := map[*Cluster]<-chan struct{}{}
	for _, c := range tc.nodes {
		watches[c] = c.WatchLeadership(ctx)
	}
	tc.net.isolate(old.cfg.NodeID, true)
	t.Cleanup(func() { tc.net.isolate(old.cfg.NodeID, false) })
	next := tc.leader(old.cfg.NodeID)
	select {
	case <-watches[next]:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s became leader without a signal", next.cfg.NodeID)
	}
	// The old leader, cut off, steps down and is told too.
	waitFor(t, "the cut-off leader following", 10*time.Second, func() (bool, string) {
		return !old.IsLeader(), fmt.Sprintf("%s leader: %v", old.cfg.NodeID, old.IsLeader())
	})
	select {
	case <-watches[old]:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s stepped down without a signal", old.cfg.NodeID)
	}
}
