package manifest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"strings"

	"github.com/go-jose/go-jose/v4"
)

// Algorithm is a signature algorithm central security's key uses.
type Algorithm string

// The algorithms a manifest may be signed with: one per key type.
const (
	// ES256 is ECDSA on P-256 with SHA-256, for an ECDSA P-256 key.
	ES256 Algorithm = "ES256"
	// EdDSA is Ed25519, for an Ed25519 key.
	EdDSA Algorithm = "EdDSA"
)

// ParseAlgorithm reads an algorithm as the CLI spells it: es256 or
// ed25519 (also ES256 and EdDSA).
func ParseAlgorithm(s string) (Algorithm, error) {
	switch strings.ToLower(s) {
	case "es256":
		return ES256, nil
	case "ed25519", "eddsa":
		return EdDSA, nil
	}
	return "", fmt.Errorf("algorithm %q: want es256 (ECDSA P-256) or ed25519", s)
}

// GenerateKey returns a new signing key for alg.
func GenerateKey(alg Algorithm) (crypto.Signer, error) {
	switch alg {
	case ES256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case EdDSA:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	}
	return nil, fmt.Errorf("algorithm %q: want ES256 or EdDSA", alg)
}

// AlgorithmOf returns the algorithm a public key verifies: ES256 for an
// ECDSA P-256 key, EdDSA for an Ed25519 key. Any other key is an error.
func AlgorithmOf(pub crypto.PublicKey) (Algorithm, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return "", fmt.Errorf("ECDSA key on %s: want P-256 (ES256)", k.Curve.Params().Name)
		}
		return ES256, nil
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return "", fmt.Errorf("Ed25519 key of %d bytes: want %d", len(k), ed25519.PublicKeySize)
		}
		return EdDSA, nil
	}
	return "", fmt.Errorf("key of type %T: want ECDSA P-256 or Ed25519", pub)
}

// KeyID is the RFC 7638 thumbprint (SHA-256, base64url) of a public key:
// the kid of the manifests it verifies.
func KeyID(pub crypto.PublicKey) (string, error) {
	if _, err := AlgorithmOf(pub); err != nil {
		return "", err
	}
	tp, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("key thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

// MarshalPrivateKey encodes a signing key as PEM (PKCS #8, "PRIVATE KEY").
func MarshalPrivateKey(key crypto.Signer) ([]byte, error) {
	if _, err := AlgorithmOf(key.Public()); err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParsePrivateKey decodes a PEM PKCS #8 signing key (ECDSA P-256 or
// Ed25519).
func ParsePrivateKey(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("not a PEM \"PRIVATE KEY\" (PKCS #8); make one with `mcpmesh trust manifest keygen`")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("private key: %w", err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("private key of type %T: want ECDSA P-256 or Ed25519", k)
	}
	if _, err := AlgorithmOf(s.Public()); err != nil {
		return nil, fmt.Errorf("private key: %w", err)
	}
	return s, nil
}

// MarshalPublicKey encodes a public key as PEM (PKIX, "PUBLIC KEY").
func MarshalPublicKey(pub crypto.PublicKey) ([]byte, error) {
	if _, err := AlgorithmOf(pub); err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("encode public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ParsePublicKey decodes a PEM PKIX public key (ECDSA P-256 or Ed25519).
func ParsePublicKey(data []byte) (crypto.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("not a PEM \"PUBLIC KEY\" (PKIX); central security's central.pub from `mcpmesh trust manifest keygen` is one")
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	if _, err := AlgorithmOf(pub); err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	return pub, nil
}

// LoadPublicKeyFile reads central security's public key from a PEM file,
// as federation.manifest_key_file names it.
func LoadPublicKeyFile(path string) (crypto.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("central security's key: %w", err)
	}
	pub, err := ParsePublicKey(data)
	if err != nil {
		return nil, fmt.Errorf("central security's key %s: %w", path, err)
	}
	return pub, nil
}

// LoadPrivateKeyFile reads a signing key from a PEM file.
func LoadPrivateKeyFile(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	k, err := ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	return k, nil
}
