package state

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestSigningKeyRotation(t *testing.T) {
	a := &applier{t: t, f: newTestFSM(t)}
	secret1, secret2 := []byte("private-key-one-der"), []byte("private-key-two-der")
	a.mustFail(RotateSigningKey{ID: "short", Algorithm: "ES256", Private: secret1, At: t0}, KindInvalid, "8 to 64")
	a.mustFail(RotateSigningKey{ID: "key-0001", Algorithm: "HS256", Private: secret1, At: t0}, KindInvalid, "use ES256")
	a.mustFail(RotateSigningKey{ID: "key-0001", Algorithm: "ES256", At: t0}, KindInvalid, "private key is missing")
	a.mustFail(RotateSigningKey{ID: "key-0001", Algorithm: "ES256", Private: secret1}, KindInvalid, "rotation time")

	first := a.mustOK(RotateSigningKey{ID: "key-0001", Algorithm: "ES256", Private: secret1, At: t0})
	if r := a.mustOK(RotateSigningKey{ID: "key-0001", Algorithm: "ES256", Private: secret1, At: t0}); !r.Unchanged {
		t.Error("a repeated rotation changed the state")
	}
	a.mustFail(RotateSigningKey{ID: "key-0001", Algorithm: "ES256", Private: secret2, At: t0}, KindConflict, "already exists")

	a.mustOK(RotateSigningKey{ID: "key-0002", Algorithm: "ES256", Private: secret2, At: t0.Add(time.Hour)})
	keys, err := a.f.SigningKeys()
	if err != nil {
		t.Fatal(err)
	}
	retired := t0.Add(time.Hour)
	want := []SigningKey{
		{ID: "key-0001", Algorithm: "ES256", Private: secret1, CreatedAt: t0, RetiredAt: &retired, CreateIndex: first.Index, ModifyIndex: first.Index + 3},
		{ID: "key-0002", Algorithm: "ES256", Private: secret2, CreatedAt: retired, CreateIndex: first.Index + 3, ModifyIndex: first.Index + 3},
	}
	if diff := cmp.Diff(want, keys); diff != "" {
		t.Fatalf("keys after rotation (-want +got):\n%s", diff)
	}

	a.mustFail(DeleteSigningKey{ID: "key-0002", At: t0}, KindConflict, "active key")
	a.mustOK(DeleteSigningKey{ID: "key-0001", At: t0.Add(2 * time.Hour)})
	if r := a.mustOK(DeleteSigningKey{ID: "key-0001", At: t0.Add(2 * time.Hour)}); !r.Unchanged {
		t.Error("deleting a deleted key changed the state")
	}
	keys, _ = a.f.SigningKeys()
	if len(keys) != 1 || keys[0].ID != "key-0002" || !keys[0].Active() {
		t.Fatalf("keys after delete = %v", keys)
	}
}

// TestSigningKeyPublishedAhead: a rotation with ActiveFrom publishes the
// new key at once and lets it sign only from then; the old key signs until
// then, and is retired as of then.
func TestSigningKeyPublishedAhead(t *testing.T) {
	a := &applier{t: t, f: newTestFSM(t)}
	a.mustOK(RotateSigningKey{ID: "key-0001", Algorithm: "ES256", Private: []byte("one"), At: t0})
	from := t0.Add(time.Hour)
	a.mustFail(RotateSigningKey{ID: "key-0002", Algorithm: "ES256", Private: []byte("two"), At: from, ActiveFrom: t0}, KindInvalid, "before the rotation time")
	a.mustOK(RotateSigningKey{ID: "key-0002", Algorithm: "ES256", Private: []byte("two"), At: t0.Add(50 * time.Minute), ActiveFrom: from})
	keys, err := a.f.SigningKeys()
	if err != nil || len(keys) != 2 {
		t.Fatalf("keys = %v, %v", keys, err)
	}
	old, next := keys[0], keys[1]
	if old.RetiredAt == nil || !old.RetiredAt.Equal(from) || next.ActiveFrom == nil || !next.ActiveFrom.Equal(from) {
		t.Fatalf("old key retired %v, next key signs from %v; want both %s", old.RetiredAt, next.ActiveFrom, from)
	}
	for _, c := range []struct {
		at             time.Time
		oldSigns, next bool
	}{{t0.Add(55 * time.Minute), true, false}, {from, false, true}} {
		if old.SignsAt(c.at) != c.oldSigns || next.SignsAt(c.at) != c.next {
			t.Errorf("at %s: old signs %v, next signs %v; want %v, %v", c.at, old.SignsAt(c.at), next.SignsAt(c.at), c.oldSigns, c.next)
		}
	}
	a.mustFail(DeleteSigningKey{ID: "key-0002", At: t0}, KindConflict, "active key")
}

// TestSigningKeyNeverPrinted: the JSON form, String, %v, %#v and slog
// value of a key never carry its private part; the snapshot does (a
// restored replica must sign with the same key).
func TestSigningKeyNeverPrinted(t *testing.T) {
	a := &applier{t: t, f: newTestFSM(t)}
	secret := []byte("PRIVATE-KEY-MATERIAL")
	a.mustOK(RotateSigningKey{ID: "key-0001", Algorithm: "ES256", Private: secret, At: t0})
	keys, _ := a.f.SigningKeys()
	k := keys[0]
	raw, _ := json.Marshal(k)
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("key", "key", k)
	cmd := RotateSigningKey{ID: "key-0001", Algorithm: "ES256", Private: secret, At: t0}
	for what, s := range map[string]string{
		"json": string(raw), "String": k.String(), "%v": fmt.Sprintf("%v", k), "%+v": fmt.Sprintf("%+v", k),
		"%#v": fmt.Sprintf("%#v", k), "slog": logged.String(), "command %v": fmt.Sprintf("%v", cmd), "command %#v": fmt.Sprintf("%#v", cmd),
	} {
		if strings.Contains(s, string(secret)) || strings.Contains(s, "UFJJVkFURS1LRVktTUFURVJJQUw") || !strings.Contains(s, "key-0001") {
			t.Errorf("%s of a signing key = %s; want its id and not its private key", what, s)
		}
	}

	// A Raft snapshot carries the keys: a replica restored from it must
	// sign with the same key. An operator's snapshot leaves them out.
	snap, err := a.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	other := newTestFSM(t)
	if err := other.Restore(nopCloser{bytes.NewReader(sink.Bytes())}); err != nil {
		t.Fatal(err)
	}
	got, _ := other.SigningKeys()
	if diff := cmp.Diff(keys, got); diff != "" {
		t.Errorf("signing keys after restoring a Raft snapshot (-want +got):\n%s", diff)
	}
	var saved bytes.Buffer
	if err := a.f.WriteSnapshot(&saved); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(saved.Bytes(), secret) || bytes.Contains(saved.Bytes(), []byte("UFJJVkFURS1LRVktTUFURVJJQUw")) {
		t.Error("an operator snapshot holds a signing key's private part")
	}
	if err := other.Restore(nopCloser{bytes.NewReader(saved.Bytes())}); err != nil {
		t.Fatal(err)
	}
	if got, _ := other.SigningKeys(); len(got) != 0 {
		t.Errorf("signing keys after restoring an operator snapshot = %v, want none", got)
	}
}

// memSink is a raft.SnapshotSink in memory.
type memSink struct{ bytes.Buffer }

func (*memSink) ID() string    { return "mem" }
func (*memSink) Cancel() error { return nil }
func (*memSink) Close() error  { return nil }
