package state

import (
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// The namespace's signing keys for the tokens its nodes mint toward
// upstream servers (package trust/tokens) live in the replicated state, so
// that every replica of the BU signs with the same key and publishes the
// same key set. The leader generates and rotates them; this file only keeps
// them consistent.

var prefixSigningKeys = []byte("j\x00")

func signingKeyKey(id string) []byte { return []byte("j\x00" + id) }

// signingKeyID is what a key id may look like: it travels in every token's
// header and in the published key set.
var signingKeyID = regexp.MustCompile(`^[A-Za-z0-9_-]{8,64}$`)

// SigningKey is one of the namespace's token signing keys. At most one key
// is active (RetiredAt nil): the one nodes sign with. Retired keys stay
// until the leader deletes them, once every token they signed has expired.
//
// Private is never part of SigningKey's JSON form, its String, GoString or
// slog value: a key record can be listed or logged without exposing it.
type SigningKey struct {
	// ID is the key id (JWS "kid").
	ID string `json:"id"`
	// Algorithm is the JWS algorithm, "ES256".
	Algorithm string `json:"alg"`
	// Private is the private key, PKCS #8 DER.
	Private   []byte    `json:"-"`
	CreatedAt time.Time `json:"createdAt"`
	// ActiveFrom, when set, is when the key starts signing: until then it
	// is only published, so verifiers that cache the key set know it
	// before the first token it signs. Unset: from CreatedAt.
	ActiveFrom *time.Time `json:"activeFrom,omitempty"`
	// RetiredAt is when the key stopped (or stops) signing.
	RetiredAt *time.Time `json:"retiredAt,omitempty"`
	// CreateIndex and ModifyIndex are the Raft indexes that created and
	// last changed the key.
	CreateIndex uint64 `json:"createIndex"`
	ModifyIndex uint64 `json:"modifyIndex"`
}

// Active reports whether the key is not retired: the one to sign with, or
// the next one, published ahead of signing.
func (k SigningKey) Active() bool { return k.RetiredAt == nil }

// SigningFrom is when the key starts signing.
func (k SigningKey) SigningFrom() time.Time {
	if k.ActiveFrom != nil {
		return *k.ActiveFrom
	}
	return k.CreatedAt
}

// SignsAt reports whether the key is the one to sign with at t.
func (k SigningKey) SignsAt(t time.Time) bool {
	return !t.Before(k.SigningFrom()) && (k.RetiredAt == nil || t.Before(*k.RetiredAt))
}

// String describes the key without its private part.
func (k SigningKey) String() string {
	state := "active"
	if k.ActiveFrom != nil {
		state = "signs from " + k.ActiveFrom.UTC().Format(time.RFC3339)
	}
	if k.RetiredAt != nil {
		state = "retired " + k.RetiredAt.UTC().Format(time.RFC3339)
	}
	return fmt.Sprintf("signing key %s (%s, created %s, %s)", k.ID, k.Algorithm, k.CreatedAt.UTC().Format(time.RFC3339), state)
}

// GoString is String: %#v must not print the private key either.
func (k SigningKey) GoString() string { return k.String() }

// LogValue logs the key without its private part.
func (k SigningKey) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", k.ID), slog.String("alg", k.Algorithm), slog.Bool("active", k.Active()))
}

// storedSigningKey is a SigningKey as the state stores it: with its
// private part.
type storedSigningKey struct {
	SigningKey
	Private []byte `json:"private"`
}

func (s storedSigningKey) key() SigningKey {
	k := s.SigningKey
	k.Private = s.Private
	return k
}

// RotateSigningKey adds a new signing key that signs from ActiveFrom (At
// when unset) and retires, as of then, every key not yet retired. Applying
// it again (same id and key) changes nothing.
type RotateSigningKey struct {
	ID        string `json:"id"`
	Algorithm string `json:"alg"`
	// Private is the new key's private key, PKCS #8 DER.
	Private []byte    `json:"private"`
	At      time.Time `json:"at"`
	// ActiveFrom, not before At, pre-publishes the key until then.
	ActiveFrom time.Time `json:"activeFrom,omitzero"`
}

// String describes the command without the private key.
func (c RotateSigningKey) String() string {
	return fmt.Sprintf("rotate to signing key %s (%s) at %s", c.ID, c.Algorithm, c.At.UTC().Format(time.RFC3339))
}

// GoString is String.
func (c RotateSigningKey) GoString() string { return c.String() }

// DeleteSigningKey removes a retired signing key from the state (and so
// from the published key set). Deleting a key that is gone changes
// nothing; the active key cannot be deleted.
type DeleteSigningKey struct {
	ID string    `json:"id"`
	At time.Time `json:"at"`
}

func (f *FSM) applyRotateSigningKey(b *pebble.Batch, index uint64, c RotateSigningKey) any {
	if !signingKeyID.MatchString(c.ID) {
		return errorf(KindInvalid, "signing key id %q: must be 8 to 64 characters of A-Z, a-z, 0-9, _ and -", c.ID)
	}
	if c.Algorithm != "ES256" {
		return errorf(KindInvalid, "signing key %s: algorithm %q is not supported; use ES256", c.ID, c.Algorithm)
	}
	if len(c.Private) == 0 {
		return errorf(KindInvalid, "signing key %s: the private key is missing", c.ID)
	}
	if c.At.IsZero() {
		return errorf(KindInvalid, "signing key %s: the rotation time is missing", c.ID)
	}
	from := c.At
	if !c.ActiveFrom.IsZero() {
		if c.ActiveFrom.Before(c.At) {
			return errorf(KindInvalid, "signing key %s: activeFrom %s is before the rotation time %s", c.ID,
				c.ActiveFrom.UTC().Format(time.RFC3339), c.At.UTC().Format(time.RFC3339))
		}
		from = c.ActiveFrom
	}
	if prev, found := mustGet[storedSigningKey](b, signingKeyKey(c.ID)); found {
		if prev.Algorithm == c.Algorithm && slices.Equal(prev.Private, c.Private) {
			return ApplyResult{Index: index, Unchanged: true}
		}
		return errorf(KindConflict, "signing key %s already exists with another key; generate a new id", c.ID)
	}
	for _, old := range mustScan[storedSigningKey](b, prefixSigningKeys) {
		if old.RetiredAt != nil {
			continue
		}
		at := from
		old.RetiredAt, old.ModifyIndex = &at, index
		mustStage(setJSON(b, signingKeyKey(old.ID), old))
	}
	k := storedSigningKey{SigningKey: SigningKey{ID: c.ID, Algorithm: c.Algorithm, CreatedAt: c.At, CreateIndex: index, ModifyIndex: index}, Private: c.Private}
	if from.After(c.At) {
		k.ActiveFrom = &from
	}
	mustStage(setJSON(b, signingKeyKey(c.ID), k))
	return ApplyResult{Index: index}
}

func (f *FSM) applyDeleteSigningKey(b *pebble.Batch, index uint64, c DeleteSigningKey) any {
	k, found := mustGet[storedSigningKey](b, signingKeyKey(c.ID))
	if !found {
		return ApplyResult{Index: index, Unchanged: true}
	}
	if k.RetiredAt == nil {
		return errorf(KindConflict, "signing key %s is the active key; rotate to a new key before deleting it", c.ID)
	}
	mustStage(b.Delete(signingKeyKey(c.ID), nil))
	return ApplyResult{Index: index}
}

// mustScan reads every object under prefix inside a batch being applied;
// like mustGet, a failed read stops the node.
func mustScan[T any](b *pebble.Batch, prefix []byte) []T {
	out, err := scan[T](b, prefix)
	if err != nil {
		panic(fmt.Sprintf("registry state: %v", err))
	}
	return out
}

// SigningKeys returns every signing key, private parts included, oldest
// first. Only the node's token minter may hold the result; nothing may
// serve or log the private parts.
func (f *FSM) SigningKeys() ([]SigningKey, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	stored, err := scan[storedSigningKey](f.db, prefixSigningKeys)
	if err != nil {
		return nil, err
	}
	out := make([]SigningKey, 0, len(stored))
	for _, s := range stored {
		out = append(out, s.key())
	}
	slices.SortStableFunc(out, func(a, b SigningKey) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return int(a.CreateIndex) - int(b.CreateIndex)
	})
	return out, nil
}
