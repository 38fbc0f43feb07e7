package assertion

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// AlgorithmRS256 is the signature algorithm of x5c-form assertions whose
// SVID key is RSA (SPIRE's workload_x509_svid_key_type rsa-2048); the
// kid form is always Algorithm (ES256).
const AlgorithmRS256 = "RS256"

const (
	// maxX5CCerts bounds the x5c chain: the leaf and its intermediates
	// (SPIRE under an upstream authority adds one or two).
	maxX5CCerts = 4
	// maxKidHeaderBytes and maxX5CHeaderBytes bound the encoded header of
	// each form.
	maxKidHeaderBytes = 1024
	maxX5CHeaderBytes = 12 << 10
	// minRSABits is the smallest RSA key accepted.
	minRSABits = 2048
	// leafCacheSize bounds the verified chains a Verifier remembers: one
	// per calling node and SVID, so a few per federated BU.
	leafCacheSize = 512
)

// svidKey returns the signing key and x5c header of the source's current
// SVID, building them when the SVID changed since the last call (the
// source hands out one pointer per SVID until it rotates).
func (m *Minter) svidKey() (*minterKey, error) {
	s, err := m.svid.GetX509SVID()
	if err != nil {
		return nil, fmt.Errorf("the node's X.509-SVID: %w", err)
	}
	if len(s.Certificates) == 0 || s.PrivateKey == nil {
		return nil, errors.New("the node's X.509-SVID has no certificate or no key")
	}
	leaf := s.Certificates[0]
	if k := m.key.Load(); k != nil && k.leaf == leaf {
		return k, nil
	}
	if s.ID.String() != m.node {
		return nil, fmt.Errorf("the node's X.509-SVID is for %s, not the node %s", s.ID, m.node)
	}
	if len(s.Certificates) > maxX5CCerts {
		return nil, fmt.Errorf("the node's X.509-SVID chain has %d certificates; at most %d are carried", len(s.Certificates), maxX5CCerts)
	}
	alg, desc := x5cAlgorithm(s.PrivateKey.Public())
	if alg == "" {
		return nil, fmt.Errorf("the node's X.509-SVID key is %s; want ECDSA P-256 (ES256) or RSA of at least %d bits (RS256)", desc, minRSABits)
	}
	k := &minterKey{signer: s.PrivateKey, leaf: leaf, rsa: alg == AlgorithmRS256}
	chain := make([]string, len(s.Certificates))
	for i, c := range s.Certificates {
		// RFC 7515 §4.1.6: standard base64, not base64url.
		chain[i] = base64.StdEncoding.EncodeToString(c.Raw)
	}
	h, err := json.Marshal(struct {
		Alg string   `json:"alg"`
		Typ string   `json:"typ"`
		X5C []string `json:"x5c"`
	}{alg, "JWT", chain})
	if err != nil {
		return nil, fmt.Errorf("encode the header: %w", err)
	}
	k.header = base64.RawURLEncoding.AppendEncode(nil, h)
	if len(k.header) > maxX5CHeaderBytes {
		return nil, fmt.Errorf("the x5c header would be %d bytes; at most %d", len(k.header), maxX5CHeaderBytes)
	}
	m.key.Store(k)
	return k, nil
}

// x5cAlgorithm returns the algorithm of x5c-form assertions signed with
// the private key of pub, the one rule minter and verifier share: ES256
// for ECDSA P-256, RS256 for RSA of at least minRSABits; "" for any other
// key. desc names the key for messages ("ECDSA P-384", "RSA-1024").
func x5cAlgorithm(pub crypto.PublicKey) (alg, desc string) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		desc = "ECDSA " + k.Curve.Params().Name
		if k.Curve == elliptic.P256() {
			alg = Algorithm
		}
	case *rsa.PublicKey:
		desc = fmt.Sprintf("RSA-%d", k.N.BitLen())
		if k.N.BitLen() >= minRSABits {
			alg = AlgorithmRS256
		}
	default:
		desc = fmt.Sprintf("%T", pub)
	}
	return alg, desc
}

// leafEntry is an x5c chain that verified: the leaf's SPIFFE ID and
// public key, the algorithm the header named, the chain's validity, and
// the bundle source's change signal at the time (closed when the bundles
// were replaced, which makes the entry stale: a rotated or revoked
// authority is checked again).
type leafEntry struct {
	id        spiffeid.ID
	key       crypto.PublicKey
	rsa       bool
	notBefore time.Time
	notAfter  time.Time
	changed   <-chan struct{}
}

// usable reports whether the entry still stands at now.
func (e *leafEntry) usable(now time.Time) bool {
	select {
	case <-e.changed:
		return false
	default:
	}
	return !now.Before(e.notBefore) && !now.After(e.notAfter)
}

// leafCache remembers verified x5c chains by their encoded header (which
// holds the algorithm and the whole chain), so that a warm assertion
// costs a map lookup and one signature check. When full it starts over.
type leafCache struct {
	mu sync.Mutex
	m  map[string]*leafEntry
}

func (c *leafCache) get(header string, now time.Time) *leafEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.m[header]
	if e == nil {
		return nil
	}
	if !e.usable(now) {
		delete(c.m, header)
		return nil
	}
	return e
}

func (c *leafCache) put(header string, e *leafEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= leafCacheSize {
		c.m = make(map[string]*leafEntry)
	}
	c.m[header] = e
}

func (c *leafCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// changeSignal is what a bundle source that swaps its bundles (bundles.Set)
// offers: a channel closed at the next swap.
type changeSignal interface{ Changed() <-chan struct{} }

// x5cLeaf verifies header h's x5c chain (encoded header seg) against the
// X.509 authorities of the peer's trust domain at now: the leaf must be an
// X.509-SVID of the peer itself, chaining to its trust domain's bundle,
// with a key of h's algorithm. A verified chain is cached when the bundle
// source signals its changes.
func (v *Verifier) x5cLeaf(seg string, h header, peer spiffeid.ID, now time.Time) (*leafEntry, error) {
	if v.cfg.X509Bundles == nil {
		return nil, refuse(ErrHeader, "it carries x5c, and this node takes only kid (no X.509 bundle source)")
	}
	var changed <-chan struct{}
	if s, ok := v.cfg.X509Bundles.(changeSignal); ok {
		// Read before the bundle is: a swap in between makes the entry
		// stale rather than lets it outlive a revoked authority.
		changed = s.Changed()
	}
	certs := make([]*x509.Certificate, len(h.X5C))
	for i, s := range h.X5C {
		der, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, refuse(ErrMalformed, "x5c[%d] is not standard base64", i)
		}
		if certs[i], err = x509.ParseCertificate(der); err != nil {
			return nil, refuse(ErrMalformed, "x5c[%d] is not an X.509 certificate: %v", i, err)
		}
	}
	id, err := x509svid.IDFromCert(certs[0])
	if err != nil {
		return nil, refuse(ErrUnknownKey, "the x5c leaf is not an X.509-SVID: %v", err)
	}
	if id != peer {
		return nil, refuse(ErrPeer, "its x5c leaf is the SVID of %s and it is presented by %s; a node signs with its own SVID", id, peer)
	}
	_, chains, err := x509svid.Verify(certs, v.cfg.X509Bundles, x509svid.WithTime(now))
	if err != nil || len(chains) == 0 {
		return nil, refuse(ErrUnknownKey, "its x5c chain does not verify against the X.509 authorities of trust domain %q (another CA, rotated away, or revoked): %v", peer.TrustDomain().Name(), err)
	}
	e := &leafEntry{id: id, key: certs[0].PublicKey, changed: changed}
	for _, c := range chains[0] {
		if e.notBefore.IsZero() || c.NotBefore.After(e.notBefore) {
			e.notBefore = c.NotBefore
		}
		if e.notAfter.IsZero() || c.NotAfter.Before(e.notAfter) {
			e.notAfter = c.NotAfter
		}
	}
	alg, desc := x5cAlgorithm(e.key)
	if alg == "" || alg != h.Alg {
		return nil, refuse(ErrAlgorithm, "alg is %s and the x5c leaf's key is %s", h.Alg, desc)
	}
	e.rsa = alg == AlgorithmRS256
	if changed != nil {
		v.leaves.put(seg, e)
	}
	return e, nil
}

// verifyX5C checks token's signature (parts its three segments) with the
// verified leaf e presented by peer, and returns the payload. The
// signature is checked by hand: go-jose would parse the x5c chain again on
// every call.
func (v *Verifier) verifyX5C(e *leafEntry, token string, parts []string, peer spiffeid.ID) ([]byte, error) {
	if e.id != peer {
		return nil, refuse(ErrPeer, "its x5c leaf is the SVID of %s and it is presented by %s; a node signs with its own SVID", e.id, peer)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, refuse(ErrMalformed, "the signature is not base64url")
	}
	digest := sha256.Sum256([]byte(token[:len(parts[0])+1+len(parts[1])]))
	ok := false
	if e.rsa {
		ok = rsa.VerifyPKCS1v15(e.key.(*rsa.PublicKey), crypto.SHA256, digest[:], sig) == nil
	} else if len(sig) == 64 {
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		ok = ecdsa.Verify(e.key.(*ecdsa.PublicKey), digest[:], r, s)
	}
	if !ok {
		return nil, refuse(ErrSignature, "it does not verify with the key of its x5c leaf (%s)", e.id)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, refuse(ErrMalformed, "the payload is not base64url")
	}
	return payload, nil
}
