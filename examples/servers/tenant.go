package servers

import (
	"context"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpmesh/mcpmesh/trust/tokens"
)

// Option configures an example server: New, NewDirectory, NewLedger.
type Option interface{ apply(*settings) }

type settings struct {
	verifier *tokens.Verifier
}

type optionFunc func(*settings)

func (f optionFunc) apply(s *settings) { f(s) }

// WithVerifier makes the server answer tool calls that carry a token v
// accepts: minted by the node it trusts, for this server (v's audience
// must be the server's name, such as corp.hr/directory), not expired. The
// server then returns only the records of the token's tenant. Without it,
// every tool call is refused with a message saying how to start the
// server.
func WithVerifier(v *tokens.Verifier) Option {
	return optionFunc(func(s *settings) { s.verifier = v })
}

func newSettings(opts []Option) settings {
	var s settings
	for _, o := range opts {
		o.apply(&s)
	}
	return s
}

// claimsKey is the context key of the call's verified token claims.
type claimsKey struct{}

// authorize checks the token of a tool call and returns ctx carrying its
// claims, or the refusal the caller gets instead (an isError result that
// says why and what to do). The token is the call's HTTP Authorization
// bearer token when it came over HTTP, else the one in
// _meta["io.mcpmesh/token"] (stdio).
func (s settings) authorize(ctx context.Context, name string, req *mcp.CallToolRequest) (context.Context, *mcp.CallToolResult) {
	if s.verifier == nil {
		return ctx, toolError("%s answers only calls with a token of the mcpmesh node it trusts, and has no key set to check one with: start it with -jwks-url (the node's %s) and -issuer.", name, tokens.JWKSPath)
	}
	tok, where := callToken(req)
	if tok == "" {
		return ctx, toolError("%s answers only calls made through an mcpmesh node: this call carries no node token (Authorization header, or _meta[%q] on stdio).", name, tokens.MetaKey)
	}
	c, err := s.verifier.Verify(ctx, tok)
	if err != nil {
		return ctx, toolError("%s refused the node token in %s: %v", name, where, err)
	}
	if c.Tenant == "" {
		return ctx, toolError("%s shows a tenant's own records only, and this call (by %s) has no tenant: call as an agent of a tenant, for example with a tenant's API key.", name, c.Subject)
	}
	return context.WithValue(ctx, claimsKey{}, c), nil
}

// callToken returns the node token of a call and where it was found.
func callToken(req *mcp.CallToolRequest) (tok, where string) {
	if req.Extra != nil && req.Extra.Header != nil {
		if h := req.Extra.Header.Get("Authorization"); h != "" {
			scheme, tok, _ := strings.Cut(h, " ")
			if strings.EqualFold(scheme, "Bearer") {
				return strings.TrimSpace(tok), "the Authorization header"
			}
		}
	}
	if req.Params != nil {
		if tok, ok := req.Params.Meta[tokens.MetaKey].(string); ok {
			return tok, "_meta"
		}
	}
	return "", ""
}

// tenantVisible reports whether a record of tenant may be returned to the
// caller: only when the call's verified token (authorize) names that
// tenant. Every handler asks it for every record it reads or writes.
func tenantVisible(ctx context.Context, tenant string) bool {
	c, ok := ctx.Value(claimsKey{}).(tokens.Claims)
	return ok && c.Tenant != "" && c.Tenant == tenant
}
