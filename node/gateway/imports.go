package gateway

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpmesh/mcpmesh/node/policy"
	"github.com/mcpmesh/mcpmesh/node/upstream"
	"github.com/mcpmesh/mcpmesh/registry/state"
)

// MetaOrigin is the _meta entry of an imported tool in listings: the
// namespace and trust domain that export it, when this BU last synced its
// catalog, and whether that is too long ago (stale: the exporter has not
// answered; the tool is still listed and calls still try it).
const MetaOrigin = "io.mcpmesh/origin"

// importedRoutes returns the aggregated view's routes of the tools other
// BUs export to this one (federation/catalog stores them in the registry),
// each named "<origin namespace>.<tool>" (or "<ns>.<server>.<tool>" where
// two servers of one origin share a tool name), and a fingerprint of what
// they were built from.
//
// Calls of these tools run this BU's whole pipeline (kill switches, policy
// with the origin's namespace, limits, the imported schema) and are then
// forwarded to the exporting BU (upstream.TransportFederation), which runs
// its own.
func (g *Gateway) importedRoutes() (map[string]*route, string, error) {
	all, err := g.fsm.AllImports()
	if err != nil {
		return nil, "", fmt.Errorf("imports: %w", err)
	}
	statuses, err := g.fsm.PeerStatuses()
	if err != nil {
		return nil, "", fmt.Errorf("peer statuses: %w", err)
	}
	status := map[string]state.PeerStatus{}
	for _, s := range statuses {
		status[s.Namespace] = s
	}
	now := g.now()
	h := sha256.New()
	out := map[string]*route{}
	for _, im := range all {
		st := status[im.Namespace]
		stale := st.Stale(now, state.DefaultStaleAfter)
		fmt.Fprintf(h, "%s %d %t\n", im.Namespace, im.ModifyIndex, stale)
		origin := map[string]any{"namespace": im.Namespace, "trustDomain": im.TrustDomain, "syncedAt": im.SyncedAt.UTC().Format(time.RFC3339), "stale": stale}
		byServer := map[string]map[string]*route{}
		for _, t := range im.Tools {
			if !t.Live(now) {
				continue
			}
			// Sunsets pass without a registry change; Sync runs again then.
			if d := t.Deprecation; d != nil && (g.sunset.IsZero() || d.Sunset.Before(g.sunset)) {
				g.sunset = d.Sunset
			}
			def, err := toolFromDefinition(t.Definition)
			if err != nil {
				g.logger.Error("gateway: imported tool definition unusable; not served", "origin", im.Namespace, "server", t.Server, "version", t.Version, "tool", t.Name, "error", err)
				continue
			}
			input, err := g.compileInput(def)
			if err != nil {
				g.logger.Error("gateway: imported input schema does not compile; tool not served", "origin", im.Namespace, "server", t.Server, "version", t.Version, "tool", t.Name, "error", err)
				continue
			}
			def.Meta = mcp.Meta{MetaOrigin: origin}
			// A call that may have reached a node of the exporter is
			// repeated on another only if the definition says that is safe.
			safe := def.Annotations != nil && (def.Annotations.ReadOnlyHint || def.Annotations.IdempotentHint)
			e := &entry{server: t.Server, version: t.Version, tool: t.Name, hash: t.Hash, def: def, input: input, deprecation: t.Deprecation,
				target: upstream.Target{Namespace: im.Namespace, Server: t.Server, Version: t.Version, Transport: upstream.TransportFederation, URL: upstream.FederationURL(im.Namespace, t.Server), SafeToRepeat: safe}}
			e.authz = policy.NewTarget(&policy.Request{Action: policy.ActionCall, Namespace: im.Namespace, Server: policy.Server{Name: t.Server},
				Tool: policy.Tool{Name: t.Name, Version: t.Version, Deprecated: t.Deprecation != nil, Annotations: def.Annotations}})
			addRoute(byServer, e)
		}
		// Tools the origin switched off keep their names, unlisted, so
		// that their calls are answered as killed (exportkills.go).
		for _, k := range im.Killed {
			addRoute(byServer, killedImportEntry(im, k))
		}
		nameRoutes(im.Namespace, byServer, out)
	}
	return out, hex.EncodeToString(h.Sum(nil)), nil
}

// withImports adds the imported routes to the local ones of the aggregated
// view; a local name wins (a namespace never imports from itself).
func withImports(local, imported map[string]*route) map[string]*route {
	if len(imported) == 0 {
		return local
	}
	all := maps.Clone(local)
	for name, r := range imported {
		if _, taken := all[name]; !taken {
			all[name] = r
		}
	}
	return all
}
