package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net/url"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// IssueX509SVID issues an X509-SVID for id, which must be a workload ID (it
// has a path) in the CA's trust domain, with a fresh ECDSA P-256 key. The
// certificate is valid from one minute ago, to absorb clock skew between
// peers, until ttl from now or the CA's own expiry, whichever comes first. It
// can authenticate both ends of a TLS connection. The returned chain holds the
// leaf only; peers verify it against Bundle.
func (c *CA) IssueX509SVID(id spiffeid.ID, ttl time.Duration) (*x509svid.SVID, error) {
	switch {
	case id.IsZero():
		return nil, fmt.Errorf("issue X509-SVID: SPIFFE ID is empty")
	case !id.MemberOf(c.td):
		return nil, fmt.Errorf("issue X509-SVID for %s: not in trust domain %q of this CA; issue it from the CA of %q", id, c.td.Name(), id.TrustDomain().Name())
	case id.Path() == "":
		return nil, fmt.Errorf("issue X509-SVID for %s: the ID names a trust domain, not a workload; add a path such as /agent/<name>", id)
	case ttl <= 0:
		return nil, fmt.Errorf("issue X509-SVID for %s: ttl %s is not positive", id, ttl)
	}
	now := c.now()
	if !now.Before(c.cert.NotAfter) {
		return nil, fmt.Errorf("issue X509-SVID for %s: the CA of %q expired at %s; create a new CA", id, c.td.Name(), c.cert.NotAfter.UTC().Format(time.RFC3339))
	}
	notAfter := now.Add(ttl)
	if notAfter.After(c.cert.NotAfter) {
		notAfter = c.cert.NotAfter
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("issue X509-SVID for %s: generate key: %w", id, err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, fmt.Errorf("issue X509-SVID for %s: %w", id, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"mcpmesh"}},
		URIs:                  []*url.URL{id.URL()},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, key.Public(), c.key)
	if err != nil {
		return nil, fmt.Errorf("issue X509-SVID for %s: %w", id, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("issue X509-SVID for %s: parse certificate: %w", id, err)
	}
	return &x509svid.SVID{ID: id, Certificates: []*x509.Certificate{leaf}, PrivateKey: key}, nil
}
