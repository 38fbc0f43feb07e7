package gateway

import (
	"context"
	"errors"
	"fmt"
	"reflect"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpmesh/mcpmesh/node/upstream"
)

// Resources, prompts and completion are not versioned in the registry;
// on a server's own endpoint (/mcp/s/<ns>/<server>) they pass through, as
// they are, to the upstream of the server's newest live version. The
// aggregated /mcp serves them too, with names and URIs mapped so that
// every item routes back to its server (prompts.go, resources.go).

// passthroughCapabilities are what a per-server endpoint advertises on
// top of tools.
var passthroughCapabilities = &mcp.ServerCapabilities{
	Tools:       &mcp.ToolCapabilities{ListChanged: true},
	Resources:   &mcp.ResourceCapabilities{Subscribe: true, ListChanged: true},
	Prompts:     &mcp.PromptCapabilities{ListChanged: true},
	Completions: &mcp.CompletionCapabilities{},
	Logging:     &mcp.LoggingCapabilities{},
}

// passthrough forwards the pass-through methods of a per-server endpoint
// to the upstream ep.target names; other methods go to next.
func (g *Gateway) passthrough(ep *endpoint) mcp.Middleware {
	return func(next mcp.MethodHandler) mcp.MethodHandler {
		return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
			switch method {
			case "resources/list", "resources/templates/list", "resources/read", "prompts/list", "prompts/get", "completion/complete":
			default:
				return next(ctx, method, req)
			}
			t, err := ep.live()
			if err != nil {
				return nil, err
			}
			meta := forwardMeta(paramsMeta(req.GetParams()), session(req))
			ctx = withLogs(ctx, method, req)
			via, done := g.callerFor(ctx, ep, session(req))
			defer done()
			via = g.logged(ctx, via)
			return g.callUpstreamResult(ctx, via, t, func(ctx context.Context, s *mcp.ClientSession) (mcp.Result, error) {
				// Each request goes upstream as a copy whose _meta carries
				// only what forwardMeta lets through.
				switch p := req.GetParams().(type) {
				case *mcp.ListResourcesParams:
					return s.ListResources(ctx, copyWithMeta(p, meta))
				case *mcp.ListResourceTemplatesParams:
					return s.ListResourceTemplates(ctx, copyWithMeta(p, meta))
				case *mcp.ReadResourceParams:
					return s.ReadResource(ctx, copyWithMeta(p, meta))
				case *mcp.ListPromptsParams:
					return s.ListPrompts(ctx, copyWithMeta(p, meta))
				case *mcp.GetPromptParams:
					return s.GetPrompt(ctx, copyWithMeta(p, meta))
				case *mcp.CompleteParams:
					return s.Complete(ctx, copyWithMeta(p, meta))
				default:
					return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: fmt.Sprintf("%s: unexpected parameters %T", method, p)}
				}
			})
		}
	}
}

// callUpstreamResult runs fn on t's session through via and maps a
// failure for the agent: the upstream's own JSON-RPC error passes through,
// a call after the agent's session ended is an invalid request, and
// anything else says which upstream could not be reached.
func (g *Gateway) callUpstreamResult(ctx context.Context, via caller, t upstream.Target, fn func(context.Context, *mcp.ClientSession) (mcp.Result, error)) (mcp.Result, error) {
	var res mcp.Result
	err := via.Call(ctx, t, func(ctx context.Context, s *mcp.ClientSession) error {
		var err error
		res, err = fn(ctx, s)
		return err
	})
	if err != nil {
		if je, ok := upstream.Answered(err); ok {
			return nil, je
		}
		if errors.Is(err, upstream.ErrClosed) {
			return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidRequest, Message: err.Error()}
		}
		return nil, &jsonrpc.Error{Code: codeUpstreamUnavailable, Message: fmt.Sprintf("upstream %s: %v", t.Key(), err)}
	}
	return res, nil
}

// live returns the upstream of ep's server's newest live version.
func (ep *endpoint) live() (upstream.Target, error) {
	t := ep.target.Load()
	if t == nil {
		return upstream.Target{}, &jsonrpc.Error{Code: jsonrpc.CodeMethodNotFound, Message: "this server has no live version"}
	}
	return *t, nil
}

// paramsMeta returns a request's _meta; params may be a nil pointer.
func paramsMeta(p mcp.Params) mcp.Meta {
	if p == nil || reflect.ValueOf(p).IsNil() {
		return nil
	}
	return p.GetMeta()
}

// copyWithMeta returns a copy of params (the zero value for nil) with its
// _meta replaced.
func copyWithMeta[T any, P interface {
	*T
	mcp.Params
}](p P, meta mcp.Meta) P {
	var c T
	if p != nil {
		c = *p
	}
	P(&c).SetMeta(meta)
	return &c
}
