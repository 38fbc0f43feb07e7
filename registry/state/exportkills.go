package state

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/mcpmesh/mcpmesh/registry/card"
)

// Killed exports: a tool that an export shares with a consumer, at a live
// version, but that a kill switch of the exporting namespace stops (its
// server's switch or its own) is not left out of that consumer's catalog
// in silence: the catalog lists it apart, in its own list of killed
// entries, with the switch's scope, reason and time, so the consumer can
// tell its agents the tool exists and is switched off, and why, instead
// of "unknown tool". The entry carries no definition and is never in the
// list of exported tools, so a reader that does not know the list (or
// ignores it) never sees a killed tool as callable. Who pulled the switch
// stays inside the exporting BU.

// KilledTool is an exported tool that a kill switch of the exporting
// namespace stops, at every version, as a consumer sees it.
type KilledTool struct {
	// Server and Name identify the tool at the exporter.
	Server string `json:"server"`
	Name   string `json:"name"`
	// Scope is the switch: KillServer (its server is killed) or KillTool
	// (this tool is). When both are pulled, the server's.
	Scope KillKind `json:"scope"`
	// Reason and At are the switch's.
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// MCPName is the tool's name on /mcp for its origin namespace, as if it
// were live: "<namespace>.<tool>".
func (k KilledTool) MCPName(namespace string) string { return namespace + "." + k.Name }

// Switch names the kill switch as the exporter names it: the server, or
// "<server>/<tool>".
func (k KilledTool) Switch() string {
	if k.Scope == KillServer {
		return k.Server
	}
	return k.Server + "/" + k.Name
}

// SortKilledTools sorts killed entries by server and name.
func SortKilledTools(ks []KilledTool) {
	slices.SortStableFunc(ks, func(a, b KilledTool) int {
		return cmp.Or(cmp.Compare(a.Server, b.Server), cmp.Compare(a.Name, b.Name))
	})
}

// CatalogHashOf is the hash of a catalog with its killed entries: with
// none it is CatalogHash(tools), so catalogs without kills keep the hash
// they always had; otherwise card.CanonicalHash of the JSON object
// {"tools": tools, "killed": killed}. A kill, its lifting and a change of
// its reason each change it.
func CatalogHashOf(tools []ExportedTool, killed []KilledTool) (string, error) {
	if len(killed) == 0 {
		return CatalogHash(tools)
	}
	if tools == nil {
		tools = []ExportedTool{}
	}
	raw, err := json.Marshal(struct {
		Tools  []ExportedTool `json:"tools"`
		Killed []KilledTool   `json:"killed"`
	}{tools, killed})
	if err != nil {
		return "", fmt.Errorf("hash catalog: %w", err)
	}
	return card.CanonicalHash(raw)
}

// exportKill returns the switch that stops tool of server, if any: the
// server's first.
func exportKill(r pebble.Reader, server, tool string) (Kill, bool, error) {
	if k, found, err := getJSON[Kill](r, killKey(KillServer, server)); err != nil || found {
		return k, found, err
	}
	return getJSON[Kill](r, killKey(KillTool, server+"/"+tool))
}

// ValidateKilledTool checks a killed entry of a catalog imported from
// origin namespace: its names (the /mcp name "<namespace>.<tool>"
// included), its scope, and its reason as the kill switch's rules have it.
func ValidateKilledTool(namespace string, k KilledTool) error {
	switch {
	case !card.ValidServerName(k.Server):
		return errorf(KindInvalid, "killed tool: server %q is not a registry server name", k.Server)
	case !card.ValidToolName(k.Name) || !card.ValidToolName(k.MCPName(namespace)):
		return errorf(KindInvalid, "killed tool %s %q: its /mcp name %q must be 1-128 letters, digits, '_', '.' and '-'", k.Server, k.Name, k.MCPName(namespace))
	case k.Scope != KillServer && k.Scope != KillTool:
		return errorf(KindInvalid, "killed tool %s %s: scope %q: want server or tool", k.Server, k.Name, k.Scope)
	}
	if err := ValidateKillReason(k.Reason); err != nil {
		return errorf(KindInvalid, "killed tool %s %s: %v", k.Server, k.Name, err)
	}
	return nil
}

// ValidateKilledImports checks the killed entries of one origin's
// imports: each well formed (ValidateKilledTool), none listed twice, none
// also among the live tools.
func ValidateKilledImports(namespace string, tools []ImportedTool, killed []KilledTool) error {
	if len(killed) > MaxImportedTools {
		return errorf(KindInvalid, "imports of %s: %d killed tools, at most %d", namespace, len(killed), MaxImportedTools)
	}
	live := map[string]bool{}
	for _, t := range tools {
		live[t.Server+"\x00"+t.Name] = true
	}
	seen := map[string]bool{}
	for _, k := range killed {
		if err := ValidateKilledTool(namespace, k); err != nil {
			return err
		}
		id := k.Server + "\x00" + k.Name
		if seen[id] {
			return errorf(KindInvalid, "imports of %s: killed tool %s %s is listed twice", namespace, k.Server, k.Name)
		}
		if live[id] {
			return errorf(KindInvalid, "imports of %s: tool %s %s is both live and killed", namespace, k.Server, k.Name)
		}
		seen[id] = true
	}
	return nil
}
