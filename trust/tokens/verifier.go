package tokens

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/modelcontextprotocol/go-sdk/auth"

	"github.com/mcpmesh/mcpmesh/trust/jwks"
)

// ErrInvalid wraps every reason a token is refused; the message says which.
var ErrInvalid = errors.New("invalid mcpmesh token")

// VerifierConfig says whose tokens an upstream accepts.
type VerifierConfig struct {
	// Issuer must equal the token's iss: the BU's issuer,
	// spiffe://<trust domain>/mcpmesh/gateway. Required.
	Issuer string
	// Audience must be the token's aud: the server's registry name, such
	// as corp.hr/directory. Required.
	Audience string
	// JWKSURL is the node's key set, http(s)://<node>/.well-known/mcpmesh/jwks.json.
	// Required.
	JWKSURL string
	// Leeway is the clock skew tolerated on exp, nbf and iat. Default 5s.
	Leeway time.Duration
	// RefreshInterval is how often the key set is fetched again. Default 5m.
	RefreshInterval time.Duration
	// MinRefreshInterval bounds refetches for unknown key ids, so forged
	// ids cannot make the server hammer the node. Default 5s.
	MinRefreshInterval time.Duration
	// HTTPClient fetches the key set. Default: a client with a 10s timeout.
	HTTPClient *http.Client
}

// Verifier checks tokens minted by a node of one BU for one upstream. It is
// safe for concurrent use.
type Verifier struct {
	cfg VerifierConfig
	now func() time.Time

	keys *jwks.Set
}

// NewVerifier returns a Verifier; the key set is fetched on first use. It
// takes WithClock.
func NewVerifier(cfg VerifierConfig, opts ...Option) (*Verifier, error) {
	if cfg.Issuer == "" || cfg.Audience == "" || cfg.JWKSURL == "" {
		return nil, errors.New("tokens: a verifier needs the issuer, its own audience and the node's key set URL")
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = 5 * time.Second
	}
	if cfg.MinRefreshInterval == 0 {
		cfg.MinRefreshInterval = 5 * time.Second
	}
	o := newOptions(opts)
	keys := jwks.New(jwks.Config{URL: cfg.JWKSURL, RefreshInterval: cfg.RefreshInterval, MinRefreshInterval: cfg.MinRefreshInterval, HTTPClient: cfg.HTTPClient}, o.now)
	return &Verifier{cfg: cfg, now: o.now, keys: keys}, nil
}

// Verify checks token and returns its claims. Every refusal wraps
// ErrInvalid and says what was wrong, never repeating the token.
func (v *Verifier) Verify(ctx context.Context, token string) (Claims, error) {
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return Claims{}, fmt.Errorf("%w: not a compact JWS signed with ES256", ErrInvalid)
	}
	if len(tok.Headers) != 1 || tok.Headers[0].KeyID == "" {
		return Claims{}, fmt.Errorf("%w: the token names no key (kid)", ErrInvalid)
	}
	kid := tok.Headers[0].KeyID
	key, err := v.key(ctx, kid)
	if err != nil {
		return Claims{}, err
	}
	var c upstreamClaims
	if err := tok.Claims(key.Key, &c); err != nil {
		return Claims{}, fmt.Errorf("%w: the signature does not verify with key %q", ErrInvalid, kid)
	}
	if c.Expiry == nil || c.IssuedAt == nil {
		return Claims{}, fmt.Errorf("%w: the token lacks exp or iat", ErrInvalid)
	}
	err = c.Claims.ValidateWithLeeway(jwt.Expected{Issuer: v.cfg.Issuer, AnyAudience: jwt.Audience{v.cfg.Audience}, Time: v.now()}, v.cfg.Leeway)
	switch {
	case errors.Is(err, jwt.ErrExpired):
		return Claims{}, fmt.Errorf("%w: it expired at %s", ErrInvalid, c.Expiry.Time().UTC().Format(time.RFC3339))
	case errors.Is(err, jwt.ErrNotValidYet), errors.Is(err, jwt.ErrIssuedInTheFuture):
		return Claims{}, fmt.Errorf("%w: it is not valid yet (check the clocks of node and server)", ErrInvalid)
	case errors.Is(err, jwt.ErrInvalidIssuer):
		return Claims{}, fmt.Errorf("%w: issuer %q is not %q", ErrInvalid, c.Issuer, v.cfg.Issuer)
	case errors.Is(err, jwt.ErrInvalidAudience):
		return Claims{}, fmt.Errorf("%w: it is for %v, not for %q", ErrInvalid, []string(c.Audience), v.cfg.Audience)
	case err != nil:
		return Claims{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if c.Subject == "" || len(c.Caller) == 0 {
		return Claims{}, fmt.Errorf("%w: the token names no subject or caller chain", ErrInvalid)
	}
	return Claims{Issuer: c.Issuer, Subject: c.Subject, Audience: v.cfg.Audience, IssuedAt: c.IssuedAt.Time(), Expiry: c.Expiry.Time(),
		ID: c.ID, Tenant: c.Tenant, Caller: c.Caller, RequestID: c.RequestID}, nil
}

// key returns the node's signing key kid (package jwks fetches and caches
// the set); only a valid public key is used.
func (v *Verifier) key(ctx context.Context, kid string) (*jose.JSONWebKey, error) {
	k, err := v.keys.Key(ctx, kid)
	var missing *jwks.MissingError
	switch {
	case errors.As(err, &missing) && missing.Fetch != nil:
		return nil, fmt.Errorf("%w: key %q is not known and the key set could not be fetched: %w", ErrInvalid, kid, missing.Fetch)
	case err != nil || !k.Valid() || !k.IsPublic():
		return nil, fmt.Errorf("%w: key %q is not in the key set at %s (retired and expired, or not the node's)", ErrInvalid, kid, v.cfg.JWKSURL)
	}
	return k, nil
}

// ExtraClaims is the key of the Claims in a go-sdk auth.TokenInfo's Extra
// that TokenVerifier returns.
const ExtraClaims = "io.mcpmesh/claims"

// TokenVerifier adapts v to go-sdk's auth.RequireBearerToken middleware. The
// TokenInfo's UserID is the issuer, not the caller: one legacy session of
// the node carries the requests of many agents, and go-sdk refuses a
// session's requests from another UserID than the one that opened it. The
// claims are in Extra[ExtraClaims] (ClaimsFromTokenInfo).
func (v *Verifier) TokenVerifier() auth.TokenVerifier {
	return func(ctx context.Context, token string, _ *http.Request) (*auth.TokenInfo, error) {
		c, err := v.Verify(ctx, token)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", auth.ErrInvalidToken, err)
		}
		return &auth.TokenInfo{UserID: c.Issuer, Expiration: c.Expiry, Extra: map[string]any{ExtraClaims: c}}, nil
	}
}

// ClaimsFromTokenInfo returns the claims TokenVerifier verified.
func ClaimsFromTokenInfo(ti *auth.TokenInfo) (Claims, bool) {
	if ti == nil {
		return Claims{}, false
	}
	c, ok := ti.Extra[ExtraClaims].(Claims)
	return c, ok
}
