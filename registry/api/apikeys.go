package api

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/mcpmesh/mcpmesh/registry/state"
	"github.com/mcpmesh/mcpmesh/trust/apikey"
)

// APIKeyRequest is the body of POST /v1/apikeys.
type APIKeyRequest struct {
	Tenant string   `json:"tenant"`
	Name   string   `json:"name"`
	Groups []string `json:"groups,omitempty"`
	Scopes []string `json:"scopes,omitempty"`
	// ExpiresAt is optional; zero means the key does not expire.
	ExpiresAt time.Time `json:"expiresAt,omitzero"`
}

// APIKeyCreated is the answer to POST /v1/apikeys: the record and, this
// once, the key itself. The node keeps only its hash.
type APIKeyCreated struct {
	Key    state.APIKey `json:"apiKey"`
	Secret string       `json:"secret"`
}

// publicKey is a key record as the API shows it: without the hash, which
// is of no use to anyone but the front door.
func publicKey(k state.APIKey) state.APIKey {
	k.Hash = ""
	return k
}

func (h *Handler) createAPIKey(w http.ResponseWriter, r *http.Request) {
	var req APIKeyRequest
	if err := decodeBody(r, &req); err != nil {
		h.fail(w, r, err)
		return
	}
	if err := state.ValidateTenantName(req.Tenant); err != nil {
		h.fail(w, r, badRequest("tenant: %v", err))
		return
	}
	if req.Name = strings.TrimSpace(req.Name); req.Name == "" {
		h.fail(w, r, badRequest("name: say what the key is for, e.g. payroll-nightly-export"))
		return
	}
	now := h.now().UTC()
	if !req.ExpiresAt.IsZero() && !req.ExpiresAt.After(now) {
		h.fail(w, r, badRequest("expiresAt: %s is not in the future", req.ExpiresAt.Format(time.RFC3339)))
		return
	}
	k, err := apikey.New()
	if err != nil {
		h.fail(w, r, err)
		return
	}
	rec := state.APIKey{ID: k.ID, Tenant: req.Tenant, Name: req.Name, Hash: k.Hash,
		Groups: compact(req.Groups), Scopes: compact(req.Scopes), ExpiresAt: req.ExpiresAt.UTC()}
	if _, err := h.apply(r, state.CreateAPIKey{Key: rec, By: by(r), At: now}); err != nil {
		h.fail(w, r, err)
		return
	}
	stored, err := h.cl.FSM.APIKey(k.ID)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.logger.Info("admin created an API key", "id", k.ID, "tenant", req.Tenant, "by", by(r))
	writeJSON(w, http.StatusCreated, APIKeyCreated{Key: publicKey(stored), Secret: k.Secret})
}

func (h *Handler) listAPIKeys(w http.ResponseWriter, r *http.Request) {
	if err := h.consistent(r); err != nil {
		h.fail(w, r, err)
		return
	}
	keys, err := h.cl.FSM.APIKeys()
	if err != nil {
		h.fail(w, r, err)
		return
	}
	tenant := r.URL.Query().Get("tenant")
	out := []state.APIKey{}
	for _, k := range keys {
		if tenant == "" || k.Tenant == tenant {
			out = append(out, publicKey(k))
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"apiKeys": out})
}

func (h *Handler) revokeAPIKey(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !apikey.ValidID(id) {
		h.fail(w, r, badRequest("API key id %q: ids are 12 characters of a-z and 2-7, as `mcpmesh apikey list` shows them", id))
		return
	}
	if _, err := h.apply(r, state.RevokeAPIKey{ID: id, By: by(r), At: h.now().UTC()}); err != nil {
		h.fail(w, r, err)
		return
	}
	k, err := h.cl.FSM.APIKey(id)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.logger.Info("admin revoked an API key", "id", id, "tenant", k.Tenant, "by", by(r))
	writeJSON(w, http.StatusOK, publicKey(k))
}

// compact trims entries, drops empty ones and duplicates, and sorts.
func compact(in []string) []string {
	var out []string
	for _, s := range in {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// CreateAPIKey makes a key for a tenant; the answer holds the key itself,
// which is never shown again.
func (c *Client) CreateAPIKey(ctx context.Context, req APIKeyRequest) (APIKeyCreated, error) {
	var out APIKeyCreated
	err := c.do(ctx, http.MethodPost, "/v1/apikeys", nil, jsonBody(req), "application/json", &out)
	return out, err
}

// APIKeys lists key records (never the keys), of one tenant if tenant is set.
func (c *Client) APIKeys(ctx context.Context, tenant string, consistent bool) ([]state.APIKey, error) {
	var out struct {
		Keys []state.APIKey `json:"apiKeys"`
	}
	q := readQuery(consistent)
	if tenant != "" {
		q.Set("tenant", tenant)
	}
	err := c.do(ctx, http.MethodGet, "/v1/apikeys", q, nil, "", &out)
	return out.Keys, err
}

// RevokeAPIKey revokes a key on every replica.
func (c *Client) RevokeAPIKey(ctx context.Context, id string) (state.APIKey, error) {
	var out state.APIKey
	err := c.do(ctx, http.MethodDelete, "/v1/apikeys/"+url.PathEscape(id), nil, nil, "", &out)
	return out, err
}
