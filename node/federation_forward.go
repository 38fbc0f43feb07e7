package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/mcpmesh/mcpmesh/federation/assertion"
	"github.com/mcpmesh/mcpmesh/federation/peer"
	"github.com/mcpmesh/mcpmesh/node/gateway"
	"github.com/mcpmesh/mcpmesh/node/upstream"
	"github.com/mcpmesh/mcpmesh/trust/agentauth"
	"github.com/mcpmesh/mcpmesh/trust/tokens"
)

// How a tools/call reaches the BU that exports its tool, and how often it
// runs there.
//
// The pool prepares each call (PrepareCall: the caller, tool, version,
// request id and trace its assertions vouch for) and hands it to
// federationTransport in the context of the call's request. The transport
// tries the exporting BU's nodes in order (peer.Client.DoFailover) and
// mints one assertion per attempt, once the attempt's connection is up,
// pinned (Call.TargetNode) to the node whose SVID that connection's mTLS
// handshake verified. Neither the manifest (it lists bundle endpoints, one
// SPIFFE ID per endpoint, not per node) nor gossip (unverified hints)
// says for certain which node answers at an address; the handshake does,
// and on a warm connection it is already known, so pinning costs nothing
// and each attempt costs exactly one signature. An assertion captured on
// its way to one node is refused by every other node of the BU, whose
// replay caches are their own.
//
// At most once: an attempt that failed before the request could have
// been written (no connection, a refused certificate, no stream) moves on
// to the next node. One that failed after it may have been delivered
// (the node died or its connection broke while the call ran) moves on
// only when the tool's exported definition is annotated readOnlyHint or
// idempotentHint (Target.SafeToRepeat). Otherwise the call ends with
// upstream.ErrInDoubt: the agent hears which node may have carried it
// out and the request id to look for in that BU's audit, and hr's audit
// records the same. A response that breaks off after its headers came
// (an event stream, with progress) is in doubt too; it is never repeated,
// as the pool, not the transport, has consumed it.

// forwardedCall is one tools/call forwarded to another BU
// (upstream.ForwardedCall): what its assertions vouch for, and whether it
// ended in doubt. Safe for concurrent use.
type forwardedCall struct {
	f    *federation
	ns   string
	td   spiffeid.TrustDomain
	call assertion.Call
	safe bool

	mu    sync.Mutex
	doubt error
}

var _ upstream.ForwardedCall = (*forwardedCall)(nil)

// PrepareCall implements upstream.Federation: one forwarded tools/call of
// tool at t, for the caller in ctx, when the manifest in force lets this
// BU call t's.
func (f *federation) PrepareCall(ctx context.Context, t upstream.Target, tool string) (upstream.ForwardedCall, error) {
	m := f.holder.Current(time.Now())
	d, ok := m.DomainByNamespace(t.Namespace)
	if !ok {
		return nil, fmt.Errorf("namespace %s is not in the federation manifest in force", t.Namespace)
	}
	if !m.Allows(f.td, d.ID()) {
		return nil, fmt.Errorf("the federation manifest does not let %s call %s", f.td.Name(), d.ID().Name())
	}
	p, ok := agentauth.FromContext(ctx)
	if !ok {
		return nil, errors.New("no caller to vouch for")
	}
	call := assertion.CallOf(p, t.Server+"/"+tool, t.Version)
	if c, ok := tokens.CallerFromContext(ctx); ok {
		call.RequestID = c.RequestID
	}
	call.Trace, call.TraceState, _ = upstream.TraceFromContext(ctx)
	if call.Trace == "" {
		call.TraceState = ""
	}
	return &forwardedCall{f: f, ns: t.Namespace, td: d.ID(), call: call, safe: t.SafeToRepeat}, nil
}

// mint returns the assertion of one attempt, pinned to node.
func (fc *forwardedCall) mint(node spiffeid.ID) (string, error) {
	c := fc.call
	c.TargetNode = node
	return fc.f.minter.Mint(fc.td, c)
}

// InDoubt implements upstream.ForwardedCall.
func (fc *forwardedCall) InDoubt() error {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return fc.doubt
}

// inDoubt records that node, at addr, may have carried the call out, and
// that it was not repeated: cause is why no answer came.
func (fc *forwardedCall) inDoubt(node spiffeid.ID, addr string, cause error) {
	err := &inDoubtError{ns: fc.ns, node: node, addr: addr, tool: fc.call.Tool, version: fc.call.Version, requestID: fc.call.RequestID, safe: fc.safe, cause: cause}
	fc.mu.Lock()
	if fc.doubt == nil {
		fc.doubt = err
	}
	fc.mu.Unlock()
	fc.f.logger.Warn("federation: a forwarded call may have been carried out without its answer arriving; not repeated",
		"namespace", fc.ns, "node", node.String(), "addr", addr, "tool", fc.call.Tool, "request_id", fc.call.RequestID, "error", cause)
}

// inDoubtError is what the agent (and hr's audit) hear of a call that may
// have run at the exporting BU without its answer arriving.
type inDoubtError struct {
	ns, addr, tool, version, requestID string
	node                               spiffeid.ID
	// safe: the tool may be repeated, but the answer had begun (its
	// response broke off), so it was not.
	safe  bool
	cause error
}

func (e *inDoubtError) Error() string {
	why := "the tool is not annotated readOnlyHint or idempotentHint"
	if e.safe {
		why = "its answer had begun"
	}
	return fmt.Sprintf("the call of %s@%s may have been carried out by %s's node %s (%s), which received it and broke off before answering (%v); it was not repeated on another node, as %s; before calling again, check %s",
		e.tool, e.version, e.ns, e.node, e.addr, e.cause, why, gateway.RemoteAuditHint(e.ns, e.requestID))
}

func (e *inDoubtError) Unwrap() []error { return []error{upstream.ErrInDoubt, e.cause} }

// federationTransport sends a request addressed to a federation URL to
// the nodes of the namespace it names. A forwarded tools/call (a
// forwardedCall in the request's context) goes with an assertion minted
// for each node it is sent to, and to another node after one that may
// have received it only when it is safe to repeat; every other request
// (session set-up, listings, pings, catalog pulls) reads or sets up, and
// is repeated.
type federationTransport struct{ f *federation }

// RoundTrip implements http.RoundTripper.
func (ft federationTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	f := ft.f
	ns, ok := upstream.FederationNamespace(r.URL)
	if !ok {
		return nil, fmt.Errorf("%s is not a federation URL", r.URL.Redacted())
	}
	m := f.holder.Current(time.Now())
	d, ok := m.DomainByNamespace(ns)
	if !ok {
		return nil, fmt.Errorf("namespace %s is not in the federation manifest in force", ns)
	}
	addrs := f.addrs(m, d.ID())
	var body []byte
	if r.Body != nil {
		var err error
		body, err = io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			return nil, err
		}
	}
	fc, _ := upstream.ForwardedCallFromContext(r.Context()).(*forwardedCall)
	repeat := fc == nil || fc.safe
	var last spiffeid.ID // the node of the latest attempt
	resp, addr, err := f.client.DoFailover(r.Context(), d.ID(), addrs, 0, repeat, func(ctx context.Context, node spiffeid.ID) (*http.Request, error) {
		req := r.Clone(ctx)
		req.URL = &url.URL{Path: r.URL.Path, RawQuery: r.URL.RawQuery}
		req.Host = ""
		if body != nil {
			req.Body = io.NopCloser(bytes.NewReader(body))
			req.ContentLength = int64(len(body))
		}
		if fc != nil {
			tok, err := fc.mint(node)
			if err != nil {
				return nil, fmt.Errorf("mint the federation assertion for %s: %w", node, err)
			}
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		last = node
		return req, nil
	})
	if ue := (*peer.UnavailableError)(nil); errors.As(err, &ue) && !anySent(ue.Attempts) {
		// Every node tried failed before the request could have reached
		// it: nothing ran there, and the agent may call again.
		err = fmt.Errorf("%w: %w", upstream.ErrNotDelivered, err)
	}
	if fc == nil {
		return resp, err
	}
	if de := (*peer.InDoubtError)(nil); errors.As(err, &de) {
		fc.inDoubt(de.Peer, de.Addr, de.Err)
		return nil, err
	}
	if err == nil {
		resp.Body = &forwardedBody{ReadCloser: resp.Body, ctx: r.Context(), fc: fc, node: last, addr: addr}
	}
	return resp, err
}

// anySent reports whether a request may have reached the node of one of
// the attempts (sent as safe to repeat).
func anySent(as []peer.Attempt) bool {
	for _, a := range as {
		if a.Sent {
			return true
		}
	}
	return false
}

// forwardedBody is the response of a forwarded tools/call: when it breaks
// off while its caller still waits, the node that sent it may have
// carried the call out.
type forwardedBody struct {
	io.ReadCloser
	ctx  context.Context
	fc   *forwardedCall
	node spiffeid.ID
	addr string
}

func (b *forwardedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF && b.ctx.Err() == nil {
		b.fc.inDoubt(b.node, b.addr, fmt.Errorf("its answer broke off: %w", err))
	}
	return n, err
}
