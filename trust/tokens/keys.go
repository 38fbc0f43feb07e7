package tokens

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/mcpmesh/mcpmesh/registry/state"
)

// NewKey generates a signing key (ECDSA P-256) and returns the command that
// makes it the namespace's active key as of now. Its id is the RFC 7638
// thumbprint of its public key.
func NewKey(now time.Time) (state.RotateSigningKey, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return state.RotateSigningKey{}, fmt.Errorf("generate signing key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return state.RotateSigningKey{}, fmt.Errorf("encode signing key: %w", err)
	}
	jwk := jose.JSONWebKey{Key: &priv.PublicKey}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return state.RotateSigningKey{}, fmt.Errorf("signing key id: %w", err)
	}
	return state.RotateSigningKey{ID: base64.RawURLEncoding.EncodeToString(tp), Algorithm: Algorithm, Private: der, At: now}, nil
}

// keyring is a parsed set of signing keys: the signer of the active key and
// the public key set. It is immutable.
type keyring struct {
	fingerprint string
	active      *activeKey
	public      jose.JSONWebKeySet
	jwks        []byte // public, as served
	retired     int
}

type activeKey struct {
	id      string
	created time.Time
	signer  *jwsSigner
}

// newKeyring parses keys. A key that does not parse is an error: every
// replica holds the same keys, so it would fail everywhere.
func newKeyring(keys []state.SigningKey) (*keyring, error) {
	kr := &keyring{fingerprint: fingerprint(keys), public: jose.JSONWebKeySet{Keys: []jose.JSONWebKey{}}}
	for _, k := range keys {
		if k.Algorithm != Algorithm {
			return nil, fmt.Errorf("signing key %s: algorithm %q is not %s", k.ID, k.Algorithm, Algorithm)
		}
		parsed, err := x509.ParsePKCS8PrivateKey(k.Private)
		if err != nil {
			return nil, fmt.Errorf("signing key %s does not parse as PKCS #8: %w", k.ID, err)
		}
		priv, ok := parsed.(*ecdsa.PrivateKey)
		if !ok || priv.Curve != elliptic.P256() {
			return nil, fmt.Errorf("signing key %s is not an ECDSA P-256 key", k.ID)
		}
		kr.public.Keys = append(kr.public.Keys, jose.JSONWebKey{Key: &priv.PublicKey, KeyID: k.ID, Algorithm: Algorithm, Use: "sig"})
		if !k.Active() {
			kr.retired++
			continue
		}
		// Keys come oldest first; the state keeps one active, but should
		// two ever be, the newest signs.
		kr.active = &activeKey{id: k.ID, created: k.CreatedAt, signer: newJWSSigner(priv, k.ID)}
	}
	raw, err := json.Marshal(kr.public)
	if err != nil {
		return nil, fmt.Errorf("encode the key set: %w", err)
	}
	kr.jwks = raw
	return kr, nil
}

// fingerprint identifies a key list by ids and states, so an unchanged
// list is not parsed again.
func fingerprint(keys []state.SigningKey) string {
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k.ID)
		if k.Active() {
			b.WriteString("+")
		} else {
			b.WriteString("-")
		}
	}
	return b.String()
}
