package bench

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcpmesh/mcpmesh/test/internal/testcluster"
)

// fedIdleWindow is how long BenchmarkFederatedIdle watches the idle nodes
// per iteration.
var fedIdleWindow = flag.Duration("fedidle.window", 30*time.Second, "how long BenchmarkFederatedIdle measures the idle federated nodes per iteration")

// BenchmarkFederatedIdle starts the federation of the manifest benchmarks
// (two one-node BUs, hr importing finance's echo tool, an agent of hr
// with a warm session), lets it settle, and measures each node process's
// CPU while nothing happens: the sum over its threads of
// /proc/<pid>/task/*/schedstat's time on CPU (nanoseconds) and of its
// timeslices (a wake-up count), over -fedidle.window per iteration. It
// reports <ns>-cpu-ms/s and <ns>-wakeups/s. Run it with -benchtime 1x.
func BenchmarkFederatedIdle(b *testing.B) {
	if n, ok := fixedBenchtime(); ok && n > 3 {
		b.Skipf("each iteration idles for %s: run it with -benchtime 1x", *fedIdleWindow)
	}
	m := startFedMesh(b)
	nodes := []struct {
		ns string
		n  *testcluster.Node
	}{{"hr", m.hr.Nodes[0]}, {"finance", m.fin.Nodes[0]}}
	// Let the start-up work (catalog sync, bundle fetches, gossip joins,
	// the first status writes) end.
	time.Sleep(5 * time.Second)
	cpu := make([]float64, len(nodes))
	wakes := make([]float64, len(nodes))
	iters := 0
	for b.Loop() {
		iters++
		before := make([]schedStat, len(nodes))
		for i, nd := range nodes {
			s, err := readSchedStat(nd.n.Pid())
			if err != nil {
				b.Fatalf("%s: %v", nd.ns, err)
			}
			before[i] = s
		}
		start := time.Now()
		time.Sleep(*fedIdleWindow)
		secs := time.Since(start).Seconds()
		for i, nd := range nodes {
			s, err := readSchedStat(nd.n.Pid())
			if err != nil {
				b.Fatalf("%s: %v", nd.ns, err)
			}
			c := float64(s.cpuNanos-before[i].cpuNanos) / 1e6 / secs
			w := float64(s.slices-before[i].slices) / secs
			cpu[i] += c
			wakes[i] += w
			b.Logf("iteration %d: %s idle: %.2f ms/s of CPU, %.1f wake-ups/s over %.1f s", iters, nd.ns, c, w, secs)
		}
	}
	for i, nd := range nodes {
		b.ReportMetric(cpu[i]/float64(iters), nd.ns+"-cpu-ms/s")
		b.ReportMetric(wakes[i]/float64(iters), nd.ns+"-wakeups/s")
	}
	b.Logf("load average at the end: %s", loadAverage())
}

// schedStat is a process's time on CPU and timeslices, summed over its
// threads.
type schedStat struct {
	cpuNanos, slices int64
}

// readSchedStat sums /proc/<pid>/task/*/schedstat: field 1 is the time a
// thread ran (ns), field 3 the timeslices it ran. Threads that exited in
// between drop out of the sum; the Go runtime keeps its threads.
func readSchedStat(pid int) (schedStat, error) {
	if pid == 0 {
		return schedStat{}, fmt.Errorf("the node is not running")
	}
	files, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(files) == 0 {
		return schedStat{}, fmt.Errorf("no /proc/%d/task/*/schedstat (Linux only): %v", pid, err)
	}
	var s schedStat
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			continue // the thread exited
		}
		fs := strings.Fields(string(raw))
		if len(fs) < 3 {
			return schedStat{}, fmt.Errorf("%s: %q: want 3 fields", f, raw)
		}
		ns, err1 := strconv.ParseInt(fs[0], 10, 64)
		n, err2 := strconv.ParseInt(fs[2], 10, 64)
		if err1 != nil || err2 != nil {
			return schedStat{}, fmt.Errorf("%s: %q: not numbers", f, raw)
		}
		s.cpuNanos += ns
		s.slices += n
	}
	return s, nil
}

// loadAverage is /proc/loadavg's first three fields, or "unknown".
func loadAverage() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Join(strings.Fields(string(raw))[:3], " ")
}
