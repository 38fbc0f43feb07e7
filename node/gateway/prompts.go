package gateway

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpmesh/mcpmesh/node/upstream"
)

// Prompts on the aggregated /mcp: every served server's prompts, asked of
// its newest live upstream, named like tools: "<namespace>.<prompt>", or
// "<namespace>.<server>.<prompt>" where two servers share a prompt name.
// prompts/get and prompt completions route back to the server by that
// name. Resources are aggregated apart (resources.go).

// aggregatedCapabilities are what /mcp advertises.
var aggregatedCapabilities = &mcp.ServerCapabilities{
	Tools:       &mcp.ToolCapabilities{ListChanged: true},
	Prompts:     &mcp.PromptCapabilities{ListChanged: true},
	Resources:   &mcp.ResourceCapabilities{Subscribe: true, ListChanged: true},
	Completions: &mcp.CompletionCapabilities{},
	Logging:     &mcp.LoggingCapabilities{},
}

// promptRef is where an aggregated prompt name leads.
type promptRef struct {
	server, name string
}

// promptIndex maps the aggregated names of the last listing, so that
// prompts/get needs no listing of its own in the common case.
type promptIndex struct {
	mu    sync.Mutex
	names map[string]promptRef
}

func (g *Gateway) aggregatedPrompts(ep *endpoint) mcp.Middleware {
	idx := &promptIndex{}
	return func(next mcp.MethodHandler) mcp.MethodHandler {
		return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
			switch method {
			case "prompts/list":
				prompts, names, err := g.listPrompts(ctx)
				if err != nil {
					return nil, err
				}
				idx.mu.Lock()
				idx.names = names
				idx.mu.Unlock()
				// Only the prompts the caller may get (policy.go).
				p := principal(ctx)
				return &mcp.ListPromptsResult{Prompts: keep(prompts, func(pr *mcp.Prompt) bool {
					ref := names[pr.Name]
					return g.mayGetPrompt(p, ref.server, ref.name)
				})}, nil
			case "prompts/get":
				// A copy (params may be nil) with only the _meta that may go upstream.
				fwd := copyWithMeta(req.GetParams().(*mcp.GetPromptParams), forwardMeta(paramsMeta(req.GetParams()), session(req)))
				ref, err := g.resolvePrompt(ctx, idx, fwd.Name)
				if err != nil {
					return nil, err
				}
				if err := g.authorizePrompt(principal(ctx), ref.server, ref.name, method); err != nil {
					return nil, err
				}
				fwd.Name = ref.name
				return g.onServer(withLogs(ctx, method, req), ep, session(req), ref.server, func(ctx context.Context, s *mcp.ClientSession) (mcp.Result, error) {
					return s.GetPrompt(ctx, fwd)
				})
			case "completion/complete":
				fwd := copyWithMeta(req.GetParams().(*mcp.CompleteParams), forwardMeta(paramsMeta(req.GetParams()), session(req)))
				if fwd.Ref != nil && fwd.Ref.Type == "ref/resource" {
					return next(ctx, method, req) // resources.go
				}
				if fwd.Ref == nil || fwd.Ref.Type != "ref/prompt" {
					return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: `completion/complete: ref.type must be "ref/prompt" or "ref/resource"`}
				}
				ref, err := g.resolvePrompt(ctx, idx, fwd.Ref.Name)
				if err != nil {
					return nil, err
				}
				if err := g.authorizePrompt(principal(ctx), ref.server, ref.name, method); err != nil {
					return nil, err
				}
				r := *fwd.Ref
				r.Name = ref.name
				fwd.Ref = &r
				return g.onServer(ctx, ep, session(req), ref.server, func(ctx context.Context, s *mcp.ClientSession) (mcp.Result, error) {
					return s.Complete(ctx, fwd)
				})
			}
			return next(ctx, method, req)
		}
	}
}

// listPrompts asks every served server for its prompts and names them. A
// server that cannot answer is left out of the listing (and logged), so
// one broken upstream does not hide every other server's prompts.
func (g *Gateway) listPrompts(ctx context.Context) ([]*mcp.Prompt, map[string]promptRef, error) {
	all := listAll(ctx, g, "prompts", func(ctx context.Context, s *mcp.ClientSession, cursor string) ([]*mcp.Prompt, string, error) {
		res, err := s.ListPrompts(ctx, &mcp.ListPromptsParams{Cursor: cursor})
		if err != nil {
			return nil, "", err
		}
		return res.Prompts, res.NextCursor, nil
	})
	count := map[string]int{}
	for _, f := range all {
		count[f.item.Name]++
	}
	names := map[string]promptRef{}
	out := make([]*mcp.Prompt, 0, len(all))
	for _, f := range all {
		name := g.cfg.Namespace + "." + f.item.Name
		if count[f.item.Name] > 1 {
			name = g.cfg.Namespace + "." + shortName(f.server) + "." + f.item.Name
		}
		p := *f.item
		p.Name = name
		out = append(out, &p)
		names[name] = promptRef{server: f.server, name: f.item.Name}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, names, nil
}

// resolvePrompt finds the server and name behind an aggregated prompt
// name, listing afresh when the last listing does not know it.
func (g *Gateway) resolvePrompt(ctx context.Context, idx *promptIndex, name string) (promptRef, error) {
	idx.mu.Lock()
	ref, ok := idx.names[name]
	idx.mu.Unlock()
	if ok {
		return ref, nil
	}
	_, names, err := g.listPrompts(ctx)
	if err != nil {
		return promptRef{}, err
	}
	idx.mu.Lock()
	idx.names = names
	idx.mu.Unlock()
	if ref, ok := names[name]; ok {
		return ref, nil
	}
	return promptRef{}, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: fmt.Sprintf("unknown prompt %q; prompts/list shows the names on this endpoint", name)}
}

// onServer runs fn on the newest live upstream of server.
func (g *Gateway) onServer(ctx context.Context, ep *endpoint, ss *mcp.ServerSession, server string, fn func(context.Context, *mcp.ClientSession) (mcp.Result, error)) (mcp.Result, error) {
	t, err := g.served(server)
	if err != nil {
		return nil, err
	}
	via, done := g.callerFor(ctx, ep, ss)
	defer done()
	return g.callUpstreamResult(ctx, g.logged(ctx, via), t, fn)
}

// served returns the newest live upstream of server, or -32602 when the
// server is not served.
func (g *Gateway) served(server string) (upstream.Target, error) {
	if targets := g.targets.Load(); targets != nil {
		if t, ok := (*targets)[server]; ok {
			return t, nil
		}
	}
	return upstream.Target{}, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: fmt.Sprintf("server %s is not served", server)}
}
