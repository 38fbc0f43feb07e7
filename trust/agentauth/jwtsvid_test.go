package agentauth

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/mcpmesh/mcpmesh/trust/ca"
)

const gatewayAud = "spiffe://hr.example.corp/mcpmesh/gateway"

// jwtFixture is a trust domain's CA whose JWT bundle a node trusts, plus a
// key "raw" in that bundle that signs hand-made claims.
type jwtFixture struct {
	t      testing.TB
	ca     *ca.CA
	bundle *jwtbundle.Bundle
	raw    *ecdsa.PrivateKey
}

func newJWTFixture(t testing.TB) *jwtFixture {
	t.Helper()
	c, err := ca.Init(filepath.Join(t.TempDir(), "ca"), td)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b := c.JWTBundle()
	b.AddJWTAuthority("raw", &raw.PublicKey)
	return &jwtFixture{t: t, ca: c, bundle: b, raw: raw}
}

// issue issues a JWT-SVID from a CA of id's trust domain whose clock is off
// by skew: this fixture's CA for hr, a new one for others.
func (f *jwtFixture) issue(id string, aud []string, ttl, skew time.Duration) string {
	f.t.Helper()
	sid := spiffeid.RequireFromString(id)
	c := f.ca
	var err error
	switch {
	case sid.TrustDomain() != td:
		c, err = ca.Init(filepath.Join(f.t.TempDir(), "ca"), sid.TrustDomain())
	case skew != 0:
		// The same CA (so the same JWT key) with its clock off.
		cert, key, merr := f.ca.Marshal()
		if merr != nil {
			f.t.Fatal(merr)
		}
		c, err = ca.Parse(cert, key, ca.WithClock(func() time.Time { return time.Now().Add(skew) }))
	}
	if err != nil {
		f.t.Fatal(err)
	}
	tok, err := c.IssueJWTSVID(sid, aud, ttl)
	if err != nil {
		f.t.Fatal(err)
	}
	return tok
}

// sign signs exactly claims with the raw key, under header kid "raw".
func (f *jwtFixture) sign(claims map[string]any, typ string) string {
	f.t.Helper()
	opts := (&jose.SignerOptions{}).WithType(jose.ContentType(typ))
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: f.raw, KeyID: "raw"}}, opts)
	if err != nil {
		f.t.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		f.t.Fatal(err)
	}
	return tok
}

func newJWTAuth(t testing.TB, f *jwtFixture, opts ...Option) *Authenticator {
	t.Helper()
	k := newKeys(t)
	return New(Config{
		TrustDomain:    td,
		Methods:        []Method{MethodAPIKey, MethodSVID, MethodJWTSVID},
		SVIDPathPrefix: "/agent/",
		SVIDTenants:    []TenantRule{{PathPrefix: "/agent/", Tenant: "shared"}, {PathPrefix: "/agent/payroll/", Tenant: "payroll"}},
		JWTSVID:        &JWTSVIDConfig{Audience: gatewayAud, Bundles: f.bundle},
	}, k.fsm, opts...)
}

func TestJWTSVIDs(t *testing.T) {
	f := newJWTFixture(t)
	a := newJWTAuth(t, f)
	const agent = "spiffe://hr.example.corp/agent/payroll/exporter"
	good := f.issue(agent, []string{gatewayAud, "spiffe://hr.example.corp/other"}, 5*time.Minute, 0)
	p, err := a.Authenticate(bearer("/mcp", good))
	if err != nil {
		t.Fatal(err)
	}
	want := Principal{ID: agent, TrustDomain: td.Name(), Tenant: "payroll", Method: MethodJWTSVID}
	if !equal(p, want) {
		t.Fatalf("principal = %+v, want %+v", p, want)
	}

	parts := strings.Split(good, ".")
	flip := func(s string) string {
		b := []byte(s)
		if b[10] == 'A' {
			b[10] = 'B'
		} else {
			b[10] = 'A'
		}
		return string(b)
	}
	tampered := parts[0] + "." + parts[1] + "." + flip(parts[2])
	forged := parts[0] + "." + jwtPart(t, map[string]any{"sub": "spiffe://hr.example.corp/agent/payroll/boss", "aud": gatewayAud, "exp": time.Now().Add(time.Hour).Unix()}) + "." + parts[2]
	now := time.Now()
	for _, tc := range []struct{ name, token, reason, substr string }{
		{"expired", f.issue(agent, []string{gatewayAud}, 30*time.Minute, -2*time.Hour), "expired", "expired at"},
		{"not yet valid", f.issue(agent, []string{gatewayAud}, time.Hour, 2*time.Hour), "not-yet-valid", "not valid yet"},
		{"wrong audience", f.issue(agent, []string{"spiffe://finance.example.corp/mcpmesh/gateway"}, time.Minute, 0), "wrong-audience", gatewayAud},
		{"unknown key", func() string {
			other, err := ca.Init(filepath.Join(t.TempDir(), "ca"), td)
			if err != nil {
				t.Fatal(err)
			}
			tok, err := other.IssueJWTSVID(spiffeid.RequireFromString(agent), []string{gatewayAud}, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}(), "unknown-key", "not a JWT authority"},
		{"tampered signature", tampered, "bad-signature", "does not verify"},
		{"forged claims", forged, "bad-signature", "does not verify"},
		{"foreign trust domain", f.issue("spiffe://finance.example.corp/agent/payroll/exporter", []string{gatewayAud}, time.Minute, 0), "foreign-trust-domain", "finance.example.corp"},
		{"admin", f.issue("spiffe://hr.example.corp/admin/alice", []string{gatewayAud}, time.Minute, 0), "not-agent", "/agent/"},
		{"node", f.issue("spiffe://hr.example.corp/mcpmesh/node/n1", []string{gatewayAud}, time.Minute, 0), "not-agent", "not an agent"},
		{"no expiry", f.sign(map[string]any{"sub": agent, "aud": gatewayAud}, "JWT"), "invalid", "no exp"},
		{"no kid", func() string {
			s, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: f.raw}, nil)
			tok, _ := jwt.Signed(s).Claims(map[string]any{"sub": agent, "aud": gatewayAud, "exp": now.Add(time.Hour).Unix()}).Serialize()
			return tok
		}(), "malformed", "names no signing key"},
		{"wrong typ", f.sign(map[string]any{"sub": agent, "aud": gatewayAud, "exp": now.Add(time.Hour).Unix()}, "at+jwt"), "invalid", "JWT or JOSE"},
		{"sub not a SPIFFE ID", f.sign(map[string]any{"sub": "spiffe://", "aud": gatewayAud, "exp": now.Add(time.Hour).Unix()}, "JWT"), "malformed", "not a SPIFFE ID"},
		{"not a JWT", "eyJhbGciOiJFUzI1NiJ9.e30", "malformed", "not a JWT-SVID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantRefused(t, a, bearer("/mcp", tc.token), tc.reason, tc.substr)
			if p, err := a.Authenticate(bearer("/mcp", tc.token)); err == nil {
				t.Errorf("a refused token was accepted the second time: %+v", p)
			}
		})
	}
	// A hand-signed token with every claim right is accepted: the checks
	// above fail for the reason they name.
	if _, err := a.Authenticate(bearer("/mcp", f.sign(map[string]any{"sub": agent, "aud": gatewayAud, "exp": now.Add(time.Hour).Unix()}, "JWT"))); err != nil {
		t.Errorf("hand-signed valid JWT-SVID: %v", err)
	}

	off := New(Config{TrustDomain: td, Methods: []Method{MethodAPIKey, MethodSVID}, SVIDPathPrefix: "/agent/",
		JWTSVID: &JWTSVIDConfig{Audience: gatewayAud, Bundles: f.bundle}}, newKeys(t).fsm)
	wantRefused(t, off, bearer("/mcp", good), "disabled", "mcp.auth.methods")
	none := New(Config{TrustDomain: td, Methods: []Method{MethodAPIKey}, SVIDPathPrefix: "/agent/"}, newKeys(t).fsm)
	wantRefused(t, none, bearer("/mcp", "eyJhbGciOiJFUzI1NiJ9.e30.c2ln"), "unsupported", "JWT")
}

// TestBearerDispatch: with an OIDC provider and JWT-SVIDs both on, each
// token reaches its own verifier, by iss first and then by sub.
func TestBearerDispatch(t *testing.T) {
	f := newJWTFixture(t)
	p := newIDP(t)
	now := time.Now()
	a := New(Config{
		TrustDomain: td, Methods: []Method{MethodOIDC, MethodJWTSVID}, SVIDPathPrefix: "/agent/",
		OIDC:    &OIDCConfig{Issuer: testIssuer, JWKSURL: p.srv.URL, Audience: testAudience},
		JWTSVID: &JWTSVIDConfig{Audience: gatewayAud, Bundles: f.bundle},
	}, newKeys(t).fsm, WithClock(func() time.Time { return now }))
	oidcTok := p.token("k1", jwt.Claims{Expiry: jwt.NewNumericDate(now.Add(time.Hour))}, nil)
	svidTok := f.issue("spiffe://hr.example.corp/agent/x", []string{gatewayAud}, time.Minute, 0)
	for tok, m := range map[string]Method{oidcTok: MethodOIDC, svidTok: MethodJWTSVID} {
		got, err := a.Authenticate(bearer("/mcp", tok))
		if err != nil || got.Method != m {
			t.Errorf("%s token: %+v, %v", m, got, err)
		}
	}
	// The OIDC issuer's token with a SPIFFE sub is still an OIDC token.
	spiffeSub := p.token("k1", jwt.Claims{Subject: "spiffe://hr.example.corp/agent/x", Expiry: jwt.NewNumericDate(now.Add(time.Hour))}, nil)
	if got, err := a.Authenticate(bearer("/mcp", spiffeSub)); err != nil || got.Method != MethodOIDC || got.ID != "oidc:spiffe://hr.example.corp/agent/x" {
		t.Errorf("OIDC token with a SPIFFE sub: %+v, %v", got, err)
	}
	// Neither issuer nor SPIFFE sub: the OIDC verifier says what is wrong.
	wantRefused(t, a, bearer("/mcp", p.token("k1", jwt.Claims{Issuer: "https://evil.example"}, nil)), "wrong-issuer", "evil.example")
	// Only JWT-SVIDs on: a JWT that is not one is refused by that verifier.
	only := newJWTAuth(t, f)
	wantRefused(t, only, bearer("/mcp", oidcTok), "malformed", "not a SPIFFE ID")
}

// TestJWTSVIDCache: a token is verified once and then served from the
// cache until its exp; a cached token is refused as soon as its key leaves
// the bundle.
func TestJWTSVIDCache(t *testing.T) {
	f := newJWTFixture(t)
	now := time.Now()
	a := newJWTAuth(t, f, WithClock(func() time.Time { return now }))
	tok := f.issue("spiffe://hr.example.corp/agent/x", []string{gatewayAud}, 2*time.Minute, 0)
	for range 3 {
		if _, err := a.Authenticate(bearer("/mcp", tok)); err != nil {
			t.Fatal(err)
		}
	}
	if n := a.cache.len(); n != 1 {
		t.Fatalf("cache holds %d entries after three calls with one token, want 1", n)
	}
	// Past the token's exp the entry is gone (go-spiffe, on the system
	// clock, would then decide afresh).
	if _, ok := a.cache.get(sha256.Sum256([]byte(tok)), now.Add(3*time.Minute)); ok {
		t.Error("cache entry outlives the token's exp")
	}

	now = time.Now()
	tok2 := f.issue("spiffe://hr.example.corp/agent/y", []string{gatewayAud}, 2*time.Minute, 0)
	if _, err := a.Authenticate(bearer("/mcp", tok2)); err != nil {
		t.Fatal(err)
	}
	var kid string
	for k := range f.bundle.JWTAuthorities() {
		if k != "raw" {
			kid = k
		}
	}
	f.bundle.RemoveJWTAuthority(kid)
	wantRefused(t, a, bearer("/mcp", tok2), "unknown-key", kid)
}

func TestTokenCacheBounded(t *testing.T) {
	now := time.Now()
	c := newTokenCache(32)
	key := func(i int) [32]byte { return sha256.Sum256([]byte(fmt.Sprint(i))) }
	// Half of them expire in a minute, half in an hour.
	for i := range 32 {
		exp := now.Add(time.Minute)
		if i%2 == 1 {
			exp = now.Add(time.Hour)
		}
		c.put(key(i), verified{exp: exp}, now)
	}
	if c.len() != 32 {
		t.Fatalf("len = %d, want 32", c.len())
	}
	// Two minutes on, a new entry evicts the expired ones first.
	later := now.Add(2 * time.Minute)
	c.put(key(100), verified{exp: later.Add(time.Hour)}, later)
	if c.len() != 17 {
		t.Errorf("after evicting expired entries len = %d, want 16 live + 1 new", c.len())
	}
	for i := 1; i < 32; i += 2 {
		if _, ok := c.get(key(i), later); !ok {
			t.Errorf("live entry %d was evicted while expired ones were there", i)
		}
	}
	for i := range 1000 {
		c.put(key(1000+i), verified{exp: later.Add(time.Hour)}, later)
	}
	if n := c.len(); n > 32 {
		t.Errorf("len = %d after 1000 inserts, want at most 32", n)
	}
	// Already expired (accepted within a verifier's leeway): not kept.
	c.put(key(5000), verified{exp: later.Add(-time.Second)}, later)
	if _, ok := c.get(key(5000), later); ok {
		t.Error("an expired token was cached")
	}
}

// TestJWTSVIDRefusalAnswer: a refused JWT-SVID gets 401 with the Bearer
// challenge and a JSON-RPC -32001 body, is counted with its reason, and
// neither the answer nor the log repeats the token.
func TestJWTSVIDRefusalAnswer(t *testing.T) {
	f := newJWTFixture(t)
	var logs bytes.Buffer
	var outcomes []string
	a := newJWTAuth(t, f, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))), WithObserver(func(m Method, o string) {
		outcomes = append(outcomes, string(m)+"/"+o)
	}))
	h := a.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := FromContext(r.Context())
		w.Write([]byte(p.ID))
	}))
	good := f.issue("spiffe://hr.example.corp/agent/x", []string{gatewayAud}, time.Minute, 0)
	expired := f.issue("spiffe://hr.example.corp/agent/x", []string{gatewayAud}, time.Minute, -time.Hour)
	wrongAud := f.issue("spiffe://hr.example.corp/agent/x", []string{"spiffe://hr.example.corp/elsewhere"}, time.Minute, 0)
	for _, tc := range []struct {
		token  string
		status int
	}{{good, 200}, {good, 200}, {expired, 401}, {wrongAud, 401}} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, bearer("/mcp", tc.token))
		if rec.Code != tc.status {
			t.Fatalf("HTTP %d, want %d: %s", rec.Code, tc.status, rec.Body)
		}
		if tc.status == 200 {
			if rec.Body.String() != "spiffe://hr.example.corp/agent/x" {
				t.Errorf("principal reaching the handler = %q", rec.Body)
			}
			continue
		}
		var body struct {
			Error struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		json.Unmarshal(rec.Body.Bytes(), &body)
		challenge := rec.Header().Get("WWW-Authenticate")
		if body.Error.Code != CodeUnauthenticated || !strings.HasPrefix(challenge, `Bearer realm="mcpmesh"`) || !strings.Contains(challenge, `error="invalid_token"`) {
			t.Errorf("refusal: challenge %q body %s", challenge, rec.Body)
		}
		if strings.Contains(rec.Body.String()+challenge, strings.Split(tc.token, ".")[1]) {
			t.Error("the refusal repeats the token")
		}
	}
	if want := []string{"jwt-svid/ok", "jwt-svid/ok", "jwt-svid/expired", "jwt-svid/wrong-audience"}; !slices.Equal(outcomes, want) {
		t.Errorf("outcomes %v, want %v", outcomes, want)
	}
	for _, tok := range []string{good, expired, wrongAud} {
		if strings.Contains(logs.String(), strings.Split(tok, ".")[1]) {
			t.Fatalf("a token reached the log:\n%s", logs.String())
		}
	}
	if !strings.Contains(logs.String(), "reason=expired") {
		t.Errorf("the refusal was not logged:\n%s", logs.String())
	}
}

// BenchmarkJWTSVIDVerify compares authenticating a repeated JWT-SVID with
// the token cache (one signature check, then a hash and a map lookup) and
// without it (go-spiffe's full verification every time).
func BenchmarkJWTSVIDVerify(b *testing.B) {
	dir := b.TempDir()
	c, err := ca.Init(filepath.Join(dir, "ca"), td)
	if err != nil {
		b.Fatal(err)
	}
	tok, err := c.IssueJWTSVID(spiffeid.RequireFromString("spiffe://hr.example.corp/agent/x"), []string{gatewayAud}, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		size int
	}{{"cached", 0}, {"uncached", -1}} {
		b.Run(bc.name, func(b *testing.B) {
			a := New(Config{TrustDomain: td, Methods: []Method{MethodJWTSVID}, SVIDPathPrefix: "/agent/", TokenCacheSize: bc.size,
				JWTSVID: &JWTSVIDConfig{Audience: gatewayAud, Bundles: c.JWTBundle()}}, nil)
			r := bearer("/mcp", tok)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := a.Authenticate(r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
