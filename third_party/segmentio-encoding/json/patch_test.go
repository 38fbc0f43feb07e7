// mcpmesh: the patched decoder sizes new maps by their content, and decodes
// them as encoding/json does.

package json

import (
	stdjson "encoding/json"
	"reflect"
	"runtime"
	"testing"
)

func TestPatchedMapsDecodeAsEncodingJSON(t *testing.T) {
	for _, tc := range []struct {
		in  string
		new func() any
	}{
		{`{"a":1,"b":[true,null,"x"],"c":{"d":2.5}}`, func() any { return new(map[string]any) }},
		{`{"a":{"x":1},"b":[1,2]}`, func() any { return new(map[string]RawMessage) }},
		{`{"a":"x","b":""}`, func() any { return new(map[string]string) }},
		{`{"a":["x","y"],"b":[]}`, func() any { return new(map[string][]string) }},
		{`{"a":true,"b":false}`, func() any { return new(map[string]bool) }},
		{`{}`, func() any { return new(map[string]any) }},
	} {
		got, want := tc.new(), tc.new()
		if _, err := Parse([]byte(tc.in), got, 0); err != nil {
			t.Fatalf("%s into %T: %v", tc.in, got, err)
		}
		if err := stdjson.Unmarshal([]byte(tc.in), want); err != nil {
			t.Fatalf("%s into %T with encoding/json: %v", tc.in, want, err)
		}
		// RawMessage is this package's type; compare as bytes.
		if g, ok := got.(*map[string]RawMessage); ok {
			w := want.(*map[string]RawMessage)
			for k := range *w {
				if string((*g)[k]) != string((*w)[k]) {
					t.Errorf("%s: key %s = %s, encoding/json %s", tc.in, k, (*g)[k], (*w)[k])
				}
			}
			if len(*g) != len(*w) {
				t.Errorf("%s: %d keys, encoding/json %d", tc.in, len(*g), len(*w))
			}
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s into %T: got %v, encoding/json %v", tc.in, got, got, want)
		}
	}
}

func TestPatchedSmallMapAllocatesLittle(t *testing.T) {
	in := []byte(`{"progressToken":7,"io.mcpmesh/version":"2.0.0"}`)
	const n = 200
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range n {
		var m map[string]any
		if _, err := Parse(in, &m, 0); err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	// Unpatched: 4.75 KB per map for the 64-entry hint alone.
	if per := (after.TotalAlloc - before.TotalAlloc) / n; per > 1024 {
		t.Errorf("decoding a two-key map allocated %d bytes per map; want < 1024", per)
	}
}
