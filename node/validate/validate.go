package validate

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	xmessage "golang.org/x/text/message"
)

// printer renders the library's messages for kinds this package has no
// message of its own for.
var printer = xmessage.NewPrinter(language.English)

// MaxViolations is how many violations an *Error lists at most; the count
// of the others is in Error.Omitted.
const MaxViolations = 20

// maxPathLen bounds a violation's Path in bytes, so that an argument with
// an enormous key cannot make an enormous error.
const maxPathLen = 256

// Error says why tool arguments do not match the tool's input schema. Every
// error Validate returns for a non-nil schema is an *Error; the gateway
// answers it as invalid arguments and never calls the upstream.
//
// Messages name schema values (bounds, patterns, enum members) and argument
// keys, never argument values, so an Error is safe to log and audit.
type Error struct {
	// Violations lists the violations found, at most MaxViolations, sorted
	// by Path (array indexes in numeric order), then Rule, then Message.
	// It is never empty.
	Violations []Violation `json:"violations"`
	// Omitted is how many more violations were found but not listed.
	Omitted int `json:"omitted,omitempty"`
}

// Violation is one rule of the schema that the arguments break.
type Violation struct {
	// Path is the JSON Pointer (RFC 6901) of the offending value in the
	// arguments, such as "/amount_cents" or "/lines/2/sku"; "" is the
	// arguments object itself. For "required", "dependentRequired",
	// "dependencies", "additionalProperties" and "propertyNames" it is the
	// path of the missing or unexpected property, which is where the
	// caller has to act. Paths longer than 256 bytes are cut, ending in
	// "…".
	Path string `json:"path"`
	// Rule is the JSON Schema keyword that failed, such as "minimum",
	// "required" or "type"; "false" for a false schema; "json" when the
	// arguments are not I-JSON (see Validate).
	Rule string `json:"rule"`
	// Message says what the value must be, such as "must be >= 1".
	Message string `json:"message"`
}

// String formats the violation as "PATH: MESSAGE (RULE)", such as
// "/amount_cents: must be >= 1 (minimum)", on one line: the arguments
// object itself is "(root)", and a path with control characters (keys may
// hold any) is shown Go-quoted.
func (v Violation) String() string {
	path := v.Path
	switch {
	case path == "":
		path = "(root)"
	case strings.ContainsFunc(path, func(r rune) bool { return unicode.IsControl(r) || r == '\u2028' || r == '\u2029' }):
		path = strconv.Quote(path)
	}
	return path + ": " + v.Message + " (" + v.Rule + ")"
}

// Error lists the violations on one line: "arguments do not match the
// tool's input schema: /amount_cents: must be >= 1 (minimum); …".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("arguments do not match the tool's input schema: ")
	for i, v := range e.Violations {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(v.String())
	}
	if e.Omitted > 0 {
		fmt.Fprintf(&b, "; and %d more", e.Omitted)
	}
	return b.String()
}

// emptyArgs is what missing or null arguments are validated as.
var emptyArgs = map[string]any{}

// Validate checks tool arguments against a compiled input schema. It is the
// same as s.Validate(args).
func Validate(s *Schema, args json.RawMessage) error {
	return s.Validate(args)
}

// Validate checks tool arguments (the "arguments" of a tools/call) against
// the schema. It returns nil when they match and an *Error listing the
// violations otherwise. It is safe for concurrent use.
//
// Missing arguments (empty or whitespace) and null are validated as {}.
// Arguments that are not a JSON object break the root "type" whatever the
// schema says, since MCP tool arguments are an object. Arguments must be
// I-JSON (RFC 7493), or the error has one violation of rule "json": no
// duplicate keys, valid UTF-8 without lone surrogates, numbers a double can
// hold, and at most MaxDepth levels of nesting. Those are refused because
// the upstream could read them differently from the gateway, which would
// make the check worthless.
func (s *Schema) Validate(args json.RawMessage) error {
	if s == nil || s.compiled == nil {
		return errors.New("validate arguments: no compiled schema; compile the tool's input schema with Compile or a Cache first")
	}
	var v any = emptyArgs
	if trimmed := bytes.TrimLeft(args, " \t\r\n"); len(trimmed) > 0 && !isJSONNull(trimmed) {
		var err error
		if v, err = decodeArgs(args); err != nil {
			return err
		}
		if _, ok := v.(map[string]any); !ok {
			return &Error{Violations: []Violation{{Path: "", Rule: "type", Message: "must be object, got " + jsonType(v)}}}
		}
	}
	err := s.compiled.Validate(v)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		// The library returns only *ValidationError; keep the contract
		// anyway.
		return &Error{Violations: []Violation{{Path: "", Rule: "schema", Message: oneLine(err.Error())}}}
	}
	return newError(violations(ve, v))
}

// isJSONNull reports whether b, with leading space trimmed, is the literal
// null and nothing else.
func isJSONNull(b []byte) bool {
	return string(bytes.TrimRight(b, " \t\r\n")) == "null"
}

// newError sorts vs, keeps the first MaxViolations and counts the rest.
func newError(vs []Violation) *Error {
	if len(vs) == 0 {
		vs = []Violation{{Path: "", Rule: "schema", Message: "does not match the schema"}}
	}
	slices.SortFunc(vs, compareViolations)
	vs = slices.Compact(vs)
	e := &Error{Violations: vs}
	if len(vs) > MaxViolations {
		e.Violations, e.Omitted = slices.Clip(vs[:MaxViolations]), len(vs)-MaxViolations
	}
	return e
}

func compareViolations(a, b Violation) int {
	return cmp.Or(comparePointers(a.Path, b.Path), strings.Compare(a.Rule, b.Rule), strings.Compare(a.Message, b.Message))
}

// comparePointers orders JSON pointers token by token, putting a parent
// before its children and array indexes in numeric order.
func comparePointers(a, b string) int {
	for a != "" && b != "" {
		var ta, tb string
		ta, a = nextToken(a)
		tb, b = nextToken(b)
		if c := compareTokens(ta, tb); c != 0 {
			return c
		}
	}
	return cmp.Compare(len(a), len(b))
}

// nextToken splits "/tok/rest" into "tok" and "/rest".
func nextToken(p string) (string, string) {
	p = p[1:]
	if i := strings.IndexByte(p, '/'); i >= 0 {
		return p[:i], p[i:]
	}
	return p, ""
}

func compareTokens(a, b string) int {
	if isIndex(a) && isIndex(b) {
		return cmp.Or(cmp.Compare(len(a), len(b)), strings.Compare(a, b))
	}
	return strings.Compare(a, b)
}

func isIndex(s string) bool {
	if s == "" || (len(s) > 1 && s[0] == '0') {
		return false
	}
	for i := range len(s) {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

// pointer formats tokens as a JSON Pointer (RFC 6901), cut at maxPathLen.
func pointer(tokens []string) string {
	if len(tokens) == 0 {
		return ""
	}
	var b strings.Builder
	for _, t := range tokens {
		b.WriteByte('/')
		if strings.ContainsAny(t, "~/") {
			t = strings.NewReplacer("~", "~0", "/", "~1").Replace(t)
		}
		b.WriteString(t)
		if b.Len() > maxPathLen {
			break
		}
	}
	return cut(b.String(), maxPathLen)
}

// child returns the pointer of member name under path.
func child(path []string, name string) string {
	return pointer(append(slices.Clip(path), name))
}

// cut shortens s to at most n bytes on a rune boundary, ending in "…".
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n - len("…")
	for i > 0 && !isRuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

func isRuneStart(c byte) bool { return c&0xc0 != 0x80 }

// violations flattens the validation error tree of instance inst into its
// leaves. Groups, references and allOf are looked through; anyOf and oneOf
// are one violation each that summarizes why each alternative failed.
func violations(e *jsonschema.ValidationError, inst any) []Violation {
	c := collector{inst: inst}
	c.collect(e, nil)
	return c.out
}

// collector gathers violations from an error tree.
type collector struct {
	// inst is the validated instance, to rebuild propertyNames locations.
	inst any
	out  []Violation
}

func (c *collector) add(path, rule, msg string) {
	c.out = append(c.out, Violation{Path: path, Rule: rule, Message: msg})
}

// collect adds the violations of e. trusted is the location of the nearest
// ancestor error, a prefix of e's true location.
func (c *collector) collect(e *jsonschema.ValidationError, trusted []string) {
	if e == nil {
		return
	}
	path := e.InstanceLocation
	switch k := e.ErrorKind.(type) {
	case nil:
		// The library leaves the kind empty only where it wanted a yes or
		// no answer; such errors do not reach callers, but be safe.
		c.add(pointer(path), "schema", "does not match the schema")
	case *kind.Schema, *kind.Group, *kind.Reference, *kind.AllOf:
		if len(e.Causes) == 0 {
			c.add(pointer(path), ruleOf(e.ErrorKind), "does not match the schema")
		}
		for _, cause := range e.Causes {
			c.collect(cause, path)
		}
	case *kind.AnyOf:
		c.add(pointer(path), "anyOf", "must match at least one schema in anyOf"+c.alternatives(path, e.Causes))
	case *kind.OneOf:
		if len(k.Subschemas) == 0 {
			c.add(pointer(path), "oneOf", "must match exactly one schema in oneOf"+c.alternatives(path, e.Causes))
		} else {
			c.add(pointer(path), "oneOf", fmt.Sprintf("must match exactly one schema in oneOf, but matches alternatives %s", joinInts(k.Subschemas, " and ")))
		}
	case *kind.Required:
		for _, m := range k.Missing {
			c.add(child(path, m), "required", "is required")
		}
	case *kind.DependentRequired:
		for _, m := range k.Missing {
			c.add(child(path, m), "dependentRequired", fmt.Sprintf("is required when %s is present", quoteKey(k.Prop)))
		}
	case *kind.Dependency:
		for _, m := range k.Missing {
			c.add(child(path, m), "dependencies", fmt.Sprintf("is required when %s is present", quoteKey(k.Prop)))
		}
	case *kind.AdditionalProperties:
		for _, p := range k.Properties {
			c.add(child(path, p), "additionalProperties", "is not allowed: the schema accepts no properties besides those it lists")
		}
	case *kind.PropertyNames:
		msg := "is not an allowed property name"
		// The causes are about the name, a string: no instance to walk.
		name := collector{}
		if first := name.firstOf(nil, e.Causes); first != "" {
			msg += ": the name " + first
		}
		c.add(child(propertyNamesPath(c.inst, trusted, path, k.Property), k.Property), "propertyNames", msg)
	default:
		c.add(pointer(path), ruleOf(e.ErrorKind), message(e.ErrorKind))
	}
}

// alternatives describes why each alternative of anyOf or oneOf failed, by
// its first violation, for at most three alternatives.
func (c *collector) alternatives(at []string, causes []*jsonschema.ValidationError) string {
	const shown = 3
	var b strings.Builder
	for i, cause := range causes {
		if i == shown {
			fmt.Fprintf(&b, "; and %d more", len(causes)-shown)
			break
		}
		fmt.Fprintf(&b, "; alternative %d: %s", i, c.firstOf(at, []*jsonschema.ValidationError{cause}))
	}
	return cut(b.String(), 600)
}

// firstOf returns the first violation of causes, which lie at or below at,
// with its path relative to at, as "MESSAGE (RULE)" or
// "at PATH: MESSAGE (RULE)".
func (c *collector) firstOf(at []string, causes []*jsonschema.ValidationError) string {
	sub := collector{inst: c.inst}
	for _, cause := range causes {
		sub.collect(cause, at)
	}
	if len(sub.out) == 0 {
		return ""
	}
	v := slices.MinFunc(sub.out, compareViolations)
	rel := strings.TrimPrefix(v.Path, pointer(at))
	if rel == "" {
		return v.Message + " (" + v.Rule + ")"
	}
	return "at " + rel + ": " + v.Message + " (" + v.Rule + ")"
}

// propertyNamesPath returns the location of the object one of whose
// property names failed propertyNames.
//
// jsonschema/v6 (v6.0.3) does not copy the location slice for this one kind
// of error, so validating later siblings overwrites its elements: only its
// length can be trusted. The location is rebuilt from trusted, the location
// of the nearest ancestor error (which the library did copy, and which is a
// prefix of the true one), by walking the instance to the objects at the
// right depth that hold the property. When several do, the reported
// location wins if it is one of them, else the first in key order.
func propertyNamesPath(inst any, trusted, reported []string, prop string) []string {
	depth := len(reported)
	if inst == nil || len(trusted) > depth {
		return reported
	}
	base, ok := walk(inst, trusted)
	if !ok {
		return reported
	}
	var found [][]string
	budget := 10000 // values visited at most; arguments are bounded anyway
	var visit func(v any, at []string)
	visit = func(v any, at []string) {
		if budget--; budget < 0 || len(found) > 16 {
			return
		}
		if len(at) == depth {
			if obj, ok := v.(map[string]any); ok {
				if _, has := obj[prop]; has {
					found = append(found, slices.Clone(at))
				}
			}
			return
		}
		switch v := v.(type) {
		case map[string]any:
			keys := make([]string, 0, len(v))
			for k := range v {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				visit(v[k], append(at, k))
			}
		case []any:
			for i, item := range v {
				visit(item, append(at, strconv.Itoa(i)))
			}
		}
	}
	visit(base, slices.Clone(trusted))
	for _, f := range found {
		if slices.Equal(f, reported) {
			return f
		}
	}
	if len(found) > 0 {
		return found[0]
	}
	return reported
}

// walk follows a location in a decoded instance.
func walk(v any, path []string) (any, bool) {
	for _, tok := range path {
		switch x := v.(type) {
		case map[string]any:
			var ok bool
			if v, ok = x[tok]; !ok {
				return nil, false
			}
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(x) {
				return nil, false
			}
			v = x[i]
		default:
			return nil, false
		}
	}
	return v, true
}

// ruleOf names the keyword of an error kind.
func ruleOf(k jsonschema.ErrorKind) string {
	switch k.(type) {
	case *kind.FalseSchema:
		return "false"
	case *kind.RefCycle, *kind.Reference:
		return "$ref"
	case *kind.Dependency:
		return "dependencies"
	case *kind.Not:
		return "not"
	}
	if kw := k.KeywordPath(); len(kw) > 0 {
		return kw[0]
	}
	return "schema"
}

// message says what a value must be for a leaf error kind. It names schema
// values only, never the argument's value.
func message(k jsonschema.ErrorKind) string {
	switch k := k.(type) {
	case *kind.Type:
		return fmt.Sprintf("must be %s, got %s", strings.Join(k.Want, " or "), k.Got)
	case *kind.Enum:
		return "must be one of " + joinValues(k.Want)
	case *kind.Const:
		return "must be " + showValue(k.Want)
	case *kind.Format:
		if k.Want == "regex" {
			return "must be a regular expression that Go's RE2 engine accepts (no lookaround or backreferences)"
		}
		return fmt.Sprintf("must be a valid %q string", k.Want)
	case *kind.Minimum:
		return "must be >= " + showRat(k.Want)
	case *kind.Maximum:
		return "must be <= " + showRat(k.Want)
	case *kind.ExclusiveMinimum:
		return "must be > " + showRat(k.Want)
	case *kind.ExclusiveMaximum:
		return "must be < " + showRat(k.Want)
	case *kind.MultipleOf:
		return "must be a multiple of " + showRat(k.Want)
	case *kind.MinLength:
		return fmt.Sprintf("must be at least %s long", plural(k.Want, "character"))
	case *kind.MaxLength:
		return fmt.Sprintf("must be at most %s long", plural(k.Want, "character"))
	case *kind.Pattern:
		return fmt.Sprintf("must match the pattern %q", cut(k.Want, 200))
	case *kind.MinItems:
		return fmt.Sprintf("must have at least %s", plural(k.Want, "item"))
	case *kind.MaxItems:
		return fmt.Sprintf("must have at most %s", plural(k.Want, "item"))
	case *kind.MinProperties:
		return fmt.Sprintf("must have at least %s", plural(k.Want, "property"))
	case *kind.MaxProperties:
		return fmt.Sprintf("must have at most %s", plural(k.Want, "property"))
	case *kind.UniqueItems:
		return fmt.Sprintf("must not hold equal items, but items %d and %d are equal", k.Duplicates[0], k.Duplicates[1])
	case *kind.AdditionalItems:
		return fmt.Sprintf("has %s more than the schema allows", plural(k.Count, "item"))
	case *kind.Contains:
		return "must hold at least one item that matches the contains schema"
	case *kind.MinContains:
		return fmt.Sprintf("must hold at least %s that match the contains schema", plural(k.Want, "item"))
	case *kind.MaxContains:
		return fmt.Sprintf("must hold at most %s that match the contains schema", plural(k.Want, "item"))
	case *kind.Not:
		return "must not match the schema under not"
	case *kind.FalseSchema:
		return "is not allowed"
	case *kind.ContentEncoding:
		return fmt.Sprintf("must be %s-encoded", k.Want)
	case *kind.ContentMediaType:
		return fmt.Sprintf("must be of media type %s", k.Want)
	case *kind.ContentSchema:
		return "must hold content that matches the contentSchema"
	case *kind.RefCycle:
		return "cannot be checked: the schema's references form a cycle"
	case *kind.InvalidJsonValue:
		return "is not a JSON value"
	}
	// Kinds from vocabularies this package does not register, if any.
	return oneLine(k.LocalizedString(printer))
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	if strings.HasSuffix(noun, "y") {
		return strconv.Itoa(n) + " " + strings.TrimSuffix(noun, "y") + "ies"
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

// showRat formats a schema number: integers exactly, others as the
// shortest float that reads back the same.
func showRat(r *big.Rat) string {
	if r == nil {
		return "?"
	}
	if r.IsInt() {
		return cut(r.Num().String(), 40)
	}
	f, _ := r.Float64()
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// showValue formats a schema value as JSON, cut to 60 bytes.
func showValue(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return cut(string(b), 60)
}

// joinValues lists enum members, at most ten.
func joinValues(vs []any) string {
	const shown = 10
	parts := make([]string, 0, min(len(vs), shown)+1)
	for i, v := range vs {
		if i == shown {
			parts = append(parts, fmt.Sprintf("… (%d more)", len(vs)-shown))
			break
		}
		parts = append(parts, showValue(v))
	}
	return strings.Join(parts, ", ")
}

func joinInts(is []int, sep string) string {
	parts := make([]string, len(is))
	for i, n := range is {
		parts[i] = strconv.Itoa(n)
	}
	return strings.Join(parts, sep)
}

// quoteKey quotes a property name for a message, cut to 60 bytes.
func quoteKey(s string) string {
	return strconv.Quote(cut(s, 60))
}

// jsonType names the JSON type of a decoded value.
func jsonType(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case json.Number:
		if _, err := strconv.ParseInt(string(v), 10, 64); err == nil {
			return "integer"
		}
		return "number"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

// oneLine folds line breaks so that a message stays on one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
