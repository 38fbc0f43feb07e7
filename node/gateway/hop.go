package gateway

import (
	"context"
	"net/http"
	"slices"
	"strings"

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

// traceparentOf returns the W3C traceparent of a tools/call, or "": the
// one the context was given (a forwarded call's, from its verified
// assertion), else the request's _meta["traceparent"], else its
// "traceparent" header. Anything that is not a valid traceparent counts
// as none.
func traceparentOf(ctx context.Context, req *mcp.CallToolRequest) string {
	if tp, ok := upstream.TraceparentFromContext(ctx); ok {
		return validOrNone(tp)
	}
	if req.Params != nil {
		if tp, _ := req.Params.Meta[upstream.MetaTraceparent].(string); tp != "" {
			return validOrNone(tp)
		}
	}
	if req.Extra != nil && req.Extra.Header != nil {
		return validOrNone(req.Extra.Header.Get("traceparent"))
	}
	return ""
}

// tracestateOf returns the W3C tracestate that goes with traceparentOf's
// traceparent, from the same carrier: a forwarded call's verified
// assertion, else the request's _meta["tracestate"] beside its
// _meta["traceparent"], else its "tracestate" headers (joined, as the
// specification says). One that is not valid (tracecontext.ValidState: at
// most 32 members and 512 characters) counts as none.
func tracestateOf(ctx context.Context, req *mcp.CallToolRequest) string {
	if _, ok := upstream.TraceparentFromContext(ctx); ok {
		ts, _ := upstream.TracestateFromContext(ctx)
		return validStateOrNone(ts)
	}
	if req.Params != nil {
		if tp, _ := req.Params.Meta[upstream.MetaTraceparent].(string); tp != "" {
			ts, _ := req.Params.Meta[upstream.MetaTracestate].(string)
			return validStateOrNone(ts)
		}
	}
	if req.Extra != nil && req.Extra.Header != nil {
		return validStateOrNone(strings.Join(req.Extra.Header.Values("tracestate"), ","))
	}
	return ""
}

func validStateOrNone(ts string) string {
	if tracecontext.ValidState(ts) {
		return ts
	}
	return ""
}

func validOrNone(tp string) string {
	if tracecontext.Valid(tp) {
		return tp
	}
	return ""
}

// withCarriedDeadline bounds r's context by the wait its sender says is
// left (upstream.TimeoutHeader); the pool then calls the upstream for at
// most that long (and never longer than its own CallTimeout). It returns
// false, having answered 400, when the header is malformed. The returned
// function releases the bound. Only requests of the 2026-07-28 era are
// bounded: a legacy request's handler runs on its session, not on its
// POST, so nothing would end with the POST's context.
func withCarriedDeadline(w http.ResponseWriter, r *http.Request) (*http.Request, context.CancelFunc, bool) {
	v := r.Header.Get(upstream.TimeoutHeader)
	if v == "" {
		return r, func() {}, true
	}
	d, err := upstream.ParseTimeout(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return nil, nil, false
	}
	ctx, cancel := context.WithTimeout(r.Context(), d)
	return r.WithContext(ctx), cancel, true
}
