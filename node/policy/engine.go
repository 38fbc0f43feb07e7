package policy

import (
	"slices"
	"sync"
	"sync/atomic"

	"github.com/cedar-policy/cedar-go"

	"github.com/mcpmesh/mcpmesh/trust/agentauth"
)

// Engine holds the live policy set of a node and swaps it atomically: a
// decision sees the old set or the new one, never a mix. The zero Engine
// is not usable; call NewEngine. It is safe for concurrent use.
type Engine struct {
	live   atomic.Pointer[live]
	agents agentCache
}

type live struct {
	set     *Set
	version uint64
}

// NewEngine returns an engine whose set is empty until Swap: every request
// is denied.
func NewEngine() *Engine {
	empty, err := Compile(nil)
	if err != nil {
		panic("policy: the empty set does not compile: " + err.Error())
	}
	e := &Engine{}
	e.live.Store(&live{set: empty})
	return e
}

// Swap makes s the live set; version is the registry index it was
// committed at.
func (e *Engine) Swap(s *Set, version uint64) { e.live.Store(&live{set: s, version: version}) }

// Set returns the live set and the registry index it was committed at (0
// before the first Swap).
func (e *Engine) Set() (*Set, uint64) {
	l := e.live.Load()
	return l.set, l.version
}

// Authorize decides r against the live set, reusing the principal's
// entity from earlier requests of the same principal.
func (e *Engine) Authorize(r *Request) Decision {
	return e.live.Load().set.authorize(r, e.agents.entity(r.Principal))
}

// maxCachedAgents bounds the agent cache; when it is full the cache starts
// over, which costs one rebuild per principal.
const maxCachedAgents = 8192

// agentCache keeps the Cedar entity of each principal seen, by principal
// ID. A hit is checked against every field of the principal, so a caller
// whose groups, scopes or tenant changed gets a fresh entity.
type agentCache struct {
	m sync.Map // principal ID -> *cachedAgent
	n atomic.Int64
}

type cachedAgent struct {
	p agentauth.Principal
	e cedar.Entity
}

func (c *agentCache) entity(p agentauth.Principal) cedar.Entity {
	if v, ok := c.m.Load(p.ID); ok {
		if a := v.(*cachedAgent); samePrincipal(a.p, p) {
			return a.e
		}
	}
	a := &cachedAgent{p: p, e: agentEntity(p)}
	a.p.Groups, a.p.Scopes = slices.Clone(p.Groups), slices.Clone(p.Scopes)
	if c.n.Add(1) > maxCachedAgents {
		c.m.Clear()
		c.n.Store(1)
	}
	c.m.Store(p.ID, a)
	return a.e
}

func samePrincipal(a, b agentauth.Principal) bool {
	return a.ID == b.ID && a.TrustDomain == b.TrustDomain && a.Tenant == b.Tenant && a.Method == b.Method &&
		slices.Equal(a.Groups, b.Groups) && slices.Equal(a.Scopes, b.Scopes)
}
