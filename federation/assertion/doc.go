// Package assertion mints and verifies federation assertions: the token a
// node sends with a call it forwards to another BU, in place of the agent's
// credential, which never leaves the agent's own BU.
//
// The calling node (hr) mints one assertion per forwarded call, signed
// with its BU's embedded-CA JWT key (the JWT authority of its SPIFFE
// bundle) or, when its identity comes from SPIRE and it holds no such
// key, with its own X.509-SVID key, and sends it as "Authorization: Bearer <assertion>" over the HTTP/3 mTLS
// peer connection. The exporting node (finance) verifies it against its
// bundle set with the mTLS peer's SPIFFE ID, and maps it to the principal
// its own pipeline (policy, limits, usage, audit) sees (PrincipalOf).
//
// # Format
//
// A JWT-SVID shaped compact JWS. The header has one of two forms:
//
//   - kid: {"alg":"ES256","kid":<the JWT authority's key id>,"typ":"JWT"},
//     for a BU on the embedded CA (MinterConfig.KeyID, Signer);
//   - x5c: {"alg":"ES256" or "RS256","typ":"JWT","x5c":[<the node's
//     X.509-SVID leaf>, <its intermediates>...]}, for a BU on SPIRE
//     (MinterConfig.SVID), whose nodes hold no JWT authority key. ES256
//     for an ECDSA P-256 SVID key (SPIRE's default), RS256 for RSA.
//
// The claims are the same in both forms:
//
//	iss        the calling node, spiffe://<caller td>/mcpmesh/node/<id>
//	sub        the original caller's principal as its BU knows it: a SPIFFE
//	           ID of the caller's trust domain, oidc:<sub>, apikey:<id>, ...
//	aud        the target BU's gateway, spiffe://<target td>/mcpmesh/gateway
//	act        {"sub": iss}: the node acts for sub (RFC 8693)
//	iat, nbf   when it was minted
//	exp        iat + federation.assertion_ttl (1s to 60s)
//	jti        128 random bits
//	io.mcpmesh/call  {tenant, groups, scope, tool, version, request_id,
//	           trace, node}: the caller's tenant, groups and scopes in its
//	           own BU (bounded), the tool as the exporter names it
//	           ("<server>/<tool>"), its version, the request id both BUs
//	           record the call under, the W3C traceparent, and optionally
//	           the one target node it is pinned to.
//
// Because sub is often not a SPIFFE ID, go-spiffe's jwtsvid (which requires
// one) is not used to verify; go-jose checks the signature of the kid
// form, this package that of the x5c form (go-jose would parse the chain
// again on every call) and everything else.
//
// # What Verify checks
//
// The header is exactly one of the two forms (no none, HS*, no embedded
// or remote key: jwk, jku, x5u, crit). In the kid form the key is looked
// up by kid among the JWT authorities of the mTLS peer's trust domain, in
// the node's bundle set: a BU removed from the manifest has no bundle
// there, so its assertions fail. In the x5c form the leaf must be the
// X.509-SVID of the mTLS peer itself, and the chain must verify (go-spiffe
// x509svid.Verify) against the X.509 authorities of the peer's trust
// domain in the same bundle set; its key's type must match alg. A chain
// that verified is cached by its encoded header until it expires or the
// bundle set changes, so a warm call costs one signature check in both
// forms. Then the signature; iss is a node ID and is the
// mTLS peer itself (so its trust domain is the peer's: a node of hr never
// gets an assertion signed with finance's key accepted, and no node but
// the minting one can present an assertion); act.sub equals iss; aud is
// exactly this BU's gateway; iat, nbf and exp within a leeway (5s); a
// lifetime of at most 60s; a sub that, when a SPIFFE ID, is of the
// issuer's trust domain; bounded, printable private claims; and a jti
// not seen before. Each refusal wraps its own Err* value (ReasonOf) and is
// counted by reason.
//
// Not checked here: whether the manifest lets the caller's trust domain
// call this BU (the peer transport authorizes the mTLS peer), the export
// policy (trust domain, principal, tool, scopes), and that the tool
// matches the forwarded request (CheckTool does that, when told the tool).
//
// # Replay
//
// Each node remembers the ids of the assertions it accepted until they
// expire (plus the leeway), in a bounded cache that refuses, rather than
// evicts, when full (replay.go says why). The cache is per node: nothing
// is shared between the replicas of a BU, and an assertion presented to
// another node of the same BU within its life would not be found in that
// node's cache. Two things close that gap without a shared store on the
// call path:
//
//   - The issuer must be the mTLS peer. An assertion is useful only to the
//     node that minted it, and that node holds the key and could mint a
//     fresh assertion anyway; a stolen assertion is worthless to anyone
//     who cannot also present that node's X509-SVID.
//   - The caller may pin an assertion to one target node (Call.TargetNode,
//     checked against VerifierConfig.Node), which makes every other node
//     of the BU refuse it; the calling node then mints a new assertion for
//     each node it tries on failover (minting costs tens of microseconds).
//     mcpmesh nodes pin every forwarded call's assertion to the node the
//     peer connection's handshake verified (node/federation_forward.go).
//
// What remains: a minting node that does not pin can present one
// assertion to each node of the target BU once. It could do as much by
// minting, so this is no escalation, but the per-call audit then shows
// the same request id more than once on the exporting side. (A call that
// mcpmesh repeats on another node, a read-only or idempotent one whose
// first node broke off, shows so too, under a new assertion.)
//
// The package owns the assertion format, minting, verification, the replay
// cache and the mapping of a verified assertion to a principal. It does
// not own the peer transport (how the assertion travels), the bundle set
// (how foreign bundles are fetched and stored), the manifest, or the
// export policy.
package assertion
