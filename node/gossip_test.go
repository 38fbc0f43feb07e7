package node

import (
	"slices"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/mcpmesh/mcpmesh/federation/gossip"
)

// TestGossipOrder: a BU's addresses are tried in the manifest's order,
// with verified live members the manifest does not list next and those
// gossip saw fail at a verified address last; unverified claims add
// nothing and move nothing.
func TestGossipOrder(t *testing.T) {
	fin := spiffeid.RequireTrustDomainFromString("finance.example.corp")
	member := func(name, td, addr string, state gossip.State) gossip.Member {
		return gossip.Member{Name: name, State: state, Hint: gossip.Hint{TrustDomain: td, PeerAddr: addr}}
	}
	g := &meshGossip{peers: map[string]*meshPeer{
		// n1 failed where it was verified: last.
		"finance/n1": {member: member("finance/n1", fin.Name(), "10.0.0.1:8443", gossip.StateDead), verified: "10.0.0.1:8443"},
		"finance/n2": {member: member("finance/n2", fin.Name(), "10.0.0.2:8443", gossip.StateAlive), verified: "10.0.0.2:8443"},
		// n4 is not in the manifest, verified and alive: added.
		"finance/n4": {member: member("finance/n4", fin.Name(), "10.0.0.4:8443", gossip.StateAlive), verified: "10.0.0.4:8443"},
		// Unverified: a forged claim of n3's address being down, and a
		// forged extra address.
		"finance/x": {member: member("finance/x", fin.Name(), "10.0.0.3:8443", gossip.StateDead)},
		"finance/y": {member: member("finance/y", fin.Name(), "10.6.6.6:8443", gossip.StateAlive), refused: "trust domain mismatch"},
		// Another BU's member.
		"legal/n1": {member: member("legal/n1", "legal.example.corp", "10.0.0.9:8443", gossip.StateAlive), verified: "10.0.0.9:8443"},
	}}
	got := g.order(fin, []string{"10.0.0.1:8443", "10.0.0.2:8443", "10.0.0.3:8443"})
	want := []string{"10.0.0.2:8443", "10.0.0.3:8443", "10.0.0.4:8443", "10.0.0.1:8443"}
	if !slices.Equal(got, want) {
		t.Errorf("order = %v; want %v", got, want)
	}
	// A node that failed and came back at its address is tried in place.
	g.peers["finance/n1b"] = &meshPeer{member: member("finance/n1b", fin.Name(), "10.0.0.1:8443", gossip.StateAlive), verified: "10.0.0.1:8443"}
	got = g.order(fin, []string{"10.0.0.1:8443", "10.0.0.2:8443", "10.0.0.3:8443"})
	want = []string{"10.0.0.1:8443", "10.0.0.2:8443", "10.0.0.3:8443", "10.0.0.4:8443"}
	if !slices.Equal(got, want) {
		t.Errorf("order after n1 is back = %v; want %v", got, want)
	}
}
