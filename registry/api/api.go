package api

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/mcpmesh/mcpmesh/node/validate"
	"github.com/mcpmesh/mcpmesh/registry/card"
	"github.com/mcpmesh/mcpmesh/registry/cluster"
	"github.com/mcpmesh/mcpmesh/registry/state"
)

// maxBodyBytes bounds a request body (a server card with many tools fits
// easily); snapshots have their own limit.
const maxBodyBytes = 4 << 20

// maxSnapshotBytes bounds an uploaded snapshot.
const maxSnapshotBytes = 64 << 20

// Principal is an authenticated administrator.
type Principal struct {
	// ID is the administrator's identity: a SPIFFE ID, "oidc:<sub>" (an
	// OIDC access token, node/adminauth), or "token:bootstrap".
	ID string `json:"id"`
	// Method is how it authenticated: "token", "svid" or "oidc".
	Method string `json:"method"`
}

type principalKey struct{}

// WithPrincipal returns a context that carries p; the authenticator calls it.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the principal of a request, if any.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// Handler serves /v1/. It is safe for concurrent use.
type Handler struct {
	cl     *cluster.Cluster
	logger *slog.Logger
	now    func() time.Time
	mux    *http.ServeMux
	// auditor records admin changes (audit.go) and serves the audit log
	// (auditlog.go); nil records nothing.
	auditor   AuditLog
	namespace string
	node      string
	// manifestKey is central security's public key; nil turns the
	// federation manifest routes off (manifest.go).
	manifestKey crypto.PublicKey
	// mesh lists the gossip pool's members; nil turns
	// GET /v1/federation/members off (mesh.go).
	mesh func() MeshResponse
}

// Option configures New.
type Option interface{ apply(*Handler) }

type optionFunc func(*Handler)

func (f optionFunc) apply(h *Handler) { f(h) }

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return optionFunc(func(h *Handler) { h.logger = l }) }

// WithClock sets the clock that stamps commands; the default is time.Now.
func WithClock(now func() time.Time) Option { return optionFunc(func(h *Handler) { h.now = now }) }

// New returns the /v1/ handler over a running cluster replica.
func New(cl *cluster.Cluster, opts ...Option) *Handler {
	h := &Handler{cl: cl, logger: slog.New(slog.DiscardHandler), now: time.Now, mux: http.NewServeMux()}
	for _, o := range opts {
		o.apply(h)
	}
	h.routes()
	return h
}

func (h *Handler) routes() {
	m := h.mux
	m.HandleFunc("GET /v1/registry/servers", h.listServers)
	m.HandleFunc("POST /v1/registry/servers", h.submit)
	m.HandleFunc("GET /v1/registry/servers/{name}", h.showServer)
	m.HandleFunc("GET /v1/registry/servers/{name}/versions/{version}", h.showVersion)
	m.HandleFunc("POST /v1/registry/servers/{name}/versions/{version}/{action}", h.transition)
	m.HandleFunc("GET /v1/tenants", h.listTenants)
	m.HandleFunc("POST /v1/tenants", h.putTenant)
	m.HandleFunc("GET /v1/tenants/{name}", h.showTenant)
	m.HandleFunc("GET /v1/apikeys", h.listAPIKeys)
	m.HandleFunc("POST /v1/apikeys", h.createAPIKey)
	m.HandleFunc("DELETE /v1/apikeys/{id}", h.revokeAPIKey)
	m.HandleFunc("GET /v1/profiles", h.listProfiles)
	m.HandleFunc("GET /v1/profiles/{principal}", h.showProfile)
	m.HandleFunc("PUT /v1/profiles/{principal}", h.putProfile)
	m.HandleFunc("DELETE /v1/profiles/{principal}", h.deleteProfile)
	m.HandleFunc("GET /v1/policies", h.showPolicies)
	m.HandleFunc("PUT /v1/policies", h.putPolicies)
	m.HandleFunc("GET /v1/kills", h.listKills)
	m.HandleFunc("GET /v1/limits", h.showLimits)
	m.HandleFunc("PUT /v1/limits", h.putLimits)
	m.HandleFunc("POST /v1/kills", h.putKill)
	m.HandleFunc("DELETE /v1/kills/{kind}/{name...}", h.revive)
	m.HandleFunc("GET /v1/quotas", h.showQuotas)
	m.HandleFunc("PUT /v1/quotas", h.putQuotas)
	m.HandleFunc("GET /v1/usage", h.usageReport)
	m.HandleFunc("GET /v1/federation/exports", h.showExports)
	m.HandleFunc("PUT /v1/federation/exports", h.putExports)
	m.HandleFunc("GET /v1/federation/peers", h.peers)
	m.HandleFunc("GET /v1/federation/members", h.meshMembers)
	m.HandleFunc("GET /v1/approvals", h.listApprovals)
	m.HandleFunc("POST /v1/approvals/{id}/{action}", h.decideApproval)
	m.HandleFunc("GET /v1/operator/members", h.members)
	m.HandleFunc("POST /v1/operator/members", h.addMember)
	m.HandleFunc("DELETE /v1/operator/members/{id}", h.removeMember)
	m.HandleFunc("GET /v1/operator/snapshot", h.saveSnapshot)
	m.HandleFunc("PUT /v1/operator/snapshot", h.restoreSnapshot)
	m.HandleFunc("GET "+manifestPath, h.showManifest)
	m.HandleFunc("PUT "+manifestPath, h.putManifest)
	h.auditRoutes(m)
	m.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no API route %s %s; see the README for the admin API", r.Method, r.URL.Path), nil)
	})
}

// ServeHTTP refuses requests without a principal, then routes.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, ok := PrincipalFrom(r.Context()); !ok {
		writeError(w, http.StatusUnauthorized, "unauthenticated", "admin API requires authentication: pass -token-file or an admin SVID", nil)
		return
	}
	h.mux.ServeHTTP(w, r)
}

// errorBody is the JSON shape of every error answer.
type errorBody struct {
	Error struct {
		Code     string         `json:"code"`
		Message  string         `json:"message"`
		Problems []card.Problem `json:"problems,omitempty"`
	} `json:"error"`
}

func writeError(w http.ResponseWriter, status int, code, msg string, problems []card.Problem) {
	var b errorBody
	b.Error.Code, b.Error.Message, b.Error.Problems = code, msg, problems
	writeJSON(w, status, b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// fail maps an error to a status at this one boundary (statusOf).
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	status, code := statusOf(err)
	var ve *card.ValidationError
	switch {
	case errors.As(err, &ve):
		writeError(w, status, code, ve.Error(), ve.Problems)
	case status == http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", "1")
		writeError(w, status, code, err.Error()+"; the write was not applied, retry shortly", nil)
	case status == http.StatusInternalServerError:
		h.logger.Error("admin API request failed", "method", r.Method, "path", r.URL.Path, "error", err)
		writeError(w, status, code, "internal error: "+err.Error(), nil)
	default:
		writeError(w, status, code, err.Error(), nil)
	}
}

// badRequestError is a request the API refuses before it reaches Raft.
type badRequestError struct{ msg string }

func (e *badRequestError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &badRequestError{fmt.Sprintf(format, args...)}
}

func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("request body: %v", err)
	}
	if dec.More() {
		return badRequest("request body: trailing data after the JSON object")
	}
	return nil
}

// apply encodes a state command of request r, commits it through the
// leader, and records the change and its outcome in the audit log.
func (h *Handler) apply(r *http.Request, cmd any) (state.ApplyResult, error) {
	start := time.Now()
	enc, err := state.Encode(cmd)
	if err != nil {
		return state.ApplyResult{}, err
	}
	action, target, reason := describe(cmd)
	change, err := h.intend(r, action, target, reason)
	if err != nil {
		return state.ApplyResult{}, err
	}
	res, err := h.cl.Apply(r.Context(), enc)
	reason, recErr := recordOf(reason, res, err)
	if aerr := h.audit(r, change, action, target, reason, start, recErr); aerr != nil && aerr != recErr {
		return res, aerr
	}
	return res, err
}

// recordOf gives what the audit record of an applied command says: its
// reason and the error it records. A command committed in Raft but not
// yet applied on this node when the wait ended is a change made (the
// caller still gets the error, as its read-your-writes did not hold).
func recordOf(reason string, res state.ApplyResult, err error) (string, error) {
	switch {
	case err == nil && res.Unchanged:
		return strings.TrimPrefix(reason+"; unchanged (already so)", "; "), nil
	case err != nil && res.Index > 0:
		return strings.TrimPrefix(fmt.Sprintf("%s; committed at index %d, not yet applied on this node when it answered: %v", reason, res.Index, err), "; "), nil
	}
	return reason, err
}

// consistent runs a barrier when the request asks for ?consistent=true.
func (h *Handler) consistent(r *http.Request) error {
	switch r.URL.Query().Get("consistent") {
	case "", "false", "0":
		return nil
	}
	return h.cl.Barrier(r.Context())
}

func by(r *http.Request) string {
	p, _ := PrincipalFrom(r.Context())
	return p.ID
}

// ServerSummary is one row of the server list.
type ServerSummary struct {
	Server      string     `json:"server"`
	Version     string     `json:"version"`
	State       card.State `json:"state"`
	Description string     `json:"description"`
	RiskTier    string     `json:"riskTier"`
	Tools       int        `json:"tools"`
	UpdatedAt   time.Time  `json:"updatedAt"`
}

func (h *Handler) listServers(w http.ResponseWriter, r *http.Request) {
	if err := h.consistent(r); err != nil {
		h.fail(w, r, err)
		return
	}
	all, err := h.cl.FSM.AllVersions()
	if err != nil {
		h.fail(w, r, err)
		return
	}
	stateFilter := card.State(r.URL.Query().Get("state"))
	out := []ServerSummary{}
	for _, v := range all {
		if stateFilter != "" && v.State != stateFilter {
			continue
		}
		out = append(out, ServerSummary{v.Server, v.Version, v.State, v.Description, v.Governance.RiskTier, len(v.Tools), v.UpdatedAt})
	}
	writeJSON(w, http.StatusOK, map[string]any{"servers": out})
}

// SubmitResponse answers a submission.
type SubmitResponse struct {
	Server    string          `json:"server"`
	Version   string          `json:"version"`
	State     card.State      `json:"state"`
	Unchanged bool            `json:"unchanged"`
	Tools     []state.ToolRef `json:"tools"`
	Index     uint64          `json:"index"`
}

func (h *Handler) submit(w http.ResponseWriter, r *http.Request) {
	raw, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
	if err != nil {
		h.fail(w, r, badRequest("read body: %v", err))
		return
	}
	if len(raw) > maxBodyBytes {
		h.fail(w, r, badRequest("server card exceeds %d bytes", maxBodyBytes))
		return
	}
	c, err := card.Parse(raw)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if err := validate.CheckCard(c); err != nil {
		h.fail(w, r, err)
		return
	}
	res, err := h.apply(r, state.SubmitVersion{Card: json.RawMessage(raw), By: by(r), At: h.now().UTC()})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	sv, err := h.cl.FSM.ServerVersion(c.Name, c.Version)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	status := http.StatusCreated
	if res.Unchanged {
		status = http.StatusOK
	}
	writeJSON(w, status, SubmitResponse{sv.Server, sv.Version, sv.State, res.Unchanged, sv.Tools, res.Index})
}

func (h *Handler) showServer(w http.ResponseWriter, r *http.Request) {
	if err := h.consistent(r); err != nil {
		h.fail(w, r, err)
		return
	}
	vs, err := h.cl.FSM.ServerVersions(r.PathValue("name"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"server": r.PathValue("name"), "versions": vs})
}

// VersionDetail is one server version with its tool definitions.
type VersionDetail struct {
	state.ServerVersion
	ToolVersions []card.ToolVersion `json:"toolVersions"`
}

func (h *Handler) showVersion(w http.ResponseWriter, r *http.Request) {
	if err := h.consistent(r); err != nil {
		h.fail(w, r, err)
		return
	}
	name, version := r.PathValue("name"), r.PathValue("version")
	if err := card.ValidateVersion(version); err != nil {
		h.fail(w, r, badRequest("version %q: %v", version, err))
		return
	}
	sv, err := h.cl.FSM.ServerVersion(name, version)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	tvs, err := h.cl.FSM.ToolVersions(name, version)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, VersionDetail{sv, tvs})
}

// TransitionRequest is the body of a lifecycle action.
type TransitionRequest struct {
	Reason string `json:"reason,omitempty"`
	// Sunset, Replacement and Note are for deprecate. Sunset is RFC 3339 or
	// a date (YYYY-MM-DD, midnight UTC).
	Sunset      string `json:"sunset,omitempty"`
	Replacement string `json:"replacement,omitempty"`
	Note        string `json:"note,omitempty"`
}

var actions = map[string]card.State{
	"approve":    card.StateApproved,
	"reject":     card.StateRejected,
	"deprecate":  card.StateDeprecated,
	"retire":     card.StateRetired,
	"quarantine": card.StateQuarantined,
}

func (h *Handler) transition(w http.ResponseWriter, r *http.Request) {
	name, version, action := r.PathValue("name"), r.PathValue("version"), r.PathValue("action")
	to, ok := actions[action]
	if !ok {
		h.fail(w, r, badRequest("unknown action %q; use approve, reject, deprecate, retire or quarantine", action))
		return
	}
	if err := card.ValidateVersion(version); err != nil {
		h.fail(w, r, badRequest("version %q: %v", version, err))
		return
	}
	var req TransitionRequest
	if r.ContentLength != 0 {
		if err := decodeBody(r, &req); err != nil {
			h.fail(w, r, err)
			return
		}
	}
	now := h.now().UTC()
	cmd := state.Transition{Server: name, Version: version, To: to, By: by(r), At: now, Reason: req.Reason}
	if to == card.StateDeprecated {
		if req.Sunset == "" || req.Replacement == "" {
			h.fail(w, r, badRequest("deprecate needs sunset (a date such as 2027-03-31) and replacement (a version such as 2.0.0)"))
			return
		}
		sunset, err := ParseDate(req.Sunset)
		if err != nil {
			h.fail(w, r, badRequest("sunset: %v", err))
			return
		}
		cmd.Deprecation = &card.Deprecation{DeprecatedAt: now, Sunset: sunset, Replacement: req.Replacement, Note: req.Note}
		if cmd.Reason == "" {
			cmd.Reason = fmt.Sprintf("replaced by %s, sunset %s", req.Replacement, sunset.Format(time.DateOnly))
		}
	}
	if _, err := h.apply(r, cmd); err != nil {
		h.fail(w, r, err)
		return
	}
	sv, err := h.cl.FSM.ServerVersion(name, version)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, sv)
}

// ParseDate accepts RFC 3339 or YYYY-MM-DD (midnight UTC).
func ParseDate(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q is not a date; use YYYY-MM-DD or RFC 3339", s)
}

// TenantRequest is the body of POST /v1/tenants.
type TenantRequest struct {
	Name        string   `json:"name"`
	DisplayName string   `json:"displayName,omitempty"`
	Owners      []string `json:"owners"`
}

func (h *Handler) putTenant(w http.ResponseWriter, r *http.Request) {
	var req TenantRequest
	if err := decodeBody(r, &req); err != nil {
		h.fail(w, r, err)
		return
	}
	if err := state.ValidateTenantName(req.Name); err != nil {
		h.fail(w, r, err)
		return
	}
	var owners []string
	for _, o := range req.Owners {
		if o = strings.TrimSpace(o); o != "" {
			owners = append(owners, o)
		}
	}
	if len(owners) == 0 {
		h.fail(w, r, badRequest("owners: at least one owner is required (a person or group accountable for the tenant)"))
		return
	}
	res, err := h.apply(r, state.PutTenant{Tenant: state.Tenant{Name: req.Name, DisplayName: req.DisplayName, Owners: owners}, By: by(r), At: h.now().UTC()})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	t, err := h.cl.FSM.Tenant(req.Name)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	status := http.StatusOK
	if t.CreateIndex == res.Index && !res.Unchanged {
		status = http.StatusCreated
	}
	writeJSON(w, status, t)
}

func (h *Handler) listTenants(w http.ResponseWriter, r *http.Request) {
	if err := h.consistent(r); err != nil {
		h.fail(w, r, err)
		return
	}
	ts, err := h.cl.FSM.Tenants()
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"tenants": ts})
}

func (h *Handler) showTenant(w http.ResponseWriter, r *http.Request) {
	if err := h.consistent(r); err != nil {
		h.fail(w, r, err)
		return
	}
	t, err := h.cl.FSM.Tenant(r.PathValue("name"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, t)
}

func (h *Handler) members(w http.ResponseWriter, r *http.Request) {
	ms, err := h.cl.Members(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	leader, _ := h.cl.Leader()
	writeJSON(w, http.StatusOK, map[string]any{"leader": leader, "members": ms})
}

// MemberRequest is the body of POST /v1/operator/members.
type MemberRequest struct {
	ID      string `json:"id"`
	Address string `json:"address"`
}

func (h *Handler) addMember(w http.ResponseWriter, r *http.Request) {
	var req MemberRequest
	if err := decodeBody(r, &req); err != nil {
		h.fail(w, r, err)
		return
	}
	if req.ID == "" || req.Address == "" {
		h.fail(w, r, badRequest("id and address (the node's Raft address) are required"))
		return
	}
	start := time.Now()
	change, err := h.intend(r, "operator.add-member", req.ID, req.Address)
	if err == nil {
		err = h.audit(r, change, "operator.add-member", req.ID, req.Address, start, h.cl.AddVoter(r.Context(), req.ID, req.Address))
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.logger.Info("admin added cluster member", "id", req.ID, "address", req.Address, "by", by(r))
	h.members(w, r)
}

func (h *Handler) removeMember(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	start := time.Now()
	change, err := h.intend(r, "operator.remove-member", id, "")
	if err == nil {
		err = h.audit(r, change, "operator.remove-member", id, "", start, h.cl.RemoveServer(r.Context(), id))
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.logger.Info("admin removed cluster member", "id", id, "by", by(r))
	h.members(w, r)
}

func (h *Handler) saveSnapshot(w http.ResponseWriter, r *http.Request) {
	if err := h.cl.Barrier(r.Context()); err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("X-Mcpmesh-Index", fmt.Sprint(h.cl.FSM.AppliedIndex()))
	if err := h.cl.SaveSnapshot(w); err != nil {
		// Headers are gone; a truncated body fails the checksum on restore.
		h.logger.Error("snapshot save failed mid-stream", "error", err)
	}
}

func (h *Handler) restoreSnapshot(w http.ResponseWriter, r *http.Request) {
	body := http.MaxBytesReader(w, r.Body, maxSnapshotBytes)
	start := time.Now()
	change, err := h.intend(r, "operator.restore-snapshot", "namespace", "")
	if err != nil {
		h.fail(w, r, err)
		return
	}
	err = h.cl.RestoreSnapshot(r.Context(), body)
	if errors.Is(err, state.ErrCorruptSnapshot) {
		err = badRequest("%v", err)
	}
	if err := h.audit(r, change, "operator.restore-snapshot", "namespace", "", start, err); err != nil {
		h.fail(w, r, err)
		return
	}
	h.logger.Warn("admin restored the registry from a snapshot", "by", by(r))
	writeJSON(w, http.StatusOK, map[string]any{"restored": true, "index": h.cl.FSM.AppliedIndex()})
}
