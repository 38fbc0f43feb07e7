package policy

import "sync/atomic"

// Engine holds the live policy set of a node and swaps it atomically: a
// decision sees the old set or the new one, never a mix. The zero Engine
// is not usable; call NewEngine. It is safe for concurrent use.
type Engine struct {
	live atomic.Pointer[live]
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

// Authorize decides r against the live set.
func (e *Engine) Authorize(r *Request) Decision { return e.live.Load().set.Authorize(r) }
