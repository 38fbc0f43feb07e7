// Package agentauth authenticates agents at a node's MCP front door and
// carries the resulting Principal to the code that serves the call.
//
// Credentials: X.509-SVIDs of the BU's trust domain presented over mTLS,
// per-tenant API keys (package trust/apikey) sent as
// "Authorization: Bearer mcpk_…", access tokens (JWTs) of the BU's OAuth
// 2.1 / OIDC provider (oidc.go), JWT-SVIDs of the BU's trust domain sent as
// bearer tokens (jwtsvid.go), and anonymous access on routes a node's
// config names.
//
// A bearer token goes to exactly one verifier, chosen before anything in it
// is trusted: a token starting "mcpk_" is an API key; otherwise it must be a
// signed JWT, and one whose iss is the configured OIDC issuer is an OIDC
// access token; else one whose sub is a spiffe:// ID is a JWT-SVID; anything
// else goes to the OIDC verifier when one is configured (which then says what
// is wrong), or is refused. The verifier alone decides what to accept.
//
// JWTs that verify are cached (cache.go), keyed by the SHA-256 of the token,
// until their exp, so that a busy agent pays one signature check rather
// than one per call; a cached token is still refused once its signing key
// has left the key set. API keys are not cached: a revocation applies at
// once.
//
// SVIDs of both kinds name agents by the same rule: the SPIFFE ID must be in
// the BU's trust domain and under SVIDPathPrefix, and SVIDTenants map its
// path to a tenant.
//
// A credential that is presented and fails is refused even on an anonymous
// route: a client that meant to authenticate is told, not silently
// downgraded.
//
// Admin authentication (/v1/) is package node/adminauth; it shares nothing
// with this one but the trust domain.
package agentauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/mcpmesh/mcpmesh/registry/state"
	"github.com/mcpmesh/mcpmesh/trust/apikey"
	"github.com/mcpmesh/mcpmesh/trust/mtls"
)

// Method is how a principal authenticated.
type Method string

// The methods.
const (
	MethodSVID      Method = "x509-svid"
	MethodJWTSVID   Method = "jwt-svid"
	MethodAPIKey    Method = "api-key"
	MethodAnonymous Method = "anonymous"
	// MethodFederation is a caller of another BU, vouched for by its node
	// with a federation assertion (federation/assertion), or that node
	// itself for the requests of a session that call no tool.
	MethodFederation Method = "federation"
)

// Principal is who is calling.
type Principal struct {
	// ID is stable per caller: the SPIFFE ID of an X.509- or JWT-SVID,
	// "apikey:<id>" for an API key, "oidc:<sub>" for an OIDC access token,
	// "anonymous" for anonymous access.
	ID          string   `json:"id"`
	TrustDomain string   `json:"trustDomain,omitempty"`
	Tenant      string   `json:"tenant,omitempty"`
	Groups      []string `json:"groups,omitempty"`
	Scopes      []string `json:"scopes,omitempty"`
	Method      Method   `json:"method"`
}

// Anonymous is the principal of an unauthenticated request on an anonymous route.
var Anonymous = Principal{ID: "anonymous", Method: MethodAnonymous}

// TenantRule gives agents whose SVID path starts with PathPrefix a tenant.
type TenantRule struct {
	PathPrefix string
	Tenant     string
}

// Config configures an Authenticator.
type Config struct {
	// TrustDomain is the BU's; agent SVIDs must belong to it.
	TrustDomain spiffeid.TrustDomain
	// Methods are the enabled methods (MethodSVID, MethodAPIKey,
	// MethodOIDC, MethodJWTSVID).
	Methods []Method
	// SVIDPathPrefix is the SPIFFE ID path prefix of agents, e.g.
	// "/agent/", for X.509- and JWT-SVIDs alike.
	SVIDPathPrefix string
	// SVIDTenants map SVID paths to tenants; the longest prefix wins.
	SVIDTenants []TenantRule
	// AnonymousRoutes are the /mcp paths served without a credential; a
	// trailing "/*" matches a prefix.
	AnonymousRoutes []string
	// OIDC, when set, accepts the provider's access tokens (MethodOIDC).
	OIDC *OIDCConfig
	// JWTSVID, when set, accepts JWT-SVIDs (MethodJWTSVID).
	JWTSVID *JWTSVIDConfig
	// TokenCacheSize bounds how many verified bearer JWTs are remembered.
	// Zero means 10000; a negative value turns the cache off.
	TokenCacheSize int
	// ResourceMetadataURL is where this node's Protected Resource Metadata
	// (RFC 9728) is served; refusals point OAuth clients to it.
	ResourceMetadataURL string
}

// KeyStore looks up API keys; the registry state implements it.
type KeyStore interface {
	APIKey(id string) (state.APIKey, error)
}

// Authenticator checks agents' credentials. It is safe for concurrent use.
type Authenticator struct {
	cfg      Config
	keys     KeyStore
	oidc     *oidcVerifier
	cache    *tokenCache
	now      func() time.Time
	logger   *slog.Logger
	observe  func(Method, string)
	refusals func(*http.Request, *Error)
	withInfo http.Handler
}

// Option configures New.
type Option func(*Authenticator)

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return func(a *Authenticator) { a.logger = l } }

// WithClock sets the clock that checks key expiry; the default is time.Now.
func WithClock(now func() time.Time) Option { return func(a *Authenticator) { a.now = now } }

// WithObserver is called once per request with the method tried ("" when
// none) and the outcome: "ok" or a short reason such as "revoked".
func WithObserver(f func(m Method, outcome string)) Option {
	return func(a *Authenticator) { a.observe = f }
}

// WithRefusals calls f with every refused request and why, before the
// refusal is written: the node audits refusals there. f must not write to
// the request.
func WithRefusals(f func(r *http.Request, e *Error)) Option {
	return func(a *Authenticator) { a.refusals = f }
}

// New returns an Authenticator over the given key store.
func New(cfg Config, keys KeyStore, opts ...Option) *Authenticator {
	a := &Authenticator{cfg: cfg, keys: keys, now: time.Now, logger: slog.New(slog.DiscardHandler), observe: func(Method, string) {}}
	for _, o := range opts {
		o(a)
	}
	if cfg.OIDC != nil {
		a.oidc = newOIDCVerifier(*cfg.OIDC, func() time.Time { return a.now() })
	}
	switch {
	case cfg.TokenCacheSize == 0:
		a.cache = newTokenCache(defaultTokenCacheSize)
	case cfg.TokenCacheSize > 0:
		a.cache = newTokenCache(cfg.TokenCacheSize)
	}
	return a
}

// Error is a refused credential: Reason is short and fixed (for metrics),
// Message says what was wrong and what to do, without the credential.
type Error struct {
	Method  Method
	Reason  string
	Message string
	// insufficientScope marks a valid token without a required scope:
	// 403 and a step-up challenge rather than 401.
	insufficientScope bool
}

// Error returns the message.
func (e *Error) Error() string { return e.Message }

func refuse(m Method, reason, format string, args ...any) *Error {
	return &Error{Method: m, Reason: reason, Message: fmt.Sprintf(format, args...)}
}

func (a *Authenticator) enabled(m Method) bool { return slices.Contains(a.cfg.Methods, m) }

// Authenticate returns the request's principal, or an *Error.
func (a *Authenticator) Authenticate(r *http.Request) (Principal, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, token, _ := strings.Cut(h, " ")
		token = strings.TrimSpace(token)
		if !strings.EqualFold(scheme, "Bearer") || token == "" {
			return Principal{}, refuse("", "malformed", "the Authorization header must be `Bearer <token>`")
		}
		if strings.HasPrefix(token, apikey.Prefix) {
			return a.apiKey(token)
		}
		return a.bearerJWT(r.Context(), token)
	}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		return a.svid(r)
	}
	if a.anonymous(r.URL.Path) {
		return Anonymous, nil
	}
	var ways []string
	if a.oidc != nil && a.enabled(MethodOIDC) {
		ways = append(ways, "an access token of "+a.oidc.cfg.Issuer+" for "+a.oidc.cfg.Audience)
	}
	if a.jwtsvidOn() {
		ways = append(ways, "a JWT-SVID of "+a.cfg.TrustDomain.String()+" for "+a.cfg.JWTSVID.Audience)
	}
	if a.enabled(MethodAPIKey) {
		ways = append(ways, "an API key as `Authorization: Bearer mcpk_…`")
	}
	if a.enabled(MethodSVID) {
		ways = append(ways, "an X.509-SVID of "+a.cfg.TrustDomain.String()+" over mTLS")
	}
	how := "none is accepted (mcp.auth.methods is empty)"
	switch len(ways) {
	case 0:
	case 1:
		how = ways[0]
	default:
		how = strings.Join(ways[:len(ways)-1], ", ") + ", or " + ways[len(ways)-1]
	}
	return Principal{}, refuse("", "missing", "%s needs a credential: %s", path.Clean(r.URL.Path), how)
}

func (a *Authenticator) apiKey(token string) (Principal, error) {
	if !a.enabled(MethodAPIKey) {
		return Principal{}, refuse(MethodAPIKey, "disabled", "API keys are not accepted by this node (mcp.auth.methods)")
	}
	id, err := apikey.Parse(token)
	if err != nil {
		return Principal{}, refuse(MethodAPIKey, "malformed", "%v", err)
	}
	rec, err := a.keys.APIKey(id)
	if errors.Is(err, state.ErrNotFound) {
		return Principal{}, refuse(MethodAPIKey, "unknown", "API key %s is not known to this node", id)
	}
	if err != nil {
		a.logger.Error("agent auth: API key lookup failed", "key_id", id, "error", err)
		return Principal{}, refuse(MethodAPIKey, "error", "API key %s could not be checked; retry", id)
	}
	if !apikey.Matches(token, rec.Hash) {
		return Principal{}, refuse(MethodAPIKey, "mismatch", "API key %s: the secret does not match", id)
	}
	if ok, why := rec.Usable(a.now()); !ok {
		reason := "expired"
		if rec.RevokedAt != nil {
			reason = "revoked"
		}
		return Principal{}, refuse(MethodAPIKey, reason, "%s", why)
	}
	return Principal{ID: "apikey:" + rec.ID, TrustDomain: a.cfg.TrustDomain.Name(), Tenant: rec.Tenant,
		Groups: rec.Groups, Scopes: rec.Scopes, Method: MethodAPIKey}, nil
}

func (a *Authenticator) svid(r *http.Request) (Principal, error) {
	if !a.enabled(MethodSVID) {
		return Principal{}, refuse(MethodSVID, "disabled", "X.509-SVIDs are not accepted from agents by this node (mcp.auth.methods)")
	}
	id, err := mtls.PeerID(r.TLS)
	if err != nil {
		return Principal{}, refuse(MethodSVID, "malformed", "the client certificate is not an X.509-SVID: %v", err)
	}
	return a.agent(id, MethodSVID)
}

// agent returns the principal of an SVID's SPIFFE ID, authenticated by
// method m, if the ID names an agent of this node: it must be in the BU's
// trust domain and under SVIDPathPrefix. Its tenant comes from SVIDTenants.
func (a *Authenticator) agent(id spiffeid.ID, m Method) (Principal, error) {
	if id.TrustDomain() != a.cfg.TrustDomain {
		return Principal{}, refuse(m, "foreign-trust-domain", "%s belongs to trust domain %s; agents of this node are in %s", id, id.TrustDomain(), a.cfg.TrustDomain)
	}
	if !strings.HasPrefix(id.Path(), a.cfg.SVIDPathPrefix) {
		return Principal{}, refuse(m, "not-agent", "%s is not an agent: agent SVIDs have paths under %s", id, a.cfg.SVIDPathPrefix)
	}
	p := Principal{ID: id.String(), TrustDomain: id.TrustDomain().Name(), Method: m}
	best := -1
	for _, rule := range a.cfg.SVIDTenants {
		if strings.HasPrefix(id.Path(), rule.PathPrefix) && len(rule.PathPrefix) > best {
			p.Tenant, best = rule.Tenant, len(rule.PathPrefix)
		}
	}
	return p, nil
}

func (a *Authenticator) anonymous(p string) bool {
	p = path.Clean(p)
	for _, route := range a.cfg.AnonymousRoutes {
		if prefix, ok := strings.CutSuffix(route, "/*"); ok {
			if p == prefix || strings.HasPrefix(p, prefix+"/") {
				return true
			}
			continue
		}
		if p == route {
			return true
		}
	}
	return false
}

// CodeUnauthenticated is the JSON-RPC error code in a refusal's body
// (implementation-defined server error range).
const CodeUnauthenticated = -32001

// Middleware authenticates every request and refuses those without a
// principal: 401, a WWW-Authenticate challenge, and a JSON-RPC error body
// saying what was wrong. The principal reaches next in the request's
// context (FromContext) and, for go-sdk handlers, in the request's
// auth.TokenInfo (FromTokenInfo); go-sdk then also refuses a session's
// requests from any other principal than the one that opened it.
func (a *Authenticator) Middleware(next http.Handler) http.Handler {
	withInfo := Established(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := a.Authenticate(r)
		if err != nil {
			a.refused(w, r, err)
			return
		}
		a.observe(p.Method, "ok")
		ctx := context.WithValue(r.Context(), principalKey{}, p)
		ctx = context.WithValue(ctx, origAuthKey{}, r.Header["Authorization"])
		r = r.WithContext(ctx)
		r.Header.Set("Authorization", "Bearer mcpmesh-authenticated")
		withInfo.ServeHTTP(w, r)
	})
}

// Established hands a principal that is already in the request's context
// (NewContext, put there by whoever authenticated the request) on to
// go-sdk handlers in the request's auth.TokenInfo, as Middleware does for
// agents. The request's own Authorization header reaches next unchanged.
func Established(next http.Handler) http.Handler {
	// go-sdk offers no way to put a TokenInfo in a context but its own
	// RequireBearerToken middleware, which reads the token from the
	// Authorization header. So the header is set to a placeholder for its
	// benefit, the verifier returns the principal already established, and
	// the agent's own header is put back before next sees the request.
	info := auth.RequireBearerToken(func(ctx context.Context, _ string, _ *http.Request) (*auth.TokenInfo, error) {
		p, _ := FromContext(ctx)
		return &auth.TokenInfo{UserID: p.ID, Scopes: p.Scopes, Extra: map[string]any{tokenInfoKey: p}}, nil
	}, &auth.RequireBearerTokenOptions{AllowMissingExpiration: true})
	restore := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if orig, _ := r.Context().Value(origAuthKey{}).([]string); orig != nil {
			r.Header["Authorization"] = orig
		} else {
			r.Header.Del("Authorization")
		}
		next.ServeHTTP(w, r)
	})
	withInfo := info(restore)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := FromContext(r.Context()); !ok {
			http.Error(w, "internal error: request not authenticated", http.StatusInternalServerError)
			return
		}
		if r.Context().Value(origAuthKey{}) == nil {
			r = r.WithContext(context.WithValue(r.Context(), origAuthKey{}, r.Header["Authorization"]))
		}
		r.Header.Set("Authorization", "Bearer mcpmesh-authenticated")
		withInfo.ServeHTTP(w, r)
	})
}

func (a *Authenticator) refused(w http.ResponseWriter, r *http.Request, err error) {
	var ae *Error
	if !errors.As(err, &ae) {
		ae = refuse("", "error", "%v", err)
	}
	a.observe(ae.Method, ae.Reason)
	if a.refusals != nil {
		a.refusals(r, ae)
	}
	a.logger.Info("agent auth: refused", "method", ae.Method, "reason", ae.Reason, "path", r.URL.Path, "remote", r.RemoteAddr, "error", ae.Message)
	// RFC 6750 §3: the challenge; RFC 9728 §5.1: where the resource's
	// metadata is, so that an OAuth client can find the provider.
	params := []string{`realm="mcpmesh"`}
	if a.cfg.ResourceMetadataURL != "" {
		params = append(params, fmt.Sprintf("resource_metadata=%q", a.cfg.ResourceMetadataURL))
	}
	if a.oidc != nil && len(a.oidc.cfg.RequiredScopes) > 0 {
		params = append(params, fmt.Sprintf("scope=%q", strings.Join(a.oidc.cfg.RequiredScopes, " ")))
	}
	status := http.StatusUnauthorized
	switch {
	case ae.insufficientScope:
		status = http.StatusForbidden
		params = append(params, `error="insufficient_scope"`, fmt.Sprintf("error_description=%q", ae.Message))
	case ae.Reason != "missing":
		// No error code when no credential was presented (RFC 6750 §3.1).
		params = append(params, `error="invalid_token"`, fmt.Sprintf("error_description=%q", ae.Message))
	}
	w.Header().Set("WWW-Authenticate", "Bearer "+strings.Join(params, ", "))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{
		"jsonrpc": "2.0", "id": nil,
		"error": map[string]any{"code": CodeUnauthenticated, "message": map[bool]string{false: "unauthenticated: ", true: "insufficient scope: "}[ae.insufficientScope] + ae.Message},
	})
}

type principalKey struct{}

type origAuthKey struct{}

const tokenInfoKey = "io.mcpmesh/principal"

// NewContext returns a context that carries p, for code that hands the
// principal on past go-sdk (which keeps it in the request's TokenInfo).
func NewContext(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal Middleware established.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// FromTokenInfo returns the principal of a go-sdk request (req.Extra.TokenInfo).
func FromTokenInfo(ti *auth.TokenInfo) (Principal, bool) {
	if ti == nil {
		return Principal{}, false
	}
	p, ok := ti.Extra[tokenInfoKey].(Principal)
	return p, ok
}
