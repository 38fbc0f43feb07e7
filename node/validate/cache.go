package validate

import (
	"encoding/json"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/singleflight"

	"github.com/mcpmesh/mcpmesh/registry/card"
)

// DefaultCacheSize is the capacity of a Cache when NewCache is given 0: a
// few thousand schemas, far more than the tool versions one node serves.
// A compiled schema of the size of the finance ledger's transfer_funds
// (six properties) retains about 16 KiB, so a default cache full of such
// schemas holds about 64 MiB; typical catalogs use a small fraction of it.
const DefaultCacheSize = 4096

// Hash returns the cache key of a schema: "sha256:" and the hex SHA-256 of
// its RFC 8785 canonical JSON, as card.CanonicalHash computes it. Schemas
// that differ only in key order or whitespace share a key. Compute it once
// per tool version, when the version is loaded, not per call.
func Hash(raw json.RawMessage) (string, error) {
	return card.CanonicalHash(raw)
}

// Cache holds compiled schemas by hash, so that each schema is compiled
// once however many tool versions and calls use it. It is bounded: when
// full, it evicts by the CLOCK (second chance) approximation of least
// recently used, which lets a hit take only a read lock. Concurrent misses
// of one hash compile once. Compile errors are cached too, since a schema's
// content, and so its verdict, is fixed by its hash. The zero value is not
// usable; call NewCache. A Cache is safe for concurrent use.
type Cache struct {
	capacity int
	group    singleflight.Group

	mu      sync.RWMutex
	entries map[string]*entry
	ring    []*entry // in insertion order, len ≤ capacity
	hand    int      // the clock hand: next ring slot to consider

	hits, misses atomic.Uint64
}

type entry struct {
	key    string
	schema *Schema
	err    error
	used   atomic.Bool
}

// NewCache returns an empty cache for at most capacity schemas;
// capacity ≤ 0 means DefaultCacheSize.
func NewCache(capacity int) *Cache {
	if capacity <= 0 {
		capacity = DefaultCacheSize
	}
	return &Cache{capacity: capacity, entries: make(map[string]*entry, min(capacity, 256))}
}

// Schema returns the compiled schema for hash, compiling raw on a miss.
// hash must identify raw's content: use Hash(raw), computed once per tool
// version (the registry's hash of a whole tool definition also pins its
// inputSchema, but would be shared with the outputSchema; don't use it for
// both). On a hit raw is not read. The error is the *SchemaError of Compile.
func (c *Cache) Schema(hash string, raw json.RawMessage) (*Schema, error) {
	c.mu.RLock()
	e := c.entries[hash]
	c.mu.RUnlock()
	if e != nil {
		if !e.used.Load() {
			e.used.Store(true)
		}
		c.hits.Add(1)
		return e.schema, e.err
	}
	v, _, _ := c.group.Do(hash, func() (any, error) {
		c.mu.RLock()
		e := c.entries[hash]
		c.mu.RUnlock()
		if e != nil {
			return e, nil
		}
		c.misses.Add(1)
		s, err := Compile(raw)
		e = &entry{key: hash, schema: s, err: err}
		c.insert(e)
		return e, nil
	})
	e = v.(*entry)
	return e.schema, e.err
}

// insert adds e, evicting one entry by CLOCK when the cache is full: the
// hand clears the used flag of entries it passes and evicts the first entry
// that was not used since the hand last passed it.
func (c *Cache) insert(e *entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.ring) < c.capacity {
		c.ring = append(c.ring, e)
		c.entries[e.key] = e
		return
	}
	for {
		old := c.ring[c.hand]
		if old.used.Load() {
			old.used.Store(false)
			c.hand = (c.hand + 1) % len(c.ring)
			continue
		}
		delete(c.entries, old.key)
		c.ring[c.hand] = e
		c.entries[e.key] = e
		c.hand = (c.hand + 1) % len(c.ring)
		return
	}
}

// Len returns how many schemas (and cached compile errors) the cache holds.
func (c *Cache) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}

// Stats returns how many lookups hit and how many compiled, since NewCache.
// A lookup that waited for a concurrent compile of the same hash counts as
// neither.
func (c *Cache) Stats() (hits, misses uint64) {
	return c.hits.Load(), c.misses.Load()
}
