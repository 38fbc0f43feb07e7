package bundles

import (
	"testing"

	"github.com/hashicorp/raft"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"

	"github.com/mcpmesh/mcpmesh/registry/state"
)

// FuzzFetchedBundle feeds bundle endpoint answers (outside input) through
// the path the watcher and the replicas take: parse, marshal, store with
// PutBundle, read back with ParseStored. What parses must be stored and
// read back equal; nothing may panic.
func FuzzFetchedBundle(f *testing.F) {
	c, err := newCAForFuzz(f)
	if err != nil {
		f.Fatal(err)
	}
	own, err := OwnBundle(0, c)
	if err != nil {
		f.Fatal(err)
	}
	raw, err := own.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(raw)
	f.Add([]byte(`{"keys":[]}`))
	f.Add([]byte(`{"keys":[],"spiffe_sequence":18446744073709551615,"spiffe_refresh_hint":-1}`))
	f.Add([]byte(`{"keys":[{"kty":"EC","use":"x509-svid","crv":"P-256","x":"AA","y":"AA","x5c":["AA=="]}]}`))
	f.Add([]byte(`not json`))
	p := &fsmProposer{}
	fsm, err := state.Open("state", state.WithFS(memFS()))
	if err != nil {
		f.Fatal(err)
	}
	defer fsm.Close()
	p.fsm = fsm
	f.Fuzz(func(t *testing.T, doc []byte) {
		b, err := spiffebundle.Parse(financeTD, doc)
		if err != nil {
			return
		}
		out, err := encodeFetched(b)
		if err != nil {
			return
		}
		p.index++
		cmd, err := state.Encode(state.PutBundle{TrustDomain: financeTD.Name(), Sequence: p.index, Bundle: out})
		if err != nil {
			t.Fatal(err)
		}
		if res := fsm.Apply(&raft.Log{Index: p.index, Term: 1, Type: raft.LogCommand, Data: cmd}); res != nil {
			if err, ok := res.(error); ok {
				if len(out) > state.MaxBundleLen {
					return
				}
				t.Fatalf("a bundle that parsed and marshalled was refused: %v", err)
			}
		}
		stored, err := fsm.ForeignBundles()
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseStored(stored, nil)
		if err != nil || len(back) != 1 {
			t.Fatalf("ParseStored: %d bundles, %v", len(back), err)
		}
		if !back[0].Equal(b) {
			t.Fatalf("stored bundle differs from the fetched one")
		}
	})
}
