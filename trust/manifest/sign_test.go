package manifest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

var (
	beforeExpiry = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	afterExpiry  = time.Date(2027, 1, 2, 0, 0, 0, 0, time.UTC)
)

// hiddenSigner hides the concrete key type, as an HSM's signer would.
type hiddenSigner struct{ crypto.Signer }

func mustKey(t testing.TB, alg Algorithm) crypto.Signer {
	t.Helper()
	k, err := GenerateKey(alg)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustSign(t testing.TB, m *Manifest, k crypto.Signer) []byte {
	t.Helper()
	signed, err := Sign(m, k)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return signed
}

// header decodes the protected header of a compact JWS.
func header(t *testing.T, signed []byte) map[string]any {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(strings.Split(string(signed), ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]any
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatal(err)
	}
	return h
}

func TestSignVerifyRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		key  crypto.Signer
		alg  string
	}{
		{"ecdsa", mustKey(t, ES256), "ES256"},
		{"ed25519", mustKey(t, EdDSA), "EdDSA"},
		{"opaque ecdsa", hiddenSigner{mustKey(t, ES256)}, "ES256"},
		{"opaque ed25519", hiddenSigner{mustKey(t, EdDSA)}, "EdDSA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := mustParse(t, testYAML(t))
			signed := mustSign(t, m, tc.key)
			h := header(t, signed)
			kid, _ := KeyID(tc.key.Public())
			if h["alg"] != tc.alg || h["kid"] != kid || h["typ"] != MediaType {
				t.Errorf("header = %v; want alg %s, kid %s, typ %s", h, tc.alg, kid, MediaType)
			}
			got, err := Verify(signed, tc.key.Public(), beforeExpiry)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if got.Version != 3 || !got.Allows(hrTD, financeTD) || string(got.Signed()) != string(signed) {
				t.Errorf("verified manifest: version %d, allows hr→finance %v, signed kept %v", got.Version, got.Allows(hrTD, financeTD), string(got.Signed()) == string(signed))
			}
			// The payload is the canonical JSON of the manifest.
			want, _ := canonical(m)
			payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(string(signed), ".")[1])
			if string(payload) != string(want) {
				t.Errorf("payload is not the canonical JSON:\n%s\nwant\n%s", payload, want)
			}
		})
	}
}

func TestVerifyRefusesExpired(t *testing.T) {
	k := mustKey(t, ES256)
	signed := mustSign(t, mustParse(t, testYAML(t)), k)
	_, err := Verify(signed, k.Public(), afterExpiry)
	var ee *ExpiredError
	if !errors.As(err, &ee) || !errors.Is(err, ErrExpired) {
		t.Fatalf("Verify after expiry: %v; want an ExpiredError", err)
	}
	for _, w := range []string{"version 3 expired at 2027-01-01T00:00:00Z (24h0m0s ago)", "sign a fresh one"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
	// Exactly at the expiry it has expired.
	if _, err := Verify(signed, k.Public(), time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)); !errors.Is(err, ErrExpired) {
		t.Errorf("Verify at the expiry instant: %v", err)
	}
	// Open still loads it, for display, and it reports expired.
	m, err := Open(signed, k.Public())
	if err != nil || !m.Expired(afterExpiry) {
		t.Errorf("Open of an expired manifest = %v, %v", m, err)
	}
}

func TestVerifyRefusesForgeries(t *testing.T) {
	k := mustKey(t, ES256)
	m := mustParse(t, testYAML(t))
	signed := mustSign(t, m, k)
	parts := strings.Split(string(signed), ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])

	// A payload altered to let finance call hr, signature kept.
	altered := strings.Replace(string(payload), `"from":"hr.example.corp","to":"finance.example.corp"`, `"from":"finance.example.corp","to":"hr.example.corp"`, 1)
	if altered == string(payload) {
		t.Fatal("test bug: the payload did not change")
	}
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(altered)) + "." + parts[2]

	other := mustKey(t, ES256)
	otherSigned := mustSign(t, m, other)
	edKey := mustKey(t, EdDSA)
	edSigned := mustSign(t, m, edKey)

	// alg none, and HS256 keyed with the public key's bytes (the classic
	// algorithm confusion).
	pubDER, _ := x509.MarshalPKIXPublicKey(k.Public())
	edPub := edKey.Public().(ed25519.PublicKey)
	unsigned := jwsWith(t, `{"alg":"none","typ":"`+MediaType+`"}`, payload, nil)
	hs := jwsWith(t, `{"alg":"HS256","typ":"`+MediaType+`"}`, payload, pubDER)
	hsEd := jwsWith(t, `{"alg":"HS256","typ":"`+MediaType+`"}`, payload, edPub)

	// Right key, wrong typ: something else central security signed.
	wrongTyp := signRaw(t, k, jose.ES256, "JWT", payload)
	// Right key and typ, payload not canonical (spaces, reordered keys).
	var generic map[string]any
	json.Unmarshal(payload, &generic)
	pretty, _ := json.MarshalIndent(generic, "", " ")
	notCanonical := signRaw(t, k, jose.ES256, MediaType, pretty)
	// Right key and typ, payload with an extra field.
	extra := signRaw(t, k, jose.ES256, MediaType, []byte(strings.Replace(string(payload), `{"version":3`, `{"admin":true,"version":3`, 1)))
	// JSON serialization instead of compact.
	jws, _ := jose.ParseSignedCompact(string(signed), []jose.SignatureAlgorithm{jose.ES256})
	full := jws.FullSerialize()

	for _, tc := range []struct {
		name   string
		signed string
		pub    crypto.PublicKey
		is     error
		says   string
	}{
		{"tampered payload", tampered, k.Public(), ErrSignature, "altered or signed with another key"},
		{"truncated signature", string(signed[:len(signed)-4]), k.Public(), ErrSignature, ""},
		{"another ECDSA key", string(otherSigned), k.Public(), ErrSignature, "signed by another key"},
		{"Ed25519 signature, ECDSA key", string(edSigned), k.Public(), ErrSignature, "ES256"},
		{"ECDSA signature, Ed25519 key", string(signed), edPub, ErrSignature, "EdDSA"},
		{"alg none", unsigned, k.Public(), ErrSignature, ""},
		{"HS256 keyed with the public key", hs, k.Public(), ErrSignature, ""},
		{"HS256 keyed with the Ed25519 key", hsEd, edPub, ErrSignature, ""},
		{"wrong typ", wrongTyp, k.Public(), ErrSignature, `typ "JWT"`},
		{"not canonical", notCanonical, k.Public(), ErrInvalid, "canonical"},
		{"unknown field", extra, k.Public(), ErrInvalid, "unknown field"},
		{"JSON serialization", full, k.Public(), ErrSignature, ""},
		{"garbage", "hello", k.Public(), ErrSignature, ""},
		{"empty", "", k.Public(), ErrSignature, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Verify([]byte(tc.signed), tc.pub, beforeExpiry)
			if err == nil {
				t.Fatalf("accepted: version %d", got.Version)
			}
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("err = %v; want %v saying %q", err, tc.is, tc.says)
			}
		})
	}
}

// jwsWith builds a compact JWS with a raw header; key nil leaves the
// signature empty, else it is HMAC-SHA256 with key.
func jwsWith(t *testing.T, hdr string, payload, key []byte) string {
	t.Helper()
	in := base64.RawURLEncoding.EncodeToString([]byte(hdr)) + "." + base64.RawURLEncoding.EncodeToString(payload)
	if key == nil {
		return in + "."
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(in))
	return in + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// signRaw signs payload as is, with a typ of choice.
func signRaw(t *testing.T, k crypto.Signer, alg jose.SignatureAlgorithm, typ string, payload []byte) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: k}, (&jose.SignerOptions{}).WithType(jose.ContentType(typ)))
	if err != nil {
		t.Fatal(err)
	}
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := jws.CompactSerialize()
	return out
}

func TestSignRefuses(t *testing.T) {
	m := mustParse(t, testYAML(t))
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	if _, err := Sign(m, rsaKey); err == nil || !strings.Contains(err.Error(), "want ECDSA P-256 or Ed25519") {
		t.Errorf("Sign with RSA: %v", err)
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if _, err := Sign(m, p384); err == nil || !strings.Contains(err.Error(), "want P-256") {
		t.Errorf("Sign with P-384: %v", err)
	}
	bad := *m
	bad.Version = 0
	if _, err := Sign(&bad, mustKey(t, ES256)); !errors.Is(err, ErrInvalid) {
		t.Errorf("Sign of an invalid manifest: %v", err)
	}
}

func TestKeyPEM(t *testing.T) {
	for _, alg := range []Algorithm{ES256, EdDSA} {
		k := mustKey(t, alg)
		privPEM, err := MarshalPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		pubPEM, err := MarshalPublicKey(k.Public())
		if err != nil {
			t.Fatal(err)
		}
		k2, err := ParsePrivateKey(privPEM)
		if err != nil {
			t.Fatal(err)
		}
		pub2, err := ParsePublicKey(pubPEM)
		if err != nil {
			t.Fatal(err)
		}
		id1, _ := KeyID(k.Public())
		id2, _ := KeyID(k2.Public())
		id3, _ := KeyID(pub2)
		if id1 != id2 || id1 != id3 || id1 == "" {
			t.Errorf("%s: key ids after PEM round trips: %s %s %s", alg, id1, id2, id3)
		}
		// A manifest signed with the parsed private key verifies with the
		// parsed public key.
		if _, err := Verify(mustSign(t, mustParse(t, testYAML(t)), k2), pub2, beforeExpiry); err != nil {
			t.Errorf("%s: %v", alg, err)
		}
		// Keys are not interchangeable.
		if _, err := ParsePublicKey(privPEM); err == nil || !strings.Contains(err.Error(), `not a PEM "PUBLIC KEY"`) {
			t.Errorf("ParsePublicKey of a private key: %v", err)
		}
		if _, err := ParsePrivateKey(pubPEM); err == nil || !strings.Contains(err.Error(), `not a PEM "PRIVATE KEY"`) {
			t.Errorf("ParsePrivateKey of a public key: %v", err)
		}
	}
	for _, s := range []string{"es256", "ES256", "ed25519", "EdDSA"} {
		if _, err := ParseAlgorithm(s); err != nil {
			t.Errorf("ParseAlgorithm(%q): %v", s, err)
		}
	}
	if _, err := ParseAlgorithm("rs256"); err == nil {
		t.Error("ParseAlgorithm(rs256) accepted")
	}
}
