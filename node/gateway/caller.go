package gateway

import (
	"context"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpmesh/mcpmesh/trust/agentauth"
	"github.com/mcpmesh/mcpmesh/trust/tokens"
)

// MetaRequestID says on a tools/call result which request id the gateway
// gave the call: the io.mcpmesh/request_id of the token its upstream got.
const MetaRequestID = "io.mcpmesh/requestId"

// withCaller is every endpoint's outermost receiving middleware: it gives
// each request of an agent a request id and puts the agent's principal,
// tenant and that id in the context (tokens.Caller), from which the
// upstream pool mints the token of every upstream request made for it.
func (g *Gateway) withCaller(next mcp.MethodHandler) mcp.MethodHandler {
	return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
		if method == "tools/call" {
			growStack()
		}
		ctx, cancel := boundByCarriedDeadline(ctx)
		defer cancel()
		p, ok := principalOf(ctx, req)
		if !ok {
			return next(ctx, method, req)
		}
		id, _ := ctx.Value(requestIDKey{}).(string)
		if id == "" {
			id = tokens.NewRequestID()
		}
		return next(tokens.ContextWithCaller(ctx, tokens.Caller{Principal: p.ID, Tenant: p.Tenant, Via: viaOf(ctx), RequestID: id}), method, req)
	}
}

type requestIDKey struct{}

// ContextWithRequestID returns a context whose request is recorded under
// id rather than a new request id: a call another BU forwarded keeps the
// id its calling node gave it, so both BUs' audit records name one call.
func ContextWithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// principalOf returns the principal of an agent's request: go-sdk hands it
// over in the request's TokenInfo (agentauth.Middleware); a stateless
// request's context carries it too.
func principalOf(ctx context.Context, req mcp.Request) (agentauth.Principal, bool) {
	if extra := req.GetExtra(); extra != nil {
		if p, ok := agentauth.FromTokenInfo(extra.TokenInfo); ok {
			return p, true
		}
	}
	return agentauth.FromContext(ctx)
}

// requestIDOf returns the request id withCaller gave the request of ctx.
func requestIDOf(ctx context.Context) string {
	c, _ := tokens.CallerFromContext(ctx)
	return c.RequestID
}
