package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mcpmesh/mcpmesh/registry/api"
	"github.com/mcpmesh/mcpmesh/test/internal/testcluster"
)

// warmup is how many untimed writes open the connections (client to node,
// node to leader) before a measurement.
const warmup = 20

// BenchmarkRegistryWrite measures the latency of one write at a time.
func BenchmarkRegistryWrite(b *testing.B) {
	b.Run("leader", func(b *testing.B) {
		c := sharedCluster(b)
		benchTenantWrites(b, c, c.Leader(10*time.Second), "write-leader")
	})
	b.Run("follower", func(b *testing.B) {
		c := sharedCluster(b)
		benchTenantWrites(b, c, c.Followers(c.Leader(10 * time.Second))[0], "write-follower")
	})
	b.Run("submit-leader", func(b *testing.B) {
		c := sharedCluster(b)
		benchSubmits(b, c, c.Leader(10*time.Second))
	})
	b.Run("leader-nosync", func(b *testing.B) {
		// Its own cluster: fsync is a per-node setting.
		c := testcluster.New(b, testcluster.Options{NoSync: true})
		c.Start()
		benchTenantWrites(b, c, c.Leader(30*time.Second), "write-nosync")
	})
}

// benchTenantWrites puts tenant name through node n, one write at a time.
func benchTenantWrites(b *testing.B, c *testcluster.Cluster, n *testcluster.Node, name string) {
	ctx := context.Background()
	cl := client(b, c, n, 15*time.Second)
	i := 0
	for range warmup {
		i++
		if err := putTenant(ctx, cl, name, i); err != nil {
			b.Fatalf("warm-up write through %s: %v", n.ID, err)
		}
	}
	var lat []time.Duration
	for b.Loop() {
		i++
		start := time.Now()
		if err := putTenant(ctx, cl, name, i); err != nil {
			b.Fatalf("write %d through %s: %v%s", i, n.ID, err, deadNodes(c))
		}
		lat = append(lat, time.Since(start))
	}
	reportLatency(b, lat)
}

// benchSubmits submits a new version of one server card per write.
func benchSubmits(b *testing.B, c *testcluster.Cluster, n *testcluster.Node) {
	ctx := context.Background()
	cl := client(b, c, n, 15*time.Second)
	// A run-unique name, so -count > 1 never resubmits a version.
	name := fmt.Sprintf("io.example/bench-%d", time.Now().UnixNano())
	i := 0
	submit := func() error {
		i++
		_, err := cl.Submit(ctx, testcluster.Card(name, fmt.Sprintf("1.0.%d", i)))
		return err
	}
	for range warmup {
		if err := submit(); err != nil {
			b.Fatalf("warm-up submit through %s: %v", n.ID, err)
		}
	}
	var lat []time.Duration
	for b.Loop() {
		start := time.Now()
		if err := submit(); err != nil {
			b.Fatalf("submit %d through %s: %v%s", i, n.ID, err, deadNodes(c))
		}
		lat = append(lat, time.Since(start))
	}
	reportLatency(b, lat)
}

// BenchmarkRegistryWriteParallel measures write throughput with N clients
// writing concurrently to the leader, each over its own connection.
func BenchmarkRegistryWriteParallel(b *testing.B) {
	for _, clients := range []int{1, 4, 16, 64} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			c := sharedCluster(b)
			benchParallelWrites(b, c, c.Leader(10*time.Second), clients)
		})
	}
}

func benchParallelWrites(b *testing.B, c *testcluster.Cluster, n *testcluster.Node, clients int) {
	ctx := context.Background()
	type worker struct {
		cl   *api.Client
		name string
		i    int
		lat  []time.Duration
		err  error
	}
	ws := make([]*worker, clients)
	for k := range ws {
		w := &worker{cl: client(b, c, n, 15*time.Second), name: fmt.Sprintf("par-%d-%d", clients, k)}
		for range 3 {
			w.i++
			if err := putTenant(ctx, w.cl, w.name, w.i); err != nil {
				b.Fatalf("warm-up write through %s: %v", n.ID, err)
			}
		}
		ws[k] = w
	}
	// Each b.Loop iteration hands one write to whichever client is free.
	work := make(chan struct{})
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Go(func() {
			for range work {
				if w.err != nil {
					continue
				}
				w.i++
				start := time.Now()
				w.err = putTenant(ctx, w.cl, w.name, w.i)
				w.lat = append(w.lat, time.Since(start))
			}
		})
	}
	start := time.Now()
	for b.Loop() {
		work <- struct{}{}
	}
	// Up to clients writes are still in flight when b.Loop stops the timer:
	// time them too, so ns/op is wall time per write.
	b.StartTimer()
	close(work)
	wg.Wait()
	b.StopTimer()
	elapsed := time.Since(start)

	var lat []time.Duration
	var errs []error
	for _, w := range ws {
		lat = append(lat, w.lat...)
		if w.err != nil {
			errs = append(errs, fmt.Errorf("client %s: %w", w.name, w.err))
		}
	}
	if len(errs) > 0 {
		b.Fatalf("writes failed: %v%s", errors.Join(errs...), deadNodes(c))
	}
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "writes/s")
	reportLatency(b, lat)
}
