package cluster

import (
	"context"
	"slices"
	"time"

	"github.com/hashicorp/raft"

	"github.com/mcpmesh/mcpmesh/registry/state"
)

// The live replica count (state.LiveReplicas) is what every replica
// divides the BU's rate limits by, so that the BU as a whole admits each
// limit once. The leader watches its heartbeats to the followers (Raft's
// FailedHeartbeatObservation and ResumedHeartbeatObservation) and commits
// the count through Raft only when it changes: calls never wait on Raft,
// and every replica reads the same N from its applied state.
//
// A follower counts as down once its heartbeats have failed for longer
// than the heartbeat timeout since its last contact, so one lost heartbeat
// on a loaded machine does not halve anybody's share. The leader always
// counts itself. A follower the leader cannot reach but which still serves
// calls (a partition) keeps the N it last applied: until the partition
// heals, the BU may admit up to its share more than the limit.

// The leader re-evaluates the count when something it depends on changes
// (a heartbeat fails or resumes, leadership or the voter set changes) and
// when a failing follower's grace runs out, not on a timer: an idle BU
// spends nothing on it.
const (
	// liveRetry is how soon the leader tries again after it could not
	// commit the count.
	liveRetry = 250 * time.Millisecond
	// liveResync is how often the count is re-evaluated with nothing
	// observed, a backstop for an observation raft dropped.
	liveResync = 30 * time.Second
)

// planLive returns the live replica count and the voters counted down:
// every voter but those whose heartbeats have been failing since a last
// contact older than grace. self (the leader) is always live. The count is
// at least 1; down is sorted.
func planLive(voters []string, self string, failing map[string]time.Time, now time.Time, grace time.Duration) (count int, down []string) {
	for _, v := range voters {
		since, ok := failing[v]
		if v == self || !ok || now.Sub(since) <= grace {
			continue
		}
		down = append(down, v)
	}
	slices.Sort(down)
	return max(len(voters)-len(down), 1), down
}

// nextLiveCheck is how long after now the count must be re-evaluated
// with nothing observed: when the first failing follower that is not yet
// counted down passes grace, or liveResync, whichever comes first.
func nextLiveCheck(failing map[string]time.Time, now time.Time, grace time.Duration) time.Duration {
	next := liveResync
	for _, since := range failing {
		// planLive counts a follower down once now-since exceeds grace.
		if d := since.Add(grace).Sub(now) + time.Millisecond; d > 0 && d < next {
			next = d
		}
	}
	return next
}

// RunLiveReplicas keeps the live replica count in the registry up to date
// while this node leads, until ctx ends. Run it on every replica: only the
// leader acts.
func (c *Cluster) RunLiveReplicas(ctx context.Context) {
	obs := make(chan raft.Observation, 256)
	o := raft.NewObserver(obs, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.FailedHeartbeatObservation, raft.ResumedHeartbeatObservation, raft.LeaderObservation, raft.PeerObservation, raft.RaftState:
			return true
		}
		return false
	})
	c.raft.RegisterObserver(o)
	defer c.raft.DeregisterObserver(o)
	var lastErr time.Time
	runLive(ctx, obs, time.Now, c.cfg.HeartbeatTimeout, func(failing map[string]time.Time) error {
		if !c.IsLeader() {
			return nil
		}
		err := c.commitLive(ctx, failing)
		if err != nil && ctx.Err() == nil && time.Since(lastErr) > 10*time.Second {
			lastErr = time.Now()
			c.logger.Warn("could not commit the live replica count; rate limit shares may be off until it is", "error", err)
		}
		return err
	})
}

// runLive is RunLiveReplicas' loop: it tracks the followers whose
// heartbeats fail from raft's observations and calls check with them at
// once, whenever they or the leadership change, when a failing follower
// passes grace, every liveResync, and liveRetry after check failed. It
// returns when ctx ends.
func runLive(ctx context.Context, obs <-chan raft.Observation, now func() time.Time, grace time.Duration, check func(failing map[string]time.Time) error) {
	failing := map[string]time.Time{}
	t := time.NewTimer(0) // a first check at once
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ob := <-obs:
			changed := true
			switch d := ob.Data.(type) {
			case raft.FailedHeartbeatObservation:
				// raft reports every failed heartbeat; only the first
				// of a run changes anything.
				_, changed = failing[string(d.PeerID)]
				changed = !changed
				if changed {
					since := d.LastContact
					if since.IsZero() {
						since = now()
					}
					failing[string(d.PeerID)] = since
				}
			case raft.ResumedHeartbeatObservation:
				_, changed = failing[string(d.PeerID)]
				delete(failing, string(d.PeerID))
			case raft.LeaderObservation:
				// A new leader starts afresh: its own heartbeats will say
				// who is down.
				clear(failing)
			}
			if !changed {
				continue
			}
		case <-t.C:
		}
		next := nextLiveCheck(failing, now(), grace)
		if err := check(failing); err != nil && ctx.Err() == nil {
			next = min(next, liveRetry)
		}
		t.Reset(next)
	}
}

// commitLive commits the live replica count if it differs from the
// registry's.
func (c *Cluster) commitLive(ctx context.Context, failing map[string]time.Time) error {
	f := c.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return err
	}
	var voters []string
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			voters = append(voters, string(s.ID))
		}
	}
	if len(voters) == 0 {
		return nil
	}
	count, down := planLive(voters, c.cfg.NodeID, failing, time.Now(), c.cfg.HeartbeatTimeout)
	cur, err := c.FSM.LiveReplicas()
	if err != nil {
		return err
	}
	if cur.Index != 0 && cur.Count == count && cur.Voters == len(voters) && slices.Equal(cur.Down, down) {
		return nil
	}
	cmd, err := state.Encode(state.SetLiveReplicas{Count: count, Voters: len(voters), Down: down, Leader: c.cfg.NodeID, At: time.Now().UTC()})
	if err != nil {
		return err
	}
	actx, cancel := context.WithTimeout(ctx, c.cfg.ApplyTimeout)
	defer cancel()
	if _, err := c.Apply(actx, cmd); err != nil {
		return err
	}
	c.logger.Info("live replica count committed; every replica enforces its share of the rate limits", "live", count, "voters", len(voters), "down", down)
	return nil
}
