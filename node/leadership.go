package node

import "context"

// relayLeadership passes each leadership signal from (registry/cluster's
// WatchLeadership) on to every channel of to, never blocking: each holds
// at most one pending signal, and its reader re-reads IsLeader. It
// returns when ctx ends.
func relayLeadership(ctx context.Context, from <-chan struct{}, to []chan struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-from:
			for _, ch := range to {
				select {
				case ch <- struct{}{}:
				default:
				}
			}
		}
	}
}
