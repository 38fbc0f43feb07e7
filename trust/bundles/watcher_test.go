package bundles

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func TestWatcherStoresOnlyRisingSequences(t *testing.T) {
	finance := newCA(t, financeTD)
	base := ownBundle(t, finance)
	ep := newEndpoint(t, finance, withSeq(base, 10))
	p := newFSMProposer(t)
	var leader atomic.Bool
	reg := prometheus.NewRegistry()
	w, err := NewWatcher(WatcherConfig{
		IsLeader: leader.Load, Propose: p.propose, Store: p.fsm, By: "spiffe://hr.example.corp/mcpmesh/node/n1",
		MinRefresh: 5 * time.Millisecond, MaxRefresh: 10 * time.Millisecond, FetchTimeout: 5 * time.Second,
	}, WithMetrics(reg))
	if err != nil {
		t.Fatal(err)
	}
	// The first endpoint is dead: the watcher moves on to the second.
	dead := deadURL(t)
	if err := w.SetTargets([]Target{{TrustDomain: financeTD, Bootstrap: base,
		Endpoints: []Endpoint{{URL: dead, ID: ep.id}, {URL: ep.url, ID: ep.id}}}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return within 10s of cancel")
		}
	}()

	// A follower neither fetches nor proposes.
	time.Sleep(50 * time.Millisecond)
	if n := ep.fetches.Load(); n != 0 {
		t.Fatalf("a follower fetched %d times", n)
	}
	leader.Store(true)
	waitFor(t, "sequence 10 stored", func() (bool, string) {
		seq, ok := p.stored(financeTD)
		return ok && seq == 10, fmt.Sprintf("stored %d %v", seq, ok)
	})
	if got := testutil.ToFloat64(w.fetchErrors.WithLabelValues(financeTD.Name())); got != 0 {
		t.Errorf("fetch errors = %v with one live endpoint; want 0", got)
	}

	// Refetches of the same bundle and a lower sequence propose nothing.
	ep.serve(withSeq(ownBundle(t, newCA(t, financeTD)), 9))
	puts := p.puts
	from := ep.fetches.Load()
	waitFor(t, "three more fetches", func() (bool, string) {
		n := ep.fetches.Load()
		return n >= from+3, fmt.Sprint(n-from, " fetches")
	})
	if seq, _ := p.stored(financeTD); seq != 10 || p.puts != puts {
		t.Errorf("after a lower sequence: stored %d, %d proposals (was %d); want 10 and none", seq, p.puts, puts)
	}

	ep.serve(withSeq(base, 12))
	waitFor(t, "sequence 12 stored", func() (bool, string) {
		seq, ok := p.stored(financeTD)
		return ok && seq == 12, fmt.Sprintf("stored %d %v", seq, ok)
	})

	// Every endpoint dead: counted, the stored bundle kept.
	if err := w.SetTargets([]Target{{TrustDomain: financeTD, Bootstrap: base, Endpoints: []Endpoint{{URL: dead, ID: ep.id}}}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "fetch errors counted", func() (bool, string) {
		n := testutil.ToFloat64(w.fetchErrors.WithLabelValues(financeTD.Name()))
		return n >= 1, fmt.Sprint(n)
	})
	if seq, _ := p.stored(financeTD); seq != 12 {
		t.Errorf("stored %d after failed fetches; want 12 kept", seq)
	}

	// Dropped from the targets: deleted.
	if err := w.SetTargets(nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "bundle deleted", func() (bool, string) {
		seq, ok := p.stored(financeTD)
		return !ok, fmt.Sprintf("stored %d %v", seq, ok)
	})
}

func TestWatcherTargetValidation(t *testing.T) {
	p := newFSMProposer(t)
	w, err := NewWatcher(WatcherConfig{IsLeader: func() bool { return true }, Propose: p.propose, Store: p.fsm})
	if err != nil {
		t.Fatal(err)
	}
	id := ownBundle(t, newCA(t, financeTD))
	for _, tc := range []struct {
		name   string
		target Target
	}{
		{"no endpoint", Target{TrustDomain: financeTD, Bootstrap: id}},
		{"http URL", Target{TrustDomain: financeTD, Endpoints: []Endpoint{{URL: "http://x:1/", ID: financeTD.ID()}}}},
		{"no endpoint ID", Target{TrustDomain: financeTD, Endpoints: []Endpoint{{URL: "https://x:1/"}}}},
		{"bootstrap of another trust domain", Target{TrustDomain: hrTD, Bootstrap: id, Endpoints: []Endpoint{{URL: "https://x:1/", ID: hrTD.ID()}}}},
	} {
		if err := w.SetTargets([]Target{tc.target}); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
	if _, err := NewWatcher(WatcherConfig{Propose: p.propose, Store: p.fsm}); err == nil {
		t.Error("a watcher without IsLeader was made")
	}
}

// TestWatcherRefreshNow: a bundle is next fetched when its refresh hint
// says (an hour here), or at once when RefreshNow asks (a gossip hint of a
// newer sequence).
func TestWatcherRefreshNow(t *testing.T) {
	finance := newCA(t, financeTD)
	base := ownBundle(t, finance)
	ep := newEndpoint(t, finance, withSeq(base, 10))
	p := newFSMProposer(t)
	w, err := NewWatcher(WatcherConfig{
		IsLeader: func() bool { return true }, Propose: p.propose, Store: p.fsm, By: "spiffe://hr.example.corp/mcpmesh/node/n1",
		MinRefresh: time.Hour, MaxRefresh: time.Hour, FetchTimeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.SetTargets([]Target{{TrustDomain: financeTD, Bootstrap: base, Endpoints: []Endpoint{{URL: ep.url, ID: ep.id}}}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	waitFor(t, "sequence 10 stored", func() (bool, string) {
		seq, ok := p.stored(financeTD)
		return ok && seq == 10, fmt.Sprintf("stored %d %v", seq, ok)
	})
	ep.serve(withSeq(base, 12))
	w.RefreshNow(financeTD)
	waitFor(t, "sequence 12 stored after RefreshNow", func() (bool, string) {
		seq, ok := p.stored(financeTD)
		return ok && seq == 12, fmt.Sprintf("stored %d %v, %d fetches", seq, ok, ep.fetches.Load())
	})
	// A trust domain that is not a target costs nothing.
	w.RefreshNow(spiffeid.RequireTrustDomainFromString("legal.example.corp"))
}
