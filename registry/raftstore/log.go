package raftstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"
)

// logBounds are the iterator bounds covering the whole log keyspace.
var (
	logLower = []byte{prefixLog}
	logUpper = []byte{prefixLog + 1}
)

// logKey returns the key of the log entry at index.
func logKey(index uint64) []byte {
	k := make([]byte, 9)
	k[0] = prefixLog
	binary.BigEndian.PutUint64(k[1:], index)
	return k
}

// indexOfKey returns the index encoded in a log key.
func indexOfKey(k []byte) (uint64, error) {
	if len(k) != 9 || k[0] != prefixLog {
		return 0, fmt.Errorf("%w: log key %x is not 9 bytes with prefix 'l'", ErrCorrupt, k)
	}
	return binary.BigEndian.Uint64(k[1:]), nil
}

// IsMonotonic reports true: Raft only ever appends at increasing indexes, and
// a range deletion of the whole log is cheap here, so Raft may clear the log
// after restoring a snapshot instead of relying on gaps.
func (s *Store) IsMonotonic() bool { return true }

// FirstIndex returns the lowest index in the log, or 0 when it is empty.
func (s *Store) FirstIndex() (uint64, error) {
	return s.edgeIndex("first", (*pebble.Iterator).First)
}

// LastIndex returns the highest index in the log, or 0 when it is empty.
func (s *Store) LastIndex() (uint64, error) {
	return s.edgeIndex("last", (*pebble.Iterator).Last)
}

func (s *Store) edgeIndex(which string, pos func(*pebble.Iterator) bool) (idx uint64, err error) {
	if err := s.acquire(); err != nil {
		return 0, err
	}
	defer s.mu.RUnlock()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: logLower, UpperBound: logUpper})
	if err != nil {
		return 0, fmt.Errorf("raftstore: %s index: %w", which, err)
	}
	defer func() {
		if cerr := it.Close(); cerr != nil && err == nil {
			idx, err = 0, fmt.Errorf("raftstore: %s index: %w", which, cerr)
		}
	}()
	if !pos(it) {
		if err := it.Error(); err != nil {
			return 0, fmt.Errorf("raftstore: %s index: %w", which, err)
		}
		return 0, nil
	}
	return indexOfKey(it.Key())
}

// GetLog reads the entry at index into log. It returns [raft.ErrLogNotFound]
// (unwrapped, as Raft compares it) when there is none.
func (s *Store) GetLog(index uint64, log *raft.Log) error {
	if err := s.acquire(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	v, closer, err := s.db.Get(logKey(index))
	if errors.Is(err, pebble.ErrNotFound) {
		return raft.ErrLogNotFound
	}
	if err != nil {
		return fmt.Errorf("raftstore: get log %d: %w", index, err)
	}
	defer closer.Close()
	if err := decodeLog(v, log); err != nil {
		return fmt.Errorf("raftstore: get log %d: %w", index, err)
	}
	if log.Index != index {
		return fmt.Errorf("raftstore: get log %d: %w: record holds index %d", index, ErrCorrupt, log.Index)
	}
	return nil
}

// StoreLog stores one entry; see [Store.StoreLogs].
func (s *Store) StoreLog(log *raft.Log) error {
	return s.StoreLogs([]*raft.Log{log})
}

// StoreLogs stores entries in one atomic pebble batch, replacing any entries
// at the same indexes, and fsyncs it unless [Config.NoSync] is set. Either
// all entries are stored or, on error or crash, none.
func (s *Store) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	if err := s.acquire(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	b := s.db.NewBatch()
	defer b.Close()
	var buf []byte
	for _, l := range logs {
		buf = appendLog(buf[:0], l)
		// Batch.Set copies key and value into the batch, so buf is reused.
		if err := b.Set(logKey(l.Index), buf, nil); err != nil {
			return fmt.Errorf("raftstore: store log %d: %w", l.Index, err)
		}
	}
	if err := b.Commit(s.wo); err != nil {
		return fmt.Errorf("raftstore: store logs %d..%d: %w", logs[0].Index, logs[len(logs)-1].Index, err)
	}
	return nil
}

// DeleteRange deletes the entries from min to max, both inclusive, with one
// pebble range deletion, whichever of them exist. It does nothing when
// min > max.
func (s *Store) DeleteRange(min, max uint64) error {
	if min > max {
		return nil
	}
	if err := s.acquire(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	end := logUpper
	if max != math.MaxUint64 {
		end = logKey(max + 1)
	}
	if err := s.db.DeleteRange(logKey(min), end, s.wo); err != nil {
		return fmt.Errorf("raftstore: delete logs %d..%d: %w", min, max, err)
	}
	return nil
}
