package assertion

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/mcpmesh/mcpmesh/internal/tracecontext"
)

// Algorithm is the only signature algorithm minted and accepted.
const Algorithm = "ES256"

// ClaimCall is the name of the private claim that holds what the call is:
// one object, so the registered claims stay as RFC 7519 and RFC 8693 have
// them.
const ClaimCall = "io.mcpmesh/call"

// Bounds on an assertion. Minting refuses to exceed them and verifying
// refuses a token that does; they keep a token small enough for an HTTP
// header and its verification cheap.
const (
	// MaxTTL is the longest lifetime of an assertion: exp - iat.
	MaxTTL = 60 * time.Second
	// MaxTokenBytes bounds the compact serialization.
	MaxTokenBytes = 16 << 10
	// MaxGroups bounds the caller's groups.
	MaxGroups = 32
	// MaxScopes bounds the caller's scopes.
	MaxScopes = 32
	// MaxValueBytes bounds the tenant, each group and scope, the tool,
	// version and request id.
	MaxValueBytes = 128
	// MaxSubjectBytes bounds the subject.
	MaxSubjectBytes = 256
	// maxIDBytes bounds the jti.
	maxIDBytes = 64
)

// NodePathPrefix is the path prefix of every node's SPIFFE ID; the issuer
// of an assertion is spiffe://<trust domain>/mcpmesh/node/<id>.
const NodePathPrefix = "/mcpmesh/node/"

// GatewayPath is the path of a BU's gateway ID, the audience of the
// assertions meant for the BU: spiffe://<trust domain>/mcpmesh/gateway.
const GatewayPath = "/mcpmesh/gateway"

// GatewayID returns the audience of assertions meant for td's BU.
func GatewayID(td spiffeid.TrustDomain) spiffeid.ID {
	id, err := spiffeid.FromPath(td, GatewayPath)
	if err != nil {
		// The path is a constant that spiffeid accepts; only a zero
		// trust domain fails, and it yields the zero ID.
		return spiffeid.ID{}
	}
	return id
}

// NodeName returns the <id> of a node ID spiffe://<td>/mcpmesh/node/<id>,
// and whether id is one.
func NodeName(id spiffeid.ID) (string, bool) {
	name, ok := strings.CutPrefix(id.Path(), NodePathPrefix)
	if !ok || name == "" || strings.Contains(name, "/") {
		return "", false
	}
	return name, true
}

// Call is what the calling node knows of the call it forwards: on whose
// behalf, and what. Mint turns it into an assertion's claims.
type Call struct {
	// Principal is the agent's authenticated principal id as its own BU's
	// node knows it (agentauth.Principal.ID): a SPIFFE ID of the calling
	// trust domain, "oidc:<sub>", "apikey:<id>", "anonymous". Required.
	Principal string
	// Tenant is the principal's tenant in its own BU, or "".
	Tenant string
	// Groups are the principal's groups in its own BU; at most MaxGroups.
	Groups []string
	// Scopes are the principal's OAuth scopes; at most MaxScopes.
	Scopes []string
	// Tool is the tool as the exporting BU names it, "<server>/<tool>"
	// (its registry server name, then the tool): the name its audit
	// records, kill switches and rate limits use, not the importer's
	// "<namespace>.<tool>" alias. Required.
	Tool string
	// Version is the exporter's server version the import pinned, or "".
	Version string
	// RequestID is the calling node's id of the agent's request, so that
	// both BUs record the call under one id. Mint makes one up when "".
	RequestID string
	// Trace is the W3C traceparent of the forwarded call, or "".
	Trace string
	// TraceState is the W3C tracestate that goes with Trace, or "": at
	// most tracecontext.MaxStateMembers members and MaxStateLen
	// characters, and only with a Trace.
	TraceState string
	// TargetNode, when set, pins the assertion to that node of the target
	// BU: no other node of the BU accepts it (see the package doc on
	// replay). Mint a new assertion for each node a call is tried on.
	TargetNode spiffeid.ID
}

// Claims are the contents of a verified assertion.
type Claims struct {
	// Issuer is the calling node (iss, and act.sub).
	Issuer spiffeid.ID
	// Subject is the original caller's principal as its BU knows it (sub).
	Subject string
	// Audience is the receiving BU's gateway ID (aud).
	Audience spiffeid.ID
	// IssuedAt, NotBefore and Expiry are iat, nbf (IssuedAt when absent)
	// and exp.
	IssuedAt, NotBefore, Expiry time.Time
	// ID is the jti.
	ID string
	// Tenant, Groups, Scopes, Tool, Version, RequestID, Trace and
	// TraceState are the fields of Call of the same names.
	Tenant     string
	Groups     []string
	Scopes     []string
	Tool       string
	Version    string
	RequestID  string
	Trace      string
	TraceState string
	// TargetNode is the node the assertion is pinned to, or zero.
	TargetNode spiffeid.ID
}

// TrustDomain is the calling BU's trust domain.
func (c Claims) TrustDomain() spiffeid.TrustDomain { return c.Issuer.TrustDomain() }

// wireClaims is the JSON payload of an assertion.
type wireClaims struct {
	Issuer    string           `json:"iss"`
	Subject   string           `json:"sub"`
	Audience  jwt.Audience     `json:"aud"`
	Actor     *wireActor       `json:"act,omitempty"`
	IssuedAt  *jwt.NumericDate `json:"iat,omitempty"`
	NotBefore *jwt.NumericDate `json:"nbf,omitempty"`
	Expiry    *jwt.NumericDate `json:"exp,omitempty"`
	ID        string           `json:"jti"`
	Call      *wireCall        `json:"io.mcpmesh/call,omitempty"`
}

// wireActor is the RFC 8693 act claim: who acts for the subject.
type wireActor struct {
	Subject string `json:"sub"`
}

// wireCall is the ClaimCall object.
type wireCall struct {
	Tenant     string   `json:"tenant,omitempty"`
	Groups     []string `json:"groups,omitempty"`
	Scope      []string `json:"scope,omitempty"`
	Tool       string   `json:"tool"`
	Version    string   `json:"version,omitempty"`
	RequestID  string   `json:"request_id"`
	Trace      string   `json:"trace,omitempty"`
	TraceState string   `json:"tracestate,omitempty"`
	TargetNode string   `json:"node,omitempty"`
}

// decodeClaims decodes an assertion's payload. It checks only that it is a
// JSON object of the right shape; checkCall and Verify check the values.
func decodeClaims(payload []byte) (wireClaims, error) {
	var w wireClaims
	if err := json.Unmarshal(payload, &w); err != nil {
		return wireClaims{}, refuse(ErrMalformed, "the claims are not a JSON object of the expected shape: %v", err)
	}
	if !bytes.HasPrefix(bytes.TrimLeft(payload, " \t\r\n"), []byte("{")) {
		return wireClaims{}, refuse(ErrMalformed, "the claims are not a JSON object")
	}
	return w, nil
}

// checkValue refuses a claim value that is too long, not UTF-8, or holds
// control characters (it reaches logs, audit records and policies).
func checkValue(field, v string, max int, required bool) error {
	switch {
	case v == "" && required:
		return fmt.Errorf("%s is empty", field)
	case len(v) > max:
		return fmt.Errorf("%s is %d bytes long; at most %d", field, len(v), max)
	case !printable(v):
		return fmt.Errorf("%s holds invalid UTF-8 or control characters", field)
	}
	return nil
}

func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return false
		}
	}
	return true
}

// checkList checks a list of values against its bounds.
func checkList(field string, vs []string, max int) error {
	if len(vs) > max {
		return fmt.Errorf("%s has %d entries; at most %d", field, len(vs), max)
	}
	for i, v := range vs {
		if err := checkValue(fmt.Sprintf("%s[%d]", field, i), v, MaxValueBytes, true); err != nil {
			return err
		}
	}
	return nil
}

// checkCall checks the private claims, the same on minting and verifying.
func checkCall(c *wireCall) error {
	if c == nil {
		return fmt.Errorf("the %s claim is missing", ClaimCall)
	}
	for _, f := range []struct {
		name     string
		v        string
		required bool
	}{{"tool", c.Tool, true}, {"request_id", c.RequestID, true}, {"tenant", c.Tenant, false}, {"version", c.Version, false}} {
		if err := checkValue(f.name, f.v, MaxValueBytes, f.required); err != nil {
			return err
		}
	}
	if err := checkList("groups", c.Groups, MaxGroups); err != nil {
		return err
	}
	if err := checkList("scope", c.Scope, MaxScopes); err != nil {
		return err
	}
	if c.Trace != "" && !tracecontext.Valid(c.Trace) {
		return fmt.Errorf("trace %q is not a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>)", c.Trace)
	}
	if c.TraceState != "" && (c.Trace == "" || !tracecontext.ValidState(c.TraceState)) {
		return fmt.Errorf("tracestate %q is not a W3C tracestate of at most %d members and %d characters with a traceparent", truncateState(c.TraceState), tracecontext.MaxStateMembers, tracecontext.MaxStateLen)
	}
	return nil
}

// checkSubject checks sub: printable and bounded, and when it is a SPIFFE
// ID, one of the issuer's trust domain (a BU speaks only for its own).
func checkSubject(sub string, issuer spiffeid.TrustDomain) error {
	if err := checkValue("sub", sub, MaxSubjectBytes, true); err != nil {
		return err
	}
	if strings.HasPrefix(strings.ToLower(sub), "spiffe:") {
		id, err := spiffeid.FromString(sub)
		if err != nil {
			return fmt.Errorf("sub %q looks like a SPIFFE ID but is not one: %w", sub, err)
		}
		if id.TrustDomain() != issuer {
			return fmt.Errorf("sub %s belongs to trust domain %q, not to the issuer's %q", sub, id.TrustDomain().Name(), issuer.Name())
		}
	}
	return nil
}

// truncateState shortens a refused tracestate for an error message.
func truncateState(ts string) string {
	if len(ts) > 64 {
		return ts[:64] + "…"
	}
	return ts
}
