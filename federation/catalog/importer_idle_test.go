package catalog

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/mcpmesh/mcpmesh/registry/state"
)

// heldFetch stands for an exporter holding the long poll: it answers
// nothing until the sync loop ends.
func heldFetch(ctx context.Context, _ uint64) (*Catalog, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestImporterScansOnlyOnChange: the importer reads the imports for
// revoked origins when this node becomes leader, when the origins
// change, and every Rescan as a backstop; an idle leader or follower
// does no scan in between (it used to scan every second).
func TestImporterScansOnlyOnChange(t *testing.T) {
	hr := newBU(t) // pebble's goroutines live outside the bubble
	synctest.Test(t, func(t *testing.T) {
		var leading atomic.Bool
		leaderChanged := make(chan struct{}, 1)
		im, err := NewImporter(ImporterConfig{FSM: hr.fsm, Apply: hr.apply, IsLeader: leading.Load, LeaderChanged: leaderChanged, TrustDomain: hrTD})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- im.Run(ctx) }()
		defer func() {
			cancel()
			<-done
		}()
		finance := Origin{Namespace: "finance", TrustDomain: financeTD, Fetch: heldFetch}
		sales := Origin{Namespace: "sales", TrustDomain: salesTD, Fetch: heldFetch}
		if err := im.SetOrigins([]Origin{finance, sales}); err != nil {
			t.Fatal(err)
		}
		wantScans := func(when string, want int64) {
			t.Helper()
			synctest.Wait()
			if got := im.scans.Load(); got != want {
				t.Fatalf("%s: %d scans of the imports, want %d", when, got, want)
			}
		}
		time.Sleep(time.Hour)
		wantScans("a follower idle for an hour", 0)

		leading.Store(true)
		leaderChanged <- struct{}{}
		wantScans("on becoming leader", 1)
		time.Sleep(DefaultRescan - time.Second)
		wantScans("a leader idle for almost Rescan", 1)

		// sales is revoked while imports of it are stored.
		enc, err := state.Encode(state.PutImports{Namespace: "sales", TrustDomain: salesTD.Name(), CatalogVersion: 1, Hash: "h", SyncedAt: t0})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := hr.apply(t.Context(), enc); err != nil {
			t.Fatal(err)
		}
		if err := im.SetOrigins([]Origin{finance}); err != nil {
			t.Fatal(err)
		}
		wantScans("on an origin revoked", 2)
		if _, err := hr.fsm.Imports("sales"); !errors.Is(err, state.ErrNotFound) {
			t.Fatalf("the revoked origin's imports: %v, want deleted", err)
		}
		time.Sleep(DefaultRescan - time.Second)
		wantScans("idle again for almost Rescan", 2)
		time.Sleep(2 * time.Second)
		wantScans("at Rescan", 3)

		// Leadership lost and won again: a scan on winning it.
		leading.Store(false)
		leaderChanged <- struct{}{}
		wantScans("on losing the leadership", 3)
		leading.Store(true)
		leaderChanged <- struct{}{}
		wantScans("on winning it again", 4)
	})
}
