package state

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/cockroachdb/pebble/v2"

	"github.com/mcpmesh/mcpmesh/registry/card"
)

// Imports: the tools other BUs export to this one, pulled by the leader.
//
// Keys: "i\x00<namespace>" holds one origin's imports, replaced whole by
// PutImports; "o\x00<namespace>" holds the leader's sync status of that
// origin (PutPeerStatus), so every replica can answer `mcpmesh peers` and
// tell a stale origin.
var (
	prefixImports    = []byte("i\x00")
	prefixPeerStatus = []byte("o\x00")
)

func importsKey(ns string) []byte    { return []byte("i\x00" + ns) }
func peerStatusKey(ns string) []byte { return []byte("o\x00" + ns) }

// DefaultStaleAfter is how long an origin may go without a successful
// catalog sync before its imports are shown stale.
const DefaultStaleAfter = 3 * time.Minute

// Import bounds.
const (
	// MaxImportedTools bounds the tools imported from one origin.
	MaxImportedTools = 4096
	// MaxPeerErrorLen bounds a recorded sync error, in bytes.
	MaxPeerErrorLen = 1024
)

var namespaceName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

// ValidateNamespace checks a BU's namespace name, such as hr: a lower-case
// letter, then lower-case letters, digits and dashes, at most 63.
func ValidateNamespace(ns string) error {
	if !namespaceName.MatchString(ns) {
		return errorf(KindInvalid, "namespace %q: want a lower-case letter, then lower-case letters, digits or dashes, at most 63 characters, such as finance", ns)
	}
	return nil
}

// ImportedTool is one tool version another BU exports to this one, as the
// leader stored it: the exporter's record and the fields of its
// definition, decoded here (never taken from anything but Definition).
type ImportedTool struct {
	ExportedTool
	Title        string          `json:"title,omitempty"`
	Description  string          `json:"description,omitempty"`
	InputSchema  json.RawMessage `json:"inputSchema"`
	OutputSchema json.RawMessage `json:"outputSchema,omitempty"`
	Annotations  json.RawMessage `json:"annotations,omitempty"`
}

// MCPName is the tool's name on /mcp for an origin namespace:
// "<namespace>.<tool>".
func (t ImportedTool) MCPName(namespace string) string { return namespace + "." + t.Name }

// Live reports whether the tool still answers at now: not deprecated past
// its sunset. The sunset is a time, not a state change, so consumers apply
// it with their own clock.
func (t ImportedTool) Live(now time.Time) bool {
	return t.Deprecation == nil || now.Before(t.Deprecation.Sunset)
}

// RefusedTool is a tool version whose definition hash changed under the
// same version at the exporter (a rug pull across BUs): the consumer kept
// the definition it had pinned and refused the new one.
type RefusedTool struct {
	Server  string `json:"server"`
	Version string `json:"version"`
	Name    string `json:"name"`
	// Pinned is the hash kept; Offered the hash refused.
	Pinned  string `json:"pinned"`
	Offered string `json:"offered"`
}

// Imports is what one origin BU exports to this one.
type Imports struct {
	// Namespace and TrustDomain name the origin.
	Namespace   string `json:"namespace"`
	TrustDomain string `json:"trustDomain"`
	// CatalogVersion and Hash are the origin's catalog mark.
	CatalogVersion uint64 `json:"catalogVersion"`
	Hash           string `json:"hash"`
	// Tools are sorted by server, version precedence and name.
	Tools []ImportedTool `json:"tools"`
	// Killed are the tools the origin exports but has switched off with a
	// kill switch, sorted by server and name: never served, and answered
	// as killed (exportkills.go).
	Killed []KilledTool `json:"killed,omitempty"`
	// Refused lists the tools whose new definitions were refused.
	Refused  []RefusedTool `json:"refused,omitempty"`
	SyncedAt time.Time     `json:"syncedAt"`
	// ModifyIndex is the Raft index of the change.
	ModifyIndex uint64 `json:"modifyIndex"`
}

// PutImports replaces what one origin exports to this BU, or with Remove
// deletes it and its sync status (the relationship was revoked).
type PutImports struct {
	Namespace      string         `json:"namespace"`
	TrustDomain    string         `json:"trustDomain"`
	CatalogVersion uint64         `json:"catalogVersion"`
	Hash           string         `json:"hash"`
	Tools          []ImportedTool `json:"tools"`
	Killed         []KilledTool   `json:"killed,omitempty"`
	Refused        []RefusedTool  `json:"refused,omitempty"`
	SyncedAt       time.Time      `json:"syncedAt"`
	Remove         bool           `json:"remove,omitempty"`
}

// PeerStatus is the leader's view of syncing one origin's catalog.
type PeerStatus struct {
	Namespace   string `json:"namespace"`
	TrustDomain string `json:"trustDomain"`
	// LastSuccess is when a sync last succeeded (a new catalog or an
	// answer that nothing changed). The leader records it on a change and
	// otherwise at most once per its status interval.
	LastSuccess time.Time `json:"lastSuccess,omitzero"`
	// LastError is the last sync's error, empty after a success.
	LastError   string    `json:"lastError,omitempty"`
	LastErrorAt time.Time `json:"lastErrorAt,omitzero"`
	// Index is the Raft index of the change.
	Index uint64 `json:"index"`
}

// Stale reports whether the origin has gone more than after without a
// successful sync at now.
func (s PeerStatus) Stale(now time.Time, after time.Duration) bool {
	return s.LastSuccess.IsZero() || now.Sub(s.LastSuccess) > after
}

// PutPeerStatus records the sync status of one origin.
type PutPeerStatus struct {
	Namespace   string    `json:"namespace"`
	TrustDomain string    `json:"trustDomain"`
	LastSuccess time.Time `json:"lastSuccess,omitzero"`
	LastError   string    `json:"lastError,omitempty"`
	LastErrorAt time.Time `json:"lastErrorAt,omitzero"`
}

// ValidateImportedTool checks the identity fields of an imported tool as
// the state machine stores them; the catalog decoder checks the rest.
func ValidateImportedTool(namespace string, t ImportedTool) error {
	switch {
	case !card.ValidServerName(t.Server):
		return errorf(KindInvalid, "imported tool: server %q is not a registry server name", t.Server)
	case card.ValidateVersion(t.Version) != nil:
		return errorf(KindInvalid, "imported tool of %s: version %q is not an exact semantic version", t.Server, t.Version)
	case !card.ValidToolName(t.Name) || !card.ValidToolName(t.MCPName(namespace)):
		return errorf(KindInvalid, "imported tool %s@%s %q: its /mcp name %q must be 1-128 letters, digits, '_', '.' and '-'", t.Server, t.Version, t.Name, t.MCPName(namespace))
	case !strings.HasPrefix(t.Hash, "sha256:") || len(t.Hash) != len("sha256:")+64:
		return errorf(KindInvalid, "imported tool %s@%s %s: hash %q is not a sha256: pin", t.Server, t.Version, t.Name, t.Hash)
	case !liveState(t.State):
		return errorf(KindInvalid, "imported tool %s@%s %s: state %q: only approved and deprecated versions are exported", t.Server, t.Version, t.Name, t.State)
	}
	return nil
}

func (f *FSM) applyPutImports(b *pebble.Batch, index uint64, c PutImports) any {
	if err := ValidateNamespace(c.Namespace); err != nil {
		return err
	}
	key := importsKey(c.Namespace)
	cur, found := mustGet[Imports](b, key)
	if c.Remove {
		if !found {
			if _, st := mustGet[PeerStatus](b, peerStatusKey(c.Namespace)); !st {
				return ApplyResult{Index: index, Unchanged: true}
			}
		}
		mustStage(b.Delete(key, nil))
		mustStage(b.Delete(peerStatusKey(c.Namespace), nil))
		return ApplyResult{Index: index}
	}
	if err := ValidateTrustDomain(c.TrustDomain); err != nil {
		return err
	}
	if len(c.Tools) > MaxImportedTools {
		return errorf(KindInvalid, "imports of %s: %d tools, at most %d", c.Namespace, len(c.Tools), MaxImportedTools)
	}
	for _, t := range c.Tools {
		if err := ValidateImportedTool(c.Namespace, t); err != nil {
			return err
		}
	}
	if err := ValidateKilledImports(c.Namespace, c.Tools, c.Killed); err != nil {
		return err
	}
	if found && cur.TrustDomain == c.TrustDomain {
		if c.CatalogVersion < cur.CatalogVersion {
			return errorf(KindConflict, "imports of %s: catalog version %d is older than the stored %d", c.Namespace, c.CatalogVersion, cur.CatalogVersion)
		}
		// A pinned definition never changes under its version, whatever
		// the exporter says (the importer keeps the old one and records
		// the refusal; this is the last line).
		pinned := map[string]string{}
		for _, t := range cur.Tools {
			pinned[t.Server+"\x00"+t.Version+"\x00"+t.Name] = t.Hash
		}
		for _, t := range c.Tools {
			if h, ok := pinned[t.Server+"\x00"+t.Version+"\x00"+t.Name]; ok && h != t.Hash {
				return errorf(KindConflict, "imports of %s: %s@%s %s: definition hash %s differs from the pinned %s under the same version", c.Namespace, t.Server, t.Version, t.Name, t.Hash, h)
			}
		}
		if cur.CatalogVersion == c.CatalogVersion && cur.Hash == c.Hash && slices.EqualFunc(cur.Refused, c.Refused, func(a, b RefusedTool) bool { return a == b }) &&
			slices.EqualFunc(cur.Killed, c.Killed, func(a, b KilledTool) bool {
				return a.Server == b.Server && a.Name == b.Name && a.Scope == b.Scope && a.Reason == b.Reason && a.At.Equal(b.At)
			}) {
			return ApplyResult{Index: index, Unchanged: true}
		}
	}
	tools := slices.Clone(c.Tools)
	if tools == nil {
		tools = []ImportedTool{}
	}
	mustStage(setJSON(b, key, Imports{
		Namespace: c.Namespace, TrustDomain: c.TrustDomain, CatalogVersion: c.CatalogVersion, Hash: c.Hash,
		Tools: tools, Killed: c.Killed, Refused: c.Refused, SyncedAt: c.SyncedAt, ModifyIndex: index,
	}))
	return ApplyResult{Index: index}
}

func (f *FSM) applyPutPeerStatus(b *pebble.Batch, index uint64, c PutPeerStatus) any {
	if err := ValidateNamespace(c.Namespace); err != nil {
		return err
	}
	if err := ValidateTrustDomain(c.TrustDomain); err != nil {
		return err
	}
	if len(c.LastError) > MaxPeerErrorLen || strings.IndexFunc(c.LastError, unicode.IsControl) >= 0 {
		return errorf(KindInvalid, "peer status of %s: the error must be one line of at most %d bytes", c.Namespace, MaxPeerErrorLen)
	}
	cur, found := mustGet[PeerStatus](b, peerStatusKey(c.Namespace))
	st := PeerStatus{Namespace: c.Namespace, TrustDomain: c.TrustDomain, LastSuccess: c.LastSuccess, LastError: c.LastError, LastErrorAt: c.LastErrorAt, Index: index}
	if found && cur.TrustDomain == st.TrustDomain && cur.LastSuccess.Equal(st.LastSuccess) && cur.LastError == st.LastError && cur.LastErrorAt.Equal(st.LastErrorAt) {
		return ApplyResult{Index: index, Unchanged: true}
	}
	mustStage(setJSON(b, peerStatusKey(c.Namespace), st))
	return ApplyResult{Index: index}
}

// Imports returns what origin namespace ns exports to this BU;
// KindNotFound when nothing is imported from it.
func (f *FSM) Imports(ns string) (Imports, error) {
	return getOne[Imports](f, importsKey(ns), func() error {
		return errorf(KindNotFound, "nothing is imported from namespace %s", ns)
	})
}

// AllImports returns the imports of every origin, by namespace.
func (f *FSM) AllImports() ([]Imports, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return scan[Imports](f.db, prefixImports)
}

// PeerStatuses returns the sync status of every origin, by namespace.
func (f *FSM) PeerStatuses() ([]PeerStatus, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return scan[PeerStatus](f.db, prefixPeerStatus)
}

// PeerStatus returns the sync status of one origin; KindNotFound before
// the first.
func (f *FSM) PeerStatus(ns string) (PeerStatus, error) {
	return getOne[PeerStatus](f, peerStatusKey(ns), func() error {
		return errorf(KindNotFound, "no sync status for namespace %s", ns)
	})
}
