// Package adminauth authenticates callers of a node's admin API: a
// bootstrap admin token read from a file, an admin X.509-SVID presented
// over mTLS, or an access token of the BU's OIDC provider whose subject or
// group is listed as an administrator. Nothing under /v1/ is open.
//
// It owns admin authentication only. Agent authentication at the MCP front
// door (OAuth, JWT-SVID, API keys) is a different job and lives in
// trust/agentauth, whose OIDC verifier it borrows: an administrator
// signed in with OIDC is "oidc:<sub>", the same identity as that person's
// agent, which is what lets the registry refuse a decision on one's own
// held call (registry/state SamePerson).
package adminauth

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/mcpmesh/mcpmesh/registry/api"
	"github.com/mcpmesh/mcpmesh/trust/agentauth"
	"github.com/mcpmesh/mcpmesh/trust/mtls"
)

// minTokenLen is the shortest bootstrap token accepted, so a placeholder
// such as "changeme" cannot guard a cluster.
const minTokenLen = 16

// Authenticator checks admin credentials. It is safe for concurrent use.
type Authenticator struct {
	// tokenHash is the SHA-256 of the bootstrap token; nil when none is set.
	// Comparing hashes in constant time hides the token's length too.
	tokenHash   []byte
	trustDomain spiffeid.TrustDomain
	pathPrefix  string
	oidc        *OIDCAdmins
	logger      *slog.Logger
}

// OIDCAdmins are the administrators who sign in with the BU's OIDC
// provider's access tokens.
type OIDCAdmins struct {
	// Verifier checks the tokens; its audience is the admin API's.
	Verifier *agentauth.OIDCVerifier
	// Subjects (sub) and Groups (the provider's groups claim) name the
	// administrators; a token matching neither is refused.
	Subjects, Groups []string
}

// Config configures an Authenticator.
type Config struct {
	// TokenFile names a file holding the bootstrap admin token. Optional.
	TokenFile string
	// TrustDomain is the node's trust domain; admin SVIDs must belong to it.
	TrustDomain spiffeid.TrustDomain
	// PathPrefix is the SPIFFE ID path prefix of administrators, e.g. "/admin/".
	PathPrefix string
	// OIDC, when set, accepts OIDC access tokens of the listed
	// administrators as bearer tokens.
	OIDC *OIDCAdmins
}

// New reads the token file (if any) and returns an Authenticator.
func New(cfg Config, logger *slog.Logger) (*Authenticator, error) {
	a := &Authenticator{trustDomain: cfg.TrustDomain, pathPrefix: cfg.PathPrefix, oidc: cfg.OIDC, logger: logger}
	if cfg.TokenFile != "" {
		raw, err := os.ReadFile(cfg.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("admin.token_file: %w", err)
		}
		tok := strings.TrimSpace(string(raw))
		if len(tok) < minTokenLen {
			return nil, fmt.Errorf("admin.token_file: %s holds a token of %d characters; use at least %d random characters (e.g. `openssl rand -hex 32`)", cfg.TokenFile, len(tok), minTokenLen)
		}
		sum := sha256.Sum256([]byte(tok))
		a.tokenHash = sum[:]
	}
	return a, nil
}

// ErrUnauthenticated means the request carried no valid admin credential.
var ErrUnauthenticated = errors.New("unauthenticated")

// Authenticate returns the request's admin principal.
func (a *Authenticator) Authenticate(r *http.Request) (api.Principal, error) {
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		id, err := mtls.PeerID(r.TLS)
		if err != nil {
			return api.Principal{}, fmt.Errorf("%w: client certificate is not a valid SVID: %v", ErrUnauthenticated, err)
		}
		if id.TrustDomain() != a.trustDomain || !strings.HasPrefix(id.Path(), a.pathPrefix) {
			return api.Principal{}, fmt.Errorf("%w: %s is not an administrator of %s (admin SVIDs have paths under %s)", ErrUnauthenticated, id, a.trustDomain, a.pathPrefix)
		}
		return api.Principal{ID: id.String(), Method: "svid"}, nil
	}
	h := r.Header.Get("Authorization")
	if h == "" {
		return api.Principal{}, fmt.Errorf("%w: no credential; pass -token-file or an admin SVID", ErrUnauthenticated)
	}
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		return api.Principal{}, fmt.Errorf("%w: Authorization must be \"Bearer <token>\"", ErrUnauthenticated)
	}
	tok = strings.TrimSpace(tok)
	if a.oidc != nil && strings.Count(tok, ".") == 2 {
		return a.oidcAdmin(r, tok)
	}
	if a.tokenHash == nil {
		return api.Principal{}, fmt.Errorf("%w: this node has no bootstrap token configured; use an admin SVID", ErrUnauthenticated)
	}
	sum := sha256.Sum256([]byte(tok))
	if subtle.ConstantTimeCompare(sum[:], a.tokenHash) != 1 {
		return api.Principal{}, fmt.Errorf("%w: admin token not accepted", ErrUnauthenticated)
	}
	return api.Principal{ID: "token:bootstrap", Method: "token"}, nil
}

// oidcAdmin signs in the administrator whose OIDC access token is tok (a
// JWT: a bootstrap token has no dots).
func (a *Authenticator) oidcAdmin(r *http.Request, tok string) (api.Principal, error) {
	p, err := a.oidc.Verifier.Verify(r.Context(), tok)
	if err != nil {
		return api.Principal{}, fmt.Errorf("%w: OIDC access token refused: %v", ErrUnauthenticated, err)
	}
	sub := strings.TrimPrefix(p.ID, "oidc:")
	admin := slices.Contains(a.oidc.Subjects, sub)
	for _, g := range p.Groups {
		admin = admin || slices.Contains(a.oidc.Groups, g)
	}
	if !admin {
		return api.Principal{}, fmt.Errorf("%w: %s is not an administrator of this BU (neither its subject nor a group of it is in admin.oidc)", ErrUnauthenticated, p.ID)
	}
	return api.Principal{ID: p.ID, Method: "oidc"}, nil
}

// Middleware authenticates every request before next; failures get 401 and
// are logged (without the credential).
func (a *Authenticator) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := a.Authenticate(r)
		if err != nil {
			a.logger.Warn("admin API authentication failed", "remote", r.RemoteAddr, "path", r.URL.Path, "reason", err.Error())
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("WWW-Authenticate", `Bearer realm="mcpmesh-admin"`)
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprintf(w, "{\"error\":{\"code\":\"unauthenticated\",\"message\":%q}}\n", err.Error())
			return
		}
		next.ServeHTTP(w, r.WithContext(api.WithPrincipal(r.Context(), p)))
	})
}
