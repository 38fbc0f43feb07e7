package assertion

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/mcpmesh/mcpmesh/trust/bundles"
	"github.com/mcpmesh/mcpmesh/trust/ca"
)

// spireMesh is hr on "SPIRE" (a CA whose SVIDs sign the assertions, as a
// SPIRE server's would) and finance verifying with a real bundles.Set.
type spireMesh struct {
	hr, rogue, finance *ca.CA
	set                *bundles.Set
}

// newSpireMesh makes hr's and finance's CAs and a rogue CA that also
// claims hr's trust domain, all valid at t0, and finance's bundle set
// trusting finance and hr.
func newSpireMesh(t testing.TB) *spireMesh {
	t.Helper()
	clock := ca.WithClock(func() time.Time { return t0.Add(-time.Hour) })
	s := &spireMesh{}
	for _, x := range []struct {
		c    **ca.CA
		td   spiffeid.TrustDomain
		name string
	}{{&s.hr, hrTD, "hr"}, {&s.rogue, hrTD, "rogue"}, {&s.finance, financeTD, "finance"}} {
		c, err := ca.Init(filepath.Join(t.TempDir(), x.name), x.td, clock)
		if err != nil {
			t.Fatal(err)
		}
		*x.c = c
	}
	own := spiffebundle.FromX509Bundle(s.finance.Bundle())
	set, err := bundles.NewSet(own, []*spiffebundle.Bundle{spiffebundle.FromX509Bundle(s.hr.Bundle())})
	if err != nil {
		t.Fatal(err)
	}
	s.set = set
	return s
}

// svid issues an SVID for id from c, valid for two hours around t0.
func svidOf(t testing.TB, c *ca.CA, id spiffeid.ID) *x509svid.SVID {
	t.Helper()
	s, err := c.IssueX509SVID(id, 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// rotatingSource is an x509svid.Source whose SVID a test replaces, as
// SPIRE rotates it.
type rotatingSource struct{ cur atomic.Pointer[x509svid.SVID] }

func (r *rotatingSource) GetX509SVID() (*x509svid.SVID, error) { return r.cur.Load(), nil }

func newSVIDMinter(t testing.TB, src x509svid.Source, node spiffeid.ID, now *time.Time) *Minter {
	t.Helper()
	m, err := NewMinter(MinterConfig{Node: node, SVID: src}, WithClock(func() time.Time { return *now }))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func newX5CVerifier(t testing.TB, set *bundles.Set) *Verifier {
	t.Helper()
	v, err := NewVerifier(VerifierConfig{TrustDomain: financeTD, Node: finNode, Bundles: set, X509Bundles: set})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// headerOf decodes a token's protected header.
func headerOf(t testing.TB, tok string) map[string]any {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]any
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatal(err)
	}
	return h
}

// TestX5CRoundTrip: a node on SPIRE signs with its X.509-SVID and carries
// the leaf in x5c; go-jose reads the same signature; finance accepts it
// with the same claims as the kid form, and a warm call uses the cached
// chain.
func TestX5CRoundTrip(t *testing.T) {
	s := newSpireMesh(t)
	now := t0
	sv := svidOf(t, s.hr, hrNode)
	m := newSVIDMinter(t, sv, hrNode, &now)
	v := newX5CVerifier(t, s.set)
	tok := mustMint(t, m, financeTD, aliceCall)

	h := headerOf(t, tok)
	want := map[string]any{"alg": "ES256", "typ": "JWT", "x5c": []any{base64.StdEncoding.EncodeToString(sv.Certificates[0].Raw)}}
	if diff := cmp.Diff(want, h); diff != "" {
		t.Errorf("header (-want +got):\n%s", diff)
	}
	jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jws.Verify(sv.Certificates[0].PublicKey); err != nil {
		t.Errorf("go-jose does not verify the x5c assertion with the leaf's key: %v", err)
	}

	c, err := v.Verify(tok, hrNode, now.Add(time.Second))
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if c.Issuer != hrNode || c.Subject != "oidc:alice" || c.Tool != aliceCall.Tool || c.Tenant != "acme" {
		t.Errorf("claims %+v", c)
	}
	if n := v.leaves.len(); n != 1 {
		t.Fatalf("%d cached chains after one verification; want 1", n)
	}
	for i := range 3 {
		if _, err := v.Verify(mustMint(t, m, financeTD, aliceCall), hrNode, now.Add(time.Second)); err != nil {
			t.Fatalf("warm call %d: %v", i, err)
		}
	}
	if n := v.leaves.len(); n != 1 {
		t.Errorf("%d cached chains after four assertions of one SVID; want 1", n)
	}
	// The replay cache holds for the x5c form as for the kid form.
	if _, err := v.Verify(tok, hrNode, now.Add(time.Second)); !errors.Is(err, ErrReplayed) {
		t.Errorf("replayed x5c assertion: %v; want ErrReplayed", err)
	}
}

// TestX5CRotation: after SPIRE rotates the node's SVID the minter signs
// with the new one at once, and both the assertions already minted and
// the new ones verify.
func TestX5CRotation(t *testing.T) {
	s := newSpireMesh(t)
	now := t0
	src := &rotatingSource{}
	src.cur.Store(svidOf(t, s.hr, hrNode))
	m := newSVIDMinter(t, src, hrNode, &now)
	v := newX5CVerifier(t, s.set)
	before := mustMint(t, m, financeTD, aliceCall)
	rotated := svidOf(t, s.hr, hrNode)
	src.cur.Store(rotated)
	after := mustMint(t, m, financeTD, aliceCall)
	if got, want := headerOf(t, after)["x5c"].([]any)[0], base64.StdEncoding.EncodeToString(rotated.Certificates[0].Raw); got != want {
		t.Fatal("the minter still carries the old SVID after the rotation")
	}
	for name, tok := range map[string]string{"before": before, "after": after} {
		if _, err := v.Verify(tok, hrNode, now); err != nil {
			t.Errorf("assertion minted %s the rotation: %v", name, err)
		}
	}
}

// TestX5CBundleChange: a cached chain stands only while the bundle set is
// unchanged: when hr is revoked (dropped from the set), the next assertion
// with the same SVID is refused.
func TestX5CBundleChange(t *testing.T) {
	s := newSpireMesh(t)
	now := t0
	m := newSVIDMinter(t, svidOf(t, s.hr, hrNode), hrNode, &now)
	v := newX5CVerifier(t, s.set)
	if _, err := v.Verify(mustMint(t, m, financeTD, aliceCall), hrNode, now); err != nil {
		t.Fatal(err)
	}
	if err := s.set.Replace(spiffebundle.FromX509Bundle(s.finance.Bundle()), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(mustMint(t, m, financeTD, aliceCall), hrNode, now); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("after hr's bundle was dropped: %v; want ErrUnknownKey", err)
	}
	// And the chain's own validity bounds the cache: past the SVID's
	// expiry the same header is checked again, and refused.
	if err := s.set.Replace(spiffebundle.FromX509Bundle(s.finance.Bundle()), []*spiffebundle.Bundle{spiffebundle.FromX509Bundle(s.hr.Bundle())}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(mustMint(t, m, financeTD, aliceCall), hrNode, now); err != nil {
		t.Fatalf("hr trusted again: %v", err)
	}
	late := t0.Add(3 * time.Hour)
	now = late
	if _, err := v.Verify(mustMint(t, m, financeTD, aliceCall), hrNode, late); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("with an expired SVID: %v; want ErrUnknownKey", err)
	}
}

// TestX5CRSA: an RSA SVID with an intermediate (SPIRE with rsa-2048
// workload keys under an upstream authority) signs RS256, carries leaf and
// intermediate, and verifies; RS256 is refused in the kid form and with
// an EC leaf.
func TestX5CRSA(t *testing.T) {
	s := newSpireMesh(t)
	root, rootKey := testCert(t, nil, nil, spiffeid.ID{}, ecKey(t), true)
	inter, interKey := testCert(t, root, rootKey, spiffeid.ID{}, ecKey(t), true)
	rkey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := testCert(t, inter, interKey, hrNode, rkey, false)
	set, err := bundles.NewSet(spiffebundle.FromX509Bundle(s.finance.Bundle()),
		[]*spiffebundle.Bundle{spiffebundle.FromX509Bundle(x509bundle.FromX509Authorities(hrTD, []*x509.Certificate{root}))})
	if err != nil {
		t.Fatal(err)
	}
	now := t0
	m := newSVIDMinter(t, &x509svid.SVID{ID: hrNode, Certificates: []*x509.Certificate{leaf, inter}, PrivateKey: rkey}, hrNode, &now)
	tok := mustMint(t, m, financeTD, aliceCall)
	h := headerOf(t, tok)
	if h["alg"] != "RS256" || len(h["x5c"].([]any)) != 2 {
		t.Fatalf("header %v; want alg RS256 and two certificates", h)
	}
	jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jws.Verify(&rkey.PublicKey); err != nil {
		t.Errorf("go-jose does not verify the RS256 assertion: %v", err)
	}
	v := newX5CVerifier(t, set)
	if _, err := v.Verify(tok, hrNode, now); err != nil {
		t.Fatalf("RS256 x5c assertion: %v", err)
	}

	// alg RS256 over an EC leaf, and ES256 over the RSA leaf.
	ec := svidOf(t, s.hr, hrNode)
	payload := strings.Split(tok, ".")[1]
	for name, x := range map[string]struct {
		alg   string
		certs []*x509.Certificate
		key   crypto.Signer
		set   *bundles.Set
	}{
		"RS256 with an EC leaf":  {"RS256", ec.Certificates, ec.PrivateKey, s.set},
		"ES256 with an RSA leaf": {"ES256", []*x509.Certificate{leaf, inter}, rkey, set},
	} {
		var x5c []string
		for _, c := range x.certs {
			x5c = append(x5c, base64.StdEncoding.EncodeToString(c.Raw))
		}
		hdr := `{"alg":"` + x.alg + `","typ":"JWT","x5c":["` + strings.Join(x5c, `","`) + `"]}`
		tok := signWith(t, x.key, hdr, payload)
		if _, err := newX5CVerifier(t, x.set).Verify(tok, hrNode, now); !errors.Is(err, ErrAlgorithm) {
			t.Errorf("%s: %v; want ErrAlgorithm", name, err)
		}
	}
}

// TestX5CRefusals: what a BU on SPIRE must not get accepted.
func TestX5CRefusals(t *testing.T) {
	s := newSpireMesh(t)
	now := t0
	good := svidOf(t, s.hr, hrNode)
	m := newSVIDMinter(t, good, hrNode, &now)
	tok := mustMint(t, m, financeTD, aliceCall)
	parts := strings.Split(tok, ".")
	leaf := base64.StdEncoding.EncodeToString(good.Certificates[0].Raw)
	rogue := newSVIDMinter(t, svidOf(t, s.rogue, hrNode), hrNode, &now)
	other := newSVIDMinter(t, svidOf(t, s.hr, hrNode2), hrNode2, &now)
	noX509, err := NewVerifier(VerifierConfig{TrustDomain: financeTD, Node: finNode, Bundles: s.set})
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding
	for _, c := range []struct {
		name  string
		token string
		peer  spiffeid.ID
		v     *Verifier
		want  *Refusal
	}{
		{"leaf of a CA not in hr's bundle", mustMint(t, rogue, financeTD, aliceCall), hrNode, nil, ErrUnknownKey},
		{"leaf of another hr node", mustMint(t, other, financeTD, aliceCall), hrNode, nil, ErrPeer},
		{"presented by another hr node", tok, hrNode2, nil, ErrPeer},
		{"presented by a finance node", tok, finNode2, nil, ErrPeer},
		{"tampered payload", parts[0] + "." + enc.EncodeToString([]byte(`{"iss":"x"}`)) + "." + parts[2], hrNode, nil, ErrSignature},
		{"signature of another key", parts[0] + "." + parts[1] + "." + strings.Split(mustMint(t, other, financeTD, aliceCall), ".")[2], hrNode, nil, ErrSignature},
		{"x5c without X.509 bundles", tok, hrNode, noX509, ErrHeader},
		{"kid and x5c", signWith(t, good.PrivateKey, `{"alg":"ES256","typ":"JWT","kid":"k","x5c":["`+leaf+`"]}`, parts[1]), hrNode, nil, ErrHeader},
		{"x5c not a list", signWith(t, good.PrivateKey, `{"alg":"ES256","typ":"JWT","x5c":"`+leaf+`"}`, parts[1]), hrNode, nil, ErrHeader},
		{"x5c empty", signWith(t, good.PrivateKey, `{"alg":"ES256","typ":"JWT","x5c":[]}`, parts[1]), hrNode, nil, ErrHeader},
		{"x5c of five", signWith(t, good.PrivateKey, `{"alg":"ES256","typ":"JWT","x5c":["`+strings.Repeat(leaf+`","`, 4)+leaf+`"]}`, parts[1]), hrNode, nil, ErrHeader},
		{"x5c not base64", signWith(t, good.PrivateKey, `{"alg":"ES256","typ":"JWT","x5c":["%%%"]}`, parts[1]), hrNode, nil, ErrMalformed},
		{"x5c not a certificate", signWith(t, good.PrivateKey, `{"alg":"ES256","typ":"JWT","x5c":["AAAA"]}`, parts[1]), hrNode, nil, ErrMalformed},
		{"x5c with x5u", signWith(t, good.PrivateKey, `{"alg":"ES256","typ":"JWT","x5c":["`+leaf+`"],"x5u":"https://evil"}`, parts[1]), hrNode, nil, ErrHeader},
		{"PS256", signWith(t, good.PrivateKey, `{"alg":"PS256","typ":"JWT","x5c":["`+leaf+`"]}`, parts[1]), hrNode, nil, ErrAlgorithm},
		{"RS256 in the kid form", signWith(t, good.PrivateKey, `{"alg":"RS256","typ":"JWT","kid":"k"}`, parts[1]), hrNode, nil, ErrAlgorithm},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := c.v
			if v == nil {
				v = newX5CVerifier(t, s.set)
			}
			_, err := v.Verify(c.token, c.peer, now)
			if !errors.Is(err, c.want) {
				t.Fatalf("Verify = %v; want %v", err, c.want.Reason)
			}
		})
	}
	// A refused chain is not cached; the good one is, and a cached chain
	// does not let another peer through.
	v := newX5CVerifier(t, s.set)
	if _, err := v.Verify(mustMint(t, rogue, financeTD, aliceCall), hrNode, now); !errors.Is(err, ErrUnknownKey) || v.leaves.len() != 0 {
		t.Errorf("rogue chain: %v, %d cached", err, v.leaves.len())
	}
	if _, err := v.Verify(tok, hrNode, now); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(mustMint(t, m, financeTD, aliceCall), hrNode2, now); !errors.Is(err, ErrPeer) {
		t.Errorf("cached chain presented by another node: %v; want ErrPeer", err)
	}
}

// TestSVIDMinterConfig: the minter refuses an SVID of another node, and
// both key forms at once.
func TestSVIDMinterConfig(t *testing.T) {
	s := newSpireMesh(t)
	if _, err := NewMinter(MinterConfig{Node: hrNode, SVID: svidOf(t, s.hr, hrNode2)}); err == nil || !strings.Contains(err.Error(), "not the node") {
		t.Errorf("SVID of another node: %v", err)
	}
	kid, signer := s.hr.JWTSigner()
	if _, err := NewMinter(MinterConfig{Node: hrNode, SVID: svidOf(t, s.hr, hrNode), KeyID: kid, Signer: signer}); err == nil {
		t.Error("a minter with both a JWT authority and an SVID was made")
	}
	m, err := NewMinter(MinterConfig{Node: hrNode, SVID: svidOf(t, s.hr, hrNode)})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.SetKey(kid, signer); err == nil {
		t.Error("SetKey on an SVID minter succeeded")
	}
}

// signWith signs header.payload (header JSON, payload already encoded)
// with key: ES256 for ECDSA, RS256 for RSA, as a forger with that key
// would.
func signWith(t testing.TB, key crypto.Signer, headerJSON, payload string) string {
	t.Helper()
	k := &minterKey{signer: key, header: base64.RawURLEncoding.AppendEncode(nil, []byte(headerJSON))}
	_, k.rsa = key.Public().(*rsa.PublicKey)
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		t.Fatal(err)
	}
	var w wireClaims
	if err := json.Unmarshal(raw, &w); err != nil {
		// Not claims: sign the payload as it is.
		w = wireClaims{Issuer: string(raw)}
	}
	m := &Minter{}
	m.key.Store(k)
	tok, err := m.sign(w)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func ecKey(t testing.TB) crypto.Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// testCert makes a certificate valid around t0 for key: a CA (self-signed
// when parent is nil) or a leaf X.509-SVID of id.
func testCert(t testing.TB, parent *x509.Certificate, parentKey crypto.Signer, id spiffeid.ID, key crypto.Signer, isCA bool) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "test"},
		NotBefore: t0.Add(-time.Hour), NotAfter: t0.Add(time.Hour), BasicConstraintsValid: true}
	if isCA {
		tmpl.IsCA = true
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
		tmpl.URIs = []*url.URL{hrTD.ID().URL()}
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.URIs = []*url.URL{id.URL()}
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}
