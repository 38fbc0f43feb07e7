package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
)

const testAud = "spiffe://hr.example.corp/mcpmesh/gateway"

func TestIssueJWTSVID(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	c := mustInit(t, dir, hrTD, fixedClock(time.Now()))
	id := spiffeid.RequireFromPath(hrTD, "/agent/payroll/exporter")

	token, err := c.IssueJWTSVID(id, []string{testAud, "other"}, 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	// A valid JWT-SVID by go-spiffe's rules, verified with the CA's bundle.
	s, err := jwtsvid.ParseAndValidate(token, c.JWTBundle(), []string{testAud})
	if err != nil {
		t.Fatalf("ParseAndValidate: %v", err)
	}
	if s.ID != id || len(s.Audience) != 2 || time.Until(s.Expiry) > 5*time.Minute || time.Until(s.Expiry) < 4*time.Minute {
		t.Errorf("JWT-SVID = %v aud %v exp %v", s.ID, s.Audience, s.Expiry)
	}
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	if h := tok.Headers[0]; h.KeyID == "" || h.ExtraHeaders[jose.HeaderType] != "JWT" {
		t.Errorf("header = kid %q typ %v; want a key id and typ JWT", h.KeyID, h.ExtraHeaders[jose.HeaderType])
	}

	// The signing key is derived from the CA key: the same CA loaded again
	// verifies it; another CA of the same trust domain does not.
	again, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jwtsvid.ParseAndValidate(token, again.JWTBundle(), []string{testAud}); err != nil {
		t.Errorf("the reloaded CA's bundle does not verify the token: %v", err)
	}
	other := mustInit(t, filepath.Join(t.TempDir(), "ca"), hrTD)
	if _, err := jwtsvid.ParseAndValidate(token, other.JWTBundle(), []string{testAud}); err == nil {
		t.Error("another CA's bundle verifies the token")
	}
	// The JWT key is not the X.509 root key.
	if c.jwt.priv.PublicKey.Equal(c.cert.PublicKey) {
		t.Error("JWT-SVIDs are signed with the root certificate's key")
	}
	if _, err := jwtsvid.ParseAndValidate(token, c.JWTBundle(), []string{"spiffe://hr.example.corp/elsewhere"}); err == nil {
		t.Error("the token is accepted for an audience it does not name")
	}
}

func TestIssueJWTSVIDCappedAtCAExpiry(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	created := mustInit(t, dir, hrTD, fixedClock(t0))
	caEnd := created.Bundle().X509Authorities()[0].NotAfter
	c, err := Load(dir, fixedClock(caEnd.Add(-30*time.Minute)))
	if err != nil {
		t.Fatal(err)
	}
	token, err := c.IssueJWTSVID(spiffeid.RequireFromPath(hrTD, "/agent/x"), []string{testAud}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	var cl jwt.Claims
	if err := tok.Claims(&created.jwt.priv.PublicKey, &cl); err != nil {
		t.Fatal(err)
	}
	if !cl.Expiry.Time().Equal(caEnd.Truncate(time.Second)) {
		t.Errorf("exp = %v, want the CA's expiry %v", cl.Expiry.Time(), caEnd)
	}
}

func TestIssueJWTSVIDErrors(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	created := mustInit(t, dir, hrTD, fixedClock(t0))
	caEnd := created.Bundle().X509Authorities()[0].NotAfter
	expired, err := Load(dir, fixedClock(caEnd.Add(time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	agent := spiffeid.RequireFromPath(hrTD, "/agent/x")
	tests := []struct {
		name string
		ca   *CA
		id   spiffeid.ID
		aud  []string
		ttl  time.Duration
		want string
	}{
		{"foreign trust domain", created, spiffeid.RequireFromPath(financeTD, "/agent/x"), []string{testAud}, time.Minute, `not in trust domain "hr.example.corp"`},
		{"empty ID", created, spiffeid.ID{}, []string{testAud}, time.Minute, "SPIFFE ID is empty"},
		{"trust domain ID", created, hrTD.ID(), []string{testAud}, time.Minute, "names a trust domain"},
		{"no audience", created, agent, nil, time.Minute, "name the audience"},
		{"empty audience", created, agent, []string{""}, time.Minute, "name the audience"},
		{"zero ttl", created, agent, []string{testAud}, 0, "not positive"},
		{"expired CA", expired, agent, []string{testAud}, time.Minute, "expired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.ca.IssueJWTSVID(tt.id, tt.aud, tt.ttl)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// TestAuditKey: every process that loads a BU's CA derives the same audit
// key, another CA a different one, and the key is neither the JWT signing
// key nor the CA key.
func TestAuditKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	c := mustInit(t, dir, hrTD, fixedClock(time.Now()))
	k1, err := c.AuditKey()
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := loaded.AuditKey()
	if err != nil {
		t.Fatal(err)
	}
	if len(k1) != 32 || string(k1) != string(k2) {
		t.Fatalf("audit key of the same CA differs between loads (%d and %d bytes)", len(k1), len(k2))
	}
	other := mustInit(t, filepath.Join(t.TempDir(), "ca"), hrTD, fixedClock(time.Now()))
	k3, err := other.AuditKey()
	if err != nil {
		t.Fatal(err)
	}
	if string(k1) == string(k3) {
		t.Error("two CAs derive the same audit key")
	}
	if d := c.jwt.priv.D.Bytes(); string(d) == string(k1) {
		t.Error("the audit key is the JWT signing key")
	}
}

func TestJWTSigner(t *testing.T) {
	c := mustInit(t, filepath.Join(t.TempDir(), "ca"), hrTD)
	kid, signer := c.JWTSigner()
	pub, ok := c.JWTBundle().FindJWTAuthority(kid)
	if !ok {
		t.Fatalf("JWTBundle has no key %q, the key id JWTSigner names", kid)
	}
	if !signer.Public().(*ecdsa.PublicKey).Equal(pub) {
		t.Fatal("JWTSigner's public key is not the one JWTBundle publishes under its key id")
	}
	if _, leaked := signer.(*ecdsa.PrivateKey); leaked {
		t.Fatal("JWTSigner hands out the private key itself")
	}
	digest := sha256.Sum256([]byte("payload"))
	sig, err := signer.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if !ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), digest[:], sig) {
		t.Fatal("a signature by JWTSigner does not verify with the bundle's key")
	}
}
