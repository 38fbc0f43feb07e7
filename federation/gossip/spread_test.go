package gossip

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// spreadPushPull is the push/pull interval of the 50-node runs, a test-only
// value: memberlist doubles it past 32 members, so a node that misses a
// broadcast is repaired within about 10s instead of the WAN config's 120s,
// and the test stays bounded. Everything that decides the broadcast spread
// (gossip every 500ms to 4 members, retransmits, probing) is the WAN
// config's.
const spreadPushPull = 5 * time.Second

// spreadWatch records when each pool first sees the watched member's hint
// reach a catalog version.
type spreadWatch struct {
	mu      sync.Mutex
	source  string
	version uint64
	start   time.Time
	seen    map[int]time.Duration
}

func (w *spreadWatch) observe(i int, m Member) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if m.Name != w.source || m.Hint.CatalogVersion < w.version || w.seen == nil {
		return
	}
	if _, ok := w.seen[i]; !ok {
		w.seen[i] = time.Since(w.start)
	}
}

// arm starts watching for source's hint at version.
func (w *spreadWatch) arm(source string, version uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.source, w.version, w.start, w.seen = source, version, time.Now(), map[int]time.Duration{}
}

func (w *spreadWatch) result() (map[int]time.Duration, time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[int]time.Duration, len(w.seen))
	for k, v := range w.seen {
		out[k] = v
	}
	return out, time.Since(w.start)
}

// startMesh starts n pools on loopback that join through the first and
// waits until every pool sees every other alive.
func startMesh(tb testing.TB, n int, w *spreadWatch) []*Pool {
	tb.Helper()
	tune := WithMemberlistConfig(func(c *memberlist.Config) { c.PushPullInterval = spreadPushPull })
	pools := make([]*Pool, n)
	for i := range pools {
		cfg := testConfig(i)
		if i > 0 {
			cfg.Join = []string{pools[0].Addr()}
		}
		pools[i] = newTestPool(tb, cfg, tune, WithOnChange(func(m Member) { w.observe(i, m) }))
		go func() { _ = pools[i].Run(tb.Context()) }()
	}
	start := time.Now()
	waitFor(tb, 30*time.Second, fmt.Sprintf("%d pools see each other", n), func() (bool, string) {
		for i, p := range pools {
			if got := aliveOthers(p); got != n-1 {
				return false, fmt.Sprintf("pool %d sees %d others alive", i, got)
			}
		}
		return true, ""
	})
	tb.Logf("%d pools converged in %s", n, time.Since(start).Round(time.Millisecond))
	return pools
}

// spreadRound changes the catalog version of one pool and waits until every
// other pool has seen it, returning each pool's delay and the time until
// the last one.
func spreadRound(tb testing.TB, pools []*Pool, w *spreadWatch, src int, version uint64) ([]time.Duration, time.Duration) {
	tb.Helper()
	w.arm(pools[src].Name(), version)
	if err := pools[src].SetHint(func(h *Hint) { h.CatalogVersion = version }); err != nil {
		tb.Fatal(err)
	}
	var seen map[int]time.Duration
	waitFor(tb, 3*spreadPushPull, fmt.Sprintf("catalog %d of %s reaches all %d others", version, pools[src].Name(), len(pools)-1), func() (bool, string) {
		var elapsed time.Duration
		seen, elapsed = w.result()
		if len(seen) == len(pools)-1 {
			return true, ""
		}
		var missing []string
		for i, p := range pools {
			if _, ok := seen[i]; !ok && i != src {
				missing = append(missing, p.Name())
			}
		}
		return false, fmt.Sprintf("%d of %d saw it after %s; missing %v", len(seen), len(pools)-1, elapsed, missing)
	})
	ds := make([]time.Duration, 0, len(seen))
	for _, d := range seen {
		ds = append(ds, d)
	}
	slices.Sort(ds)
	return ds, ds[len(ds)-1]
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// TestSpread50: 50 pools in one process on loopback; a catalog version
// change on one reaches all 49 others. The spread is logged, not asserted
// (the machine is shared); the test fails only if some pool never sees it.
func TestSpread50(t *testing.T) {
	if testing.Short() {
		t.Skip("50 memberlist pools; skipped with -short")
	}
	var w spreadWatch
	pools := startMesh(t, 50, &w)
	for round := range 2 {
		src := rand.N(len(pools))
		ds, last := spreadRound(t, pools, &w, src, uint64(round+1))
		t.Logf("round %d: catalog change of %s seen by %d others: p50 %s, p99 %s, max %s",
			round+1, pools[src].Name(), len(ds), percentile(ds, 0.50).Round(time.Millisecond),
			percentile(ds, 0.99).Round(time.Millisecond), last.Round(time.Millisecond))
	}
}

// BenchmarkSpread measures, over b.N rounds on one 50-pool mesh, the time
// until a catalog change on a random pool is seen by each of the 49 others:
// p50-ms and p99-ms over every (round, pool) delay, and max-ms, the slowest
// pool of the slowest round. Run it with e.g. -benchtime 20x.
func BenchmarkSpread(b *testing.B) {
	var w spreadWatch
	pools := startMesh(b, 50, &w)
	var all []time.Duration
	var version uint64
	b.ResetTimer()
	for b.Loop() {
		version++
		ds, _ := spreadRound(b, pools, &w, rand.N(len(pools)), version)
		all = append(all, ds...)
	}
	b.StopTimer()
	slices.Sort(all)
	b.ReportMetric(float64(percentile(all, 0.50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(percentile(all, 0.99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(all[len(all)-1].Microseconds())/1000, "max-ms")
}
