package api

import (
	"context"
	"net/http"

	"github.com/mcpmesh/mcpmesh/node/policy"
	"github.com/mcpmesh/mcpmesh/registry/state"
)

// PoliciesRequest is the body of PUT /v1/policies: the whole new set.
type PoliciesRequest struct {
	Files []state.PolicyFile `json:"files"`
}

// PoliciesResponse is the policy set as GET and PUT /v1/policies return
// it: the stored files plus what the schema check made of them.
type PoliciesResponse struct {
	state.Policies
	// IDs are the policy ids in file order.
	IDs []string `json:"ids"`
	// Digest is the short hash decisions and logs name the set by.
	Digest string `json:"digest"`
}

// currentPolicies reads the policy set and describes it.
func (h *Handler) currentPolicies() (PoliciesResponse, error) {
	p, err := h.cl.FSM.Policies()
	if err != nil {
		return PoliciesResponse{}, err
	}
	set, err := policy.Compile(p.Files)
	if err != nil {
		return PoliciesResponse{}, err
	}
	return PoliciesResponse{Policies: p, IDs: set.IDs(), Digest: set.Digest()}, nil
}

func (h *Handler) putPolicies(w http.ResponseWriter, r *http.Request) {
	var req PoliciesRequest
	if err := decodeBody(r, &req); err != nil {
		h.fail(w, r, err)
		return
	}
	// Validate against the schema here, before Raft: the state machine
	// stores what it is given, and every replica compiles it.
	if _, err := policy.Compile(req.Files); err != nil {
		h.fail(w, r, badRequest("policies refused, nothing changed:\n%v", err))
		return
	}
	res, err := h.apply(r, state.PutPolicies{Files: req.Files, By: by(r), At: h.now().UTC()})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out, err := h.currentPolicies()
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if !res.Unchanged {
		h.logger.Info("admin replaced the policy set", "files", len(req.Files), "policies", len(out.IDs), "digest", out.Digest, "index", res.Index, "by", by(r))
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *Handler) showPolicies(w http.ResponseWriter, r *http.Request) {
	if err := h.consistent(r); err != nil {
		h.fail(w, r, err)
		return
	}
	out, err := h.currentPolicies()
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// PutPolicies replaces the BU's policy set with files; the node refuses
// the whole set, changing nothing, when any policy fails the schema.
func (c *Client) PutPolicies(ctx context.Context, files []state.PolicyFile) (PoliciesResponse, error) {
	var out PoliciesResponse
	err := c.do(ctx, http.MethodPut, "/v1/policies", nil, jsonBody(PoliciesRequest{Files: files}), "application/json", &out)
	return out, err
}

// Policies returns the BU's policy set.
func (c *Client) Policies(ctx context.Context, consistent bool) (PoliciesResponse, error) {
	var out PoliciesResponse
	err := c.do(ctx, http.MethodGet, "/v1/policies", readQuery(consistent), nil, "", &out)
	return out, err
}
