package audit

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/gowebpki/jcs"
)

// Arguments computes what a record keeps of a call's arguments: their
// keyed hash always, the arguments themselves only for the tools the BU
// listed. It is immutable and safe for concurrent use.
type Arguments struct {
	key []byte
	raw map[string]bool
}

// NewArguments returns an Arguments that hashes with key (at least 32
// bytes; every replica of a BU must use the same) and keeps the raw
// arguments of the tools named in raw, each as "<server>/<tool>" (e.g.
// "corp.finance/ledger/transfer_funds").
func NewArguments(key []byte, raw []string) (*Arguments, error) {
	if len(key) < 32 {
		return nil, errors.New("audit arguments key: need at least 32 bytes")
	}
	a := &Arguments{key: append([]byte(nil), key...), raw: map[string]bool{}}
	for _, t := range raw {
		a.raw[t] = true
	}
	return a, nil
}

// Fill sets rec's ArgumentsHMAC, and its Arguments when the tool
// ("<server>/<tool>") is listed, from the call's raw arguments. The hash
// is over the RFC 8785 canonical form, so the same arguments give the same
// hash whatever their key order or spacing; arguments that are not JSON
// (go-sdk refuses those first) are hashed as they are.
func (a *Arguments) Fill(rec *Record, tool string, args json.RawMessage) {
	if a == nil {
		return
	}
	if len(args) == 0 {
		args = json.RawMessage("{}")
	}
	canon, err := jcs.Transform(args)
	if err != nil {
		canon = args
	}
	m := hmac.New(sha256.New, a.key)
	m.Write(canon)
	rec.ArgumentsHMAC = hex.EncodeToString(m.Sum(nil))
	if a.raw[tool] && json.Valid(args) {
		rec.Arguments = append(json.RawMessage(nil), args...)
	}
}

// Raw reports whether the raw arguments of tool ("<server>/<tool>") are
// recorded.
func (a *Arguments) Raw(tool string) bool { return a != nil && a.raw[tool] }

// String describes the configuration without the key.
func (a *Arguments) String() string {
	return fmt.Sprintf("audit arguments: keyed hash, raw arguments of %d tools", len(a.raw))
}
