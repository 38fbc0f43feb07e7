package validate

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

func TestCheckSchema(t *testing.T) {
	tests := []struct {
		name         string
		schema       string
		wantLocation string
		wantReason   string // substring; "" means the schema is valid
	}{
		{"transfer_funds input", string(ledgerTool(t, "transfer_funds").InputSchema), "", ""},
		{"transfer_funds output", string(ledgerTool(t, "transfer_funds").OutputSchema), "", ""},
		{"get_balance input", string(ledgerTool(t, "get_balance").InputSchema), "", ""},
		{"in-document $ref", `{"type":"object","properties":{"a":{"$ref":"#/$defs/a"}},"$defs":{"a":{"type":"string"}}}`, "", ""},
		{"$ref by anchor", `{"type":"object","properties":{"a":{"$ref":"#acct"}},"$defs":{"a":{"$anchor":"acct","type":"string"}}}`, "", ""},
		{"recursive $ref", `{"type":"object","properties":{"tree":{"$ref":"#/$defs/node"}},"$defs":{"node":{"type":"object","properties":{"kids":{"type":"array","items":{"$ref":"#/$defs/node"}}}}}}`, "", ""},
		{"$ref to a standard metaschema is built in", `{"type":"object","properties":{"s":{"$ref":"https://json-schema.org/draft/2020-12/schema"}}}`, "", ""},
		{"$id with an in-document $ref", `{"$id":"https://tools.example.com/t.json","type":"object","properties":{"a":{"$ref":"#/$defs/a"}},"$defs":{"a":{"type":"string"}}}`, "", ""},
		{"draft-07 with definitions", `{"$schema":"http://json-schema.org/draft-07/schema#","type":"object","properties":{"a":{"$ref":"#/definitions/a"}},"definitions":{"a":{"type":"integer"}}}`, "", ""},
		{"unknown keywords are annotations", `{"type":"object","x-ui":{"order":1},"properties":{"a":{"type":"string","examples":["x"]}}}`, "", ""},

		{"unknown type", `{"type":"object","properties":{"a":{"type":"nope"}}}`, "/properties/a/type",
			`at /properties/a/type: must match at least one schema in anyOf; alternative 0: must be one of "array", "boolean", "integer", "null", "number", "object", "string" (enum)`},
		{"required not an array", `{"type":"object","required":"a"}`, "/required", "at /required: must be array, got string (type)"},
		{"negative minLength", `{"type":"object","properties":{"a":{"minLength":-1}}}`, "/properties/a/minLength", "at /properties/a/minLength: must be >= 0 (minimum)"},
		{"properties not an object", `{"type":"object","properties":[]}`, "/properties", "at /properties: must be object, got array (type)"},
		{"regex with lookahead", `{"type":"object","properties":{"a":{"type":"string","pattern":"^(?=x)"}}}`, "/properties/a/pattern",
			"at /properties/a/pattern: must be a regular expression that Go's RE2 engine accepts"},
		{"patternProperties key not RE2", `{"type":"object","patternProperties":{"(?<=a)b":{}}}`, "/patternProperties/(?<=a)b",
			"at /patternProperties/(?<=a)b: is not an allowed property name: the name must be a regular expression that Go's RE2 engine accepts"},
		{"dangling $ref", `{"type":"object","properties":{"a":{"$ref":"#/$defs/missing"}}}`, "", "refers to #/$defs/missing, which the schema does not define"},
		{"not JSON", `{"type":`, "", "is not valid JSON"},
		{"empty", ``, "", "no schema given"},
		{"null", `null`, "", "no schema given"},
		{"custom metaschema", `{"$schema":"https://example.com/meta.json","type":"object"}`, "/$schema", "is not a supported draft"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckSchema(json.RawMessage(tt.schema))
			if tt.wantReason == "" {
				if err != nil {
					t.Fatalf("CheckSchema(%s) = %v; want nil", tt.schema, err)
				}
				return
			}
			var se *SchemaError
			if !errors.As(err, &se) {
				t.Fatalf("CheckSchema(%s) = %v (%T); want a *SchemaError", tt.schema, err, err)
			}
			if !strings.Contains(se.Error(), tt.wantReason) || se.Location != tt.wantLocation {
				t.Errorf("CheckSchema(%s) = %q at %q\nwant it to contain %q, at %q", tt.schema, se, se.Location, tt.wantReason, tt.wantLocation)
			}
			if !strings.HasPrefix(se.Error(), "not a valid JSON Schema") || strings.Contains(se.Error(), "\n") {
				t.Errorf("error %q is not one line starting with %q", se, "not a valid JSON Schema")
			}
			if strings.Contains(se.Error(), "mcpmesh.invalid") {
				t.Errorf("error %q leaks the internal base URL", se)
			}
		})
	}
}

// TestRemoteRefRefused: a reference outside the schema is refused with
// ErrRemoteRef, and nothing is fetched, over the network or from files.
func TestRemoteRefRefused(t *testing.T) {
	var fetched atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetched.Add(1)
		w.Header().Set("Content-Type", "application/schema+json")
		w.Write([]byte(`{"type":"string"}`))
	}))
	t.Cleanup(srv.Close)
	file := filepath.Join(t.TempDir(), "defs.json")
	if err := os.WriteFile(file, []byte(`{"type":"string"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, schema, wantRef string
	}{
		{"http URL", `{"type":"object","properties":{"a":{"$ref":"` + srv.URL + `/defs.json"}}}`, srv.URL + "/defs.json"},
		{"http URL with fragment", `{"type":"object","properties":{"a":{"$ref":"` + srv.URL + `/defs.json#/$defs/a"}}}`, srv.URL + "/defs.json"},
		{"file URL", `{"type":"object","properties":{"a":{"$ref":"file://` + file + `"}}}`, "file://" + file},
		{"relative to the schema", `{"type":"object","properties":{"a":{"$ref":"defs.json"}}}`, "refers to defs.json,"},
		{"relative to $id", `{"$id":"` + srv.URL + `/tool.json","type":"object","properties":{"a":{"$ref":"defs.json"}}}`, srv.URL + "/defs.json"},
		{"$dynamicRef outside", `{"type":"object","properties":{"a":{"$dynamicRef":"` + srv.URL + `/defs.json#node"}}}`, srv.URL + "/defs.json"},
		{"draft-07 $ref", `{"$schema":"http://json-schema.org/draft-07/schema#","type":"object","properties":{"a":{"$ref":"` + srv.URL + `/defs.json"}}}`, srv.URL + "/defs.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile(json.RawMessage(tt.schema))
			if !errors.Is(err, ErrRemoteRef) {
				t.Fatalf("Compile(%s) = %v; want an error wrapping ErrRemoteRef", tt.schema, err)
			}
			if !strings.Contains(err.Error(), tt.wantRef) || !strings.Contains(err.Error(), `"#/$defs/NAME"`) {
				t.Errorf("error %q does not name %q and say what to do", err, tt.wantRef)
			}
		})
	}
	if n := fetched.Load(); n != 0 {
		t.Errorf("the compiler fetched %d documents over HTTP; want none", n)
	}
}
