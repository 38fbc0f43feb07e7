package assertion

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// MinterConfig configures a Minter.
type MinterConfig struct {
	// Node is the calling node's SPIFFE ID,
	// spiffe://<trust domain>/mcpmesh/node/<id>: the iss and act.sub of
	// every assertion. Required.
	Node spiffeid.ID
	// KeyID is the key id of Signer's key in the trust domain's SPIFFE
	// bundle (its JWT authorities), the kid of every assertion. Required
	// unless SVID is set.
	KeyID string
	// Signer signs with the trust domain's JWT authority key, ECDSA P-256:
	// the embedded CA's (ca.CA.JWTSigner). Required unless SVID is set.
	Signer crypto.Signer
	// SVID, instead of KeyID and Signer, signs each assertion with the
	// node's current X.509-SVID key and carries the SVID's chain in the
	// x5c header: for an identity source that holds no JWT authority key
	// (SPIRE's Workload API). Its SPIFFE ID must be Node; ECDSA P-256
	// keys sign ES256, RSA keys (2048 bits or more) RS256. The source is
	// read at each Mint, so a rotated SVID is used at once.
	SVID x509svid.Source
	// TTL is the assertion lifetime, federation.assertion_ttl. Default
	// 60s; from 1s to MaxTTL.
	TTL time.Duration
}

// Validate checks the configuration; a zero TTL is valid (the default).
func (c *MinterConfig) Validate() error {
	if _, ok := NodeName(c.Node); !ok {
		return fmt.Errorf("assertion minter: node %q is not a node ID; want spiffe://<trust domain>%s<id>", c.Node, NodePathPrefix)
	}
	if c.TTL != 0 && (c.TTL < time.Second || c.TTL > MaxTTL) {
		return fmt.Errorf("assertion minter: TTL %s; want from 1s to %s (federation.assertion_ttl)", c.TTL, MaxTTL)
	}
	if c.SVID != nil {
		if c.KeyID != "" || c.Signer != nil {
			return errors.New("assertion minter: give either a key id and a signer (a JWT authority) or an SVID source, not both")
		}
		return nil
	}
	return checkKey(c.KeyID, c.Signer)
}

func checkKey(kid string, signer crypto.Signer) error {
	if kid == "" || signer == nil {
		return errors.New("assertion minter: a key id and a signer are required (the CA's JWTSigner)")
	}
	pub, ok := signer.Public().(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return fmt.Errorf("assertion minter: key %q is %T; want an ECDSA P-256 key (ES256)", kid, signer.Public())
	}
	return nil
}

// Minter mints the assertions a node sends with the calls it forwards to
// another BU. It is safe for concurrent use.
type Minter struct {
	node   string
	td     spiffeid.TrustDomain
	ttl    time.Duration
	now    func() time.Time
	svid   x509svid.Source // nil in the kid form
	key    atomic.Pointer[minterKey]
	minted *prometheus.CounterVec
}

// minterKey is the signing key and its pre-encoded protected header.
type minterKey struct {
	signer crypto.Signer
	rsa    bool              // RS256, else ES256
	leaf   *x509.Certificate // the SVID's leaf, in the x5c form
	header []byte            // base64url of {"alg":...,"kid":...,"typ":"JWT"} or {"alg":...,"typ":"JWT","x5c":[...]}
}

// NewMinter returns a Minter. It takes WithClock and WithMetrics
// (mcpmesh_federation_assertions_minted_total).
func NewMinter(cfg MinterConfig, opts ...Option) (*Minter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.TTL == 0 {
		cfg.TTL = MaxTTL
	}
	o := newOptions(opts)
	m := &Minter{node: cfg.Node.String(), td: cfg.Node.TrustDomain(), ttl: cfg.TTL, now: o.now, svid: cfg.SVID,
		minted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mcpmesh_federation_assertions_minted_total",
			Help: "Federation assertions this node minted for calls it forwarded to another BU, by the target BU's trust domain."},
			[]string{"target_trust_domain"})}
	if cfg.SVID != nil {
		if _, err := m.svidKey(); err != nil {
			return nil, err
		}
	} else if err := m.SetKey(cfg.KeyID, cfg.Signer); err != nil {
		return nil, err
	}
	if o.registry != nil {
		if err := o.registry.Register(m.minted); err != nil {
			return nil, fmt.Errorf("assertion minter: register metrics: %w", err)
		}
	}
	return m, nil
}

// SetKey makes the minter sign with signer under kid from now on: after
// the trust domain's JWT authority changed. Assertions already minted stay
// valid while the old key is in the bundle. A minter made with an SVID
// source refuses it.
func (m *Minter) SetKey(kid string, signer crypto.Signer) error {
	if m.svid != nil {
		return errors.New("assertion minter: it signs with the node's SVID; a JWT authority key cannot be set")
	}
	if err := checkKey(kid, signer); err != nil {
		return err
	}
	h, err := json.Marshal(struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
		Typ string `json:"typ"`
	}{Algorithm, kid, "JWT"})
	if err != nil {
		return fmt.Errorf("assertion minter: encode the header: %w", err)
	}
	m.key.Store(&minterKey{signer: signer, header: base64.RawURLEncoding.AppendEncode(nil, h)})
	return nil
}

// Mint returns an assertion for call c to the BU of trust domain target,
// for the Authorization: Bearer header of the forwarded request. It
// refuses a call without principal or tool, a target that is zero or its
// own trust domain, and values beyond the package's bounds.
func (m *Minter) Mint(target spiffeid.TrustDomain, c Call) (string, error) {
	switch {
	case target.IsZero():
		return "", errors.New("mint a federation assertion: the target trust domain is empty; name the BU the call goes to")
	case target == m.td:
		return "", fmt.Errorf("mint a federation assertion: the target %q is this node's own trust domain; assertions are for other BUs", target.Name())
	case !c.TargetNode.IsZero() && c.TargetNode.TrustDomain() != target:
		return "", fmt.Errorf("mint a federation assertion: target node %s is not in the target trust domain %q", c.TargetNode, target.Name())
	}
	if err := checkSubject(c.Principal, m.td); err != nil {
		return "", fmt.Errorf("mint a federation assertion: the caller's principal: %w", err)
	}
	if c.RequestID == "" {
		c.RequestID = randomID()
	}
	now := m.now()
	w := wireClaims{
		Issuer:    m.node,
		Subject:   c.Principal,
		Audience:  jwt.Audience{GatewayID(target).String()},
		Actor:     &wireActor{Subject: m.node},
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now),
		Expiry:    jwt.NewNumericDate(now.Add(m.ttl)),
		ID:        randomID(),
		Call: &wireCall{Tenant: c.Tenant, Groups: c.Groups, Scope: c.Scopes, Tool: c.Tool, Version: c.Version,
			RequestID: c.RequestID, Trace: c.Trace, TraceState: c.TraceState},
	}
	if !c.TargetNode.IsZero() {
		w.Call.TargetNode = c.TargetNode.String()
	}
	if err := checkCall(w.Call); err != nil {
		return "", fmt.Errorf("mint a federation assertion for %s: %w", c.Tool, err)
	}
	tok, err := m.sign(w)
	if err != nil {
		return "", fmt.Errorf("mint a federation assertion for %s: %w", c.Tool, err)
	}
	m.minted.WithLabelValues(target.Name()).Inc()
	return tok, nil
}

// sign returns the compact JWS of claims. It is written by hand, as in
// trust/tokens: the header is encoded once per key, and the signer is a
// crypto.Signer (go-jose wants the private key itself). The tests verify
// the result with go-jose.
func (m *Minter) sign(claims wireClaims) (string, error) {
	k := m.key.Load()
	if m.svid != nil {
		var err error
		if k, err = m.svidKey(); err != nil {
			return "", err
		}
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("encode the claims: %w", err)
	}
	enc := base64.RawURLEncoding
	sigLen := 64
	if k.rsa {
		sigLen = k.signer.Public().(*rsa.PublicKey).Size()
	}
	tail := 1 + enc.EncodedLen(sigLen)
	buf := make([]byte, 0, len(k.header)+1+enc.EncodedLen(len(payload))+tail)
	buf = append(buf, k.header...)
	buf = append(buf, '.')
	buf = enc.AppendEncode(buf, payload)
	if len(buf)+tail > MaxTokenBytes {
		return "", fmt.Errorf("the assertion would be %d bytes; at most %d (fewer or shorter groups and scopes)", len(buf)+tail, MaxTokenBytes)
	}
	digest := sha256.Sum256(buf)
	der, err := k.signer.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	if k.rsa {
		// RSASSA-PKCS1-v1_5 signatures are used as they are (RFC 7518 §3.3).
		buf = append(buf, '.')
		buf = enc.AppendEncode(buf, der)
		return string(buf), nil
	}
	var rs struct{ R, S *big.Int }
	if rest, err := asn1.Unmarshal(der, &rs); err != nil || len(rest) > 0 || rs.R.Sign() <= 0 || rs.S.Sign() <= 0 ||
		rs.R.BitLen() > 256 || rs.S.BitLen() > 256 {
		return "", errors.New("sign: the signer returned no ASN.1 ECDSA P-256 signature")
	}
	// JWS carries R and S as fixed-size big-endian integers (RFC 7518 §3.4).
	var sig [64]byte
	rs.R.FillBytes(sig[:32])
	rs.S.FillBytes(sig[32:])
	buf = append(buf, '.')
	buf = enc.AppendEncode(buf, sig[:])
	return string(buf), nil
}

// randomID returns 128 random bits, base64url: a jti or a request id.
func randomID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand panics rather than return an error)
	return base64.RawURLEncoding.EncodeToString(b[:])
}
