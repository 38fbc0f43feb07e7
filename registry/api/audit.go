package api

import (
	"context"
	"crypto/rand"
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

// auditFailedError is an admin change whose record could not be written:
// the record that it was about to be made (done false: it was not made),
// or the record of its outcome (done true: it was made).
type auditFailedError struct {
	action string
	done   bool
	err    error
}

func (e *auditFailedError) Error() string {
	if !e.done {
		return fmt.Sprintf("%s was not done: the audit log cannot take its record (%v); retry when it can, or tell the BU's operators", e.action, e.err)
	}
	return fmt.Sprintf("%s was done, but its audit record could not be written (%v); tell the BU's operators", e.action, e.err)
}

func (e *auditFailedError) Unwrap() error { return e.err }

// intend durably records that an admin change (action on target, for
// reason) is about to be proposed, before it is: a node that crashes
// between the commit and the outcome's record still leaves the change on
// record, as requested, under the change id that the outcome's record
// (audit) repeats as its request id. A change whose intent cannot be
// recorded is not made.
func (h *Handler) intend(r *http.Request, action, target, reason string) (change string, err error) {
	if h.auditor == nil {
		return "", nil
	}
	change = rand.Text()
	rec := h.adminRecord(r, action, target, reason, change)
	rec.Outcome = audit.OutcomeRequested
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), auditTimeout)
	defer cancel()
	if _, err := h.auditor.Append(ctx, rec); err != nil {
		h.logger.Error("admin API: a change was refused, its audit record could not be written", "action", action, "target", target, "by", rec.Principal, "error", err)
		return "", &auditFailedError{action: action + " " + target, err: err}
	}
	return change, nil
}

// adminRecord is the record of an admin change by r's principal.
func (h *Handler) adminRecord(r *http.Request, action, target, reason, change string) audit.Record {
	p, _ := PrincipalFrom(r.Context())
	rec := audit.Record{
		Kind: audit.KindAdmin, Namespace: h.namespace, Principal: p.ID, AuthMethod: p.Method, Remote: r.RemoteAddr,
		Action: action, Target: target, Reason: reason, RequestID: change,
	}
	if p.ID != "" {
		rec.Actors = []string{p.ID}
	}
	return rec
}

// audit records an admin change (action on target, for reason, under the
// change id intend gave) and how it ended (err nil: applied). It returns
// err, or the failure to record.
func (h *Handler) audit(r *http.Request, change, action, target, reason string, start time.Time, err error) error {
	if h.auditor == nil {
		return err
	}
	rec := h.adminRecord(r, action, target, reason, change)
	rec.Outcome = audit.OutcomeOK
	rec.DurationMs = float64(time.Since(start).Microseconds()) / 1000
	if err != nil {
		rec.Outcome = audit.OutcomeError
		rec.ErrorCode, _ = statusOf(err)
		rec.Reason = strings.TrimSpace(reason + "; refused: " + err.Error())
		rec.Reason = strings.TrimPrefix(rec.Reason, "; ")
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), auditTimeout)
	defer cancel()
	if _, aerr := h.auditor.Append(ctx, rec); aerr != nil {
		h.logger.Error("admin API: the audit record of a change could not be written", "action", action, "target", target, "by", rec.Principal, "applied", err == nil, "error", aerr)
		if err != nil {
			return err
		}
		return &auditFailedError{action: action + " " + target, done: true, err: aerr}
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
	case state.PutExports:
		servers := make([]string, 0, len(c.Exports))
		for _, e := range c.Exports {
			servers = append(servers, e.Server)
		}
		return "exports.put", "exports", strings.Join(servers, " ")
	case state.DecideApproval:
		verb := "deny"
		if c.Approve {
			verb = "approve"
		}
		return "approval." + verb, c.ID, c.Reason
	case state.PutManifest:
		return "federation.manifest.put", fmt.Sprintf("v%d", c.Version), ""
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
	var af *auditFailedError
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
	case errors.As(err, &af) && !af.done:
		return http.StatusServiceUnavailable, "audit_unavailable"
	}
	return http.StatusInternalServerError, "internal"
}
