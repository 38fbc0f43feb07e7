package gateway

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpmesh/mcpmesh/node/audit"
	"github.com/mcpmesh/mcpmesh/node/upstream"
	"github.com/mcpmesh/mcpmesh/registry/state"
)

// Imported tools switched off by their origin. An exporting BU lists a
// tool it shares but has stopped with a kill switch (the tool's or its
// server's) apart in its catalog, with the switch's scope, reason and time
// (state.KilledTool), and the importer stores those entries with the
// origin's imports. The aggregated view keeps such a tool under the name
// it has when live, as the local kill switches do, so that killing one
// tool never renames another, but:
//
//   - tools/list leaves it out, as it leaves out a local killed tool;
//   - a tools/call of it is answered here, without contacting the origin,
//     with CodeKilled and a message naming the origin's trust domain and
//     namespace and its reason; the call is audited (outcome killed, the
//     reason) and counted like a local kill switch's refusal, under the
//     origin's namespace.
//
// This BU's own switches (its agent, tenant, or the imported server or
// tool) are checked first, as for every call.

// exportKill is the switch an imported tool's origin pulled.
type exportKill struct {
	// namespace and trustDomain name the origin.
	namespace, trustDomain string
	killed                 state.KilledTool
}

// killedImportSchema is the input schema under which a killed imported
// tool is registered: never listed, never validated against (its calls
// are refused first), but go-sdk wants an object schema.
var killedImportSchema = json.RawMessage(`{"type":"object"}`)

// killedImportEntry is the entry of an imported tool its origin im has
// switched off: no version, no definition but its name.
func killedImportEntry(im state.Imports, k state.KilledTool) *entry {
	return &entry{server: k.Server, tool: k.Name, def: &mcp.Tool{Name: k.Name, InputSchema: killedImportSchema},
		target:     upstream.Target{Namespace: im.Namespace, Server: k.Server, Transport: upstream.TransportFederation, URL: upstream.FederationURL(im.Namespace, k.Server)},
		exportKill: &exportKill{namespace: im.Namespace, trustDomain: im.TrustDomain, killed: k}}
}

// fingerprint changes whenever the switch, as the consumer sees it, does;
// "" for no switch.
func (x *exportKill) fingerprint() string {
	if x == nil {
		return ""
	}
	return fmt.Sprintf("|killed %s %s %q %s", x.trustDomain, x.killed.Scope, x.killed.Reason, x.killed.At.UTC().Format(time.RFC3339Nano))
}

// refuseExportKilled answers a call of a tool its origin switched off:
// the error, the audit record's outcome and reason, the metrics.
func (g *Gateway) refuseExportKilled(x *exportKill, c callInfo, rec *audit.Record) error {
	k := x.killed
	rec.Tool, rec.Server = k.Server+"/"+k.Name, k.Server
	rec.Outcome = audit.OutcomeKilled
	rec.Reason = fmt.Sprintf("switched off by trust domain %s (namespace %s), %s %s: %s", x.trustDomain, x.namespace, k.Scope, k.Switch(), k.Reason)
	g.metrics.killRefused(x.namespace, string(k.Scope))
	g.metrics.observe(g.cfg.Namespace, c.exposed, "killed", time.Since(c.start))
	g.logger.Info("kill switch of an exporting BU: refused", "principal", c.caller, "tool", c.exposed,
		"origin", x.namespace, "trust_domain", x.trustDomain, "kind", k.Scope, "name", k.Switch(), "reason", k.Reason)
	what := ""
	if k.Scope == state.KillServer {
		what = fmt.Sprintf(", which switched off its server %s", k.Server)
	}
	return &jsonrpc.Error{Code: CodeKilled,
		Message: fmt.Sprintf("tool %s is switched off by trust domain %s (namespace %s)%s: %q (at %s); contact the operators of namespace %s",
			c.exposed, x.trustDomain, x.namespace, what, k.Reason, k.At.UTC().Format(time.RFC3339), x.namespace),
		Data: mustJSON(KilledData{Kind: k.Scope, Name: k.Switch(), Reason: k.Reason, At: k.At.UTC(), TrustDomain: x.trustDomain, Namespace: x.namespace})}
}
