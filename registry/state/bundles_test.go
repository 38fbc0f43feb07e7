package state

import (
	"bytes"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/mcpmesh/mcpmesh/trust/ca"
)

// testBundleJSON returns the SPIFFE bundle document of a new CA for td,
// with the given sequence number.
func testBundleJSON(t *testing.T, td string, seq uint64) []byte {
	t.Helper()
	c, err := ca.Init(t.TempDir(), spiffeid.RequireTrustDomainFromString(td))
	if err != nil {
		t.Fatal(err)
	}
	b := spiffebundle.FromX509Bundle(c.Bundle())
	b.SetSequenceNumber(seq)
	raw, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestBundleSequenceRules(t *testing.T) {
	a := &applier{t: t, f: newTestFSM(t)}
	const td = "finance.example.corp"
	b5, b7, b6 := testBundleJSON(t, td, 5), testBundleJSON(t, td, 7), testBundleJSON(t, td, 6)

	first := a.mustOK(PutBundle{TrustDomain: td, Sequence: 5, Bundle: b5, By: "leader-1", At: t0})
	if first.Unchanged {
		t.Fatal("the first bundle of a trust domain was not stored")
	}
	// The same sequence again (a second watcher) and a lower one are no-ops.
	if r := a.mustOK(PutBundle{TrustDomain: td, Sequence: 5, Bundle: b7, By: "leader-2", At: t0}); !r.Unchanged {
		t.Error("an equal sequence replaced the stored bundle")
	}
	if r := a.mustOK(PutBundle{TrustDomain: td, Sequence: 4, Bundle: b7, By: "leader-2", At: t0}); !r.Unchanged {
		t.Error("a lower sequence replaced the stored bundle")
	}
	got, err := a.f.ForeignBundle(td)
	if err != nil {
		t.Fatal(err)
	}
	want := ForeignBundle{TrustDomain: td, Sequence: 5, Bundle: b5, By: "leader-1", At: t0, Index: first.Index}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("stored bundle after equal and lower sequences (-want +got):\n%s", diff)
	}

	higher := a.mustOK(PutBundle{TrustDomain: td, Sequence: 7, Bundle: b7, By: "leader-2", At: t0})
	if higher.Unchanged {
		t.Fatal("a higher sequence was not stored")
	}
	a.mustOK(PutBundle{TrustDomain: td, Sequence: 6, Bundle: b6, By: "leader-1", At: t0})
	if got, _ := a.f.ForeignBundle(td); got.Sequence != 7 || !bytes.Equal(got.Bundle, b7) {
		t.Errorf("stored sequence %d after 5, 7, 6; want 7 with its bundle", got.Sequence)
	}

	a.mustOK(PutBundle{TrustDomain: "hr.example.corp", Sequence: 1, Bundle: testBundleJSON(t, "hr.example.corp", 1), By: "x", At: t0})
	all, err := a.f.ForeignBundles()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, b := range all {
		names = append(names, b.TrustDomain)
	}
	if diff := cmp.Diff([]string{"finance.example.corp", "hr.example.corp"}, names); diff != "" {
		t.Errorf("ForeignBundles (-want +got):\n%s", diff)
	}

	if r := a.mustOK(DeleteBundle{TrustDomain: td, By: "x", At: t0}); r.Unchanged {
		t.Error("deleting a stored bundle changed nothing")
	}
	if _, err := a.f.ForeignBundle(td); err == nil {
		t.Error("a deleted bundle is still stored")
	}
	if r := a.mustOK(DeleteBundle{TrustDomain: td, By: "x", At: t0}); !r.Unchanged {
		t.Error("deleting a bundle not stored changed something")
	}
	// After a delete, the trust domain starts over: any sequence is stored.
	if r := a.mustOK(PutBundle{TrustDomain: td, Sequence: 1, Bundle: b5, By: "x", At: t0}); r.Unchanged {
		t.Error("a bundle after a delete was not stored")
	}
}

func TestPutBundleValidation(t *testing.T) {
	a := &applier{t: t, f: newTestFSM(t)}
	hr := testBundleJSON(t, "hr.example.corp", 1)
	a.mustFail(PutBundle{TrustDomain: "Not A TD", Sequence: 1, Bundle: hr}, KindInvalid, "bundle trust domain")
	a.mustFail(PutBundle{TrustDomain: "hr.example.corp", Sequence: 1, Bundle: []byte("{}")}, KindInvalid, "want a SPIFFE bundle document")
	a.mustFail(PutBundle{TrustDomain: "hr.example.corp", Sequence: 1, Bundle: make([]byte, MaxBundleLen+1)}, KindInvalid, "at most")
}

func TestBundlesSurviveSnapshots(t *testing.T) {
	a := &applier{t: t, f: newTestFSM(t)}
	a.mustOK(PutBundle{TrustDomain: "finance.example.corp", Sequence: 3, Bundle: testBundleJSON(t, "finance.example.corp", 3), By: "x", At: t0})
	want, _ := a.f.ForeignBundles()
	snap, err := a.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	other := &applier{t: t, f: newTestFSM(t)}
	other.mustOK(PutBundle{TrustDomain: "stale.example.corp", Sequence: 1, Bundle: testBundleJSON(t, "stale.example.corp", 1), By: "x", At: t0})
	if err := other.f.Restore(nopCloser{bytes.NewReader(sink.Bytes())}); err != nil {
		t.Fatal(err)
	}
	got, _ := other.f.ForeignBundles()
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("bundles after restoring a snapshot (-want +got):\n%s", diff)
	}
}
