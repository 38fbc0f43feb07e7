package api

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/mcpmesh/mcpmesh/registry/state"
	"github.com/mcpmesh/mcpmesh/trust/manifest"
)

// WithManifestKey turns on the federation manifest routes, checking every
// pushed manifest against central security's public key pub (ECDSA P-256
// or Ed25519; manifest.LoadPublicKeyFile reads
// federation.manifest_key_file). Without it, PUT and GET
// /v1/federation/manifest answer 501: federation is off.
func WithManifestKey(pub crypto.PublicKey) Option {
	return optionFunc(func(h *Handler) { h.manifestKey = pub })
}

// ManifestResponse answers PUT and GET /v1/federation/manifest: the
// namespace's federation manifest as stored, and its signed form.
type ManifestResponse struct {
	Version uint64    `json:"version"`
	Expires time.Time `json:"expires"`
	// Expired is true once Expires has passed (by the node's clock): the
	// manifest is still stored and shown, but authorizes nothing.
	Expired       bool                    `json:"expired"`
	TrustDomains  []manifest.Domain       `json:"trustDomains"`
	Relationships []manifest.Relationship `json:"relationships"`
	// KeyID is the kid of central security's key that verified it.
	KeyID string `json:"keyId"`
	// By and At say who pushed the stored version, and when; Index is the
	// Raft index that stored it.
	By    string    `json:"by"`
	At    time.Time `json:"at"`
	Index uint64    `json:"index"`
	// Unchanged is true when a push named the manifest already stored.
	Unchanged bool `json:"unchanged,omitempty"`
	// Signed is the signed form (a compact JWS), as central security
	// signed it.
	Signed string `json:"signed"`
}

const manifestPath = "/v1/federation/manifest"

// federationOff answers a manifest route on a node without central
// security's key.
func federationOff(w http.ResponseWriter) {
	writeError(w, http.StatusNotImplemented, "federation_off",
		"federation is off on this node: it has no central-security key; set federation.manifest_key_file (and federation.peer.listen) in the node's config and restart it", nil)
}

func (h *Handler) putManifest(w http.ResponseWriter, r *http.Request) {
	if h.manifestKey == nil {
		federationOff(w)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, manifest.MaxSize+1))
	if err != nil {
		h.fail(w, r, badRequest("read body: %v", err))
		return
	}
	if len(body) > manifest.MaxSize {
		h.fail(w, r, badRequest("federation manifest exceeds %d bytes", manifest.MaxSize))
		return
	}
	m, err := manifest.Verify(bytes.TrimSpace(body), h.manifestKey, h.now())
	switch {
	case errors.Is(err, manifest.ErrSignature):
		writeError(w, http.StatusForbidden, "bad_signature", err.Error(), nil)
		return
	case errors.Is(err, manifest.ErrExpired):
		writeError(w, http.StatusBadRequest, "expired", err.Error(), nil)
		return
	case err != nil:
		writeError(w, http.StatusBadRequest, "invalid", err.Error(), nil)
		return
	}
	res, err := h.apply(r, state.PutManifest{Signed: m.Signed(), Version: m.Version, By: by(r), At: h.now().UTC()})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	stored, err := h.cl.FSM.StoredManifest()
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out, err := h.manifestResponse(stored)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out.Unchanged = res.Unchanged
	status := http.StatusOK
	if !res.Unchanged {
		h.logger.Info("admin pushed a federation manifest", "version", m.Version, "expires", m.Expires.UTC().Format(time.RFC3339),
			"trust_domains", len(m.TrustDomains), "relationships", len(m.Relationships), "by", by(r), "index", res.Index)
		status = http.StatusCreated
	}
	writeJSON(w, status, out)
}

func (h *Handler) showManifest(w http.ResponseWriter, r *http.Request) {
	if h.manifestKey == nil {
		federationOff(w)
		return
	}
	if err := h.consistent(r); err != nil {
		h.fail(w, r, err)
		return
	}
	stored, err := h.cl.FSM.StoredManifest()
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out, err := h.manifestResponse(stored)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// manifestResponse opens a stored manifest with the node's key; one that
// expired since it was applied still opens, and is marked expired.
func (h *Handler) manifestResponse(s state.StoredManifest) (ManifestResponse, error) {
	m, err := manifest.Open(s.Signed, h.manifestKey)
	if err != nil {
		return ManifestResponse{}, fmt.Errorf("the stored federation manifest (version %d) does not verify with this node's central-security key (%w); check federation.manifest_key_file against central security's central.pub", s.Version, err)
	}
	kid, _ := manifest.KeyID(h.manifestKey)
	return ManifestResponse{
		Version: m.Version, Expires: m.Expires.UTC(), Expired: m.Expired(h.now()),
		TrustDomains: m.TrustDomains, Relationships: m.Relationships, KeyID: kid,
		By: s.By, At: s.At, Index: s.Index, Signed: string(s.Signed),
	}, nil
}

// PushManifest sends a signed federation manifest to the node, which
// verifies it with central security's key and commits it to the
// namespace's registry. A bad signature is a 403 *Error, an expired or
// invalid manifest a 400, a version lower than the one in force (or the
// same version with other content) a 409, a node without federation 501.
func (c *Client) PushManifest(ctx context.Context, signed []byte) (ManifestResponse, error) {
	var out ManifestResponse
	err := c.do(ctx, http.MethodPut, manifestPath, nil, bytes.NewReader(signed), "application/jose", &out)
	return out, err
}

// Manifest returns the namespace's federation manifest; none stored is a
// 404 *Error.
func (c *Client) Manifest(ctx context.Context, consistent bool) (ManifestResponse, error) {
	var out ManifestResponse
	err := c.do(ctx, http.MethodGet, manifestPath, readQuery(consistent), nil, "", &out)
	return out, err
}
