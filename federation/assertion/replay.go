package assertion

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultReplayCacheSize is the default capacity of the replay cache. An
// id stays at most MaxTTL plus the leeway (65s by default), so it admits
// about 4000 assertions a second per node, sustained, in some 30 MB.
const DefaultReplayCacheSize = 1 << 18

const (
	replayShards = 16
	// sweepEvery is how often a shard drops its expired ids while it is
	// not full.
	sweepEvery = time.Second
)

// replayCache remembers the ids of accepted assertions until they expire.
//
// When it is full it refuses new ids instead of evicting unexpired ones:
// an evicted id could be replayed at once, so eviction would turn a flood
// into a bypass. Only assertions whose signature verified with a federated
// BU's key reach the cache, so filling it takes a peer BU minting more
// than the capacity within one assertion lifetime; the refusal then hits
// that load, is counted (reason replay_cache_full) and clears as ids expire.
//
// It is sharded by a hash of the id; each shard sweeps its expired ids at
// most once a second while it has room, and when full only once its
// earliest id has expired, so a full shard refuses in constant time.
type replayCache struct {
	seed     maphash.Seed
	perShard int
	entries  atomic.Int64
	shards   [replayShards]replayShard
}

type replayShard struct {
	mu        sync.Mutex
	ids       map[string]time.Time // id -> when it may be forgotten
	earliest  time.Time            // no id is forgotten before it
	nextSweep time.Time
}

func newReplayCache(size int) *replayCache {
	c := &replayCache{seed: maphash.MakeSeed(), perShard: max(1, (size+replayShards-1)/replayShards)}
	for i := range c.shards {
		c.shards[i].ids = make(map[string]time.Time)
	}
	return c
}

// add remembers id until until, or refuses it as replayed or the cache as
// full.
func (c *replayCache) add(id string, until, now time.Time) error {
	s := &c.shards[maphash.String(c.seed, id)%replayShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, seen := s.ids[id]; seen && now.Before(t) {
		return ErrReplayed
	}
	full := len(s.ids) >= c.perShard
	if !now.Before(s.nextSweep) || (full && !now.Before(s.earliest)) {
		c.sweep(s, now)
		full = len(s.ids) >= c.perShard
	}
	if full {
		return ErrReplayCacheFull
	}
	if _, seen := s.ids[id]; !seen {
		c.entries.Add(1)
	}
	s.ids[id] = until
	if len(s.ids) == 1 || until.Before(s.earliest) {
		s.earliest = until
	}
	return nil
}

// sweep drops the shard's expired ids; s.mu is held.
func (c *replayCache) sweep(s *replayShard, now time.Time) {
	var earliest time.Time
	dropped := 0
	for id, t := range s.ids {
		if !now.Before(t) {
			delete(s.ids, id)
			dropped++
		} else if earliest.IsZero() || t.Before(earliest) {
			earliest = t
		}
	}
	c.entries.Add(-int64(dropped))
	s.earliest = earliest
	s.nextSweep = now.Add(sweepEvery)
}

// len is the number of ids held, expired ones not yet swept included.
func (c *replayCache) len() int { return int(c.entries.Load()) }
