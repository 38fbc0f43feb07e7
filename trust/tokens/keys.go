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
// makes it the namespace's signing key as of now (set ActiveFrom to publish
// it ahead). Its id is the RFC 7638
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

// keyring is a parsed set of signing keys: a signer for each, with the
// time it signs from and until, and the public key set. It is immutable;
// which key signs is a matter of the time (at).
type keyring struct {
	fingerprint string
	keys        []*signingKey // oldest first
	public      jose.JSONWebKeySet
	jwks        []byte // public, as served
}

type signingKey struct {
	id     string
	from   time.Time
	until  time.Time // zero while the key is not retired
	signer *jwsSigner
}

func (k *signingKey) signsAt(t time.Time) bool {
	return !t.Before(k.from) && (k.until.IsZero() || t.Before(k.until))
}

// at returns the key that signs at t, or nil. The state lets one key sign
// at a time; should two ever overlap, the newest signs.
func (kr *keyring) at(t time.Time) *signingKey {
	for i := len(kr.keys) - 1; i >= 0; i-- {
		if kr.keys[i].signsAt(t) {
			return kr.keys[i]
		}
	}
	return nil
}

// count returns how many keys sign at t, are still to sign, and are retired.
func (kr *keyring) count(t time.Time) (signing, next, retired int) {
	for _, k := range kr.keys {
		switch {
		case k.signsAt(t):
			signing++
		case t.Before(k.from):
			next++
		default:
			retired++
		}
	}
	return signing, next, retired
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
		sk := &signingKey{id: k.ID, from: k.SigningFrom(), signer: newJWSSigner(priv, k.ID)}
		if k.RetiredAt != nil {
			sk.until = *k.RetiredAt
		}
		kr.keys = append(kr.keys, sk)
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
