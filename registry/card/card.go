package card

import (
	"encoding/json"
	"errors"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/gowebpki/jcs"
	apiv0 "github.com/modelcontextprotocol/registry/pkg/api/v0"
)

// Keys of mcpmesh's sections in a card's "_meta" object.
const (
	// GovernanceKey holds the Governance section (required).
	GovernanceKey = "io.mcpmesh/governance"
	// ToolsKey holds the tool definitions, a JSON array of Tool (optional).
	ToolsKey = "io.mcpmesh/tools"
)

// mcpmeshPrefix is the "_meta" key prefix reserved for mcpmesh's sections.
const mcpmeshPrefix = "io.mcpmesh/"

// Card is a server.json document plus mcpmesh's "_meta" sections.
//
// Meta shadows ServerJSON.Meta, whose type drops unknown "_meta" keys: every
// key survives a decode and encode, byte for byte apart from insignificant
// whitespace. ServerJSON.Meta is ignored. Use Governance and Tools to read the
// mcpmesh sections. A Card is a plain value: not safe for concurrent
// mutation, safe for concurrent reads.
type Card struct {
	apiv0.ServerJSON
	// Meta holds every "_meta" key with its raw JSON value: GovernanceKey,
	// ToolsKey, publisher-provided metadata and any other.
	Meta map[string]json.RawMessage `json:"_meta,omitempty"`
}

// serverName is the official registry's pattern for server names.
var serverName = regexp.MustCompile(`^[a-zA-Z0-9.-]+/[a-zA-Z0-9._-]+$`)

// ValidServerName reports whether name is a server name a card may have:
// "<namespace>/<server>" of 3 to 200 characters, such as "corp.finance/ledger".
func ValidServerName(name string) bool {
	return len(name) >= 3 && len(name) <= 200 && serverName.MatchString(name)
}

// topLevelKeys are server.json's own keys, for the case check in Parse.
var topLevelKeys = []string{"$schema", "name", "description", "title", "repository", "version", "websiteUrl", "icons", "packages", "remotes", "_meta"}

// Parse decodes a server card and validates it. data must hold exactly one
// JSON object that is I-JSON (RFC 7493: no duplicate keys, valid UTF-8,
// numbers within double range). Unknown top-level keys are accepted and
// dropped, since server.json evolves; a key that differs from a known one
// only in case is refused. Every error Parse returns is a *ValidationError.
func Parse(data []byte) (*Card, error) {
	var ps problems
	switch kind := jsonKind(data); kind {
	case "object":
	case "nothing":
		ps.add("", "the server card is empty: send a server.json document, a JSON object")
		return nil, ps.err()
	default:
		ps.add("", "a server card must be a JSON object (a server.json document), got %s", article(kind))
		return nil, ps.err()
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			ps.add("", "the server card is not valid JSON: %s at byte %d; fix the syntax and send one JSON object with nothing after it", strings.TrimPrefix(se.Error(), "json: "), se.Offset)
		} else {
			ps.add("", "the server card is not valid JSON: %v", err)
		}
		return nil, ps.err()
	}
	if _, err := jcs.Transform(data); err != nil {
		ps.add("", "the server card is not I-JSON (RFC 7493), so readers could disagree about it: %v; remove duplicate keys, fix invalid UTF-8 and keep numbers within the IEEE 754 double range", err)
		return nil, ps.err()
	}
	keys := make([]string, 0, len(top))
	for k := range top {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if slices.Contains(topLevelKeys, k) {
			continue
		}
		for _, known := range topLevelKeys {
			if strings.EqualFold(k, known) {
				ps.add(k, "unknown field: did you mean %q? Field names are case-sensitive", known)
			}
		}
	}
	if len(ps) > 0 {
		return nil, ps.err()
	}
	var c Card
	if err := json.Unmarshal(data, &c); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			ps.add(strings.TrimPrefix(te.Field, "ServerJSON."), "must be %s, got %s; see the server.json schema at %s",
				goKind(te.Type), article(jsonValueKind(te.Value)), "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json")
		} else {
			ps.add("", "the server card cannot be decoded: %v", err)
		}
		return nil, ps.err()
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// goKind names the JSON kind a Go type decodes from, for messages.
func goKind(t reflect.Type) string {
	if t == nil {
		return "another type"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Pointer:
		return goKind(t.Elem())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return "a number"
	default:
		return "another type"
	}
}

// jsonValueKind maps json.UnmarshalTypeError.Value to a JSON kind.
func jsonValueKind(v string) string {
	switch {
	case v == "bool":
		return "boolean"
	case strings.HasPrefix(v, "number"):
		return "number"
	default:
		return v
	}
}

// Validate checks the card against mcpmesh's rules and returns a
// *ValidationError listing every problem, or nil:
//
//   - name is "<namespace>/<server>" matching ^[a-zA-Z0-9.-]+/[a-zA-Z0-9._-]+$,
//     3–200 characters;
//   - description has 1–100 characters, title at most 100;
//   - version passes ValidateVersion;
//   - the governance section is present and valid (see Governance);
//   - tools have unique names matching ^[A-Za-z0-9_.-]{1,128}$, an input
//     schema whose root is an object schema, an output schema that is one
//     when present, and definitions that can be canonicalized for pinning;
//   - "_meta" has no io.mcpmesh/ sections but those two.
func (c *Card) Validate() error {
	var ps problems
	if c == nil {
		ps.add("", "no server card")
		return ps.err()
	}
	if !ValidServerName(c.Name) {
		ps.add("name", `must be "<namespace>/<server>": letters, digits, '.' and '-' before the slash, letters, digits, '.', '_' and '-' after it, 3-200 characters in all, such as "corp.finance/ledger"; got %q`, truncate(c.Name, 220))
	}
	switch n := utf8.RuneCountInString(c.Description); {
	case strings.TrimSpace(c.Description) == "":
		ps.add("description", "is required: say in 1-100 characters what the server does")
	case n > 100:
		ps.add("description", "is %d characters long: shorten it to at most 100", n)
	}
	if n := utf8.RuneCountInString(c.Title); n > 100 {
		ps.add("title", "is %d characters long: shorten it to at most 100", n)
	}
	if err := ValidateVersion(c.Version); err != nil {
		ps.add("version", "%s", versionMessage(err))
	}
	_, gps := decodeGovernance(c.Meta[GovernanceKey])
	ps = append(ps, gps...)
	_, _, tps := validateTools(c.Meta[ToolsKey])
	ps = append(ps, tps...)

	keys := make([]string, 0, len(c.Meta))
	for k := range c.Meta {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if k == GovernanceKey || k == ToolsKey {
			continue
		}
		switch {
		case strings.EqualFold(k, GovernanceKey):
			ps.add("_meta."+k, "unknown section: did you mean %q? Keys are case-sensitive", GovernanceKey)
		case strings.EqualFold(k, ToolsKey):
			ps.add("_meta."+k, "unknown section: did you mean %q? Keys are case-sensitive", ToolsKey)
		case len(k) >= len(mcpmeshPrefix) && strings.EqualFold(k[:len(mcpmeshPrefix)], mcpmeshPrefix):
			ps.add("_meta."+k, "unknown mcpmesh section: the io.mcpmesh/ prefix is reserved and its sections are %s and %s; fix the key or keep your data under a prefix of your own", GovernanceKey, ToolsKey)
		}
	}
	return ps.err()
}
