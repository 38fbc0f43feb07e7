package peer

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/mcpmesh/mcpmesh/trust/mtls"
)

// Reasons a handshake fails, the values of the reason label of
// mcpmesh_federation_peer_handshake_failures_total.
const (
	// ReasonNoCertificate: the peer presented no certificate.
	ReasonNoCertificate = "no_certificate"
	// ReasonUntrustedTrustDomain: the peer's trust domain is not in the
	// bundle set (not related by the manifest, revoked, or its bundle not
	// fetched yet).
	ReasonUntrustedTrustDomain = "untrusted_trust_domain"
	// ReasonBadCertificate: the chain does not verify against the peer's
	// trust domain's bundle, or the leaf is not an X509-SVID.
	ReasonBadCertificate = "bad_certificate"
	// ReasonUnauthorized: the peer is not an mcpmesh node, or the
	// Authorize hook refused it.
	ReasonUnauthorized = "unauthorized"
	// ReasonTrustDomainMismatch: the server's trust domain is not the one
	// the caller expected at that address (a forged or stale gossip
	// advertisement).
	ReasonTrustDomainMismatch = "trust_domain_mismatch"
	// ReasonRefusedByPeer: the peer aborted the handshake (it refused
	// this node's certificate).
	ReasonRefusedByPeer = "refused_by_peer"
	// ReasonTimeout: no handshake within the handshake timeout (nothing
	// listening, or the path is cut).
	ReasonTimeout = "timeout"
	// ReasonOther: any other failure to connect.
	ReasonOther = "other"
)

var handshakeReasons = []string{ReasonNoCertificate, ReasonUntrustedTrustDomain, ReasonBadCertificate, ReasonUnauthorized,
	ReasonTrustDomainMismatch, ReasonRefusedByPeer, ReasonTimeout, ReasonOther}

// HandshakeError is a peer certificate this node refused.
type HandshakeError struct {
	// Reason is one of the Reason constants.
	Reason string
	// Peer is the SPIFFE ID the peer's certificate claims, verified or
	// not; empty when it claims none.
	Peer string
	// Expected is the trust domain the caller expected, for
	// ReasonTrustDomainMismatch; zero otherwise.
	Expected spiffeid.TrustDomain
	Err      error
}

// Error names the peer, the reason and, for a mismatch, both trust domains.
func (e *HandshakeError) Error() string {
	peer := e.Peer
	if peer == "" {
		peer = "with no SPIFFE ID"
	}
	if e.Reason == ReasonTrustDomainMismatch {
		return fmt.Sprintf("peer %s is in trust domain %s, but was expected in trust domain %s: %v", peer, claimedTD(e.Peer), e.Expected.Name(), e.Err)
	}
	return fmt.Sprintf("refused peer %s (%s): %v", peer, e.Reason, e.Err)
}

// Unwrap returns the underlying error.
func (e *HandshakeError) Unwrap() error { return e.Err }

func claimedTD(id string) string {
	if parsed, err := spiffeid.FromString(id); err == nil {
		return parsed.TrustDomain().Name()
	}
	return "(none)"
}

// verifier checks a peer's certificate chain: trust domain (when one is
// expected), chain against the bundle source, node path, then authorize.
type verifier struct {
	bundles   x509bundle.Source
	expect    spiffeid.TrustDomain // zero on the server
	authorize func(spiffeid.ID) error
}

func (v verifier) verify(raw [][]byte) (spiffeid.ID, error) {
	if len(raw) == 0 {
		return spiffeid.ID{}, &HandshakeError{Reason: ReasonNoCertificate, Err: errors.New("a peer must present its node X509-SVID")}
	}
	leaf, err := x509.ParseCertificate(raw[0])
	if err != nil {
		return spiffeid.ID{}, &HandshakeError{Reason: ReasonBadCertificate, Err: err}
	}
	claimed, err := x509svid.IDFromCert(leaf)
	if err != nil {
		return spiffeid.ID{}, &HandshakeError{Reason: ReasonBadCertificate, Err: fmt.Errorf("not an X509-SVID: %w", err)}
	}
	if !v.expect.IsZero() && claimed.TrustDomain() != v.expect {
		return claimed, &HandshakeError{Reason: ReasonTrustDomainMismatch, Peer: claimed.String(), Expected: v.expect,
			Err: errors.New("refusing it: the address was advertised (gossip) for the other trust domain; a forged or stale advertisement")}
	}
	if _, err := v.bundles.GetX509BundleForTrustDomain(claimed.TrustDomain()); err != nil {
		return claimed, &HandshakeError{Reason: ReasonUntrustedTrustDomain, Peer: claimed.String(), Err: err}
	}
	id, _, err := x509svid.ParseAndVerify(raw, v.bundles)
	if err != nil {
		return claimed, &HandshakeError{Reason: ReasonBadCertificate, Peer: claimed.String(), Err: err}
	}
	if !strings.HasPrefix(id.Path(), mtls.NodePathPrefix) || len(id.Path()) == len(mtls.NodePathPrefix) {
		return id, &HandshakeError{Reason: ReasonUnauthorized, Peer: id.String(), Err: fmt.Errorf("not an mcpmesh node (path not under %s)", mtls.NodePathPrefix)}
	}
	if v.authorize != nil {
		if err := v.authorize(id); err != nil {
			return id, &HandshakeError{Reason: ReasonUnauthorized, Peer: id.String(), Err: err}
		}
	}
	return id, nil
}

// PeerID returns the SPIFFE ID of the node that sent r to a Server: the
// verified and authorized identity of its client certificate. Handlers
// mounted on the Server use it to decide what the calling BU may see.
func PeerID(r *http.Request) (spiffeid.ID, error) {
	return mtls.PeerID(r.TLS)
}
