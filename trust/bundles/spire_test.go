package bundles

import (
	"crypto/x509"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"

	"github.com/mcpmesh/mcpmesh/trust/ca"
)

// TestFromX509AuthoritiesSequence: through SPIRE's CA rotations (a new
// authority added, an old one pruned, with up to three held at once) the
// sequence of the bundle built from the Workload API's authorities only
// rises, every replica computes the same one, and no JWT authority is
// served.
func TestFromX509AuthoritiesSequence(t *testing.T) {
	base := time.Now()
	root := func(offset time.Duration) *x509.Certificate {
		at := base.Add(offset)
		return newCA(t, financeTD, ca.WithClock(func() time.Time { return at })).Bundle().X509Authorities()[0]
	}
	a, b, c := root(0), root(10*time.Second), root(20*time.Second)
	steps := []struct {
		name  string
		roots []*x509.Certificate
	}{
		{"first CA", []*x509.Certificate{a}},
		{"second CA prepared", []*x509.Certificate{a, b}},
		{"third CA prepared", []*x509.Certificate{a, b, c}},
		{"first pruned", []*x509.Certificate{b, c}},
		{"second pruned", []*x509.Certificate{c}},
	}
	seq := func(x *spiffebundle.Bundle) uint64 { n, _ := x.SequenceNumber(); return n }
	var last uint64
	for i, s := range steps {
		got, err := FromX509Authorities(financeTD, s.roots, 0)
		if err != nil {
			t.Fatal(err)
		}
		// Another replica, handed the same authorities in another order.
		rev := append([]*x509.Certificate(nil), s.roots...)
		for l, r := 0, len(rev)-1; l < r; l, r = l+1, r-1 {
			rev[l], rev[r] = rev[r], rev[l]
		}
		other, _ := FromX509Authorities(financeTD, rev, 0)
		if seq(got) != seq(other) {
			t.Errorf("%s: replicas compute %d and %d", s.name, seq(got), seq(other))
		}
		if i > 0 && seq(got) <= last {
			t.Errorf("%s: sequence %d after %d; want it to rise", s.name, seq(got), last)
		}
		last = seq(got)
		if len(got.X509Authorities()) != len(s.roots) || len(got.JWTAuthorities()) != 0 || got.TrustDomain() != financeTD {
			t.Errorf("%s: %d X.509 and %d JWT authorities of %s", s.name, len(got.X509Authorities()), len(got.JWTAuthorities()), got.TrustDomain())
		}
		if hint, ok := got.RefreshHint(); !ok || hint != DefaultRefreshHint {
			t.Errorf("%s: refresh hint %s, %v", s.name, hint, ok)
		}
	}
	if _, err := FromX509Authorities(financeTD, nil, 0); err == nil {
		t.Error("a bundle without authorities was built")
	}
}
