package assertion

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
)

// FuzzVerify: Verify never panics on any string, and refuses every token
// that was not minted valid, each with one of the package's refusals.
func FuzzVerify(f *testing.F) {
	ms := newMesh(f)
	now := t0
	m := newTestMinter(f, ms.hr, hrNode, &now)
	enc := base64.RawURLEncoding
	tok := mustMint(f, m, financeTD, aliceCall)
	parts := strings.Split(tok, ".")
	f.Add(mustMint(f, m, salesTD, aliceCall)) // another audience
	f.Add(parts[0] + "." + parts[1] + ".")
	f.Add(parts[0] + "." + parts[1] + "." + enc.EncodeToString(make([]byte, 64)))
	f.Add(enc.EncodeToString([]byte(`{"alg":"none"}`)) + "." + parts[1] + ".")
	f.Add(enc.EncodeToString([]byte(`{"alg":"ES256","kid":"x","typ":"JWT","jwk":{}}`)) + "." + parts[1] + "." + parts[2])
	f.Add(parts[0] + "." + enc.EncodeToString([]byte(`{"iss":"spiffe://hr.example.corp/mcpmesh/node/hr-1"}`)) + "." + parts[2])
	f.Add("")
	f.Add("..")
	f.Add(strings.Repeat(".", 100))
	f.Add(`{"payload":"e30","signatures":[]}`)
	v := newTestVerifier(f, ms.bundles, finNode)
	f.Fuzz(func(t *testing.T, token string) {
		c, err := v.Verify(token, hrNode, now)
		if err == nil {
			t.Fatalf("accepted a token that was never minted valid: %q -> %+v", token, c)
		}
		if ReasonOf(err) == "" {
			t.Fatalf("refusal %v wraps no Refusal", err)
		}
	})
}

// FuzzClaims: decoding and checking any payload never panics, and claims
// that pass hold what the receiving BU relies on.
func FuzzClaims(f *testing.F) {
	ms := newMesh(f)
	now := t0
	m := newTestMinter(f, ms.hr, hrNode, &now)
	good, _ := json.Marshal(wireFor(m, financeTD, aliceCall, now))
	f.Add(good)
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"iss":"spiffe://hr.example.corp/mcpmesh/node/hr-1","act":{"sub":"spiffe://hr.example.corp/mcpmesh/node/hr-1"},"aud":["spiffe://finance.example.corp/mcpmesh/gateway"],"sub":"spiffe://finance.example.corp/x","iat":1,"exp":2.5e9,"jti":"j","io.mcpmesh/call":{"tool":"t","request_id":"r"}}`))
	f.Add([]byte(`{"aud":"spiffe://finance.example.corp/mcpmesh/gateway","iat":"x"}`))
	v := newTestVerifier(f, ms.bundles, finNode)
	f.Fuzz(func(t *testing.T, payload []byte) {
		w, err := decodeClaims(payload)
		if err != nil {
			return
		}
		c, err := v.check(w, hrNode, now)
		if err != nil {
			if ReasonOf(err) == "" {
				t.Fatalf("refusal %v wraps no Refusal", err)
			}
			return
		}
		life := c.Expiry.Sub(c.IssuedAt)
		switch {
		case c.Issuer != hrNode:
			t.Fatalf("accepted issuer %s from peer %s", c.Issuer, hrNode)
		case c.Audience != GatewayID(financeTD):
			t.Fatalf("accepted audience %s", c.Audience)
		case life <= 0 || life > MaxTTL, now.After(c.Expiry.Add(DefaultLeeway)), c.NotBefore.After(now.Add(DefaultLeeway)):
			t.Fatalf("accepted validity %s..%s at %s", c.NotBefore, c.Expiry, now)
		case c.Subject == "" || c.Tool == "" || c.ID == "" || c.RequestID == "":
			t.Fatalf("accepted empty required claims: %+v", c)
		case len(c.Groups) > MaxGroups || len(c.Scopes) > MaxScopes:
			t.Fatalf("accepted %d groups, %d scopes", len(c.Groups), len(c.Scopes))
		}
		p := PrincipalOf(c)
		if !strings.HasPrefix(p.ID, "spiffe://hr.example.corp/") && !strings.HasPrefix(p.ID, "hr.example.corp/") {
			t.Fatalf("principal %q is not qualified by the caller's trust domain", p.ID)
		}
	})
}

// FuzzVerifyX5C: Verify with X.509 bundles never panics on any string,
// refuses every token not minted valid, each with one of the package's
// refusals, and accepts an x5c assertion only from its leaf's own node.
func FuzzVerifyX5C(f *testing.F) {
	s := newSpireMesh(f)
	now := t0
	good := svidOf(f, s.hr, hrNode)
	m := newSVIDMinter(f, good, hrNode, &now)
	tok := mustMint(f, m, financeTD, aliceCall)
	parts := strings.Split(tok, ".")
	enc := base64.RawURLEncoding
	leaf := base64.StdEncoding.EncodeToString(good.Certificates[0].Raw)
	f.Add(mustMint(f, newSVIDMinter(f, svidOf(f, s.rogue, hrNode), hrNode, &now), financeTD, aliceCall))
	f.Add(mustMint(f, m, salesTD, aliceCall))
	f.Add(parts[0] + "." + parts[1] + ".")
	f.Add(parts[0] + "." + parts[1] + "." + enc.EncodeToString(make([]byte, 64)))
	f.Add(enc.EncodeToString([]byte(`{"alg":"RS256","typ":"JWT","x5c":["`+leaf+`"]}`)) + "." + parts[1] + "." + parts[2])
	f.Add(enc.EncodeToString([]byte(`{"alg":"ES256","typ":"JWT","x5c":["`+leaf+`","`+leaf+`"]}`)) + "." + parts[1] + "." + parts[2])
	f.Add(enc.EncodeToString([]byte(`{"alg":"ES256","typ":"JWT","x5c":[""]}`)) + "." + parts[1] + "." + parts[2])
	f.Add(enc.EncodeToString([]byte(`{"alg":"ES256","typ":"JWT","x5c":[1]}`)) + "." + parts[1] + "." + parts[2])
	v := newX5CVerifier(f, s.set)
	// One valid token is spent first, so that the fuzzer starts from a
	// warm cache (and the valid seed itself is then a replay).
	if _, err := v.Verify(tok, hrNode, now); err != nil {
		f.Fatal(err)
	}
	f.Add(tok)
	f.Fuzz(func(t *testing.T, token string) {
		c, err := v.Verify(token, hrNode, now)
		if err == nil {
			t.Fatalf("accepted a token that was never minted valid: %q -> %+v", token, c)
		}
		if ReasonOf(err) == "" {
			t.Fatalf("refusal %v wraps no Refusal", err)
		}
	})
}
