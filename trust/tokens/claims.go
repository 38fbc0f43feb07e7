package tokens

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"time"
)

// Names of mcpmesh's private claims.
const (
	ClaimTenant    = "io.mcpmesh/tenant"
	ClaimCaller    = "io.mcpmesh/caller"
	ClaimRequestID = "io.mcpmesh/request_id"
)

// MetaKey is the _meta key that carries the token on a request to a stdio
// upstream, which has no HTTP header to carry it.
const MetaKey = "io.mcpmesh/token"

// JWKSPath is where a node publishes its BU's key set, without
// authentication, on its HTTP listener.
const JWKSPath = "/.well-known/mcpmesh/jwks.json"

// Algorithm is the only signature algorithm minted and accepted.
const Algorithm = "ES256"

// Claims are the verified contents of a token.
type Claims struct {
	Issuer   string
	Subject  string
	Audience string
	IssuedAt time.Time
	Expiry   time.Time
	ID       string
	// Tenant is the caller's tenant; "" when it has none (anonymous
	// callers, the node's own requests).
	Tenant string
	// Caller is the caller chain: the original principal first, the
	// minting node last.
	Caller    []string
	RequestID string
}

// Caller is on whose behalf an upstream request is made: what the gateway
// knows of the agent's request. The zero value is the node itself.
type Caller struct {
	// Principal is the agent's principal id.
	Principal string
	// Tenant is the principal's tenant, or "".
	Tenant string
	// Via are the nodes the call passed before reaching this one, in
	// order (none for an agent of this BU).
	Via []string
	// RequestID identifies the agent's request; Mint makes one up when it
	// is "".
	RequestID string
}

type callerKey struct{}

// ContextWithCaller returns ctx carrying c, for the upstream pool to mint
// the token of the requests made under it.
func ContextWithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// CallerFromContext returns the caller ContextWithCaller put in ctx.
func CallerFromContext(ctx context.Context) (Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(Caller)
	return c, ok
}

// NewRequestID returns a random request id: 16 bytes, base64url.
func NewRequestID() string { return randomID() }

func randomID() string {
	b := make([]byte, 16)
	rand.Read(b) // never fails (crypto/rand panics rather than return an error)
	return base64.RawURLEncoding.EncodeToString(b)
}
