package assertion

import (
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/mcpmesh/mcpmesh/trust/agentauth"
)

// MethodFederation is the agentauth method of a principal that another BU
// vouched for with a federation assertion.
const MethodFederation = agentauth.MethodFederation

// Principal is who calls, as the exporting BU's pipeline (policy, limits,
// usage, audit) sees a caller of another BU. Every name the calling BU
// chose is qualified by its trust domain, so that hr's "oidc:alice",
// tenant "acme" or group "admins" is never taken for the exporting BU's
// own principal, tenant or group of the same name.
type Principal struct {
	// ID is the caller: a SPIFFE ID subject as it is (it names its trust
	// domain already, and Verify accepts only the issuer's), else
	// "<trust domain>/<subject>", e.g. "hr.example.corp/oidc:alice" or
	// "hr.example.corp/apikey:k1". A BU's own principals are SPIFFE IDs of
	// its own trust domain, "apikey:…", "oidc:…" or "anonymous", and a
	// trust domain name holds no ':', so the two never collide.
	ID string
	// TrustDomain is the calling BU's trust domain name.
	TrustDomain string
	// Subject is the caller's principal as its own BU knows it (sub).
	Subject string
	// Tenant is "<trust domain>/<tenant>", the account usage is charged
	// to, or "" when the caller has none.
	Tenant string
	// Groups are the caller's groups, each "<trust domain>/<group>".
	Groups []string
	// Scopes are the caller's scopes as they are: exports name the scopes
	// they require of the BUs they export to.
	Scopes []string
	// Actor is the calling node (act.sub).
	Actor spiffeid.ID
	// RequestID is the calling node's request id, to record the call
	// under on both sides.
	RequestID string
	// Trace is the W3C traceparent of the call, or "", and TraceState
	// its tracestate, or "".
	Trace, TraceState string
	// Tool and Version are what the assertion is for.
	Tool, Version string
}

// PrincipalOf maps verified claims to the principal of the exporting BU's
// pipeline.
func PrincipalOf(c Claims) Principal {
	td := c.Issuer.TrustDomain().Name()
	p := Principal{ID: QualifiedName(td, c.Subject), TrustDomain: td, Subject: c.Subject, Scopes: slices.Clone(c.Scopes),
		Actor: c.Issuer, RequestID: c.RequestID, Trace: c.Trace, TraceState: c.TraceState, Tool: c.Tool, Version: c.Version}
	if strings.HasPrefix(c.Subject, "spiffe://") {
		p.ID = c.Subject
	}
	if c.Tenant != "" {
		p.Tenant = QualifiedName(td, c.Tenant)
	}
	for _, g := range c.Groups {
		p.Groups = append(p.Groups, QualifiedName(td, g))
	}
	return p
}

// QualifiedName returns name qualified by trust domain td: "<td>/<name>".
func QualifiedName(td, name string) string { return td + "/" + name }

// Agent returns p as an agentauth.Principal with MethodFederation, for
// the gateway's policy, limits and audit: Cedar sees it as
// Agent::"<ID>" in Tenant::"<Tenant>" and its Groups, with
// context.trustDomain the calling BU's.
func (p Principal) Agent() agentauth.Principal {
	return agentauth.Principal{ID: p.ID, TrustDomain: p.TrustDomain, Tenant: p.Tenant, Groups: slices.Clone(p.Groups),
		Scopes: slices.Clone(p.Scopes), Method: MethodFederation}
}

// CallOf returns the Call of agent principal p (as the calling node's
// gateway authenticated it) calling tool, the exporter's "<server>/<tool>",
// at version; the caller adds RequestID, Trace and TargetNode.
func CallOf(p agentauth.Principal, tool, version string) Call {
	return Call{Principal: p.ID, Tenant: p.Tenant, Groups: p.Groups, Scopes: p.Scopes, Tool: tool, Version: version}
}
