package api

import (
	"context"
	"net/http"
	"slices"
	"time"

	"github.com/mcpmesh/mcpmesh/registry/state"
)

// Federation routes:
//
//	GET /v1/federation/exports   the export set
//	PUT /v1/federation/exports   replace it (body ExportsRequest), audited
//	GET /v1/federation/peers     per peer BU: imported and exported counts, sync status

// ExportsRequest is the body of PUT /v1/federation/exports: the whole new
// export set.
type ExportsRequest struct {
	Exports []state.Export `json:"exports"`
}

// Peer is one peer BU as GET /v1/federation/peers shows it: an origin this
// BU imports from, a consumer it exports to, or both.
type Peer struct {
	// Namespace is the origin's namespace; empty for a consumer this BU
	// only exports to (the export set names trust domains).
	Namespace   string `json:"namespace,omitempty"`
	TrustDomain string `json:"trustDomain"`
	// Imported counts the tool versions imported from it; Exported those
	// this BU exports to its trust domain.
	Imported int `json:"imported"`
	Exported int `json:"exported"`
	// CatalogVersion is the version of its catalog last imported.
	CatalogVersion uint64    `json:"catalogVersion,omitempty"`
	LastSync       time.Time `json:"lastSync,omitzero"`
	LastError      string    `json:"lastError,omitempty"`
	LastErrorAt    time.Time `json:"lastErrorAt,omitzero"`
	// Refused counts tool versions whose changed definitions were refused
	// (rug pull); the pinned ones are kept.
	Refused []state.RefusedTool `json:"refused,omitempty"`
	// Killed are the tools the origin exports to this BU but has switched
	// off with a kill switch: not listed here, their calls answered as
	// killed with the origin's reason.
	Killed []state.KilledTool `json:"killed,omitempty"`
	// ExportedKilled counts the tools this BU exports to the peer's trust
	// domain that a kill switch of this BU stops (the peer is told, with
	// the reason).
	ExportedKilled int `json:"exportedKilled,omitempty"`
	// Stale is set for an origin without a successful sync for longer
	// than state.DefaultStaleAfter: its tools are still listed, marked
	// stale.
	Stale bool `json:"stale"`
}

// PeersResponse answers GET /v1/federation/peers.
type PeersResponse struct {
	Peers []Peer `json:"peers"`
}

func (h *Handler) showExports(w http.ResponseWriter, r *http.Request) {
	if err := h.consistent(r); err != nil {
		h.fail(w, r, err)
		return
	}
	es, err := h.cl.FSM.Exports()
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, es)
}

func (h *Handler) putExports(w http.ResponseWriter, r *http.Request) {
	var req ExportsRequest
	if err := decodeBody(r, &req); err != nil {
		h.fail(w, r, err)
		return
	}
	// The state machine checks too; checking here first answers without a
	// Raft round trip (and without an audit record of a change refused).
	if err := state.ValidateExports(req.Exports); err != nil {
		h.fail(w, r, err)
		return
	}
	res, err := h.apply(r, state.PutExports{Exports: req.Exports, By: by(r), At: h.now().UTC()})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	es, err := h.cl.FSM.Exports()
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if !res.Unchanged {
		h.logger.Info("admin replaced the export set", "exports", len(es.Exports), "index", res.Index, "by", by(r))
	}
	writeJSON(w, http.StatusOK, es)
}

func (h *Handler) peers(w http.ResponseWriter, r *http.Request) {
	if err := h.consistent(r); err != nil {
		h.fail(w, r, err)
		return
	}
	out, err := PeersOf(h.cl.FSM, h.now())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, PeersResponse{Peers: out})
}

// PeersOf lists the peer BUs of a registry state at now: every origin
// imported from (or with a sync status), then every consumer trust domain
// exported to that is not also an origin, each group by name.
func PeersOf(fsm *state.FSM, now time.Time) ([]Peer, error) {
	ims, err := fsm.AllImports()
	if err != nil {
		return nil, err
	}
	sts, err := fsm.PeerStatuses()
	if err != nil {
		return nil, err
	}
	es, err := fsm.Exports()
	if err != nil {
		return nil, err
	}
	byNS := map[string]*Peer{}
	var order []string
	peer := func(ns, td string) *Peer {
		if p, ok := byNS[ns]; ok {
			return p
		}
		p := &Peer{Namespace: ns, TrustDomain: td}
		byNS[ns] = p
		order = append(order, ns)
		return p
	}
	for _, im := range ims {
		p := peer(im.Namespace, im.TrustDomain)
		p.Imported, p.CatalogVersion, p.Refused, p.Killed = len(im.Tools), im.CatalogVersion, im.Refused, im.Killed
	}
	for _, st := range sts {
		p := peer(st.Namespace, st.TrustDomain)
		p.LastSync, p.LastError, p.LastErrorAt = st.LastSuccess, st.LastError, st.LastErrorAt
	}
	slices.Sort(order)
	out := make([]Peer, 0, len(order))
	seenTD := map[string]int{}
	for _, ns := range order {
		p := byNS[ns]
		p.Stale = p.LastSync.IsZero() || now.Sub(p.LastSync) > state.DefaultStaleAfter
		seenTD[p.TrustDomain] = len(out)
		out = append(out, *p)
	}
	for _, td := range es.ConsumerTrustDomains() {
		cat, err := fsm.ExportedCatalog(td)
		if err != nil {
			return nil, err
		}
		if i, ok := seenTD[td]; ok {
			out[i].Exported, out[i].ExportedKilled = len(cat.Tools), len(cat.Killed)
			continue
		}
		out = append(out, Peer{TrustDomain: td, Exported: len(cat.Tools), ExportedKilled: len(cat.Killed)})
	}
	return out, nil
}

// Exports returns the BU's export set.
func (c *Client) Exports(ctx context.Context, consistent bool) (state.Exports, error) {
	var out state.Exports
	err := c.do(ctx, http.MethodGet, "/v1/federation/exports", readQuery(consistent), nil, "", &out)
	return out, err
}

// PutExports replaces the BU's export set; the node refuses the whole set,
// changing nothing, when any export is invalid.
func (c *Client) PutExports(ctx context.Context, exports []state.Export) (state.Exports, error) {
	if exports == nil {
		exports = []state.Export{}
	}
	var out state.Exports
	err := c.do(ctx, http.MethodPut, "/v1/federation/exports", nil, jsonBody(ExportsRequest{Exports: exports}), "application/json", &out)
	return out, err
}

// Peers lists the peer BUs with their import and export counts and sync
// status.
func (c *Client) Peers(ctx context.Context, consistent bool) (PeersResponse, error) {
	var out PeersResponse
	err := c.do(ctx, http.MethodGet, "/v1/federation/peers", readQuery(consistent), nil, "", &out)
	return out, err
}
