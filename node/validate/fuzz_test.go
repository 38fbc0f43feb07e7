package validate

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

// fuzzSchemas are the fixed schemas FuzzValidate checks arguments against:
// the realistic one, and one that exercises every applicator.
var fuzzSchemas = []string{
	"", // transfer_funds, filled in by the fuzz target
	`{"type":"object","properties":{
		"s":{"type":"string","minLength":1,"maxLength":5,"pattern":"^[a-z]*$","format":"date"},
		"n":{"type":"number","minimum":-1,"exclusiveMaximum":1e6,"multipleOf":0.5},
		"a":{"type":"array","prefixItems":[{"type":"integer"}],"items":{"$ref":"#/$defs/node"},"uniqueItems":true,"contains":{"type":"null"},"maxContains":2},
		"o":{"type":"object","propertyNames":{"maxLength":3},"patternProperties":{"^x":{"type":"boolean"}},"additionalProperties":{"enum":[1,"two",null]},"dependentRequired":{"p":["q"]}},
		"u":{"anyOf":[{"type":"string"},{"type":"integer"}]},
		"one":{"oneOf":[{"required":["k"]},{"required":["j"]}]},
		"c":{"if":{"type":"string"},"then":{"const":"yes"},"else":{"not":{"type":"null"}}}
	},"required":["s"],"unevaluatedProperties":false,
	"$defs":{"node":{"type":["object","null"],"properties":{"kids":{"type":"array","items":{"$ref":"#/$defs/node"}}}}}}`,
	`{"$schema":"http://json-schema.org/draft-07/schema#","type":"object","properties":{
		"t":{"type":"array","items":[{"type":"string"}],"additionalItems":false},
		"d":{"type":"string","format":"date-time"}},"dependencies":{"t":["d"]}}`,
}

// FuzzValidate: arbitrary arguments against fixed schemas never panic, and
// every refusal is a well-formed *Error. Arguments that pass are JSON that
// encoding/json reads the same way.
func FuzzValidate(f *testing.F) {
	for _, seed := range []string{
		validTransfer, ``, `null`, `[]`, `"x"`, `{"amount_cents":0}`, `{"a":1,"a":2}`,
		`{"s":"2026-01-01","n":0.5,"a":[1,null,{"kids":[null,{"kids":[]}]}],"o":{"xy":true,"abcd":1,"p":1},"u":1.5,"one":{"k":1,"j":2},"c":null}`,
		`{"t":["a",1],"d":"nope"}`, `{"n":1e400}`, "{\"s\":\"\xff\"}", `{"s":"\ud800"}`,
		strings.Repeat(`[`, 300), `{"o":{"` + strings.Repeat("k", 300) + `":1}}`,
	} {
		f.Add(seed)
	}
	schemas := make([]*Schema, len(fuzzSchemas))
	for i, raw := range fuzzSchemas {
		if raw == "" {
			schemas[i] = transferFunds(f)
			continue
		}
		schemas[i] = MustCompile(raw)
	}
	f.Fuzz(func(t *testing.T, args string) {
		for i, s := range schemas {
			err := s.Validate(json.RawMessage(args))
			if err == nil {
				checkAccepted(t, args)
				continue
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("schema %d: error %v (%T) is not an *Error", i, err, err)
			}
			checkWellFormed(t, e)
		}
	})
}

// checkAccepted checks that accepted arguments are what encoding/json reads
// too, as the gateway and the upstream will.
func checkAccepted(t *testing.T, args string) {
	t.Helper()
	trimmed := strings.TrimSpace(args)
	if trimmed == "" || trimmed == "null" {
		return
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(args), &m); err != nil {
		t.Fatalf("accepted arguments %q that encoding/json refuses as an object: %v", args, err)
	}
}

func checkWellFormed(t *testing.T, e *Error) {
	t.Helper()
	if len(e.Violations) == 0 || len(e.Violations) > MaxViolations || e.Omitted < 0 {
		t.Fatalf("error with %d violations and %d omitted", len(e.Violations), e.Omitted)
	}
	if e.Omitted > 0 && len(e.Violations) != MaxViolations {
		t.Fatalf("%d omitted but only %d listed", e.Omitted, len(e.Violations))
	}
	for j, v := range e.Violations {
		if v.Path != "" && v.Path[0] != '/' || len(v.Path) > maxPathLen || !utf8.ValidString(v.Path) {
			t.Errorf("violation %d: path %q is not a JSON pointer of at most %d bytes of UTF-8", j, v.Path, maxPathLen)
		}
		if v.Rule == "" || strings.ContainsAny(v.Rule, " \n") {
			t.Errorf("violation %d: rule %q", j, v.Rule)
		}
		if v.Message == "" || strings.Contains(v.Message, "\n") {
			t.Errorf("violation %d: message %q", j, v.Message)
		}
		if j > 0 && compareViolations(e.Violations[j-1], v) >= 0 {
			t.Errorf("violations %d and %d out of order: %v, %v", j-1, j, e.Violations[j-1], v)
		}
	}
	if msg := e.Error(); strings.Contains(msg, "\n") {
		t.Errorf("error spans lines: %q", msg)
	}
}

// FuzzDecode: where decodeArgs accepts, encoding/json (as jsonschema reads
// JSON) accepts too and reads the same value; where encoding/json refuses,
// decodeArgs refuses.
func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		`{}`, `{"a":[1,-0,0.5,1e3,true,null,"s\u00e9\ud83d\ude00"]}`, `{"a":1,"a":2}`, `[1,2`, `01`,
		`"\ud800"`, "\"\xff\"", `1e400`, `1e-400`, `0e99999999`, ` {"x" : { } } `, `"\/\b"`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := decodeArgs(data)
		want, stdErr := stdDecode(data)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || len(e.Violations) != 1 || e.Violations[0].Rule != "json" {
				t.Fatalf("decodeArgs(%q) error %v is not one json violation", data, err)
			}
			checkWellFormed(t, e)
			return
		}
		if stdErr != nil {
			t.Fatalf("decodeArgs accepted %q, which encoding/json refuses: %v", data, stdErr)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("decodeArgs(%q) differs from encoding/json (-want +got):\n%s", data, diff)
		}
	})
}

// FuzzCompile: arbitrary schemas never panic the compiler, and every
// refusal is a one-line *SchemaError. Nothing is fetched (the loader
// refuses), so this is safe to run anywhere.
func FuzzCompile(f *testing.F) {
	for _, seed := range append(fuzzSchemas[1:],
		`{"type":"object","properties":{"a":{"type":"nope"}}}`, `{"$ref":"https://example.com/s.json"}`,
		`{"$id":"x","$defs":{"a":{"$id":"x"}}}`, `{"$anchor":"a","$defs":{"b":{"$anchor":"a"}}}`,
		`{"$schema":"http://json-schema.org/draft-07/schema#","$ref":"#/definitions/a","definitions":{"a":{"$ref":"#/definitions/a"}}}`,
		`{"$dynamicRef":"#a","$dynamicAnchor":"a"}`, `{"pattern":"(?=x)"}`, `true`, `[]`,
	) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		s, err := Compile(json.RawMessage(raw))
		if err != nil {
			var se *SchemaError
			if !errors.As(err, &se) || se.Reason == "" || strings.Contains(err.Error(), "\n") {
				t.Fatalf("Compile(%q) error %q (%T) is not a one-line *SchemaError", raw, err, err)
			}
			return
		}
		// A compiled schema validates without panicking.
		s.Validate(json.RawMessage(`{"a":[1,"x",{"b":null}],"c":1.5}`))
	})
}
