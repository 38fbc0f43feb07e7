package agentauth

import (
	"errors"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
)

// JWTSVIDConfig says how the front door checks JWT-SVIDs (MethodJWTSVID).
// Their validity window is checked against the system clock, with go-spiffe's
// leeway of one minute.
type JWTSVIDConfig struct {
	// Audience is this node's name as JWT-SVIDs for it carry it in aud,
	// e.g. spiffe://hr.example.corp/mcpmesh/gateway. Required.
	Audience string
	// Bundles holds the JWT authorities (signing keys) of the BU's trust
	// domain: the embedded CA's JWT bundle, or the one the SPIRE Workload
	// API keeps current. Required.
	Bundles jwtbundle.Source
}

// jwtsvidAlgorithms are the signature algorithms go-spiffe accepts in a
// JWT-SVID (jwtsvid's list is not exported).
var jwtsvidAlgorithms = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512,
	jose.ES256, jose.ES384, jose.ES512,
	jose.PS256, jose.PS384, jose.PS512,
}

func (a *Authenticator) jwtsvidOn() bool {
	return a.cfg.JWTSVID != nil && a.cfg.JWTSVID.Bundles != nil && a.enabled(MethodJWTSVID)
}

// verifyJWTSVID checks a bearer JWT-SVID with go-spiffe's
// jwtsvid.ParseAndValidate against the trust domain's JWT bundle, then the
// agent rules SVIDs share. Before that it reads the unverified sub and kid
// to refuse a foreign trust domain or an unknown key with a precise reason;
// after a refusal by ParseAndValidate it finds out which check failed.
func (a *Authenticator) verifyJWTSVID(token string) (verified, error) {
	cfg := a.cfg.JWTSVID
	tok, err := jwt.ParseSigned(token, jwtsvidAlgorithms)
	if err != nil {
		return verified{}, refuse(MethodJWTSVID, "malformed", "the bearer token is not a JWT-SVID: not a signed JWT with an algorithm JWT-SVIDs use (ES256, ES384, ES512, RS256…, PS256…)")
	}
	var unverified jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return verified{}, refuse(MethodJWTSVID, "malformed", "the bearer JWT-SVID's claims are not a JSON object of registered claims")
	}
	id, err := spiffeid.FromString(unverified.Subject)
	if err != nil {
		return verified{}, refuse(MethodJWTSVID, "malformed", "the bearer JWT's sub is not a SPIFFE ID (%v); JWT-SVIDs name their workload in sub", err)
	}
	if id.TrustDomain() != a.cfg.TrustDomain {
		return verified{}, refuse(MethodJWTSVID, "foreign-trust-domain", "%s belongs to trust domain %s; agents of this node are in %s", id, id.TrustDomain(), a.cfg.TrustDomain)
	}
	kid := tok.Headers[0].KeyID
	if kid == "" {
		return verified{}, refuse(MethodJWTSVID, "malformed", "the JWT-SVID of %s names no signing key (kid)", id)
	}
	bundle, err := cfg.Bundles.GetJWTBundleForTrustDomain(a.cfg.TrustDomain)
	if err != nil {
		a.logger.Error("agent auth: no JWT bundle for the trust domain", "trust_domain", a.cfg.TrustDomain.String(), "error", err)
		return verified{}, refuse(MethodJWTSVID, "error", "the JWT-SVID of %s could not be checked: this node has no JWT bundle of %s yet; retry", id, a.cfg.TrustDomain)
	}
	authority, ok := bundle.FindJWTAuthority(kid)
	if !ok {
		return verified{}, refuse(MethodJWTSVID, "unknown-key", "the JWT-SVID of %s is signed with key %q, which is not a JWT authority of %s; get a fresh JWT-SVID", id, kid, a.cfg.TrustDomain)
	}
	svid, err := jwtsvid.ParseAndValidate(token, bundle, []string{cfg.Audience})
	if err != nil {
		return verified{}, a.jwtsvidRefusal(tok, authority, id, kid, err)
	}
	p, err := a.agent(svid.ID, MethodJWTSVID)
	if err != nil {
		return verified{}, err
	}
	return verified{p: p, exp: svid.Expiry, kid: kid}, nil
}

// jwtsvidRefusal says why ParseAndValidate refused a token, by repeating
// its checks in its order (signature, then expiry and audience); go-spiffe
// reports them as text only.
func (a *Authenticator) jwtsvidRefusal(tok *jwt.JSONWebToken, authority any, id spiffeid.ID, kid string, err error) *Error {
	var claims jwt.Claims
	if tok.Claims(authority, &claims) != nil {
		return refuse(MethodJWTSVID, "bad-signature", "the JWT-SVID of %s does not verify with key %q of %s", id, kid, a.cfg.TrustDomain)
	}
	if claims.Expiry == nil {
		return refuse(MethodJWTSVID, "invalid", "the JWT-SVID of %s has no exp claim; tokens without an expiry are not accepted", id)
	}
	aud := a.cfg.JWTSVID.Audience
	verr := claims.Validate(jwt.Expected{AnyAudience: jwt.Audience{aud}, Time: time.Now()})
	switch {
	case errors.Is(verr, jwt.ErrExpired):
		return refuse(MethodJWTSVID, "expired", "the JWT-SVID of %s expired at %s; fetch a fresh one", id, claims.Expiry.Time().UTC().Format(time.RFC3339))
	case errors.Is(verr, jwt.ErrNotValidYet), errors.Is(verr, jwt.ErrIssuedInTheFuture):
		return refuse(MethodJWTSVID, "not-yet-valid", "the JWT-SVID of %s is not valid yet (nbf or iat in the future; check the clocks)", id)
	case errors.Is(verr, jwt.ErrInvalidAudience):
		return refuse(MethodJWTSVID, "wrong-audience", "the JWT-SVID of %s is for %q, not this node: fetch one with audience %s", id, []string(claims.Audience), aud)
	}
	return refuse(MethodJWTSVID, "invalid", "the JWT-SVID of %s was refused: %v", id, err)
}
