package gateway

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpmesh/mcpmesh/internal/tracecontext"
	"github.com/mcpmesh/mcpmesh/node/upstream"
)

// A call that another BU forwards keeps what its calling node knew of it:
// the request id (ContextWithRequestID), the nodes it passed
// (ContextWithVia) and its W3C trace context, taken from the verified
// assertion (upstream.ContextWithTraceparent) rather than from anything
// unsigned in the request. And every request may say how long its sender
// still waits (upstream.TimeoutHeader): the gateway bounds it by that.

type viaKey struct{}

// ContextWithVia returns a context whose request passed the nodes via (SPIFFE
// IDs, the first the nearest the agent) before reaching this one: they go
// on the call's audit record between the caller and this node, and into
// the token its upstream gets (tokens.Caller.Via).
func ContextWithVia(ctx context.Context, via ...string) context.Context {
	return context.WithValue(ctx, viaKey{}, slices.Clone(via))
}

// viaOf returns the nodes ContextWithVia recorded in ctx.
func viaOf(ctx context.Context) []string {
	via, _ := ctx.Value(viaKey{}).([]string)
	return via
}

// traceOf returns the W3C trace context of a tools/call: its
// traceparent, or "", and the tracestate that goes with it, or "", both
// from the same carrier: the one the context was given (a forwarded
// call's, from its verified assertion), else the request's
// _meta["traceparent"] and _meta["tracestate"], else its "traceparent"
// header and "tracestate" headers (joined, as the specification says).
// A traceparent that is not valid counts as none, and so does its
// tracestate; a tracestate that is not valid (tracecontext.ValidState: at
// most 32 members and 512 characters) counts as none.
func traceOf(ctx context.Context, req *mcp.CallToolRequest) (tp, ts string) {
	var meta mcp.Meta
	if req.Params != nil {
		meta = req.Params.Meta
	}
	if ctp, cts, ok := upstream.TraceFromContext(ctx); ok {
		tp, ts = ctp, cts
	} else if mtp, _ := meta[upstream.MetaTraceparent].(string); mtp != "" {
		tp = mtp
		ts, _ = meta[upstream.MetaTracestate].(string)
	} else if req.Extra != nil && req.Extra.Header != nil {
		tp, ts = req.Extra.Header.Get("traceparent"), strings.Join(req.Extra.Header.Values("tracestate"), ",")
	}
	if !tracecontext.Valid(tp) {
		return "", ""
	}
	if !tracecontext.ValidState(ts) {
		ts = ""
	}
	return tp, ts
}

// withCarriedDeadline notes on r's context the wait its sender says is
// left (upstream.TimeoutHeader), as a deadline from now; withCaller bounds
// each request's handling by it, and the pool then calls the upstream for
// at most that long (and never longer than its own CallTimeout). It
// returns false, having answered 400, when the header is malformed. Only
// requests of the 2026-07-28 era carry it: a legacy request's handler runs
// on its session, not on its POST.
//
// The deadline bounds the handler, not the HTTP request go-sdk serves: when
// the request's own context ends, go-sdk takes the client to be gone and
// drops the answer, and the sender would get no JSON-RPC error saying the
// call ran out of time but an empty (or, over HTTP/3, a malformed)
// response.
func withCarriedDeadline(w http.ResponseWriter, r *http.Request) (*http.Request, bool) {
	v := r.Header.Get(upstream.TimeoutHeader)
	if v == "" {
		return r, true
	}
	d, err := upstream.ParseTimeout(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return nil, false
	}
	return r.WithContext(context.WithValue(r.Context(), carriedDeadlineKey{}, time.Now().Add(d))), true
}

type carriedDeadlineKey struct{}

// boundByCarriedDeadline bounds ctx by the deadline withCarriedDeadline
// noted on it, if any.
func boundByCarriedDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if d, ok := ctx.Value(carriedDeadlineKey{}).(time.Time); ok {
		return context.WithDeadline(ctx, d)
	}
	return ctx, func() {}
}
