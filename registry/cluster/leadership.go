package cluster

import (
	"context"

	"github.com/hashicorp/raft"
)

// WatchLeadership returns a channel that receives a value whenever this
// node may have gained or lost the leadership (raft's state and leader
// observations), until ctx ends. Signals coalesce: the channel holds at
// most one, so a receiver re-reads IsLeader on each and misses no change.
// Loops that act only on the leader wait on it instead of polling
// IsLeader. Leadership that changed before the call is not signalled:
// read IsLeader once after calling it.
func (c *Cluster) WatchLeadership(ctx context.Context) <-chan struct{} {
	out := make(chan struct{}, 1)
	obs := make(chan raft.Observation, 16)
	o := raft.NewObserver(obs, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.RaftState, raft.LeaderObservation:
			return true
		}
		return false
	})
	c.raft.RegisterObserver(o)
	go func() {
		defer c.raft.DeregisterObserver(o)
		for {
			select {
			case <-ctx.Done():
				return
			case <-obs:
				select {
				case out <- struct{}{}:
				default:
				}
			}
		}
	}()
	return out
}
