package audit

import (
	"bytes"
	"encoding/hex"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/google/go-cmp/cmp"

	"github.com/mcpmesh/mcpmesh/internal/pebblelog"
)

// tamperStore builds a store of n records and returns its directory and
// the checkpoint of every record, as the node would have proposed them.
func tamperStore(t *testing.T, n int) (string, []Checkpoint) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "audit")
	l, err := Open(Config{Dir: dir, Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	var cps []Checkpoint
	for i := range n {
		mustAppend(t, l, callRecord(i))
		seq, head := l.Head()
		cps = append(cps, Checkpoint{Seq: seq, Head: head, At: time.Now()})
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, cps
}

// copyStore copies a store directory, as an auditor would before
// tampering with or inspecting it.
func copyStore(t *testing.T, dir string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "copy")
	if err := os.CopyFS(dst, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	return dst
}

// tamperer edits a copy of a store below the Log, as an attacker with the
// files would.
type tamperer struct {
	t  *testing.T
	db *pebble.DB
}

func (tp tamperer) get(seq uint64) entry {
	tp.t.Helper()
	v, closer, err := tp.db.Get(RecordKey(seq))
	if err != nil {
		tp.t.Fatalf("get record %d: %v", seq, err)
	}
	defer closer.Close()
	e, err := decodeEntry(bytes.Clone(v))
	if err != nil {
		tp.t.Fatal(err)
	}
	return e
}

func (tp tamperer) set(key, value []byte) {
	tp.t.Helper()
	if err := tp.db.Set(key, value, pebble.Sync); err != nil {
		tp.t.Fatal(err)
	}
}

func (tp tamperer) del(seq uint64) {
	tp.t.Helper()
	if err := tp.db.Delete(RecordKey(seq), pebble.Sync); err != nil {
		tp.t.Fatal(err)
	}
}

// rewrite replaces the body of record from with edit's and re-chains every
// later record and the head, consistently: only checkpoints can tell.
func (tp tamperer) rewrite(from, last uint64, edit func([]byte) []byte) {
	tp.t.Helper()
	prev := tp.get(from - 1).hash
	for seq := from; seq <= last; seq++ {
		e := tp.get(seq)
		if seq == from {
			e.body = edit(e.body)
		}
		e.prev = prev
		e.hash = chainHash(prev, seq, e.body)
		tp.set(RecordKey(seq), encodeEntry(e))
		prev = e.hash
	}
	tp.set(keyHead, position{seq: last, hash: prev}.encode())
}

// changeOutcome turns a successful call into a denied one.
func changeOutcome(body []byte) []byte {
	out := bytes.Replace(body, []byte(`"outcome":"ok"`), []byte(`"outcome":"denied"`), 1)
	if bytes.Equal(out, body) {
		panic("changeOutcome: no outcome in " + string(body))
	}
	return out
}

// TestVerifyFindsTampering edits, removes and reorders records in copies
// of a store and checks that Verify finds each change and says where.
func TestVerifyFindsTampering(t *testing.T) {
	const n = 10
	dir, cps := tamperStore(t, n)
	type found struct {
		Seq  uint64
		Kind ProblemKind
	}
	for _, tc := range []struct {
		name   string
		tamper func(tp tamperer)
		cps    []Checkpoint // checkpoints given to Verify; nil: none
		want   []found
	}{
		{"intact", func(tamperer) {}, cps, nil},
		{"edited value", func(tp tamperer) {
			e := tp.get(4)
			e.body = changeOutcome(e.body)
			tp.set(RecordKey(4), encodeEntry(e))
		}, nil, []found{{4, ProblemModified}}},
		{"flipped byte in the stored hash", func(tp tamperer) {
			e := tp.get(2)
			e.hash[0] ^= 1
			tp.set(RecordKey(2), encodeEntry(e))
		}, nil, []found{{2, ProblemModified}, {3, ProblemBrokenLink}}},
		{"deleted record", func(tp tamperer) { tp.del(5) }, nil, []found{{5, ProblemMissing}}},
		{"deleted records", func(tp tamperer) { tp.del(5); tp.del(6); tp.del(7) }, nil, []found{{5, ProblemMissing}}},
		{"deleted first record", func(tp tamperer) { tp.del(1) }, nil, []found{{1, ProblemMissing}}},
		{"swapped records", func(tp tamperer) {
			a, b := tp.get(3), tp.get(4)
			tp.set(RecordKey(3), encodeEntry(b))
			tp.set(RecordKey(4), encodeEntry(a))
		}, nil, []found{{3, ProblemReordered}, {4, ProblemReordered}}},
		{"record replaced with a consistent hash", func(tp tamperer) {
			e := tp.get(6)
			e.body = changeOutcome(e.body)
			e.hash = chainHash(e.prev, 6, e.body)
			tp.set(RecordKey(6), encodeEntry(e))
		}, nil, []found{{7, ProblemBrokenLink}}},
		{"undecodable value", func(tp tamperer) { tp.set(RecordKey(3), []byte("garbage")) }, nil, []found{{3, ProblemCorrupt}}},
		{"removed tail", func(tp tamperer) { tp.del(10); tp.del(9) }, nil, []found{{9, ProblemTruncated}}},
		{"removed tail and head moved back", func(tp tamperer) {
			tp.del(10)
			tp.set(keyHead, position{seq: 9, hash: tp.get(9).hash}.encode())
		}, cps, []found{{10, ProblemTruncated}}},
		{"history rewritten consistently", func(tp tamperer) { tp.rewrite(6, n, changeOutcome) }, cps,
			[]found{{6, ProblemCheckpoint}, {7, ProblemCheckpoint}, {8, ProblemCheckpoint}, {9, ProblemCheckpoint}, {10, ProblemCheckpoint}}},
		{"history rewritten, one checkpoint", func(tp tamperer) { tp.rewrite(6, n, changeOutcome) }, cps[7:8],
			[]found{{8, ProblemCheckpoint}}},
		{"history rewritten, checkpoints before it", func(tp tamperer) { tp.rewrite(6, n, changeOutcome) }, cps[:5], nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cp := copyStore(t, dir)
			db, err := pebble.Open(cp, &pebble.Options{Logger: pebblelog.New(slog.New(slog.DiscardHandler), "audit")})
			if err != nil {
				t.Fatal(err)
			}
			tc.tamper(tamperer{t, db})
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			rep, err := VerifyDir(t.Context(), cp, tc.cps)
			if err != nil {
				t.Fatal(err)
			}
			var got []found
			for _, p := range rep.Problems {
				got = append(got, found{p.Seq, p.Kind})
				t.Logf("problem: %s", p.Message)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
			if rep.OK != (len(tc.want) == 0) {
				t.Errorf("OK = %v with problems %v", rep.OK, got)
			}
		})
	}
	// The original is untouched by verifying copies.
	if rep, err := VerifyDir(t.Context(), dir, cps); err != nil || !rep.OK || rep.Records != n || rep.Checkpoints != n {
		t.Errorf("VerifyDir of the original: %+v, %v", rep, err)
	}
}

func TestVerifyDirRefusesWhatIsNotAStore(t *testing.T) {
	if _, err := VerifyDir(t.Context(), filepath.Join(t.TempDir(), "none"), nil); err == nil {
		t.Error("VerifyDir of a missing directory succeeded")
	}
	dir := t.TempDir()
	db, err := pebble.Open(dir, &pebble.Options{Logger: pebblelog.New(slog.New(slog.DiscardHandler), "audit")})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := VerifyDir(t.Context(), dir, nil); err == nil {
		t.Error("VerifyDir of a pebble database that is not an audit store succeeded")
	}
}

// TestVerifyReportsMalformedCheckpoints: a checkpoint that cannot be
// compared is a problem, not a silent pass.
func TestVerifyReportsMalformedCheckpoints(t *testing.T) {
	dir, _ := tamperStore(t, 2)
	rep, err := VerifyDir(t.Context(), dir, []Checkpoint{{Seq: 1, Head: "zz"}, {Seq: 2, Head: hex.EncodeToString(make([]byte, 32))}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK || len(rep.Problems) != 2 || rep.Problems[0].Kind != ProblemCheckpoint || rep.Problems[1].Seq != 2 {
		t.Errorf("Verify with a malformed and a wrong checkpoint: %+v", rep)
	}
}
