package agentauth

import (
	"slices"
	"sync"
	"time"
)

// defaultTokenCacheSize is how many verified bearer JWTs are remembered
// unless Config.TokenCacheSize says otherwise: at a few hundred bytes an
// entry, a few MiB.
const defaultTokenCacheSize = 10000

// tokenCache remembers bearer JWTs that verified, keyed by the SHA-256 of
// the token (the token itself is never kept), until the token's exp. It
// holds at most max entries: when full, expired entries go first, then
// arbitrary ones (Go's map order), a sixteenth of the cache at a time so
// that a full cache does not sweep on every insert. A nil *tokenCache
// caches nothing. It is safe for concurrent use.
type tokenCache struct {
	max     int
	mu      sync.Mutex
	entries map[[32]byte]verified
}

func newTokenCache(max int) *tokenCache {
	return &tokenCache{max: max, entries: make(map[[32]byte]verified)}
}

// get returns the entry for a token's hash if it has not expired at now.
func (c *tokenCache) get(sum [32]byte, now time.Time) (verified, bool) {
	if c == nil {
		return verified{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[sum]
	if !ok {
		return verified{}, false
	}
	if !now.Before(e.exp) {
		delete(c.entries, sum)
		return verified{}, false
	}
	return e, true
}

// put remembers a verified token until its exp; one already expired at now
// (accepted within the verifier's leeway) is not remembered.
func (c *tokenCache) put(sum [32]byte, v verified, now time.Time) {
	if c == nil || !now.Before(v.exp) {
		return
	}
	// Every hit shares these slices: clipped, an append by a caller copies
	// rather than writing into another request's principal.
	v.p.Groups, v.p.Scopes = slices.Clip(v.p.Groups), slices.Clip(v.p.Scopes)
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[sum]; !ok && len(c.entries) >= c.max {
		c.evict(now)
	}
	c.entries[sum] = v
}

// evict makes room: it drops every expired entry, then arbitrary ones
// until a sixteenth of the cache (at least one entry) is free.
func (c *tokenCache) evict(now time.Time) {
	for k, e := range c.entries {
		if !now.Before(e.exp) {
			delete(c.entries, k)
		}
	}
	target := c.max - max(c.max/16, 1)
	for k := range c.entries {
		if len(c.entries) <= target {
			return
		}
		delete(c.entries, k)
	}
}

// len returns the number of entries, expired ones included.
func (c *tokenCache) len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
