package audit

import (
	"bytes"
	"testing"
)

// FuzzDecode feeds stored record values, as a damaged or forged store
// could hold them, to the decoder: it must never panic, and a value it
// accepts must encode back to the same bytes.
func FuzzDecode(f *testing.F) {
	body, err := encodeBody(callRecord(1))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(encodeEntry(entry{seq: 1, body: body, hash: chainHash([32]byte{}, 1, body)}))
	f.Add(encodeEntry(entry{seq: 7, body: []byte(`{"kind":"admin","records":3,"arguments":{"a":[1,2]}}`)}))
	f.Add([]byte{1})
	f.Add([]byte("garbage"))
	f.Add(append(make([]byte, headerLen), '{', '}'))
	f.Fuzz(func(t *testing.T, v []byte) {
		r, err := Decode(v)
		if err != nil {
			return
		}
		e, err := decodeEntry(v)
		if err != nil {
			t.Fatalf("Decode accepted what decodeEntry refuses: %v", err)
		}
		if !bytes.Equal(encodeEntry(e), v) {
			t.Fatalf("entry does not encode back to the stored value")
		}
		if r.Seq != e.seq || len(r.Hash) != 64 || len(r.Prev) != 64 {
			t.Fatalf("decoded record lost its place: seq %d prev %q hash %q", r.Seq, r.Prev, r.Hash)
		}
	})
}
