package peer

import (
	"testing"
	"time"
)

// FuzzVerifyPeer feeds certificate chains a peer could present (outside
// input) to the verifier of both sides. Nothing may panic, and a chain
// is accepted only if it is the real node SVID's leaf (every other byte
// string fails to parse or to verify).
func FuzzVerifyPeer(f *testing.F) {
	finance, hr := newBUF(f, "finance.example.corp"), newBUF(f, "hr.example.corp")
	if err := finance.set.Replace(finance.set.Own(), nil); err != nil {
		f.Fatal(err)
	}
	hr.trustF(f, finance)
	node, err := finance.ca.IssueX509SVID(mustNodeID(finance, "n1"), time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	leaf := node.Certificates[0].Raw
	f.Add(leaf)
	f.Add([]byte{})
	f.Add(leaf[:len(leaf)/2])
	flipped := append([]byte(nil), leaf...)
	flipped[len(flipped)-10] ^= 0xff
	f.Add(flipped)
	server := verifier{bundles: hr.set}
	client := verifier{bundles: hr.set, expect: financeTD}
	f.Fuzz(func(t *testing.T, der []byte) {
		for _, v := range []verifier{server, client} {
			id, err := v.verify([][]byte{der})
			if err == nil && (string(der) != string(leaf) || id != node.ID) {
				t.Fatalf("accepted a chain that is not the node's SVID: %s", id)
			}
		}
	})
}
