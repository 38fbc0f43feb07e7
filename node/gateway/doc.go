// Package gateway is a node's MCP front door: agents connect to it as one
// MCP server and call the tools of the servers the namespace's registry
// approved — only those, only at their approved versions.
//
// # Endpoints
//
//   - /mcp is the aggregated view: every tool of every served server version,
//     named "<namespace>.<tool>" ("<namespace>.<server>.<tool>" where two
//     servers of the namespace share a tool name), in name order.
//   - /mcp/s/<namespace>/<server name> is one server with its own tool names.
//
// Both speak the two protocol eras on the same URL: requests of revision
// 2026-07-28 (stateless; server/discover) go to a stateless go-sdk handler,
// legacy ones (initialize, Mcp-Session-Id, GET streams) to a stateful one,
// both over the same mcp.Server, chosen per request.
//
// # What is served
//
// tools/list is answered from the registry's replicated state, never from
// an upstream. A tool is served from every live version of its server
// (approved, or deprecated before its sunset): the newest defines it in
// listings and answers calls that pin no version; a call may pin another
// in _meta["io.mcpmesh/version"] (versions.go). Arguments are validated
// against the answering version's schema before the upstream sees them.
// The views follow the registry: when its state changes, tools are added,
// replaced and removed in place (sessions get list_changed). The leader
// checks live tool definitions against the pinned ones and quarantines a
// changed version (rugpull.go). Resources, prompts and completion pass
// through a server's own endpoint (passthrough.go); prompts and resources
// are also aggregated on /mcp (prompts.go, resources.go).
//
// # Kill switches
//
// An operator's kill switch on a tool, a server, a tenant or an agent
// (`mcpmesh kill`) refuses, on every replica once it has applied it, what
// it covers with CodeKilled and the switch's reason, before any policy
// decision; listings leave the killed items out (kills.go). An imported
// tool its exporting BU has switched off is unlisted too, and its calls
// are answered here with CodeKilled naming that BU and its reason,
// without forwarding them (exportkills.go).
//
// # Rate limits
//
// After the policy allows a tools/call, it takes a token from every rate
// limit that matches it (node/ratelimit), each node enforcing 1/N of the
// BU's limit for N live replicas; a refused call gets CodeRateLimited with
// retryAfterMs and, on a POST carrying only it, HTTP 429 with Retry-After
// (ratelimit.go).
//
// # Who is calling
//
// Every request has passed trust/agentauth's middleware before it reaches
// the gateway; ServeHTTP refuses one that has not. The principal is in the
// request's context and, for go-sdk handlers, in req.Extra.TokenInfo.
//
// # On the record
//
// With WithAudit, every tools/call gets one audit record (node/audit),
// written before the agent gets its answer; a call whose record cannot be
// written fails (audit.go).
//
// # What upstreams tell agents
//
// Logs of a request that asked for them (logs.go), resource updates to
// 2026-07-28 listeners (listen.go) and legacy sessions (relay.go), and
// upstreams' prompt and resource list changes to the agents that see the
// server (listchanged.go); the node's watch sessions survive an
// upstream's restart (upstream/watch.go).
//
// # What is not here yet
//
// Log messages of stdio upstreams; a legacy agent's resource
// subscriptions to a stdio upstream are not relayed to it; see the
// README's status.
package gateway
