package gateway

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpmesh/mcpmesh/node/upstream"
)

// TestTraceparentOf: a forwarded call's trace is the one its verified
// assertion gave the context, even none, over the request's unsigned
// _meta and header; otherwise _meta wins over the header, and anything
// that is not a valid traceparent is none.
func TestTraceparentOf(t *testing.T) {
	const (
		signed = "00-11111111111111111111111111111111-1111111111111111-01"
		meta   = "00-22222222222222222222222222222222-2222222222222222-01"
		header = "00-33333333333333333333333333333333-3333333333333333-01"
	)
	req := func(m, h string) *mcp.CallToolRequest {
		r := &mcp.CallToolRequest{Params: &mcp.CallToolParamsRaw{}, Extra: &mcp.RequestExtra{Header: http.Header{}}}
		if m != "" {
			r.Params.Meta = mcp.Meta{"traceparent": m}
		}
		if h != "" {
			r.Extra.Header.Set("Traceparent", h)
		}
		return r
	}
	bg := context.Background()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		req  *mcp.CallToolRequest
		want string
	}{
		{"assertion over both", upstream.ContextWithTraceparent(bg, signed), req(meta, header), signed},
		{"assertion without a trace", upstream.ContextWithTraceparent(bg, ""), req(meta, header), ""},
		{"meta over header", bg, req(meta, header), meta},
		{"header", bg, req("", header), header},
		{"invalid meta", bg, req("00-zz", header), ""},
		{"invalid header", bg, req("", "garbage"), ""},
		{"none", bg, &mcp.CallToolRequest{}, ""},
	} {
		if got, _ := traceOf(tc.ctx, tc.req); got != tc.want {
			t.Errorf("%s: traceOf's traceparent = %q; want %q", tc.name, got, tc.want)
		}
	}
}

// TestTracestateOf: the tracestate comes from where the traceparent came
// from (the assertion, _meta, or the headers, joined), never from another
// carrier, and an invalid one is none.
func TestTracestateOf(t *testing.T) {
	const tp = "00-22222222222222222222222222222222-2222222222222222-01"
	req := func(meta mcp.Meta, h http.Header) *mcp.CallToolRequest {
		return &mcp.CallToolRequest{Params: &mcp.CallToolParamsRaw{Meta: meta}, Extra: &mcp.RequestExtra{Header: h}}
	}
	signed := upstream.ContextWithTrace(context.Background(), tp, "signed=1")
	bg := context.Background()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		req  *mcp.CallToolRequest
		want string
	}{
		{"assertion", signed, req(mcp.Meta{"traceparent": tp, "tracestate": "meta=1"}, http.Header{"Tracestate": {"h=1"}}), "signed=1"},
		{"assertion without one", upstream.ContextWithTraceparent(bg, tp), req(mcp.Meta{"tracestate": "meta=1"}, nil), ""},
		{"meta", bg, req(mcp.Meta{"traceparent": tp, "tracestate": "meta=1"}, http.Header{"Tracestate": {"h=1"}}), "meta=1"},
		{"meta traceparent, header tracestate", bg, req(mcp.Meta{"traceparent": tp}, http.Header{"Tracestate": {"h=1"}}), ""},
		{"headers joined", bg, req(nil, http.Header{"Traceparent": {tp}, "Tracestate": {"a=1", "b=2"}}), "a=1,b=2"},
		{"invalid", bg, req(mcp.Meta{"traceparent": tp, "tracestate": "A=1"}, nil), ""},
		{"a key twice", bg, req(nil, http.Header{"Traceparent": {tp}, "Tracestate": {"a=1", "a=2"}}), ""},
	} {
		if _, got := traceOf(tc.ctx, tc.req); got != tc.want {
			t.Errorf("%s: traceOf's tracestate = %q; want %q", tc.name, got, tc.want)
		}
	}
}

// TestCarriedDeadline: a request's Mcpmesh-Timeout bounds the handling of
// the request (boundByCarriedDeadline), not the HTTP request's own context;
// a malformed one is refused with 400.
func TestCarriedDeadline(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
	r.Header.Set(upstream.TimeoutHeader, "1500")
	before := time.Now()
	w := httptest.NewRecorder()
	r2, ok := withCarriedDeadline(w, r)
	if !ok {
		t.Fatalf("refused: %d %s", w.Code, w.Body)
	}
	if _, has := r2.Context().Deadline(); has {
		t.Errorf("the HTTP request's context got a deadline: go-sdk would drop the answer when it passes")
	}
	ctx, cancel := boundByCarriedDeadline(r2.Context())
	defer cancel()
	d, has := ctx.Deadline()
	if !has || d.Before(before.Add(1500*time.Millisecond)) || d.After(time.Now().Add(1500*time.Millisecond)) {
		t.Errorf("deadline %v (has %v); want 1.5s from the request", d, has)
	}

	r = httptest.NewRequest(http.MethodPost, "/mcp", nil)
	if r2, ok := withCarriedDeadline(httptest.NewRecorder(), r); !ok || r2 != r {
		t.Errorf("a request without the header was changed or refused")
	}
	if _, has := func() (time.Time, bool) {
		ctx, cancel := boundByCarriedDeadline(r.Context())
		defer cancel()
		return ctx.Deadline()
	}(); has {
		t.Errorf("a request without the header got a deadline")
	}

	r.Header.Set(upstream.TimeoutHeader, "soon")
	w = httptest.NewRecorder()
	if _, ok := withCarriedDeadline(w, r); ok || w.Code != http.StatusBadRequest {
		t.Errorf("a malformed header was accepted: %d", w.Code)
	}
}
