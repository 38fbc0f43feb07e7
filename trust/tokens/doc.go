// Package tokens mints and verifies the tokens a node sends to the upstream
// MCP servers it calls, and publishes the key set they verify against.
//
// No agent credential ever travels past its own BU's node. Toward each
// upstream the node sends a token of its own instead: a JWT signed with the
// BU's current signing key (ES256), short-lived, naming that upstream as
// its only audience, and saying on whose behalf the call is made.
//
// # Claims
//
//	iss                  the BU's issuer, spiffe://<trust domain>/mcpmesh/gateway
//	                     (one for all replicas: they share the signing keys)
//	sub                  the calling principal's id (apikey:<id>, a SPIFFE ID,
//	                     oidc:<sub>, anonymous); the node's own SPIFFE ID for
//	                     requests of the node itself (definition checks,
//	                     session set-up)
//	aud                  the upstream server's registry name, e.g.
//	                     corp.hr/directory (the same for all its versions)
//	iat, nbf, exp        issued now; valid for the token TTL (default 60s)
//	jti                  random, unique per token
//	io.mcpmesh/tenant    the caller's tenant; absent when it has none
//	io.mcpmesh/caller    the caller chain: the original principal first,
//	                     then every node the call passed, the minting node last
//	io.mcpmesh/request_id the gateway's id of the agent's request
//
// # Keys and rotation
//
// The signing keys live in the BU's replicated registry state
// (registry/state SigningKey), so every replica signs with the same active
// key and publishes the same key set (JWKS). The leader generates the first
// key and rotates (Rotator) every rotate_every; a retired key stays in the
// key set until every token it may have signed has expired (its retirement
// plus the token TTL plus a leeway for clock skew and replication lag), and
// is then deleted. Private keys never leave the replicas: not in the key
// set, an API answer, a log line, a metric, an error, or an operator
// snapshot.
//
// # Verifying
//
// A Verifier fetches a node's key set from its URL
// (/.well-known/mcpmesh/jwks.json on the node's HTTP listener), caches it,
// refetches when a token names an unknown key (at most once per
// MinRefreshInterval), and checks the signature (ES256 only), issuer,
// audience and expiry. The example servers (examples/servers) use it; a
// server in another language does the same with any JOSE library.
//
// It owns tokens, keys and key sets. It does not own where keys are stored
// (registry/state), how a token reaches an upstream (node/upstream: an
// Authorization header on HTTP, _meta["io.mcpmesh/token"] on stdio), nor
// the federation assertions between BUs.
package tokens
