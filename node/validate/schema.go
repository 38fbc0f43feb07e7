package validate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/mcpmesh/mcpmesh/registry/card"
)

// The JSON Schema drafts a tool schema may be written in, as Schema.Draft
// and SchemaError.Draft name them.
const (
	// Draft2020 is JSON Schema 2020-12, which MCP prescribes and which
	// applies when a schema has no "$schema".
	Draft2020 = "2020-12"
	// Draft7 is JSON Schema draft-07, chosen by
	// "$schema": "http://json-schema.org/draft-07/schema#".
	Draft7 = "draft-07"
)

// ErrRemoteRef is wrapped by the *SchemaError of a schema that refers to a
// document outside itself ("$ref": "https://…", "other.json", or a
// "$schema" naming a custom metaschema). Schemas are compiled without
// network or file access, so every reference must point into the schema
// itself ("#/$defs/name") or to a standard metaschema, which is built in.
var ErrRemoteRef = errors.New("references outside the schema are not fetched")

// baseURL is the URI a schema without "$id" is compiled under. The .invalid
// TLD cannot resolve, and nothing is fetched anyway; messages strip it.
const (
	baseDir = "https://schema.mcpmesh.invalid/"
	baseURL = baseDir + "tool.json"
)

// Schema is a compiled tool schema, ready to validate arguments. It is
// immutable and safe for concurrent use.
type Schema struct {
	compiled *jsonschema.Schema
	draft    string
}

// Draft returns the draft the schema was compiled as: Draft2020 or Draft7.
func (s *Schema) Draft() string { return s.draft }

// SchemaError says why a tool schema cannot be compiled. Compile and
// CheckSchema return it (as *SchemaError) for every schema they refuse.
type SchemaError struct {
	// Draft is the draft the schema was read as, or "" when the refusal
	// came before that was known (not JSON, unsupported "$schema").
	Draft string
	// Location is the JSON Pointer of the offending place in the schema,
	// such as "/properties/a/type", or "" when it is the whole schema or
	// unknown.
	Location string
	// Reason says what is wrong and what to do, on one line.
	Reason string
	// Err is the underlying error: ErrRemoteRef for a reference outside
	// the schema, otherwise the compiler's error, if any.
	Err error
}

// Error returns "not a valid JSON Schema (draft 2020-12): REASON".
func (e *SchemaError) Error() string {
	if e.Draft == "" {
		return "not a valid JSON Schema: " + e.Reason
	}
	return "not a valid JSON Schema (" + e.Draft + "): " + e.Reason
}

// Unwrap returns Err.
func (e *SchemaError) Unwrap() error { return e.Err }

// CheckSchema reports whether raw compiles as a JSON Schema, in the draft its
// "$schema" names (Draft2020 when absent, or Draft7), with every reference
// inside the schema. The error is a *SchemaError. The admin API calls it on
// every tool's inputSchema and outputSchema at submission; that a schema's
// root is an object schema is package card's check.
func CheckSchema(raw json.RawMessage) error {
	_, err := Compile(raw)
	return err
}

// Compile compiles a tool's input or output schema. raw is one JSON Schema
// document: draft 2020-12 unless its "$schema" names draft-07; other drafts
// are refused. Nothing is fetched: a "$ref" to anything but the schema
// itself or a standard metaschema is refused with ErrRemoteRef. "pattern"
// and "patternProperties" use Go's RE2 syntax (linear time, so a pattern
// cannot stall the call path; no lookaround or backreferences). "format"
// is asserted where the draft makes it an assertion, as
// jsonschema/v6 does: in draft-07, not in 2020-12, where it is an
// annotation. Content keywords (contentEncoding, …) are annotations.
//
// Compiling takes tens of microseconds to milliseconds: do it once per
// schema (see Cache), never per call. The error is a *SchemaError. Compile
// is safe for concurrent use.
func Compile(raw json.RawMessage) (s *Schema, err error) {
	if trimmed := bytes.TrimSpace(raw); len(trimmed) == 0 || string(trimmed) == "null" {
		return nil, &SchemaError{Reason: "no schema given; give a JSON Schema object such as {\"type\":\"object\"}"}
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, &SchemaError{Reason: "is not valid JSON: " + oneLine(err.Error()), Err: err}
	}
	draft, d, serr := draftOf(doc)
	if serr != nil {
		return nil, serr
	}
	defer func() {
		// jsonschema/v6 has an internal panic ("baseres is nil") for
		// inputs it does not expect; a schema from outside must not take
		// the admin API or the gateway down with it.
		if p := recover(); p != nil {
			s, err = nil, &SchemaError{Draft: draft, Reason: fmt.Sprintf("the schema compiler failed on this schema (%v); simplify the schema", p)}
		}
	}()
	c := jsonschema.NewCompiler()
	c.DefaultDraft(d)
	c.UseLoader(noFetch{})
	if err := c.AddResource(baseURL, doc); err != nil {
		return nil, schemaError(draft, doc, err)
	}
	compiled, err := c.Compile(baseURL)
	if err != nil {
		return nil, schemaError(draft, doc, err)
	}
	return &Schema{compiled: compiled, draft: draft}, nil
}

// MustCompile is like Compile but panics on error. It is for schemas fixed
// in the program, such as in tests.
func MustCompile(raw string) *Schema {
	s, err := Compile(json.RawMessage(raw))
	if err != nil {
		panic(fmt.Sprintf("validate.MustCompile: %v", err))
	}
	return s
}

// draftOf returns the draft a schema document declares, defaulting to
// 2020-12. Only 2020-12 and draft-07 are accepted.
func draftOf(doc any) (string, *jsonschema.Draft, *SchemaError) {
	obj, ok := doc.(map[string]any)
	if !ok {
		return Draft2020, jsonschema.Draft2020, nil
	}
	v, ok := obj["$schema"]
	if !ok {
		return Draft2020, jsonschema.Draft2020, nil
	}
	uri, ok := v.(string)
	if !ok {
		return "", nil, &SchemaError{Location: "/$schema", Reason: fmt.Sprintf(`"$schema" must be a string, got %s; use "https://json-schema.org/draft/2020-12/schema" or "http://json-schema.org/draft-07/schema#", or leave it out for 2020-12`, jsonType(v))}
	}
	u := strings.TrimSuffix(uri, "#")
	if rest, ok := strings.CutPrefix(u, "https://"); ok {
		u = rest
	} else {
		u = strings.TrimPrefix(u, "http://")
	}
	switch u {
	case "json-schema.org/draft/2020-12/schema":
		return Draft2020, jsonschema.Draft2020, nil
	case "json-schema.org/draft-07/schema":
		return Draft7, jsonschema.Draft7, nil
	}
	return "", nil, &SchemaError{Location: "/$schema", Reason: fmt.Sprintf(`"$schema" %q is not a supported draft; use "https://json-schema.org/draft/2020-12/schema" or "http://json-schema.org/draft-07/schema#", or leave it out for 2020-12`, cut(uri, 100))}
}

// noFetch is the compiler's loader: it refuses everything. The compiler
// reaches it only for documents that are neither the schema itself nor a
// built-in standard metaschema.
type noFetch struct{}

func (noFetch) Load(url string) (any, error) {
	return nil, fmt.Errorf("%w: %s", ErrRemoteRef, url)
}

// schemaError turns a compiler error about schema document doc into a
// *SchemaError with a one-line reason that names the place in the schema.
func schemaError(draft string, doc any, err error) *SchemaError {
	var (
		sve   *jsonschema.SchemaValidationError
		lue   *jsonschema.LoadURLError
		rxe   *jsonschema.InvalidRegexError
		jpe   *jsonschema.JSONPointerNotFoundError
		ane   *jsonschema.AnchorNotFoundError
		verr  *jsonschema.ValidationError
		where string
	)
	switch {
	case errors.As(err, &sve) && errors.As(sve.Err, &verr):
		e := newError(violations(verr, doc))
		parts := make([]string, 0, 3)
		for i, v := range e.Violations {
			if i == 3 {
				parts = append(parts, fmt.Sprintf("and %d more", len(e.Violations)-3+e.Omitted))
				break
			}
			parts = append(parts, "at "+v.String())
		}
		return &SchemaError{Draft: draft, Location: e.Violations[0].Path, Reason: strings.ReplaceAll(strings.Join(parts, "; "), "at (root)", "at the root"), Err: err}
	case errors.As(err, &lue):
		return &SchemaError{Draft: draft, Reason: fmt.Sprintf(`refers to %s, outside the schema, and schemas are compiled without fetching anything; copy the definition under "$defs" and refer to it as "#/$defs/NAME"`, strip(lue.URL)), Err: fmt.Errorf("%w: %s", ErrRemoteRef, lue.URL)}
	case errors.As(err, &rxe):
		where = fragmentOf(rxe.URL)
		return &SchemaError{Draft: draft, Location: where, Reason: fmt.Sprintf("at %s: %q is not a regular expression that Go's RE2 engine accepts (%s); rewrite it without lookaround or backreferences", orRoot(where), cut(rxe.Regex, 200), oneLine(fmt.Sprint(rxe.Err))), Err: err}
	case errors.As(err, &jpe):
		return &SchemaError{Draft: draft, Reason: fmt.Sprintf("refers to %s, which the schema does not define; add it (under \"$defs\") or fix the reference", strip(jpe.URL)), Err: err}
	case errors.As(err, &ane):
		return &SchemaError{Draft: draft, Reason: fmt.Sprintf("refers to %s, an anchor the schema does not define; add it or fix the reference", strip(ane.Reference)), Err: err}
	}
	return &SchemaError{Draft: draft, Reason: oneLine(strip(err.Error())), Err: err}
}

// fragmentOf returns the JSON pointer fragment of a schema location URL.
func fragmentOf(u string) string {
	_, frag, _ := strings.Cut(u, "#")
	return frag
}

func orRoot(ptr string) string {
	if ptr == "" {
		return "the root"
	}
	return ptr
}

// strip removes the internal base URL from a message, leaving "#/…" or a
// relative reference as the schema's author wrote it.
func strip(s string) string {
	s = strings.ReplaceAll(s, baseURL, "")
	return strings.ReplaceAll(s, baseDir, "")
}

// CheckCard refuses a server card whose tools' inputSchema or outputSchema
// does not compile as JSON Schema, returning a *card.ValidationError that
// names each such field. The admin API runs it before a submission is
// proposed (never in the Raft FSM: a replica must apply a committed
// submission whatever its schema compiler would say), and the CLI and
// `mcpmesh apply` run it locally so a bad schema fails before upload.
func CheckCard(c *card.Card) error {
	tools, err := c.Tools()
	if err != nil {
		return err
	}
	var ps []card.Problem
	for i, t := range tools {
		for _, s := range []struct {
			key string
			raw json.RawMessage
		}{{"inputSchema", t.InputSchema}, {"outputSchema", t.OutputSchema}} {
			if len(s.raw) == 0 {
				continue
			}
			if err := CheckSchema(s.raw); err != nil {
				ps = append(ps, card.Problem{
					Field:   fmt.Sprintf("_meta.%s[%d].%s", card.ToolsKey, i, s.key),
					Message: err.Error(),
				})
			}
		}
	}
	if len(ps) > 0 {
		return &card.ValidationError{Problems: ps}
	}
	return nil
}
