package state

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/cockroachdb/pebble/v2"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/mcpmesh/mcpmesh/registry/card"
)

// Exports: what this namespace shares with other BUs (trust domains).
//
// Keys: "e\x00set" holds the export set, replaced whole by PutExports;
// "e\x00cat\x00<trust domain>" holds each consumer's catalog mark (the
// version and hash of what it is exported), which the state machine
// keeps current on every command that can change an exported catalog.
var (
	keyExports         = []byte("e\x00set")
	prefixCatalogMarks = []byte("e\x00cat\x00")
)

func catalogMarkKey(td string) []byte { return []byte("e\x00cat\x00" + td) }

// Export bounds.
const (
	// MaxExports bounds the entries of an export set.
	MaxExports = 1000
	// MaxExportTools bounds the tool names of one export.
	MaxExportTools = 256
	// MaxExportConsumers bounds the consumers of one export.
	MaxExportConsumers = 64
	// maxScopeLen bounds one OAuth scope.
	maxScopeLen = 128
)

// Export shares tools of one server of this namespace with other trust
// domains. Sharing is deny by default: only the tools named, at the
// versions matched, reach the consumers listed.
type Export struct {
	// Server is a registry server name of this namespace, such as
	// "corp.finance/ledger".
	Server string `json:"server"`
	// Tools names the exported tools, each exactly; there is no wildcard,
	// so a tool added in a later version is never shared by accident.
	Tools []string `json:"tools"`
	// Versions selects the server versions: each an exact version
	// ("2.1.0"), a major ("2.x") or a minor ("2.1.x"), matching by the
	// numbers of MAJOR.MINOR.PATCH (a prerelease of a matched version
	// matches too). Empty: every version. Either way only live versions
	// (approved or deprecated) are ever exported, and a tool a kill switch
	// stops is listed apart as killed, without its definition.
	Versions []string `json:"versions,omitempty"`
	// To lists the consumers.
	To []Consumer `json:"to"`
}

// Consumer is one trust domain an export shares with, optionally only for
// some of its principals and with some scopes.
type Consumer struct {
	// TrustDomain is the consumer BU's trust domain, such as
	// "hr.example.corp".
	TrustDomain string `json:"trust_domain"`
	// Principals, when set, limits the export to callers whose principal
	// id starts with one of these prefixes, such as "oidc:" or
	// "spiffe://hr.example.corp/agent/". Empty: every caller of the
	// consumer BU.
	Principals []string `json:"principals,omitempty"`
	// Scopes, when set, are scopes every call must carry.
	Scopes []string `json:"scopes,omitempty"`
}

// Exports is the export set of the namespace, replaced as a whole.
type Exports struct {
	// Exports are sorted by server, in the order given within a server.
	Exports   []Export  `json:"exports"`
	UpdatedBy string    `json:"updatedBy,omitempty"`
	UpdatedAt time.Time `json:"updatedAt,omitzero"`
	// ModifyIndex is the Raft index of the change; zero before the first.
	ModifyIndex uint64 `json:"modifyIndex"`
}

// PutExports replaces the export set; an empty Exports stops all sharing.
type PutExports struct {
	Exports []Export  `json:"exports"`
	By      string    `json:"by"`
	At      time.Time `json:"at"`
}

// versionPattern is a parsed Versions entry: the leading numbers it fixes
// (1 to 3 of MAJOR, MINOR, PATCH).
type versionPattern []string

// parseVersionPattern reads "2.x", "2.1.x" or an exact version "2.1.0".
func parseVersionPattern(s string) (versionPattern, bool) {
	if card.ValidateVersion(s) == nil {
		core, _, _ := strings.Cut(s, "-")
		if core != s {
			return nil, false // a prerelease is not a pattern; pin its release
		}
		return strings.Split(core, "."), true
	}
	head, ok := strings.CutSuffix(s, ".x")
	if !ok {
		return nil, false
	}
	parts := strings.Split(head, ".")
	if len(parts) > 2 {
		return nil, false
	}
	for _, p := range parts {
		if n, err := strconv.ParseUint(p, 10, 63); err != nil || strconv.FormatUint(n, 10) != p {
			return nil, false
		}
	}
	return parts, true
}

// matches reports whether an exact version v matches the pattern.
func (p versionPattern) matches(v string) bool {
	core, _, _ := strings.Cut(v, "-")
	parts := strings.Split(core, ".")
	return len(parts) >= len(p) && slices.Equal(parts[:len(p)], []string(p))
}

// overlaps reports whether two patterns can match one version.
func (p versionPattern) overlaps(q versionPattern) bool {
	n := min(len(p), len(q))
	return slices.Equal(p[:n], q[:n])
}

// MatchesVersion reports whether the export covers version v of its
// server (the version's state aside).
func (e Export) MatchesVersion(v string) bool {
	if len(e.Versions) == 0 {
		return true
	}
	for _, s := range e.Versions {
		if p, ok := parseVersionPattern(s); ok && p.matches(v) {
			return true
		}
	}
	return false
}

// patterns returns the export's version patterns; nil is every version.
func (e Export) patterns() []versionPattern {
	var out []versionPattern
	for _, s := range e.Versions {
		if p, ok := parseVersionPattern(s); ok {
			out = append(out, p)
		}
	}
	return out
}

// ValidateTrustDomain checks a trust domain name such as hr.example.corp.
func ValidateTrustDomain(td string) error {
	if _, err := spiffeid.TrustDomainFromString(td); err != nil || strings.Contains(td, "://") {
		return errorf(KindInvalid, "trust domain %q: want a trust domain name such as hr.example.corp (lower-case letters, digits, '.', '-' and '_', no spiffe://)", td)
	}
	return nil
}

// ValidateExport checks one export.
func ValidateExport(e Export) error {
	if !card.ValidServerName(e.Server) {
		return errorf(KindInvalid, "server %q: want a registry server name <namespace>/<server>, e.g. corp.finance/ledger", e.Server)
	}
	if len(e.Tools) == 0 {
		return errorf(KindInvalid, "export of %s: tools is required: name each tool to share (deny by default; there is no wildcard)", e.Server)
	}
	if len(e.Tools) > MaxExportTools {
		return errorf(KindInvalid, "export of %s: %d tools, at most %d", e.Server, len(e.Tools), MaxExportTools)
	}
	seen := map[string]bool{}
	for _, t := range e.Tools {
		if !card.ValidToolName(t) {
			return errorf(KindInvalid, "export of %s: tool %q: want a tool name of 1-128 letters, digits, '_', '.' and '-' (no wildcard: name each tool)", e.Server, t)
		}
		if seen[t] {
			return errorf(KindInvalid, "export of %s: tool %s is named twice", e.Server, t)
		}
		seen[t] = true
	}
	for _, v := range e.Versions {
		if _, ok := parseVersionPattern(v); !ok {
			return errorf(KindInvalid, "export of %s: version %q: want an exact version such as 2.1.0, a major such as 2.x or a minor such as 2.1.x (leave versions out for every version)", e.Server, v)
		}
	}
	if len(e.To) == 0 {
		return errorf(KindInvalid, "export of %s: to is required: name at least one consumer trust domain", e.Server)
	}
	if len(e.To) > MaxExportConsumers {
		return errorf(KindInvalid, "export of %s: %d consumers, at most %d", e.Server, len(e.To), MaxExportConsumers)
	}
	tds := map[string]bool{}
	for _, c := range e.To {
		if err := ValidateTrustDomain(c.TrustDomain); err != nil {
			return errorf(KindInvalid, "export of %s: %s", e.Server, err.Error())
		}
		if tds[c.TrustDomain] {
			return errorf(KindInvalid, "export of %s: trust domain %s is listed twice; list each consumer once", e.Server, c.TrustDomain)
		}
		tds[c.TrustDomain] = true
		for _, p := range c.Principals {
			if p == "" || len(p) > maxPrincipalLen || strings.IndexFunc(p, func(r rune) bool { return unicode.IsControl(r) || unicode.IsSpace(r) }) >= 0 {
				return errorf(KindInvalid, "export of %s to %s: principal prefix %q: want a non-empty prefix of principal ids without spaces, at most %d characters, such as oidc: or spiffe://%s/agent/", e.Server, c.TrustDomain, p, maxPrincipalLen, c.TrustDomain)
			}
		}
		for _, s := range c.Scopes {
			if !validScope(s) {
				return errorf(KindInvalid, "export of %s to %s: scope %q: want an OAuth scope token (printable ASCII without spaces, quotes or backslashes, at most %d characters), such as reports:read", e.Server, c.TrustDomain, s, maxScopeLen)
			}
		}
	}
	return nil
}

// validScope reports whether s is an RFC 6749 scope token.
func validScope(s string) bool {
	if s == "" || len(s) > maxScopeLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// ValidateExports checks every export and that no tool of a server is
// granted to one trust domain by two exports whose versions overlap (the
// principals and scopes of a call would be ambiguous).
func ValidateExports(es []Export) error {
	if len(es) > MaxExports {
		return errorf(KindInvalid, "%d exports, at most %d", len(es), MaxExports)
	}
	type grant struct{ server, tool, td string }
	granted := map[grant][]int{}
	for i, e := range es {
		if err := ValidateExport(e); err != nil {
			return errorf(KindInvalid, "export %d: %s", i+1, err.Error())
		}
		for _, t := range e.Tools {
			for _, c := range e.To {
				g := grant{e.Server, t, c.TrustDomain}
				for _, j := range granted[g] {
					if exportsOverlap(es[j], e) {
						return errorf(KindInvalid, "export %d: tool %s of %s is also exported to %s by export %d at overlapping versions; give each tool one export per consumer and version", i+1, t, e.Server, c.TrustDomain, j+1)
					}
				}
				granted[g] = append(granted[g], i)
			}
		}
	}
	return nil
}

func exportsOverlap(a, b Export) bool {
	pa, pb := a.patterns(), b.patterns()
	if len(pa) == 0 || len(pb) == 0 {
		return true
	}
	for _, p := range pa {
		for _, q := range pb {
			if p.overlaps(q) {
				return true
			}
		}
	}
	return false
}

// SortExports sorts exports by server, keeping the given order within a
// server, as the registry stores them.
func SortExports(es []Export) {
	slices.SortStableFunc(es, func(a, b Export) int { return cmp.Compare(a.Server, b.Server) })
}

func (f *FSM) applyPutExports(b *pebble.Batch, index uint64, c PutExports) any {
	if err := ValidateExports(c.Exports); err != nil {
		return err
	}
	es := slices.Clone(c.Exports)
	if es == nil {
		es = []Export{}
	}
	SortExports(es)
	cur, found := mustGet[Exports](b, keyExports)
	if found && exportsEqual(cur.Exports, es) {
		return ApplyResult{Index: index, Unchanged: true}
	}
	mustStage(setJSON(b, keyExports, Exports{Exports: es, UpdatedBy: c.By, UpdatedAt: c.At, ModifyIndex: index}))
	return ApplyResult{Index: index}
}

func exportsEqual(a, b []Export) bool {
	ra, _ := json.Marshal(a)
	rb, _ := json.Marshal(b)
	return string(ra) == string(rb)
}

// Exports returns the export set; a registry that never had one returns
// the zero Exports (nothing exported).
func (f *FSM) Exports() (Exports, error) {
	es, err := getOne[Exports](f, keyExports, func() error { return nil })
	if es.Exports == nil {
		es.Exports = []Export{}
	}
	return es, err
}

// ExportedTool is one tool version as an exporting BU shares it with one
// consumer trust domain: what the consumer needs to list it, validate
// calls against it, and pin it.
type ExportedTool struct {
	// Server, Version and Name identify the tool version at the exporter.
	Server  string `json:"server"`
	Version string `json:"version"`
	Name    string `json:"name"`
	// Definition is the tool's definition exactly as the exporter pinned
	// it (name, description, schemas, annotations), and Hash its pin:
	// card.CanonicalHash(Definition).
	Definition json.RawMessage `json:"definition"`
	Hash       string          `json:"hash"`
	// State is approved or deprecated; Deprecation is set when deprecated
	// (the consumer hides it after the sunset).
	State       card.State        `json:"state"`
	Deprecation *card.Deprecation `json:"deprecation,omitempty"`
	// Principals and Scopes are the export's limits for this consumer:
	// the exporter enforces them on every call; the consumer may use
	// them to list the tool only to callers who can call it.
	Principals []string `json:"principals,omitempty"`
	Scopes     []string `json:"scopes,omitempty"`
}

// CatalogMark is the version and hash of the catalog exported to one
// consumer trust domain.
type CatalogMark struct {
	TrustDomain string `json:"trustDomain"`
	// Version is the Raft index of the last command that changed what the
	// consumer is exported: the same on every replica, rising on every
	// change. Zero: nothing was ever exported to it.
	Version uint64 `json:"version"`
	// Hash is CatalogHashOf the exported tools and the killed entries.
	Hash string `json:"hash"`
}

// ExportedCatalog is what one consumer trust domain is exported, as of one
// applied state.
type ExportedCatalog struct {
	CatalogMark
	// Tools are sorted by server, version precedence and name.
	Tools []ExportedTool `json:"tools"`
	// Killed are the tools Tools would hold but for a kill switch, sorted
	// by server and name; Hash is CatalogHashOf(Tools, Killed).
	Killed []KilledTool `json:"killed,omitempty"`
}

// CatalogHash is the hash of an exported tool list: card.CanonicalHash of
// its JSON. An empty list has a hash too.
func CatalogHash(tools []ExportedTool) (string, error) {
	if tools == nil {
		tools = []ExportedTool{}
	}
	raw, err := json.Marshal(tools)
	if err != nil {
		return "", fmt.Errorf("hash catalog: %w", err)
	}
	return card.CanonicalHash(raw)
}

// liveState reports whether a version in state s answers calls.
func liveState(s card.State) bool { return s == card.StateApproved || s == card.StateDeprecated }

// buildCatalog lists what the export set es shares with trust domain td,
// reading the registry from r: the named tools of each matching live
// version of each exported server, and apart, sorted by server and name,
// those of them that a kill switch stops (the server's or the tool's),
// without definitions (exportkills.go). It is a pure function of the
// state, so every replica builds the same catalog.
func buildCatalog(r pebble.Reader, es []Export, td string) ([]ExportedTool, []KilledTool, error) {
	out := []ExportedTool{}
	var killed []KilledTool
	seen, seenKilled := map[string]bool{}, map[string]bool{}
	for _, e := range es {
		ci := slices.IndexFunc(e.To, func(c Consumer) bool { return c.TrustDomain == td })
		if ci < 0 {
			continue
		}
		con := e.To[ci]
		versions, err := scan[ServerVersion](r, []byte("v\x00"+e.Server+"\x00"))
		if err != nil {
			return nil, nil, err
		}
		for _, sv := range versions {
			if !liveState(sv.State) || !e.MatchesVersion(sv.Version) {
				continue
			}
			for _, ref := range sv.Tools {
				if !slices.Contains(e.Tools, ref.Name) {
					continue
				}
				id := sv.Server + "\x00" + sv.Version + "\x00" + ref.Name
				if seen[id] {
					continue
				}
				if k, found, err := exportKill(r, sv.Server, ref.Name); err != nil {
					return nil, nil, err
				} else if found {
					seen[id] = true
					if kid := sv.Server + "\x00" + ref.Name; !seenKilled[kid] {
						seenKilled[kid] = true
						killed = append(killed, KilledTool{Server: sv.Server, Name: ref.Name, Scope: k.Kind, Reason: k.Reason, At: k.At.UTC()})
					}
					continue
				}
				tv, found, err := getJSON[card.ToolVersion](r, toolKey(sv.Server, sv.Version, ref.Name))
				if err != nil {
					return nil, nil, err
				}
				if !found {
					continue
				}
				seen[id] = true
				out = append(out, ExportedTool{
					Server: sv.Server, Version: sv.Version, Name: ref.Name,
					Definition: tv.Definition, Hash: tv.Hash,
					State: sv.State, Deprecation: sv.Deprecation,
					Principals: con.Principals, Scopes: con.Scopes,
				})
			}
		}
	}
	SortExportedTools(out)
	SortKilledTools(killed)
	return out, killed, nil
}

// SortExportedTools sorts tools by server, version precedence and name.
func SortExportedTools(ts []ExportedTool) {
	slices.SortStableFunc(ts, func(a, b ExportedTool) int {
		return cmp.Or(cmp.Compare(a.Server, b.Server), card.CompareVersions(a.Version, b.Version), cmp.Compare(a.Name, b.Name))
	})
}

func hasKey(r pebble.Reader, key []byte) (bool, error) {
	_, closer, err := r.Get(key)
	if err == pebble.ErrNotFound {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %q: %w", key, err)
	}
	closer.Close()
	return true, nil
}

// catalogCommands are the commands that can change an exported catalog:
// a version's state, a kill switch, the export set.
func catalogCommand(t CommandType) bool {
	switch t {
	case CmdTransition, CmdPutKill, CmdRevive, CmdPutExports:
		return true
	}
	return false
}

// markCatalogs keeps every consumer's catalog mark current after a
// command of type t at index changed the state (res). It runs inside the
// batch of the command, so the marks move atomically with what they
// describe, at the same index on every replica.
func (f *FSM) markCatalogs(b *pebble.Batch, index uint64, t CommandType, res any) {
	if r, ok := res.(ApplyResult); !ok || r.Unchanged || !catalogCommand(t) {
		return
	}
	es, _ := mustGet[Exports](b, keyExports)
	marks, err := scan[CatalogMark](b, prefixCatalogMarks)
	if err != nil {
		panic(fmt.Sprintf("registry state: read catalog marks: %v", err))
	}
	tds := map[string]CatalogMark{}
	for _, m := range marks {
		tds[m.TrustDomain] = m
	}
	for _, e := range es.Exports {
		for _, c := range e.To {
			if _, ok := tds[c.TrustDomain]; !ok {
				tds[c.TrustDomain] = CatalogMark{TrustDomain: c.TrustDomain}
			}
		}
	}
	for td, m := range tds {
		tools, killed, err := buildCatalog(b, es.Exports, td)
		if err != nil {
			panic(fmt.Sprintf("registry state: build catalog for %s: %v", td, err))
		}
		h, err := CatalogHashOf(tools, killed)
		if err != nil {
			panic(fmt.Sprintf("registry state: %v", err))
		}
		if h == m.Hash {
			continue
		}
		if m.Version == 0 && len(tools) == 0 && len(killed) == 0 {
			continue // never exported anything: no mark needed
		}
		mustStage(setJSON(b, catalogMarkKey(td), CatalogMark{TrustDomain: td, Version: index, Hash: h}))
	}
}

// ExportedCatalog returns what the namespace exports to trust domain td,
// read from one consistent view of the state. A trust domain never
// exported anything has version 0 and no tools. The catalog is built
// once per applied index (memo.go): the exporting node checks every
// forwarded tools/call against it, and building it reads and decodes
// every exported tool's definition. It is shared: callers must not
// modify it.
func (f *FSM) ExportedCatalog(td string) (ExportedCatalog, error) {
	return f.exportedCatalogs.get(f, td, func() (ExportedCatalog, error) { return f.exportedCatalog(td) })
}

func (f *FSM) exportedCatalog(td string) (ExportedCatalog, error) {
	f.mu.RLock()
	snap := f.db.NewSnapshot()
	f.mu.RUnlock()
	defer snap.Close()
	m, found, err := getJSON[CatalogMark](snap, catalogMarkKey(td))
	if err != nil {
		return ExportedCatalog{}, fmt.Errorf("read catalog mark of %s: %w", td, err)
	}
	es, _, err := getJSON[Exports](snap, keyExports)
	if err != nil {
		return ExportedCatalog{}, fmt.Errorf("read exports: %w", err)
	}
	tools, killed, err := buildCatalog(snap, es.Exports, td)
	if err != nil {
		return ExportedCatalog{}, err
	}
	if !found {
		// Only a state older than catalog marks has tools without one.
		m = CatalogMark{TrustDomain: td}
		if len(tools) > 0 || len(killed) > 0 {
			m.Version = es.ModifyIndex
		}
		if m.Hash, err = CatalogHashOf(tools, killed); err != nil {
			return ExportedCatalog{}, err
		}
	}
	return ExportedCatalog{CatalogMark: m, Tools: tools, Killed: killed}, nil
}

// CatalogVersion returns the version of what is exported to td (zero when
// nothing ever was): cheap, for long polls.
func (f *FSM) CatalogVersion(td string) (uint64, error) {
	m, err := getOne[CatalogMark](f, catalogMarkKey(td), func() error { return nil })
	return m.Version, err
}

// CatalogMarks returns the catalog mark of every trust domain ever
// exported to, by trust domain.
func (f *FSM) CatalogMarks() ([]CatalogMark, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return scan[CatalogMark](f.db, prefixCatalogMarks)
}

// ConsumerTrustDomains returns the trust domains the export set names,
// sorted.
func (es Exports) ConsumerTrustDomains() []string {
	var out []string
	for _, e := range es.Exports {
		for _, c := range e.To {
			out = append(out, c.TrustDomain)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
