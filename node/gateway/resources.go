package gateway

import (
	"context"
	"fmt"
	"net/url"
	"sort"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

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

// maxResourcePages bounds how many pages of one upstream's resources (and,
// apart, resource templates) are read.
const maxResourcePages = 20

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
				res, err := g.onServer(ctx, ep, session(req), server, func(ctx context.Context, s *mcp.ClientSession) (mcp.Result, error) {
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

// eachServer calls fn with every served server's newest live upstream, in
// name order. A server whose fn fails is left out (and logged), so one
// broken upstream does not hide every other server's items.
func (g *Gateway) eachServer(ctx context.Context, what string, fn func(server string, t upstream.Target) error) {
	targets := g.targets.Load()
	if targets == nil {
		return
	}
	servers := make([]string, 0, len(*targets))
	for s := range *targets {
		servers = append(servers, s)
	}
	sort.Strings(servers)
	for _, server := range servers {
		if err := fn(server, (*targets)[server]); err != nil {
			g.logger.Warn("gateway: "+what+" of an upstream left out of /mcp", "server", server, "error", err)
		}
	}
}

func (g *Gateway) listResources(ctx context.Context) (*mcp.ListResourcesResult, error) {
	out := &mcp.ListResourcesResult{Resources: []*mcp.Resource{}}
	g.eachServer(ctx, "resources", func(server string, t upstream.Target) error {
		var found []*mcp.Resource
		err := g.pool.Call(ctx, t, func(ctx context.Context, s *mcp.ClientSession) error {
			params := &mcp.ListResourcesParams{}
			for range maxResourcePages {
				res, err := s.ListResources(ctx, params)
				if err != nil {
					return err
				}
				found = append(found, res.Resources...)
				if res.NextCursor == "" {
					return nil
				}
				params.Cursor = res.NextCursor
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, r := range found {
			m := *r
			m.URI = g.aggregatedURI(server, r.URI)
			out.Resources = append(out.Resources, &m)
		}
		return nil
	})
	sort.Slice(out.Resources, func(i, j int) bool { return out.Resources[i].URI < out.Resources[j].URI })
	return out, nil
}

func (g *Gateway) listResourceTemplates(ctx context.Context) (*mcp.ListResourceTemplatesResult, error) {
	out := &mcp.ListResourceTemplatesResult{ResourceTemplates: []*mcp.ResourceTemplate{}}
	g.eachServer(ctx, "resource templates", func(server string, t upstream.Target) error {
		var found []*mcp.ResourceTemplate
		err := g.pool.Call(ctx, t, func(ctx context.Context, s *mcp.ClientSession) error {
			params := &mcp.ListResourceTemplatesParams{}
			for range maxResourcePages {
				res, err := s.ListResourceTemplates(ctx, params)
				if err != nil {
					return err
				}
				found = append(found, res.ResourceTemplates...)
				if res.NextCursor == "" {
					return nil
				}
				params.Cursor = res.NextCursor
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, rt := range found {
			m := *rt
			m.URITemplate = g.aggregatedURI(server, rt.URITemplate)
			out.ResourceTemplates = append(out.ResourceTemplates, &m)
		}
		return nil
	})
	sort.Slice(out.ResourceTemplates, func(i, j int) bool {
		return out.ResourceTemplates[i].URITemplate < out.ResourceTemplates[j].URITemplate
	})
	return out, nil
}
