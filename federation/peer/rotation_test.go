package peer

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/mcpmesh/mcpmesh/registry/state"
	"github.com/mcpmesh/mcpmesh/trust/bundles"
	"github.com/mcpmesh/mcpmesh/trust/ca"
)

// TestKeyRotationReachesOtherBU rotates finance's CA (a second root in
// its bundle) and checks that hr's leader stores the new sequence and
// that hr's running peer server then accepts a finance node holding an
// SVID of the new CA, without a restart.
func TestKeyRotationReachesOtherBU(t *testing.T) {
	finance, hr := newBU(t, financeTD), newBU(t, hrTD)
	finance.trust(t, hr)
	bootstrap := finance.own(t) // from the manifest

	// hr's replicated state and the lead's wiring: every applied bundle
	// command rebuilds hr's set from the FSM and revalidates.
	fsm, err := state.Open("state", state.WithFS(vfs.NewMem()))
	if err != nil {
		t.Fatal(err)
	}
	defer fsm.Close()
	hrSrv := startServer(t, hr, nil, nil)
	var mu sync.Mutex
	var index uint64
	propose := func(_ context.Context, cmd []byte) error {
		mu.Lock()
		defer mu.Unlock()
		index++
		if err, ok := fsm.Apply(&raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: cmd}).(error); ok {
			return err
		}
		stored, err := fsm.ForeignBundles()
		if err != nil {
			return err
		}
		foreign, err := bundles.ParseStored(stored, nil)
		if err != nil {
			return err
		}
		if err := hr.set.Replace(hr.set.Own(), foreign); err != nil {
			return err
		}
		hrSrv.Revalidate()
		return nil
	}
	storedSeq := func() (uint64, string) {
		fb, err := fsm.ForeignBundle(financeTD.Name())
		if err != nil {
			return 0, err.Error()
		}
		return fb.Sequence, fmt.Sprint("sequence ", fb.Sequence)
	}

	// finance's bundle endpoint is its own peer server's TCP side.
	finSrv := startServer(t, finance, nil, nil)
	w, err := bundles.NewWatcher(bundles.WatcherConfig{IsLeader: func() bool { return true }, Propose: propose, Store: fsm,
		MinRefresh: 5 * time.Millisecond, MaxRefresh: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.SetTargets([]bundles.Target{{TrustDomain: financeTD, Bootstrap: bootstrap, Endpoints: []bundles.Endpoint{
		{URL: finSrv.BundleEndpointURL(), ID: spiffeid.RequireFromPath(financeTD, "/mcpmesh/node/server-1")}}}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	first, _ := bootstrap.SequenceNumber()
	waitFor(t, "hr stores finance's bundle", func() (bool, string) {
		seq, last := storedSeq()
		return seq == first, last
	})
	oldClient := newClient(t, finance, finance.node(t, "old-key"), nil)
	if _, _, err := get(t, oldClient, hrTD, hrSrv.Addr().String(), "/federation/v1/whoami"); err != nil {
		t.Fatalf("finance node with the old CA's SVID: %v", err)
	}

	// finance rotates: a new CA (a later root), both in its bundle.
	later := time.Now().Add(5 * time.Second)
	newCA, err := ca.Init(t.TempDir(), financeTD, ca.WithClock(func() time.Time { return later }))
	if err != nil {
		t.Fatal(err)
	}
	newClientSVID := issue(t, newCA, spiffeid.RequireFromPath(financeTD, "/mcpmesh/node/new-key"))
	newKeyClient := newClient(t, finance, newClientSVID, nil)
	if _, _, err := get(t, newKeyClient, hrTD, hrSrv.Addr().String(), "/federation/v1/whoami"); err == nil {
		t.Fatal("hr accepted an SVID of finance's new CA before it fetched the new bundle")
	}
	rotated, err := bundles.OwnBundle(0, finance.ca, newCA)
	if err != nil {
		t.Fatal(err)
	}
	if err := finance.set.Replace(rotated, []*spiffebundle.Bundle{hr.set.Own()}); err != nil {
		t.Fatal(err)
	}
	want, _ := rotated.SequenceNumber()
	waitFor(t, "hr stores finance's rotated bundle", func() (bool, string) {
		seq, last := storedSeq()
		return seq == want, last
	})
	if _, _, err := get(t, newKeyClient, hrTD, hrSrv.Addr().String(), "/federation/v1/whoami"); err != nil {
		t.Fatalf("finance node with the new CA's SVID after the rotation reached hr: %v", err)
	}
	// The old key still works during the overlap, on its open connection.
	if _, _, err := get(t, oldClient, hrTD, hrSrv.Addr().String(), "/federation/v1/whoami"); err != nil {
		t.Fatalf("finance node with the old CA's SVID during the overlap: %v", err)
	}
}
