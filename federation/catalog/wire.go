package catalog

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/mcpmesh/mcpmesh/node/validate"
	"github.com/mcpmesh/mcpmesh/registry/card"
	"github.com/mcpmesh/mcpmesh/registry/state"
)

// Path is where the exporter's handler is mounted on the peer listener.
const Path = "/federation/v1/catalog"

// MaxCatalogBytes bounds a catalog message, as sent and as read.
const MaxCatalogBytes = 16 << 20

// MaxDefinitionBytes bounds one tool definition in a catalog.
const MaxDefinitionBytes = 256 << 10

// maxListItems bounds a tool's principal prefixes and scopes.
const maxListItems = 64

// VersionHeader carries the catalog version on every answer, 304 too.
const VersionHeader = "Mcpmesh-Catalog-Version"

// KilledParam is the query parameter ("killed=1") by which a consumer
// asks for the killed entries (Catalog.Killed). An exporter leaves them
// out for a consumer that does not ask, so a consumer that predates them
// gets the catalog it always got: its strict decoder would refuse the
// unknown field, and with it every later catalog while a kill lasts.
const KilledParam = "killed"

// Catalog is the catalog sync message: what one BU exports to one
// consumer trust domain, at one version. It is the body of a 200 answer
// on Path.
type Catalog struct {
	// Consumer is the trust domain the catalog was built for (the mTLS
	// peer's).
	Consumer string `json:"consumer"`
	// Version is the catalog version: the exporter's Raft index of the
	// last change to what Consumer is exported, rising on every change and
	// the same on every replica of the exporter. Zero: nothing was ever
	// exported to Consumer.
	Version uint64 `json:"version"`
	// Hash is state.CatalogHashOf(Tools, Killed) (state.CatalogHash(Tools)
	// when Killed is empty); ShortHash its first 12 hex digits.
	Hash string `json:"hash"`
	// Tools are the exported tool versions.
	Tools []state.ExportedTool `json:"tools"`
	// Killed are the tools the exporter would export but has switched off
	// with a kill switch, apart from Tools so that a reader that skips
	// them never takes one for callable. Sent only to a consumer that asks
	// (KilledParam).
	Killed []state.KilledTool `json:"killed,omitempty"`
}

// ShortHash is the first 12 hex digits of a catalog hash, for gossip hints
// and logs.
func ShortHash(hash string) string {
	h := strings.TrimPrefix(hash, "sha256:")
	if len(h) > 12 {
		h = h[:12]
	}
	return h
}

// DecodeError is a catalog the consumer refuses: malformed, too large, or
// with a tool that does not hold up.
type DecodeError struct {
	// Field locates the problem, such as "tools[3].definition".
	Field  string
	Reason string
}

// Error says what was refused and why.
func (e *DecodeError) Error() string {
	if e.Field == "" {
		return "catalog refused: " + e.Reason
	}
	return "catalog refused: " + e.Field + ": " + e.Reason
}

func refuse(field, format string, args ...any) error {
	return &DecodeError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// DecodeCatalog parses a catalog message strictly: one JSON object of at
// most MaxCatalogBytes with exactly the fields of Catalog (an unknown field
// is refused), nothing after it. It checks the shape only; Import checks
// the content for one origin. It never panics; every error is a
// *DecodeError.
func DecodeCatalog(raw []byte) (*Catalog, error) {
	if len(raw) > MaxCatalogBytes {
		return nil, refuse("", "%d bytes, more than %d", len(raw), MaxCatalogBytes)
	}
	if !utf8.Valid(raw) {
		return nil, refuse("", "not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var c Catalog
	if err := dec.Decode(&c); err != nil {
		return nil, refuse("", "not a catalog message: %v", err)
	}
	if dec.More() {
		return nil, refuse("", "trailing data after the catalog object")
	}
	return &c, nil
}

// Import checks a decoded catalog from origin namespace ns, sent to trust
// domain self, and returns its tools as this BU stores them, and its
// killed entries sorted by server and name. It refuses the whole catalog
// on the first problem: a catalog built for another trust domain, a hash
// that does not match its tools and killed entries, a killed entry that
// is malformed, listed twice or also live, more than
// state.MaxImportedTools tools, a tool whose server, version or name is
// malformed, whose /mcp name "<ns>.<tool>" is not 1-128 of
// [A-Za-z0-9_.-], listed twice, not approved or deprecated, with a
// definition that does not decode as an MCP tool definition of that name,
// whose schemas are not JSON Schema objects that compile, or whose pin
// does not match its definition. It never panics; every error is a
// *DecodeError.
func (c *Catalog) Import(ns string, self spiffeid.TrustDomain) ([]state.ImportedTool, []state.KilledTool, error) {
	if err := state.ValidateNamespace(ns); err != nil {
		return nil, nil, refuse("", "origin %v", err)
	}
	if c.Consumer != self.Name() {
		return nil, nil, refuse("consumer", "built for %q, not for this trust domain %q", c.Consumer, self.Name())
	}
	if len(c.Tools) > state.MaxImportedTools {
		return nil, nil, refuse("tools", "%d tools, at most %d", len(c.Tools), state.MaxImportedTools)
	}
	if c.Version == 0 && (len(c.Tools) > 0 || len(c.Killed) > 0) {
		return nil, nil, refuse("version", "0 with tools")
	}
	h, err := state.CatalogHashOf(c.Tools, c.Killed)
	if err != nil {
		return nil, nil, refuse("tools", "cannot be hashed: %v", err)
	}
	if h != c.Hash {
		return nil, nil, refuse("hash", "%q does not match the tools (%s)", c.Hash, h)
	}
	out := make([]state.ImportedTool, 0, len(c.Tools))
	seen := map[string]bool{}
	for i, t := range c.Tools {
		field := fmt.Sprintf("tools[%d]", i)
		it, err := importTool(ns, t)
		if err != nil {
			var de *DecodeError
			if errors.As(err, &de) {
				de.Field = strings.TrimSuffix(field+"."+de.Field, ".")
				return nil, nil, de
			}
			return nil, nil, refuse(field, "%v", err)
		}
		id := t.Server + "\x00" + t.Version + "\x00" + t.Name
		if seen[id] {
			return nil, nil, refuse(field, "%s@%s %s is listed twice", t.Server, t.Version, t.Name)
		}
		seen[id] = true
		out = append(out, it)
	}
	slices.SortStableFunc(out, func(a, b state.ImportedTool) int {
		return cmp.Or(cmp.Compare(a.Server, b.Server), card.CompareVersions(a.Version, b.Version), cmp.Compare(a.Name, b.Name))
	})
	if err := state.ValidateKilledImports(ns, out, c.Killed); err != nil {
		return nil, nil, refuse("killed", "%v", err)
	}
	killed := slices.Clone(c.Killed)
	for i := range killed {
		killed[i].At = killed[i].At.UTC()
	}
	state.SortKilledTools(killed)
	return out, killed, nil
}

// importTool checks one exported tool and decodes its definition.
func importTool(ns string, t state.ExportedTool) (state.ImportedTool, error) {
	it := state.ImportedTool{ExportedTool: t}
	if err := state.ValidateImportedTool(ns, it); err != nil {
		return it, &DecodeError{Reason: err.Error()}
	}
	if t.State == card.StateDeprecated {
		if t.Deprecation == nil {
			return it, refuse("deprecation", "a deprecated version needs its deprecation (sunset, replacement)")
		}
		if err := t.Deprecation.Validate(t.Version); err != nil {
			return it, refuse("deprecation", "%v", err)
		}
		if len(t.Deprecation.Note) > 4096 || strings.IndexFunc(t.Deprecation.Note, unicode.IsControl) >= 0 {
			return it, refuse("deprecation.note", "at most 4096 bytes on one line")
		}
	} else if t.Deprecation != nil {
		return it, refuse("deprecation", "set on a version that is %s", t.State)
	}
	for _, l := range []struct {
		name  string
		items []string
	}{{"principals", t.Principals}, {"scopes", t.Scopes}} {
		if len(l.items) > maxListItems {
			return it, refuse(l.name, "%d entries, at most %d", len(l.items), maxListItems)
		}
		for _, s := range l.items {
			if s == "" || len(s) > 512 || strings.IndexFunc(s, func(r rune) bool { return unicode.IsControl(r) || unicode.IsSpace(r) }) >= 0 {
				return it, refuse(l.name, "%q: want a non-empty value of at most 512 characters without spaces", s)
			}
		}
	}
	if len(t.Definition) > MaxDefinitionBytes {
		return it, refuse("definition", "%d bytes, more than %d", len(t.Definition), MaxDefinitionBytes)
	}
	if len(bytes.TrimSpace(t.Definition)) == 0 {
		return it, refuse("definition", "missing")
	}
	// The definition is checked as a one-tool card: the card rules (an
	// object with a name and object schemas, I-JSON so it can be pinned),
	// then the schemas compiled as JSON Schema, as at submission.
	tools, _ := json.Marshal([]json.RawMessage{t.Definition})
	cd := &card.Card{Meta: map[string]json.RawMessage{card.ToolsKey: tools}}
	cd.Name, cd.Version = t.Server, t.Version
	tvs, err := cd.ToolVersions()
	if err != nil {
		return it, refuse("definition", "%v", err)
	}
	if len(tvs) != 1 || tvs[0].Name != t.Name {
		return it, refuse("definition", "does not define the tool %q", t.Name)
	}
	if tvs[0].Hash != t.Hash {
		return it, refuse("hash", "%q does not pin the definition (its hash is %s)", t.Hash, tvs[0].Hash)
	}
	if err := validate.CheckCard(cd); err != nil {
		return it, refuse("definition", "%v", err)
	}
	decoded, err := cd.Tools()
	if err != nil || len(decoded) != 1 {
		return it, refuse("definition", "does not decode: %v", err)
	}
	d := decoded[0]
	it.Definition = tvs[0].Definition
	it.Title, it.Description = d.Title, d.Description
	it.InputSchema, it.OutputSchema, it.Annotations = d.InputSchema, d.OutputSchema, d.Annotations
	return it, nil
}
