// Package apikey makes and checks the per-tenant API keys agents may present
// at a node's front door.
//
// A key reads "mcpk_<id>_<secret>": the id (12 characters of lowercase
// base32) is public, shown by `mcpmesh apikey list` and in logs, so a leaked
// key can be identified and revoked; the secret is 32 random bytes, base64url.
// The registry stores only the key's SHA-256: keys are random, not
// passwords, so a fast hash loses nothing against guessing, and checking one
// costs a microsecond on every call.
package apikey

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
)

// Prefix starts every key, so scanners and people recognise one.
const Prefix = "mcpk_"

const (
	idLen     = 12
	secretLen = 43 // 32 bytes, base64url without padding
)

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// Key is a newly made key. Secret is the whole key as the agent presents it;
// show it once and keep only Hash.
type Key struct {
	ID     string
	Secret string
	Hash   string
}

// New makes a random key.
func New() (Key, error) {
	var raw [8 + 32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return Key{}, fmt.Errorf("make API key: %w", err)
	}
	id := idEncoding.EncodeToString(raw[:8])[:idLen]
	secret := Prefix + id + "_" + base64.RawURLEncoding.EncodeToString(raw[8:])
	return Key{ID: id, Secret: secret, Hash: Hash(secret)}, nil
}

// Parse returns the id of a well-formed key. It says nothing about whether
// the key is valid: compare its hash with Matches.
func Parse(key string) (id string, err error) {
	rest, ok := strings.CutPrefix(key, Prefix)
	if !ok {
		return "", fmt.Errorf("not an mcpmesh API key (keys start with %q)", Prefix)
	}
	if len(rest) != idLen+1+secretLen || rest[idLen] != '_' {
		return "", fmt.Errorf("malformed API key: expected %s<12-character id>_<43-character secret>", Prefix)
	}
	id = rest[:idLen]
	if !ValidID(id) {
		return "", fmt.Errorf("malformed API key: the id has characters other than a-z and 2-7")
	}
	if _, err := base64.RawURLEncoding.DecodeString(rest[idLen+1:]); err != nil {
		return "", fmt.Errorf("malformed API key: the secret is not base64url")
	}
	return id, nil
}

// ValidID reports whether id has the form of a key id.
func ValidID(id string) bool {
	if len(id) != idLen {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= '2' && r <= '7') {
			return false
		}
	}
	return true
}

// ValidHash reports whether h has the form Hash returns.
func ValidHash(h string) bool {
	b, err := hex.DecodeString(h)
	return err == nil && len(b) == sha256.Size && h == strings.ToLower(h)
}

// Hash is what the registry stores for a key: hex SHA-256.
func Hash(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// Matches compares a presented key with a stored hash in constant time.
func Matches(key, hash string) bool {
	want, err := hex.DecodeString(hash)
	if err != nil {
		return false
	}
	got := sha256.Sum256([]byte(key))
	return subtle.ConstantTimeCompare(got[:], want) == 1
}
