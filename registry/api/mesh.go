package api

import (
	"context"
	"net/http"
	"time"
)

// MeshMember is one node of the mesh of all BUs as this node's gossip pool
// sees it (GET /v1/federation/members, `mcpmesh members -wan`). Everything
// but Name, Addr, State and Since is the member's own claim (its gossip
// hint): Verified says whether this node has checked it over mTLS.
type MeshMember struct {
	// Name is "<namespace>/<node id>".
	Name string `json:"name"`
	// Addr is the member's gossip address.
	Addr string `json:"addr"`
	// State is alive, dead (failed) or left.
	State string `json:"state"`
	// Local is set for the node that answered.
	Local bool `json:"local,omitempty"`
	// Since is when the answering node last saw the state or hint change.
	Since time.Time `json:"since,omitzero"`

	Namespace       string   `json:"namespace,omitempty"`
	TrustDomain     string   `json:"trustDomain,omitempty"`
	PeerAddr        string   `json:"peerAddr,omitempty"`
	Protocols       []string `json:"protocols,omitempty"`
	CatalogVersion  uint64   `json:"catalogVersion,omitempty"`
	CatalogHash     string   `json:"catalogHash,omitempty"`
	BundleSequence  uint64   `json:"bundleSequence,omitempty"`
	ManifestVersion uint64   `json:"manifestVersion,omitempty"`
	// HintError is why the member's hint is unusable (it did not decode,
	// or disagrees with its name); the claims above are then empty.
	HintError string `json:"hintError,omitempty"`
	// Verified is set once a peer connection to PeerAddr presented a node
	// certificate of TrustDomain, and the manifest maps Namespace to it;
	// Refused says why a check found the claims false; Pending why they
	// could not be checked yet (no answer, or the claimed trust domain's
	// bundle not fetched yet). A member of the answering node's own BU is
	// never checked.
	Verified bool   `json:"verified,omitempty"`
	Refused  string `json:"refused,omitempty"`
	Pending  string `json:"pending,omitempty"`
}

// MeshResponse answers GET /v1/federation/members.
type MeshResponse struct {
	// Node is the answering node, "<namespace>/<node id>".
	Node    string       `json:"node"`
	Members []MeshMember `json:"members"`
}

// WithMesh turns on GET /v1/federation/members, answered with what
// members returns (the node's gossip pool). Without it the route answers
// 501: the node is not in a mesh.
func WithMesh(members func() MeshResponse) Option {
	return optionFunc(func(h *Handler) { h.mesh = members })
}

func (h *Handler) meshMembers(w http.ResponseWriter, r *http.Request) {
	if h.mesh == nil {
		writeError(w, http.StatusNotImplemented, "federation_off",
			"this node is not in a mesh: set federation.peer.listen and federation.gossip in its config and restart it", nil)
		return
	}
	writeJSON(w, http.StatusOK, h.mesh())
}

// MeshMembers lists the mesh of all BUs as the node's gossip pool sees it.
// It is this one node's view: another node may know more or less.
func (c *Client) MeshMembers(ctx context.Context) (MeshResponse, error) {
	var out MeshResponse
	err := c.do(ctx, http.MethodGet, "/v1/federation/members", nil, nil, "", &out)
	return out, err
}
