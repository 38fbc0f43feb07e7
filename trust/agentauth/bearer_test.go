package agentauth

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
)

// FuzzBearer feeds arbitrary Authorization headers through Authenticate on
// a node that takes API keys, OIDC access tokens and JWT-SVIDs. Whatever
// the header, the answer is a principal of an agent of the trust domain or
// a refusal with a reason and a message, and a refusal never repeats the
// token.
func FuzzBearer(f *testing.F) {
	fx := newJWTFixture(f)
	p := newIDP(f)
	k := newKeys(f)
	a := New(Config{
		TrustDomain: td, Methods: []Method{MethodAPIKey, MethodOIDC, MethodJWTSVID}, SVIDPathPrefix: "/agent/",
		OIDC:    &OIDCConfig{Issuer: testIssuer, JWKSURL: p.srv.URL, Audience: testAudience},
		JWTSVID: &JWTSVIDConfig{Audience: gatewayAud, Bundles: fx.bundle},
	}, k.fsm)
	good := fx.issue("spiffe://hr.example.corp/agent/x", []string{gatewayAud}, time.Hour, 0)
	for _, seed := range []string{
		"Bearer " + good,
		"Bearer " + fx.issue("spiffe://hr.example.corp/agent/x", []string{gatewayAud}, time.Minute, -time.Hour),
		"Bearer " + fx.issue("spiffe://finance.example.corp/agent/x", []string{gatewayAud}, time.Minute, 0),
		"Bearer " + p.token("k1", jwt.Claims{Expiry: jwt.NewNumericDate(time.Now().Add(time.Hour))}, nil),
		"Bearer " + k.good.Secret,
		"Bearer mcpk_short",
		"bearer " + good[:len(good)-3],
		"Bearer eyJhbGciOiJFUzI1NiJ9.e30.c2ln",
		"Basic YWxpY2U6c2VjcmV0",
		"Bearer ",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, header string) {
		r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
		r.Header.Set("Authorization", header)
		pr, err := a.Authenticate(r)
		if err == nil {
			if pr.ID == "" || pr.TrustDomain != td.Name() {
				t.Fatalf("accepted %q as %+v", header, pr)
			}
			if pr.Method == MethodJWTSVID && !strings.HasPrefix(pr.ID, "spiffe://hr.example.corp/agent/") {
				t.Fatalf("accepted a JWT-SVID of a non-agent: %+v", pr)
			}
			return
		}
		var ae *Error
		if !errors.As(err, &ae) || ae.Reason == "" || ae.Message == "" {
			t.Fatalf("refusal of %q is not a complete *Error: %#v", header, err)
		}
		_, tok, _ := strings.Cut(header, " ")
		if tok = strings.TrimSpace(tok); len(tok) >= 24 && strings.Contains(ae.Message, tok) {
			t.Fatalf("the refusal repeats the token: %s", ae.Message)
		}
	})
}
