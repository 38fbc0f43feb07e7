package manifest

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/mcpmesh/mcpmesh/trust/ca"
)

var (
	rootsOnce sync.Once
	rootsPEM  map[string]string
)

// caPEM returns the PEM root of a real embedded CA for td (hr, finance
// and legal .example.corp), made once per test binary.
func caPEM(t testing.TB, td string) string {
	t.Helper()
	rootsOnce.Do(func() {
		rootsPEM = map[string]string{}
		dir, err := osMkdirTemp()
		if err != nil {
			panic(err)
		}
		for _, name := range []string{"hr.example.corp", "finance.example.corp", "legal.example.corp"} {
			c, err := ca.Init(dir+"/"+name, spiffeid.RequireTrustDomainFromString(name))
			if err != nil {
				panic(err)
			}
			cert, _, err := c.Marshal()
			if err != nil {
				panic(err)
			}
			rootsPEM[name] = string(cert)
		}
	})
	p, ok := rootsPEM[td]
	if !ok {
		t.Fatalf("no test CA for %s", td)
	}
	return p
}

// indent indents a PEM block for a YAML literal.
func indent(s, by string) string {
	return by + strings.ReplaceAll(strings.TrimSpace(s), "\n", "\n"+by)
}

// testYAML is a valid manifest of hr and finance (hr may call finance)
// at version 3, expiring in 2027.
func testYAML(t testing.TB) string {
	return fmt.Sprintf(`version: 3
expires: 2027-01-01T00:00:00Z
trust_domains:
  - trust_domain: hr.example.corp
    namespace: hr
    bundle_endpoints:
      - url: https://10.0.0.1:7301
        spiffe_id: spiffe://hr.example.corp/mcpmesh/node/n1
      - url: https://10.0.0.2:7301
        spiffe_id: spiffe://hr.example.corp/mcpmesh/node/n2
    bootstrap_bundle: |
%s
  - trust_domain: finance.example.corp
    namespace: finance
    bundle_endpoints:
      - url: https://10.0.1.1:7301
        spiffe_id: spiffe://finance.example.corp/mcpmesh/node/n1
    bootstrap_bundle: |
%s
relationships:
  - from: hr.example.corp
    to: finance.example.corp
`, indent(caPEM(t, "hr.example.corp"), "      "), indent(caPEM(t, "finance.example.corp"), "      "))
}

func mustParse(t testing.TB, y string) *Manifest {
	t.Helper()
	m, err := Parse([]byte(y))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return m
}

var (
	hrTD      = spiffeid.RequireTrustDomainFromString("hr.example.corp")
	financeTD = spiffeid.RequireTrustDomainFromString("finance.example.corp")
	legalTD   = spiffeid.RequireTrustDomainFromString("legal.example.corp")
)

func TestParseAndQuery(t *testing.T) {
	m := mustParse(t, testYAML(t))
	if m.Version != 3 || !m.Expires.Equal(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("version %d, expires %s", m.Version, m.Expires)
	}
	d, ok := m.Domain(financeTD)
	if !ok || d.Namespace != "finance" || d.ID() != financeTD || len(d.BundleEndpoints) != 1 {
		t.Fatalf("Domain(finance) = %+v, %v", d, ok)
	}
	if got := d.BundleEndpoints[0].ID().String(); got != "spiffe://finance.example.corp/mcpmesh/node/n1" {
		t.Errorf("endpoint ID = %s", got)
	}
	if b := d.Bundle(); b.TrustDomain() != financeTD || len(b.X509Authorities()) != 1 {
		t.Errorf("bundle = %v with %d roots", b.TrustDomain(), len(b.X509Authorities()))
	}
	if d, ok := m.DomainByNamespace("hr"); !ok || d.ID() != hrTD {
		t.Errorf("DomainByNamespace(hr) = %+v, %v", d, ok)
	}
	if _, ok := m.DomainByNamespace("legal"); ok {
		t.Error("DomainByNamespace(legal) found an undeclared namespace")
	}
	if _, ok := m.Domain(legalTD); ok {
		t.Error("Domain(legal) found an undeclared trust domain")
	}
	// Relationships are directed.
	for _, c := range []struct {
		from, to spiffeid.TrustDomain
		want     bool
	}{{hrTD, financeTD, true}, {financeTD, hrTD, false}, {hrTD, hrTD, false}, {legalTD, financeTD, false}} {
		if got := m.Allows(c.from, c.to); got != c.want {
			t.Errorf("Allows(%s, %s) = %v, want %v", c.from, c.to, got, c.want)
		}
	}
	// Peers go both ways: finance needs hr's bundle to accept its calls.
	if diff := cmp.Diff([]spiffeid.TrustDomain{financeTD}, m.Peers(hrTD), cmpopts.EquateComparable(spiffeid.TrustDomain{})); diff != "" {
		t.Errorf("Peers(hr) (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]spiffeid.TrustDomain{hrTD}, m.Peers(financeTD), cmpopts.EquateComparable(spiffeid.TrustDomain{})); diff != "" {
		t.Errorf("Peers(finance) (-want +got):\n%s", diff)
	}
	if p := m.Peers(legalTD); len(p) != 0 {
		t.Errorf("Peers(legal) = %v", p)
	}
	if m.Expired(m.Expires.Add(-time.Second)) || !m.Expired(m.Expires) {
		t.Error("Expired is wrong around the expiry")
	}
}

func TestParseErrors(t *testing.T) {
	good := testYAML(t)
	hrRoot := indent(caPEM(t, "hr.example.corp"), "      ")
	// domain builds a one-domain manifest around a trust domain entry.
	domain := func(entry string) string {
		return "version: 1\nexpires: 2027-01-01T00:00:00Z\ntrust_domains:\n" + entry + "relationships: []\n"
	}
	hrEntry := func(td, ns, url, id, bundle string) string {
		return fmt.Sprintf("  - trust_domain: %s\n    namespace: %s\n    bundle_endpoints:\n      - url: %s\n        spiffe_id: %s\n    bootstrap_bundle: |\n%s\n", td, ns, url, id, bundle)
	}
	okEntry := hrEntry("hr.example.corp", "hr", "https://10.0.0.1:7301", "spiffe://hr.example.corp/mcpmesh/node/n1", hrRoot)
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"empty", "", []string{"empty"}},
		{"not a mapping", "hello", []string{"document: \"hello\" is not a mapping of keys"}},
		{"unknown top key", strings.Replace(good, "version: 3", "version: 3\nversoin: 4", 1), []string{"versoin: unknown key (line 2)"}},
		{"unknown nested key", strings.Replace(good, "    namespace: finance", "    namespace: finance\n    namepsace: fin", 1), []string{"trust_domains[1].namepsace: unknown key"}},
		{"unknown endpoint key", strings.Replace(good, "        spiffe_id: spiffe://hr.example.corp/mcpmesh/node/n2", "        spiffe_id: spiffe://hr.example.corp/mcpmesh/node/n2\n        sha: x", 1), []string{"trust_domains[0].bundle_endpoints[1].sha: unknown key"}},
		{"negative version", strings.Replace(good, "version: 3", "version: -3", 1), []string{`version: "-3" is not a positive integer`}},
		{"bad expires", strings.Replace(good, "expires: 2027-01-01T00:00:00Z", "expires: next year", 1), []string{`expires: "next year" is not an RFC 3339 time`}},
		{"zero version", strings.Replace(good, "version: 3", "version: 0", 1), []string{"version: missing or 0"}},
		{"no expires", strings.Replace(good, "expires: 2027-01-01T00:00:00Z\n", "", 1), []string{"expires: missing"}},
		{"two documents", good + "---\nversion: 4\n", []string{"more than one YAML document"}},
		{"bad trust domain", domain(hrEntry("HR.example.corp", "hr", "https://10.0.0.1:7301", "spiffe://hr.example.corp/mcpmesh/node/n1", hrRoot)), []string{"trust_domains[0].trust_domain: \"HR.example.corp\" is not a SPIFFE trust domain name"}},
		{"trust domain with scheme", domain(hrEntry("spiffe://hr.example.corp", "hr", "https://10.0.0.1:7301", "spiffe://hr.example.corp/mcpmesh/node/n1", hrRoot)), []string{"trust_domains[0].trust_domain", "without spiffe://"}},
		{"bad namespace", domain(hrEntry("hr.example.corp", "HR_1", "https://10.0.0.1:7301", "spiffe://hr.example.corp/mcpmesh/node/n1", hrRoot)), []string{"trust_domains[0].namespace: \"HR_1\" is not a namespace"}},
		{"http endpoint", domain(hrEntry("hr.example.corp", "hr", "http://10.0.0.1:7301", "spiffe://hr.example.corp/mcpmesh/node/n1", hrRoot)), []string{"trust_domains[0].bundle_endpoints[0].url: \"http://10.0.0.1:7301\": want an https URL"}},
		{"endpoint without host", domain(hrEntry("hr.example.corp", "hr", "https://:7301", "spiffe://hr.example.corp/mcpmesh/node/n1", hrRoot)), []string{"trust_domains[0].bundle_endpoints[0].url", "has no host"}},
		{"endpoint id outside its domain", domain(hrEntry("hr.example.corp", "hr", "https://10.0.0.1:7301", "spiffe://finance.example.corp/mcpmesh/node/n1", hrRoot)), []string{"trust_domains[0].bundle_endpoints[0].spiffe_id: spiffe://finance.example.corp/mcpmesh/node/n1 is not in trust domain hr.example.corp"}},
		{"endpoint id not spiffe", domain(hrEntry("hr.example.corp", "hr", "https://10.0.0.1:7301", "https://hr.example.corp/n1", hrRoot)), []string{"trust_domains[0].bundle_endpoints[0].spiffe_id: \"https://hr.example.corp/n1\" is not a SPIFFE ID"}},
		{"bundle not PEM", domain(hrEntry("hr.example.corp", "hr", "https://10.0.0.1:7301", "spiffe://hr.example.corp/mcpmesh/node/n1", "      not a certificate")), []string{"trust_domains[0].bootstrap_bundle: certificate 0: not PEM"}},
		{"bundle holds a key", domain(hrEntry("hr.example.corp", "hr", "https://10.0.0.1:7301", "spiffe://hr.example.corp/mcpmesh/node/n1", "      -----BEGIN PRIVATE KEY-----\n      AAAA\n      -----END PRIVATE KEY-----")), []string{"trust_domains[0].bootstrap_bundle: block 0 is a \"PRIVATE KEY\""}},
		{"bundle garbage cert", domain(hrEntry("hr.example.corp", "hr", "https://10.0.0.1:7301", "spiffe://hr.example.corp/mcpmesh/node/n1", "      -----BEGIN CERTIFICATE-----\n      AAAA\n      -----END CERTIFICATE-----")), []string{"trust_domains[0].bootstrap_bundle: certificate 0 does not parse"}},
		{"missing fields", domain("  - trust_domain: hr.example.corp\n"), []string{"trust_domains[0].namespace: missing", "trust_domains[0].bundle_endpoints: missing", "trust_domains[0].bootstrap_bundle: missing"}},
		{"duplicate domain", domain(okEntry + strings.Replace(okEntry, "namespace: hr", "namespace: hr2", 1)), []string{"trust_domains[1].trust_domain: hr.example.corp is declared twice (also trust_domains[0])"}},
		{"duplicate namespace", domain(okEntry + strings.Replace(okEntry, "trust_domain: hr.example.corp", "trust_domain: hr2.example.corp", 1)), []string{"trust_domains[1].namespace: hr is also the namespace of trust_domains[0]"}},
		{"duplicate endpoint", strings.Replace(good, "https://10.0.0.2:7301", "https://10.0.0.1:7301", 1), []string{"trust_domains[0].bundle_endpoints[1].url: https://10.0.0.1:7301 is listed twice"}},
		{"undeclared relationship end", strings.Replace(good, "to: finance.example.corp", "to: legal.example.corp", 1), []string{"relationships[0].to: \"legal.example.corp\" is not declared under trust_domains"}},
		{"self loop", strings.Replace(good, "to: finance.example.corp", "to: hr.example.corp", 1), []string{"relationships[0]: hr.example.corp to itself"}},
		{"duplicate relationship", good + "  - from: hr.example.corp\n    to: finance.example.corp\n", []string{"relationships[1]: hr.example.corp to finance.example.corp is listed twice"}},
		{"relationship missing from", strings.Replace(good, "  - from: hr.example.corp\n", "  - ", 1), []string{"relationships[0].from: missing"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			if err == nil {
				t.Fatalf("Parse accepted it")
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error spans lines: %q", msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q\ndoes not say %q", msg, w)
				}
			}
		})
	}
	// Problems found by validation are one ValidationError naming fields.
	_, err := Parse([]byte(domain("  - trust_domain: hr.example.corp\n")))
	var ve *ValidationError
	if !errors.As(err, &ve) || !errors.Is(err, ErrInvalid) || len(ve.Problems) != 3 {
		t.Errorf("err = %#v; want a ValidationError with 3 problems matching ErrInvalid", err)
	}
}

// TestEmptyManifestRevokesAll: a manifest that declares no domain is
// valid (central security revoking everyone) and allows nothing.
func TestEmptyManifestRevokesAll(t *testing.T) {
	m := mustParse(t, "version: 9\nexpires: 2027-01-01T00:00:00Z\ntrust_domains: []\nrelationships: []\n")
	if m.Allows(hrTD, financeTD) || len(m.Peers(hrTD)) != 0 {
		t.Error("an empty manifest allows something")
	}
}
