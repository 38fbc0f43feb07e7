package upstream

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"reflect"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpmesh/mcpmesh/trust/tokens"
)

// Minter mints the token of one upstream request; *tokens.Minter is one.
type Minter interface {
	Mint(audience string, c tokens.Caller) (string, error)
}

var _ Minter = (*tokens.Minter)(nil)

// ErrNoToken wraps a failure to mint an upstream token: the call is not
// made (an upstream must never be called without one once tokens are on).
var ErrNoToken = errors.New("no upstream token")

// headerToken and metaToken are context keys of the token minted for one
// upstream request: the HTTP transport reads the first, the sending
// middleware of stdio sessions the second.
type (
	headerTokenKey struct{}
	metaTokenKey   struct{}
)

// mint returns the token of a request to t on behalf of the caller in ctx
// (the node itself when there is none), or "" when the pool mints none.
func (p *Pool) mint(ctx context.Context, t Target) (string, error) {
	if t.Transport == TransportFederation {
		// The Federation's client mints each attempt's assertion
		// (ForwardedCall); no other request to a BU carries a token.
		return "", nil
	}
	if p.tokens == nil {
		return "", nil
	}
	caller, _ := tokens.CallerFromContext(ctx)
	tok, err := p.tokens.Mint(t.Server, caller)
	if err != nil {
		return "", fmt.Errorf("%s: %w: %w", t.Key(), ErrNoToken, err)
	}
	return tok, nil
}

// withToken returns ctx carrying tok for the request to t: for the
// Authorization header on HTTP, in _meta on stdio and on legacy SSE too
// (an SSE server reads each message from a POST of its own, but go-sdk's,
// for one, does not hand that POST's headers to its handlers).
func withToken(ctx context.Context, t Target, tok string) context.Context {
	if tok == "" {
		return ctx
	}
	if t.Transport != TransportStdio {
		ctx = context.WithValue(ctx, headerTokenKey{}, tok)
	}
	if t.Transport != TransportStreamableHTTP && t.Transport != TransportFederation {
		ctx = context.WithValue(ctx, metaTokenKey{}, tok)
	}
	return ctx
}

// httpFor returns the HTTP client of t's sessions: the pool's, with every
// request authorized by a token for t and carrying its call's trace
// context and deadline (hop.go). Connections are still pooled across
// upstreams (the transport underneath is shared).
func (p *Pool) httpFor(t Target) *http.Client {
	base := p.http.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	c := *p.http
	c.Transport = hopTransport{base: base}
	if p.tokens != nil {
		c.Transport = &tokenTransport{base: c.Transport, audience: t.Server, tokens: p.tokens}
	}
	return &c
}

// tokenTransport sets the Authorization of every request to one upstream:
// the token minted for the request (headerTokenKey in its context), or
// else a fresh token of the node itself.
type tokenTransport struct {
	base     http.RoundTripper
	audience string
	tokens   Minter
}

// RoundTrip sends a copy of r with the token.
func (tt *tokenTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	tok, _ := r.Context().Value(headerTokenKey{}).(string)
	if tok == "" {
		var err error
		if tok, err = tt.tokens.Mint(tt.audience, tokens.Caller{}); err != nil {
			if r.Body != nil {
				r.Body.Close()
			}
			return nil, fmt.Errorf("%w for %s: %w", ErrNoToken, tt.audience, err)
		}
	}
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+tok)
	return tt.base.RoundTrip(r)
}

// metaToken is the sending middleware of the pool's clients: it puts the
// token of a request to a stdio or SSE upstream (metaTokenKey) in the
// request's _meta.
func metaToken(next mcp.MethodHandler) mcp.MethodHandler {
	return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
		if tok, ok := ctx.Value(metaTokenKey{}).(string); ok {
			if p := req.GetParams(); p != nil && !reflect.ValueOf(p).IsNil() {
				meta := maps.Clone(p.GetMeta())
				if meta == nil {
					meta = map[string]any{}
				}
				meta[tokens.MetaKey] = tok
				p.SetMeta(meta)
			}
		}
		return next(ctx, method, req)
	}
}
