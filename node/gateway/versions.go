package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpmesh/mcpmesh/node/audit"
	"github.com/mcpmesh/mcpmesh/node/policy"
	"github.com/mcpmesh/mcpmesh/node/upstream"
	"github.com/mcpmesh/mcpmesh/node/validate"
	"github.com/mcpmesh/mcpmesh/registry/card"
	"github.com/mcpmesh/mcpmesh/trust/agentauth"
)

// Keys of mcpmesh's _meta entries on calls and results.
const (
	// MetaVersion pins a call to an exact server version (request _meta),
	// and says which version answered (result _meta).
	MetaVersion = "io.mcpmesh/version"
	// MetaDeprecation carries the deprecation warning on a result.
	MetaDeprecation = "io.mcpmesh/deprecation"
	// MetaPinnedBy says on a result who chose its version: "call" (the
	// agent's _meta pin) or "profile" (its version profile). Absent when
	// the newest live version answered.
	MetaPinnedBy = "io.mcpmesh/pinnedBy"
)

// codeVersionSunset is the JSON-RPC error for a call to a version past its
// sunset date (implementation-defined range; go-sdk reserves -32003 to
// -32005 for local conditions).
const codeVersionSunset = -32010

// handler serves calls of one exposed tool: it picks the version (the pin
// in _meta, else the caller's version profile, else the newest live one),
// calls that version's upstream and says in the result which version
// answered, with a warning when that version is deprecated. Every call is
// audited, and answered only once its record is durable (audit.go).
func (g *Gateway) handler(ep *endpoint, r *route, exposed string) mcp.ToolHandler {
	return func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		p, _ := principalOf(ctx, req)
		c := callInfo{exposed: exposed, start: time.Now(), caller: p.ID}
		if err := g.auditReady(); err != nil {
			g.metrics.observe(g.cfg.Namespace, exposed, "audit_failed", time.Since(c.start))
			return nil, err
		}
		rec := g.callRecord(ctx, req, p, exposed)
		// The upstream request carries the call's trace context (and a
		// forwarded one the assertion the pool mints for it).
		if tp, ts := traceOf(ctx, req); tp != "" {
			ctx = upstream.ContextWithTrace(ctx, tp, ts)
		}
		res, err := g.serveCall(ctx, ep, r, req, p, c, rec)
		out, err := g.audited(ctx, rec, c.start, res, err)
		res, _ = out.(*mcp.CallToolResult)
		return res, err
	}
}

// serveCall picks the version, asks the policy and calls; rec learns what
// happened.
func (g *Gateway) serveCall(ctx context.Context, ep *endpoint, r *route, req *mcp.CallToolRequest, p agentauth.Principal, c callInfo, rec *audit.Record) (*mcp.CallToolResult, error) {
	// A kill switch refuses before anything else is looked at: the tool
	// and server are the route's at every version.
	if err := g.refuseKilled(p, r.server, r.tool, "tools/call "+c.exposed); err != nil {
		rec.Outcome = audit.OutcomeKilled
		g.metrics.observe(g.cfg.Namespace, c.exposed, "killed", time.Since(c.start))
		return nil, err
	}
	if x := r.newest.exportKill; x != nil {
		return nil, g.refuseExportKilled(x, c, rec) // the origin's switch
	}
	version, state, err := versionOfCall(req.Params)
	var e *entry
	if err == nil {
		e, c.pinnedBy, err = g.pickVersion(r, version, c.caller)
	}
	if err != nil {
		rec.Outcome = audit.OutcomeRefused
		g.metrics.observe(g.cfg.Namespace, c.exposed, "refused", time.Since(c.start))
		return nil, err
	}
	g.answeredBy(rec, e, req.Params.Arguments)
	if err := g.checkExport(p, e, c, rec); err != nil {
		return nil, err
	}
	pr := callRequest(p, e)
	pr.Arguments = req.Params.Arguments
	d := g.decide(pr)
	decided(rec, d)
	if !d.Allowed {
		rec.Outcome = audit.OutcomeDenied
		g.metrics.observe(g.cfg.Namespace, c.exposed, "denied", time.Since(c.start))
		return nil, g.denied(pr, fmt.Sprintf("tools/call %s (%s@%s)", c.exposed, e.server, e.version), d)
	}
	if err := g.rateLimit(req, p, e, c, rec); err != nil {
		return nil, err
	}
	c.upstreamState = state
	c.decision, c.tenant = d, p.Tenant
	return g.call(ctx, ep, req, e, c, rec)
}

// callInfo is what the gateway knows of one tools/call besides its request.
type callInfo struct {
	exposed string // the tool's name on the endpoint
	caller  string // the principal's id
	// pinnedBy says who chose the version: "call" (_meta or a retry's
	// requestState), "profile", or "" for the newest live version.
	pinnedBy string
	// upstreamState is the upstream's own requestState of a multi
	// round-trip retry.
	upstreamState string
	start         time.Time
	// decision is the policy's; tenant is the caller's (approvals.go).
	decision policy.Decision
	tenant   string
	// confirmed is the digest of the call the user confirmed (confirm.go).
	confirmed string
}

// call serves one tools/call by version e of its tool.
func (g *Gateway) call(ctx context.Context, ep *endpoint, req *mcp.CallToolRequest, e *entry, c callInfo, rec *audit.Record) (*mcp.CallToolResult, error) {
	exposed, start := c.exposed, c.start
	// Arguments are checked against the answering version's schema
	// before the upstream sees them.
	if err := e.input.Validate(req.Params.Arguments); err != nil {
		rec.Outcome = audit.OutcomeInvalidArguments
		g.metrics.observe(g.cfg.Namespace, exposed, "invalid_arguments", time.Since(start))
		return nil, invalidArguments(e, err)
	}
	// The tenant's monthly quota and budget, before the upstream sees it.
	quota, err := g.checkQuota(rec.Tenant, e)
	if err != nil {
		rec.Outcome = audit.OutcomeOverQuota
		g.metrics.observe(g.cfg.Namespace, exposed, "over_quota", time.Since(start))
		return nil, err
	}
	// Held for approval last: an approved call must be one the budget allows.
	if res, err := g.approve(ctx, req, e, &c, rec); res != nil || err != nil {
		return res, err
	}
	res, err := g.callUpstream(ctx, ep, e, req, c.upstreamState)
	outcome := "ok"
	rec.Outcome = audit.OutcomeOK
	switch {
	case err != nil:
		outcome, rec.Outcome = "error", audit.OutcomeUpstreamError
	case res.IsError:
		outcome, rec.Outcome = "tool_error", audit.OutcomeToolError
	case res.InputRequests != nil:
		outcome, rec.Outcome = "input_required", audit.OutcomeInputRequired
		res.RequestState = wrappedState{Version: e.version, State: res.RequestState, Confirmed: c.confirmed}.wrap()
	}
	if err == nil {
		charged(rec, e)
	}
	g.metrics.observe(g.cfg.Namespace, exposed, outcome, time.Since(start))
	if err != nil {
		return nil, g.upstreamError(e, requestIDOf(ctx), len(viaOf(ctx)) > 0, err)
	}
	meta := maps.Clone(res.Meta)
	if meta == nil {
		meta = mcp.Meta{}
	}
	meta[MetaVersion] = e.version
	if id := requestIDOf(ctx); id != "" {
		meta[MetaRequestID] = id
	}
	if c.pinnedBy != "" {
		meta[MetaPinnedBy] = c.pinnedBy
	}
	g.budgetWarning(quota, e, res, meta)
	if d := e.deprecation; d != nil {
		warning := deprecationWarning(e)
		meta[MetaDeprecation] = map[string]any{
			"version": e.version, "sunset": d.Sunset.UTC().Format(time.RFC3339),
			"replacement": d.Replacement, "note": d.Note, "message": warning,
		}
		g.metrics.deprecated(g.cfg.Namespace, exposed, e.version, c.caller)
		// Best effort: a client that does not listen for log messages
		// still gets the warning in the result.
		if req.Session != nil {
			req.Session.Log(ctx, &mcp.LoggingMessageParams{Level: "warning", Logger: "mcpmesh", Data: warning})
		}
	}
	res.Meta = meta
	return res, nil
}

func pinOf(m mcp.Meta) string {
	v, _ := m[MetaVersion].(string)
	return v
}

func deprecationWarning(e *entry) string {
	d := e.deprecation
	msg := fmt.Sprintf("%s@%s is deprecated and stops answering after %s; move to %s", e.server, e.version, d.Sunset.UTC().Format(time.DateOnly), d.Replacement)
	if d.Note != "" {
		msg += ": " + d.Note
	}
	return msg
}

// pickVersion picks the version a call of principal goes to: pin (from
// the call), else the principal's version profile, else the newest live
// version. pinnedBy is "call", "profile" or "".
func (g *Gateway) pickVersion(r *route, pin, principal string) (e *entry, pinnedBy string, err error) {
	pinnedBy = "call"
	if pin == "" {
		if pin = g.profilePin(principal, r.server); pin == "" {
			return r.newest, "", nil
		}
		pinnedBy = "profile"
	}
	e, err = g.resolve(r, pin)
	if je, ok := err.(*jsonrpc.Error); ok && pinnedBy == "profile" {
		err = &jsonrpc.Error{Code: je.Code, Message: fmt.Sprintf("%s (the version profile of %s pins it; change it with `mcpmesh profile set`, or pin a version in _meta[%q])", je.Message, principal, MetaVersion)}
	}
	return e, pinnedBy, err
}

// profilePin is the version principal's profile pins for server, or "".
func (g *Gateway) profilePin(principal, server string) string {
	if principal == "" {
		return ""
	}
	profiles := g.profiles.Load()
	if profiles == nil {
		return ""
	}
	return (*profiles)[principal][server]
}

// resolve finds the live version pin of r's tool, or says why it cannot answer.
func (g *Gateway) resolve(r *route, pin string) (*entry, error) {
	if err := card.ValidateVersion(pin); err != nil {
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: fmt.Sprintf("_meta[%q]: %v", MetaVersion, err)}
	}
	if e, ok := r.versions[pin]; ok {
		return e, nil
	}
	live := slices.Sorted(maps.Keys(r.versions))
	sv, err := g.fsm.ServerVersion(r.server, pin)
	if err != nil {
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: fmt.Sprintf("%s@%s is not registered; live versions: %s", r.server, pin, strings.Join(live, ", "))}
	}
	switch {
	case sv.State == card.StateDeprecated && sv.Deprecation != nil:
		d := sv.Deprecation
		msg := fmt.Sprintf("%s@%s was sunset on %s; use %s", r.server, pin, d.Sunset.UTC().Format(time.DateOnly), d.Replacement)
		if d.Note != "" {
			msg += ": " + d.Note
		}
		return nil, &jsonrpc.Error{Code: codeVersionSunset, Message: msg}
	case sv.State == card.StateApproved || sv.State == card.StateDeprecated:
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: fmt.Sprintf("%s@%s has no tool %q; versions that have it: %s", r.server, pin, r.tool, strings.Join(live, ", "))}
	}
	return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: fmt.Sprintf("%s@%s is %s, not live; live versions: %s", r.server, pin, sv.State, strings.Join(live, ", "))}
}

// deprecationHeaders sets X-MCP-Deprecated and Sunset (RFC 8594) on the
// HTTP answer to a tools/call that a deprecated version will serve. The
// call is only inspected when its tool has a deprecated version at all.
func (g *Gateway) deprecationHeaders(w http.ResponseWriter, ep *endpoint, call *rpcCall, principal string) {
	if call == nil || call.Method != "tools/call" {
		return
	}
	r := ep.route(call.Params.Name)
	if r == nil || !r.deprecated() {
		return
	}
	e, _, err := g.pickVersion(r, pinOf(call.Params.Meta), principal)
	if err != nil || e.deprecation == nil {
		return
	}
	w.Header().Set("X-MCP-Deprecated", deprecationWarning(e))
	w.Header().Set("Sunset", e.deprecation.Sunset.UTC().Format(http.TimeFormat))
}

// callUpstream calls e's upstream for req. When the agent asked for
// progress, the upstream's progress is relayed under the agent's own token,
// from the handler's goroutine and in order, all of it before the result:
// go-sdk delivers server notifications of a stateless (2026-07-28) request
// only while its handler runs, and only from its request context.
func (g *Gateway) callUpstream(ctx context.Context, ep *endpoint, e *entry, req *mcp.CallToolRequest, upstreamState string) (*mcp.CallToolResult, error) {
	via, leave := g.callerFor(ctx, ep, req.Session)
	defer leave()
	params := &mcp.CallToolParams{Name: e.tool, Arguments: req.Params.Arguments, Meta: forwardMeta(req.Params.Meta, req.Session),
		InputResponses: req.Params.InputResponses, RequestState: upstreamState}
	token := req.Params.GetProgressToken()
	level := agentLogLevel(req)
	if (token == nil && level == "") || req.Session == nil {
		return via.CallTool(ctx, e.target, params, nil)
	}
	// Progress and log messages (logs.go) come back through one bounded
	// queue, relayed from here.
	events := make(chan mcp.Params, 256)
	send := func(kind string, p mcp.Params) {
		select {
		case events <- p:
		default: // the agent is not keeping up: drop an update, never block the upstream
			g.metrics.relayDropped.WithLabelValues(g.cfg.Namespace, kind).Inc()
		}
	}
	var onProgress func(*mcp.ProgressNotificationParams)
	if token != nil {
		onProgress = func(p *mcp.ProgressNotificationParams) { send("progress", p) }
	}
	type outcome struct {
		res *mcp.CallToolResult
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		var o outcome
		if level != "" {
			o.res, o.err = g.pool.CallToolLogged(ctx, e.target, params, level, func(p *mcp.LoggingMessageParams) { send("log", p) }, onProgress)
		} else {
			o.res, o.err = via.CallTool(ctx, e.target, params, onProgress)
		}
		done <- o
	}()
	relay := func(ev mcp.Params) {
		switch p := ev.(type) {
		case *mcp.ProgressNotificationParams:
			req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: token, Progress: p.Progress, Total: p.Total, Message: p.Message})
		case *mcp.LoggingMessageParams:
			// go-sdk filters by the level of the agent's request.
			req.Session.Log(ctx, p)
		}
	}
	for {
		select {
		case ev := <-events:
			relay(ev)
		case o := <-done:
			// The pool settles the call's progress and logs before
			// returning; what is buffered now is all there is.
			for {
				select {
				case ev := <-events:
					relay(ev)
				default:
					return o.res, o.err
				}
			}
		}
	}
}

// invalidArguments is the -32602 answer to arguments that do not match the
// tool's input schema: the message names each JSON path and rule, and the
// data carries them structured.
func invalidArguments(e *entry, err error) error {
	var verr *validate.Error
	if errors.As(err, &verr) {
		return &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams,
			Message: fmt.Sprintf("arguments of %s do not match its input schema (%s@%s): %v", e.tool, e.server, e.version, err),
			Data:    mustJSON(verr)}
	}
	return &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: fmt.Sprintf("arguments of %s: %v", e.tool, err)}
}

func mustJSON(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}
