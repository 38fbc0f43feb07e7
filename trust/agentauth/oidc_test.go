package agentauth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

const (
	testIssuer   = "https://idp.corp.example"
	testAudience = "https://hr-mcp.corp.example/mcp"
)

// idp is an identity provider in the test: signing keys by id, and a JWKS
// endpoint serving the public halves of those it publishes.
type idp struct {
	t       testing.TB
	mu      sync.Mutex
	keys    map[string]*ecdsa.PrivateKey
	publish []string
	fetches atomic.Int32
	srv     *httptest.Server
}

func newIDP(t testing.TB, kids ...string) *idp {
	p := &idp{t: t, keys: map[string]*ecdsa.PrivateKey{}}
	for _, kid := range append([]string{"k1", "k2", "rogue"}, kids...) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		p.keys[kid] = k
	}
	p.publish = []string{"k1"}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.fetches.Add(1)
		p.mu.Lock()
		defer p.mu.Unlock()
		var set jose.JSONWebKeySet
		for _, kid := range p.publish {
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: &p.keys[kid].PublicKey, KeyID: kid, Algorithm: "ES256", Use: "sig"})
		}
		json.NewEncoder(w).Encode(set)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *idp) setPublished(kids ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.publish = kids
}

// token signs claims with key kid; std's zero fields get defaults (valid
// for an hour from t0, our issuer and audience, subject alice).
func (p *idp) token(kid string, std jwt.Claims, extra map[string]any) string {
	p.t.Helper()
	if std.Issuer == "" {
		std.Issuer = testIssuer
	}
	if std.Audience == nil {
		std.Audience = jwt.Audience{testAudience}
	}
	if std.Subject == "" {
		std.Subject = "alice@corp.example"
	}
	if std.Expiry == nil {
		std.Expiry = jwt.NewNumericDate(t0.Add(time.Hour))
	}
	claims := map[string]any{}
	for k, v := range extra {
		claims[k] = v
	}
	b, _ := json.Marshal(std)
	json.Unmarshal(b, &claims)
	return p.sign(kid, claims)
}

// sign signs exactly the given claims with key kid.
func (p *idp) sign(kid string, claims map[string]any) string {
	p.t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: p.keys[kid], KeyID: kid}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		p.t.Fatal(err)
	}
	tok, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		p.t.Fatal(err)
	}
	return tok
}

func newOIDCAuth(t *testing.T, p *idp, now *time.Time, scopes ...string) *Authenticator {
	t.Helper()
	k := newKeys(t)
	return New(Config{
		TrustDomain: td, Methods: []Method{MethodAPIKey, MethodOIDC}, SVIDPathPrefix: "/agent/",
		OIDC:                &OIDCConfig{Issuer: testIssuer, JWKSURL: p.srv.URL, Audience: testAudience, RequiredScopes: scopes},
		ResourceMetadataURL: "https://hr-mcp.corp.example/.well-known/oauth-protected-resource/mcp",
	}, k.fsm, WithClock(func() time.Time { return *now }))
}

func TestOIDCTokens(t *testing.T) {
	p := newIDP(t)
	now := t0
	a := newOIDCAuth(t, p, &now)
	good := p.token("k1", jwt.Claims{}, map[string]any{"tenant": "payroll", "groups": []string{"hr-agents"}, "scope": "mcp:tools openid"})
	got, err := a.Authenticate(bearer("/mcp", good))
	if err != nil {
		t.Fatal(err)
	}
	want := Principal{ID: "oidc:alice@corp.example", TrustDomain: td.Name(), Tenant: "payroll", Groups: []string{"hr-agents"}, Scopes: []string{"mcp:tools", "openid"}, Method: MethodOIDC}
	if !equal(got, want) {
		t.Fatalf("principal = %+v, want %+v", got, want)
	}
	scp := p.token("k1", jwt.Claims{}, map[string]any{"scp": []string{"a", "b"}})
	if got, err := a.Authenticate(bearer("/mcp", scp)); err != nil || !slices.Equal(got.Scopes, []string{"a", "b"}) {
		t.Errorf("scp claim: %+v, %v", got, err)
	}

	sig := strings.Split(good, ".")
	tampered := sig[0] + "." + sig[1] + "." + strings.Map(func(r rune) rune {
		if r == 'A' {
			return 'B'
		}
		return 'A'
	}, sig[2])
	forgedClaims := sig[0] + "." + jwtPart(t, map[string]any{"iss": testIssuer, "aud": testAudience, "sub": "mallory", "exp": t0.Add(time.Hour).Unix()}) + "." + sig[2]
	hs, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte("0123456789abcdef0123456789abcdef")}, (&jose.SignerOptions{}).WithHeader("kid", "k1"))
	hmac, _ := jwt.Signed(hs).Claims(jwt.Claims{Issuer: testIssuer, Audience: jwt.Audience{testAudience}, Subject: "x", Expiry: jwt.NewNumericDate(t0.Add(time.Hour))}).Serialize()
	for _, tc := range []struct{ name, token, reason, substr string }{
		{"expired", p.token("k1", jwt.Claims{Expiry: jwt.NewNumericDate(t0.Add(-time.Minute))}, nil), "expired", "expired"},
		{"not yet valid", p.token("k1", jwt.Claims{NotBefore: jwt.NewNumericDate(t0.Add(time.Hour))}, nil), "not-yet-valid", "not valid yet"},
		{"wrong audience", p.token("k1", jwt.Claims{Audience: jwt.Audience{"https://finance-mcp.corp.example/mcp"}}, nil), "wrong-audience", testAudience},
		{"wrong issuer", p.token("k1", jwt.Claims{Issuer: "https://evil.example"}, nil), "wrong-issuer", "evil.example"},
		{"unknown key", p.token("rogue", jwt.Claims{}, nil), "unknown-key", `"rogue"`},
		{"tampered signature", tampered, "bad-signature", "does not verify"},
		{"changed claims", forgedClaims, "bad-signature", "does not verify"},
		{"HMAC", hmac, "malformed", "accepted algorithm"},
		{"not a JWT", "eyJhbGciOiJFUzI1NiJ9.e30", "malformed", "not a signed JWT"},
		{"no expiry", p.sign("k1", map[string]any{"iss": testIssuer, "aud": testAudience, "sub": "x"}), "invalid", "exp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantRefused(t, a, bearer("/mcp", tc.token), tc.reason, tc.substr)
		})
	}
	// Within the leeway an expired token still passes; past it, not.
	edge := p.token("k1", jwt.Claims{Expiry: jwt.NewNumericDate(t0.Add(-10 * time.Second))}, nil)
	if _, err := a.Authenticate(bearer("/mcp", edge)); err != nil {
		t.Errorf("token expired 10s ago (leeway 30s): %v", err)
	}
}

func jwtPart(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func TestOIDCKeyRotation(t *testing.T) {
	p := newIDP(t)
	now := t0
	a := newOIDCAuth(t, p, &now)
	if _, err := a.Authenticate(bearer("/mcp", p.token("k1", jwt.Claims{}, nil))); err != nil {
		t.Fatal(err)
	}
	// The provider rotates to k2: a token signed with it is accepted once
	// the minimum refresh interval has passed, without a restart.
	p.setPublished("k1", "k2")
	now = now.Add(11 * time.Second)
	if _, err := a.Authenticate(bearer("/mcp", p.token("k2", jwt.Claims{}, nil))); err != nil {
		t.Fatalf("token of the rotated-in key: %v", err)
	}
	// Unknown key ids cannot make the node fetch more than once per
	// minimum refresh interval.
	before := p.fetches.Load()
	for range 50 {
		wantRefused(t, a, bearer("/mcp", p.token("rogue", jwt.Claims{}, nil)), "unknown-key", "rogue")
	}
	if n := p.fetches.Load() - before; n > 1 {
		t.Errorf("50 tokens with an unknown kid caused %d key-set fetches within 10s, want at most 1", n)
	}
	// k1 withdrawn: refused once the key set is refreshed (every 5m).
	p.setPublished("k2")
	now = now.Add(6 * time.Minute)
	wantRefused(t, a, bearer("/mcp", p.token("k1", jwt.Claims{Expiry: jwt.NewNumericDate(now.Add(time.Hour))}, nil)), "unknown-key", "k1")
}

func TestOIDCChallenges(t *testing.T) {
	p := newIDP(t)
	now := t0
	a := newOIDCAuth(t, p, &now, "mcp:tools")
	h := a.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	for _, tc := range []struct {
		name   string
		token  string
		status int
		want   []string
	}{
		{"missing", "", http.StatusUnauthorized, []string{`resource_metadata="https://hr-mcp.corp.example/.well-known/oauth-protected-resource/mcp"`, `scope="mcp:tools"`}},
		{"expired", p.token("k1", jwt.Claims{Expiry: jwt.NewNumericDate(t0.Add(-time.Hour))}, map[string]any{"scope": "mcp:tools"}), http.StatusUnauthorized, []string{`error="invalid_token"`, "resource_metadata="}},
		{"no scope", p.token("k1", jwt.Claims{}, map[string]any{"scope": "openid"}), http.StatusForbidden, []string{`error="insufficient_scope"`, `scope="mcp:tools"`, "resource_metadata="}},
		{"with scope", p.token("k1", jwt.Claims{}, map[string]any{"scope": "openid mcp:tools"}), http.StatusOK, nil},
	} {
		req := httptest.NewRequest(http.MethodPost, "/mcp", nil)
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		challenge := rec.Header().Get("WWW-Authenticate")
		if rec.Code != tc.status {
			t.Errorf("%s: HTTP %d, want %d (%s)", tc.name, rec.Code, tc.status, rec.Body)
		}
		for _, w := range tc.want {
			if !strings.Contains(challenge, w) {
				t.Errorf("%s: WWW-Authenticate %q lacks %s", tc.name, challenge, w)
			}
		}
		if tc.token != "" && strings.Contains(rec.Body.String()+challenge, strings.Split(tc.token, ".")[2]) {
			t.Errorf("%s: the answer repeats the token", tc.name)
		}
	}
}
