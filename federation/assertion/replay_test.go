package assertion

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestReplayCache(t *testing.T) {
	c := newReplayCache(replayShards) // one id per shard
	until := t0.Add(time.Minute)
	if err := c.add("a", until, t0); err != nil {
		t.Fatal(err)
	}
	if err := c.add("a", until, t0.Add(59*time.Second)); !errors.Is(err, ErrReplayed) {
		t.Fatalf("the same id again: %v; want ErrReplayed", err)
	}
	// Fill the shard of "a": another id in it is refused while "a" lives,
	// not evicted for it.
	other := idInShardOf(t, c, "a")
	if err := c.add(other, until, t0.Add(time.Second)); !errors.Is(err, ErrReplayCacheFull) {
		t.Fatalf("full shard: %v; want ErrReplayCacheFull", err)
	}
	if err := c.add("a", until, t0.Add(2*time.Second)); !errors.Is(err, ErrReplayed) {
		t.Fatalf("a refusal for fullness forgot the id: %v", err)
	}
	// Once "a" expires, the shard has room again and "a" is forgotten.
	if err := c.add(other, until.Add(time.Minute), until); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
	if got := c.len(); got != 1 {
		t.Errorf("len = %d; want 1 (the expired id swept)", got)
	}
}

// idInShardOf returns an id other than id that hashes to id's shard.
func idInShardOf(t *testing.T, c *replayCache, id string) string {
	t.Helper()
	for i := 0; i < 10000; i++ {
		s := fmt.Sprint("id-", i)
		if s != id && shardOf(c, s) == shardOf(c, id) {
			return s
		}
	}
	t.Fatal("no id found in the same shard")
	return ""
}

func shardOf(c *replayCache, id string) *replayShard {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		_, ok := s.ids[id]
		s.mu.Unlock()
		if ok {
			return s
		}
	}
	// Not held: find it by adding to a throwaway copy with the same seed.
	probe := &replayCache{seed: c.seed, perShard: 1 << 30}
	for i := range probe.shards {
		probe.shards[i].ids = map[string]time.Time{}
	}
	probe.add(id, t0.Add(time.Hour), t0)
	for i := range probe.shards {
		if len(probe.shards[i].ids) == 1 {
			return &c.shards[i]
		}
	}
	return nil
}

// TestReplayCacheSweeps: ids are dropped within a sweep interval of their
// expiry, so the entries gauge follows the live ids.
func TestReplayCacheSweeps(t *testing.T) {
	c := newReplayCache(1 << 10)
	for i := range 200 {
		if err := c.add(fmt.Sprint(i), t0.Add(10*time.Second), t0); err != nil {
			t.Fatal(err)
		}
	}
	if c.len() != 200 {
		t.Fatalf("len = %d; want 200", c.len())
	}
	// Every shard sweeps on its next add after the interval (300 random
	// ids reach all 16 shards but with a chance of about 1e-7).
	later := t0.Add(11 * time.Second)
	for i := range 300 {
		if err := c.add(fmt.Sprint("n", i), later.Add(time.Second), later); err != nil {
			t.Fatal(err)
		}
	}
	if c.len() != 300 {
		t.Errorf("len = %d; want 300 (the 200 expired ids swept)", c.len())
	}
	for i := range 200 {
		if err := c.add(fmt.Sprint(i), later.Add(time.Minute), later); errors.Is(err, ErrReplayed) {
			t.Fatalf("id %d still refused after its expiry", i)
		}
	}
}

// TestReplayCacheConcurrent: of many goroutines presenting the same ids at
// once, exactly one wins each id.
func TestReplayCacheConcurrent(t *testing.T) {
	c := newReplayCache(1 << 12)
	const ids, workers = 500, 8
	var mu sync.Mutex
	wins := map[string]int{}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range ids {
				id := fmt.Sprint(i)
				if err := c.add(id, t0.Add(time.Minute), t0); err == nil {
					mu.Lock()
					wins[id]++
					mu.Unlock()
				} else if !errors.Is(err, ErrReplayed) {
					t.Errorf("add(%s): %v", id, err)
				}
			}
		})
	}
	wg.Wait()
	if len(wins) != ids {
		t.Errorf("%d ids accepted; want %d", len(wins), ids)
	}
	for id, n := range wins {
		if n != 1 {
			t.Errorf("id %s accepted %d times", id, n)
		}
	}
	if c.len() != ids {
		t.Errorf("len = %d; want %d", c.len(), ids)
	}
}

// TestVerifyReplayCacheFull: a verifier whose cache is full refuses with
// ErrReplayCacheFull and accepts again once ids expire.
func TestVerifyReplayCacheFull(t *testing.T) {
	ms := newMesh(t)
	now := t0
	m := newTestMinter(t, ms.hr, hrNode, &now)
	v, err := NewVerifier(VerifierConfig{TrustDomain: financeTD, Node: finNode, Bundles: ms.bundles, ReplayCacheSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	var full error
	for i := 0; i < 200 && full == nil; i++ {
		_, full = v.Verify(mustMint(t, m, financeTD, aliceCall), hrNode, now)
	}
	if !errors.Is(full, ErrReplayCacheFull) {
		t.Fatalf("after many assertions in a cache of 16: %v; want ErrReplayCacheFull", full)
	}
	// Ids are remembered a second past exp + leeway (replay.go).
	now = t0.Add(MaxTTL + DefaultLeeway + time.Second)
	if _, err := v.Verify(mustMint(t, m, financeTD, aliceCall), hrNode, now); err != nil {
		t.Fatalf("after the ids expired: %v", err)
	}
}
