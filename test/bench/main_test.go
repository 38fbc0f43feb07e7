package bench

import (
	"context"
	"fmt"
	"log"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpmesh/mcpmesh/registry/api"
	"github.com/mcpmesh/mcpmesh/test/internal/testcluster"
)

// TestMain kills the shared cluster (if a benchmark started one) and
// removes its files once every benchmark has run.
func TestMain(m *testing.M) {
	code := m.Run()
	shared.tb.close(code == 0)
	os.Exit(code)
}

// shared is the cluster of the write and read benchmarks: starting three
// processes per benchmark function would dominate the run.
var shared struct {
	once sync.Once
	tb   processTB
	c    *testcluster.Cluster
	err  string
}

// sharedCluster returns the shared fsync-on cluster, started on first use;
// b receives the harness's failures while it runs.
func sharedCluster(b *testing.B) *testcluster.Cluster {
	b.Helper()
	shared.tb.use(b)
	shared.once.Do(func() {
		defer func() {
			// A harness failure during start ends this benchmark; record it so
			// later ones fail fast instead of using a half-started cluster.
			if shared.c == nil {
				shared.err = "shared cluster failed to start (see the first failing benchmark)"
			}
		}()
		c := testcluster.New(&shared.tb, testcluster.Options{})
		c.Start()
		checkTmpfs(b, c.Dir)
		c.Leader(30 * time.Second)
		shared.c = c
	})
	if shared.c == nil {
		b.Fatal(shared.err)
	}
	if dead := deadNodes(shared.c); dead != "" {
		b.Fatalf("shared cluster is broken:%s", dead)
	}
	return shared.c
}

// processTB is the testcluster.TB of the shared cluster, which outlives any
// one benchmark: failures go to the benchmark that is using it, cleanups
// run when the process ends.
type processTB struct {
	mu       sync.Mutex
	cur      testing.TB
	dir      string
	cleanups []func()
}

var _ testcluster.TB = (*processTB)(nil)

func (p *processTB) use(tb testing.TB) {
	p.mu.Lock()
	p.cur = tb
	p.mu.Unlock()
	tb.Cleanup(func() {
		p.mu.Lock()
		if p.cur == tb {
			p.cur = nil
		}
		p.mu.Unlock()
	})
}

func (p *processTB) current() testing.TB {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cur
}

func (p *processTB) Helper() {}

// Fatalf must be called from the current benchmark's goroutine, as for
// testing.TB.
func (p *processTB) Fatalf(format string, args ...any) {
	if tb := p.current(); tb != nil {
		tb.Fatalf(format, args...)
	}
	panic(fmt.Sprintf(format, args...))
}

func (p *processTB) Logf(format string, args ...any) {
	if tb := p.current(); tb != nil {
		tb.Logf(format, args...)
		return
	}
	log.Printf(format, args...)
}

func (p *processTB) TempDir() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dir == "" {
		d, err := os.MkdirTemp("", "mcpmesh-bench-")
		if err != nil {
			panic(err)
		}
		p.dir = d
	}
	d, err := os.MkdirTemp(p.dir, "")
	if err != nil {
		panic(err)
	}
	return d
}

func (p *processTB) Cleanup(f func()) {
	p.mu.Lock()
	p.cleanups = append(p.cleanups, f)
	p.mu.Unlock()
}

// close runs the cleanups (killing the nodes) and removes the files, or
// keeps them for a look at the node logs when the run failed.
func (p *processTB) close(removeFiles bool) {
	p.mu.Lock()
	fs, dir := p.cleanups, p.dir
	p.cleanups, p.cur = nil, nil
	p.mu.Unlock()
	for _, f := range slices.Backward(fs) {
		f()
	}
	switch {
	case dir == "":
	case removeFiles:
		os.RemoveAll(dir)
	default:
		log.Printf("kept the shared cluster's files (node logs *.log) in %s", dir)
	}
}

// deadNodes describes the nodes of c that are not running, with their log
// tails, for failure messages ("" when all run).
func deadNodes(c *testcluster.Cluster) string {
	var sb strings.Builder
	for _, n := range c.Nodes {
		if !n.Running() {
			fmt.Fprintf(&sb, "\nnode %s is not running; log tail:\n%s", n.ID, n.LogTail(40))
		}
	}
	return sb.String()
}

// client returns an admin client for n with a per-request timeout.
func client(b *testing.B, c *testcluster.Cluster, n *testcluster.Node, timeout time.Duration) *api.Client {
	b.Helper()
	cl, err := api.NewClient(api.ClientConfig{Addr: n.URL(), Token: c.Token, Timeout: timeout})
	if err != nil {
		b.Fatalf("client: %v", err)
	}
	return cl
}

// putTenant writes tenant name with owner number i: a different owner each
// call makes every call a real change of the state.
func putTenant(ctx context.Context, cl *api.Client, name string, i int) error {
	_, err := cl.PutTenant(ctx, api.TenantRequest{Name: name, Owners: []string{fmt.Sprintf("owner-%d@corp.example", i)}})
	return err
}

// reportLatency reports the p50 and p99 of ds in microseconds.
func reportLatency(b *testing.B, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	slices.Sort(ds)
	b.ReportMetric(us(percentile(ds, 0.50)), "p50-us")
	b.ReportMetric(us(percentile(ds, 0.99)), "p99-us")
}

// percentile is the nearest-rank percentile of sorted ds.
func percentile(sorted []time.Duration, p float64) time.Duration {
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
