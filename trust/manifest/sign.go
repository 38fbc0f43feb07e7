package manifest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"
)

// MediaType is the typ header of a signed manifest. Verify refuses a JWS
// of another type, so that no other object central security's key might
// sign is ever taken for a manifest.
const MediaType = "mcpmesh-federation-manifest+jws"

// ErrSignature means a signed manifest is not signed by the key it was
// checked against: a bad or missing signature, another key, or an
// algorithm that does not match the key.
var ErrSignature = errors.New("federation manifest signature does not verify")

// ErrExpired is matched (errors.Is) by an *ExpiredError.
var ErrExpired = errors.New("federation manifest expired")

// ExpiredError is a validly signed manifest whose expiry has passed.
type ExpiredError struct {
	Version uint64
	Expires time.Time
	Now     time.Time
}

// Error says when the manifest expired and what to do.
func (e *ExpiredError) Error() string {
	return fmt.Sprintf("federation manifest version %d expired at %s (%s ago); central security must sign a fresh one with a later expires and a higher version, then push it",
		e.Version, e.Expires.UTC().Format(time.RFC3339), e.Now.Sub(e.Expires).Round(time.Second))
}

// Is makes an ExpiredError match ErrExpired.
func (e *ExpiredError) Is(target error) bool { return target == ErrExpired }

// canonical returns the manifest's canonical JSON: its fields in their
// declared order, times in UTC, no insignificant whitespace. Sign signs
// it and Verify accepts only it, so one manifest has one payload.
func canonical(m *Manifest) ([]byte, error) {
	c := *m
	c.Expires = m.Expires.UTC()
	if c.TrustDomains == nil {
		c.TrustDomains = []Domain{}
	}
	if c.Relationships == nil {
		c.Relationships = []Relationship{}
	}
	return json.Marshal(&c)
}

// Sign validates m and signs it with key (ECDSA P-256 or Ed25519; any
// crypto.Signer, so a key in an HSM or KMS works too). The result is a
// compact JWS whose payload is the canonical JSON of m. Sign does not look
// at the clock: check m.Expired first.
func Sign(m *Manifest, key crypto.Signer) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	pub := key.Public()
	alg, err := AlgorithmOf(pub)
	if err != nil {
		return nil, fmt.Errorf("sign federation manifest: %w", err)
	}
	kid, err := KeyID(pub)
	if err != nil {
		return nil, err
	}
	payload, err := canonical(m)
	if err != nil {
		return nil, fmt.Errorf("encode federation manifest: %w", err)
	}
	var sk any = key
	switch key.(type) {
	case *ecdsa.PrivateKey, ed25519.PrivateKey:
	default:
		sk = cryptosigner.Opaque(key)
	}
	opts := (&jose.SignerOptions{}).WithType(MediaType).WithHeader(jose.HeaderKey("kid"), kid)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: sk}, opts)
	if err != nil {
		return nil, fmt.Errorf("sign federation manifest: %w", err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return nil, fmt.Errorf("sign federation manifest: %w", err)
	}
	s, err := jws.CompactSerialize()
	if err != nil {
		return nil, fmt.Errorf("sign federation manifest: %w", err)
	}
	return []byte(s), nil
}

// Verify checks a signed manifest against central security's public key
// at now and returns it: the JWS must be compact, of type MediaType,
// signed with the algorithm that matches pub's key type (ES256 or EdDSA;
// "none" and HMAC are never accepted), and its signature must hold; its
// payload must be canonical JSON of a manifest that validates and has
// not expired. A bad signature matches ErrSignature, an expired manifest
// ErrExpired (*ExpiredError), bad content ErrInvalid.
func Verify(signed []byte, pub crypto.PublicKey, now time.Time) (*Manifest, error) {
	m, err := Open(signed, pub)
	if err != nil {
		return nil, err
	}
	if m.Expired(now) {
		return nil, &ExpiredError{Version: m.Version, Expires: m.Expires, Now: now}
	}
	return m, nil
}

// Open is Verify without the expiry check. The node opens the manifest
// stored in its registry state with it: one that expired after it was
// applied is still shown (and reported expired by Manifest.Expired), but
// Holder.Current does not hand it out.
func Open(signed []byte, pub crypto.PublicKey) (*Manifest, error) {
	alg, err := AlgorithmOf(pub)
	if err != nil {
		return nil, fmt.Errorf("central security's key: %w", err)
	}
	if len(signed) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes; at most %d", ErrInvalid, len(signed), MaxSize)
	}
	jws, err := jose.ParseSignedCompact(string(bytes.TrimSpace(signed)), []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
	if err != nil {
		return nil, fmt.Errorf("%w: not a compact JWS signed with %s, the algorithm of central security's key (%v); sign it with `mcpmesh trust manifest sign`", ErrSignature, alg, err)
	}
	if len(jws.Signatures) != 1 {
		return nil, fmt.Errorf("%w: %d signatures; want exactly one", ErrSignature, len(jws.Signatures))
	}
	h := jws.Signatures[0].Protected
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != MediaType {
		return nil, fmt.Errorf("%w: typ %q; want %q (a manifest signed by `mcpmesh trust manifest sign`)", ErrSignature, typ, MediaType)
	}
	payload, err := jws.Verify(pub)
	if err != nil {
		want, _ := KeyID(pub)
		if h.KeyID != "" && h.KeyID != want {
			return nil, fmt.Errorf("%w: signed by another key (kid %s); this node trusts kid %s (federation.manifest_key_file): sign with central security's key", ErrSignature, h.KeyID, want)
		}
		return nil, fmt.Errorf("%w: the signature is not central security's (kid %s); the manifest was altered or signed with another key", ErrSignature, want)
	}
	m, err := decode(payload)
	if err != nil {
		return nil, err
	}
	m.signed = bytes.Clone(bytes.TrimSpace(signed))
	return m, nil
}

// decode parses a verified payload: strict JSON in canonical form, then
// validation.
func decode(payload []byte) (*Manifest, error) {
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrInvalid, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: payload: trailing data after the manifest", ErrInvalid)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	if c, err := canonical(&m); err != nil || !bytes.Equal(c, payload) {
		return nil, fmt.Errorf("%w: payload is not in canonical form; sign manifests with `mcpmesh trust manifest sign`", ErrInvalid)
	}
	return &m, nil
}
