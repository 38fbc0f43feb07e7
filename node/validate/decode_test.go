package validate

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// stdDecode decodes as jsonschema.UnmarshalJSON does: encoding/json with
// UseNumber, one value only.
func stdDecode(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() || dec.InputOffset() < int64(len(bytes.TrimRight(data, " \t\r\n"))) {
		return nil, errors.New("trailing data")
	}
	return v, nil
}

func TestDecodeAgreesWithEncodingJSON(t *testing.T) {
	for _, in := range []string{
		`{}`, `[]`, `{"a":[1,-0,0.5,1e3,1E-3,-12.5e+2,true,false,null,"s"]}`,
		`{"esc":"\"\\\/\b\f\n\r\t\u0041\u00e9\u20ac\ud83d\ude00"}`,
		`{"utf8":"héllo €😀","":{"":[]}}`,
		` { "a" : { "b" : [ { } , [ ] ] } } `,
		`{"big":123456789012345678901234567890,"tiny":5e-324,"max":1.7976931348623157e308}`,
		`"` + strings.Repeat("x", 1000) + `"`,
	} {
		got, err := decodeArgs([]byte(in))
		if err != nil {
			t.Errorf("decodeArgs(%s): %v", in, err)
			continue
		}
		want, err := stdDecode([]byte(in))
		if err != nil {
			t.Fatalf("encoding/json refuses %s: %v", in, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("decodeArgs(%s) differs from encoding/json (-want +got):\n%s", in, diff)
		}
	}
}

func TestDecodeRefusals(t *testing.T) {
	deep := strings.Repeat(`{"a":`, MaxDepth) + `1` + strings.Repeat(`}`, MaxDepth)
	tooDeep := strings.Repeat(`[`, MaxDepth+1) + strings.Repeat(`]`, MaxDepth+1)
	if _, err := decodeArgs([]byte(deep)); err != nil {
		t.Errorf("%d levels refused: %v", MaxDepth, err)
	}
	tests := []struct {
		name, in, path, msg string
	}{
		{"duplicate key", `{"a":1,"a":2}`, "/a", "is a duplicate key"},
		{"duplicate nested key", `{"x":[{"k":1},{"k":1,"k":2}]}`, "/x/1/k", "is a duplicate key"},
		{"duplicate key after escapes", `{"a":1,"\u0061":2}`, "/a", "is a duplicate key"},
		{"invalid UTF-8", "{\"a\":\"\xff\"}", "/a", "holds invalid UTF-8"},
		{"invalid UTF-8 after an escape", "{\"a\":\"\\n\xc3\"}", "/a", "holds invalid UTF-8"},
		{"lone high surrogate", `{"a":"\ud800x"}`, "/a", "lone UTF-16 surrogate"},
		{"lone low surrogate", `{"a":"\udc00"}`, "/a", "lone UTF-16 surrogate"},
		{"high surrogate and a non-surrogate", `{"a":"\ud800\u0041"}`, "/a", "lone UTF-16 surrogate"},
		{"number overflow", `{"n":1e400}`, "/n", "out of the range of an IEEE 754 double"},
		{"number underflow", `{"n":-1e-400}`, "/n", "too close to zero"},
		{"huge exponent of zero", `{"n":0e99999999}`, "/n", "exponent beyond"},
		{"too deep", tooDeep, "/0/0/0", "deeper than"},
		{"control character", "{\"a\":\"x\ty\"}", "/a", "control character"},
		{"trailing data", `{} {}`, "", "after the arguments object"},
		{"leading zero", `{"n":01}`, "", "expected ',' or '}'"},
		{"bare dot", `{"n":1.}`, "/n", "malformed number"},
		{"bad escape", `{"a":"\x"}`, "/a", "unknown escape"},
		{"single quotes", `{'a':1}`, "", "expected a quoted object key"},
		{"trailing comma", `{"a":1,}`, "", "expected a quoted object key"},
		{"truncated literal", `{"a":tru}`, "/a", "unexpected character 't'"},
		{"unterminated string", `{"a":"x`, "/a", "unterminated string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeArgs([]byte(tt.in))
			var e *Error
			if !errors.As(err, &e) || len(e.Violations) != 1 {
				t.Fatalf("decodeArgs(%q) = %v; want an *Error with one violation", tt.in, err)
			}
			got := e.Violations[0]
			if got.Rule != "json" || !strings.HasPrefix(got.Path, tt.path) || !strings.Contains(got.Message, tt.msg) {
				t.Errorf("decodeArgs(%q): %v; want rule json at %s saying %q", tt.in, got, tt.path, tt.msg)
			}
		})
	}
}
