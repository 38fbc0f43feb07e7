package upstream

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// TransportFederation is the transport of a tool another BU exports to
// this one: the pool speaks MCP (Streamable HTTP, 2026-07-28 first) to the
// exporting BU's peer listener over the Federation's client, and every
// tools/call carries an assertion the Federation mints for that call —
// never the agent's credential, never this node's upstream token.
const TransportFederation = "mcpmesh-federation"

// federationHostSuffix ends the host of a federation target's URL, which
// names the exporting namespace rather than a machine: the Federation's
// client resolves it to that BU's nodes (FederationURL, FederationNamespace).
const federationHostSuffix = ".ns.mcpmesh.invalid"

// FederationPath is where a node's peer listener serves forwarded MCP
// calls: FederationPath + "<server name>".
const FederationPath = "/federation/v1/mcp/"

// FederationURL is the URL of a federation target: server (the exporter's
// registry name) of namespace ns. Its host is not resolvable: only a
// Federation's client knows which nodes serve ns.
func FederationURL(ns, server string) string {
	return FederationBaseURL(ns) + FederationPath + server
}

// FederationBaseURL is the scheme and host that stand for namespace ns's
// nodes in the URLs a Federation's client resolves.
func FederationBaseURL(ns string) string { return "https://" + ns + federationHostSuffix }

// FederationNamespace returns the namespace a federation target's URL
// names, or false when u is not one.
func FederationNamespace(u *url.URL) (string, bool) {
	ns, ok := strings.CutSuffix(u.Hostname(), federationHostSuffix)
	return ns, ok && ns != ""
}

// Federation reaches tools that other BUs export to this one.
type Federation interface {
	// HTTPClient is the client of every request to another BU: it maps a
	// FederationURL's host to that BU's nodes, authenticates with the
	// node's SVID and fails over between them. A request whose context
	// carries a ForwardedCall (ForwardedCallFromContext) is that call's:
	// the client sends it with an assertion minted for each node it
	// tries, and records in it when the call may have run without its
	// answer arriving.
	HTTPClient() *http.Client
	// PrepareCall prepares one tools/call of tool (the exporter's own tool
	// name) at t, on behalf of the caller in ctx: what the assertions of
	// its attempts vouch for. It mints nothing; it fails when this node
	// would not vouch for the call (the manifest in force does not let
	// this BU call t's).
	PrepareCall(ctx context.Context, t Target, tool string) (ForwardedCall, error)
	// CallTimeout bounds one call to another BU, in place of the pool's
	// Config.CallTimeout; zero keeps that.
	CallTimeout() time.Duration
}

// ForwardedCall is one tools/call of a tool another BU exports, as the
// Federation prepared it: the pool carries it, opaque, in the context of
// the call's requests to the Federation's client. Implementations are
// safe for concurrent use.
type ForwardedCall interface {
	// InDoubt returns, once the call failed, an error wrapping ErrInDoubt
	// when the exporting BU may have carried it out without its answer
	// reaching this node, and the call was not repeated; nil otherwise.
	InDoubt() error
}

// ErrInDoubt marks the failure of a forwarded call that may have been
// carried out by the exporting BU all the same: a node there received it
// and then broke off (died, or lost its connection) before answering,
// and the call was not repeated on another node, because its tool is
// not annotated readOnlyHint or idempotentHint (Target.SafeToRepeat).
// The agent must not take the failure to mean the call did nothing.
var ErrInDoubt = errors.New("the call may have been carried out by the exporting BU")

// ErrNotDelivered marks the failure of a forwarded call that certainly
// reached no node of the exporting BU (none could be connected to, or
// each refused it before it could be delivered), so it did not run there
// and may be made again. A forwarded call's failure that is marked
// neither ErrNotDelivered nor ErrInDoubt (its call timeout ran out, say)
// may have run all the same.
var ErrNotDelivered = errors.New("the call reached no node of the exporting BU")

// forwardedCallKey marks the context of a forwarded tools/call's requests
// with its ForwardedCall.
type forwardedCallKey struct{}

// ForwardedCallFromContext returns the ForwardedCall whose request ctx is
// the context of, or nil.
func ForwardedCallFromContext(ctx context.Context) ForwardedCall {
	fc, _ := ctx.Value(forwardedCallKey{}).(ForwardedCall)
	return fc
}

// callTimeout bounds one call to t.
func (p *Pool) callTimeout(t Target) time.Duration {
	if t.Transport == TransportFederation && p.fed != nil {
		if d := p.fed.CallTimeout(); d > 0 {
			return d
		}
	}
	return p.cfg.CallTimeout
}

// WithFederation lets the pool call tools of other BUs (TransportFederation).
func WithFederation(f Federation) Option { return optionFunc(func(p *Pool) { p.fed = f }) }

// forward prepares a tools/call of tool at t, a federation target: the
// call's requests to the Federation's client carry it in their context.
func (p *Pool) forward(ctx context.Context, t Target, tool string) (ForwardedCall, error) {
	if p.fed == nil {
		return nil, fmt.Errorf("%s: %w: federation is not configured on this node", t.Key(), ErrNoToken)
	}
	fc, err := p.fed.PrepareCall(ctx, t, tool)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", t.Key(), ErrNoToken, err)
	}
	return fc, nil
}

// settleForwarded returns the final error of a call that ended with err:
// for a forwarded call (fc not nil) that got no answer, the Federation's
// word when the call is in doubt, which names its tool and version.
func settleForwarded(fc ForwardedCall, err error) error {
	if fc == nil || err == nil {
		return err
	}
	if _, answered := Answered(err); answered {
		return err
	}
	if d := fc.InDoubt(); d != nil {
		return d
	}
	return err
}

// federationClient is the HTTP client of a federation target's sessions:
// each request carries its call's trace context and the time the call has
// left (hop.go). A tools/call's assertion is the Federation client's to
// mint, per attempt (ForwardedCall); the session's other requests carry
// none, the calling node being authenticated by its SVID alone.
func (p *Pool) federationClient() (*http.Client, error) {
	if p.fed == nil {
		return nil, fmt.Errorf("federation is not configured on this node")
	}
	c := *p.fed.HTTPClient()
	base := c.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	c.Transport = hopTransport{base: base}
	return &c, nil
}
