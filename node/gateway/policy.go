package gateway

import (
	"context"
	"fmt"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpmesh/mcpmesh/node/policy"
	"github.com/mcpmesh/mcpmesh/registry/state"
	"github.com/mcpmesh/mcpmesh/trust/agentauth"
)

// CodeDenied is the JSON-RPC error code of a request the BU's policy
// denies. MCP leaves the code to the server; go-sdk claims -32001 and
// -32003 to -32005 for its own conditions (a client treats -32003 as
// "client is closing"), and the gateway uses -32010 for a sunset version.
const CodeDenied = -32011

// CodeKilled is the JSON-RPC error code of a request a kill switch
// refuses (kills.go): its message names what is killed, why, by whom and
// since when, and its data carries the same as a KilledData.
const CodeKilled = -32012

// Every request at the front door is decided by the BU's Cedar policies
// (package node/policy), which the registry replicates and Sync swaps in:
//
//   - tools/list, resources/list, resources/templates/list and
//     prompts/list need "list" on the namespace (/mcp) or the server
//     (/mcp/s/...), and then show only the items the caller may use;
//   - tools/call needs "call" on the tool version that would answer,
//     resources/read, subscribe and resource completions "readResource",
//     prompts/get and prompt completions "getPrompt".
//
// A listing decides each tool with the version the caller's call would
// get (its profile's, else the newest), so what is listed is exactly what
// can be called without a per-call version pin.

// loadPolicies compiles the registry's policy set into the engine when it
// changed. A set that does not compile (the admin API refuses those, so
// only a newer node's set can) leaves the previous set in force.
func (g *Gateway) loadPolicies() error {
	p, err := g.fsm.Policies()
	if err != nil {
		return err
	}
	if _, v := g.policy.Set(); v == p.ModifyIndex && v != 0 {
		return nil
	}
	set, err := policy.Compile(p.Files)
	if err != nil {
		g.logger.Error("gateway: the registry's policy set does not compile here; the previous set stays in force", "index", p.ModifyIndex, "error", err)
		return nil
	}
	g.policy.Swap(set, p.ModifyIndex)
	g.logger.Info("gateway: policy set in force", "policies", set.Len(), "digest", set.Digest(), "index", p.ModifyIndex)
	return nil
}

// principal returns the caller the guard put in ctx.
func principal(ctx context.Context) agentauth.Principal {
	p, _ := agentauth.FromContext(ctx)
	return p
}

// decide asks the policy and counts the decision.
func (g *Gateway) decide(r *policy.Request) policy.Decision {
	r.Namespace, r.Now = g.cfg.Namespace, g.now()
	d := g.policy.Authorize(r)
	g.metrics.decided(g.cfg.Namespace, string(r.Action), d.Allowed)
	return d
}

// authorize decides r and, when it is denied, records the decision and
// returns the error the agent gets.
func (g *Gateway) authorize(r *policy.Request, what string) error {
	// A listing is not refused: it leaves out what is killed (filter).
	if r.Action != policy.ActionList {
		if err := g.refuseKilled(r.Principal, r.Server.Name, r.Tool.Name, what); err != nil {
			return err
		}
	}
	d := g.decide(r)
	if d.Allowed {
		return nil
	}
	return g.denied(r, what, d)
}

// denied logs a denial and returns the error the agent gets.
func (g *Gateway) denied(r *policy.Request, what string, d policy.Decision) error {
	g.logger.Info("policy: denied", "principal", r.Principal.ID, "tenant", r.Principal.Tenant, "action", r.Action,
		"resource", what, "policies", d.Policies, "errors", d.Errors, "policySet", d.Digest)
	return &jsonrpc.Error{Code: CodeDenied, Message: fmt.Sprintf("%s: %s", what, d.Reason(g.cfg.ExplainDenials))}
}

// serverInfo is what the policy knows of a server version, from its card.
func serverInfo(sv state.ServerVersion) policy.Server {
	gov := sv.Governance
	return policy.Server{Name: sv.Server, RiskTier: gov.RiskTier, DataClassification: gov.DataClassification, Owner: gov.Owner, Team: gov.Team}
}

// callRequest is the policy request of calling version e.
func callRequest(p agentauth.Principal, e *entry) *policy.Request {
	return &policy.Request{Principal: p, Action: policy.ActionCall, Target: e.authz}
}

// serverPolicy is what the policy knows of a served server (its newest live
// version's card), and the prebuilt target of listing its catalog.
type serverPolicy struct {
	info policy.Server
	list *policy.Target
}

// policyOf returns what the policy knows of a served server.
func (g *Gateway) policyOf(name string) serverPolicy {
	if govs := g.govs.Load(); govs != nil {
		if s, ok := (*govs)[name]; ok {
			return s
		}
	}
	return serverPolicy{info: policy.Server{Name: name}}
}

// server returns what the policy knows of a served server.
func (g *Gateway) server(name string) policy.Server { return g.policyOf(name).info }

// guard authorizes the listings, reads and prompt requests of ep (tools/call
// is authorized in its handler, once the answering version is known) and
// filters listings to what the caller may use. It runs first, so it also
// hands the principal on in the context to the middlewares after it.
func (g *Gateway) guard(ep *endpoint, perServer bool) mcp.Middleware {
	return func(next mcp.MethodHandler) mcp.MethodHandler {
		return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
			p, _ := principalOf(ctx, req)
			ctx = agentauth.NewContext(ctx, p)
			if err := g.refuseForwarded(p, method); err != nil {
				return nil, err
			}
			// The server of a per-server endpoint; "" for /mcp.
			server := ""
			if perServer {
				t, err := ep.live()
				if err != nil {
					return next(ctx, method, req)
				}
				server = t.Server
			}
			switch method {
			case "resources/read", "resources/subscribe", "prompts/get", "completion/complete":
				// Before any routing: a killed caller (or server, on its
				// own endpoint) costs no upstream a request.
				if err := g.refuseKilled(p, server, "", method); err != nil {
					return nil, err
				}
			}
			switch method {
			case "tools/list", "resources/list", "resources/templates/list", "prompts/list":
				what := "the catalog of namespace " + g.cfg.Namespace
				if server != "" {
					what = "the catalog of server " + server
				}
				if err := g.authorize(g.listRequest(p, server), method+" "+what); err != nil {
					return nil, err
				}
				// A killed caller, or a killed server's own endpoint, lists
				// nothing; its upstream is not asked.
				if _, killed := g.killed(p, server, ""); killed {
					return emptyListing(method), nil
				}
				res, err := next(ctx, method, req)
				if err != nil {
					return nil, err
				}
				return g.filter(ep, p, server, res), nil
			case "resources/read", "resources/subscribe", "resources/unsubscribe":
				var uri string
				switch params := req.GetParams().(type) {
				case *mcp.ReadResourceParams:
					uri = params.URI
				case *mcp.SubscribeParams:
					uri = params.URI
				case *mcp.UnsubscribeParams:
					uri = params.URI
				}
				if err := g.authorizeResource(p, server, uri, method); err != nil {
					return nil, err
				}
			case "completion/complete":
				params, _ := req.GetParams().(*mcp.CompleteParams)
				if params != nil && params.Ref != nil && params.Ref.Type == "ref/resource" {
					if err := g.authorizeResource(p, server, params.Ref.URI, method); err != nil {
						return nil, err
					}
				}
				if params != nil && params.Ref != nil && params.Ref.Type == "ref/prompt" && server != "" {
					if err := g.authorizePrompt(p, server, params.Ref.Name, method); err != nil {
						return nil, err
					}
				}
			case "tools/call":
				return g.auditUnhandled(ctx, method, req, p, next)
			case "prompts/get":
				if params, _ := req.GetParams().(*mcp.GetPromptParams); params != nil && server != "" {
					if err := g.authorizePrompt(p, server, params.Name, method); err != nil {
						return nil, err
					}
				}
			}
			return next(ctx, method, req)
		}
	}
}

// authorizeResource decides readResource of uri: an /mcp URI names its
// server; on a per-server endpoint server is given and uri is upstream's.
func (g *Gateway) authorizeResource(p agentauth.Principal, server, uri, method string) error {
	if server == "" {
		s, original, err := g.upstreamURI(uri)
		if err != nil {
			return err
		}
		server, uri = s, original
	}
	return g.authorize(&policy.Request{Principal: p, Action: policy.ActionReadResource, Server: g.server(server), URI: uri},
		fmt.Sprintf("%s %s of %s", method, uri, server))
}

// listRequest is p's request to list the catalog of server, or of the
// namespace when server is "".
func (g *Gateway) listRequest(p agentauth.Principal, server string) *policy.Request {
	r := &policy.Request{Principal: p, Action: policy.ActionList, Target: g.listNamespace}
	if server != "" {
		s := g.policyOf(server)
		r.Server, r.Target = s.info, s.list
	}
	return r
}

// authorizePrompt decides getPrompt of a prompt (its upstream name).
func (g *Gateway) authorizePrompt(p agentauth.Principal, server, prompt, method string) error {
	return g.authorize(&policy.Request{Principal: p, Action: policy.ActionGetPrompt, Server: g.server(server), Prompt: prompt},
		fmt.Sprintf("%s %s of %s", method, prompt, server))
}

// mayUse reports whether the principal of r may use a listed item of
// server (and tool, for a tool): no kill switch stops it and the policy
// permits it (the decision is counted).
func (g *Gateway) mayUse(r *policy.Request, server, tool string) bool {
	if _, killed := g.killed(r.Principal, server, tool); killed {
		return false
	}
	return g.decide(r).Allowed
}

// filter keeps the items of a listing that p may use and marks the
// listing private to the caller (2026-07-28 cacheScope).
func (g *Gateway) filter(ep *endpoint, p agentauth.Principal, server string, res mcp.Result) mcp.Result {
	switch res := res.(type) {
	case *mcp.ListToolsResult:
		// Each tool is listed as the version the caller's calls go to:
		// its profile's pin, else the newest live version.
		tools := res.Tools[:0:0]
		for _, t := range res.Tools {
			r := ep.route(t.Name)
			if r == nil || r.newest.exportKill != nil {
				continue
			}
			e, _, err := g.pickVersion(r, "", p.ID)
			if err != nil || !g.mayUse(callRequest(p, e), e.server, e.tool) {
				continue
			}
			if e != r.newest {
				pinned := *e.def
				pinned.Name = t.Name
				t = &pinned
			}
			tools = append(tools, t)
		}
		res.Tools = tools
		res.CacheScope = "private"
	case *mcp.ListResourcesResult:
		res.Resources = keep(res.Resources, func(item *mcp.Resource) bool { return g.mayRead(p, server, item.URI) })
		res.CacheScope = "private"
	case *mcp.ListResourceTemplatesResult:
		res.ResourceTemplates = keep(res.ResourceTemplates, func(item *mcp.ResourceTemplate) bool { return g.mayRead(p, server, item.URITemplate) })
		res.CacheScope = "private"
	case *mcp.ListPromptsResult:
		// The aggregated listing filters as it names (prompts.go).
		if server != "" {
			res.Prompts = keep(res.Prompts, func(item *mcp.Prompt) bool { return g.mayGetPrompt(p, server, item.Name) })
		}
		res.CacheScope = "private"
	}
	return res
}

// keep returns, in a new slice, the items ok accepts.
func keep[T any](items []T, ok func(T) bool) []T {
	kept := items[:0:0]
	for _, item := range items {
		if ok(item) {
			kept = append(kept, item)
		}
	}
	return kept
}

// mayGetPrompt decides getPrompt of a listed prompt (its upstream name).
func (g *Gateway) mayGetPrompt(p agentauth.Principal, server, prompt string) bool {
	return g.mayUse(&policy.Request{Principal: p, Action: policy.ActionGetPrompt, Server: g.server(server), Prompt: prompt}, server, "")
}

// mayRead decides readResource of a listed URI (or template).
func (g *Gateway) mayRead(p agentauth.Principal, server, uri string) bool {
	if server == "" {
		s, original, err := g.upstreamURI(uri)
		if err != nil {
			return false
		}
		server, uri = s, original
	}
	return g.mayUse(&policy.Request{Principal: p, Action: policy.ActionReadResource, Server: g.server(server), URI: uri}, server, "")
}
