package gateway

import (
	"fmt"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpmesh/mcpmesh/registry/state"
	"github.com/mcpmesh/mcpmesh/trust/agentauth"
)

// Kill switches (registry/state.Kill) stop a tool, a server, a tenant or
// an agent on every replica. Sync swaps the namespace's pulled switches
// into one map on every applied registry change, so a request pays an
// atomic load and at most four map lookups, and a switch is in force here
// as soon as this replica has applied it.
//
// A refused request gets CodeKilled with what is killed and why:
//
//   - tools/call of a killed tool or of a tool of a killed server, and any
//     call of a killed tenant's or agent's;
//   - resources/read, resources/subscribe, prompts/get and completions of
//     a killed server, tenant or agent.
//
// Listings leave out what the caller could not use: a killed server's
// tools, resources and prompts, a killed tool; a killed tenant or agent
// gets empty lists. The aggregated /mcp does not ask a killed server's
// upstream for its prompts or resources at all. When a switch is pulled or
// released, every endpoint's sessions get notifications/tools/list_changed
// (legacy sessions on their stream, 2026-07-28 ones through
// subscriptions/listen), so agents list again and stop offering what
// they can no longer call.
//
// Switches are checked before policy: a kill is an operator's override,
// and a call it refuses never reaches the policy or the upstream.

// killKey names one switch.
type killKey struct {
	kind state.KillKind
	name string
}

// killSet is the switches in force.
type killSet map[killKey]state.Kill

// loadKills swaps in the registry's kill switches, logs what changed on
// this replica and sets the gauge.
func (g *Gateway) loadKills() error {
	ks, err := g.fsm.Kills()
	if err != nil {
		return err
	}
	set := make(killSet, len(ks))
	counts := map[state.KillKind]int{}
	for _, k := range ks {
		set[killKey{k.Kind, k.Name}] = k
		counts[k.Kind]++
	}
	var prev killSet
	if p := g.kills.Swap(&set); p != nil {
		prev = *p
	}
	for key, k := range set {
		if old, ok := prev[key]; !ok || old.Index != k.Index {
			g.logger.Info("gateway: kill switch in force", "kind", k.Kind, "name", k.Name, "reason", k.Reason, "by", k.By, "at", k.At, "index", k.Index)
		}
	}
	for key, k := range prev {
		if _, ok := set[key]; !ok {
			g.logger.Info("gateway: kill switch released", "kind", k.Kind, "name", k.Name)
		}
	}
	for _, kind := range state.KillKinds {
		g.metrics.killSwitches.WithLabelValues(string(kind)).Set(float64(counts[kind]))
	}
	if prev != nil && !sameKills(prev, set) {
		g.relist()
	}
	return nil
}

// sameKills reports whether a and b hold the same switches.
func sameKills(a, b killSet) bool {
	if len(a) != len(b) {
		return false
	}
	for key, k := range a {
		if other, ok := b[key]; !ok || other.Index != k.Index {
			return false
		}
	}
	return true
}

// relist tells the sessions of every endpoint that their tool list
// changed. go-sdk sends tools/list_changed only when a server's tools
// change and has no call to send it otherwise, so relist registers one
// tool of each endpoint again, unchanged, which makes it notify.
func (g *Gateway) relist() {
	if g.agg != nil {
		g.relistEndpoint(g.agg)
	}
	g.servers.Range(func(_, v any) bool {
		g.relistEndpoint(v.(*endpoint))
		return true
	})
}

func (g *Gateway) relistEndpoint(ep *endpoint) {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	for name, r := range ep.routes {
		t := *r.newest.def
		t.Name = name
		ep.server.AddTool(&t, g.handler(ep, r, name))
		return
	}
}

// killed returns the switch that stops p's request of tool of server, if
// any; server and tool may be "" when the request has none. The caller's
// own switches are checked first.
func (g *Gateway) killed(p agentauth.Principal, server, tool string) (state.Kill, bool) {
	set := g.kills.Load()
	if set == nil || len(*set) == 0 {
		return state.Kill{}, false
	}
	if k, ok := (*set)[killKey{state.KillAgent, p.ID}]; ok && p.ID != "" {
		return k, true
	}
	if k, ok := (*set)[killKey{state.KillTenant, p.Tenant}]; ok && p.Tenant != "" {
		return k, true
	}
	if server == "" {
		return state.Kill{}, false
	}
	if k, ok := (*set)[killKey{state.KillServer, server}]; ok {
		return k, true
	}
	if tool == "" {
		return state.Kill{}, false
	}
	k, ok := (*set)[killKey{state.KillTool, server + "/" + tool}]
	return k, ok
}

// serverKilled reports whether a switch stops server for every caller.
func (g *Gateway) serverKilled(server string) bool {
	_, ok := g.killed(agentauth.Principal{}, server, "")
	return ok
}

// refuseKilled returns the error for p's request (what, for the log) when
// a switch stops it, and logs and counts the refusal; nil otherwise.
func (g *Gateway) refuseKilled(p agentauth.Principal, server, tool, what string) error {
	k, ok := g.killed(p, server, tool)
	if !ok {
		return nil
	}
	g.metrics.killRefused(g.cfg.Namespace, string(k.Kind))
	g.logger.Info("kill switch: refused", "principal", p.ID, "tenant", p.Tenant, "request", what,
		"kind", k.Kind, "name", k.Name, "reason", k.Reason, "by", k.By)
	return killedError(k, g.cfg.Namespace)
}

// KilledData is the data of a CodeKilled error: the switch that refused
// the request.
type KilledData struct {
	Kind   state.KillKind `json:"kind"`
	Name   string         `json:"name"`
	Reason string         `json:"reason"`
	// By is who pulled the switch; empty for another BU's switch (it
	// stays inside that BU).
	By string    `json:"by,omitempty"`
	At time.Time `json:"at"`
	// TrustDomain and Namespace name the BU whose switch it is, when it is
	// not this one's: an imported tool its exporter switched off.
	TrustDomain string `json:"trustDomain,omitempty"`
	Namespace   string `json:"namespace,omitempty"`
}

func killedError(k state.Kill, namespace string) error {
	return &jsonrpc.Error{Code: CodeKilled,
		Message: fmt.Sprintf("killed: %s %s: %q (by %s at %s); contact the operators of namespace %s",
			k.Kind, k.Name, k.Reason, k.By, k.At.UTC().Format(time.RFC3339), namespace),
		Data: mustJSON(KilledData{Kind: k.Kind, Name: k.Name, Reason: k.Reason, By: k.By, At: k.At.UTC()})}
}

// emptyListing is the answer to a listing a switch empties.
func emptyListing(method string) mcp.Result {
	switch method {
	case "tools/list":
		res := &mcp.ListToolsResult{Tools: []*mcp.Tool{}}
		res.CacheScope = "private"
		return res
	case "resources/list":
		res := &mcp.ListResourcesResult{Resources: []*mcp.Resource{}}
		res.CacheScope = "private"
		return res
	case "resources/templates/list":
		res := &mcp.ListResourceTemplatesResult{ResourceTemplates: []*mcp.ResourceTemplate{}}
		res.CacheScope = "private"
		return res
	case "prompts/list":
		res := &mcp.ListPromptsResult{Prompts: []*mcp.Prompt{}}
		res.CacheScope = "private"
		return res
	}
	return nil
}
