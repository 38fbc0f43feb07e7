package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpmesh/mcpmesh/internal/tracecontext"
	"github.com/mcpmesh/mcpmesh/node/audit"
	"github.com/mcpmesh/mcpmesh/node/policy"
	"github.com/mcpmesh/mcpmesh/trust/agentauth"
)

// Every tools/call gets one audit record, whatever becomes of it, and the
// agent gets its answer only once that record is durable: a call whose
// record cannot be written fails (fail closed) with CodeAuditUnavailable,
// and one the log already cannot take is refused before its upstream is
// called. The record says who called (principal, tenant, the chain of
// actors), what (tool, version, pinned definition hash), why (request,
// workflow and trace ids, the policy decision and the policy set's
// digest), how it ended (outcome, error code, duration), its impact
// (result size, records where the upstream says), its cost, and the
// keyed hash of its arguments (the arguments themselves for the tools
// the node's audit.raw_arguments lists).

// Keys of _meta entries the audit reads.
const (
	// MetaWorkflowID is the agent's workflow id on a call (request _meta).
	MetaWorkflowID = "io.mcpmesh/workflowId"
	// MetaRecords says on a result how many records it returned.
	MetaRecords = "io.mcpmesh/records"
	// MetaCost says on a result what the call cost, in the card's
	// currency; it takes the place of the card's costPerCall.
	MetaCost = "io.mcpmesh/cost"
)

// CodeAuditUnavailable is the JSON-RPC error of a call whose audit record
// could not be written: its result is withheld.
const CodeAuditUnavailable = -32013

// auditTimeout bounds the wait for a record to become durable. The record
// of a call the agent abandoned is still written, so the wait does not
// end with the agent's request.
const auditTimeout = 10 * time.Second

// Auditor makes audit records durable; node/audit's Log is one.
type Auditor interface {
	// Append returns once rec is durable.
	Append(ctx context.Context, rec audit.Record) (uint64, error)
	// Err reports why no record can be written now, or nil.
	Err() error
}

// WithAudit records every tools/call in a before its answer goes out,
// hashing arguments with args, with node (the node's SPIFFE ID) as the
// last actor of every call.
func WithAudit(a Auditor, args *audit.Arguments, node string) Option {
	return optionFunc(func(g *Gateway) { g.auditor, g.auditArgs, g.nodeID = a, args, node })
}

// auditReady refuses a call, before anything is done for it, when its
// record could not be written.
func (g *Gateway) auditReady() error {
	if g.auditor == nil {
		return nil
	}
	if err := g.auditor.Err(); err != nil {
		g.logger.Error("audit: the audit log takes no records; refusing tool calls", "error", err)
		return &jsonrpc.Error{Code: CodeAuditUnavailable, Message: fmt.Sprintf("this node cannot audit calls now (%v), so it makes none; retry on another node and tell the BU's operators", err)}
	}
	return nil
}

// callRecord starts the record of a tools/call: who, when and why, as far
// as the request says.
func (g *Gateway) callRecord(ctx context.Context, req *mcp.CallToolRequest, p agentauth.Principal, calledAs string) *audit.Record {
	rec := &audit.Record{
		Kind: audit.KindCall, Namespace: g.cfg.Namespace,
		Principal: p.ID, Tenant: p.Tenant, AuthMethod: string(p.Method),
		Tool: calledAs, CalledAs: calledAs, RequestID: requestIDOf(ctx),
	}
	if p.ID != "" {
		rec.Actors = []string{p.ID}
	}
	// A forwarded call names the nodes it passed, then this one.
	rec.Actors = append(rec.Actors, viaOf(ctx)...)
	if g.nodeID != "" {
		rec.Actors = append(rec.Actors, g.nodeID)
	}
	if req.Params != nil {
		rec.WorkflowID, _ = req.Params.Meta[MetaWorkflowID].(string)
	}
	tp, _ := traceOf(ctx, req)
	rec.TraceID = tracecontext.TraceID(tp)
	return rec
}

// answeredBy records the version a call goes to, and the keyed hash of
// its arguments (and the arguments, where the BU asked for them).
func (g *Gateway) answeredBy(rec *audit.Record, e *entry, args json.RawMessage) {
	rec.Tool = e.server + "/" + e.tool
	rec.Server, rec.Version, rec.DefinitionHash = e.server, e.version, e.hash
	g.auditArgs.Fill(rec, rec.Tool, args)
}

// charged records the card's cost of a call that reached its upstream
// (an upstream's own figure in the result replaces it, see audited).
func charged(rec *audit.Record, e *entry) {
	rec.Cost, rec.Currency, rec.CostSource = e.cost, e.currency, "card"
}

// decided records a policy decision.
func decided(rec *audit.Record, d policy.Decision) {
	rec.Decision = "deny"
	if d.Allowed {
		rec.Decision = "allow"
	}
	rec.Policies, rec.PolicyVersion = d.Policies, d.Digest
	if !d.Allowed {
		rec.Reason = d.Reason(true)
	}
}

// audited completes rec with how the call ended and writes it; the agent
// gets res and err only once the record is durable, else an error.
func (g *Gateway) audited(ctx context.Context, rec *audit.Record, start time.Time, res mcp.Result, err error) (mcp.Result, error) {
	if g.auditor == nil {
		return res, err
	}
	rec.DurationMs = math.Round(float64(time.Since(start).Microseconds())) / 1000
	if err != nil {
		var je *jsonrpc.Error
		if errors.As(err, &je) {
			rec.ErrorCode = int(je.Code)
		}
		if rec.Reason == "" {
			rec.Reason = err.Error()
		}
	}
	if cr, ok := res.(*mcp.CallToolResult); res != nil && (!ok || cr != nil) {
		if raw, merr := json.Marshal(res); merr == nil {
			rec.ResultBytes = len(raw)
		}
		if cr, ok := res.(*mcp.CallToolResult); ok {
			if n, ok := metaNumber(cr.Meta, MetaRecords); ok && n >= 0 && n == math.Trunc(n) {
				records := int64(n)
				rec.Records = &records
			}
			if c, ok := metaNumber(cr.Meta, MetaCost); ok && c >= 0 {
				rec.Cost, rec.CostSource = c, "upstream"
			}
		}
	}
	markRecorded(ctx)
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), auditTimeout)
	defer cancel()
	if _, aerr := g.auditor.Append(actx, *rec); aerr != nil {
		g.logger.Error("audit: the record of a tool call could not be written; its answer is withheld", "principal", rec.Principal,
			"tool", rec.Tool, "outcome", rec.Outcome, "request_id", rec.RequestID, "error", aerr)
		g.metrics.observe(g.cfg.Namespace, rec.CalledAs, "audit_failed", time.Since(start))
		return nil, &jsonrpc.Error{Code: CodeAuditUnavailable,
			Message: fmt.Sprintf("the call's audit record could not be written (%v), so its result is withheld; the upstream may have acted on it: check before retrying, and tell the BU's operators", aerr)}
	}
	return res, err
}

// metaNumber reads a finite number from _meta.
func metaNumber(m mcp.Meta, key string) (float64, bool) {
	switch v := m[key].(type) {
	case float64:
		return v, !math.IsInf(v, 0) && !math.IsNaN(v)
	case int:
		return float64(v), true
	case int64:
		return float64(v), true
	case json.Number:
		f, err := v.Float64()
		return f, err == nil
	}
	return 0, false
}

// recordedKey marks, in a tools/call's context, whether the tool's handler
// wrote the call's record.
type recordedKey struct{}

// auditUnhandled passes a tools/call on and records it if no tool handler
// did: a call of a tool the endpoint does not serve (go-sdk answers it
// itself) is refused, and audited like any other.
func (g *Gateway) auditUnhandled(ctx context.Context, method string, req mcp.Request, p agentauth.Principal, next mcp.MethodHandler) (mcp.Result, error) {
	if g.auditor == nil {
		return next(ctx, method, req)
	}
	start := time.Now()
	recorded := new(bool)
	res, err := next(context.WithValue(ctx, recordedKey{}, recorded), method, req)
	if *recorded {
		return res, err
	}
	name := ""
	call, _ := req.(*mcp.CallToolRequest)
	if call != nil && call.Params != nil {
		name = call.Params.Name
	} else {
		call = &mcp.CallToolRequest{}
	}
	if rerr := g.auditReady(); rerr != nil {
		return nil, rerr
	}
	rec := g.callRecord(ctx, call, p, name)
	rec.Outcome = audit.OutcomeRefused
	if err == nil {
		// Not expected: go-sdk answers only unknown tools without a handler.
		rec.Outcome = audit.OutcomeOK
	}
	return g.audited(ctx, rec, start, res, err)
}

// markRecorded tells auditUnhandled that the handler wrote the record.
func markRecorded(ctx context.Context) {
	if r, ok := ctx.Value(recordedKey{}).(*bool); ok {
		*r = true
	}
}
