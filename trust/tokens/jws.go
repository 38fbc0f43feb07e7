package tokens

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
)

// jwsSigner signs compact ES256 JWTs (RFC 7515, RFC 7518 §3.4). Written by
// hand because go-jose's builder round-trips every token's claims through a
// map and encodes the header again each time, which made it most of the
// cost of minting, and minting runs on every upstream request. Here the
// header is encoded once per key and the claims once per token; the tests
// verify the tokens with go-jose.
type jwsSigner struct {
	key *ecdsa.PrivateKey
	// header is the base64url encoding of the protected header.
	header []byte
}

func newJWSSigner(key *ecdsa.PrivateKey, kid string) *jwsSigner {
	h, err := json.Marshal(struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
		Typ string `json:"typ"`
	}{Algorithm, kid, "JWT"})
	if err != nil {
		panic("tokens: encode a JWS header: " + err.Error()) // three strings always encode
	}
	return &jwsSigner{key: key, header: base64.RawURLEncoding.AppendEncode(nil, h)}
}

// sign returns the compact serialization of claims signed with the key.
func (s *jwsSigner) sign(claims any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("encode the claims: %w", err)
	}
	enc := base64.RawURLEncoding
	// An ES256 signature is 64 bytes, 86 in base64url.
	buf := make([]byte, 0, len(s.header)+1+enc.EncodedLen(len(payload))+1+86)
	buf = append(buf, s.header...)
	buf = append(buf, '.')
	buf = enc.AppendEncode(buf, payload)
	digest := sha256.Sum256(buf)
	r, ss, err := ecdsa.Sign(rand.Reader, s.key, digest[:])
	if err != nil {
		return "", err
	}
	// JWS carries R and S as fixed-size big-endian integers, not ASN.1.
	var sig [64]byte
	r.FillBytes(sig[:32])
	ss.FillBytes(sig[32:])
	buf = append(buf, '.')
	buf = enc.AppendEncode(buf, sig[:])
	return string(buf), nil
}
