package state

import (
	"errors"
	"testing"
	"time"

	"github.com/mcpmesh/mcpmesh/trust/apikey"
)

func TestAPIKeys(t *testing.T) {
	a := &applier{t: t, f: newTestFSM(t)}
	k, err := apikey.New()
	if err != nil {
		t.Fatal(err)
	}
	rec := APIKey{ID: k.ID, Tenant: "payroll", Name: "nightly", Hash: k.Hash, Groups: []string{"hr-agents"}}
	a.mustFail(CreateAPIKey{Key: rec, By: "admin", At: t0}, KindNotFound, "tenant payroll does not exist")
	a.mustOK(PutTenant{Tenant: Tenant{Name: "payroll", Owners: []string{"alice"}}, By: "admin", At: t0})
	created := a.mustOK(CreateAPIKey{Key: rec, By: "admin", At: t0})
	a.mustFail(CreateAPIKey{Key: rec, By: "admin", At: t0}, KindConflict, "already exists")

	bad := rec
	bad.ID = "UPPER"
	a.mustFail(CreateAPIKey{Key: bad, By: "admin", At: t0}, KindInvalid, "id")
	bad = rec
	bad.ID, bad.Hash = "aaaaaaaaaaaa", k.Secret
	a.mustFail(CreateAPIKey{Key: bad, By: "admin", At: t0}, KindInvalid, "hash")
	bad = rec
	bad.ID, bad.Name = "aaaaaaaaaaaa", ""
	a.mustFail(CreateAPIKey{Key: bad, By: "admin", At: t0}, KindInvalid, "name")

	got, err := a.f.APIKey(k.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.CreatedBy != "admin" || got.CreateIndex != created.Index || got.Hash != k.Hash || got.RevokedAt != nil {
		t.Fatalf("stored key = %+v", got)
	}
	if ok, why := got.Usable(t0); !ok {
		t.Fatalf("fresh key not usable: %s", why)
	}

	a.mustFail(RevokeAPIKey{ID: "bbbbbbbbbbbb", By: "admin", At: t0}, KindNotFound, "does not exist")
	a.mustOK(RevokeAPIKey{ID: k.ID, By: "secops", At: t0.Add(time.Minute)})
	if r := a.mustOK(RevokeAPIKey{ID: k.ID, By: "secops", At: t0.Add(time.Hour)}); !r.Unchanged {
		t.Error("second revoke changed the record")
	}
	got, _ = a.f.APIKey(k.ID)
	if ok, why := got.Usable(t0.Add(2 * time.Minute)); ok || got.RevokedBy != "secops" || !got.RevokedAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("revoked key = %+v, usable %v (%s)", got, ok, why)
	}
	// A revoked id is never reused, not even for a new hash.
	a.mustFail(CreateAPIKey{Key: rec, By: "admin", At: t0}, KindConflict, "already exists")

	keys, err := a.f.APIKeys()
	if err != nil || len(keys) != 1 {
		t.Fatalf("APIKeys = %+v, %v", keys, err)
	}
	if _, err := a.f.APIKey("cccccccccccc"); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing key: err = %v, want ErrNotFound", err)
	}
}

func TestAPIKeyExpiry(t *testing.T) {
	k := APIKey{ID: "aaaaaaaaaaaa", ExpiresAt: t0}
	if ok, _ := k.Usable(t0.Add(-time.Second)); !ok {
		t.Error("key refused before its expiry")
	}
	if ok, why := k.Usable(t0); ok || why == "" {
		t.Error("key accepted at its expiry")
	}
}
