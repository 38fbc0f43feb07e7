package bundles

import (
	"crypto/x509"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

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

// FromX509Authorities returns the SPIFFE bundle of the node's own trust
// domain td when its X.509 authorities come from SPIRE's Workload API
// rather than the embedded CA: the authorities the Workload API hands out
// for td, and no JWT authorities (the BU's nodes sign federation
// assertions with their X.509-SVIDs, which other BUs check against these
// authorities; SPIRE's JWT keys are not the federation's business).
//
// The Workload API carries no sequence number, so the sequence is derived
// from the content, as OwnBundle does, for every replica of the BU to
// compute the same one from what SPIRE hands them all:
//
//	sequence = 32 × (latest NotBefore among the authorities, Unix seconds)
//	           + 31 − min(number of authorities − 1, 31)
//
// A SPIRE CA rotation first adds the new authority (a later NotBefore:
// the first term rises by at least 32, the second falls by at most 31),
// and SPIRE later prunes expired ones (the second term rises by one for
// each). Unlike an embedded CA's bundle, SPIRE's may hold more than two
// authorities (each CA lives longer than the rotation interval), so each
// pruning, not just the last, must raise the number. Removing the newest
// authority (rolling back a prepared CA) lowers it; other BUs then keep
// the bundle they have until the next rotation raises it again. refresh
// is the refresh hint (0 means DefaultRefreshHint).
func FromX509Authorities(td spiffeid.TrustDomain, authorities []*x509.Certificate, refresh time.Duration) (*spiffebundle.Bundle, error) {
	if len(authorities) == 0 {
		return nil, fmt.Errorf("own trust bundle of %s: no X.509 authorities", td.Name())
	}
	if refresh <= 0 {
		refresh = DefaultRefreshHint
	}
	b := spiffebundle.New(td)
	var latest time.Time
	for _, c := range authorities {
		b.AddX509Authority(c)
		if c.NotBefore.After(latest) {
			latest = c.NotBefore
		}
	}
	b.SetRefreshHint(refresh)
	b.SetSequenceNumber(authoritiesSequence(latest, len(b.X509Authorities())))
	return b, nil
}

func authoritiesSequence(latest time.Time, n int) uint64 {
	return 32*uint64(max(latest.Unix(), 0)) + 31 - uint64(min(n-1, 31))
}
