package node

import (
	"sync"

	"github.com/mcpmesh/mcpmesh/registry/state"
)

// exportsCache holds the catalogs this BU exports, by consumer trust
// domain, as of one applied Raft index. Every forwarded tools/call checks
// its tool against the caller's catalog; building it reads the exports,
// every exported tool's definition and the catalog mark from the state
// and decodes them, which cost the exporting node about 5% of its CPU per
// call (make bench-federation's profile). The state only changes when an
// entry is applied, so a catalog read at one applied index stays right
// until the next; any applied entry drops them all.
type exportsCache struct {
	// applied is the state's applied index; read builds td's catalog from
	// the state as it is now (FSM.AppliedIndex and FSM.ExportedCatalog).
	applied func() uint64
	read    func(td string) (state.ExportedCatalog, error)

	mu   sync.Mutex
	at   uint64
	byTD map[string]state.ExportedCatalog
}

// get returns what this BU exports to td, as of the state's latest
// applied index. The catalog is shared: callers must not modify it.
func (c *exportsCache) get(td string) (state.ExportedCatalog, error) {
	at := c.applied()
	c.mu.Lock()
	if cat, ok := c.byTD[td]; ok && c.at == at {
		c.mu.Unlock()
		return cat, nil
	}
	c.mu.Unlock()
	// The state commits an entry before it raises its applied index, so
	// this read sees at least what index at says; it may see more, and is
	// then replaced at the next index, never served past the state.
	cat, err := c.read(td)
	if err != nil {
		return state.ExportedCatalog{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.at != at || c.byTD == nil {
		c.at, c.byTD = at, map[string]state.ExportedCatalog{}
	}
	c.byTD[td] = cat
	return cat, nil
}
