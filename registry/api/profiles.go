package api

import (
	"context"
	"net/http"
	"net/url"

	"github.com/mcpmesh/mcpmesh/registry/state"
)

// ProfileRequest is the body of PUT /v1/profiles/{principal}.
type ProfileRequest struct {
	// Pins maps server names to exact versions; they replace the profile's.
	Pins map[string]string `json:"pins"`
}

func profilePath(principal string) string { return "/v1/profiles/" + url.PathEscape(principal) }

func (h *Handler) putProfile(w http.ResponseWriter, r *http.Request) {
	principal := r.PathValue("principal")
	var req ProfileRequest
	if err := decodeBody(r, &req); err != nil {
		h.fail(w, r, err)
		return
	}
	if err := state.ValidatePrincipal(principal); err != nil {
		h.fail(w, r, err)
		return
	}
	res, err := h.apply(r, state.PutProfile{Principal: principal, Pins: req.Pins, By: by(r), At: h.now().UTC()})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	p, err := h.cl.FSM.Profile(principal)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	status := http.StatusOK
	if p.CreateIndex == res.Index && !res.Unchanged {
		status = http.StatusCreated
	}
	if !res.Unchanged {
		h.logger.Info("admin set a version profile", "principal", principal, "pins", req.Pins, "by", by(r))
	}
	writeJSON(w, status, p)
}

func (h *Handler) showProfile(w http.ResponseWriter, r *http.Request) {
	if err := h.consistent(r); err != nil {
		h.fail(w, r, err)
		return
	}
	p, err := h.cl.FSM.Profile(r.PathValue("principal"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

func (h *Handler) listProfiles(w http.ResponseWriter, r *http.Request) {
	if err := h.consistent(r); err != nil {
		h.fail(w, r, err)
		return
	}
	ps, err := h.cl.FSM.Profiles()
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"profiles": ps})
}

func (h *Handler) deleteProfile(w http.ResponseWriter, r *http.Request) {
	principal := r.PathValue("principal")
	res, err := h.apply(r, state.DeleteProfile{Principal: principal, By: by(r), At: h.now().UTC()})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.logger.Info("admin deleted a version profile", "principal", principal, "by", by(r))
	writeJSON(w, http.StatusOK, map[string]any{"deleted": principal, "index": res.Index})
}

// SetProfile replaces a principal's version pins.
func (c *Client) SetProfile(ctx context.Context, principal string, pins map[string]string) (state.Profile, error) {
	var out state.Profile
	err := c.do(ctx, http.MethodPut, profilePath(principal), nil, jsonBody(ProfileRequest{Pins: pins}), "application/json", &out)
	return out, err
}

// Profile returns a principal's profile.
func (c *Client) Profile(ctx context.Context, principal string, consistent bool) (state.Profile, error) {
	var out state.Profile
	err := c.do(ctx, http.MethodGet, profilePath(principal), readQuery(consistent), nil, "", &out)
	return out, err
}

// Profiles lists every profile.
func (c *Client) Profiles(ctx context.Context, consistent bool) ([]state.Profile, error) {
	var out struct {
		Profiles []state.Profile `json:"profiles"`
	}
	err := c.do(ctx, http.MethodGet, "/v1/profiles", readQuery(consistent), nil, "", &out)
	return out.Profiles, err
}

// DeleteProfile removes a principal's profile.
func (c *Client) DeleteProfile(ctx context.Context, principal string) error {
	return c.do(ctx, http.MethodDelete, profilePath(principal), nil, nil, "", nil)
}
