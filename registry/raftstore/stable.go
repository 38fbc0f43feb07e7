package raftstore

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// ErrKeyNotFound is returned, unwrapped, by Get and GetUint64 for a key that
// was never set. Its text is exactly "not found" because hashicorp/raft
// recognises a fresh stable store by comparing err.Error() with that string
// (NewRaft, HasExistingState, requestVote), as raft-boltdb's error reads.
var ErrKeyNotFound = errors.New("not found")

func stableKey(key []byte) []byte {
	k := make([]byte, 1+len(key))
	k[0] = prefixStable
	copy(k[1:], key)
	return k
}

// Set stores val under key, fsynced unless [Config.NoSync] is set.
func (s *Store) Set(key []byte, val []byte) error {
	if err := s.acquire(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	if err := s.db.Set(stableKey(key), val, s.wo); err != nil {
		return fmt.Errorf("raftstore: set %q: %w", key, err)
	}
	return nil
}

// Get returns a copy of the value stored under key, or [ErrKeyNotFound].
// A value set as empty or nil is returned as a non-nil empty slice, so a
// caller can tell it from a missing key.
func (s *Store) Get(key []byte) ([]byte, error) {
	if err := s.acquire(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	v, closer, err := s.db.Get(stableKey(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrKeyNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("raftstore: get %q: %w", key, err)
	}
	defer closer.Close()
	return append(make([]byte, 0, len(v)), v...), nil
}

// SetUint64 stores val under key as 8 big-endian bytes.
func (s *Store) SetUint64(key []byte, val uint64) error {
	return s.Set(key, binary.BigEndian.AppendUint64(nil, val))
}

// GetUint64 returns the value stored under key by SetUint64, or 0 and
// [ErrKeyNotFound]. A value of another length yields an error wrapping
// [ErrCorrupt].
func (s *Store) GetUint64(key []byte) (uint64, error) {
	v, err := s.Get(key)
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("raftstore: get uint64 %q: %w: value is %d bytes, not 8", key, ErrCorrupt, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}
