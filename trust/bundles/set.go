package bundles

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Set is the set of trust bundles a node trusts: its own trust domain's
// and the foreign ones. Lookups read one immutable spiffebundle.Set
// through an atomic pointer, so a TLS handshake never waits for Replace.
// The zero value is not usable; call NewSet. Safe for concurrent use.
type Set struct {
	cur atomic.Pointer[snapshot]

	mu      sync.Mutex
	changed chan struct{}
}

type snapshot struct {
	own *spiffebundle.Bundle
	set *spiffebundle.Set
}

var (
	_ x509bundle.Source   = (*Set)(nil)
	_ jwtbundle.Source    = (*Set)(nil)
	_ spiffebundle.Source = (*Set)(nil)
)

// NewSet returns a Set trusting own and the foreign bundles; see Replace.
// WithMetrics registers mcpmesh_federation_bundle_sequence, read from the
// current set at each scrape.
func NewSet(own *spiffebundle.Bundle, foreign []*spiffebundle.Bundle, opts ...Option) (*Set, error) {
	o := newOptions(opts)
	s := &Set{changed: make(chan struct{})}
	if err := s.Replace(own, foreign); err != nil {
		return nil, err
	}
	if o.registry != nil {
		if err := o.registry.Register(setCollector{s}); err != nil {
			return nil, fmt.Errorf("register bundle metrics: %w", err)
		}
	}
	return s, nil
}

// Replace makes the set exactly own plus foreign, atomically: a lookup
// sees either the old set or the new one. A trust domain in the old set
// but not in the new one is no longer trusted for new handshakes and
// token checks; connections already established are the transport's
// business (federation/peer closes those of revoked peers on
// Revalidate). own must not be nil; a foreign bundle for own's trust
// domain, two foreign bundles for one trust domain, or a nil one are
// refused and the set is left as it was. The bundles are cloned.
func (s *Set) Replace(own *spiffebundle.Bundle, foreign []*spiffebundle.Bundle) error {
	if own == nil {
		return fmt.Errorf("replace trust bundles: the own trust domain's bundle is missing")
	}
	set := spiffebundle.NewSet(own.Clone())
	for i, b := range foreign {
		switch {
		case b == nil:
			return fmt.Errorf("replace trust bundles: foreign bundle %d is nil", i)
		case set.Has(b.TrustDomain()):
			return fmt.Errorf("replace trust bundles: trust domain %s given twice (the own trust domain is %s); give each trust domain one bundle", b.TrustDomain().Name(), own.TrustDomain().Name())
		}
		set.Add(b.Clone())
	}
	s.cur.Store(&snapshot{own: own.Clone(), set: set})
	s.mu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	return nil
}

// Changed returns a channel that is closed at the next Replace. Callers
// that act on a change (closing the connections of revoked peers) wait on
// it and then call Changed again.
func (s *Set) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// Own returns a copy of the own trust domain's bundle.
func (s *Set) Own() *spiffebundle.Bundle { return s.cur.Load().own.Clone() }

// TrustDomains returns the trusted trust domains, the own one included,
// sorted by name.
func (s *Set) TrustDomains() []spiffeid.TrustDomain {
	bs := s.cur.Load().set.Bundles() // sorted by trust domain
	out := make([]spiffeid.TrustDomain, len(bs))
	for i, b := range bs {
		out[i] = b.TrustDomain()
	}
	return out
}

// Has reports whether td is trusted.
func (s *Set) Has(td spiffeid.TrustDomain) bool { return s.cur.Load().set.Has(td) }

// GetBundleForTrustDomain implements spiffebundle.Source.
func (s *Set) GetBundleForTrustDomain(td spiffeid.TrustDomain) (*spiffebundle.Bundle, error) {
	b, err := s.cur.Load().set.GetBundleForTrustDomain(td)
	if err != nil {
		return nil, notTrusted(td)
	}
	return b, nil
}

// GetX509BundleForTrustDomain implements x509bundle.Source.
func (s *Set) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	b, err := s.cur.Load().set.GetX509BundleForTrustDomain(td)
	if err != nil {
		return nil, notTrusted(td)
	}
	return b, nil
}

// GetJWTBundleForTrustDomain implements jwtbundle.Source.
func (s *Set) GetJWTBundleForTrustDomain(td spiffeid.TrustDomain) (*jwtbundle.Bundle, error) {
	b, err := s.cur.Load().set.GetJWTBundleForTrustDomain(td)
	if err != nil {
		return nil, notTrusted(td)
	}
	return b, nil
}

// ErrNotTrusted is wrapped by the errors of lookups for a trust domain
// the set does not hold.
var ErrNotTrusted = fmt.Errorf("trust domain not trusted")

func notTrusted(td spiffeid.TrustDomain) error {
	return fmt.Errorf("%w: %s (not in the federation manifest's relationships, revoked, or its bundle not fetched yet)", ErrNotTrusted, td.Name())
}
