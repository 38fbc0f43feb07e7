package assertion

import (
	"errors"
	"fmt"
)

// Refusal is the reason an assertion is refused. Every error Verify returns
// wraps exactly one of the Err* values below, so a caller branches with
// errors.Is and audits the reason with ReasonOf; the wrapping message adds
// what was wrong, never the token itself.
type Refusal struct {
	// Reason is a short, stable name of the refusal, the value of the
	// reason label of mcpmesh_federation_assertions_refused_total.
	Reason string
	msg    string
}

// Error says what was refused and why, in general terms; the error Verify
// returns wraps it with the particulars.
func (r *Refusal) Error() string { return "federation assertion refused: " + r.msg }

// The refusals. The set is closed: the metric's reason label takes only
// these values.
var (
	// ErrMalformed: not a compact JWS, undecodable, or larger than MaxTokenBytes.
	ErrMalformed = &Refusal{"malformed", "not a compact JWS (three base64url parts) of at most 8 KiB"}
	// ErrAlgorithm: alg is not ES256, or, in the x5c form, not the one
	// of the leaf's key (ES256 for ECDSA P-256, RS256 for RSA of at least
	// 2048 bits); none, HS*, PS*, ... are refused.
	ErrAlgorithm = &Refusal{"algorithm", "the signature algorithm is not ES256 (or RS256 for an RSA X.509-SVID)"}
	// ErrHeader: the protected header is not one of the two forms (alg,
	// kid and typ JWT; alg, x5c and typ JWT): it carries jwk, jku, x5u,
	// crit, both kid and x5c, an x5c that is no list of 1 to 4
	// certificates, or typ is not JWT; or it is x5c and the verifier has
	// no X.509 bundles.
	ErrHeader = &Refusal{"header", "the header may carry only alg, typ JWT, and kid or x5c"}
	// ErrUnknownKey: kid is missing, or not a JWT authority of the issuer's
	// trust domain in the bundle set (unknown, revoked or rotated away); or
	// the x5c chain does not verify against the X.509 authorities of the
	// issuer's trust domain.
	ErrUnknownKey = &Refusal{"unknown_key", "the signing key is neither a JWT authority of the issuer's trust domain nor an X.509-SVID chaining to its X.509 authorities"}
	// ErrSignature: the signature does not verify.
	ErrSignature = &Refusal{"signature", "the signature does not verify"}
	// ErrIssuer: iss is not a node ID, spiffe://<td>/mcpmesh/node/<id>.
	ErrIssuer = &Refusal{"issuer", "the issuer is not an mcpmesh node (spiffe://<trust domain>/mcpmesh/node/<id>)"}
	// ErrPeer: the issuer is not the mTLS peer that presented the
	// assertion (another node, or another trust domain).
	ErrPeer = &Refusal{"peer", "the issuer is not the mTLS peer that presented it"}
	// ErrActor: act.sub is missing or differs from iss.
	ErrActor = &Refusal{"actor", "act.sub is not the issuer"}
	// ErrAudience: aud is not exactly this BU's gateway, or the assertion
	// is pinned to another node of this BU.
	ErrAudience = &Refusal{"audience", "it is meant for another audience"}
	// ErrExpired: exp is past (beyond the leeway).
	ErrExpired = &Refusal{"expired", "it has expired"}
	// ErrNotYetValid: nbf or iat is in the future (beyond the leeway).
	ErrNotYetValid = &Refusal{"not_yet_valid", "it is not valid yet (compare the clocks of both nodes)"}
	// ErrLifetime: exp, iat missing, or exp - iat longer than MaxTTL.
	ErrLifetime = &Refusal{"lifetime", "its lifetime is missing or longer than 60s"}
	// ErrSubject: sub is missing, too long, not printable, or a SPIFFE ID
	// of another trust domain than the issuer's (a BU vouches only for
	// its own principals).
	ErrSubject = &Refusal{"subject", "the subject is missing or not a principal of the issuer's trust domain"}
	// ErrClaims: a private claim is missing, too long or too many (tool,
	// request id, tenant, groups, scopes, version, trace), or jti is
	// missing or malformed.
	ErrClaims = &Refusal{"claims", "a claim is missing or out of bounds"}
	// ErrReplayed: the jti was seen before on this node.
	ErrReplayed = &Refusal{"replayed", "its jti was already used"}
	// ErrReplayCacheFull: the replay cache holds Config.ReplayCacheSize
	// unexpired ids and cannot remember one more; the call is refused
	// rather than forgetting an id that could then be replayed.
	ErrReplayCacheFull = &Refusal{"replay_cache_full", "the node's replay cache is full; retry in a few seconds"}
)

// reasons lists every refusal, for the metric's label values.
var reasons = []*Refusal{ErrMalformed, ErrAlgorithm, ErrHeader, ErrUnknownKey, ErrSignature, ErrIssuer, ErrPeer,
	ErrActor, ErrAudience, ErrExpired, ErrNotYetValid, ErrLifetime, ErrSubject, ErrClaims, ErrReplayed, ErrReplayCacheFull}

// ReasonOf returns the reason of a refusal Verify returned, or "" for nil
// or an error that is not a refusal.
func ReasonOf(err error) string {
	var r *Refusal
	if errors.As(err, &r) {
		return r.Reason
	}
	return ""
}

// refuse wraps r with what exactly was wrong.
func refuse(r *Refusal, format string, args ...any) error {
	return fmt.Errorf("%w: %s", r, fmt.Sprintf(format, args...))
}
