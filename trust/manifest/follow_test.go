package manifest

import (
	"context"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"

	"github.com/mcpmesh/mcpmesh/registry/state"
)

var _ Source = (*state.FSM)(nil)

// TestFollowRegistryState: the Holder follows the manifest committed to a
// real registry state, and holds none when the stored one does not verify
// with the node's key.
func TestFollowRegistryState(t *testing.T) {
	fsm, err := state.Open("state", state.WithFS(vfs.NewMem()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fsm.Close() })
	var index uint64
	put := func(signed []byte, version uint64) {
		t.Helper()
		cmd, err := state.Encode(state.PutManifest{Signed: signed, Version: version, By: "alice", At: beforeExpiry})
		if err != nil {
			t.Fatal(err)
		}
		index++
		if res := fsm.Apply(&raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: cmd}); res != (state.ApplyResult{Index: index}) {
			t.Fatalf("apply PutManifest v%d: %v", version, res)
		}
	}
	key := mustKey(t, EdDSA)
	var h Holder
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- Follow(ctx, fsm, key.Public(), &h, nil) }()

	// waitFor waits (bounded) until the holder holds what ok accepts.
	waitFor := func(what string, ok func(*Manifest) bool) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			changed := h.Changed()
			m := h.Load()
			if ok(m) {
				return
			}
			select {
			case <-changed:
			case <-deadline:
				t.Fatalf("holder never held %s; last held %+v", what, m)
			}
		}
	}

	m := mustParse(t, testYAML(t))
	put(mustSign(t, m, key), 3)
	waitFor("version 3", func(m *Manifest) bool { return m != nil && m.Version == 3 && m.Allows(hrTD, financeTD) })

	// Signed by another key: the node does not federate on it.
	m.Version = 4
	put(mustSign(t, m, mustKey(t, EdDSA)), 4)
	waitFor("none", func(m *Manifest) bool { return m == nil })

	m.Version = 5
	put(mustSign(t, m, key), 5)
	waitFor("version 5", func(m *Manifest) bool { return m != nil && m.Version == 5 })

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Follow returned %v after its context ended; want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Follow did not return after its context ended")
	}
}
