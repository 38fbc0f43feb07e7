package manifest

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestHolder(t *testing.T) {
	var h Holder
	if h.Load() != nil || h.Current(beforeExpiry) != nil {
		t.Fatal("a zero Holder holds a manifest")
	}
	// None in force: the queries answer no, without a nil check.
	if none := h.Current(beforeExpiry); none.Allows(hrTD, financeTD) || len(none.Peers(hrTD)) != 0 || !none.Expired(beforeExpiry) {
		t.Error("a nil manifest allows something")
	}
	if _, ok := h.Current(beforeExpiry).Domain(hrTD); ok {
		t.Error("a nil manifest declares a domain")
	}
	changed := h.Changed()
	m := mustParse(t, testYAML(t))
	h.Store(m)
	select {
	case <-changed:
	default:
		t.Fatal("Store did not close the Changed channel")
	}
	if h.Load() != m || h.Current(beforeExpiry) != m {
		t.Error("Holder does not hand out the manifest stored")
	}
	// Expired: still shown, no longer in force.
	if h.Load() != m || h.Current(afterExpiry) != nil {
		t.Error("an expired manifest is still in force")
	}
	again := h.Changed()
	select {
	case <-again:
		t.Fatal("Changed is closed before the next Store")
	default:
	}
	h.Store(nil)
	<-again
	if h.Load() != nil {
		t.Error("Store(nil) kept the manifest")
	}
}

func TestCollector(t *testing.T) {
	var h Holder
	c := NewCollector(&h)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	want := `
# HELP mcpmesh_federation_manifest_version Version of the federation manifest the node holds; 0 when it holds none.
# TYPE mcpmesh_federation_manifest_version gauge
mcpmesh_federation_manifest_version 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "mcpmesh_federation_manifest_version", "mcpmesh_federation_manifest_expiry_timestamp_seconds"); err != nil {
		t.Error(err)
	}
	h.Store(mustParse(t, testYAML(t)))
	want = `
# HELP mcpmesh_federation_manifest_expiry_timestamp_seconds When the federation manifest the node holds expires (Unix time); federation stops then unless a fresh one is pushed.
# TYPE mcpmesh_federation_manifest_expiry_timestamp_seconds gauge
mcpmesh_federation_manifest_expiry_timestamp_seconds 1.7987616e+09
# HELP mcpmesh_federation_manifest_version Version of the federation manifest the node holds; 0 when it holds none.
# TYPE mcpmesh_federation_manifest_version gauge
mcpmesh_federation_manifest_version 3
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "mcpmesh_federation_manifest_version", "mcpmesh_federation_manifest_expiry_timestamp_seconds"); err != nil {
		t.Error(err)
	}
}
