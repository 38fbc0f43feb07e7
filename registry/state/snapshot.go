package state

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"
)

// Snapshot format: a magic line, then records of (uvarint key length, key,
// uvarint value length, value), a zero key length as terminator, and the
// SHA-256 of everything before it. The same stream is a Raft snapshot and
// the file `mcpmesh operator snapshot save` writes.
const snapshotMagic = "mcpmesh-registry-snapshot v1\n"

// maxSnapshotRecord bounds one key or value while restoring, so a corrupt
// length cannot make the node allocate without limit.
const maxSnapshotRecord = 64 << 20

// ErrCorruptSnapshot means a snapshot stream failed its format or checksum
// checks; nothing was changed.
var ErrCorruptSnapshot = errors.New("corrupt registry snapshot")

type fsmSnapshot struct {
	snap *pebble.Snapshot
}

// Snapshot captures the state at the current applied index. The state is
// synced first, so that a crash never leaves it behind a persisted snapshot.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if err := f.db.LogData(nil, pebble.Sync); err != nil {
		return nil, fmt.Errorf("sync registry state: %w", err)
	}
	return &fsmSnapshot{snap: f.db.NewSnapshot()}, nil
}

// Persist writes the snapshot to sink.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := writeSnapshot(s.snap, sink, nil); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

// Release frees the pebble snapshot.
func (s *fsmSnapshot) Release() { s.snap.Close() }

// WriteSnapshot writes the current state to w in snapshot format, for an
// operator's backup. It leaves out the token signing keys, which never
// leave the replicas: after a restore the leader generates a new one
// (upstreams fetch it from the key set when they first see its id).
func (f *FSM) WriteSnapshot(w io.Writer) error {
	f.mu.RLock()
	snap := f.db.NewSnapshot()
	f.mu.RUnlock()
	defer snap.Close()
	return writeSnapshot(snap, w, func(key []byte) bool { return bytes.HasPrefix(key, prefixSigningKeys) })
}

// writeSnapshot writes r's records to w, but those whose key skip reports
// (skip may be nil).
func writeSnapshot(r pebble.Reader, w io.Writer, skip func(key []byte) bool) error {
	h := sha256.New()
	bw := bufio.NewWriter(io.MultiWriter(w, h))
	if _, err := bw.WriteString(snapshotMagic); err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	it, err := r.NewIter(nil)
	if err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	defer it.Close()
	var lenBuf [binary.MaxVarintLen64]byte
	for ok := it.First(); ok; ok = it.Next() {
		if skip != nil && skip(it.Key()) {
			continue
		}
		for _, part := range [][]byte{it.Key(), it.Value()} {
			n := binary.PutUvarint(lenBuf[:], uint64(len(part)))
			bw.Write(lenBuf[:n])
			bw.Write(part)
		}
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	bw.WriteByte(0)
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	if _, err := w.Write(h.Sum(nil)); err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	return nil
}

type kv struct{ k, v []byte }

// ReadSnapshot parses and checks a snapshot stream without applying it.
// It returns the applied index the snapshot was taken at.
func ReadSnapshot(r io.Reader) (uint64, error) {
	recs, err := readSnapshot(r)
	if err != nil {
		return 0, err
	}
	return appliedOf(recs)
}

func appliedOf(recs []kv) (uint64, error) {
	for _, rec := range recs {
		if bytes.Equal(rec.k, keyApplied) {
			if len(rec.v) != 8 {
				return 0, fmt.Errorf("%w: applied index has %d bytes", ErrCorruptSnapshot, len(rec.v))
			}
			return binary.BigEndian.Uint64(rec.v), nil
		}
	}
	return 0, nil
}

type hashingReader struct {
	r *bufio.Reader
	h hash.Hash
}

func (h *hashingReader) ReadByte() (byte, error) {
	b, err := h.r.ReadByte()
	if err == nil {
		h.h.Write([]byte{b})
	}
	return b, err
}

func (h *hashingReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.h.Write(p[:n])
	return n, err
}

func readSnapshot(r io.Reader) ([]kv, error) {
	hr := &hashingReader{r: bufio.NewReader(r), h: sha256.New()}
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(hr, magic); err != nil || string(magic) != snapshotMagic {
		return nil, fmt.Errorf("%w: not an mcpmesh registry snapshot (bad header)", ErrCorruptSnapshot)
	}
	var recs []kv
	for {
		klen, err := binary.ReadUvarint(hr)
		if err != nil {
			return nil, fmt.Errorf("%w: truncated after %d records", ErrCorruptSnapshot, len(recs))
		}
		if klen == 0 {
			break
		}
		k, err := readPart(hr, klen)
		if err != nil {
			return nil, fmt.Errorf("%w: record %d key: %v", ErrCorruptSnapshot, len(recs), err)
		}
		vlen, err := binary.ReadUvarint(hr)
		if err != nil {
			return nil, fmt.Errorf("%w: truncated in record %d", ErrCorruptSnapshot, len(recs))
		}
		v, err := readPart(hr, vlen)
		if err != nil {
			return nil, fmt.Errorf("%w: record %d value: %v", ErrCorruptSnapshot, len(recs), err)
		}
		recs = append(recs, kv{k, v})
	}
	want := hr.h.Sum(nil)
	got := make([]byte, sha256.Size)
	if _, err := io.ReadFull(hr.r, got); err != nil {
		return nil, fmt.Errorf("%w: missing checksum", ErrCorruptSnapshot)
	}
	if !bytes.Equal(got, want) {
		return nil, fmt.Errorf("%w: checksum mismatch", ErrCorruptSnapshot)
	}
	if _, err := hr.r.ReadByte(); err != io.EOF {
		return nil, fmt.Errorf("%w: trailing data after checksum", ErrCorruptSnapshot)
	}
	return recs, nil
}

func readPart(r io.Reader, n uint64) ([]byte, error) {
	if n > maxSnapshotRecord {
		return nil, fmt.Errorf("length %d exceeds limit %d", n, maxSnapshotRecord)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
}

// Restore replaces the whole state with a snapshot, atomically: a corrupt
// snapshot is refused before anything changes.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	recs, err := readSnapshot(rc)
	if err != nil {
		return err
	}
	applied, err := appliedOf(recs)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	b := f.db.NewBatch()
	defer b.Close()
	if err := b.DeleteRange([]byte{0x00}, []byte{0xff}, nil); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	for _, rec := range recs {
		if err := b.Set(rec.k, rec.v, nil); err != nil {
			return fmt.Errorf("restore: %w", err)
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	f.restores.Add(1)
	f.applied.Reset(applied) // an older snapshot moves it back
	f.logger.Info("registry state restored from snapshot", "records", len(recs), "applied_index", applied)
	return nil
}
