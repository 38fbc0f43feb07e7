package state

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestManifestVersionsOnlyRise(t *testing.T) {
	a := &applier{t: t, f: newTestFSM(t)}
	if signed, v, ok, err := a.f.Manifest(); err != nil || ok || signed != nil || v != 0 {
		t.Fatalf("Manifest of an empty state = %q, %d, %v, %v; want none", signed, v, ok, err)
	}
	if _, err := a.f.StoredManifest(); !errors.Is(err, ErrNotFound) {
		t.Fatalf("StoredManifest of an empty state: %v; want ErrNotFound", err)
	}
	v3 := []byte("header.payload-v3.signature")
	put := a.mustOK(PutManifest{Signed: v3, Version: 3, By: "alice", At: t0})
	want := StoredManifest{Signed: v3, Version: 3, By: "alice", At: t0, Index: put.Index}
	got, err := a.f.StoredManifest()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("stored manifest (-want +got):\n%s", diff)
	}
	// The same push again (a retry) changes nothing, not even the author.
	if r := a.mustOK(PutManifest{Signed: v3, Version: 3, By: "bob", At: t0.Add(time.Minute)}); !r.Unchanged {
		t.Error("pushing the stored manifest again changed it")
	}
	if got, _ := a.f.StoredManifest(); got.By != "alice" || got.Index != put.Index {
		t.Errorf("after an identical push: %+v", got)
	}
	// No rollback; one version, one manifest.
	a.mustFail(PutManifest{Signed: []byte("header.payload-v2.signature"), Version: 2, By: "mallory", At: t0}, KindConflict, "version 2 is older than version 3 in force")
	a.mustFail(PutManifest{Signed: []byte("header.payload-v3-other.signature"), Version: 3, By: "mallory", At: t0}, KindConflict, "version 3 is already in force with other content; central security signs the change under version 4 or higher")
	// Bad commands (a hand-made log entry).
	a.mustFail(PutManifest{Version: 4, By: "x", At: t0}, KindInvalid, "empty")
	a.mustFail(PutManifest{Signed: []byte("x"), Version: 0, By: "x", At: t0}, KindInvalid, "version 0")
	a.mustFail(PutManifest{Signed: bytes.Repeat([]byte("x"), MaxManifestSize+1), Version: 9, By: "x", At: t0}, KindInvalid, "at most")

	v7 := []byte("header.payload-v7.signature")
	a.mustOK(PutManifest{Signed: v7, Version: 7, By: "carol", At: t0.Add(time.Hour)})
	signed, v, ok, err := a.f.Manifest()
	if err != nil || !ok || v != 7 || !bytes.Equal(signed, v7) {
		t.Errorf("Manifest after a higher version = %q, %d, %v, %v", signed, v, ok, err)
	}
	a.mustFail(PutManifest{Signed: v3, Version: 3, By: "mallory", At: t0}, KindConflict, "version 3 is older than version 7")
}

func TestManifestSurvivesSnapshots(t *testing.T) {
	a := &applier{t: t, f: newTestFSM(t)}
	a.mustOK(PutManifest{Signed: []byte("h.p5.s"), Version: 5, By: "alice", At: t0})
	want, _ := a.f.StoredManifest()

	snap, err := a.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	var saved bytes.Buffer
	if err := a.f.WriteSnapshot(&saved); err != nil {
		t.Fatal(err)
	}
	for what, data := range map[string][]byte{"raft snapshot": sink.Bytes(), "operator snapshot": saved.Bytes()} {
		other := &applier{t: t, f: newTestFSM(t)}
		other.mustOK(PutManifest{Signed: []byte("h.p9.s"), Version: 9, By: "x", At: t0})
		if err := other.f.Restore(nopCloser{bytes.NewReader(data)}); err != nil {
			t.Fatal(err)
		}
		got, err := other.f.StoredManifest()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("manifest after restoring a %s (-want +got):\n%s", what, diff)
		}
		// A restore replaces the state, so the restored version is the
		// floor from then on.
		other.index = 100
		other.mustFail(PutManifest{Signed: []byte("h.p4.s"), Version: 4, By: "x", At: t0}, KindConflict, "older than version 5")
	}
}
