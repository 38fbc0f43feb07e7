package validate

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mcpmesh/mcpmesh/registry/card"
)

// ledgerTool returns a tool of the finance ledger example card, which the
// benchmarks and tests validate against as a realistic schema.
func ledgerTool(t testing.TB, name string) card.Tool {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "examples", "catalog", "finance", "ledger-1.0.0.json"))
	if err != nil {
		t.Fatalf("read the finance ledger example card: %v", err)
	}
	c, err := card.Parse(raw)
	if err != nil {
		t.Fatalf("parse the finance ledger example card: %v", err)
	}
	tools, err := c.Tools()
	if err != nil {
		t.Fatal(err)
	}
	for _, tool := range tools {
		if tool.Name == name {
			return tool
		}
	}
	t.Fatalf("the finance ledger example card has no tool %q", name)
	return card.Tool{}
}

func transferFunds(t testing.TB) *Schema {
	t.Helper()
	s, err := Compile(ledgerTool(t, "transfer_funds").InputSchema)
	if err != nil {
		t.Fatalf("compile transfer_funds: %v", err)
	}
	return s
}

const validTransfer = `{"from_account":"ACC-1001","to_account":"ACC-2002","amount_cents":125000,"currency":"EUR","reference":"Invoice 2026-0042","idempotency_key":"7f3c9a1e-5b2d-4e8f-9a6c-1d2e3f4a5b6c"}`

// v is a shorthand for a violation in test tables.
func v(path, rule, msg string) Violation { return Violation{Path: path, Rule: rule, Message: msg} }

// violationsOf returns the violations of err, failing the test unless err
// is nil or an *Error.
func violationsOf(t *testing.T, err error) []Violation {
	t.Helper()
	if err == nil {
		return nil
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not an *Error", err, err)
	}
	return e.Violations
}

func TestValidateTransferFunds(t *testing.T) {
	s := transferFunds(t)
	if s.Draft() != Draft2020 {
		t.Errorf("transfer_funds compiled as %s; want %s (it has no $schema)", s.Draft(), Draft2020)
	}
	tests := []struct {
		name string
		args string
		want []Violation
	}{
		{"valid, every field", validTransfer, nil},
		{"valid, required fields only", `{"from_account":"ACC-1001","to_account":"ACC-2002","amount_cents":1,"currency":"USD"}`, nil},
		{"valid, whitespace around", " \n" + validTransfer + "\t ", nil},
		{"valid, 140 two-byte characters", `{"from_account":"ACC-1001","to_account":"ACC-2002","amount_cents":1,"currency":"USD","reference":"` + strings.Repeat("é", 140) + `"}`, nil},
		{"valid, integer written as 1.0e2", `{"from_account":"ACC-1001","to_account":"ACC-2002","amount_cents":1.0e2,"currency":"USD"}`, nil},
		{"below minimum", `{"from_account":"ACC-1001","to_account":"ACC-2002","amount_cents":0,"currency":"USD"}`,
			[]Violation{v("/amount_cents", "minimum", "must be >= 1")}},
		{"above maximum", `{"from_account":"ACC-1001","to_account":"ACC-2002","amount_cents":100000001,"currency":"USD"}`,
			[]Violation{v("/amount_cents", "maximum", "must be <= 100000000")}},
		{"fraction for an integer", `{"from_account":"ACC-1001","to_account":"ACC-2002","amount_cents":12.5,"currency":"USD"}`,
			[]Violation{v("/amount_cents", "type", "must be integer, got number")}},
		{"string for an integer", `{"from_account":"ACC-1001","to_account":"ACC-2002","amount_cents":"100","currency":"USD"}`,
			[]Violation{v("/amount_cents", "type", "must be integer, got string")}},
		{"pattern", `{"from_account":"ACC-1001","to_account":"ACC-2002","amount_cents":1,"currency":"usd"}`,
			[]Violation{v("/currency", "pattern", `must match the pattern "^[A-Z]{3}$"`)}},
		{"too long, counted in characters", `{"from_account":"ACC-1001","to_account":"ACC-2002","amount_cents":1,"currency":"USD","reference":"` + strings.Repeat("é", 141) + `"}`,
			[]Violation{v("/reference", "maxLength", "must be at most 140 characters long")}},
		{"too short", `{"from_account":"ACC-1001","to_account":"ACC-2002","amount_cents":1,"currency":"USD","idempotency_key":"k1"}`,
			[]Violation{v("/idempotency_key", "minLength", "must be at least 8 characters long")}},
		{"missing required, one violation each", `{"from_account":"ACC-1001","amount_cents":1}`,
			[]Violation{v("/currency", "required", "is required"), v("/to_account", "required", "is required")}},
		{"unknown property", `{"from_account":"ACC-1001","to_account":"ACC-2002","amount_cents":1,"currency":"USD","amount":5}`,
			[]Violation{v("/amount", "additionalProperties", "is not allowed: the schema accepts no properties besides those it lists")}},
		{"everything wrong, sorted by path", `{"to_account":"x","amount_cents":-5,"currency":"EURO","zz":1,"aa":2}`, []Violation{
			v("/aa", "additionalProperties", "is not allowed: the schema accepts no properties besides those it lists"),
			v("/amount_cents", "minimum", "must be >= 1"),
			v("/currency", "pattern", `must match the pattern "^[A-Z]{3}$"`),
			v("/from_account", "required", "is required"),
			v("/to_account", "pattern", `must match the pattern "^ACC-[0-9]{4,10}$"`),
			v("/zz", "additionalProperties", "is not allowed: the schema accepts no properties besides those it lists"),
		}},
		{"missing arguments are {}", ``, []Violation{
			v("/amount_cents", "required", "is required"), v("/currency", "required", "is required"),
			v("/from_account", "required", "is required"), v("/to_account", "required", "is required"),
		}},
		{"null arguments are {}", ` null `, []Violation{
			v("/amount_cents", "required", "is required"), v("/currency", "required", "is required"),
			v("/from_account", "required", "is required"), v("/to_account", "required", "is required"),
		}},
		{"array arguments", `[1,2]`, []Violation{v("", "type", "must be object, got array")}},
		{"string arguments", `"transfer"`, []Violation{v("", "type", "must be object, got string")}},
		{"number arguments", `42`, []Violation{v("", "type", "must be object, got integer")}},
		{"duplicate key", `{"from_account":"ACC-1001","to_account":"ACC-2002","amount_cents":5,"currency":"USD","amount_cents":-5}`,
			[]Violation{v("/amount_cents", "json", "is a duplicate key: send each key of an object once, since readers disagree about which copy counts")}},
		{"not JSON", `{"from_account":`, []Violation{v("/from_account", "json", "is not valid JSON: unexpected end of input; send a complete JSON object")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.Validate(json.RawMessage(tt.args))
			if diff := cmp.Diff(tt.want, violationsOf(t, err)); diff != "" {
				t.Errorf("Validate(%s) violations (-want +got):\n%s", tt.args, diff)
			}
			if err != nil && strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q spans lines", err)
			}
		})
	}
}

func TestErrorFormat(t *testing.T) {
	s := transferFunds(t)
	err := Validate(s, json.RawMessage(`{"from_account":"ACC-1001","to_account":"ACC-2002","amount_cents":0}`))
	const want = "arguments do not match the tool's input schema: /amount_cents: must be >= 1 (minimum); /currency: is required (required)"
	if err == nil || err.Error() != want {
		t.Errorf("Validate error = %v\nwant %s", err, want)
	}
	if got := v("", "type", "must be object, got array").String(); got != "(root): must be object, got array (type)" {
		t.Errorf("root violation formats as %q", got)
	}
	lb := MustCompile(`{"type":"object","additionalProperties":false}`).Validate(json.RawMessage(`{"a\nb":1}`))
	if vs := violationsOf(t, lb); len(vs) != 1 || vs[0].Path != "/a\nb" || strings.Contains(lb.Error(), "\n") ||
		vs[0].String() != `"/a\nb": is not allowed: the schema accepts no properties besides those it lists (additionalProperties)` {
		t.Errorf("a key with a line break: %q; want the exact path in Path and a quoted one on one line in the message", lb)
	}
	b, jerr := json.Marshal(err)
	if jerr != nil || string(b) != `{"violations":[{"path":"/amount_cents","rule":"minimum","message":"must be \u003e= 1"},{"path":"/currency","rule":"required","message":"is required"}]}` {
		t.Errorf("JSON of the error = %s (%v)", b, jerr)
	}
}

func TestErrorIsBounded(t *testing.T) {
	s := MustCompile(`{"type":"object","properties":{"ids":{"type":"array","items":{"type":"string"}}}}`)
	ids := make([]string, 100)
	for i := range ids {
		ids[i] = fmt.Sprint(i)
	}
	err := s.Validate(json.RawMessage(`{"ids":[` + strings.Join(ids, ",") + `]}`))
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("Validate = %v; want an *Error", err)
	}
	if len(e.Violations) != MaxViolations || e.Omitted != 100-MaxViolations {
		t.Fatalf("got %d violations and %d omitted; want %d and %d", len(e.Violations), e.Omitted, MaxViolations, 100-MaxViolations)
	}
	for i, v := range e.Violations {
		if want := fmt.Sprintf("/ids/%d", i); v.Path != want || v.Rule != "type" {
			t.Errorf("violation %d is %v; want %s (type): the first violations in numeric order", i, v, want)
		}
	}
	if !strings.HasSuffix(err.Error(), fmt.Sprintf("; and %d more", 100-MaxViolations)) {
		t.Errorf("error does not say how many were left out: %v", err)
	}

	long := strings.Repeat("k", 1000)
	err = MustCompile(`{"type":"object","additionalProperties":false}`).Validate(json.RawMessage(`{"` + long + `":1}`))
	if vs := violationsOf(t, err); len(vs) != 1 || len(vs[0].Path) > maxPathLen || !strings.HasSuffix(vs[0].Path, "…") {
		t.Errorf("a 1000-byte key gave violations %v; want one path cut to %d bytes", vs, maxPathLen)
	}
}

func TestValidateKeywords(t *testing.T) {
	tests := []struct {
		name, schema, args string
		want               []Violation
	}{
		{"enum", `{"type":"object","properties":{"c":{"enum":["USD","EUR",1,null]}}}`, `{"c":"GBP"}`,
			[]Violation{v("/c", "enum", `must be one of "USD", "EUR", 1, null`)}},
		{"const", `{"type":"object","properties":{"v":{"const":2}}}`, `{"v":3}`,
			[]Violation{v("/v", "const", "must be 2")}},
		{"exclusiveMaximum and multipleOf", `{"type":"object","properties":{"p":{"exclusiveMaximum":1,"multipleOf":0.25}}}`, `{"p":1.1}`,
			[]Violation{v("/p", "exclusiveMaximum", "must be < 1"), v("/p", "multipleOf", "must be a multiple of 0.25")}},
		{"nested path with escaping", `{"type":"object","properties":{"a/b":{"type":"object","properties":{"m~n":{"type":"array","items":{"type":"integer"}}}}}}`, `{"a/b":{"m~n":[1,"x"]}}`,
			[]Violation{v("/a~1b/m~0n/1", "type", "must be integer, got string")}},
		{"$ref into $defs", `{"type":"object","properties":{"to":{"$ref":"#/$defs/acct"}},"$defs":{"acct":{"type":"string","minLength":3}}}`, `{"to":"ab"}`,
			[]Violation{v("/to", "minLength", "must be at least 3 characters long")}},
		{"allOf reports each leaf", `{"type":"object","allOf":[{"required":["a"]},{"required":["b"]}]}`, `{}`,
			[]Violation{v("/a", "required", "is required"), v("/b", "required", "is required")}},
		{"anyOf is one violation", `{"type":"object","properties":{"n":{"anyOf":[{"type":"integer"},{"type":"null"}]}}}`, `{"n":"x"}`,
			[]Violation{v("/n", "anyOf", "must match at least one schema in anyOf; alternative 0: must be integer, got string (type); alternative 1: must be null, got string (type)")}},
		{"oneOf none", `{"type":"object","properties":{"p":{"oneOf":[{"type":"object","required":["iban"]},{"type":"object","required":["acct"]}]}}}`, `{"p":{}}`,
			[]Violation{v("/p", "oneOf", "must match exactly one schema in oneOf; alternative 0: at /iban: is required (required); alternative 1: at /acct: is required (required)")}},
		{"oneOf two", `{"type":"object","properties":{"p":{"oneOf":[{"type":"integer"},{"minimum":0}]}}}`, `{"p":1}`,
			[]Violation{v("/p", "oneOf", "must match exactly one schema in oneOf, but matches alternatives 0 and 1")}},
		{"not", `{"type":"object","properties":{"p":{"not":{"type":"null"}}}}`, `{"p":null}`,
			[]Violation{v("/p", "not", "must not match the schema under not")}},
		{"false schema", `{"type":"object","properties":{"legacy":false}}`, `{"legacy":1}`,
			[]Violation{v("/legacy", "false", "is not allowed")}},
		{"if then", `{"type":"object","if":{"properties":{"kind":{"const":"wire"}},"required":["kind"]},"then":{"required":["iban"]}}`, `{"kind":"wire"}`,
			[]Violation{v("/iban", "required", "is required")}},
		{"dependentRequired", `{"type":"object","dependentRequired":{"currency":["amount"]}}`, `{"currency":"USD"}`,
			[]Violation{v("/amount", "dependentRequired", `is required when "currency" is present`)}},
		{"propertyNames", `{"type":"object","propertyNames":{"pattern":"^[a-z_]+$"}}`, `{"ok":1,"Bad":2}`,
			[]Violation{v("/Bad", "propertyNames", `is not an allowed property name: the name must match the pattern "^[a-z_]+$" (pattern)`)}},
		{"uniqueItems and maxItems", `{"type":"object","properties":{"t":{"type":"array","uniqueItems":true,"maxItems":2}}}`, `{"t":["a","b","a"]}`,
			[]Violation{v("/t", "maxItems", "must have at most 2 items"), v("/t", "uniqueItems", "must not hold equal items, but items 0 and 2 are equal")}},
		{"contains", `{"type":"object","properties":{"t":{"type":"array","contains":{"const":"x"}}}}`, `{"t":["a"]}`,
			[]Violation{v("/t", "contains", "must hold at least one item that matches the contains schema")}},
		{"minProperties", `{"type":"object","minProperties":1}`, `{}`,
			[]Violation{v("", "minProperties", "must have at least 1 property")}},
		{"unevaluatedProperties", `{"type":"object","properties":{"a":true},"unevaluatedProperties":false}`, `{"a":1,"b":2}`,
			[]Violation{v("/b", "false", "is not allowed")}},
		{"object root not required by the schema", `{}`, `[1]`,
			[]Violation{v("", "type", "must be object, got array")}},
		{"the value is never echoed", `{"type":"object","properties":{"pw":{"type":"string","pattern":"^[0-9]+$","maxLength":4}}}`, `{"pw":"hunter2-secret"}`,
			[]Violation{v("/pw", "maxLength", "must be at most 4 characters long"), v("/pw", "pattern", `must match the pattern "^[0-9]+$"`)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := MustCompile(tt.schema).Validate(json.RawMessage(tt.args))
			if diff := cmp.Diff(tt.want, violationsOf(t, err)); diff != "" {
				t.Errorf("schema %s, args %s: violations (-want +got):\n%s", tt.schema, tt.args, diff)
			}
			if err != nil && strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error %q echoes the argument's value", err)
			}
		})
	}
}

// TestDrafts: draft-07 is used only when "$schema" names it, and the two
// drafts differ where the specifications do.
func TestDrafts(t *testing.T) {
	const (
		d7   = `"$schema":"http://json-schema.org/draft-07/schema#",`
		d7s  = `"$schema":"https://json-schema.org/draft-07/schema",`
		d20  = `"$schema":"https://json-schema.org/draft/2020-12/schema",`
		none = ``
	)
	type run struct {
		args string
		want []Violation
	}
	tests := []struct {
		name      string
		header    string
		body      string
		wantDraft string
		wantErr   string // substring of a refused schema's error
		runs      []run
	}{
		{"exclusiveMinimum number, draft-07", d7, `"properties":{"n":{"exclusiveMinimum":0}}`, Draft7, "",
			[]run{{`{"n":0}`, []Violation{v("/n", "exclusiveMinimum", "must be > 0")}}, {`{"n":0.001}`, nil}}},
		{"exclusiveMinimum number, 2020-12", none, `"properties":{"n":{"exclusiveMinimum":0}}`, Draft2020, "",
			[]run{{`{"n":0}`, []Violation{v("/n", "exclusiveMinimum", "must be > 0")}}, {`{"n":0.001}`, nil}}},
		{"exclusiveMinimum boolean (draft-04 form), draft-07", d7, `"properties":{"n":{"minimum":0,"exclusiveMinimum":true}}`, Draft7,
			"at /properties/n/exclusiveMinimum: must be number, got boolean (type)", nil},
		{"exclusiveMinimum boolean (draft-04 form), 2020-12", d20, `"properties":{"n":{"minimum":0,"exclusiveMinimum":true}}`, Draft2020,
			"at /properties/n/exclusiveMinimum: must be number, got boolean (type)", nil},
		{"items as a tuple, draft-07", d7s, `"properties":{"p":{"type":"array","items":[{"type":"string"},{"type":"integer"}],"additionalItems":false}}`, Draft7, "",
			[]run{{`{"p":["a",1]}`, nil}, {`{"p":[1,"a"]}`, []Violation{v("/p/0", "type", "must be string, got number"), v("/p/1", "type", "must be integer, got string")}},
				{`{"p":["a",1,2]}`, []Violation{v("/p", "additionalItems", "has 1 item more than the schema allows")}}}},
		{"items as a tuple, 2020-12", none, `"properties":{"p":{"type":"array","items":[{"type":"string"}]}}`, Draft2020,
			"at /properties/p/items: must be boolean or object, got array (type)", nil},
		{"prefixItems, 2020-12", none, `"properties":{"p":{"type":"array","prefixItems":[{"type":"string"}],"items":false}}`, Draft2020, "",
			[]run{{`{"p":["a"]}`, nil}, {`{"p":[1]}`, []Violation{v("/p/0", "type", "must be string, got number")}}, {`{"p":["a","b"]}`, []Violation{v("/p/1", "false", "is not allowed")}}}},
		{"dependentRequired is unknown to draft-07", d7, `"dependentRequired":{"a":["b"]}`, Draft7, "",
			[]run{{`{"a":1}`, nil}}},
		{"dependencies, draft-07", d7, `"dependencies":{"a":["b"]}`, Draft7, "",
			[]run{{`{"a":1}`, []Violation{v("/b", "dependencies", `is required when "a" is present`)}}}},
		{"$ref siblings are ignored in draft-07", d7, `"properties":{"s":{"$ref":"#/definitions/s","maxLength":2}},"definitions":{"s":{"type":"string"}}`, Draft7, "",
			[]run{{`{"s":"abc"}`, nil}, {`{"s":1}`, []Violation{v("/s", "type", "must be string, got number")}}}},
		{"$ref siblings apply in 2020-12", none, `"properties":{"s":{"$ref":"#/$defs/s","maxLength":2}},"$defs":{"s":{"type":"string"}}`, Draft2020, "",
			[]run{{`{"s":"abc"}`, []Violation{v("/s", "maxLength", "must be at most 2 characters long")}}}},
		{"format asserted in draft-07", d7, `"properties":{"d":{"type":"string","format":"date"}}`, Draft7, "",
			[]run{{`{"d":"2026-02-30"}`, []Violation{v("/d", "format", `must be a valid "date" string`)}}, {`{"d":"2026-02-28"}`, nil}}},
		{"format is an annotation in 2020-12", none, `"properties":{"d":{"type":"string","format":"date"}}`, Draft2020, "",
			[]run{{`{"d":"2026-02-30"}`, nil}}},
		{"draft-04 refused", `"$schema":"http://json-schema.org/draft-04/schema#",`, `"properties":{}`, "",
			`"$schema" "http://json-schema.org/draft-04/schema#" is not a supported draft`, nil},
		{"2019-09 refused", `"$schema":"https://json-schema.org/draft/2019-09/schema",`, `"properties":{}`, "",
			"is not a supported draft", nil},
		{"$schema not a string", `"$schema":7,`, `"properties":{}`, "",
			`"$schema" must be a string, got integer`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			schema := `{` + tt.header + `"type":"object",` + tt.body + `}`
			s, err := Compile(json.RawMessage(schema))
			if tt.wantErr != "" {
				var se *SchemaError
				if !errors.As(err, &se) || !strings.Contains(se.Error(), tt.wantErr) || se.Draft != tt.wantDraft {
					t.Fatalf("Compile(%s) = %v; want a *SchemaError of draft %q containing %q", schema, err, tt.wantDraft, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Compile(%s): %v", schema, err)
			}
			if s.Draft() != tt.wantDraft {
				t.Errorf("compiled as %s, want %s", s.Draft(), tt.wantDraft)
			}
			for _, r := range tt.runs {
				if diff := cmp.Diff(r.want, violationsOf(t, s.Validate(json.RawMessage(r.args)))); diff != "" {
					t.Errorf("args %s: violations (-want +got):\n%s", r.args, diff)
				}
			}
		})
	}
}

// TestPropertyNamesPath: the location of a propertyNames violation is right
// however the library's map iteration ordered the siblings (jsonschema/v6
// reuses the location slice for this kind; see propertyNamesPath).
func TestPropertyNamesPath(t *testing.T) {
	s := MustCompile(`{"type":"object","properties":{"meta":{"type":"object","propertyNames":{"pattern":"^[a-z]+$"}},
		"a":{"type":"object"},"b":{"type":"object"},"c":{"type":"object"},"d":{"type":"object"}}}`)
	args := json.RawMessage(`{"a":{"x":{}},"b":{"y":{}},"meta":{"Bad":1,"ok":2},"c":{"z":{}},"d":{"w":{}}}`)
	want := []Violation{v("/meta/Bad", "propertyNames", `is not an allowed property name: the name must match the pattern "^[a-z]+$" (pattern)`)}
	for range 50 {
		if diff := cmp.Diff(want, violationsOf(t, s.Validate(args))); diff != "" {
			t.Fatalf("violations (-want +got):\n%s", diff)
		}
	}

	inst := map[string]any{"a": map[string]any{"Bad": 1}, "meta": map[string]any{"Bad": 1}, "list": []any{map[string]any{"k": 1}}}
	tests := []struct {
		name              string
		trusted, reported []string
		prop              string
		want              []string
	}{
		{"reported is a candidate", nil, []string{"meta"}, "Bad", []string{"meta"}},
		{"first in key order", nil, []string{"zz"}, "Bad", []string{"a"}},
		{"through an array", nil, []string{"zz", "9"}, "k", []string{"list", "0"}},
		{"trusted equals the location", []string{"meta"}, []string{"zz"}, "Bad", []string{"meta"}},
		{"nothing fits: keep what was reported", nil, []string{"zz"}, "nope", []string{"zz"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := propertyNamesPath(inst, tt.trusted, tt.reported, tt.prop); !cmp.Equal(got, tt.want) {
				t.Errorf("propertyNamesPath = %q; want %q", got, tt.want)
			}
		})
	}
}

func TestConcurrentValidate(t *testing.T) {
	s := transferFunds(t)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				args := fmt.Sprintf(`{"from_account":"ACC-1001","to_account":"ACC-2002","amount_cents":%d,"currency":"USD"}`, (g+i)%3)
				err := s.Validate(json.RawMessage(args))
				if (g+i)%3 == 0 {
					if vs := violationsOf(t, err); len(vs) != 1 || vs[0].Rule != "minimum" {
						t.Errorf("amount 0: %v; want one minimum violation", err)
						return
					}
				} else if err != nil {
					t.Errorf("amount %d: %v", (g+i)%3, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestValidateNilSchema(t *testing.T) {
	var s *Schema
	err := s.Validate(json.RawMessage(`{}`))
	var e *Error
	if err == nil || errors.As(err, &e) {
		t.Errorf("Validate on a nil schema = %v; want a plain error (not the caller's fault)", err)
	}
}
