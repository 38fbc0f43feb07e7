package state

import (
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/mcpmesh/mcpmesh/trust/apikey"
)

var prefixAPIKeys = []byte("k\x00")

func apiKeyKey(id string) []byte { return []byte("k\x00" + id) }

// APIKey is a tenant's API key as the registry keeps it: its public id and
// the hash of the secret, never the secret itself.
type APIKey struct {
	ID     string `json:"id"`
	Tenant string `json:"tenant"`
	// Name says what the key is for, e.g. "payroll-nightly-export".
	Name string `json:"name"`
	// Hash is the hex SHA-256 of the whole key (package trust/apikey).
	Hash   string   `json:"hash,omitempty"`
	Groups []string `json:"groups,omitempty"`
	Scopes []string `json:"scopes,omitempty"`
	// ExpiresAt is when the key stops working; zero means never.
	ExpiresAt   time.Time  `json:"expiresAt,omitzero"`
	CreatedBy   string     `json:"createdBy"`
	CreatedAt   time.Time  `json:"createdAt"`
	RevokedBy   string     `json:"revokedBy,omitempty"`
	RevokedAt   *time.Time `json:"revokedAt,omitempty"`
	CreateIndex uint64     `json:"createIndex"`
	ModifyIndex uint64     `json:"modifyIndex"`
}

// Usable reports whether the key authenticates at time now, and if not, why.
func (k APIKey) Usable(now time.Time) (bool, string) {
	switch {
	case k.RevokedAt != nil:
		return false, fmt.Sprintf("API key %s was revoked", k.ID)
	case !k.ExpiresAt.IsZero() && !now.Before(k.ExpiresAt):
		return false, fmt.Sprintf("API key %s expired at %s", k.ID, k.ExpiresAt.UTC().Format(time.RFC3339))
	}
	return true, ""
}

// CreateAPIKey stores a new key's hash. The id must be unused.
type CreateAPIKey struct {
	Key APIKey    `json:"key"`
	By  string    `json:"by"`
	At  time.Time `json:"at"`
}

// RevokeAPIKey revokes a key for good; the record stays, for the audit.
type RevokeAPIKey struct {
	ID string    `json:"id"`
	By string    `json:"by"`
	At time.Time `json:"at"`
}

func (f *FSM) applyCreateAPIKey(b *pebble.Batch, index uint64, c CreateAPIKey) any {
	k := c.Key
	if !apikey.ValidID(k.ID) {
		return errorf(KindInvalid, "API key id %q: must be 12 characters of a-z and 2-7", k.ID)
	}
	if !apikey.ValidHash(k.Hash) {
		return errorf(KindInvalid, "API key %s: hash must be 64 lowercase hex digits (SHA-256)", k.ID)
	}
	if k.Name == "" {
		return errorf(KindInvalid, "API key %s: a name saying what the key is for is required", k.ID)
	}
	if _, found := mustGet[Tenant](b, tenantKey(k.Tenant)); !found {
		return errorf(KindNotFound, "tenant %s does not exist; create it first (mcpmesh tenant add)", k.Tenant)
	}
	if _, found := mustGet[APIKey](b, apiKeyKey(k.ID)); found {
		return errorf(KindConflict, "API key %s already exists", k.ID)
	}
	k.CreatedBy, k.CreatedAt, k.CreateIndex, k.ModifyIndex = c.By, c.At, index, index
	k.RevokedBy, k.RevokedAt = "", nil
	mustStage(setJSON(b, apiKeyKey(k.ID), k))
	return ApplyResult{Index: index}
}

func (f *FSM) applyRevokeAPIKey(b *pebble.Batch, index uint64, c RevokeAPIKey) any {
	k, found := mustGet[APIKey](b, apiKeyKey(c.ID))
	if !found {
		return errorf(KindNotFound, "API key %s does not exist (mcpmesh apikey list shows the ids)", c.ID)
	}
	if k.RevokedAt != nil {
		return ApplyResult{Index: index, Unchanged: true}
	}
	at := c.At
	k.RevokedBy, k.RevokedAt, k.ModifyIndex = c.By, &at, index
	mustStage(setJSON(b, apiKeyKey(k.ID), k))
	return ApplyResult{Index: index}
}

// APIKey returns one key record.
func (f *FSM) APIKey(id string) (APIKey, error) {
	return f.apiKeys.get(f, id, func() (APIKey, error) {
		return getOne[APIKey](f, apiKeyKey(id), func() error {
			return errorf(KindNotFound, "API key %s does not exist", id)
		})
	})
}

// APIKeys returns every key record, by id.
func (f *FSM) APIKeys() ([]APIKey, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return scan[APIKey](f.db, prefixAPIKeys)
}
