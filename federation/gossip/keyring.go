package gossip

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
)

// KeySize is the size of a key made by NewKey: 32 bytes, AES-256.
const KeySize = 32

// NewKey returns a new random gossip key (KeySize bytes), base64-encoded
// as a keyring file holds it.
func NewKey() (string, error) {
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		return "", fmt.Errorf("gossip key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(k), nil
}

// LoadKeyring reads a keyring file (see ParseKeyring).
func LoadKeyring(path string) ([][]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("gossip keyring: %w", err)
	}
	keys, err := ParseKeyring(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return keys, nil
}

// ParseKeyring parses a keyring file: one base64 key (16, 24 or 32 bytes:
// AES-128, -192 or -256) per line; blank lines and lines starting with '#'
// are ignored. The first key is the primary: it encrypts what the node
// sends; every key decrypts. It refuses a file without keys, a key that
// appears twice and anything else, naming the line.
func ParseKeyring(b []byte) ([][]byte, error) {
	var keys [][]byte
	sc := bufio.NewScanner(bytes.NewReader(b))
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		k, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("line %d: not a base64 key (%w); make one with `mcpmesh trust gossip-key`", line, err)
		}
		switch len(k) {
		case 16, 24, 32:
		default:
			return nil, fmt.Errorf("line %d: key of %d bytes; want 16, 24 or 32 (make one with `mcpmesh trust gossip-key`)", line, len(k))
		}
		for _, o := range keys {
			if bytes.Equal(o, k) {
				return nil, fmt.Errorf("line %d: the same key is listed twice", line)
			}
		}
		keys = append(keys, k)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w", line+1, err)
	}
	if len(keys) == 0 {
		return nil, errors.New("no keys; gossip is always encrypted: add a line made by `mcpmesh trust gossip-key`")
	}
	return keys, nil
}
