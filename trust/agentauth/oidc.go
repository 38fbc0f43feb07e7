package agentauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/mcpmesh/mcpmesh/trust/jwks"
)

// MethodOIDC is a bearer JWT from the BU's OAuth 2.1 / OIDC provider.
const MethodOIDC Method = "oidc"

// OIDCConfig says which provider's access tokens the front door accepts.
type OIDCConfig struct {
	// Issuer must equal the token's iss.
	Issuer string
	// JWKSURL is where the provider publishes its signing keys.
	JWKSURL string
	// Audience is this node's resource URI (RFC 8707), e.g.
	// https://hr-mcp.corp.example/mcp; the token's aud must contain it.
	Audience string
	// TenantClaim, GroupsClaim name the claims mapped to the principal's
	// tenant (a string) and groups (a string array). Defaults "tenant",
	// "groups".
	TenantClaim, GroupsClaim string
	// RequiredScopes must all be in the token's scope (a space-separated
	// string, or scp as an array); otherwise 403 insufficient_scope.
	RequiredScopes []string
	// Leeway is the clock skew tolerated on exp, nbf and iat. Default 30s.
	Leeway time.Duration
	// RefreshInterval is how often the key set is fetched again. Default 5m.
	// An unknown key id triggers a fetch at most every MinRefreshInterval
	// (default 10s), so rotated keys are picked up at once and forged key
	// ids cannot make the node hammer the provider.
	RefreshInterval, MinRefreshInterval time.Duration
	// HTTPClient fetches the key set. Default: 10s timeout.
	HTTPClient *http.Client
}

// oidcAlgorithms are the signature algorithms accepted; never "none" or HMAC.
var oidcAlgorithms = []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.RS256, jose.PS256, jose.EdDSA}

// oidcVerifier checks access tokens against the provider's cached key set.
type oidcVerifier struct {
	cfg OIDCConfig
	now func() time.Time

	keys *jwks.Set
}

func newOIDCVerifier(cfg OIDCConfig, now func() time.Time) *oidcVerifier {
	if cfg.TenantClaim == "" {
		cfg.TenantClaim = "tenant"
	}
	if cfg.GroupsClaim == "" {
		cfg.GroupsClaim = "groups"
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = 30 * time.Second
	}
	keys := jwks.New(jwks.Config{URL: cfg.JWKSURL, RefreshInterval: cfg.RefreshInterval, MinRefreshInterval: cfg.MinRefreshInterval, HTTPClient: cfg.HTTPClient}, now)
	return &oidcVerifier{cfg: cfg, now: now, keys: keys}
}

// key returns the provider's signing key kid (package jwks fetches and
// caches the set).
func (v *oidcVerifier) key(ctx context.Context, kid string) (*jose.JSONWebKey, error) {
	k, err := v.keys.Key(ctx, kid)
	var missing *jwks.MissingError
	switch {
	case errors.As(err, &missing) && missing.Fetch != nil:
		return nil, fmt.Errorf("key %q is not known and the provider's key set could not be fetched: %v", kid, missing.Fetch)
	case err != nil:
		return nil, fmt.Errorf("key %q is not in the provider's key set", kid)
	}
	return k, nil
}

// hasKey reports whether the key set the verifier holds now (without
// fetching) has signing key kid: a cached token needs its key still there.
func (v *oidcVerifier) hasKey(kid string) bool { return v.keys.Has(kid) }

// verify checks a bearer JWT and returns its principal.
func (v *oidcVerifier) verify(ctx context.Context, token string) (verified, error) {
	tok, err := jwt.ParseSigned(token, oidcAlgorithms)
	if err != nil {
		return verified{}, refuse(MethodOIDC, "malformed", "the bearer token is not a signed JWT with an accepted algorithm (%s)", algNames())
	}
	if len(tok.Headers) != 1 || tok.Headers[0].KeyID == "" {
		return verified{}, refuse(MethodOIDC, "malformed", "the bearer JWT names no key (kid)")
	}
	key, err := v.key(ctx, tok.Headers[0].KeyID)
	if err != nil {
		return verified{}, refuse(MethodOIDC, "unknown-key", "%v", err)
	}
	var std jwt.Claims
	var extra map[string]any
	if err := tok.Claims(key.Key, &std, &extra); err != nil {
		return verified{}, refuse(MethodOIDC, "bad-signature", "the bearer JWT's signature does not verify with key %q", tok.Headers[0].KeyID)
	}
	if std.Expiry == nil {
		return verified{}, refuse(MethodOIDC, "invalid", "the bearer JWT has no exp claim; tokens without an expiry are not accepted")
	}
	err = std.ValidateWithLeeway(jwt.Expected{Issuer: v.cfg.Issuer, AnyAudience: jwt.Audience{v.cfg.Audience}, Time: v.now()}, v.cfg.Leeway)
	switch {
	case errors.Is(err, jwt.ErrExpired):
		return verified{}, refuse(MethodOIDC, "expired", "the bearer JWT expired at %s", std.Expiry.Time().UTC().Format(time.RFC3339))
	case errors.Is(err, jwt.ErrNotValidYet), errors.Is(err, jwt.ErrIssuedInTheFuture):
		return verified{}, refuse(MethodOIDC, "not-yet-valid", "the bearer JWT is not valid yet (nbf or iat in the future)")
	case errors.Is(err, jwt.ErrInvalidIssuer):
		return verified{}, refuse(MethodOIDC, "wrong-issuer", "the bearer JWT's issuer %q is not this node's identity provider %q", std.Issuer, v.cfg.Issuer)
	case errors.Is(err, jwt.ErrInvalidAudience):
		return verified{}, refuse(MethodOIDC, "wrong-audience", "the bearer JWT is not for this resource: its audience %v does not contain %q (request the token with resource=%s)", []string(std.Audience), v.cfg.Audience, v.cfg.Audience)
	case err != nil:
		return verified{}, refuse(MethodOIDC, "invalid", "the bearer JWT's claims are invalid: %v", err)
	}
	if std.Subject == "" {
		return verified{}, refuse(MethodOIDC, "invalid", "the bearer JWT has no sub claim")
	}
	p := Principal{ID: "oidc:" + std.Subject, Method: MethodOIDC, Scopes: scopesOf(extra)}
	p.Tenant, _ = extra[v.cfg.TenantClaim].(string)
	p.Groups = stringsOf(extra[v.cfg.GroupsClaim])
	for _, s := range v.cfg.RequiredScopes {
		if !slices.Contains(p.Scopes, s) {
			return verified{p: p}, &Error{Method: MethodOIDC, Reason: "insufficient-scope", Message: fmt.Sprintf("the bearer JWT lacks scope %q; request a token with scope %q", s, strings.Join(v.cfg.RequiredScopes, " ")), insufficientScope: true}
		}
	}
	return verified{p: p, exp: std.Expiry.Time(), kid: tok.Headers[0].KeyID}, nil
}

func algNames() string {
	var names []string
	for _, a := range oidcAlgorithms {
		names = append(names, string(a))
	}
	return strings.Join(names, ", ")
}

// scopesOf reads scope (RFC 8693/9068: space-separated) or scp (an array).
func scopesOf(claims map[string]any) []string {
	if s, ok := claims["scope"].(string); ok {
		return strings.Fields(s)
	}
	return stringsOf(claims["scp"])
}

func stringsOf(v any) []string {
	arr, _ := v.([]any)
	var out []string
	for _, x := range arr {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// OIDCVerifier checks access tokens of the BU's OIDC provider for other
// doors than the front door: node/adminauth signs administrators in with
// them, so that a person's agent and admin identities are the same
// "oidc:<sub>". It is safe for concurrent use.
type OIDCVerifier struct{ v *oidcVerifier }

// NewOIDCVerifier returns a verifier of cfg's provider; cfg.Audience is
// the resource the tokens must be for.
func NewOIDCVerifier(cfg OIDCConfig) *OIDCVerifier {
	return &OIDCVerifier{v: newOIDCVerifier(cfg, time.Now)}
}

// Verify checks token (signature against the provider's key set, issuer,
// audience, expiry, required scopes) and returns its principal: ID
// "oidc:<sub>", its groups and scopes. A refusal is an *Error.
func (o *OIDCVerifier) Verify(ctx context.Context, token string) (Principal, error) {
	vd, err := o.v.verify(ctx, token)
	if err != nil {
		return Principal{}, err
	}
	return vd.p, nil
}
