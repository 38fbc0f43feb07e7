package raftstore

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"

	"github.com/mcpmesh/mcpmesh/internal/pebblelog"
	"github.com/mcpmesh/mcpmesh/internal/pebblesched"
)

// ErrClosed is returned by every method of a [Store] called after Close.
var ErrClosed = errors.New("raftstore: store is closed")

// Key prefixes, one byte per keyspace. See the package doc.
const (
	prefixLog    byte = 'l'
	prefixMeta   byte = 'm'
	prefixStable byte = 's'
)

// layoutVersion is stored under metaLayoutKey when a database is created, so
// a future layout change can recognise old databases and old builds refuse
// new ones.
const layoutVersion byte = 1

var metaLayoutKey = []byte{prefixMeta, 'l', 'a', 'y', 'o', 'u', 't'}

var (
	_ raft.LogStore          = (*Store)(nil)
	_ raft.StableStore       = (*Store)(nil)
	_ raft.MonotonicLogStore = (*Store)(nil)
)

// Store is a Raft log store and stable store backed by one pebble database.
// Create it with [Open] and release it with [Store.Close]. It is safe for
// concurrent use; Raft itself serialises writes.
type Store struct {
	db     *pebble.DB
	wo     *pebble.WriteOptions
	logger *slog.Logger

	// mu guards closed. Operations hold it for reading so that Close waits
	// for them: pebble panics when a closed DB is used.
	mu     sync.RWMutex
	closed bool
}

// Open opens the pebble database in cfg.Dir, creating it if needed, and
// returns a Store using it. The directory must not be open by another Store
// or process (pebble locks it).
func Open(cfg Config, opts ...Option) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var o options
	for _, opt := range opts {
		opt.apply(&o)
	}
	logger := o.logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "raftstore", "dir", cfg.Dir)

	popts := &pebble.Options{
		FS:                 o.fs,
		Logger:             pebblelog.New(logger, "raftstore"),
		FormatMajorVersion: pebble.FormatNewest,
	}
	popts.Experimental.CompactionScheduler = pebblesched.New()
	db, err := pebble.Open(cfg.Dir, popts)
	if err != nil {
		return nil, fmt.Errorf("raftstore: open pebble database in %s: %w", cfg.Dir, err)
	}
	s := &Store{db: db, wo: pebble.Sync, logger: logger}
	if cfg.NoSync {
		s.wo = pebble.NoSync
	}
	if err := s.checkLayout(); err != nil {
		return nil, errors.Join(err, db.Close())
	}
	return s, nil
}

// checkLayout records the layout version in a new database and refuses a
// database written with a different one.
func (s *Store) checkLayout() error {
	v, closer, err := s.db.Get(metaLayoutKey)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		if err := s.db.Set(metaLayoutKey, []byte{layoutVersion}, pebble.Sync); err != nil {
			return fmt.Errorf("raftstore: write layout version: %w", err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("raftstore: read layout version: %w", err)
	}
	defer closer.Close()
	if len(v) != 1 || v[0] != layoutVersion {
		return fmt.Errorf("%w: database layout version %x, this build reads only %d; open it with the build that wrote it", ErrCorrupt, v, layoutVersion)
	}
	return nil
}

// Close closes the database. Operations in flight finish first; later calls
// return [ErrClosed]. Closing twice returns ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.closed = true
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("raftstore: close pebble database: %w", err)
	}
	return nil
}

// acquire takes the read lock and reports ErrClosed after Close. On success
// the caller must call s.mu.RUnlock.
func (s *Store) acquire() error {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return ErrClosed
	}
	return nil
}
