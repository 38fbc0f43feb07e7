package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/mcpmesh/mcpmesh/registry/state"
)

// KillRequest is the body of POST /v1/kills.
type KillRequest struct {
	Kind   state.KillKind `json:"kind"`
	Name   string         `json:"name"`
	Reason string         `json:"reason"`
}

// KillResponse answers POST /v1/kills: the switch as stored.
type KillResponse struct {
	state.Kill
	// Unchanged is true when the switch was already pulled with this reason.
	Unchanged bool `json:"unchanged,omitempty"`
	// Warning says when the name matches nothing the registry knows (a
	// typo?); the switch is pulled anyway, so that it holds if the name
	// appears later.
	Warning string `json:"warning,omitempty"`
}

// ReviveResponse answers DELETE /v1/kills/{kind}/{name}.
type ReviveResponse struct {
	Revived state.Kill `json:"revived"`
	Index   uint64     `json:"index"`
}

func killPath(kind state.KillKind, name string) string {
	return "/v1/kills/" + url.PathEscape(string(kind)) + "/" + url.PathEscape(name)
}

func (h *Handler) putKill(w http.ResponseWriter, r *http.Request) {
	var req KillRequest
	if err := decodeBody(r, &req); err != nil {
		h.fail(w, r, err)
		return
	}
	if err := state.ValidateKillTarget(req.Kind, req.Name); err != nil {
		h.fail(w, r, err)
		return
	}
	if err := state.ValidateKillReason(req.Reason); err != nil {
		h.fail(w, r, err)
		return
	}
	res, err := h.apply(r, state.PutKill{Kind: req.Kind, Name: req.Name, Reason: req.Reason, By: by(r), At: h.now().UTC()})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	k, err := h.cl.FSM.Kill(req.Kind, req.Name)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := KillResponse{Kill: k, Unchanged: res.Unchanged, Warning: h.unknownTarget(req.Kind, req.Name)}
	status := http.StatusOK
	if !res.Unchanged {
		// The audit log will record this action; until then the node's log does.
		h.logger.Info("admin pulled a kill switch", "kind", k.Kind, "name", k.Name, "reason", k.Reason, "by", k.By, "index", res.Index)
		status = http.StatusCreated
	}
	writeJSON(w, status, out)
}

// unknownTarget returns a warning when name matches nothing the registry
// knows, "" when it does or cannot tell.
func (h *Handler) unknownTarget(kind state.KillKind, name string) string {
	fsm := h.cl.FSM
	switch kind {
	case state.KillServer:
		if _, err := fsm.ServerVersions(name); errors.Is(err, state.ErrNotFound) {
			return fmt.Sprintf("no server %s is registered; check the name (mcpmesh registry list)", name)
		}
	case state.KillTool:
		i := strings.LastIndex(name, "/") // validated: there is one
		server, tool := name[:i], name[i+1:]
		vs, err := fsm.ServerVersions(server)
		if errors.Is(err, state.ErrNotFound) {
			return fmt.Sprintf("no server %s is registered; check the name (mcpmesh registry list)", server)
		}
		for _, v := range vs {
			if slices.ContainsFunc(v.Tools, func(t state.ToolRef) bool { return t.Name == tool }) {
				return ""
			}
		}
		if err == nil {
			return fmt.Sprintf("no version of %s has a tool %q; check the name (mcpmesh registry show %s)", server, tool, server)
		}
	case state.KillTenant:
		if _, err := fsm.Tenant(name); errors.Is(err, state.ErrNotFound) {
			return fmt.Sprintf("no tenant %s exists; check the name (mcpmesh tenant list)", name)
		}
	case state.KillAgent:
		if id, ok := strings.CutPrefix(name, "apikey:"); ok {
			if _, err := fsm.APIKey(id); errors.Is(err, state.ErrNotFound) {
				return fmt.Sprintf("no API key %s exists; check the id (mcpmesh apikey list)", id)
			}
		}
	}
	return ""
}

func (h *Handler) listKills(w http.ResponseWriter, r *http.Request) {
	if err := h.consistent(r); err != nil {
		h.fail(w, r, err)
		return
	}
	ks, err := h.cl.FSM.Kills()
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"kills": ks})
}

func (h *Handler) revive(w http.ResponseWriter, r *http.Request) {
	kind, name := state.KillKind(r.PathValue("kind")), r.PathValue("name")
	if !slices.Contains(state.KillKinds, kind) {
		h.fail(w, r, badRequest("kill switch kind %q: want tool, server, tenant or agent", kind))
		return
	}
	// What is revived, for the answer and the log; the command refuses
	// a switch that is not pulled.
	k, err := h.cl.FSM.Kill(kind, name)
	if err != nil && !errors.Is(err, state.ErrNotFound) {
		h.fail(w, r, err)
		return
	}
	res, err := h.apply(r, state.Revive{Kind: kind, Name: name, By: by(r), At: h.now().UTC()})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	k.Kind, k.Name = kind, name
	// The audit log will record this action; until then the node's log does.
	h.logger.Info("admin revived a kill switch", "kind", kind, "name", name, "reason", k.Reason, "killed_by", k.By, "by", by(r), "index", res.Index)
	writeJSON(w, http.StatusOK, ReviveResponse{Revived: k, Index: res.Index})
}

// Kill pulls a kill switch (or changes its reason): every node of the
// namespace refuses what it covers once it has applied the write.
func (c *Client) Kill(ctx context.Context, req KillRequest) (KillResponse, error) {
	var out KillResponse
	err := c.do(ctx, http.MethodPost, "/v1/kills", nil, jsonBody(req), "application/json", &out)
	return out, err
}

// Kills lists the pulled kill switches.
func (c *Client) Kills(ctx context.Context, consistent bool) ([]state.Kill, error) {
	var out struct {
		Kills []state.Kill `json:"kills"`
	}
	err := c.do(ctx, http.MethodGet, "/v1/kills", readQuery(consistent), nil, "", &out)
	return out.Kills, err
}

// Revive releases a kill switch; one not pulled is a 404 *Error.
func (c *Client) Revive(ctx context.Context, kind state.KillKind, name string) (ReviveResponse, error) {
	var out ReviveResponse
	err := c.do(ctx, http.MethodDelete, killPath(kind, name), nil, nil, "", &out)
	return out, err
}
