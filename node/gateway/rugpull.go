package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/mcpmesh/mcpmesh/registry/card"
	"github.com/mcpmesh/mcpmesh/registry/state"
)

// Rug-pull protection: a tool definition is pinned when its version is
// submitted (the registry's hash of the submitted JSON). When a version
// becomes live, and every CheckInterval after, the leader lists the
// upstream's live tools and compares each with its pinned definition. A
// difference means the upstream changed a tool under an approved version:
// the whole server version is moved to "quarantined" through Raft, so
// every replica stops serving it at once, the event is logged and counted,
// and it stays so until a reviewer acts (submits a new version, or
// re-approves once the upstream is back to what was reviewed).
//
// go-sdk returns live tools as decoded structs, not raw JSON, so both sides
// are compared after the same normalization (decode into mcp.Tool, encode,
// RFC 8785): a change outside mcp.Tool's fields is not seen. The registry's
// pin itself is the hash of the submitted raw JSON.

// Proposer commits a registry command through Raft (cluster.Apply).
type Proposer func(ctx context.Context, cmd []byte) error

// checkVersions starts a definition check of each live version that has
// not been checked since it became live. Only the leader checks.
func (g *Gateway) checkVersions(live []state.ServerVersion) {
	if g.propose == nil || (g.isLeader != nil && !g.isLeader()) {
		return
	}
	now := g.now()
	keys := map[string]bool{}
	for _, sv := range live {
		keys[sv.Server+"@"+sv.Version+"#"+sv.CardHash] = true
	}
	g.checkMu.Lock()
	for k := range g.checked {
		if !keys[k] {
			delete(g.checked, k) // no longer live: check afresh if it returns
		}
	}
	g.checkMu.Unlock()
	for _, sv := range live {
		key := sv.Server + "@" + sv.Version + "#" + sv.CardHash
		g.checkMu.Lock()
		last, seen := g.checked[key]
		due := !seen || now.Sub(last) >= g.cfg.CheckInterval
		if due {
			g.checked[key] = now
		}
		g.checkMu.Unlock()
		if !due {
			continue
		}
		g.bg.Add(1)
		go func() {
			defer g.bg.Done()
			g.checkVersion(sv)
		}()
	}
}

// checkRetry is how soon a definition check that could not reach its
// upstream is tried again.
const checkRetry = 5 * time.Second

// checkVersion compares one version's live tools with its pinned ones.
func (g *Gateway) checkVersion(sv state.ServerVersion) {
	ctx, cancel := context.WithTimeout(g.life, 30*time.Second)
	defer cancel()
	live, err := g.pool.ListTools(ctx, targetOf(sv))
	if err != nil {
		// Unreachable now (or no token yet): check again in
		// checkRetry, not at every registry change meanwhile.
		retry := min(checkRetry, g.cfg.CheckInterval)
		g.logger.Warn("gateway: cannot check the live tool definitions; checking again shortly", "server", sv.Server, "version", sv.Version, "retry_in", retry, "error", err)
		now := g.now()
		g.checkMu.Lock()
		g.checked[sv.Server+"@"+sv.Version+"#"+sv.CardHash] = now.Add(retry - g.cfg.CheckInterval)
		if g.retryAt.IsZero() || !g.retryAt.After(now) || now.Add(retry).Before(g.retryAt) {
			g.retryAt = now.Add(retry)
		}
		g.checkMu.Unlock()
		return
	}
	pinned, err := g.fsm.ToolVersions(sv.Server, sv.Version)
	if err != nil {
		return
	}
	liveByName := map[string]json.RawMessage{}
	for _, t := range live {
		raw, err := json.Marshal(t)
		if err == nil {
			liveByName[t.Name] = raw
		}
	}
	var changed []string
	for _, tv := range pinned {
		got, ok := liveByName[tv.Name]
		if !ok {
			changed = append(changed, tv.Name+" (missing upstream)")
			continue
		}
		want, err := normalizedHash(tv.Definition)
		if err != nil {
			continue
		}
		have, err := normalizedHash(got)
		if err != nil || have != want {
			changed = append(changed, fmt.Sprintf("%s (pinned %s, live %s)", tv.Name, short(want), short(have)))
		}
	}
	if len(changed) == 0 {
		g.logger.Info("gateway: live tool definitions match the pinned ones", "server", sv.Server, "version", sv.Version, "tools", len(pinned))
		return
	}
	sort.Strings(changed)
	reason := "rug pull: the upstream changed tool definitions under this approved version: " + strings.Join(changed, "; ")
	g.logger.Error("gateway: tool definitions changed under a pinned version; quarantining it", "server", sv.Server, "version", sv.Version, "tools", strings.Join(changed, "; "))
	g.metrics.rugPull(g.cfg.Namespace, sv.Server)
	cmd, err := state.Encode(state.Transition{Server: sv.Server, Version: sv.Version, To: card.StateQuarantined, By: "mcpmesh:definition-check", At: g.now().UTC(), Reason: reason})
	if err != nil {
		return
	}
	if err := g.propose(ctx, cmd); err != nil {
		g.logger.Error("gateway: could not quarantine the version; it stays served until the next check", "server", sv.Server, "version", sv.Version, "error", err)
		g.checkMu.Lock()
		delete(g.checked, sv.Server+"@"+sv.Version+"#"+sv.CardHash)
		g.checkMu.Unlock()
	}
}

// normalizedHash hashes a tool definition after decoding it into mcp.Tool
// and encoding it again, so registry and live definitions compare alike.
func normalizedHash(def json.RawMessage) (string, error) {
	t, err := toolFromDefinition(def)
	if err != nil {
		return "", err
	}
	// Schemas are raw JSON here; decode them so both sides encode alike.
	var in, out any
	json.Unmarshal(t.InputSchema.(json.RawMessage), &in)
	t.InputSchema = in
	if raw, ok := t.OutputSchema.(json.RawMessage); ok {
		json.Unmarshal(raw, &out)
		t.OutputSchema = out
	}
	enc, err := json.Marshal(t)
	if err != nil {
		return "", err
	}
	return card.CanonicalHash(enc)
}

func short(hash string) string {
	if len(hash) > 19 {
		return hash[:19]
	}
	return hash
}
