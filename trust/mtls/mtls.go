// Package mtls builds the TLS configurations mcpmesh authenticates with SPIFFE
// X509-SVIDs: mutual TLS between the nodes of one trust domain (Raft
// replication over TCP now, QUIC later), and the admin HTTP listener, where a
// client certificate is optional. It also authorizes node peers and reads a
// verified peer's SPIFFE ID.
//
// Every configuration requires TLS 1.3 and disables session tickets, because
// a resumed session skips the SPIFFE verification and authorization of the
// peer. Callers must keep 0-RTT off where their transport offers it (quic-go's
// Allow0RTT). The package builds on go-spiffe's tlsconfig. It does not obtain
// or rotate SVIDs (trust/svid, trust/ca), fetch or federate bundles, or decide
// what an authenticated admin or agent may do.
package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// ErrNoPeerCertificate is returned by PeerID when the peer presented no
// certificate, as a client of OptionalClientServerConfig may; such a client
// must authenticate another way, such as with a token.
var ErrNoPeerCertificate = errors.New("peer presented no certificate")

// ServerConfig returns a TLS configuration for a server that presents the
// SVID from svid and requires each client to present an X509-SVID that
// verifies against bundle and that authz accepts. nextProtos are the ALPN
// protocols offered, most preferred first.
func ServerConfig(svid x509svid.Source, bundle x509bundle.Source, authz tlsconfig.Authorizer, nextProtos ...string) *tls.Config {
	cfg := &tls.Config{}
	tlsconfig.HookMTLSServerConfig(cfg, svid, bundle, authz)
	cfg.VerifyPeerCertificate = verifyPeer(bundle, authz)
	harden(cfg, nextProtos)
	return cfg
}

// ClientConfig returns a TLS configuration for a client that presents the
// SVID from svid and requires the server to present an X509-SVID that
// verifies against bundle and that authz accepts. The server's host name is
// not checked: its SPIFFE ID is what authz decides on. nextProtos are the ALPN
// protocols offered, most preferred first.
func ClientConfig(svid x509svid.Source, bundle x509bundle.Source, authz tlsconfig.Authorizer, nextProtos ...string) *tls.Config {
	cfg := &tls.Config{}
	tlsconfig.HookMTLSClientConfig(cfg, svid, bundle, authz)
	cfg.VerifyPeerCertificate = verifyPeer(bundle, authz)
	harden(cfg, nextProtos)
	return cfg
}

// OptionalClientServerConfig returns a TLS configuration for the admin HTTP
// listener: the server presents the SVID from svid and asks for, but does not
// require, a client certificate. A client certificate that is given must be
// an X509-SVID that verifies against bundle, or the handshake fails; which
// SPIFFE IDs may do what is left to the handler, which reads the ID with
// PeerID(r.TLS). Clients without a certificate connect and authenticate by
// token instead. If bundle holds federated trust domains, their SVIDs verify
// too, so a handler must check the trust domain. nextProtos are the ALPN
// protocols offered (for HTTP, typically "h2" and "http/1.1").
func OptionalClientServerConfig(svid x509svid.Source, bundle x509bundle.Source, nextProtos ...string) *tls.Config {
	cfg := &tls.Config{}
	tlsconfig.HookTLSServerConfig(cfg, svid)
	cfg.ClientAuth = tls.RequestClientCert
	verify := verifyPeer(bundle, tlsconfig.AuthorizeAny())
	cfg.VerifyPeerCertificate = func(raw [][]byte, chains [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return nil
		}
		return verify(raw, chains)
	}
	harden(cfg, nextProtos)
	return cfg
}

// PeerID returns the SPIFFE ID of the peer of a completed handshake made with
// a configuration from this package, which has verified the peer's X509-SVID.
// It returns an error wrapping ErrNoPeerCertificate if the peer presented
// none. Do not use it on a connection whose configuration did not verify the
// peer against a bundle: the ID would be merely claimed.
func PeerID(state *tls.ConnectionState) (spiffeid.ID, error) {
	switch {
	case state == nil:
		return spiffeid.ID{}, errors.New("peer ID: connection is not TLS")
	case !state.HandshakeComplete:
		return spiffeid.ID{}, errors.New("peer ID: TLS handshake not complete")
	case len(state.PeerCertificates) == 0:
		return spiffeid.ID{}, fmt.Errorf("peer ID: %w", ErrNoPeerCertificate)
	}
	id, err := x509svid.IDFromCert(state.PeerCertificates[0])
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("peer ID: %w", err)
	}
	return id, nil
}

// verifyPeer is go-spiffe's tlsconfig.VerifyPeerCertificate with errors that
// name the SPIFFE ID the peer presented, so that a refused handshake says who
// was refused.
func verifyPeer(bundle x509bundle.Source, authz tlsconfig.Authorizer) func([][]byte, [][]*x509.Certificate) error {
	verify := tlsconfig.VerifyPeerCertificate(bundle, authz)
	return func(raw [][]byte, chains [][]*x509.Certificate) error {
		if err := verify(raw, chains); err != nil {
			return fmt.Errorf("refused %s: %w", describePeer(raw), err)
		}
		return nil
	}
}

// describePeer names the peer of an unverified chain by the SPIFFE ID its
// leaf claims: "peer spiffe://...", or "peer with no SPIFFE ID".
func describePeer(raw [][]byte) string {
	if len(raw) > 0 {
		if leaf, err := x509.ParseCertificate(raw[0]); err == nil {
			if id, err := x509svid.IDFromCert(leaf); err == nil {
				return "peer " + id.String()
			}
		}
	}
	return "peer with " + noID
}

const noID = "no SPIFFE ID"

// harden applies the settings every mcpmesh TLS configuration shares.
func harden(cfg *tls.Config, nextProtos []string) {
	cfg.MinVersion = tls.VersionTLS13
	// A resumed session skips VerifyPeerCertificate, and with it the SPIFFE
	// authorizer: never issue or accept session tickets.
	cfg.SessionTicketsDisabled = true
	cfg.ClientSessionCache = nil
	cfg.NextProtos = slices.Clone(nextProtos)
}
