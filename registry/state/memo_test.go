package state

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/mcpmesh/mcpmesh/trust/apikey"
)

// The per-index memo of API keys never serves a record older than the
// state: a revocation, a creation after a miss, and a restored snapshot
// with the very same applied index are each seen by the next read.
func TestMemoFollowsTheState(t *testing.T) {
	k, err := apikey.New()
	if err != nil {
		t.Fatal(err)
	}
	rec := APIKey{ID: k.ID, Tenant: "payroll", Name: "nightly", Hash: k.Hash}
	a := &applier{t: t, f: newTestFSM(t)}
	a.mustOK(PutTenant{Tenant: Tenant{Name: "payroll", Owners: []string{"alice"}}, By: "admin", At: t0})

	if _, err := a.f.APIKey(k.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("before creation: err = %v, want ErrNotFound", err)
	}
	a.mustOK(CreateAPIKey{Key: rec, By: "admin", At: t0})
	got, err := a.f.APIKey(k.ID)
	if err != nil || got.RevokedAt != nil {
		t.Fatalf("after creation (a miss was remembered before): %+v, %v", got, err)
	}
	if again, _ := a.f.APIKey(k.ID); again.CreateIndex != got.CreateIndex {
		t.Fatalf("second read at one index = %+v, want %+v", again, got)
	}

	// Another state, the key revoked, at index 4.
	b := &applier{t: t, f: newTestFSM(t)}
	b.mustOK(PutTenant{Tenant: Tenant{Name: "payroll", Owners: []string{"alice"}}, By: "admin", At: t0})
	b.mustOK(CreateAPIKey{Key: rec, By: "admin", At: t0})
	b.mustOK(RevokeAPIKey{ID: k.ID, By: "secops", At: t0.Add(time.Minute)})
	b.mustOK(PutTenant{Tenant: Tenant{Name: "other", Owners: []string{"bob"}}, By: "admin", At: t0})
	snap, err := b.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}

	// a reaches index 4 with the key live, reads it, then restores b's
	// snapshot: the same applied index, another state.
	a.mustOK(PutTenant{Tenant: Tenant{Name: "third", Owners: []string{"carol"}}, By: "admin", At: t0})
	a.mustOK(PutTenant{Tenant: Tenant{Name: "fifth", Owners: []string{"erin"}}, By: "admin", At: t0})
	if a.index != b.index {
		t.Fatalf("indexes %d and %d: the test needs them equal", a.index, b.index)
	}
	if got, _ := a.f.APIKey(k.ID); got.RevokedAt != nil {
		t.Fatalf("key revoked before the restore: %+v", got)
	}
	if err := a.f.Restore(nopCloser{bytes.NewReader(sink.Bytes())}); err != nil {
		t.Fatal(err)
	}
	if a.f.AppliedIndex() != a.index {
		t.Fatalf("applied index after restore = %d, want %d", a.f.AppliedIndex(), a.index)
	}
	if got, _ := a.f.APIKey(k.ID); got.RevokedAt == nil {
		t.Fatalf("after restoring a snapshot where it is revoked, the key reads %+v", got)
	}
	a.mustOK(PutTenant{Tenant: Tenant{Name: "fourth", Owners: []string{"dan"}}, By: "admin", At: t0})
	if got, _ := a.f.APIKey(k.ID); got.RevokedAt == nil {
		t.Fatalf("after the next entry the key reads %+v", got)
	}
}

func TestMemoIsBounded(t *testing.T) {
	f := newTestFSM(t)
	for i := range memoMax + 10 {
		f.APIKey(fmt.Sprintf("%012d", i))
		if n := len(f.apiKeys.m); n > memoMax {
			t.Fatalf("memo holds %d entries after %d reads, want at most %d", n, i+1, memoMax)
		}
	}
}

// A read that failed for another reason than a missing record is not
// remembered.
func TestMemoForgetsFailures(t *testing.T) {
	f := newTestFSM(t)
	var m memo[int]
	calls := 0
	read := func() (int, error) { calls++; return 0, errors.New("disk on fire") }
	for range 2 {
		if _, err := m.get(f, "k", read); err == nil {
			t.Fatal("failure not returned")
		}
	}
	if calls != 2 {
		t.Fatalf("a failed read was remembered: read %d times in 2 gets", calls)
	}
}

// A key is read once per applied index, and again as soon as the index
// moves, for every key.
func TestMemoReadsOncePerIndex(t *testing.T) {
	a := &applier{t: t, f: newTestFSM(t)}
	var m memo[string]
	reads := map[string]int{}
	get := func(key string) string {
		t.Helper()
		v, err := m.get(a.f, key, func() (string, error) {
			reads[key]++
			return fmt.Sprintf("%s@%d", key, a.f.AppliedIndex()), nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for range 3 {
		get("hr.example.corp")
	}
	get("sales.example.corp")
	if reads["hr.example.corp"] != 1 || reads["sales.example.corp"] != 1 {
		t.Fatalf("reads at one index: %v, want one per key", reads)
	}
	a.mustOK(PutTenant{Tenant: Tenant{Name: "payroll", Owners: []string{"alice"}}, By: "admin", At: t0})
	if got := get("hr.example.corp"); got != "hr.example.corp@1" || reads["hr.example.corp"] != 2 {
		t.Fatalf("after the index moved: %s, reads %v", got, reads)
	}
	if got := get("sales.example.corp"); got != "sales.example.corp@1" || reads["sales.example.corp"] != 2 {
		t.Fatalf("after the index moved, the other key: %s, reads %v", got, reads)
	}
}
