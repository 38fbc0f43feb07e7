package state

import (
	"errors"
	"sync"
)

// memoMax bounds a memo's entries: reads of keys that do not exist are
// remembered too (an unknown API key id), so a caller sending new ones
// cannot grow it without end; a full memo starts over.
const memoMax = 4096

// memo remembers the values of one kind of record read from the state as
// of one applied Raft index, for the reads every call makes (its API key,
// its tenant's usage; at an exporting BU the catalog a forwarded call is
// checked against): read from pebble and decoded from JSON each time,
// they cost about 4% of a node's CPU per call (make bench-gateway's
// profile), and the catalog 5% of an exporting node's (make
// bench-federation's). The state only changes when an entry is applied
// or a snapshot restored, and both change the key the memo is filled
// under.
type memo[V any] struct {
	mu sync.Mutex
	// restores and at are FSM.restores and the applied index the entries
	// were read at, or after.
	restores, at uint64
	m            map[string]memoed[V]
}

type memoed[V any] struct {
	v   V
	err error
}

// get returns the value read stored under key, calling read when the memo
// has none as of the state's applied index. A value read is remembered
// unless read failed for another reason than ErrNotFound. Values are
// shared between callers: they must not be modified.
func (c *memo[V]) get(f *FSM, key string, read func() (V, error)) (V, error) {
	// The state commits an entry before it raises its applied index, so a
	// read started after these loads sees at least index at; it may see
	// more, and is then only served until the index moves on.
	restores, at := f.restores.Load(), f.applied.Load()
	c.mu.Lock()
	if c.restores == restores && c.at == at {
		if e, ok := c.m[key]; ok {
			c.mu.Unlock()
			return e.v, e.err
		}
	}
	c.mu.Unlock()
	v, err := read()
	if err != nil && !errors.Is(err, ErrNotFound) {
		return v, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.restores != restores || c.at != at || c.m == nil || len(c.m) >= memoMax {
		c.restores, c.at, c.m = restores, at, make(map[string]memoed[V])
	}
	c.m[key] = memoed[V]{v, err}
	return v, err
}
