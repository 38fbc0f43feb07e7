package api

import (
	"context"
	"net/http"

	"github.com/mcpmesh/mcpmesh/registry/state"
)

// LimitsRequest is the body of PUT /v1/limits: the whole new rate limit
// set.
type LimitsRequest struct {
	Limits []state.Limit `json:"limits"`
}

// LimitsResponse is the rate limit set as GET and PUT /v1/limits return
// it, with the live replica count every replica divides each limit by.
type LimitsResponse struct {
	state.Limits
	// Replicas is the live replica count the leader last committed.
	Replicas state.LiveReplicas `json:"replicas"`
}

func (h *Handler) currentLimits() (LimitsResponse, error) {
	ls, err := h.cl.FSM.Limits()
	if err != nil {
		return LimitsResponse{}, err
	}
	if ls.Limits == nil {
		ls.Limits = []state.Limit{}
	}
	lr, err := h.cl.FSM.LiveReplicas()
	if err != nil {
		return LimitsResponse{}, err
	}
	return LimitsResponse{Limits: ls, Replicas: lr}, nil
}

func (h *Handler) putLimits(w http.ResponseWriter, r *http.Request) {
	var req LimitsRequest
	if err := decodeBody(r, &req); err != nil {
		h.fail(w, r, err)
		return
	}
	// The state machine checks too; checking here first answers without
	// a Raft round trip.
	if err := state.ValidateLimits(req.Limits); err != nil {
		h.fail(w, r, err)
		return
	}
	res, err := h.apply(r, state.PutLimits{Limits: req.Limits, By: by(r), At: h.now().UTC()})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out, err := h.currentLimits()
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if !res.Unchanged {
		h.logger.Info("admin replaced the rate limit set", "limits", len(out.Limits.Limits), "index", res.Index, "by", by(r))
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *Handler) showLimits(w http.ResponseWriter, r *http.Request) {
	if err := h.consistent(r); err != nil {
		h.fail(w, r, err)
		return
	}
	out, err := h.currentLimits()
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// PutLimits replaces the BU's rate limit set; the node refuses the whole
// set, changing nothing, when any limit is invalid.
func (c *Client) PutLimits(ctx context.Context, limits []state.Limit) (LimitsResponse, error) {
	var out LimitsResponse
	err := c.do(ctx, http.MethodPut, "/v1/limits", nil, jsonBody(LimitsRequest{Limits: limits}), "application/json", &out)
	return out, err
}

// Limits returns the BU's rate limit set and live replica count.
func (c *Client) Limits(ctx context.Context, consistent bool) (LimitsResponse, error) {
	var out LimitsResponse
	err := c.do(ctx, http.MethodGet, "/v1/limits", readQuery(consistent), nil, "", &out)
	return out, err
}
