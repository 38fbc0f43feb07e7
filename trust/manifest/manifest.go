package manifest

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Manifest is central security's federation manifest. Values come from
// [Parse], [Verify] or [Open], which validate them; one built by hand must
// pass [Manifest.Validate] before its query methods are used. A validated
// Manifest is immutable and safe for concurrent use.
type Manifest struct {
	// Version rises with every manifest central security signs; a node
	// never accepts a lower one than it holds. At least 1.
	Version uint64 `yaml:"version" json:"version"`
	// Expires is when the manifest stops authorizing anything. Required.
	Expires time.Time `yaml:"expires" json:"expires"`
	// TrustDomains are the BUs of the mesh, one trust domain each.
	TrustDomains []Domain `yaml:"trust_domains" json:"trust_domains"`
	// Relationships are who may call whom.
	Relationships []Relationship `yaml:"relationships" json:"relationships"`

	// Built by Validate.
	byTD    map[spiffeid.TrustDomain]int
	byNS    map[string]int
	allowed map[[2]spiffeid.TrustDomain]bool
	signed  []byte
}

// Domain is one BU of the mesh: a trust domain and its namespace.
type Domain struct {
	// TrustDomain is the BU's SPIFFE trust domain, e.g. hr.example.corp
	// (without spiffe://).
	TrustDomain string `yaml:"trust_domain" json:"trust_domain"`
	// Namespace is the BU's namespace, e.g. hr: the prefix of its tools'
	// names (<namespace>.<tool>).
	Namespace string `yaml:"namespace" json:"namespace"`
	// BundleEndpoints are the BU's SPIFFE bundle endpoints (https_spiffe
	// profile), one per node; at least one.
	BundleEndpoints []BundleEndpoint `yaml:"bundle_endpoints" json:"bundle_endpoints"`
	// BootstrapBundle is PEM: the X.509 root certificate(s) of the trust
	// domain (its CA's ca.crt), used to authenticate the first fetch from
	// its bundle endpoints.
	BootstrapBundle string `yaml:"bootstrap_bundle" json:"bootstrap_bundle"`

	id    spiffeid.TrustDomain
	roots []*x509.Certificate
}

// BundleEndpoint is one SPIFFE bundle endpoint of a trust domain.
type BundleEndpoint struct {
	// URL is https, e.g. https://10.0.0.1:7301.
	URL string `yaml:"url" json:"url"`
	// SPIFFEID is the endpoint's own identity, inside the trust domain,
	// e.g. spiffe://hr.example.corp/mcpmesh/node/n1.
	SPIFFEID string `yaml:"spiffe_id" json:"spiffe_id"`
}

// Relationship lets callers in From call the tools To exports to them.
type Relationship struct {
	// From is the calling trust domain.
	From string `yaml:"from" json:"from"`
	// To is the exporting trust domain.
	To string `yaml:"to" json:"to"`
}

// ID is the domain's trust domain.
func (d Domain) ID() spiffeid.TrustDomain { return d.id }

// Bundle returns the domain's bootstrap bundle as an X.509 bundle.
func (d Domain) Bundle() *x509bundle.Bundle {
	return x509bundle.FromX509Authorities(d.id, d.roots)
}

// ID is the endpoint's SPIFFE ID; the zero ID before validation.
func (e BundleEndpoint) ID() spiffeid.ID {
	id, _ := spiffeid.FromString(e.SPIFFEID)
	return id
}

// Problem is one thing wrong with a manifest.
type Problem struct {
	// Field is the path of the field, e.g.
	// trust_domains[1].bundle_endpoints[0].spiffe_id.
	Field string
	// Message says what is wrong and what is expected.
	Message string
}

// ValidationError lists what is wrong with a manifest. It matches
// [ErrInvalid] with errors.Is.
type ValidationError struct {
	Problems []Problem
}

// Error joins the problems on one line.
func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.Field + ": " + p.Message
	}
	return "federation manifest: " + strings.Join(parts, "; ")
}

// Is makes a ValidationError match ErrInvalid.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

// ErrInvalid means a manifest's content does not validate.
var ErrInvalid = errors.New("invalid federation manifest")

// namespacePattern is node/config's rule for a namespace.
var namespacePattern = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

// Limits that keep a hostile manifest from costing much to check.
const (
	// MaxSize bounds a manifest, YAML or signed, in bytes.
	MaxSize       = 1 << 20
	maxDomains    = 1000
	maxEndpoints  = 64
	maxBundleCert = 16
)

// Validate checks m and builds the indexes its query methods use. It
// reports every problem, each naming its field. It does not look at the
// clock: an expired manifest validates ([Manifest.Expired] tells).
func (m *Manifest) Validate() error {
	var ps []Problem
	add := func(field, format string, args ...any) {
		ps = append(ps, Problem{field, fmt.Sprintf(format, args...)})
	}
	if m.Version < 1 {
		add("version", "missing or 0; want a positive integer that rises with every manifest signed, e.g. 1")
	}
	if m.Expires.IsZero() {
		add("expires", "missing; want an RFC 3339 time such as 2027-01-01T00:00:00Z")
	}
	if len(m.TrustDomains) > maxDomains {
		add("trust_domains", "%d trust domains; at most %d", len(m.TrustDomains), maxDomains)
		return &ValidationError{ps}
	}
	m.byTD = make(map[spiffeid.TrustDomain]int, len(m.TrustDomains))
	m.byNS = make(map[string]int, len(m.TrustDomains))
	for i := range m.TrustDomains {
		d := &m.TrustDomains[i]
		f := fmt.Sprintf("trust_domains[%d]", i)
		d.id = spiffeid.TrustDomain{}
		d.roots = nil
		td, err := spiffeid.TrustDomainFromString(d.TrustDomain)
		switch {
		case d.TrustDomain == "":
			add(f+".trust_domain", "missing; want the BU's SPIFFE trust domain, e.g. hr.example.corp")
		case err != nil || td.Name() != d.TrustDomain:
			add(f+".trust_domain", "%q is not a SPIFFE trust domain name; write it in lower case without spiffe://, e.g. hr.example.corp", d.TrustDomain)
		default:
			if j, dup := m.byTD[td]; dup {
				add(f+".trust_domain", "%s is declared twice (also trust_domains[%d]); declare each trust domain once", td.Name(), j)
			} else {
				m.byTD[td] = i
			}
			d.id = td
		}
		switch {
		case d.Namespace == "":
			add(f+".namespace", "missing; want the BU's namespace, e.g. hr")
		case !namespacePattern.MatchString(d.Namespace):
			add(f+".namespace", "%q is not a namespace; want a lowercase letter then letters, digits or dashes (at most 63), e.g. hr", d.Namespace)
		default:
			if j, dup := m.byNS[d.Namespace]; dup {
				add(f+".namespace", "%s is also the namespace of trust_domains[%d]; each BU has its own", d.Namespace, j)
			} else {
				m.byNS[d.Namespace] = i
			}
		}
		if len(d.BundleEndpoints) == 0 {
			add(f+".bundle_endpoints", "missing; want at least one {url, spiffe_id}, one per node of the BU")
		}
		if len(d.BundleEndpoints) > maxEndpoints {
			add(f+".bundle_endpoints", "%d endpoints; at most %d", len(d.BundleEndpoints), maxEndpoints)
		}
		urls := map[string]int{}
		for j, e := range d.BundleEndpoints {
			ef := fmt.Sprintf("%s.bundle_endpoints[%d]", f, j)
			if msg := checkEndpointURL(e.URL); msg != "" {
				add(ef+".url", "%s", msg)
			} else if k, dup := urls[e.URL]; dup {
				add(ef+".url", "%s is listed twice (also bundle_endpoints[%d])", e.URL, k)
			} else {
				urls[e.URL] = j
			}
			id, err := spiffeid.FromString(e.SPIFFEID)
			switch {
			case e.SPIFFEID == "":
				add(ef+".spiffe_id", "missing; want the endpoint's SPIFFE ID, e.g. spiffe://%s/mcpmesh/node/n1", orExample(d.TrustDomain))
			case err != nil:
				add(ef+".spiffe_id", "%q is not a SPIFFE ID (%v); e.g. spiffe://%s/mcpmesh/node/n1", e.SPIFFEID, err, orExample(d.TrustDomain))
			case !d.id.IsZero() && !id.MemberOf(d.id):
				add(ef+".spiffe_id", "%s is not in trust domain %s; a BU's bundle endpoint has an identity of its own trust domain", id, d.id.Name())
			}
		}
		roots, msg := parseRoots(d.BootstrapBundle)
		if msg != "" {
			add(f+".bootstrap_bundle", "%s", msg)
		}
		d.roots = roots
	}
	m.allowed = make(map[[2]spiffeid.TrustDomain]bool, len(m.Relationships))
	for i, r := range m.Relationships {
		f := fmt.Sprintf("relationships[%d]", i)
		from, okFrom := m.declared(r.From)
		to, okTo := m.declared(r.To)
		if !okFrom {
			add(f+".from", "%s", undeclared(r.From))
		}
		if !okTo {
			add(f+".to", "%s", undeclared(r.To))
		}
		if !okFrom || !okTo {
			continue
		}
		key := [2]spiffeid.TrustDomain{from, to}
		switch {
		case from == to:
			add(f, "%s to itself; a BU's own agents call its tools without a relationship", r.From)
		case m.allowed[key]:
			add(f, "%s to %s is listed twice", r.From, r.To)
		default:
			m.allowed[key] = true
		}
	}
	if len(ps) > 0 {
		return &ValidationError{ps}
	}
	return nil
}

func orExample(td string) string {
	if td == "" {
		return "hr.example.corp"
	}
	return td
}

func (m *Manifest) declared(name string) (spiffeid.TrustDomain, bool) {
	td, err := spiffeid.TrustDomainFromString(name)
	if err != nil || td.Name() != name {
		return spiffeid.TrustDomain{}, false
	}
	_, ok := m.byTD[td]
	return td, ok
}

func undeclared(name string) string {
	if name == "" {
		return "missing; want a trust domain declared under trust_domains, e.g. hr.example.corp"
	}
	return fmt.Sprintf("%q is not declared under trust_domains; declare it there first", name)
}

// checkEndpointURL returns what is wrong with a bundle endpoint URL, or "".
func checkEndpointURL(s string) string {
	if s == "" {
		return "missing; want the endpoint's https URL, e.g. https://10.0.0.1:7301"
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return fmt.Sprintf("%q is not a URL (%v); e.g. https://10.0.0.1:7301", s, err)
	case u.Scheme != "https":
		return fmt.Sprintf("%q: want an https URL (https_spiffe profile), e.g. https://10.0.0.1:7301", s)
	case u.Host == "" || u.Hostname() == "":
		return fmt.Sprintf("%q has no host; e.g. https://10.0.0.1:7301", s)
	case u.User != nil || u.Fragment != "" || u.RawQuery != "":
		return fmt.Sprintf("%q: want no user, query or fragment", s)
	}
	return ""
}

// parseRoots decodes a PEM bundle of CA certificates; msg says what is
// wrong with it, or is "".
func parseRoots(bundle string) (roots []*x509.Certificate, msg string) {
	rest := []byte(bundle)
	if len(bytes.TrimSpace(rest)) == 0 {
		return nil, "missing; want the PEM root certificate(s) of the trust domain (its CA's ca.crt)"
	}
	for n := 0; ; n++ {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			if len(bytes.TrimSpace(rest)) > 0 {
				return nil, fmt.Sprintf("certificate %d: not PEM; want only PEM CERTIFICATE blocks (the CA's ca.crt)", n)
			}
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Sprintf("block %d is a %q; want only CERTIFICATE blocks (never a key)", n, block.Type)
		}
		if len(roots) == maxBundleCert {
			return nil, fmt.Sprintf("more than %d certificates", maxBundleCert)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Sprintf("certificate %d does not parse: %v", n, err)
		}
		if !c.BasicConstraintsValid || !c.IsCA {
			return nil, fmt.Sprintf("certificate %d (%s) is not a CA certificate; want the trust domain's root(s), not a node's SVID", n, c.Subject)
		}
		roots = append(roots, c)
	}
	if len(roots) == 0 {
		return nil, "no certificate; want the PEM root certificate(s) of the trust domain (its CA's ca.crt)"
	}
	return roots, ""
}

// Domain returns the BU of trust domain td. The query methods are safe
// on a nil *Manifest (none in force): it declares and allows nothing, and
// has expired.
func (m *Manifest) Domain(td spiffeid.TrustDomain) (Domain, bool) {
	if m == nil {
		return Domain{}, false
	}
	i, ok := m.byTD[td]
	if !ok {
		return Domain{}, false
	}
	return m.TrustDomains[i], true
}

// DomainByNamespace returns the BU of namespace ns.
func (m *Manifest) DomainByNamespace(ns string) (Domain, bool) {
	if m == nil {
		return Domain{}, false
	}
	i, ok := m.byNS[ns]
	if !ok {
		return Domain{}, false
	}
	return m.TrustDomains[i], true
}

// Allows reports whether callers in from may call tools that to exports
// to them. A trust domain the manifest does not declare is allowed
// nothing; a trust domain's calls to itself are not the manifest's
// business and are reported false.
func (m *Manifest) Allows(from, to spiffeid.TrustDomain) bool {
	if m == nil {
		return false
	}
	return m.allowed[[2]spiffeid.TrustDomain{from, to}]
}

// Peers returns the trust domains td has a relationship with, in either
// direction, sorted by name: the foreign bundles td's nodes need, to
// accept calls from them or to call them.
func (m *Manifest) Peers(td spiffeid.TrustDomain) []spiffeid.TrustDomain {
	if m == nil {
		return nil
	}
	var out []spiffeid.TrustDomain
	for k := range m.allowed {
		var other spiffeid.TrustDomain
		switch td {
		case k[0]:
			other = k[1]
		case k[1]:
			other = k[0]
		default:
			continue
		}
		if !slices.Contains(out, other) {
			out = append(out, other)
		}
	}
	slices.SortFunc(out, func(a, b spiffeid.TrustDomain) int { return strings.Compare(a.Name(), b.Name()) })
	return out
}

// Expired reports whether the manifest has expired at now.
func (m *Manifest) Expired(now time.Time) bool { return m == nil || !now.Before(m.Expires) }

// Signed returns the signed form the manifest was verified from, nil for
// one that was not (from Parse). Callers must not modify it.
func (m *Manifest) Signed() []byte {
	if m == nil {
		return nil
	}
	return m.signed
}
