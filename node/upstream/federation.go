package upstream

import (
	"context"
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
	// node's SVID and fails over between them.
	HTTPClient() *http.Client
	// Assert mints the credential of one tools/call of tool (the
	// exporter's own tool name) at t, on behalf of the caller in ctx.
	Assert(ctx context.Context, t Target, tool string) (string, error)
	// CallTimeout bounds one call to another BU, in place of the pool's
	// Config.CallTimeout; zero keeps that.
	CallTimeout() time.Duration
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

// callToolKey marks the context of a tools/call with the tool's name, for
// the assertion of a federation target.
type callToolKey struct{}

// assert returns the assertion of a request to a federation target: one
// per tools/call; other requests (session set-up, pings) carry none, the
// calling node being authenticated by its SVID alone.
func (p *Pool) assert(ctx context.Context, t Target) (string, error) {
	tool, _ := ctx.Value(callToolKey{}).(string)
	if tool == "" {
		return "", nil
	}
	if p.fed == nil {
		return "", fmt.Errorf("%s: %w: federation is not configured on this node", t.Key(), ErrNoToken)
	}
	tok, err := p.fed.Assert(ctx, t, tool)
	if err != nil {
		return "", fmt.Errorf("%s: %w: %w", t.Key(), ErrNoToken, err)
	}
	return tok, nil
}

// federationTransport sets the assertion of a request (headerTokenKey in
// its context) as its Authorization; a request without one goes without.
type federationTransport struct{ base http.RoundTripper }

// RoundTrip sends r, with its assertion when it has one.
func (ft federationTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if tok, _ := r.Context().Value(headerTokenKey{}).(string); tok != "" {
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", "Bearer "+tok)
	}
	return ft.base.RoundTrip(r)
}

// federationClient is the HTTP client of a federation target's sessions:
// each request carries its assertion, its call's trace context and the
// time the call has left (hop.go).
func (p *Pool) federationClient() (*http.Client, error) {
	if p.fed == nil {
		return nil, fmt.Errorf("federation is not configured on this node")
	}
	c := *p.fed.HTTPClient()
	base := c.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	c.Transport = federationTransport{base: hopTransport{base: base}}
	return &c, nil
}
