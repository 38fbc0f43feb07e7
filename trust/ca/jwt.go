package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// jwtKeyInfo is the HKDF context of the JWT signing key; a new version of
// the derivation gets a new string, and so a new key and key id.
const jwtKeyInfo = "mcpmesh ca jwt-svid signing key v1"

// jwtKey is the CA's JWT-SVID signing key.
type jwtKey struct {
	priv *ecdsa.PrivateKey
	kid  string
}

// deriveJWTKey derives the ECDSA P-256 key that signs JWT-SVIDs from the CA
// key, with HKDF-SHA256 over its PKCS#8 encoding. Deriving it rather than
// storing it keeps the CA directory's format (ca.crt, ca.key) and lets every
// process that holds the CA key sign and verify the same JWT-SVIDs, while the
// X.509 root key never signs anything but certificates. The key id is the
// key's RFC 7638 thumbprint.
func deriveJWTKey(caKey crypto.Signer) (jwtKey, error) {
	secret, err := x509.MarshalPKCS8PrivateKey(caKey)
	if err != nil {
		return jwtKey{}, fmt.Errorf("derive JWT signing key: %w", err)
	}
	// A 32-byte string is a valid P-256 scalar unless it is zero or not
	// below the group order (a chance of about 2^-32); then try the next
	// counter.
	for i := 0; i < 16; i++ {
		raw, err := hkdf.Key(sha256.New, secret, nil, fmt.Sprintf("%s #%d", jwtKeyInfo, i), 32)
		if err != nil {
			return jwtKey{}, fmt.Errorf("derive JWT signing key: %w", err)
		}
		priv, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), raw)
		if err != nil {
			continue
		}
		tp, err := (&jose.JSONWebKey{Key: &priv.PublicKey}).Thumbprint(crypto.SHA256)
		if err != nil {
			return jwtKey{}, fmt.Errorf("derive JWT signing key: thumbprint: %w", err)
		}
		return jwtKey{priv: priv, kid: base64.RawURLEncoding.EncodeToString(tp)}, nil
	}
	return jwtKey{}, fmt.Errorf("derive JWT signing key: no valid P-256 scalar in 16 attempts")
}

// auditKeyInfo is the HKDF context of the audit arguments key; a new
// version of the derivation gets a new string.
const auditKeyInfo = "mcpmesh ca audit arguments hmac key v1"

// AuditKey returns the 32-byte key the BU's nodes hash audited call
// arguments with (HMAC-SHA256), derived like the JWT signing key with
// HKDF-SHA256 from the CA key under its own context string: every process
// that holds the CA gets the same key, so every replica of a BU gives the
// same arguments the same hash, and the key is no other key.
func (c *CA) AuditKey() ([]byte, error) {
	secret, err := x509.MarshalPKCS8PrivateKey(c.key)
	if err != nil {
		return nil, fmt.Errorf("derive audit key: %w", err)
	}
	key, err := hkdf.Key(sha256.New, secret, nil, auditKeyInfo, 32)
	if err != nil {
		return nil, fmt.Errorf("derive audit key: %w", err)
	}
	return key, nil
}

// JWTBundle returns a new JWT bundle for the CA's trust domain holding the
// public key that IssueJWTSVID signs with, under its key id. Verifiers pass
// it (a jwtbundle.Source) to jwtsvid.ParseAndValidate. The caller may
// modify it.
func (c *CA) JWTBundle() *jwtbundle.Bundle {
	return jwtbundle.FromJWTAuthorities(c.td, map[string]crypto.PublicKey{c.jwt.kid: &c.jwt.priv.PublicKey})
}

// JWTSigner returns the key id and a signer of the key JWTBundle publishes,
// for code that signs its own JWTs with the trust domain's JWT authority
// (federation assertions, package federation/assertion). The signer signs
// SHA-256 digests with ECDSA P-256 (ES256) and returns ASN.1 DER signatures,
// as crypto.Signer does; it exposes the public key and never the private
// one. It is safe for concurrent use.
func (c *CA) JWTSigner() (kid string, signer crypto.Signer) {
	return c.jwt.kid, jwtSigner{c.jwt.priv}
}

// jwtSigner signs with the JWT key without exposing it: a caller that type-
// asserts the crypto.Signer finds no *ecdsa.PrivateKey.
type jwtSigner struct{ priv *ecdsa.PrivateKey }

func (s jwtSigner) Public() crypto.PublicKey { return &s.priv.PublicKey }

func (s jwtSigner) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return s.priv.Sign(rand, digest, opts)
}

// IssueJWTSVID issues a JWT-SVID for id, which must be a workload ID in the
// CA's trust domain, for the given audience (at least one, none empty), and
// returns the signed token. It is signed with ES256 under the key of
// JWTBundle and carries sub, aud, iat and exp: exp is ttl from now, or the
// CA's own expiry if that comes first. The token is not checked against the
// clock, so a CA with a clock in the past (WithClock) issues expired ones. A
// JWT-SVID is a bearer token: keep ttl short (minutes).
func (c *CA) IssueJWTSVID(id spiffeid.ID, audience []string, ttl time.Duration) (string, error) {
	switch {
	case id.IsZero():
		return "", fmt.Errorf("issue JWT-SVID: SPIFFE ID is empty")
	case !id.MemberOf(c.td):
		return "", fmt.Errorf("issue JWT-SVID for %s: not in trust domain %q of this CA; issue it from the CA of %q", id, c.td.Name(), id.TrustDomain().Name())
	case id.Path() == "":
		return "", fmt.Errorf("issue JWT-SVID for %s: the ID names a trust domain, not a workload; add a path such as /agent/<name>", id)
	case len(audience) == 0 || slices.Contains(audience, ""):
		return "", fmt.Errorf("issue JWT-SVID for %s: name the audience, the service that will accept the token (e.g. spiffe://%s/mcpmesh/gateway)", id, c.td.Name())
	case ttl <= 0:
		return "", fmt.Errorf("issue JWT-SVID for %s: ttl %s is not positive", id, ttl)
	}
	now := c.now()
	if !now.Before(c.cert.NotAfter) {
		return "", fmt.Errorf("issue JWT-SVID for %s: the CA of %q expired at %s; create a new CA", id, c.td.Name(), c.cert.NotAfter.UTC().Format(time.RFC3339))
	}
	exp := now.Add(ttl)
	if exp.After(c.cert.NotAfter) {
		exp = c.cert.NotAfter
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: c.jwt.priv, KeyID: c.jwt.kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", fmt.Errorf("issue JWT-SVID for %s: %w", id, err)
	}
	token, err := jwt.Signed(signer).Claims(jwt.Claims{
		Subject:  id.String(),
		Audience: jwt.Audience(audience),
		IssuedAt: jwt.NewNumericDate(now),
		Expiry:   jwt.NewNumericDate(exp),
	}).Serialize()
	if err != nil {
		return "", fmt.Errorf("issue JWT-SVID for %s: sign: %w", id, err)
	}
	return token, nil
}
