package bench

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mcpmesh/mcpmesh/registry/api"
	"github.com/mcpmesh/mcpmesh/test/internal/testcluster"
)

// maxFailoverIters bounds BenchmarkFailover's iteration count: each kills a
// leader and restarts it, seconds apiece.
const maxFailoverIters = 20

const (
	// While the cluster fails over, a polling write starts every
	// failoverPollWrites through each survivor, without waiting for the
	// previous ones (which may hang on the lost leader), each with a
	// client timeout of failoverWriteTimeout.
	failoverPollWrites   = 20 * time.Millisecond
	failoverWriteTimeout = time.Second
	// failoverRetry is the pause of the patient writer after an error.
	failoverRetry = 10 * time.Millisecond
	// cliWriteTimeout is the client timeout of the CLI (api.ClientConfig's
	// default): the patient writer behind follower-write-ms.
	cliWriteTimeout = 30 * time.Second
	failoverPoll    = 5 * time.Millisecond
	failoverLimit   = 60 * time.Second
)

// BenchmarkFailover takes the leader away once per iteration and measures
// how long the namespace cannot take writes. See the package documentation
// for what it reports; ns/op is the mean of the timed part (leader gone to
// first successful write) only.
func BenchmarkFailover(b *testing.B) {
	if n, ok := fixedBenchtime(); ok && n > maxFailoverIters {
		b.Skipf("each iteration kills and restarts a node (seconds); -benchtime %dx asks for too many: run it alone with -benchtime 5x", n)
	}
	b.Run("defaults", func(b *testing.B) {
		c := testcluster.New(b, testcluster.Options{})
		c.Start()
		benchFailover(b, c, syscall.SIGKILL)
	})
	// Halved Raft timeouts (node config keys; the product defaults are
	// 500ms, 500ms, 250ms): election time should follow them.
	b.Run("timeouts=250ms", func(b *testing.B) {
		c := testcluster.New(b, testcluster.Options{})
		c.SetRaftOptions("heartbeat_timeout: 250ms", "election_timeout: 250ms", "leader_lease_timeout: 125ms")
		c.Start()
		benchFailover(b, c, syscall.SIGKILL)
	})
	// SIGSTOP instead of SIGKILL: the leader hangs, as a dead host or a
	// partition looks to its peers (connections neither refused nor reset).
	b.Run("freeze", func(b *testing.B) {
		c := testcluster.New(b, testcluster.Options{})
		c.Start()
		benchFailover(b, c, syscall.SIGSTOP)
	})
}

// benchFailover runs the iterations: the leader gets sig (then SIGKILL if
// that was not it), and is restarted untimed.
func benchFailover(b *testing.B, c *testcluster.Cluster, sig syscall.Signal) {
	c.Leader(failoverLimit)
	var elections, failovers, followerWrites []time.Duration
	iter := 0
	for b.Loop() {
		b.StopTimer()
		iter++
		leader := c.Leader(failoverLimit)
		survivors := c.Followers(leader)
		polls := make([]*api.Client, len(survivors))
		patient := make([]*api.Client, len(survivors))
		for k, s := range survivors {
			polls[k] = client(b, c, s, failoverWriteTimeout)
			patient[k] = client(b, c, s, cliWriteTimeout)
			// Write before the fault, so connections (client to node, node to
			// leader) are warm and pooled as in steady state.
			for _, cl := range []*api.Client{polls[k], patient[k]} {
				if err := putTenant(context.Background(), cl, "failover-"+s.ID, iter*100000); err != nil {
					b.Fatalf("write through %s before the fault: %v", s.ID, err)
				}
			}
		}
		b.StartTimer()

		r := failover(b, leader, sig, survivors, polls, patient, iter)

		// failover stopped the timer at the first successful write.
		if sig != syscall.SIGKILL {
			leader.Kill()
		}
		if r.err != nil {
			b.Fatalf("iteration %d: %v", iter, r.err)
		}
		elections = append(elections, r.elected)
		failovers = append(failovers, r.written)
		followerWrites = append(followerWrites, r.followerWrite)
		var firstErr string
		if r.followerErr != nil {
			firstErr = fmt.Sprintf(" (first answer: error %v)", r.followerErr)
		}
		b.Logf("iteration %d: %s to leader %s; %s leader after %s; first write (through %s) after %s; write through follower %s with a %s client timeout done after %s%s",
			iter, sigName(sig), leader.ID, r.newLeader, r.elected.Round(time.Millisecond), r.via, r.written.Round(time.Millisecond),
			r.follower, cliWriteTimeout, r.followerWrite.Round(time.Millisecond), firstErr)
		leader.Start()
		for _, n := range c.Nodes {
			n.WaitReady(failoverLimit)
		}
		c.Leader(failoverLimit)
		b.StartTimer()
	}
	reportMillis(b, "election", elections)
	reportMillis(b, "failover", failovers)
	reportMillis(b, "follower-write", followerWrites)
}

type failoverResult struct {
	// elected: until a survivor reports itself leader; written: until a
	// polling write through any survivor succeeds; followerWrite: until
	// writes with the CLI's client timeout through the survivor that stayed
	// follower succeed (retrying after an error answer).
	elected, written, followerWrite time.Duration
	newLeader, via, follower        string
	// followerErr is the first error answer to the patient writer on the
	// follower, if any.
	followerErr error
	err         error
}

// failover sends sig to leader and measures, from then on, the durations
// of failoverResult. It stops b's timer at the first successful write.
func failover(b *testing.B, leader *testcluster.Node, sig syscall.Signal, survivors []*testcluster.Node, polls, patient []*api.Client, iter int) failoverResult {
	ctx, cancel := context.WithTimeout(context.Background(), failoverLimit)
	defer cancel()
	type event struct {
		after time.Duration
		node  string
	}
	elected := make(chan event, 1)
	written := make(chan event, len(survivors))
	patientDone := make([]time.Duration, len(survivors))
	patientErr := make([]error, len(survivors))
	var wg sync.WaitGroup

	start := time.Now()
	if sig == syscall.SIGKILL {
		leader.Kill()
	} else if err := leader.Signal(sig); err != nil {
		b.Fatalf("signal %s: %v", leader.ID, err)
	}

	go func() {
		for ctx.Err() == nil {
			for _, s := range survivors {
				if r, err := s.Ready(); err == nil && r.Role == "Leader" {
					elected <- event{time.Since(start), s.ID}
					return
				}
			}
			time.Sleep(failoverPoll)
		}
	}()
	var wrote atomic.Bool
	for k, s := range survivors {
		go func() {
			var once sync.Once
			tick := time.NewTicker(failoverPollWrites)
			defer tick.Stop()
			for attempt := 1; !wrote.Load(); attempt++ {
				go func() {
					if putTenant(ctx, polls[k], "failover-"+s.ID, iter*100000+attempt) == nil {
						wrote.Store(true)
						once.Do(func() { written <- event{time.Since(start), s.ID} })
					}
				}()
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
			}
		}()
		wg.Go(func() {
			for attempt := 1; ctx.Err() == nil; attempt++ {
				err := putTenant(ctx, patient[k], "failover-"+s.ID, iter*100000+50000+attempt)
				if err == nil {
					patientDone[k] = time.Since(start)
					return
				}
				if patientErr[k] == nil {
					patientErr[k] = fmt.Errorf("after %s: %w", time.Since(start).Round(time.Millisecond), err)
				}
				time.Sleep(failoverRetry)
			}
		})
	}

	var r failoverResult
	select {
	case w := <-written:
		b.StopTimer()
		r.written, r.via = w.after, w.node
	case <-ctx.Done():
		b.StopTimer()
		r.err = fmt.Errorf("no write through %s succeeded within %s of the %s to %s", nodeIDs(survivors), failoverLimit, sigName(sig), leader.ID)
		return r
	}
	select {
	case e := <-elected:
		r.elected, r.newLeader = e.after, e.node
	case <-ctx.Done():
		r.err = fmt.Errorf("a write succeeded but no survivor reported itself leader within %s", failoverLimit)
		return r
	}
	wg.Wait()
	for k, s := range survivors {
		if s.ID != r.newLeader {
			r.follower, r.followerWrite, r.followerErr = s.ID, patientDone[k], patientErr[k]
		}
	}
	if r.followerWrite == 0 {
		r.err = fmt.Errorf("no write through follower %s succeeded within %s", r.follower, failoverLimit)
	}
	return r
}

func sigName(sig syscall.Signal) string {
	switch sig {
	case syscall.SIGKILL:
		return "SIGKILL"
	case syscall.SIGSTOP:
		return "SIGSTOP"
	}
	return sig.String()
}

func nodeIDs(ns []*testcluster.Node) string {
	ids := make([]string, len(ns))
	for i, n := range ns {
		ids[i] = n.ID
	}
	return strings.Join(ids, ", ")
}

// reportMillis reports the median and the maximum of ds in milliseconds.
func reportMillis(b *testing.B, what string, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	slices.Sort(ds)
	b.ReportMetric(ms(percentile(ds, 0.50)), what+"-p50-ms")
	b.ReportMetric(ms(ds[len(ds)-1]), what+"-max-ms")
}

// fixedBenchtime returns N when the run asked for -benchtime Nx.
func fixedBenchtime() (int, bool) {
	f := flag.Lookup("test.benchtime")
	if f == nil {
		return 0, false
	}
	s, ok := strings.CutSuffix(f.Value.String(), "x")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}
