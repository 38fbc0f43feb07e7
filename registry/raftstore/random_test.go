package raftstore

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

var seedFlag = flag.Uint64("raftstore.seed", 0, "seed for the randomized tests; 0 runs fixed seeds plus one from the clock")

// testSeeds returns the seeds to run randomized tests with.
func testSeeds() []uint64 {
	if *seedFlag != 0 {
		return []uint64{*seedFlag}
	}
	return []uint64{1, 2, 3, uint64(time.Now().UnixNano())}
}

// runSeeded runs f in one subtest per seed, printing the seed so a failure
// can be replayed with -raftstore.seed.
func runSeeded(t *testing.T, f func(t *testing.T, rng *rand.Rand)) {
	for _, seed := range testSeeds() {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Parallel()
			t.Logf("seed %d; replay with: go test -run '%s' -raftstore.seed=%d", seed, t.Name(), seed)
			f(t, rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)))
		})
	}
}

// opKind names what a randomOp does.
type opKind int

const (
	opAppend opKind = iota
	opOverwriteTail
	opHeadCompaction
	opTailTruncation
	opDeleteAll
	opSetUint64
	opSet
)

func (k opKind) String() string {
	return [...]string{"append", "overwrite-tail", "head-compaction", "tail-truncation", "delete-all", "set-uint64", "set"}[k]
}

// randomOp is one write a Raft server could issue to its log or stable store.
type randomOp struct {
	kind     opKind
	logs     []*raft.Log
	min, max uint64
	key      string
	val      []byte
	n        uint64
}

func (o randomOp) String() string {
	switch o.kind {
	case opAppend, opOverwriteTail:
		return fmt.Sprintf("%v %d..%d", o.kind, o.logs[0].Index, o.logs[len(o.logs)-1].Index)
	case opSet:
		return fmt.Sprintf("set %s=%x", o.key, o.val)
	case opSetUint64:
		return fmt.Sprintf("set-uint64 %s=%d", o.key, o.n)
	default:
		return fmt.Sprintf("%v %d..%d", o.kind, o.min, o.max)
	}
}

// Stable keys used by the random ops: byte keys and uint64 keys are kept
// apart because raft.InmemStore keeps them in separate maps, unlike this
// store and raft-boltdb.
var (
	randomBytesKeys  = []string{"LastVoteCand", "other"}
	randomUint64Keys = []string{"CurrentTerm", "LastVoteTerm"}
)

// opGen generates writes in the patterns Raft uses: contiguous appends,
// head compaction, tail truncation on conflict, clearing the whole log after
// a snapshot restore (MonotonicLogStore), and stable-store updates.
type opGen struct {
	rng         *rand.Rand
	term        uint64
	highWater   uint64 // highest index ever stored
	first, last uint64 // current log bounds, 0 when empty
}

func (g *opGen) randomLog(index uint64) *raft.Log {
	l := &raft.Log{Index: index, Term: g.term, Type: raft.LogType(g.rng.IntN(6))}
	if n := g.rng.IntN(200); n > 0 {
		l.Data = make([]byte, n)
		for i := range l.Data {
			l.Data[i] = byte(g.rng.Uint32())
		}
	}
	if g.rng.IntN(4) == 0 {
		l.Extensions = []byte(fmt.Sprintf("ext-%d", index))
	}
	if g.rng.IntN(5) != 0 {
		l.AppendedAt = time.Unix(1_700_000_000+int64(g.rng.IntN(1e6)), int64(g.rng.IntN(1e9)))
	}
	return l
}

func (g *opGen) logsFrom(start uint64, n int) []*raft.Log {
	ls := make([]*raft.Log, n)
	for i := range ls {
		ls[i] = g.randomLog(start + uint64(i))
	}
	return ls
}

// next returns the next op and updates g's view of the log bounds.
func (g *opGen) next() randomOp {
	for {
		var o randomOp
		switch r := g.rng.IntN(100); {
		case r < 45:
			o.kind = opAppend
		case r < 55:
			o.kind = opOverwriteTail
		case r < 68:
			o.kind = opHeadCompaction
		case r < 78:
			o.kind = opTailTruncation
		case r < 81:
			o.kind = opDeleteAll
		case r < 92:
			o.kind = opSetUint64
		default:
			o.kind = opSet
		}
		empty := g.last == 0
		switch o.kind {
		case opAppend:
			n := 1 + g.rng.IntN(8)
			if g.rng.IntN(10) == 0 {
				n = 64
			}
			start := g.last + 1
			if empty {
				// A new log, or the first entry after a snapshot restore.
				start = g.highWater + 1 + uint64(g.rng.IntN(50))
			}
			o.logs = g.logsFrom(start, n)
		case opOverwriteTail:
			if empty {
				continue
			}
			// A new leader's entries replace ours from start on.
			g.term++
			start := g.first + 1 + uint64(g.rng.IntN(int(g.last-g.first+1)))
			o.logs = g.logsFrom(start, 1+g.rng.IntN(6))
		case opHeadCompaction:
			if empty || g.first == g.last {
				continue
			}
			o.min = g.first
			if g.rng.IntN(3) == 0 {
				o.min = 1 + uint64(g.rng.IntN(int(g.first)))
			}
			o.max = g.first + uint64(g.rng.IntN(int(g.last-g.first)))
		case opTailTruncation:
			if empty || g.first == g.last {
				continue
			}
			o.min = g.first + 1 + uint64(g.rng.IntN(int(g.last-g.first)))
			o.max = g.last
		case opDeleteAll:
			if empty {
				continue
			}
			o.min, o.max = g.first, g.last
		case opSetUint64:
			o.key = randomUint64Keys[g.rng.IntN(len(randomUint64Keys))]
			o.n = g.rng.Uint64N(1 << 40)
		case opSet:
			o.key = randomBytesKeys[g.rng.IntN(len(randomBytesKeys))]
			o.val = []byte(fmt.Sprintf("node-%d", g.rng.IntN(5)))
		}
		g.observe(o)
		return o
	}
}

// observe updates the bounds after o.
func (g *opGen) observe(o randomOp) {
	switch o.kind {
	case opAppend, opOverwriteTail:
		lo, hi := o.logs[0].Index, o.logs[len(o.logs)-1].Index
		if g.last == 0 {
			g.first = lo
		}
		g.last = max(g.last, hi)
		g.highWater = max(g.highWater, hi)
	case opHeadCompaction:
		g.first = o.max + 1
	case opTailTruncation:
		g.last = o.min - 1
	case opDeleteAll:
		g.first, g.last = 0, 0
	}
}

// storeUnderTest is what both raft.InmemStore and Store offer.
type storeUnderTest interface {
	raft.LogStore
	raft.StableStore
}

// apply performs o on s.
func apply(s storeUnderTest, o randomOp) error {
	switch o.kind {
	case opAppend, opOverwriteTail:
		if len(o.logs) == 1 {
			return s.StoreLog(o.logs[0])
		}
		return s.StoreLogs(o.logs)
	case opSetUint64:
		return s.SetUint64([]byte(o.key), o.n)
	case opSet:
		return s.Set([]byte(o.key), o.val)
	default:
		return s.DeleteRange(o.min, o.max)
	}
}
