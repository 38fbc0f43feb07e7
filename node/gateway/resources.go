package gateway

import (
	"context"
	"fmt"
	"net/url"
	"sort"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"golang.org/x/sync/errgroup"

	"github.com/mcpmesh/mcpmesh/node/upstream"
)

// Resources on the aggregated /mcp: every served server's resources and
// resource templates, asked of its newest live upstream, under URIs that
// name the server, so that two servers' URIs never collide and each routes
// back to its server:
//
//	mcpmesh://<namespace>/<server, path-escaped>/<the upstream's URI>
//
// e.g. mcpmesh://hr/corp.hr%2Fdirectory/test://readme. A template is
// prefixed the same way (the prefix is literal text, so the result is
// still an RFC 6570 template). resources/read, resource completions and
// subscriptions route back by that URI, and the URIs in what comes back
// (read contents, update notifications) are mapped the same way. URIs
// inside tool results are the upstream's own; read them on the server's
// endpoint (/mcp/s/<namespace>/<server>), where URIs are unmapped.

// aggregatedURI maps an upstream URI of server into /mcp's.
func (g *Gateway) aggregatedURI(server, uri string) string {
	return "mcpmesh://" + g.cfg.Namespace + "/" + url.PathEscape(server) + "/" + uri
}

// upstreamURI maps an /mcp URI back to its server and upstream URI.
func (g *Gateway) upstreamURI(uri string) (server, original string, err error) {
	prefix := "mcpmesh://" + g.cfg.Namespace + "/"
	rest, ok := strings.CutPrefix(uri, prefix)
	escaped, original, found := strings.Cut(rest, "/")
	if ok && found {
		if server, err = url.PathUnescape(escaped); err == nil && server != "" && original != "" {
			return server, original, nil
		}
	}
	return "", "", &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams,
		Message: fmt.Sprintf("resource URI %q is not one of /mcp's: they read %s<server>/<upstream URI>, as resources/list shows", uri, prefix)}
}

// resolveURI returns the upstream behind an /mcp resource URI and the URI
// that upstream knows it by.
func (g *Gateway) resolveURI(uri string) (upstream.Target, string, error) {
	server, original, err := g.upstreamURI(uri)
	if err != nil {
		return upstream.Target{}, "", err
	}
	t, err := g.served(server)
	return t, original, err
}

func (g *Gateway) aggregatedResources(ep *endpoint) mcp.Middleware {
	return func(next mcp.MethodHandler) mcp.MethodHandler {
		return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
			switch method {
			case "resources/list":
				return g.listResources(ctx)
			case "resources/templates/list":
				return g.listResourceTemplates(ctx)
			case "resources/read":
				fwd := copyWithMeta(req.GetParams().(*mcp.ReadResourceParams), forwardMeta(paramsMeta(req.GetParams()), session(req)))
				server, original, err := g.upstreamURI(fwd.URI)
				if err != nil {
					return nil, err
				}
				fwd.URI = original
				res, err := g.onServer(withLogs(ctx, method, req), ep, session(req), server, func(ctx context.Context, s *mcp.ClientSession) (mcp.Result, error) {
					return s.ReadResource(ctx, fwd)
				})
				if err != nil {
					return nil, err
				}
				read := res.(*mcp.ReadResourceResult)
				for _, c := range read.Contents {
					if c != nil && c.URI != "" {
						c.URI = g.aggregatedURI(server, c.URI)
					}
				}
				return read, nil
			case "completion/complete":
				p := req.GetParams().(*mcp.CompleteParams)
				if p == nil || p.Ref == nil || p.Ref.Type != "ref/resource" {
					break
				}
				fwd := copyWithMeta(p, forwardMeta(paramsMeta(p), session(req)))
				server, original, err := g.upstreamURI(p.Ref.URI)
				if err != nil {
					return nil, err
				}
				ref := *p.Ref
				ref.URI = original
				fwd.Ref = &ref
				return g.onServer(ctx, ep, session(req), server, func(ctx context.Context, s *mcp.ClientSession) (mcp.Result, error) {
					return s.Complete(ctx, fwd)
				})
			}
			return next(ctx, method, req)
		}
	}
}

// maxListPages bounds how many pages of one upstream's listing (prompts,
// resources, resource templates) the aggregated view reads.
const maxListPages = 20

// listFanOut is how many upstreams one aggregated listing asks at a time.
const listFanOut = 8

// listAll collects, from every served server's newest live upstream, in
// server name order, the items of one paginated listing (at most
// maxListPages pages each), with the server each came from. The servers
// are asked concurrently, listFanOut at a time, so a listing takes about
// as long as its slowest upstream rather than the sum of them all. A
// server that cannot answer is left out (and logged), so one broken
// upstream does not hide every other server's items; a killed server is
// not asked.
func listAll[T any](ctx context.Context, g *Gateway, what string, page func(context.Context, *mcp.ClientSession, string) ([]T, string, error)) []fromServer[T] {
	targets := g.targets.Load()
	if targets == nil {
		return nil
	}
	servers := make([]string, 0, len(*targets))
	for s := range *targets {
		if !g.serverKilled(s) {
			servers = append(servers, s)
		}
	}
	sort.Strings(servers)
	found := make([][]T, len(servers))
	var eg errgroup.Group
	eg.SetLimit(listFanOut)
	for i, server := range servers {
		eg.Go(func() error {
			var items []T
			err := g.pool.Call(ctx, (*targets)[server], func(ctx context.Context, s *mcp.ClientSession) error {
				items = items[:0]
				cursor := ""
				for range maxListPages {
					got, next, err := page(ctx, s, cursor)
					if err != nil {
						return err
					}
					items = append(items, got...)
					if next == "" {
						return nil
					}
					cursor = next
				}
				return nil
			})
			if err != nil {
				g.logger.Warn("gateway: "+what+" of an upstream left out of /mcp", "server", server, "error", err)
				return nil
			}
			found[i] = items
			return nil
		})
	}
	eg.Wait() // every task returns nil: a failed server is left out above
	var out []fromServer[T]
	for i, items := range found {
		for _, it := range items {
			out = append(out, fromServer[T]{servers[i], it})
		}
	}
	return out
}

// fromServer is one listed item and the server it came from.
type fromServer[T any] struct {
	server string
	item   T
}

func (g *Gateway) listResources(ctx context.Context) (*mcp.ListResourcesResult, error) {
	found := listAll(ctx, g, "resources", func(ctx context.Context, s *mcp.ClientSession, cursor string) ([]*mcp.Resource, string, error) {
		res, err := s.ListResources(ctx, &mcp.ListResourcesParams{Cursor: cursor})
		if err != nil {
			return nil, "", err
		}
		return res.Resources, res.NextCursor, nil
	})
	out := &mcp.ListResourcesResult{Resources: make([]*mcp.Resource, 0, len(found))}
	for _, f := range found {
		m := *f.item
		m.URI = g.aggregatedURI(f.server, f.item.URI)
		out.Resources = append(out.Resources, &m)
	}
	sort.Slice(out.Resources, func(i, j int) bool { return out.Resources[i].URI < out.Resources[j].URI })
	return out, nil
}

func (g *Gateway) listResourceTemplates(ctx context.Context) (*mcp.ListResourceTemplatesResult, error) {
	found := listAll(ctx, g, "resource templates", func(ctx context.Context, s *mcp.ClientSession, cursor string) ([]*mcp.ResourceTemplate, string, error) {
		res, err := s.ListResourceTemplates(ctx, &mcp.ListResourceTemplatesParams{Cursor: cursor})
		if err != nil {
			return nil, "", err
		}
		return res.ResourceTemplates, res.NextCursor, nil
	})
	out := &mcp.ListResourceTemplatesResult{ResourceTemplates: make([]*mcp.ResourceTemplate, 0, len(found))}
	for _, f := range found {
		m := *f.item
		m.URITemplate = g.aggregatedURI(f.server, f.item.URITemplate)
		out.ResourceTemplates = append(out.ResourceTemplates, &m)
	}
	sort.Slice(out.ResourceTemplates, func(i, j int) bool {
		return out.ResourceTemplates[i].URITemplate < out.ResourceTemplates[j].URITemplate
	})
	return out, nil
}
