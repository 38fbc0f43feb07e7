package raftstore

import (
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// BenchmarkStoreLogs measures appends on a real directory: one entry per
// call (a lightly loaded leader) and 64 per call (a batching leader or a
// catching-up follower), synced as in production and unsynced for contrast.
func BenchmarkStoreLogs(b *testing.B) {
	data := make([]byte, 256)
	for _, batch := range []int{1, 64} {
		for _, noSync := range []bool{false, true} {
			mode := "sync"
			if noSync {
				mode = "nosync"
			}
			b.Run(fmt.Sprintf("entries=%d/%s", batch, mode), func(b *testing.B) {
				s, err := Open(Config{Dir: b.TempDir(), NoSync: noSync})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { s.Close() })
				logs := make([]*raft.Log, batch)
				for i := range logs {
					logs[i] = &raft.Log{Term: 1, Type: raft.LogCommand, Data: data, AppendedAt: time.Now()}
				}
				b.SetBytes(int64(batch * len(data)))
				next := uint64(1)
				for b.Loop() {
					for _, l := range logs {
						l.Index = next
						next++
					}
					if err := s.StoreLogs(logs); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(next-1)/b.Elapsed().Seconds(), "entries/s")
			})
		}
	}
}
