// mcpmesh: the patched Unmarshal must decode exactly what the SDK's
// original, Decoder-based one did.

package json

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"testing"
)

// original is Unmarshal as go-sdk v1.8.0 wrote it.
func original(data []byte, v any) error {
	if err := checkMaxDepth(data, defaultMaxDepth); err != nil {
		return err
	}
	return NewDecoder(bytes.NewReader(data)).Decode(v)
}

type message struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      any             `json:"id,omitempty"`
	Method  string          `json:"method,omitempty"`
	Params  json.RawMessage `json:"params,omitempty"`
	Result  json.RawMessage `json:"result,omitempty"`
	Meta    map[string]any  `json:"_meta,omitempty"`
	Name    string          `json:"name"`
}

var corpus = []string{
	`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"hr.lookup","arguments":{"q":"x"},"_meta":{"progressToken":7}}}`,
	`{"jsonrpc":"2.0","id":"a","result":{"content":[{"type":"text","text":"ok"}],"structuredContent":{"n":1.5e3}}}`,
	`  {"name":"x"}  `,
	`{"name":"x"} {"name":"y"}`,
	`{"name":"x"} trailing`,
	`{"NAME":"upper"}`,
	`{"name":"\u0000nul\"quote"}`,
	``,
	`   `,
	"\n\t",
	`{`,
	`{"name":}`,
	`[1,2,3]`,
	`null`,
	`"str"`,
	`{"id":12345678901234567890}`,
	`{"_meta":{"a":[{"b":null}]}}`,
}

func TestPatchedUnmarshalMatchesOriginal(t *testing.T) {
	for _, in := range corpus {
		compare(t, []byte(in))
	}
	var v message
	if err := Unmarshal([]byte(" \n"), &v); !errors.Is(err, io.EOF) {
		t.Errorf("white space only: %v, want io.EOF", err)
	}
}

func FuzzPatchedUnmarshalMatchesOriginal(f *testing.F) {
	for _, in := range corpus {
		f.Add([]byte(in))
	}
	f.Fuzz(func(t *testing.T, data []byte) { compare(t, data) })
}

func compare(t *testing.T, data []byte) {
	t.Helper()
	for _, newV := range []func() any{
		func() any { return new(message) },
		func() any { return new(any) },
		func() any { return new(map[string]any) },
	} {
		got, want := newV(), newV()
		gotErr, wantErr := Unmarshal(data, got), original(data, want)
		if (gotErr == nil) != (wantErr == nil) {
			t.Fatalf("%q into %T: patched error %v, original %v", data, got, gotErr, wantErr)
		}
		if gotErr == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("%q into %T: patched %#v, original %#v", data, got, got, want)
		}
	}
}
