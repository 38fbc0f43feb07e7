package adminauth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/mcpmesh/mcpmesh/trust/agentauth"
)

// TestOIDCAdmins: an OIDC access token for the admin API signs in a listed
// subject, or a member of a listed group, as "oidc:<sub>" (the identity
// of that person's agent too); other subjects, tokens for another
// audience and the bootstrap token's rules are unchanged.
func TestOIDCAdmins(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "idp-1", Algorithm: "ES256", Use: "sig"}}})
	}))
	t.Cleanup(jwks.Close)
	const issuer, audience = "https://idp.corp.example", "https://hr-mcp.corp.example/v1"
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: "idp-1"}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	sign := func(sub, aud string, groups ...string) string {
		tok, err := jwt.Signed(signer).Claims(map[string]any{"iss": issuer, "aud": aud, "sub": sub, "groups": groups,
			"exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix()}).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	v := agentauth.NewOIDCVerifier(agentauth.OIDCConfig{Issuer: issuer, JWKSURL: jwks.URL, Audience: audience})
	a, err := New(Config{TrustDomain: spiffeid.RequireTrustDomainFromString("hr.example.corp"), PathPrefix: "/admin/",
		OIDC: &OIDCAdmins{Verifier: v, Subjects: []string{"alice@corp.example"}, Groups: []string{"mesh-admins"}}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, token, wantID, wantErr string
	}{
		{"listed subject", sign("alice@corp.example", audience), "oidc:alice@corp.example", ""},
		{"listed group", sign("bob@corp.example", audience, "staff", "mesh-admins"), "oidc:bob@corp.example", ""},
		{"not an administrator", sign("eve@corp.example", audience, "staff"), "", "oidc:eve@corp.example is not an administrator"},
		{"agent token for /mcp", sign("alice@corp.example", "https://hr-mcp.corp.example/mcp"), "", "not for this resource"},
		{"no bootstrap token", "not-a-jwt-token-at-all", "", "no bootstrap token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/v1/approvals", nil)
			r.Header.Set("Authorization", "Bearer "+tc.token)
			p, err := a.Authenticate(r)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || p.ID != tc.wantID || p.Method != "oidc" {
				t.Fatalf("got %+v, %v; want %s", p, err, tc.wantID)
			}
		})
	}
}
