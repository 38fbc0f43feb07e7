package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpmesh/mcpmesh/test/internal/testcluster"
)

// TestAgentOIDC: a node configured with the BU's OAuth provider serves its
// Protected Resource Metadata, points unauthenticated clients at it, takes
// the provider's access tokens for its own resource URI with the required
// scope, and refuses expired, foreign-audience and under-scoped ones.
func TestAgentOIDC(t *testing.T) {
	t.Parallel()
	idp := startIdP(t)
	up := startUpstream(t, "directory")

	c := testcluster.New(t, testcluster.Options{NoSync: true, Nodes: 1})
	n := c.Nodes[0]
	audience := n.URL() + "/mcp"
	c.Opts.ExtraYAML = fmt.Sprintf("mcp:\n  auth:\n    oidc:\n      issuer: %s\n      jwks_url: %s\n      audience: %s\n      required_scopes: [mcp:tools]\n", idpIssuer, idp.jwksURL, audience)
	n.WriteConfig("bootstrap:\n  expect: 1\n  peers:\n    - { id: n1, address: \"" + n.RaftAddr + "\" }\n")
	c.Start()
	c.Leader(leaderTimeout)
	c.WaitAllReady(leaderTimeout)
	mustCLI(t, c, c.Nodes[0], "apply", "-f", permitAll(t))
	mustCLI(t, c, n, "registry", "submit", "-f", writeCard(t, upstreamCard("corp.hr/directory", "1.0.0", up.URL)))
	mustCLI(t, c, n, "registry", "approve", "corp.hr/directory@1.0.0")

	sign := func(claims map[string]any) string { return idp.sign(t, claims) }
	claims := func(over map[string]any) map[string]any {
		m := map[string]any{"iss": idpIssuer, "aud": audience, "sub": "alice@corp.example", "tenant": "payroll",
			"scope": "openid mcp:tools", "exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix()}
		for k, v := range over {
			m[k] = v
		}
		return m
	}

	// Protected Resource Metadata, and the challenge pointing to it.
	prmURL := n.URL() + "/.well-known/oauth-protected-resource/mcp"
	code, body := get(t, prmURL, "")
	var prm struct {
		Resource             string   `json:"resource"`
		AuthorizationServers []string `json:"authorization_servers"`
		ScopesSupported      []string `json:"scopes_supported"`
	}
	if json.Unmarshal([]byte(body), &prm); code != http.StatusOK || prm.Resource != audience || len(prm.AuthorizationServers) != 1 || prm.AuthorizationServers[0] != idpIssuer || len(prm.ScopesSupported) != 1 {
		t.Errorf("GET %s = %d %s", prmURL, code, body)
	}
	resp, _ := rawPost(t, audience, nil, legacyInit)
	if ch := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(ch, `resource_metadata="`+prmURL+`"`) || !strings.Contains(ch, `scope="mcp:tools"`) {
		t.Errorf("no credential: HTTP %d, WWW-Authenticate %q", resp.StatusCode, ch)
	}

	// A valid token calls tools.
	var last string
	ok := testcluster.Eventually(catchUp, func() bool {
		s, err := tryConnect(t, audience, "2026-07-28", sign(claims(nil)))
		if err != nil {
			last = err.Error()
			return false
		}
		res, err := s.CallTool(t.Context(), &mcp.CallToolParams{Name: "hr.lookup", Arguments: map[string]any{"q": "oidc"}})
		if err != nil || res.IsError {
			last = fmt.Sprint(res, err)
			return false
		}
		return res.Content[0].(*mcp.TextContent).Text == "directory:oidc"
	})
	if !ok {
		t.Fatalf("a valid access token does not call hr.lookup; last: %s", last)
	}

	for _, tc := range []struct {
		name   string
		token  string
		status int
		want   string
	}{
		{"expired", sign(claims(map[string]any{"exp": time.Now().Add(-time.Hour).Unix()})), http.StatusUnauthorized, "expired"},
		{"not yet valid", sign(claims(map[string]any{"nbf": time.Now().Add(time.Hour).Unix()})), http.StatusUnauthorized, "not valid yet"},
		{"another resource", sign(claims(map[string]any{"aud": "https://finance-mcp.corp.example/mcp"})), http.StatusUnauthorized, "not for this resource"},
		{"another issuer", sign(claims(map[string]any{"iss": "https://evil.example"})), http.StatusUnauthorized, "issuer"},
		{"no scope", sign(claims(map[string]any{"scope": "openid"})), http.StatusForbidden, "insufficient_scope"},
	} {
		resp, body := rawPost(t, audience, map[string]string{"Authorization": "Bearer " + tc.token}, legacyInit)
		if resp.StatusCode != tc.status || !strings.Contains(resp.Header.Get("WWW-Authenticate")+body, tc.want) {
			t.Errorf("%s: HTTP %d, WWW-Authenticate %q, body %s; want %d mentioning %q", tc.name, resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body, tc.status, tc.want)
		}
	}
	if strings.Contains(n.Log(), strings.Split(sign(claims(nil)), ".")[0]+".") {
		// Headers are shared by every token of this key; a logged token would contain it.
		t.Error("the node's log contains an access token")
	}
}

// idpIssuer is the issuer of the tokens of startIdP's provider.
const idpIssuer = "https://idp.corp.example"

// testIdP is an OIDC provider for tests: an ES256 key, its key set served
// at jwksURL, and the tokens it signs.
type testIdP struct {
	jwksURL string
	signer  jose.Signer
}

func startIdP(t *testing.T) *testIdP {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "idp-1", Algorithm: "ES256", Use: "sig"}}})
	}))
	t.Cleanup(jwks.Close)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: "idp-1"}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	return &testIdP{jwksURL: jwks.URL, signer: signer}
}

// sign is a token with claims, signed by the provider's key.
func (p *testIdP) sign(t *testing.T, claims map[string]any) string {
	t.Helper()
	tok, err := jwt.Signed(p.signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
