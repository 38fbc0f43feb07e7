package audit

import (
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/mcpmesh/mcpmesh/internal/pebblelog"
)

// Checkpoint is a chain head a node committed through Raft: its record
// Seq had hash Head at time At. A replica's chain must still hold that
// record with that hash.
type Checkpoint struct {
	Seq  uint64    `json:"seq"`
	Head string    `json:"head"`
	At   time.Time `json:"at"`
}

// ProblemKind names what Verify found wrong.
type ProblemKind string

// The problems Verify reports.
const (
	// ProblemModified is a record whose content does not match its hash.
	ProblemModified ProblemKind = "modified"
	// ProblemMissing is a gap: records removed from the sequence.
	ProblemMissing ProblemKind = "missing"
	// ProblemReordered is a record stored under another record's number.
	ProblemReordered ProblemKind = "reordered"
	// ProblemBrokenLink is a record whose prev is not the hash of the
	// record before it: that record was replaced (content and hash), or
	// the chain was rewritten from there.
	ProblemBrokenLink ProblemKind = "broken-link"
	// ProblemCorrupt is a stored value that cannot be decoded.
	ProblemCorrupt ProblemKind = "corrupt"
	// ProblemTruncated is records missing at the end of the chain: the
	// recorded head or a checkpoint names a record past the newest.
	ProblemTruncated ProblemKind = "truncated"
	// ProblemHead is a recorded head that disagrees with the newest record.
	ProblemHead ProblemKind = "head-mismatch"
	// ProblemCheckpoint is a record whose hash is not the one checkpointed
	// through Raft for it: the history was rewritten.
	ProblemCheckpoint ProblemKind = "checkpoint-mismatch"
)

// Problem is one break in the chain, located at record Seq.
type Problem struct {
	Seq     uint64      `json:"seq"`
	Kind    ProblemKind `json:"kind"`
	Message string      `json:"message"`
}

// Report is what Verify found.
type Report struct {
	// OK is true when no problem was found.
	OK bool `json:"ok"`
	// Records is how many stored records were read; First and Last are
	// the lowest and highest record numbers found.
	Records uint64 `json:"records"`
	First   uint64 `json:"first,omitempty"`
	Last    uint64 `json:"last,omitempty"`
	// Head is the hex hash of the newest record.
	Head string `json:"head,omitempty"`
	// Anchor is the number of the last record retention removed; the
	// chain is verified from it.
	Anchor uint64 `json:"anchor,omitempty"`
	// Checkpoints is how many checkpoints were checked; CheckpointsPruned
	// how many named records retention has removed (not checkable).
	Checkpoints       int `json:"checkpoints"`
	CheckpointsPruned int `json:"checkpointsPruned,omitempty"`
	// Problems are the breaks found, in chain order, at most
	// maxProblems of them; Omitted counts the rest.
	Problems []Problem `json:"problems,omitempty"`
	Omitted  int       `json:"omitted,omitempty"`
}

// maxProblems bounds Report.Problems.
const maxProblems = 1000

// hashWindow is how many recent record hashes the walk remembers to check
// links across reordered records.
const hashWindow = 4096

// Verify walks the whole chain as of now and checks it, and each
// checkpoint against it. A damaged chain is reported in the Report, not as
// an error; the error is for failing to read the store.
func (l *Log) Verify(ctx context.Context, checkpoints []Checkpoint) (Report, error) {
	if err := l.acquire(); err != nil {
		return Report{}, err
	}
	snap := l.db.NewSnapshot()
	l.mu.RUnlock()
	defer snap.Close()
	return verify(ctx, snap, checkpoints)
}

// VerifyDir verifies the audit store in dir, read-only, as Log.Verify does:
// for a copy of a node's <data dir>/audit, or a stopped node's.
func VerifyDir(ctx context.Context, dir string, checkpoints []Checkpoint) (Report, error) {
	db, err := openReadOnly(dir)
	if err != nil {
		return Report{}, err
	}
	defer db.Close()
	return verify(ctx, db, checkpoints)
}

// openReadOnly opens an existing audit store without changing it.
func openReadOnly(dir string) (*pebble.DB, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("audit store %s: %w", dir, err)
	}
	db, err := pebble.Open(dir, &pebble.Options{ReadOnly: true, Logger: pebblelog.New(slog.New(slog.DiscardHandler), "audit")})
	if err != nil {
		return nil, fmt.Errorf("open audit store %s read-only (is it a node's <data dir>/audit, and is that node stopped?): %w", dir, err)
	}
	v, closer, err := db.Get(keyLayout)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("audit store %s: no layout version (%w); is this a node's <data dir>/audit?", dir, err)
	}
	ok := len(v) == 1 && v[0] == layoutVersion
	closer.Close()
	if !ok {
		db.Close()
		return nil, fmt.Errorf("audit store %s: layout version %x, this build reads only %d", dir, v, layoutVersion)
	}
	return db, nil
}

type verifier struct {
	rep Report
}

func (v *verifier) report(seq uint64, kind ProblemKind, format string, args ...any) {
	if len(v.rep.Problems) >= maxProblems {
		v.rep.Omitted++
		return
	}
	v.rep.Problems = append(v.rep.Problems, Problem{Seq: seq, Kind: kind, Message: fmt.Sprintf(format, args...)})
}

func verify(ctx context.Context, r pebble.Reader, checkpoints []Checkpoint) (Report, error) {
	var v verifier
	anchor, hasAnchor, err := getPosition(r, keyAnchor)
	if err != nil {
		return Report{}, err
	}
	if hasAnchor {
		v.rep.Anchor = anchor.seq
	}
	recordedHead, hasHead, err := getPosition(r, keyHead)
	if err != nil {
		return Report{}, err
	}
	// The checkpoints by the record they name; found fills in the hash of
	// the record stored under that number.
	want := map[uint64][]Checkpoint{}
	for _, cp := range checkpoints {
		want[cp.Seq] = append(want[cp.Seq], cp)
	}
	found := map[uint64][32]byte{}

	// hashes remembers the recent records' hashes by their own seq, to
	// check each record's prev even when records were reordered.
	hashes := map[uint64][32]byte{}
	if hasAnchor {
		hashes[anchor.seq] = anchor.hash
	}
	hashOf := func(seq uint64) ([32]byte, bool) {
		if seq == 0 {
			return [32]byte{}, true
		}
		h, ok := hashes[seq]
		return h, ok
	}

	it, err := r.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixRecord}, UpperBound: []byte{prefixRecord + 1}})
	if err != nil {
		return Report{}, fmt.Errorf("verify audit log: %w", err)
	}
	defer it.Close()
	expected := anchor.seq + 1
	var last position
	for ok := it.First(); ok; ok = it.Next() {
		if v.rep.Records%1024 == 0 && ctx.Err() != nil {
			return Report{}, ctx.Err()
		}
		k, isRecord := seqOfKey(it.Key())
		if !isRecord {
			v.report(expected, ProblemCorrupt, "unexpected key %x among the records", it.Key())
			continue
		}
		v.rep.Records++
		if v.rep.First == 0 {
			v.rep.First = k
		}
		v.rep.Last = k
		after := fmt.Sprintf("between record %d and record %d", expected-1, k)
		if expected == 1 {
			after = fmt.Sprintf("the chain starts at record %d", k)
		}
		switch {
		case k < expected:
			v.report(k, ProblemReordered, "record %d is stored before the retention anchor %d (records are removed only from the start)", k, anchor.seq)
		case k == expected+1:
			v.report(expected, ProblemMissing, "record %d is missing (%s)", expected, after)
		case k > expected:
			v.report(expected, ProblemMissing, "records %d to %d are missing (%d records; %s)", expected, k-1, k-expected, after)
		}
		expected = k + 1
		e, err := decodeEntry(it.Value())
		if err != nil {
			v.report(k, ProblemCorrupt, "record %d cannot be decoded: %v", k, err)
			continue
		}
		if e.seq != k {
			v.report(k, ProblemReordered, "position %d holds record %d: records are out of order", k, e.seq)
		}
		if got := chainHash(e.prev, e.seq, e.body); got != e.hash {
			v.report(e.seq, ProblemModified, "record %d was modified: its content does not match its hash", e.seq)
		}
		if want, known := hashOf(e.seq - 1); known && want != e.prev {
			v.report(e.seq, ProblemBrokenLink, "record %d does not link to record %d: record %d was replaced, or the chain was rewritten from there", e.seq, e.seq-1, e.seq-1)
		}
		hashes[e.seq] = e.hash
		if len(hashes) > 2*hashWindow {
			for s := range hashes {
				if s+hashWindow < e.seq {
					delete(hashes, s)
				}
			}
		}
		if _, ok := want[k]; ok {
			found[k] = e.hash
		}
		last = position{seq: k, hash: e.hash}
	}
	if err := it.Error(); err != nil {
		return Report{}, fmt.Errorf("verify audit log: %w", err)
	}
	if last.seq == 0 && hasAnchor {
		last = anchor
	}
	if last.seq != 0 {
		v.rep.Head = hex.EncodeToString(last.hash[:])
	}
	if hasHead {
		switch {
		case recordedHead.seq > last.seq:
			v.report(last.seq+1, ProblemTruncated, "records %d to %d are missing at the end: the recorded head is record %d", last.seq+1, recordedHead.seq, recordedHead.seq)
		case recordedHead.seq < last.seq:
			v.report(recordedHead.seq, ProblemHead, "the recorded head is record %d, but the newest record is %d", recordedHead.seq, last.seq)
		case recordedHead.hash != last.hash:
			v.report(last.seq, ProblemHead, "the newest record %d does not have the recorded head's hash: it was replaced", last.seq)
		}
	} else if last.seq != 0 {
		v.report(last.seq, ProblemHead, "the store records no head, but holds records up to %d", last.seq)
	}
	for _, cp := range checkpoints {
		head, err := hex.DecodeString(cp.Head)
		if err != nil || len(head) != 32 {
			v.report(cp.Seq, ProblemCheckpoint, "checkpoint of record %d (%s) has a malformed head %q", cp.Seq, fmtTime(cp.At), cp.Head)
			continue
		}
		switch {
		case hasAnchor && cp.Seq < anchor.seq:
			v.rep.CheckpointsPruned++
			continue
		case hasAnchor && cp.Seq == anchor.seq:
			if [32]byte(head) != anchor.hash {
				v.report(cp.Seq, ProblemCheckpoint, "the retention anchor, record %d, does not match its checkpoint of %s: the history was rewritten", cp.Seq, fmtTime(cp.At))
			}
		case cp.Seq > last.seq:
			v.report(cp.Seq, ProblemTruncated, "record %d was checkpointed at %s, but the newest record is %d: records were removed from the end", cp.Seq, fmtTime(cp.At), last.seq)
		default:
			got, ok := found[cp.Seq]
			switch {
			case !ok:
				v.report(cp.Seq, ProblemCheckpoint, "record %d, checkpointed at %s, is missing", cp.Seq, fmtTime(cp.At))
			case got != [32]byte(head):
				v.report(cp.Seq, ProblemCheckpoint, "record %d does not match its checkpoint of %s: the history was rewritten", cp.Seq, fmtTime(cp.At))
			}
		}
		v.rep.Checkpoints++
	}
	v.rep.OK = len(v.rep.Problems) == 0 && v.rep.Omitted == 0
	return v.rep, nil
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "an unknown time"
	}
	return t.UTC().Format(time.RFC3339)
}
