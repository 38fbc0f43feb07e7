package upstream

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"strconv"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpmesh/mcpmesh/internal/tracecontext"
)

// What crosses a hop besides the call itself: the W3C trace context of
// the agent's request and the time the caller still waits.
//
// The node creates no spans: the agent's traceparent is passed on
// unchanged (same trace id and parent span id) on every upstream request
// made for the call, in _meta["traceparent"] (MCP's convention, the only
// carrier a stdio upstream has) and, on HTTP upstreams, in the
// "traceparent" header; its tracestate goes with it the same ways, when
// it is valid (bounded as the W3C specification says). Across BUs the
// calling node also signs both into the federation assertion, and the
// exporting node takes them from there.
//
// The deadline travels as TimeoutHeader, the milliseconds the caller
// still waits, on every HTTP request whose context has a deadline: a
// remaining duration rather than an absolute time, so that the clocks of
// two BUs need not agree (gRPC's grpc-timeout does the same). The
// receiving gateway bounds the request by it; the pool there then calls
// its upstream for min(its own CallTimeout, what is left), so no node
// works on a call longer than its caller waits.

// TimeoutHeader carries the milliseconds the sender of a request still
// waits for its answer: a positive decimal integer of at most
// MaxTimeoutDigits digits.
const TimeoutHeader = "Mcpmesh-Timeout"

// MaxTimeoutDigits bounds TimeoutHeader's value: 9 digits are over 11
// days, far beyond any call timeout.
const MaxTimeoutDigits = 9

// MetaTraceparent is the _meta key of W3C trace context.
const MetaTraceparent = "traceparent"

// MetaTracestate is the _meta key of the W3C tracestate that goes with
// MetaTraceparent: vendor data passed on unchanged, and only with a valid
// traceparent and when tracecontext.ValidState holds (at most 32 members
// and 512 characters).
const MetaTracestate = "tracestate"

// traceKey marks a call's context with the trace context to pass on: a
// traceContext.
type traceKey struct{}

// traceContext is a call's W3C traceparent and the tracestate that goes
// with it ("" for none).
type traceContext struct{ parent, state string }

// ContextWithTraceparent returns ctx carrying tp as the W3C traceparent
// of the call made with it, with no tracestate; "" records that the call
// has none (a caller that decided so, such as a verified assertion without
// a trace, wins over anything the request says). The pool passes it on to
// the upstream.
func ContextWithTraceparent(ctx context.Context, tp string) context.Context {
	return ContextWithTrace(ctx, tp, "")
}

// ContextWithTrace is ContextWithTraceparent with ts, the W3C tracestate
// that goes with tp, passed on beside it.
func ContextWithTrace(ctx context.Context, tp, ts string) context.Context {
	return context.WithValue(ctx, traceKey{}, traceContext{tp, ts})
}

// TraceparentFromContext returns the traceparent ContextWithTraceparent
// or ContextWithTrace put in ctx, and whether there was one ("" included).
func TraceparentFromContext(ctx context.Context) (string, bool) {
	tp, _, ok := TraceFromContext(ctx)
	return tp, ok
}

// TraceFromContext returns the traceparent and tracestate ContextWithTrace
// (or ContextWithTraceparent) put in ctx, and whether there were any.
func TraceFromContext(ctx context.Context) (tp, ts string, ok bool) {
	tc, ok := ctx.Value(traceKey{}).(traceContext)
	return tc.parent, tc.state, ok
}

// ErrTimeoutHeader is why ParseTimeout refuses a value.
var ErrTimeoutHeader = errors.New(TimeoutHeader + " must be the milliseconds the caller still waits: a positive integer of at most 9 digits")

// ParseTimeout parses a TimeoutHeader value.
func ParseTimeout(v string) (time.Duration, error) {
	if v == "" || len(v) > MaxTimeoutDigits {
		return 0, fmt.Errorf("%w, not %q", ErrTimeoutHeader, truncate(v))
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return 0, fmt.Errorf("%w, not %q", ErrTimeoutHeader, truncate(v))
		}
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil || ms <= 0 {
		return 0, fmt.Errorf("%w, not %q", ErrTimeoutHeader, truncate(v))
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// FormatTimeout formats d, a remaining wait, as a TimeoutHeader value:
// rounded down to the millisecond (the receiver gives up no later than
// the sender), at least 1 and at most the largest the header takes.
func FormatTimeout(d time.Duration) string {
	const most = 999_999_999
	ms := d.Milliseconds()
	return strconv.FormatInt(min(max(ms, 1), most), 10)
}

func truncate(s string) string {
	if len(s) > 32 {
		return s[:32] + "…"
	}
	return s
}

// withTrace puts tp, when it is a valid traceparent, in params' _meta
// with ts when that is a valid tracestate (a copy of the map: the
// caller's own is left alone). Any tracestate the params carried is
// replaced or removed, so it never travels with another traceparent.
func withTrace(params *mcp.CallToolParams, tp, ts string) {
	if !tracecontext.Valid(tp) {
		return
	}
	meta := maps.Clone(params.Meta)
	if meta == nil {
		meta = mcp.Meta{}
	}
	meta[MetaTraceparent] = tp
	delete(meta, MetaTracestate)
	if tracecontext.ValidState(ts) {
		meta[MetaTracestate] = ts
	}
	params.Meta = meta
}

// hopTransport sets, on each request it sends, the traceparent and
// tracestate of the call the request is for (traceKey in its context) and
// the time left before its context's deadline (TimeoutHeader).
type hopTransport struct{ base http.RoundTripper }

// RoundTrip sends r with the call's trace context and deadline.
func (ht hopTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	tp, ts, _ := TraceFromContext(r.Context())
	d, hasDeadline := r.Context().Deadline()
	if !tracecontext.Valid(tp) && !hasDeadline {
		return ht.base.RoundTrip(r)
	}
	r = r.Clone(r.Context())
	if tracecontext.Valid(tp) {
		r.Header.Set("Traceparent", tp)
		if tracecontext.ValidState(ts) {
			r.Header.Set("Tracestate", ts)
		}
	}
	if hasDeadline {
		r.Header.Set(TimeoutHeader, FormatTimeout(time.Until(d)))
	}
	return ht.base.RoundTrip(r)
}
