package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpmesh/mcpmesh/node/upstream"
)

// TestUpstreamErrorSaysWhetherTheCallMayHaveRun: the agent is told to
// retry later only where retrying cannot run a call twice (it never
// reached its upstream, or its tool is read-only or idempotent); a call
// that timed out after it was sent, to a local upstream or another BU,
// is said to have maybe run, with the request id to look it up by and
// where.
func TestUpstreamErrorSaysWhetherTheCallMayHaveRun(t *testing.T) {
	g := &Gateway{logger: slog.New(slog.DiscardHandler)}
	const rid = "Zx3_9-kQvT0aBcDeFgHiJk"
	def := func(a *mcp.ToolAnnotations) *mcp.Tool { return &mcp.Tool{Name: "transfer", Annotations: a} }
	local := func(a *mcp.ToolAnnotations) *entry {
		return &entry{server: "corp.finance/payments", version: "1.0.0", tool: "transfer", def: def(a),
			target: upstream.Target{Server: "corp.finance/payments", Version: "1.0.0", Transport: "streamable-http"}}
	}
	remote := func(safe bool) *entry {
		return &entry{server: "corp.finance/payments", version: "1.0.0", tool: "transfer", def: def(nil),
			target: upstream.Target{Namespace: "finance", Server: "corp.finance/payments", Version: "1.0.0", Transport: upstream.TransportFederation, SafeToRepeat: safe}}
	}
	timeout := fmt.Errorf("corp.finance/payments@1.0.0: calling %q: %w", "tools/call", context.DeadlineExceeded)
	// mayHaveRun are the words of a call that may have run; retry of one
	// that may be made again.
	mayHaveRun := []string{"may have run", "before repeating it", "not annotated readOnlyHint or idempotentHint", "request id " + rid, "-request-id " + rid}
	retry := []string{"retry later"}
	for _, tc := range []struct {
		name     string
		e        *entry
		rid      string
		err      error
		code     int64
		want     []string
		wantNone []string
	}{
		{"local busy", local(nil), rid, fmt.Errorf("x: %w", upstream.ErrBusy), codeUpstreamUnavailable,
			append(retry, "unavailable"), []string{"may have run"}},
		{"local circuit open", local(nil), rid, fmt.Errorf("x: %w", upstream.ErrUnavailable), codeUpstreamUnavailable,
			retry, []string{"may have run"}},
		{"local timeout, not safe to repeat", local(nil), rid, timeout, codeUpstreamUnavailable,
			append(mayHaveRun, "upstream corp.finance/payments@1.0.0 did not answer in time", "upstream's own records", "this BU's audit"), retry},
		{"local session not set up in time", local(nil), rid, fmt.Errorf("x: %w: connect to upstream: %w", upstream.ErrNotSent, context.DeadlineExceeded), codeUpstreamUnavailable,
			append(retry, "unavailable", "the call was not sent"), []string{"may have run"}},
		{"remote session not set up", remote(false), rid, fmt.Errorf("x: %w: connect to upstream: initialize: stream reset", upstream.ErrNotSent), CodeRemoteUnavailable,
			append(retry, "namespace finance did not answer"), []string{"may have run"}},
		{"local timeout, read-only", local(&mcp.ToolAnnotations{ReadOnlyHint: true}), rid, timeout, codeUpstreamUnavailable,
			append(retry, "did not answer in time"), []string{"may have run"}},
		{"local timeout, idempotent", local(&mcp.ToolAnnotations{IdempotentHint: true}), rid, timeout, codeUpstreamUnavailable,
			retry, []string{"may have run"}},
		{"local timeout without a request id", local(nil), "", timeout, codeUpstreamUnavailable,
			[]string{"may have run", "request id (none)"}, retry},
		{"local failure", local(nil), rid, errors.New("connection refused"), codeUpstreamUnavailable,
			[]string{"upstream corp.finance/payments@1.0.0 failed: connection refused"}, append([]string{"may have run"}, retry...)},
		{"remote refused by the manifest", remote(false), rid, fmt.Errorf("x: %w: not allowed", upstream.ErrNoToken), CodeRemoteUnavailable,
			[]string{"namespace finance cannot be called from this BU"}, append([]string{"may have run"}, retry...)},
		{"remote in doubt", remote(false), rid, fmt.Errorf("%w: node n2 broke off; check finance's audit", upstream.ErrInDoubt), CodeRemoteUnavailable,
			[]string{"namespace finance: ", "node n2 broke off"}, retry},
		{"remote unreachable", remote(false), rid, fmt.Errorf("%w: no node of trust domain finance answered", upstream.ErrNotDelivered), CodeRemoteUnavailable,
			append(retry, "namespace finance did not answer"), []string{"may have run"}},
		{"remote timeout, not safe to repeat", remote(false), rid, timeout, CodeRemoteUnavailable,
			append(mayHaveRun, "namespace finance did not answer the call of corp.finance/payments@1.0.0 in time", "finance's audit", "audit query -all -request-id "+rid), retry},
		{"remote timeout, safe to repeat", remote(true), rid, timeout, CodeRemoteUnavailable,
			retry, []string{"may have run"}},
		{"remote broken off, not safe to repeat", remote(false), rid, errors.New("stream reset"), CodeRemoteUnavailable,
			append(mayHaveRun, "to namespace finance failed (", "stream reset"), retry},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var je *jsonrpc.Error
			if err := g.upstreamError(tc.e, tc.rid, false, tc.err); !errors.As(err, &je) || je.Code != tc.code {
				t.Fatalf("upstreamError = %v; want JSON-RPC error %d", err, tc.code)
			}
			for _, w := range tc.want {
				if !strings.Contains(je.Message, w) {
					t.Errorf("message %q\nwant it to say %q", je.Message, w)
				}
			}
			for _, w := range tc.wantNone {
				if strings.Contains(je.Message, w) {
					t.Errorf("message %q\nwant it not to say %q", je.Message, w)
				}
			}
		})
	}
}

// TestForwardedTimeoutSaysWhereToLookItUp: the exporting BU, answering a
// forwarded call whose upstream did not answer in time, points the other
// BU's agent at its own audit, across the BU (-all, against one of its
// nodes), not at "this BU's"; and the calling BU answers its agent with
// -32018 for the namespace, carrying that advice.
func TestForwardedTimeoutSaysWhereToLookItUp(t *testing.T) {
	const rid = "Zx3_9-kQvT0aBcDeFgHiJk"
	fin := &Gateway{logger: slog.New(slog.DiscardHandler), cfg: Config{Namespace: "finance"}}
	e := &entry{server: "corp.finance/payments", version: "1.0.0", tool: "transfer", def: &mcp.Tool{Name: "transfer"},
		target: upstream.Target{Server: "corp.finance/payments", Version: "1.0.0", Transport: "streamable-http"}}
	timeout := fmt.Errorf("corp.finance/payments@1.0.0: calling %q: %w", "tools/call", context.DeadlineExceeded)
	var je *jsonrpc.Error
	if err := fin.upstreamError(e, rid, true, timeout); !errors.As(err, &je) || je.Code != codeUpstreamUnavailable {
		t.Fatalf("finance's answer = %v; want JSON-RPC error %d", err, codeUpstreamUnavailable)
	}
	for _, w := range []string{"may have run", "finance's audit", "audit query -all -request-id " + rid, "against a node of finance"} {
		if !strings.Contains(je.Message, w) {
			t.Errorf("finance's answer %q\nwant it to say %q", je.Message, w)
		}
	}
	if strings.Contains(je.Message, "this BU's audit") {
		t.Errorf("finance's answer to another BU's agent speaks of this BU's audit: %q", je.Message)
	}

	hr := &Gateway{logger: slog.New(slog.DiscardHandler), cfg: Config{Namespace: "hr"}}
	imported := &entry{server: "corp.finance/payments", version: "1.0.0", tool: "transfer", def: &mcp.Tool{Name: "transfer"},
		target: upstream.Target{Namespace: "finance", Server: "corp.finance/payments", Version: "1.0.0", Transport: upstream.TransportFederation}}
	var got *jsonrpc.Error
	if err := hr.upstreamError(imported, rid, false, fmt.Errorf("calling %q: %w", "tools/call", je)); !errors.As(err, &got) || got.Code != CodeRemoteUnavailable {
		t.Fatalf("hr's answer = %v; want JSON-RPC error %d", err, CodeRemoteUnavailable)
	}
	if want := "namespace finance: " + je.Message; got.Message != want {
		t.Errorf("hr's answer %q\nwant %q", got.Message, want)
	}
	// Other errors of finance's (a tool's own, a refusal) pass as they are.
	refused := &jsonrpc.Error{Code: -32009, Message: "refused by finance"}
	if err := hr.upstreamError(imported, rid, false, refused); !errors.As(err, &got) || got != refused {
		t.Errorf("finance's refusal reached hr's agent as %v", err)
	}
}
