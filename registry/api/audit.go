package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/mcpmesh/mcpmesh/node/audit"
	"github.com/mcpmesh/mcpmesh/registry/card"
	"github.com/mcpmesh/mcpmesh/registry/cluster"
	"github.com/mcpmesh/mcpmesh/registry/state"
)

// Every change made through the admin API (a registry write, a
// membership change, a snapshot restore) gets an audit record on the node
// that took the request, once the change is decided: applied, or refused
// with why. A change whose record cannot be written is answered with 500
// saying so: it was made, but the administrator must know it is not on
// record.

// Auditor records admin changes; node/audit's Log is one.
type Auditor interface {
	// Append returns once rec is durable.
	Append(ctx context.Context, rec audit.Record) (uint64, error)
}

// WithAudit records every admin change in a, as changes of namespace ns,
// and serves a (the log of node, the node's id) under /v1/audit.
func WithAudit(a AuditLog, ns, node string) Option {
	return optionFunc(func(h *Handler) { h.auditor, h.namespace, h.node = a, ns, node })
}

// auditTimeout bounds the wait for an admin change's record.
const auditTimeout = 10 * time.Second

// auditFailedError is an admin change whose record could not be written.
type auditFailedError struct {
	action string
	err    error
}

func (e *auditFailedError) Error() string {
	return fmt.Sprintf("%s was done, but its audit record could not be written (%v); tell the BU's operators", e.action, e.err)
}

func (e *auditFailedError) Unwrap() error { return e.err }

// audit records an admin change (action on target, for reason) and how it
// ended (err nil: applied). It returns err, or the failure to record.
func (h *Handler) audit(r *http.Request, action, target, reason string, start time.Time, err error) error {
	if h.auditor == nil {
		return err
	}
	p, _ := PrincipalFrom(r.Context())
	rec := audit.Record{
		Kind: audit.KindAdmin, Namespace: h.namespace, Principal: p.ID, AuthMethod: p.Method, Remote: r.RemoteAddr,
		Action: action, Target: target, Reason: reason, Outcome: audit.OutcomeOK,
		DurationMs: float64(time.Since(start).Microseconds()) / 1000,
	}
	if p.ID != "" {
		rec.Actors = []string{p.ID}
	}
	if err != nil {
		rec.Outcome = audit.OutcomeError
		rec.ErrorCode, _ = statusOf(err)
		rec.Reason = strings.TrimSpace(reason + "; refused: " + err.Error())
		rec.Reason = strings.TrimPrefix(rec.Reason, "; ")
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), auditTimeout)
	defer cancel()
	if _, aerr := h.auditor.Append(ctx, rec); aerr != nil {
		h.logger.Error("admin API: the audit record of a change could not be written", "action", action, "target", target, "by", p.ID, "applied", err == nil, "error", aerr)
		if err != nil {
			return err
		}
		return &auditFailedError{action: action + " " + target, err: aerr}
	}
	return err
}

// describe names a registry command for the audit: what it does, to what,
// and the reason it gives.
func describe(cmd any) (action, target, reason string) {
	switch c := cmd.(type) {
	case state.SubmitVersion:
		var head struct{ Name, Version string }
		json.Unmarshal(c.Card, &head)
		return "registry.submit", head.Name + "@" + head.Version, ""
	case state.Transition:
		return "registry." + verbOf(c.To), c.Server + "@" + c.Version, c.Reason
	case state.PutTenant:
		return "tenant.put", c.Tenant.Name, ""
	case state.CreateAPIKey:
		return "apikey.create", c.Key.ID, fmt.Sprintf("tenant %s, name %q", c.Key.Tenant, c.Key.Name)
	case state.RevokeAPIKey:
		return "apikey.revoke", c.ID, ""
	case state.PutProfile:
		pins := make([]string, 0, len(c.Pins))
		for s, v := range c.Pins {
			pins = append(pins, s+"@"+v)
		}
		sort.Strings(pins)
		return "profile.set", c.Principal, strings.Join(pins, " ")
	case state.DeleteProfile:
		return "profile.delete", c.Principal, ""
	case state.PutPolicies:
		names := make([]string, 0, len(c.Files))
		for _, f := range c.Files {
			names = append(names, f.Name)
		}
		return "policy.put", "policies", strings.Join(names, " ")
	case state.PutKill:
		return "kill." + string(c.Kind), c.Name, c.Reason
	case state.Revive:
		return "revive." + string(c.Kind), c.Name, ""
	case state.PutLimits:
		return "limits.put", "limits", fmt.Sprintf("%d limits", len(c.Limits))
	case state.PutQuotas:
		names := make([]string, 0, len(c.Quotas))
		for _, q := range c.Quotas {
			names = append(names, q.Tenant)
		}
		return "quota.put", "quotas", strings.Join(names, " ")
	case state.DecideApproval:
		verb := "deny"
		if c.Approve {
			verb = "approve"
		}
		return "approval." + verb, c.ID, c.Reason
	}
	return fmt.Sprintf("registry.%T", cmd), "", ""
}

// verbOf is the API action that moves a version to state s.
func verbOf(s card.State) string {
	for verb, to := range actions {
		if to == s {
			return verb
		}
	}
	return string(s)
}

// statusOf is the HTTP status and error code an error is answered with.
func statusOf(err error) (int, string) {
	var ve *card.ValidationError
	switch {
	case errors.As(err, &ve):
		return http.StatusBadRequest, "invalid"
	case errors.Is(err, state.ErrNotFound):
		return http.StatusNotFound, "not_found"
	case errors.Is(err, state.ErrConflict):
		return http.StatusConflict, "conflict"
	case errors.Is(err, state.ErrInvalid):
		return http.StatusBadRequest, "invalid"
	case errors.Is(err, cluster.ErrNoLeader):
		return http.StatusServiceUnavailable, "no_leader"
	case errors.As(err, new(*badRequestError)):
		return http.StatusBadRequest, "bad_request"
	}
	return http.StatusInternalServerError, "internal"
}
