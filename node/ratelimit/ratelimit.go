// Package ratelimit enforces a BU's rate limits (registry/state.Limit) on
// one replica: token buckets, one per matching limit and key, each
// holding this replica's share of the limit.
//
// BU-wide, not per replica: every replica enforces rate/N and burst/N
// (burst at least 1), N being the live replica count the Raft leader
// commits (registry/state.LiveReplicas). The BU as a whole then admits at
// most the limit however calls spread over its replicas. The price:
// traffic skewed to one replica gets less than the whole limit (it is
// under-admitted, never over-admitted); and while the membership changes,
// until the new N is applied, the bound is loose (a dead replica's share
// is lost until N drops; a returning replica adds its share before N rises
// for a moment).
//
// A call consumes one token from every limit that matches it, and is
// refused, consuming nothing, when any of them is empty; the refusal names
// the limit whose bucket refills last and when the call could succeed.
//
// The buckets are hand-written rather than golang.org/x/time/rate's:
// a call must check every matching bucket before it takes from any, under
// one lock, which rate.Limiter cannot do without reserving and cancelling.
// Memory is bounded: a bucket that has refilled is the same as a new one,
// so idle buckets are dropped when the map grows; past MaxBuckets the
// oldest are dropped even if not full (which can only admit more).
//
// The package does not read the registry (node/gateway feeds it the set
// and N on every registry change) nor answer calls (the gateway turns a
// Refusal into HTTP 429 or JSON-RPC error -32014).
package ratelimit

import (
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpmesh/mcpmesh/registry/state"
)

// MaxBuckets is the default bound on the number of buckets a Limiter
// keeps.
const MaxBuckets = 100_000

// Call is what a limit can match in one tools/call.
type Call struct {
	// Principal is the agent's principal id.
	Principal string
	// Tenant is the agent's tenant; "" matches no tenant limit.
	Tenant string
	// Tool is "<server>/<tool>" with the registry's server name.
	Tool string
}

// Refusal says why a call was refused.
type Refusal struct {
	// Limit is the limit whose bucket was empty (the one that refills
	// last when several were).
	Limit state.Limit
	// RetryAfter is when this replica would admit the call, at the
	// earliest.
	RetryAfter time.Duration
	// Replicas is the N the limit was shared by.
	Replicas int
}

// Limiter holds the limits and buckets of one replica. The zero value is
// not usable; create it with New. It is safe for concurrent use.
type Limiter struct {
	now func() time.Time
	max int

	// none is set while there are no limits: callers may skip work.
	none atomic.Bool

	mu        sync.Mutex
	set       *compiled
	buckets   map[string]*bucket
	nextSweep int
}

// Option configures New.
type Option interface{ apply(*Limiter) }

type optionFunc func(*Limiter)

func (f optionFunc) apply(l *Limiter) { f(l) }

// WithClock sets the clock; the default is time.Now.
func WithClock(now func() time.Time) Option { return optionFunc(func(l *Limiter) { l.now = now }) }

// WithMaxBuckets bounds the buckets kept; the default is MaxBuckets.
func WithMaxBuckets(n int) Option { return optionFunc(func(l *Limiter) { l.max = n }) }

// New returns a limiter with no limits: it admits every call.
func New(opts ...Option) *Limiter {
	l := &Limiter{now: time.Now, max: MaxBuckets, buckets: map[string]*bucket{}, nextSweep: 1024}
	for _, o := range opts {
		o.apply(l)
	}
	l.set = compile(nil, 1)
	l.none.Store(true)
	return l
}

// Set replaces the limits and the replica count N they are shared by
// (values below 1 count as 1). Buckets of a scope that stays keep their
// tokens, capped at the new burst.
func (l *Limiter) Set(limits []state.Limit, replicas int) {
	c := compile(limits, replicas)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.set = c
	l.none.Store(c.empty)
	for k := range l.buckets {
		scope, _, _ := strings.Cut(k, "\x00")
		if _, ok := c.byScope[scope]; !ok {
			delete(l.buckets, k)
		}
	}
}

// None reports whether there are no limits, so every call is admitted.
func (l *Limiter) None() bool { return l.none.Load() }

// Len is the number of buckets held.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

// Allow takes one token from every limit matching c and returns true, or
// takes none and returns false with the refusal.
func (l *Limiter) Allow(c Call) (Refusal, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	set := l.set
	if set.empty {
		return Refusal{}, true
	}
	var matched [8]match
	ms := set.match(c, matched[:0])
	if len(ms) == 0 {
		return Refusal{}, true
	}
	now := l.now()
	var worst *match
	var wait float64
	for i := range ms {
		m := &ms[i]
		m.b = l.buckets[m.key]
		if m.b == nil {
			m.b = &bucket{tokens: m.r.burst, last: now}
		}
		m.b.refill(now, m.r)
		if m.b.tokens < 1 {
			if w := (1 - m.b.tokens) / m.r.rate; worst == nil || w > wait {
				worst, wait = m, w
			}
		}
	}
	if worst != nil {
		return Refusal{Limit: worst.r.limit, RetryAfter: time.Duration(math.Ceil(wait * float64(time.Second))), Replicas: set.replicas}, false
	}
	for _, m := range ms {
		m.b.tokens--
		if _, ok := l.buckets[m.key]; !ok {
			l.buckets[m.key] = m.b
		}
	}
	if len(l.buckets) >= l.nextSweep {
		l.sweep(now)
	}
	return Refusal{}, true
}

// sweep drops the buckets that have refilled (the same as new ones), and
// past the bound the least recently used.
func (l *Limiter) sweep(now time.Time) {
	for k, b := range l.buckets {
		scope, _, _ := strings.Cut(k, "\x00")
		r := l.set.byScope[scope]
		if r == nil || b.full(now, r) {
			delete(l.buckets, k)
		}
	}
	if over := len(l.buckets) - l.max; over > 0 {
		// Rare (more than max agents active within a refill time): drop
		// the oldest tenth below the bound, by one pass for the cutoff.
		drop := over + l.max/10
		var cutoff time.Time
		lasts := make([]time.Time, 0, len(l.buckets))
		for _, b := range l.buckets {
			lasts = append(lasts, b.last)
		}
		cutoff = nthOldest(lasts, drop)
		for k, b := range l.buckets {
			if drop > 0 && !b.last.After(cutoff) {
				delete(l.buckets, k)
				drop--
			}
		}
	}
	l.nextSweep = max(2*len(l.buckets), 1024)
}

// nthOldest returns the n-th oldest time of ts (1-based), reordering ts.
func nthOldest(ts []time.Time, n int) time.Time {
	n = min(max(n, 1), len(ts))
	// Quickselect would do; the sort is fine for a rare path.
	slices.SortFunc(ts, time.Time.Compare)
	return ts[n-1]
}

// bucket is one token bucket; its rate and burst are its rule's.
type bucket struct {
	tokens float64
	last   time.Time
}

func (b *bucket) refill(now time.Time, r *rule) {
	if dt := now.Sub(b.last).Seconds(); dt > 0 {
		b.tokens += dt * r.rate
		b.last = now
	}
	if b.tokens > r.burst {
		b.tokens = r.burst
	}
}

func (b *bucket) full(now time.Time, r *rule) bool {
	return b.tokens+now.Sub(b.last).Seconds()*r.rate >= r.burst
}

// rule is one limit as this replica enforces it.
type rule struct {
	limit state.Limit
	scope string
	// rate is this replica's share in tokens per second; burst its share
	// of the burst, at least 1.
	rate, burst float64
	// perPrincipal, perTenant: the key of the bucket.
	perPrincipal, perTenant bool
	// prefix is the principal id prefix of an identity limit ending in *.
	prefix string
}

// compiled is a limit set indexed for matching.
type compiled struct {
	empty      bool
	replicas   int
	byScope    map[string]*rule
	identity   map[string]*rule // exact principal id
	prefixes   []*rule          // identity ending in *
	tenant     map[string]*rule // exact tenant
	anyTenant  *rule            // tenant *
	tool       map[string]*rule
	tenantTool map[string]*rule // tenant \x00 tool; tenant may be *
}

func compile(limits []state.Limit, replicas int) *compiled {
	n := max(replicas, 1)
	c := &compiled{empty: len(limits) == 0, replicas: n, byScope: map[string]*rule{},
		identity: map[string]*rule{}, tenant: map[string]*rule{}, tool: map[string]*rule{}, tenantTool: map[string]*rule{}}
	for _, lim := range limits {
		rt, err := state.ParseRate(lim.Rate)
		if err != nil || lim.Burst < 1 {
			continue // the registry validated it; skip what cannot be enforced
		}
		r := &rule{limit: lim, scope: lim.Scope(), rate: rt.PerSecond() / float64(n), burst: max(float64(lim.Burst)/float64(n), 1)}
		c.byScope[r.scope] = r
		switch {
		case lim.Identity != "":
			r.perPrincipal = true
			if p, ok := strings.CutSuffix(lim.Identity, "*"); ok {
				r.prefix = p
				c.prefixes = append(c.prefixes, r)
				continue
			}
			c.identity[lim.Identity] = r
		case lim.Tenant != "" && lim.Tool != "":
			r.perTenant = true
			c.tenantTool[lim.Tenant+"\x00"+lim.Tool] = r
		case lim.Tenant == "*":
			r.perTenant = true
			c.anyTenant = r
		case lim.Tenant != "":
			c.tenant[lim.Tenant] = r
		default:
			c.tool[lim.Tool] = r
		}
	}
	return c
}

// match is one matching rule with its bucket key.
type match struct {
	r   *rule
	key string
	b   *bucket
}

func (c *compiled) match(call Call, out []match) []match {
	add := func(r *rule) {
		key := r.scope + "\x00"
		switch {
		case r.perPrincipal:
			key += call.Principal
		case r.perTenant:
			key += call.Tenant
		}
		out = append(out, match{r: r, key: key})
	}
	if r := c.identity[call.Principal]; r != nil {
		add(r)
	}
	for _, r := range c.prefixes {
		if strings.HasPrefix(call.Principal, r.prefix) {
			add(r)
		}
	}
	if call.Tenant != "" {
		if r := c.tenant[call.Tenant]; r != nil {
			add(r)
		}
		if c.anyTenant != nil {
			add(c.anyTenant)
		}
		if r := c.tenantTool[call.Tenant+"\x00"+call.Tool]; r != nil {
			add(r)
		}
		if r := c.tenantTool["*\x00"+call.Tool]; r != nil {
			add(r)
		}
	}
	if r := c.tool[call.Tool]; r != nil {
		add(r)
	}
	return out
}
