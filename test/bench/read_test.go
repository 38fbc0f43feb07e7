package bench

import (
	"context"
	"testing"
	"time"

	"github.com/mcpmesh/mcpmesh/test/internal/testcluster"
)

// readServer is the server card the read benchmarks fetch: one version with
// one tool, the same size in every run whatever else the cluster holds.
const readServer, readVersion = "io.example/bench-read", "1.0.0"

// BenchmarkRegistryReadLocal fetches one server version on a follower from
// its local state: no Raft round trip.
func BenchmarkRegistryReadLocal(b *testing.B) { benchFollowerReads(b, false) }

// BenchmarkRegistryReadConsistent fetches the same on a follower with
// ?consistent=true: a barrier through the leader before the local read.
func BenchmarkRegistryReadConsistent(b *testing.B) { benchFollowerReads(b, true) }

func benchFollowerReads(b *testing.B, consistent bool) {
	ctx := context.Background()
	c := sharedCluster(b)
	leader := c.Leader(10 * time.Second)
	f := c.Followers(leader)[0]
	if _, err := client(b, c, leader, 15*time.Second).Submit(ctx, testcluster.Card(readServer, readVersion)); err != nil {
		b.Fatalf("seed server card: %v", err)
	}
	cl := client(b, c, f, 15*time.Second)
	// The first read is consistent, so the follower has the card.
	if _, err := cl.Version(ctx, readServer, readVersion, true); err != nil {
		b.Fatalf("read on %s: %v", f.ID, err)
	}
	for range warmup {
		if _, err := cl.Version(ctx, readServer, readVersion, consistent); err != nil {
			b.Fatalf("warm-up read on %s: %v", f.ID, err)
		}
	}
	var lat []time.Duration
	for b.Loop() {
		start := time.Now()
		if _, err := cl.Version(ctx, readServer, readVersion, consistent); err != nil {
			b.Fatalf("read on %s: %v%s", f.ID, err, deadNodes(c))
		}
		lat = append(lat, time.Since(start))
	}
	reportLatency(b, lat)
}
