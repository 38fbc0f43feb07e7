package agentauth

import (
	"context"
	"crypto/sha256"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// verified is what a bearer JWT's verifier established: the principal, the
// token's expiry, and the id of the key that signed it.
type verified struct {
	p   Principal
	exp time.Time
	kid string
}

// bearerAlgorithms are the signature algorithms of either kind of bearer
// JWT; bearerKind parses with them, each verifier with its own list.
var bearerAlgorithms = func() []jose.SignatureAlgorithm {
	algs := slices.Clone(oidcAlgorithms)
	for _, a := range jwtsvidAlgorithms {
		if !slices.Contains(algs, a) {
			algs = append(algs, a)
		}
	}
	return algs
}()

// bearerJWT authenticates a bearer token that is not an API key: from the
// cache when the same token verified before and has not expired, else by
// the verifier bearerKind picks.
func (a *Authenticator) bearerJWT(ctx context.Context, token string) (Principal, error) {
	sum := sha256.Sum256([]byte(token))
	now := a.now()
	if e, ok := a.cache.get(sum, now); ok && a.keyTrusted(e.p.Method, e.kid) {
		return e.p, nil
	}
	m, err := a.bearerKind(token)
	if err != nil {
		return Principal{}, err
	}
	var v verified
	switch m {
	case MethodOIDC:
		v, err = a.oidc.verify(ctx, token)
		v.p.TrustDomain = a.cfg.TrustDomain.Name()
	case MethodJWTSVID:
		v, err = a.verifyJWTSVID(token)
	}
	if err != nil {
		return v.p, err
	}
	a.cache.put(sum, v, now)
	return v.p, nil
}

// bearerKind says which verifier a bearer JWT goes to, reading its iss and
// sub without trusting them: iss equal to the OIDC issuer means OIDC; else
// a spiffe:// sub means JWT-SVID; else the OIDC verifier if one is on (it
// says what is wrong with the token), else the JWT-SVID one if it is on.
// A method the token belongs to but that is off is refused as "disabled".
func (a *Authenticator) bearerKind(token string) (Method, error) {
	oidcOn := a.oidc != nil && a.enabled(MethodOIDC)
	var claims struct {
		Issuer  string `json:"iss"`
		Subject string `json:"sub"`
	}
	if tok, err := jwt.ParseSigned(token, bearerAlgorithms); err == nil {
		tok.UnsafeClaimsWithoutVerification(&claims)
	}
	switch {
	case claims.Issuer != "" && a.oidc != nil && claims.Issuer == a.oidc.cfg.Issuer:
		if !oidcOn {
			return "", refuse(MethodOIDC, "disabled", "access tokens of %s are not accepted by this node (mcp.auth.methods)", claims.Issuer)
		}
		return MethodOIDC, nil
	case strings.HasPrefix(claims.Subject, "spiffe://"):
		if !a.jwtsvidOn() {
			return "", refuse(MethodJWTSVID, "disabled", "JWT-SVIDs are not accepted by this node (mcp.auth.methods); authenticate with an API key (mcpmesh apikey create) or an X.509-SVID")
		}
		return MethodJWTSVID, nil
	case oidcOn:
		return MethodOIDC, nil
	case a.jwtsvidOn():
		return MethodJWTSVID, nil
	}
	return "", refuse("", "unsupported", "bearer JWTs are not accepted by this node (neither mcp.auth.oidc nor jwt-svid in mcp.auth.methods); authenticate with an API key (mcpmesh apikey create) or an X.509-SVID")
}

// keyTrusted reports whether the key that signed a cached token of method
// m is still in the key set this node holds, so that a withdrawn key stops
// its tokens at once rather than at their expiry.
func (a *Authenticator) keyTrusted(m Method, kid string) bool {
	switch m {
	case MethodOIDC:
		return a.oidc != nil && a.oidc.hasKey(kid)
	case MethodJWTSVID:
		if !a.jwtsvidOn() {
			return false
		}
		b, err := a.cfg.JWTSVID.Bundles.GetJWTBundleForTrustDomain(a.cfg.TrustDomain)
		return err == nil && b.HasJWTAuthority(kid)
	}
	return false
}
