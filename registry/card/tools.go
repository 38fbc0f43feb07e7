package card

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/gowebpki/jcs"
)

// Tool is an MCP tool definition as the upstream server advertises it in
// tools/list. Keys other than these are accepted and kept in the definition's
// raw JSON (ToolVersion.Definition), which is what the hash pins.
type Tool struct {
	// Name is the tool's name, unique within the server, matching
	// [A-Za-z0-9_.-]{1,128}.
	Name string `json:"name"`
	// Title is an optional display name.
	Title string `json:"title,omitempty"`
	// Description tells a model what the tool does.
	Description string `json:"description,omitempty"`
	// InputSchema is the JSON Schema of the tool's arguments; its root is an
	// object schema ({"type":"object",…}). Required.
	InputSchema json.RawMessage `json:"inputSchema"`
	// OutputSchema is the optional JSON Schema of the tool's structured
	// result; when present its root is an object schema.
	OutputSchema json.RawMessage `json:"outputSchema,omitempty"`
	// Annotations holds optional behaviour hints (readOnlyHint,
	// destructiveHint, …) as a JSON object.
	Annotations json.RawMessage `json:"annotations,omitempty"`
}

// ToolVersion is one tool of one server version, with the hash that pins its
// definition.
type ToolVersion struct {
	// Server is the card's name, such as "corp.finance/ledger".
	Server string `json:"server"`
	// Version is the card's exact semantic version.
	Version string `json:"version"`
	// Name is the tool's name.
	Name string `json:"name"`
	// Definition is the tool's JSON exactly as submitted in the card, not
	// re-marshalled.
	Definition json.RawMessage `json:"definition"`
	// Hash is "sha256:" followed by the lowercase hex SHA-256 of the RFC 8785
	// canonical form of Definition; see CanonicalHash.
	Hash string `json:"hash"`
}

const toolsPath = "_meta." + ToolsKey

// toolKeys are the keys of a tool definition, in the order problems are
// reported.
var toolKeys = []string{"name", "title", "description", "inputSchema", "outputSchema", "annotations"}

var toolName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)

// ValidToolName reports whether name is a tool name a card may define:
// 1 to 128 letters, digits, '_', '.' and '-'.
func ValidToolName(name string) bool { return toolName.MatchString(name) }

// Tools decodes the card's tools section. A card without one has no tools:
// Tools returns nil and no error. The error is a *ValidationError when the
// section or one of its tools does not have the shape of MCP tool
// definitions; Tools does not apply Validate's rules.
func (c *Card) Tools() ([]Tool, error) {
	if c == nil {
		return nil, nil
	}
	tools, _, ps := decodeTools(c.Meta[ToolsKey])
	if err := ps.err(); err != nil {
		return nil, err
	}
	return tools, nil
}

// ToolVersions returns one ToolVersion per tool, in card order, each with the
// tool's raw JSON element from the card as its Definition and the
// CanonicalHash of it. The error is a *ValidationError when the card's name,
// version or tools section break the rules of Validate.
func (c *Card) ToolVersions() ([]ToolVersion, error) {
	if c == nil {
		return nil, &ValidationError{Problems: []Problem{{Message: "no server card"}}}
	}
	tools, raws, ps := validateTools(c.Meta[ToolsKey])
	if c.Name == "" {
		ps.add("name", "is required: the tool versions belong to a named server")
	}
	if err := ValidateVersion(c.Version); err != nil {
		ps.add("version", "%s", versionMessage(err))
	}
	if err := ps.err(); err != nil {
		return nil, err
	}
	out := make([]ToolVersion, 0, len(tools))
	for i, t := range tools {
		hash, err := CanonicalHash(raws[i])
		if err != nil {
			// toolProblems already canonicalized every tool.
			return nil, fmt.Errorf("hash tool %q: %w", t.Name, err)
		}
		out = append(out, ToolVersion{
			Server:     c.Name,
			Version:    c.Version,
			Name:       t.Name,
			Definition: raws[i],
			Hash:       hash,
		})
	}
	return out, nil
}

// CanonicalHash returns "sha256:" followed by the lowercase hex SHA-256 of the
// RFC 8785 (JSON Canonicalization Scheme) form of raw. Key order and
// insignificant whitespace do not change the hash; any change of a name or
// value does. raw must be I-JSON: duplicate keys, invalid UTF-8 and numbers
// outside the IEEE 754 double range are errors.
func CanonicalHash(raw json.RawMessage) (string, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return "", errors.New("canonical hash: no JSON given")
	}
	canonical, err := jcs.Transform(raw)
	if err != nil {
		return "", fmt.Errorf("canonicalize JSON (RFC 8785): %w", err)
	}
	sum := sha256.Sum256(canonical)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// decodeTools decodes a tools section. It returns the decoded tools and their
// raw JSON elements, index for index, and the shape problems found. A missing
// or null section has no tools.
func decodeTools(raw json.RawMessage) ([]Tool, []json.RawMessage, problems) {
	var ps problems
	if isNull(raw) {
		return nil, nil, nil
	}
	if kind := jsonKind(raw); kind != "array" {
		ps.add(toolsPath, "must be a JSON array of MCP tool definitions, got %s", article(kind))
		return nil, nil, ps
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(raw, &raws); err != nil {
		ps.add(toolsPath, "is not valid JSON (%v): send a JSON array of MCP tool definitions", err)
		return nil, nil, ps
	}
	tools := make([]Tool, len(raws))
	for i, elem := range raws {
		t := &tools[i]
		ps = append(ps, decodeObject(elem, toolPath(i), []objectField{
			{"name", &t.Name, "a string"},
			{"title", &t.Title, "a string"},
			{"description", &t.Description, "a string"},
			{"inputSchema", &t.InputSchema, "a JSON Schema object"},
			{"outputSchema", &t.OutputSchema, "a JSON Schema object"},
			{"annotations", &t.Annotations, "an object"},
		}, false)...)
		for _, r := range []*json.RawMessage{&t.InputSchema, &t.OutputSchema, &t.Annotations} {
			if isNull(*r) {
				*r = nil
			}
		}
	}
	return tools, raws, ps
}

// validateTools decodes a tools section and checks it against the card
// rules, reporting problems tool by tool in key order.
func validateTools(raw json.RawMessage) ([]Tool, []json.RawMessage, problems) {
	tools, raws, ps := decodeTools(raw)
	ps = ps.appendNew(toolProblems(tools, raws))
	slices.SortStableFunc(ps, func(a, b Problem) int {
		ia, ib := toolIndex(a.Field), toolIndex(b.Field)
		return cmp.Or(cmp.Compare(ia, ib),
			cmp.Compare(rankPath(a.Field, toolPath(ia), toolKeys), rankPath(b.Field, toolPath(ib), toolKeys)))
	})
	return tools, raws, ps
}

// toolIndex returns i for a field inside toolPath(i), or -1.
func toolIndex(field string) int {
	rest, ok := strings.CutPrefix(field, toolsPath+"[")
	if !ok {
		return -1
	}
	end := strings.IndexByte(rest, ']')
	if end < 0 {
		return -1
	}
	i, err := strconv.Atoi(rest[:end])
	if err != nil {
		return -1
	}
	return i
}

func toolPath(i int) string {
	return fmt.Sprintf("%s[%d]", toolsPath, i)
}

// toolProblems checks decoded tools against the card rules: unique, valid
// names; object input and output schemas; object annotations; and a raw
// definition that can be canonicalized for pinning.
func toolProblems(tools []Tool, raws []json.RawMessage) problems {
	var ps problems
	first := make(map[string]int, len(tools))
	for i, t := range tools {
		path := toolPath(i)
		switch {
		case t.Name == "":
			ps.add(join(path, "name"), "is required: give the tool's name as the upstream advertises it, matching [A-Za-z0-9_.-]{1,128}")
		case !toolName.MatchString(t.Name):
			ps.add(join(path, "name"), "must be 1-128 characters of letters, digits, '_', '.' and '-'; got %q", t.Name)
		default:
			if j, dup := first[t.Name]; dup {
				ps.add(join(path, "name"), "duplicates the name of %s: every tool of a server needs its own name", toolPath(j))
			} else {
				first[t.Name] = i
			}
		}
		ps = append(ps, schemaProblems(join(path, "inputSchema"), t.InputSchema, true, "arguments")...)
		ps = append(ps, schemaProblems(join(path, "outputSchema"), t.OutputSchema, false, "structured results")...)
		if !isNull(t.Annotations) && jsonKind(t.Annotations) != "object" {
			ps.add(join(path, "annotations"), `must be a JSON object of behaviour hints such as {"readOnlyHint":true}, got %s`, article(jsonKind(t.Annotations)))
		}
		if _, err := CanonicalHash(raws[i]); err != nil {
			ps.add(path, "cannot be pinned: %v; remove duplicate keys and keep numbers within the IEEE 754 double range", err)
		}
	}
	return ps
}

// schemaProblems checks that raw, a tool's input or output schema, is a JSON
// object whose "type" is "object". Full JSON Schema validation happens when
// the node compiles the schema.
func schemaProblems(field string, raw json.RawMessage, required bool, what string) problems {
	var ps problems
	const example = `{"type":"object","properties":{…}}`
	if isNull(raw) {
		if required {
			ps.add(field, "is required: give the JSON Schema of the tool's %s, such as %s", what, example)
		}
		return ps
	}
	if kind := jsonKind(raw); kind != "object" {
		ps.add(field, "must be a JSON Schema object such as %s, got %s", example, article(kind))
		return ps
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil {
		ps.add(field, "is not valid JSON (%v): give a JSON Schema object such as %s", err, example)
		return ps
	}
	typeRaw, ok := members["type"]
	var typ string
	if !ok || json.Unmarshal(typeRaw, &typ) != nil || typ != "object" {
		got := `no "type"`
		if ok {
			got = fmt.Sprintf(`"type": %s`, truncate(string(typeRaw), 40))
		}
		ps.add(field, `must have "type": "object" at its root, because MCP tool %s are JSON objects; got %s`, what, got)
	}
	return ps
}

// truncate shortens s to at most n runes for a message.
func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}
