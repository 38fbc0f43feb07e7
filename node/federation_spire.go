package node

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/mcpmesh/mcpmesh/federation/assertion"
	"github.com/mcpmesh/mcpmesh/trust/bundles"
)

// What federation takes from the node's identity source. With the
// embedded CA: the own bundle from the replicated CA (its sequence derived
// from the CA, fixed while the node runs) and assertions signed with the
// CA's JWT key (kid form). With SPIRE's Workload API, which hands a node
// no JWT authority key: the own bundle built from the X.509 authorities
// the Workload API currently holds for the trust domain, rebuilt at each
// of its updates (a SPIRE CA rotation raises its sequence the same way on
// every replica, bundles.FromX509Authorities), and assertions signed with
// the node's current X.509-SVID, its chain in x5c. The peer listener and
// client take the SVID from the source at each handshake either way.

// ownBundle returns the own trust domain's bundle as the identity source
// has it now.
func (f *federation) ownBundle() (*spiffebundle.Bundle, error) {
	if c := f.n.identity.ca; c != nil {
		return bundles.OwnBundle(0, c)
	}
	xb, err := f.n.identity.bundle.GetX509BundleForTrustDomain(f.td)
	if err != nil {
		return nil, fmt.Errorf("the Workload API's bundle of %s: %w", f.td.Name(), err)
	}
	b, err := bundles.FromX509Authorities(f.td, xb.X509Authorities(), 0)
	if err != nil {
		return nil, fmt.Errorf("the Workload API's bundle: %w", err)
	}
	return b, nil
}

// newAssertionMinter returns the minter of the assertions this node sends
// with the calls it forwards: signed with the embedded CA's JWT key, or,
// on SPIRE, with the node's X.509-SVID.
func newAssertionMinter(id *identity, nodeID spiffeid.ID, ttl time.Duration, reg prometheus.Registerer) (*assertion.Minter, error) {
	cfg := assertion.MinterConfig{Node: nodeID, TTL: ttl}
	if id.ca != nil {
		cfg.KeyID, cfg.Signer = id.ca.JWTSigner()
	} else {
		cfg.SVID = id.svid
	}
	m, err := assertion.NewMinter(cfg, assertion.WithMetrics(reg))
	if err != nil {
		return nil, fmt.Errorf("federation: %w", err)
	}
	return m, nil
}
