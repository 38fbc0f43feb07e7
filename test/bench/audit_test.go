package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpmesh/mcpmesh/node/audit"
)

// BenchmarkAuditAppend measures the audit path alone: records appended to
// a node's audit log with durable group commit (fsync on, the product
// default) by N concurrent appenders, as N concurrent tool calls would.
// records/s is the throughput; ns/op is wall time per record across all
// appenders; p50-us and p99-us are each Append's latency (until its batch
// is fsynced). /nosync is the same log without fsync: the ratio is the
// price of durability.
func BenchmarkAuditAppend(b *testing.B) {
	for _, n := range []int{1, 16, 64, 256} {
		b.Run(fmt.Sprintf("appenders=%d", n), func(b *testing.B) { benchAuditAppend(b, n, false) })
	}
	b.Run("appenders=256/nosync", func(b *testing.B) { benchAuditAppend(b, 256, true) })
}

func benchAuditAppend(b *testing.B, appenders int, noSync bool) {
	dir := filepath.Join(b.TempDir(), "audit")
	checkTmpfs(b, filepath.Dir(dir))
	l, err := audit.Open(audit.Config{Dir: dir, Node: "n1", NoSync: noSync})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	arguments, err := audit.NewArguments(make([]byte, 32), nil)
	if err != nil {
		b.Fatal(err)
	}
	rec := func(i int64) audit.Record {
		r := audit.Record{
			Kind: audit.KindCall, Namespace: "finance", Principal: "apikey:k3x9q2mfa7bd", Tenant: "treasury", AuthMethod: "api-key",
			Actors: []string{"apikey:k3x9q2mfa7bd", "spiffe://finance.example.corp/mcpmesh/node/n1"},
			Tool:   "corp.finance/ledger/get_balance", CalledAs: "finance.get_balance", Server: "corp.finance/ledger", Version: "2.0.0",
			DefinitionHash: "sha256:5b0c2d6c1f0e4a7b9d8e3f2a1c0b9a8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b",
			RequestID:      fmt.Sprintf("01JB%022d", i), TraceID: "4bf92f3577b34da6a3ce929d0e0e4736",
			Decision: "allow", Policies: []string{"treasury-calls"}, PolicyVersion: "sha256:0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0",
			Outcome: audit.OutcomeOK, DurationMs: 2.345, ResultBytes: 312, Cost: 0.0005, Currency: "USD", CostSource: "card",
		}
		arguments.Fill(&r, r.Tool, []byte(`{"account_id":"ACC-1001"}`))
		return r
	}
	// b.Loop and RunParallel tie goroutines to GOMAXPROCS; N appenders
	// share b.N records through a counter instead.
	var next atomic.Int64
	lat := make([][]time.Duration, appenders)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for w := range appenders {
		wg.Go(func() {
			for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
				t0 := time.Now()
				if _, err := l.Append(context.Background(), rec(i)); err != nil {
					b.Errorf("append %d: %v", i, err)
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "records/s")
	reportLatency(b, all)
	if rep, err := l.Verify(context.Background(), nil); err != nil || !rep.OK || rep.Records != uint64(b.N) {
		b.Fatalf("the benchmark's chain does not verify: %+v %v", rep, err)
	}
}
