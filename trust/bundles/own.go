package bundles

import (
	"crypto/x509"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"

	"github.com/mcpmesh/mcpmesh/trust/ca"
)

// DefaultRefreshHint is the refresh hint the own bundle carries: how
// often other BUs' watchers should fetch it. A minute keeps a key
// rotation's new authority reaching the other BUs well within the
// overlap of the old and new CA.
const DefaultRefreshHint = time.Minute

// OwnBundle returns the SPIFFE bundle of the node's own trust domain:
// the X.509 authorities are the CAs' root certificates and the JWT
// authorities their JWT keys (ca.JWTBundle). cas holds the CA in use and,
// during a rotation, the one it replaces (or the one that replaces it);
// all must belong to one trust domain.
//
// The sequence number is derived from the content, so every replica of
// the BU computes the same one from the replicated CA and it rises with
// each step of a rotation:
//
//	sequence = 2 × (latest NotBefore among the roots, Unix seconds)
//	           + 1 if the bundle holds a single root, else 0
//
// Adding a new root (a later NotBefore) raises the first term; retiring
// the old root keeps it and adds 1. A root is never backdated before the
// one it replaces, so the number never falls. refresh is the refresh
// hint (0 means DefaultRefreshHint).
func OwnBundle(refresh time.Duration, cas ...*ca.CA) (*spiffebundle.Bundle, error) {
	if len(cas) == 0 {
		return nil, fmt.Errorf("own trust bundle: no CA given")
	}
	if refresh <= 0 {
		refresh = DefaultRefreshHint
	}
	td := cas[0].TrustDomain()
	b := spiffebundle.New(td)
	var latest time.Time
	for _, c := range cas {
		if c.TrustDomain() != td {
			return nil, fmt.Errorf("own trust bundle: CA of %s mixed with CA of %s; give the CAs of one trust domain", c.TrustDomain().Name(), td.Name())
		}
		for _, cert := range c.Bundle().X509Authorities() {
			b.AddX509Authority(cert)
			if cert.NotBefore.After(latest) {
				latest = cert.NotBefore
			}
		}
		for kid, key := range c.JWTBundle().JWTAuthorities() {
			if err := b.AddJWTAuthority(kid, key); err != nil {
				return nil, fmt.Errorf("own trust bundle: %w", err)
			}
		}
	}
	b.SetRefreshHint(refresh)
	b.SetSequenceNumber(ownSequence(latest, b.X509Authorities()))
	return b, nil
}

func ownSequence(latest time.Time, roots []*x509.Certificate) uint64 {
	seq := 2 * uint64(max(latest.Unix(), 0))
	if len(roots) == 1 {
		seq++
	}
	return seq
}
