package assertion

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// DefaultLeeway is the default clock skew tolerated on exp, nbf and iat.
const DefaultLeeway = 5 * time.Second

// VerifierConfig configures a Verifier.
type VerifierConfig struct {
	// TrustDomain is this BU's trust domain; assertions must name its
	// gateway, spiffe://<trust domain>/mcpmesh/gateway, as their only
	// audience. Required.
	TrustDomain spiffeid.TrustDomain
	// Node is this node's SPIFFE ID. An assertion pinned to a node
	// (Call.TargetNode) is accepted only by that node; with Node zero,
	// pinned assertions are refused.
	Node spiffeid.ID
	// Bundles holds every federated trust domain's bundle: the JWT
	// authorities an assertion's key is looked up in, in the trust domain
	// of the mTLS peer. A trust domain the source does not hold (unknown,
	// or revoked from the manifest) has no keys. It must be safe for
	// concurrent use, and may change between calls (a spiffebundle.Set,
	// or a source that swaps one atomically). Required.
	Bundles jwtbundle.Source
	// X509Bundles holds every federated trust domain's X.509 authorities:
	// an x5c-form assertion (signed with the calling node's X.509-SVID, as
	// nodes on SPIRE mint them) must carry a chain that verifies against
	// those of the mTLS peer's trust domain. Nil refuses x5c assertions.
	// Verified chains are cached (one signature check per warm call) when
	// the source has a Changed() <-chan struct{} method, as bundles.Set
	// does; a change makes every cached chain be verified again.
	X509Bundles x509bundle.Source
	// Leeway is the clock skew tolerated on exp, nbf and iat. Default
	// DefaultLeeway (5s); at most 30s.
	Leeway time.Duration
	// ReplayCacheSize bounds how many assertion ids the node remembers.
	// Default DefaultReplayCacheSize.
	ReplayCacheSize int
}

// Validate checks the configuration; zero Leeway and ReplayCacheSize are
// valid (the defaults).
func (c *VerifierConfig) Validate() error {
	switch {
	case c.TrustDomain.IsZero():
		return errors.New("assertion verifier: the BU's trust domain is required")
	case c.Bundles == nil:
		return errors.New("assertion verifier: a bundle source (the node's bundle set) is required")
	case !c.Node.IsZero() && c.Node.TrustDomain() != c.TrustDomain:
		return fmt.Errorf("assertion verifier: node %s is not in trust domain %q", c.Node, c.TrustDomain.Name())
	case c.Leeway < 0 || c.Leeway > 30*time.Second:
		return fmt.Errorf("assertion verifier: leeway %s; want from 0 to 30s", c.Leeway)
	case c.ReplayCacheSize < 0:
		return fmt.Errorf("assertion verifier: replay cache size %d; want a positive number, or 0 for %d", c.ReplayCacheSize, DefaultReplayCacheSize)
	}
	return nil
}

// Verifier checks the assertions other BUs' nodes present with the calls
// they forward, and remembers their ids against replay. It is safe for
// concurrent use.
type Verifier struct {
	cfg      VerifierConfig
	audience string
	node     string
	replay   *replayCache
	leaves   leafCache
	refused  *prometheus.CounterVec
}

// NewVerifier returns a Verifier. It takes WithMetrics
// (mcpmesh_federation_assertions_refused_total,
// mcpmesh_federation_assertion_replay_cache_entries).
func NewVerifier(cfg VerifierConfig, opts ...Option) (*Verifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = DefaultLeeway
	}
	if cfg.ReplayCacheSize == 0 {
		cfg.ReplayCacheSize = DefaultReplayCacheSize
	}
	o := newOptions(opts)
	v := &Verifier{cfg: cfg, audience: GatewayID(cfg.TrustDomain).String(), replay: newReplayCache(cfg.ReplayCacheSize),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mcpmesh_federation_assertions_refused_total",
			Help: "Federation assertions this node refused, by reason (signature, audience, replayed, peer, ...)."}, []string{"reason"})}
	if !cfg.Node.IsZero() {
		v.node = cfg.Node.String()
	}
	for _, r := range reasons {
		v.refused.WithLabelValues(r.Reason)
	}
	if reg := o.registry; reg != nil {
		entries := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mcpmesh_federation_assertion_replay_cache_entries",
			Help: "Assertion ids this node remembers against replay (until each one's expiry)."},
			func() float64 { return float64(v.replay.len()) })
		for _, c := range []prometheus.Collector{v.refused, entries} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("assertion verifier: register metrics: %w", err)
			}
		}
	}
	return v, nil
}

// Verify checks token, presented over mTLS by peer, at time now, and
// remembers its id: the same token is refused the next time. On refusal
// the error wraps one of the Err* refusals (ReasonOf names it) and says
// what was wrong, and the refusal is counted.
//
// The key is looked up among the JWT authorities of the peer's trust
// domain, so a node can only present assertions signed by its own BU's
// key; the issuer must then be the peer itself. Export policy (may this
// trust domain and principal call this tool with these scopes) is not
// checked here; neither is the tool against the request (CheckTool).
func (v *Verifier) Verify(token string, peer spiffeid.ID, now time.Time) (Claims, error) {
	c, err := v.verify(token, peer, now)
	if err != nil {
		v.refused.WithLabelValues(ReasonOf(err)).Inc()
		return Claims{}, err
	}
	return c, nil
}

// CheckTool refuses (ErrClaims, counted) verified claims that are for
// another tool than tool, the exporter's "<server>/<tool>" the forwarded
// request calls.
func (v *Verifier) CheckTool(c Claims, tool string) error {
	if c.Tool != tool {
		v.refused.WithLabelValues(ErrClaims.Reason).Inc()
		return refuse(ErrClaims, "it is for tool %q, and the request calls %q", c.Tool, tool)
	}
	return nil
}

// header is the protected header, in one of two forms: alg ES256, kid
// and typ JWT (a JWT authority's key), or alg ES256 or RS256, typ JWT and
// x5c (the calling node's X.509-SVID chain).
type header struct {
	Alg string
	Kid string
	Typ string
	X5C []string
}

// verifyKid checks the signature of a kid-form token with the JWT
// authority of the peer's trust domain, and returns the payload.
func (v *Verifier) verifyKid(h header, token string, parts []string, peer spiffeid.ID) ([]byte, error) {
	key, err := v.key(h.Kid, peer.TrustDomain(), parts[1])
	if err != nil {
		return nil, err
	}
	jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return nil, refuse(ErrMalformed, "%v", err)
	}
	payload, err := jws.Verify(key)
	if err != nil {
		return nil, refuse(ErrSignature, "it does not verify with key %q of trust domain %q", h.Kid, peer.TrustDomain().Name())
	}
	return payload, nil
}

func (v *Verifier) verify(token string, peer spiffeid.ID, now time.Time) (Claims, error) {
	if len(token) > MaxTokenBytes {
		return Claims{}, refuse(ErrMalformed, "it is %d bytes long; at most %d", len(token), MaxTokenBytes)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return Claims{}, refuse(ErrMalformed, "it has %d parts; a compact JWS has 3", len(parts))
	}
	var payload []byte
	var err error
	if e := v.leaves.get(parts[0], now); e != nil {
		// A chain verified before, still valid, bundles unchanged.
		if payload, err = v.verifyX5C(e, token, parts, peer); err != nil {
			return Claims{}, err
		}
	} else {
		h, err := parseHeader(parts[0])
		if err != nil {
			return Claims{}, err
		}
		if peer.IsZero() {
			return Claims{}, refuse(ErrPeer, "no mTLS peer ID was given")
		}
		if h.X5C != nil {
			e, err := v.x5cLeaf(parts[0], h, peer, now)
			if err != nil {
				return Claims{}, err
			}
			if payload, err = v.verifyX5C(e, token, parts, peer); err != nil {
				return Claims{}, err
			}
		} else if payload, err = v.verifyKid(h, token, parts, peer); err != nil {
			return Claims{}, err
		}
	}
	w, err := decodeClaims(payload)
	if err != nil {
		return Claims{}, err
	}
	c, err := v.check(w, peer, now)
	if err != nil {
		return Claims{}, err
	}
	// Remembered a second past the last instant check accepts it.
	if err := v.replay.add(c.Issuer.TrustDomain().Name()+" "+c.ID, c.Expiry.Add(v.cfg.Leeway+time.Second), now); err != nil {
		if errors.Is(err, ErrReplayed) {
			return Claims{}, refuse(ErrReplayed, "jti %q from %s was already used (request id %q)", c.ID, c.Issuer, c.RequestID)
		}
		return Claims{}, refuse(ErrReplayCacheFull, "%d assertion ids are remembered", v.replay.len())
	}
	return c, nil
}

// parseHeader decodes the protected header and accepts exactly one of
// two forms: alg ES256, kid and typ JWT; or alg ES256 or RS256, typ JWT
// and x5c (1 to 4 certificates, standard base64). Nothing else: no
// embedded or remote key (jwk, jku, x5u), no crit, not kid with x5c.
func parseHeader(seg string) (header, error) {
	if len(seg) > maxX5CHeaderBytes {
		return header{}, refuse(ErrMalformed, "the header is %d bytes long", len(seg))
	}
	raw, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return header{}, refuse(ErrMalformed, "the header is not base64url")
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		return header{}, refuse(ErrMalformed, "the header is not a JSON object")
	}
	var h header
	if err := json.Unmarshal(fields["alg"], &h.Alg); err != nil || (h.Alg != Algorithm && h.Alg != AlgorithmRS256) {
		return header{}, refuse(ErrAlgorithm, "alg is %s", quoteRaw(fields["alg"]))
	}
	for name := range fields {
		if name != "alg" && name != "kid" && name != "typ" && name != "x5c" {
			return header{}, refuse(ErrHeader, "it carries header %q", name)
		}
	}
	if err := json.Unmarshal(fields["typ"], &h.Typ); err != nil || h.Typ != "JWT" {
		return header{}, refuse(ErrHeader, "typ is %s; want \"JWT\"", quoteRaw(fields["typ"]))
	}
	if x5c, ok := fields["x5c"]; ok {
		if _, ok := fields["kid"]; ok {
			return header{}, refuse(ErrHeader, "it carries both kid and x5c")
		}
		if err := json.Unmarshal(x5c, &h.X5C); err != nil || len(h.X5C) == 0 || len(h.X5C) > maxX5CCerts {
			return header{}, refuse(ErrHeader, "x5c is not an array of 1 to %d certificates", maxX5CCerts)
		}
		return h, nil
	}
	if len(seg) > maxKidHeaderBytes {
		return header{}, refuse(ErrMalformed, "the header is %d bytes long", len(seg))
	}
	if h.Alg != Algorithm {
		return header{}, refuse(ErrAlgorithm, "alg is %s; a kid-form assertion is %s", h.Alg, Algorithm)
	}
	if err := json.Unmarshal(fields["kid"], &h.Kid); err != nil || h.Kid == "" || len(h.Kid) > 128 || !printable(h.Kid) {
		return header{}, refuse(ErrUnknownKey, "kid is %s; want the key id of the issuer's JWT authority", quoteRaw(fields["kid"]))
	}
	return h, nil
}

// quoteRaw shows a header value in an error: short, and "missing" when absent.
func quoteRaw(r json.RawMessage) string {
	switch {
	case r == nil:
		return "missing"
	case len(r) > 40 || !printable(string(r)):
		return "not a short string"
	}
	return string(r)
}

// key returns the JWT authority kid of trust domain td. When td has none,
// it tells a peer presenting another trust domain's assertion (payload's
// unverified iss, read only to word the refusal) from an unknown key.
func (v *Verifier) key(kid string, td spiffeid.TrustDomain, payload string) (*ecdsa.PublicKey, error) {
	b, err := v.cfg.Bundles.GetJWTBundleForTrustDomain(td)
	if err != nil || b == nil {
		return nil, refuse(ErrUnknownKey, "no bundle of the peer's trust domain %q (not federated, or revoked)", td.Name())
	}
	k, ok := b.FindJWTAuthority(kid)
	if !ok {
		if iss := unverifiedIssuer(payload); !iss.IsZero() && iss.TrustDomain() != td {
			return nil, refuse(ErrPeer, "it claims to be issued in trust domain %q and is presented by a peer of %q", iss.TrustDomain().Name(), td.Name())
		}
		return nil, refuse(ErrUnknownKey, "key %q is not a JWT authority of trust domain %q (rotated away, or another BU's)", kid, td.Name())
	}
	pub, ok := k.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, refuse(ErrUnknownKey, "key %q of trust domain %q is %T, not an ECDSA P-256 key", kid, td.Name(), k)
	}
	return pub, nil
}

// unverifiedIssuer reads iss from a payload whose signature is not checked,
// or returns the zero ID. Use it only to word an error.
func unverifiedIssuer(payload string) spiffeid.ID {
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return spiffeid.ID{}
	}
	var w struct {
		Issuer string `json:"iss"`
	}
	if json.Unmarshal(raw, &w) != nil {
		return spiffeid.ID{}
	}
	id, _ := spiffeid.FromString(w.Issuer)
	return id
}

// check checks the verified claims' values.
func (v *Verifier) check(w wireClaims, peer spiffeid.ID, now time.Time) (Claims, error) {
	iss, err := spiffeid.FromString(w.Issuer)
	if err != nil {
		return Claims{}, refuse(ErrIssuer, "iss %q is not a SPIFFE ID", w.Issuer)
	}
	if _, ok := NodeName(iss); !ok {
		return Claims{}, refuse(ErrIssuer, "iss %s is not a node ID (spiffe://<trust domain>%s<id>)", iss, NodePathPrefix)
	}
	switch {
	case iss.TrustDomain() != peer.TrustDomain():
		return Claims{}, refuse(ErrPeer, "issued in trust domain %q and presented by a peer of %q", iss.TrustDomain().Name(), peer.TrustDomain().Name())
	case iss != peer:
		return Claims{}, refuse(ErrPeer, "issued by %s and presented by %s; a node presents only the assertions it minted", iss, peer)
	case w.Actor == nil || w.Actor.Subject != w.Issuer:
		return Claims{}, refuse(ErrActor, "act.sub is %s, iss is %s", actorOf(w.Actor), iss)
	case len(w.Audience) != 1 || w.Audience[0] != v.audience:
		return Claims{}, refuse(ErrAudience, "aud is %q; want only %q", []string(w.Audience), v.audience)
	}
	if w.IssuedAt == nil || w.Expiry == nil {
		return Claims{}, refuse(ErrLifetime, "iat or exp is missing")
	}
	iat, exp, nbf := w.IssuedAt.Time(), w.Expiry.Time(), w.IssuedAt.Time()
	if w.NotBefore != nil {
		nbf = w.NotBefore.Time()
	}
	start := iat
	if nbf.Before(start) {
		start = nbf
	}
	leeway := v.cfg.Leeway
	switch {
	case exp.Sub(start) > MaxTTL || !exp.After(start):
		return Claims{}, refuse(ErrLifetime, "it is valid from %s to %s; at most %s", start.UTC().Format(time.RFC3339), exp.UTC().Format(time.RFC3339), MaxTTL)
	case now.After(exp.Add(leeway)):
		return Claims{}, refuse(ErrExpired, "it expired at %s", exp.UTC().Format(time.RFC3339))
	case nbf.After(now.Add(leeway)) || iat.After(now.Add(leeway)):
		return Claims{}, refuse(ErrNotYetValid, "it is valid from %s, and it is %s here", nbf.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if err := checkSubject(w.Subject, iss.TrustDomain()); err != nil {
		return Claims{}, refuse(ErrSubject, "%v", err)
	}
	if err := checkValue("jti", w.ID, maxIDBytes, true); err != nil {
		return Claims{}, refuse(ErrClaims, "%v", err)
	}
	if err := checkCall(w.Call); err != nil {
		return Claims{}, refuse(ErrClaims, "%v", err)
	}
	var target spiffeid.ID
	if w.Call.TargetNode != "" {
		if target, err = spiffeid.FromString(w.Call.TargetNode); err != nil || w.Call.TargetNode != v.node {
			return Claims{}, refuse(ErrAudience, "it is pinned to node %q, and this is node %q", w.Call.TargetNode, v.node)
		}
	}
	return Claims{Issuer: iss, Subject: w.Subject, Audience: GatewayID(v.cfg.TrustDomain), IssuedAt: iat, NotBefore: nbf, Expiry: exp,
		ID: w.ID, Tenant: w.Call.Tenant, Groups: w.Call.Groups, Scopes: w.Call.Scope, Tool: w.Call.Tool, Version: w.Call.Version,
		RequestID: w.Call.RequestID, Trace: w.Call.Trace, TraceState: w.Call.TraceState, TargetNode: target}, nil
}

func actorOf(a *wireActor) string {
	if a == nil {
		return "missing"
	}
	return fmt.Sprintf("%q", a.Subject)
}
