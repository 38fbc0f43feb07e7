package assertion

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/mcpmesh/mcpmesh/trust/agentauth"
	"github.com/mcpmesh/mcpmesh/trust/ca"
)

var (
	hrTD      = spiffeid.RequireTrustDomainFromString("hr.example.corp")
	financeTD = spiffeid.RequireTrustDomainFromString("finance.example.corp")
	salesTD   = spiffeid.RequireTrustDomainFromString("sales.example.corp")
	hrNode    = spiffeid.RequireFromPath(hrTD, "/mcpmesh/node/hr-1")
	hrNode2   = spiffeid.RequireFromPath(hrTD, "/mcpmesh/node/hr-2")
	finNode   = spiffeid.RequireFromPath(financeTD, "/mcpmesh/node/fin-1")
	finNode2  = spiffeid.RequireFromPath(financeTD, "/mcpmesh/node/fin-2")
	salesNode = spiffeid.RequireFromPath(salesTD, "/mcpmesh/node/sales-1")
	t0        = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
)

// mesh is three BUs with real embedded CAs; finance verifies.
type mesh struct {
	hr, finance, sales *ca.CA
	// bundles is finance's bundle set: its own, hr's and sales's.
	bundles *jwtbundle.Set
}

func newMesh(t testing.TB) *mesh {
	t.Helper()
	m := &mesh{}
	for _, x := range []struct {
		c  **ca.CA
		td spiffeid.TrustDomain
	}{{&m.hr, hrTD}, {&m.finance, financeTD}, {&m.sales, salesTD}} {
		c, err := ca.Init(filepath.Join(t.TempDir(), x.td.Name()), x.td)
		if err != nil {
			t.Fatal(err)
		}
		*x.c = c
	}
	m.bundles = jwtbundle.NewSet(m.hr.JWTBundle(), m.finance.JWTBundle(), m.sales.JWTBundle())
	return m
}

// minter returns a minter for node, signing with c's JWT key, at clock *now.
func newTestMinter(t testing.TB, c *ca.CA, node spiffeid.ID, now *time.Time, opts ...Option) *Minter {
	t.Helper()
	kid, signer := c.JWTSigner()
	m, err := NewMinter(MinterConfig{Node: node, KeyID: kid, Signer: signer}, append(opts, WithClock(func() time.Time { return *now }))...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func newTestVerifier(t testing.TB, bundles jwtbundle.Source, node spiffeid.ID, opts ...Option) *Verifier {
	t.Helper()
	v, err := NewVerifier(VerifierConfig{TrustDomain: node.TrustDomain(), Node: node, Bundles: bundles}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

var aliceCall = Call{Principal: "oidc:alice", Tenant: "acme", Groups: []string{"payroll", "admins"}, Scopes: []string{"reports:read"},
	Tool: "corp.finance/reports/generate_report", Version: "1.2.0", RequestID: "req-1",
	Trace: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", TraceState: "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"}

func mustMint(t testing.TB, m *Minter, target spiffeid.TrustDomain, c Call) string {
	t.Helper()
	tok, err := m.Mint(target, c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestRoundTrip(t *testing.T) {
	ms := newMesh(t)
	now := t0
	reg := prometheus.NewRegistry()
	m := newTestMinter(t, ms.hr, hrNode, &now, WithMetrics(reg))
	v := newTestVerifier(t, ms.bundles, finNode, WithMetrics(reg))
	tok := mustMint(t, m, financeTD, aliceCall)

	// go-jose reads it as a JWT with the header and registered claims the
	// package doc promises.
	parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	kid, _ := ms.hr.JWTSigner()
	if h := parsed.Headers[0]; h.KeyID != kid || h.ExtraHeaders[jose.HeaderType] != "JWT" {
		t.Errorf("header kid %q typ %v; want kid %q typ JWT", h.KeyID, h.ExtraHeaders[jose.HeaderType], kid)
	}
	var std jwt.Claims
	var act struct {
		Act struct {
			Sub string `json:"sub"`
		} `json:"act"`
	}
	if err := parsed.Claims(ms.hr.JWTBundle().JWTAuthorities()[kid], &std, &act); err != nil {
		t.Fatalf("the hr bundle's key does not verify the assertion: %v", err)
	}
	if std.Issuer != hrNode.String() || std.Subject != "oidc:alice" || !cmp.Equal([]string(std.Audience), []string{"spiffe://finance.example.corp/mcpmesh/gateway"}) ||
		act.Act.Sub != hrNode.String() || std.Expiry.Time().Sub(std.IssuedAt.Time()) != 60*time.Second || len(std.ID) != 22 {
		t.Errorf("claims %+v act %+v", std, act)
	}

	c, err := v.Verify(tok, hrNode, now.Add(10*time.Second))
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	want := Claims{Issuer: hrNode, Subject: "oidc:alice", Audience: GatewayID(financeTD), IssuedAt: t0, NotBefore: t0, Expiry: t0.Add(time.Minute),
		ID: std.ID, Tenant: "acme", Groups: []string{"payroll", "admins"}, Scopes: []string{"reports:read"}, Tool: aliceCall.Tool, Version: "1.2.0",
		RequestID: "req-1", Trace: aliceCall.Trace, TraceState: aliceCall.TraceState}
	if diff := cmp.Diff(want, c, cmp.Comparer(func(a, b spiffeid.ID) bool { return a == b })); diff != "" {
		t.Errorf("claims (-want +got):\n%s", diff)
	}
	p := PrincipalOf(c)
	wantP := Principal{ID: "hr.example.corp/oidc:alice", TrustDomain: "hr.example.corp", Subject: "oidc:alice", Tenant: "hr.example.corp/acme",
		Groups: []string{"hr.example.corp/payroll", "hr.example.corp/admins"}, Scopes: []string{"reports:read"}, Actor: hrNode,
		RequestID: "req-1", Trace: aliceCall.Trace, TraceState: aliceCall.TraceState, Tool: aliceCall.Tool, Version: "1.2.0"}
	if diff := cmp.Diff(wantP, p, cmp.Comparer(func(a, b spiffeid.ID) bool { return a == b })); diff != "" {
		t.Errorf("principal (-want +got):\n%s", diff)
	}
	if a := p.Agent(); a.ID != wantP.ID || a.Method != MethodFederation || a.TrustDomain != "hr.example.corp" || a.Tenant != wantP.Tenant {
		t.Errorf("Agent() = %+v", a)
	}
	if err := v.CheckTool(c, aliceCall.Tool); err != nil {
		t.Errorf("CheckTool(its own tool): %v", err)
	}
	if err := v.CheckTool(c, "corp.finance/payments/pay"); !errors.Is(err, ErrClaims) {
		t.Errorf("CheckTool(another tool) = %v; want ErrClaims", err)
	}

	// Replayed: refused, to the same node.
	_, err = v.Verify(tok, hrNode, now.Add(11*time.Second))
	if !errors.Is(err, ErrReplayed) {
		t.Fatalf("replay: %v; want ErrReplayed", err)
	}
	for name, want := range map[string]float64{
		`mcpmesh_federation_assertions_minted_total{target_trust_domain="finance.example.corp"}`: 1,
		`mcpmesh_federation_assertions_refused_total{reason="replayed"}`:                         1,
		`mcpmesh_federation_assertions_refused_total{reason="claims"}`:                           1,
		`mcpmesh_federation_assertion_replay_cache_entries`:                                      1,
	} {
		if got := metricValue(t, reg, name); got != want {
			t.Errorf("%s = %v; want %v", name, got, want)
		}
	}
}

// metricValue returns the value of the series name{labels} in reg.
func metricValue(t *testing.T, reg *prometheus.Registry, series string) float64 {
	t.Helper()
	name, labels, _ := strings.Cut(series, "{")
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.Metric {
			var ls []string
			for _, l := range m.Label {
				ls = append(ls, l.GetName()+`="`+l.GetValue()+`"`)
			}
			if strings.Join(ls, ",")+"}" == labels || (labels == "" && len(ls) == 0) {
				if m.Counter != nil {
					return m.Counter.GetValue()
				}
				return m.Gauge.GetValue()
			}
		}
	}
	t.Fatalf("no series %s", series)
	return 0
}

func TestSubjects(t *testing.T) {
	ms := newMesh(t)
	now := t0
	m := newTestMinter(t, ms.hr, hrNode, &now)
	v := newTestVerifier(t, ms.bundles, finNode)
	for _, tc := range []struct {
		sub, wantID string
	}{
		// Not SPIFFE IDs: go-spiffe's jwtsvid would refuse them.
		{"oidc:alice", "hr.example.corp/oidc:alice"},
		{"apikey:k1", "hr.example.corp/apikey:k1"},
		{"anonymous", "hr.example.corp/anonymous"},
		// A SPIFFE ID of the caller's trust domain names itself.
		{"spiffe://hr.example.corp/agent/payroll", "spiffe://hr.example.corp/agent/payroll"},
	} {
		c := aliceCall
		c.Principal, c.Tenant, c.Groups = tc.sub, "", nil
		got, err := v.Verify(mustMint(t, m, financeTD, c), hrNode, now)
		if err != nil {
			t.Errorf("sub %q: %v", tc.sub, err)
			continue
		}
		if p := PrincipalOf(got); p.ID != tc.wantID || p.Tenant != "" || p.Groups != nil {
			t.Errorf("sub %q: principal %+v; want ID %q, no tenant, no groups", tc.sub, p, tc.wantID)
		}
	}
	// hr cannot speak for finance's (or anyone else's) SPIFFE IDs: minting
	// refuses, and so does Verify when a node signs one anyway.
	c := aliceCall
	c.Principal = "spiffe://finance.example.corp/agent/cfo"
	if _, err := m.Mint(financeTD, c); err == nil {
		t.Error("Mint accepted a SPIFFE ID subject of another trust domain")
	}
	w := wireFor(m, financeTD, aliceCall, now)
	w.Subject = c.Principal
	if _, err := v.Verify(signWire(t, m, w), hrNode, now); !errors.Is(err, ErrSubject) {
		t.Errorf("foreign SPIFFE subject: %v; want ErrSubject", err)
	}
}

// wireFor returns the claims Mint would sign, for tests to alter.
func wireFor(m *Minter, target spiffeid.TrustDomain, c Call, now time.Time) wireClaims {
	return wireClaims{Issuer: m.node, Subject: c.Principal, Audience: jwt.Audience{GatewayID(target).String()}, Actor: &wireActor{m.node},
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(m.ttl)), ID: randomID(),
		Call: &wireCall{Tenant: c.Tenant, Groups: c.Groups, Scope: c.Scopes, Tool: c.Tool, Version: c.Version, RequestID: c.RequestID}}
}

func signWire(t testing.TB, m *Minter, w wireClaims) string {
	t.Helper()
	tok, err := m.sign(w)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// signRaw signs header and payload (JSON) with key as ES256.
func signRaw(t testing.TB, key *ecdsa.PrivateKey, header, payload string) string {
	t.Helper()
	enc := base64.RawURLEncoding
	in := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload))
	d := sha256.Sum256([]byte(in))
	r, s, err := ecdsa.Sign(rand.Reader, key, d[:])
	if err != nil {
		t.Fatal(err)
	}
	var sig [64]byte
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return in + "." + enc.EncodeToString(sig[:])
}

func TestRefusals(t *testing.T) {
	ms := newMesh(t)
	now := t0
	m := newTestMinter(t, ms.hr, hrNode, &now)
	finMinter := newTestMinter(t, ms.finance, finNode, &now)
	kid, _ := ms.hr.JWTSigner()
	hrPub := ms.hr.JWTBundle().JWTAuthorities()[kid].(*ecdsa.PublicKey)
	attacker, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	good := wireFor(m, financeTD, aliceCall, now)
	payload, _ := json.Marshal(good)
	enc := base64.RawURLEncoding
	hs256 := func() string {
		// HS256 keyed with the public key's bytes: the classic confusion.
		pubDER, _ := x509.MarshalPKIXPublicKey(hrPub)
		in := enc.EncodeToString([]byte(`{"alg":"HS256","kid":"`+kid+`","typ":"JWT"}`)) + "." + enc.EncodeToString(payload)
		mac := hmac.New(sha256.New, pubDER)
		mac.Write([]byte(in))
		return in + "." + enc.EncodeToString(mac.Sum(nil))
	}()
	jwkHeader := func() string {
		jwk, _ := json.Marshal(jose.JSONWebKey{Key: &attacker.PublicKey})
		return signRaw(t, attacker, `{"alg":"ES256","kid":"`+kid+`","typ":"JWT","jwk":`+string(jwk)+`}`, string(payload))
	}()
	tampered := func() string {
		tok := mustMint(t, m, financeTD, aliceCall)
		parts := strings.Split(tok, ".")
		raw, _ := enc.DecodeString(parts[1])
		raw = []byte(strings.Replace(string(raw), `"oidc:alice"`, `"oidc:admin"`, 1))
		return parts[0] + "." + enc.EncodeToString(raw) + "." + parts[2]
	}()
	mod := func(f func(w *wireClaims)) string {
		w := wireFor(m, financeTD, aliceCall, now)
		f(&w)
		return signWire(t, m, w)
	}

	for _, tc := range []struct {
		name    string
		token   string
		peer    spiffeid.ID
		at      time.Time
		bundles jwtbundle.Source
		want    error
	}{
		{name: "garbage", token: "not a token", want: ErrMalformed},
		{name: "too long", token: strings.Repeat("a", MaxTokenBytes+1), want: ErrMalformed},
		{name: "alg none", token: enc.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc.EncodeToString(payload) + ".", want: ErrAlgorithm},
		{name: "alg HS256 keyed with the public key", token: hs256, want: ErrAlgorithm},
		{name: "alg RS256", token: enc.EncodeToString([]byte(`{"alg":"RS256","kid":"`+kid+`","typ":"JWT"}`)) + "." + enc.EncodeToString(payload) + ".AAAA", want: ErrAlgorithm},
		{name: "embedded jwk", token: jwkHeader, want: ErrHeader},
		{name: "jku", token: signRaw(t, attacker, `{"alg":"ES256","kid":"`+kid+`","typ":"JWT","jku":"https://evil/jwks"}`, string(payload)), want: ErrHeader},
		{name: "no typ", token: signRaw(t, attacker, `{"alg":"ES256","kid":"`+kid+`"}`, string(payload)), want: ErrHeader},
		{name: "no kid", token: signRaw(t, attacker, `{"alg":"ES256","typ":"JWT"}`, string(payload)), want: ErrUnknownKey},
		{name: "right kid, another key", token: signRaw(t, attacker, `{"alg":"ES256","kid":"`+kid+`","typ":"JWT"}`, string(payload)), want: ErrSignature},
		{name: "tampered claims", token: tampered, want: ErrSignature},
		{name: "issuer's trust domain revoked", token: mustMint(t, m, financeTD, aliceCall),
			bundles: jwtbundle.NewSet(ms.finance.JWTBundle(), ms.sales.JWTBundle()), want: ErrUnknownKey},
		{name: "unknown trust domain", token: mustMint(t, m, financeTD, aliceCall), bundles: jwtbundle.NewSet(), want: ErrUnknownKey},
		{name: "presented by a node of another trust domain", token: mustMint(t, m, financeTD, aliceCall), peer: salesNode, want: ErrPeer},
		{name: "presented by another node of the issuer's trust domain", token: mustMint(t, m, financeTD, aliceCall), peer: hrNode2, want: ErrPeer},
		{name: "no peer", token: mustMint(t, m, financeTD, aliceCall), peer: spiffeid.ID{}, want: ErrPeer},
		// hr's node presents an assertion claiming hr's issuer but signed
		// with finance's key: the key is looked up in hr's bundle only.
		{name: "signed with another trust domain's key", token: func() string {
			w := wireFor(m, financeTD, aliceCall, now)
			return signWire(t, finMinter, w)
		}(), want: ErrUnknownKey},
		{name: "issuer not a node", token: mod(func(w *wireClaims) {
			w.Issuer = "spiffe://hr.example.corp/agent/alice"
			w.Actor.Subject = w.Issuer
		}), want: ErrIssuer},
		{name: "issuer not a SPIFFE ID", token: mod(func(w *wireClaims) { w.Issuer = "hr-1" }), want: ErrIssuer},
		{name: "act.sub mismatch", token: mod(func(w *wireClaims) { w.Actor.Subject = hrNode2.String() }), want: ErrActor},
		{name: "no act", token: mod(func(w *wireClaims) { w.Actor = nil }), want: ErrActor},
		{name: "another audience", token: mustMint(t, m, salesTD, aliceCall), want: ErrAudience},
		{name: "two audiences", token: mod(func(w *wireClaims) { w.Audience = append(w.Audience, GatewayID(salesTD).String()) }), want: ErrAudience},
		{name: "pinned to another node", token: func() string {
			c := aliceCall
			c.TargetNode = finNode2
			return mustMint(t, m, financeTD, c)
		}(), want: ErrAudience},
		{name: "expired", token: mustMint(t, m, financeTD, aliceCall), at: t0.Add(66 * time.Second), want: ErrExpired},
		{name: "not yet valid", token: mustMint(t, m, financeTD, aliceCall), at: t0.Add(-6 * time.Second), want: ErrNotYetValid},
		{name: "lives longer than 60s", token: mod(func(w *wireClaims) { w.Expiry = jwt.NewNumericDate(now.Add(61 * time.Second)) }), want: ErrLifetime},
		{name: "nbf long before exp", token: mod(func(w *wireClaims) { w.NotBefore = jwt.NewNumericDate(now.Add(-30 * time.Second)) }), want: ErrLifetime},
		{name: "no exp", token: mod(func(w *wireClaims) { w.Expiry = nil }), want: ErrLifetime},
		{name: "no sub", token: mod(func(w *wireClaims) { w.Subject = "" }), want: ErrSubject},
		{name: "sub with control characters", token: mod(func(w *wireClaims) { w.Subject = "oidc:a\nlice" }), want: ErrSubject},
		{name: "no jti", token: mod(func(w *wireClaims) { w.ID = "" }), want: ErrClaims},
		{name: "no call claim", token: mod(func(w *wireClaims) { w.Call = nil }), want: ErrClaims},
		{name: "no tool", token: mod(func(w *wireClaims) { w.Call.Tool = "" }), want: ErrClaims},
		{name: "too many groups", token: mod(func(w *wireClaims) { w.Call.Groups = make([]string, MaxGroups+1) }), want: ErrClaims},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bundles := tc.bundles
			if bundles == nil {
				bundles = ms.bundles
			}
			peer, at := hrNode, t0
			if tc.peer != (spiffeid.ID{}) || tc.name == "no peer" {
				peer = tc.peer
			}
			if !tc.at.IsZero() {
				at = tc.at
			}
			v := newTestVerifier(t, bundles, finNode)
			_, err := v.Verify(tc.token, peer, at)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v; want %v", err, tc.want)
			}
			if ReasonOf(err) != tc.want.(*Refusal).Reason {
				t.Errorf("ReasonOf = %q; want %q", ReasonOf(err), tc.want.(*Refusal).Reason)
			}
			if strings.Contains(err.Error(), tc.token) && len(tc.token) > 20 {
				t.Errorf("the error repeats the token: %v", err)
			}
		})
	}
}

func TestPinnedNode(t *testing.T) {
	ms := newMesh(t)
	now := t0
	m := newTestMinter(t, ms.hr, hrNode, &now)
	c := aliceCall
	c.TargetNode = finNode
	tok := mustMint(t, m, financeTD, c)
	if _, err := newTestVerifier(t, ms.bundles, finNode2).Verify(tok, hrNode, now); !errors.Is(err, ErrAudience) {
		t.Errorf("another node of the BU: %v; want ErrAudience", err)
	}
	got, err := newTestVerifier(t, ms.bundles, finNode).Verify(tok, hrNode, now)
	if err != nil || got.TargetNode != finNode {
		t.Errorf("the pinned node: %+v, %v", got, err)
	}
	c.TargetNode = salesNode
	if _, err := m.Mint(financeTD, c); err == nil {
		t.Error("Mint pinned an assertion for finance to a node of sales")
	}
}

func TestMintRefuses(t *testing.T) {
	ms := newMesh(t)
	now := t0
	m := newTestMinter(t, ms.hr, hrNode, &now)
	for name, tc := range map[string]struct {
		target spiffeid.TrustDomain
		call   func(c *Call)
		want   string
	}{
		"no principal":     {financeTD, func(c *Call) { c.Principal = "" }, "sub is empty"},
		"no tool":          {financeTD, func(c *Call) { c.Tool = "" }, "tool is empty"},
		"no target":        {spiffeid.TrustDomain{}, func(*Call) {}, "target trust domain is empty"},
		"own trust domain": {hrTD, func(*Call) {}, "own trust domain"},
		"too many scopes":  {financeTD, func(c *Call) { c.Scopes = make([]string, MaxScopes+1) }, "scope has 33 entries"},
		"long group":       {financeTD, func(c *Call) { c.Groups = []string{strings.Repeat("g", MaxValueBytes+1)} }, "groups[0] is 129 bytes"},
		"bad traceparent":  {financeTD, func(c *Call) { c.Trace = "00-xyz" }, "not a W3C traceparent"},
		"bad tracestate":   {financeTD, func(c *Call) { c.TraceState = "Rojo=1" }, "not a W3C tracestate"},
		"tracestate alone": {financeTD, func(c *Call) { c.Trace = "" }, "not a W3C tracestate"},
		"33 tracestate members": {financeTD, func(c *Call) {
			c.TraceState = ""
			for i := range 33 {
				c.TraceState += "k" + strconv.Itoa(i) + "=1,"
			}
		}, "at most 32 members"},
		"control in tenant":   {financeTD, func(c *Call) { c.Tenant = "a\x00b" }, "tenant holds invalid UTF-8 or control characters"},
		"invalid utf-8 scope": {financeTD, func(c *Call) { c.Scopes = []string{"\xff"} }, "scope[0] holds invalid UTF-8"},
	} {
		c := aliceCall
		tc.call(&c)
		if _, err := m.Mint(tc.target, c); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Mint = %v; want an error saying %q", name, err, tc.want)
		}
	}
	// A request id is made up when the caller has none.
	c := aliceCall
	c.RequestID = ""
	got, err := newTestVerifier(t, ms.bundles, finNode).Verify(mustMint(t, m, financeTD, c), hrNode, now)
	if err != nil || len(got.RequestID) != 22 {
		t.Errorf("request id %q, %v; want a random one", got.RequestID, err)
	}

	kid, signer := ms.hr.JWTSigner()
	for name, cfg := range map[string]MinterConfig{
		"TTL above 60s":    {Node: hrNode, KeyID: kid, Signer: signer, TTL: 61 * time.Second},
		"TTL below 1s":     {Node: hrNode, KeyID: kid, Signer: signer, TTL: time.Millisecond},
		"not a node":       {Node: spiffeid.RequireFromPath(hrTD, "/agent/x"), KeyID: kid, Signer: signer},
		"no key id":        {Node: hrNode, Signer: signer},
		"not a P-256 key":  {Node: hrNode, KeyID: kid, Signer: p384(t)},
		"no signer at all": {Node: hrNode, KeyID: kid},
	} {
		if _, err := NewMinter(cfg); err == nil {
			t.Errorf("NewMinter(%s) succeeded", name)
		}
	}
	// A TTL of 1s is the shortest; Verify takes it.
	short, err := NewMinter(MinterConfig{Node: hrNode, KeyID: kid, Signer: signer, TTL: time.Second}, WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	got, err = newTestVerifier(t, ms.bundles, finNode).Verify(mustMint(t, short, financeTD, aliceCall), hrNode, now)
	if err != nil || got.Expiry.Sub(got.IssuedAt) != time.Second {
		t.Errorf("1s assertion: %+v, %v", got, err)
	}
}

func p384(t *testing.T) crypto.Signer {
	k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestKeyRotation: after the CA's JWT authority changes, SetKey makes the
// minter sign with the new key; a verifier holding only the old bundle
// refuses the new assertions until its bundle set has the new key.
func TestKeyRotation(t *testing.T) {
	ms := newMesh(t)
	now := t0
	m := newTestMinter(t, ms.hr, hrNode, &now)
	newHR, err := ca.Init(filepath.Join(t.TempDir(), "hr2"), hrTD)
	if err != nil {
		t.Fatal(err)
	}
	kid, signer := newHR.JWTSigner()
	if err := m.SetKey(kid, signer); err != nil {
		t.Fatal(err)
	}
	tok := mustMint(t, m, financeTD, aliceCall)
	if _, err := newTestVerifier(t, ms.bundles, finNode).Verify(tok, hrNode, now); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("before the bundle update: %v; want ErrUnknownKey", err)
	}
	both := ms.hr.JWTBundle()
	both.AddJWTAuthority(kid, newHR.JWTBundle().JWTAuthorities()[kid])
	if _, err := newTestVerifier(t, jwtbundle.NewSet(both, ms.finance.JWTBundle()), finNode).Verify(tok, hrNode, now); err != nil {
		t.Fatalf("after the bundle update: %v", err)
	}
}

func TestVerifierConfig(t *testing.T) {
	ms := newMesh(t)
	for name, cfg := range map[string]VerifierConfig{
		"no trust domain":       {Bundles: ms.bundles},
		"no bundles":            {TrustDomain: financeTD},
		"node elsewhere":        {TrustDomain: financeTD, Bundles: ms.bundles, Node: hrNode},
		"leeway too large":      {TrustDomain: financeTD, Bundles: ms.bundles, Leeway: time.Minute},
		"negative replay cache": {TrustDomain: financeTD, Bundles: ms.bundles, ReplayCacheSize: -1},
	} {
		if _, err := NewVerifier(cfg); err == nil {
			t.Errorf("NewVerifier(%s) succeeded", name)
		}
	}
	// Without Node, pinned assertions are refused, unpinned accepted.
	now := t0
	m := newTestMinter(t, ms.hr, hrNode, &now)
	v, err := NewVerifier(VerifierConfig{TrustDomain: financeTD, Bundles: ms.bundles})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(mustMint(t, m, financeTD, aliceCall), hrNode, now); err != nil {
		t.Errorf("unpinned: %v", err)
	}
	c := aliceCall
	c.TargetNode = finNode
	if _, err := v.Verify(mustMint(t, m, financeTD, c), hrNode, now); !errors.Is(err, ErrAudience) {
		t.Errorf("pinned, verifier without a node: %v; want ErrAudience", err)
	}
}

// TestCallOf: an agent principal of the calling BU becomes the assertion's
// subject, tenant, groups and scopes.
func TestCallOf(t *testing.T) {
	ms := newMesh(t)
	now := t0
	m := newTestMinter(t, ms.hr, hrNode, &now)
	agent := agentauth.Principal{ID: "apikey:k1", TrustDomain: "hr.example.corp", Tenant: "acme", Groups: []string{"g"}, Scopes: []string{"s"}, Method: agentauth.MethodAPIKey}
	c := CallOf(agent, "corp.finance/reports/generate_report", "1.0.0")
	got, err := newTestVerifier(t, ms.bundles, finNode).Verify(mustMint(t, m, financeTD, c), hrNode, now)
	if err != nil {
		t.Fatal(err)
	}
	p := PrincipalOf(got).Agent()
	want := agentauth.Principal{ID: "hr.example.corp/apikey:k1", TrustDomain: "hr.example.corp", Tenant: "hr.example.corp/acme",
		Groups: []string{"hr.example.corp/g"}, Scopes: []string{"s"}, Method: MethodFederation}
	if diff := cmp.Diff(want, p); diff != "" {
		t.Errorf("agent principal (-want +got):\n%s", diff)
	}
}

// TestReplayAtTheLastInstant: an assertion accepted at the last instant of
// its validity (exp + leeway) is still refused when replayed then.
func TestReplayAtTheLastInstant(t *testing.T) {
	ms := newMesh(t)
	now := t0
	m := newTestMinter(t, ms.hr, hrNode, &now)
	v := newTestVerifier(t, ms.bundles, finNode)
	tok := mustMint(t, m, financeTD, aliceCall)
	last := t0.Add(MaxTTL + DefaultLeeway)
	if _, err := v.Verify(tok, hrNode, last); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(tok, hrNode, last); !errors.Is(err, ErrReplayed) {
		t.Fatalf("replayed at the same instant: %v; want ErrReplayed", err)
	}
}
