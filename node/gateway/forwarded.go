package gateway

import (
	"fmt"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"

	"github.com/mcpmesh/mcpmesh/node/audit"
	"github.com/mcpmesh/mcpmesh/trust/agentauth"
)

// CodeRefusedByExporter is the JSON-RPC error of a call another BU
// forwarded that this BU refuses: the tool is not exported to the
// caller's trust domain (or principal, or scopes), or the request is not a
// tool call. Like CodeRemoteUnavailable it lies in the range MCP leaves to
// implementations, so a 2026-07-28 client gets it as the call's error with
// HTTP 200, not as a protocol error.
const CodeRefusedByExporter = -32009

// ExportCheck decides whether a caller of another BU (a principal with
// agentauth.MethodFederation) may call version of server's tool: nil if
// this BU exports it to the caller, else why not.
type ExportCheck func(p agentauth.Principal, server, tool, version string) error

// WithExportCheck makes the gateway serve calls other BUs forward (their
// principals have agentauth.MethodFederation): each tools/call must pass
// check, and a forwarded request may only set up its session and call
// tools (no listings, resources or prompts: the consumer learns what is
// exported through catalog sync). Without it, forwarded requests are
// refused.
func WithExportCheck(check ExportCheck) Option {
	return optionFunc(func(g *Gateway) { g.exportCheck = check })
}

// forwardedMethods are the methods a forwarded request may use.
var forwardedMethods = map[string]bool{
	"initialize": true, "notifications/initialized": true, "ping": true, "server/discover": true,
	"tools/call": true, "notifications/cancelled": true, "notifications/progress": true,
}

// refuseForwarded refuses the forwarded requests (a federation principal's)
// that may not use method; nil for every other principal.
func (g *Gateway) refuseForwarded(p agentauth.Principal, method string) error {
	if p.Method != agentauth.MethodFederation || (forwardedMethods[method] && g.exportCheck != nil) {
		return nil
	}
	return &jsonrpc.Error{Code: CodeRefusedByExporter, Message: fmt.Sprintf("%s is not served to other BUs: a call forwarded from trust domain %s may only call the tools namespace %s exports to it", method, p.TrustDomain, g.cfg.Namespace)}
}

// checkExport refuses a forwarded tools/call of e that this BU does not
// export to the caller; rec learns why.
func (g *Gateway) checkExport(p agentauth.Principal, e *entry, c callInfo, rec *audit.Record) error {
	if p.Method != agentauth.MethodFederation {
		return nil
	}
	err := fmt.Errorf("forwarded calls are not served by this node")
	if g.exportCheck != nil {
		err = g.exportCheck(p, e.server, e.tool, e.version)
	}
	if err == nil {
		return nil
	}
	rec.Outcome = audit.OutcomeDenied
	rec.Reason = "not exported: " + err.Error()
	g.metrics.observe(g.cfg.Namespace, c.exposed, "denied", time.Since(c.start))
	return &jsonrpc.Error{Code: CodeRefusedByExporter, Message: fmt.Sprintf("tools/call %s (%s@%s) refused by namespace %s: %v", c.exposed, e.server, e.version, g.cfg.Namespace, err)}
}
