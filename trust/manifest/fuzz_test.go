package manifest

import (
	"bytes"
	"crypto"
	"encoding/base64"
	"strings"
	"sync"
	"testing"
)

// FuzzParse: any YAML either parses into a manifest that validates (and
// whose canonical JSON decodes back to it) or is refused with a one-line
// error; never a panic.
func FuzzParse(f *testing.F) {
	f.Add([]byte(testYAML(f)))
	f.Add([]byte("version: 1\nexpires: 2027-01-01T00:00:00Z\ntrust_domains: []\nrelationships: []\n"))
	f.Add([]byte("version: 1\nexpires: 2027-01-01T00:00:00Z\ntrust_domains:\n  - trust_domain: a.b\n    namespace: a\n    bundle_endpoints: [{url: 'https://x:1', spiffe_id: 'spiffe://a.b/n'}]\n    bootstrap_bundle: x\n"))
	f.Add([]byte("- a\n- b\n"))
	f.Add([]byte("version: [1]\nexpires: {a: 1}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error: %q", err)
			}
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("Parse accepted what Validate refuses: %v", err)
		}
		c, err := canonical(m)
		if err != nil {
			return // e.g. a year past 9999: Sign refuses it
		}
		back, err := decode(c)
		if err != nil {
			t.Fatalf("the canonical JSON of a parsed manifest does not decode: %v\n%s", err, c)
		}
		if back.Version != m.Version || len(back.TrustDomains) != len(m.TrustDomains) || len(back.Relationships) != len(m.Relationships) {
			t.Fatalf("round trip changed the manifest")
		}
	})
}

var (
	fuzzKeyOnce sync.Once
	fuzzKey     crypto.Signer
	fuzzSigned  []byte
	fuzzPayload []byte
)

// FuzzVerify: Verify of arbitrary bytes never panics and never accepts a
// manifest whose payload differs from the one central security signed.
// The corpus is a real signed manifest and mutations of it.
func FuzzVerify(f *testing.F) {
	fuzzKeyOnce.Do(func() {
		k, err := GenerateKey(ES256)
		if err != nil {
			panic(err)
		}
		m, err := Parse([]byte(testYAML(f)))
		if err != nil {
			panic(err)
		}
		fuzzKey = k
		if fuzzSigned, err = Sign(m, k); err != nil {
			panic(err)
		}
		fuzzPayload, _ = canonical(m)
	})
	f.Add(fuzzSigned)
	parts := strings.Split(string(fuzzSigned), ".")
	f.Add([]byte(parts[0] + "." + parts[1] + "."))
	f.Add([]byte(parts[0] + "." + base64.RawURLEncoding.EncodeToString(bytes.Replace(fuzzPayload, []byte(`"version":3`), []byte(`"version":4`), 1)) + "." + parts[2]))
	f.Add([]byte(`eyJhbGciOiJub25lIn0.` + parts[1] + "."))
	f.Add([]byte("{}"))
	f.Fuzz(func(t *testing.T, signed []byte) {
		m, err := Verify(signed, fuzzKey.Public(), beforeExpiry)
		if err != nil {
			return
		}
		c, _ := canonical(m)
		if !bytes.Equal(c, fuzzPayload) {
			t.Fatalf("accepted a payload central security did not sign:\n%s", c)
		}
	})
}
