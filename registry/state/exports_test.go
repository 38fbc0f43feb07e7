package state

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mcpmesh/mcpmesh/registry/card"
)

// exportTestState registers corp.finance/ledger 1.0.0 and 2.0.0 (approved)
// and 3.0.0 (submitted), each with tools a_tool and b_tool.
func exportTestState(t *testing.T) *applier {
	t.Helper()
	a := &applier{t: t, f: newTestFSM(t)}
	for _, v := range []string{"1.0.0", "2.0.0", "3.0.0"} {
		a.mustOK(SubmitVersion{Card: testCard("corp.finance/ledger", v), By: "ci", At: t0})
	}
	for _, v := range []string{"1.0.0", "2.0.0"} {
		a.mustOK(Transition{Server: "corp.finance/ledger", Version: v, To: card.StateApproved, By: "rev", At: t0})
	}
	return a
}

func catalogNames(t *testing.T, f *FSM, td string) (uint64, []string) {
	t.Helper()
	c, err := f.ExportedCatalog(td)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, tool := range c.Tools {
		out = append(out, tool.Server+"@"+tool.Version+" "+tool.Name)
	}
	return c.Version, out
}

func TestExportsFilterPerConsumer(t *testing.T) {
	a := exportTestState(t)
	put := a.mustOK(PutExports{By: "ops", At: t0, Exports: []Export{
		{Server: "corp.finance/ledger", Tools: []string{"a_tool"}, Versions: []string{"2.x"},
			To: []Consumer{{TrustDomain: "hr.example.corp", Principals: []string{"oidc:"}, Scopes: []string{"reports:read"}}}},
		{Server: "corp.finance/ledger", Tools: []string{"b_tool"},
			To: []Consumer{{TrustDomain: "sales.example.corp"}}},
	}})
	v, hr := catalogNames(t, a.f, "hr.example.corp")
	if diff := cmp.Diff([]string{"corp.finance/ledger@2.0.0 a_tool"}, hr); diff != "" {
		t.Errorf("hr's catalog (-want +got):\n%s", diff)
	}
	if v != put.Index {
		t.Errorf("hr's catalog version = %d, want the exports' index %d", v, put.Index)
	}
	// A tool exported to hr only is invisible to sales, and the unlisted
	// submitted 3.0.0 to everyone.
	_, sales := catalogNames(t, a.f, "sales.example.corp")
	if diff := cmp.Diff([]string{"corp.finance/ledger@1.0.0 b_tool", "corp.finance/ledger@2.0.0 b_tool"}, sales); diff != "" {
		t.Errorf("sales' catalog (-want +got):\n%s", diff)
	}
	if v, other := catalogNames(t, a.f, "other.example.corp"); v != 0 || len(other) != 0 {
		t.Errorf("a trust domain never exported to: version %d, tools %v", v, other)
	}
	c, _ := a.f.ExportedCatalog("hr.example.corp")
	if got := c.Tools[0]; got.State != card.StateApproved || got.Principals[0] != "oidc:" || got.Scopes[0] != "reports:read" || !strings.HasPrefix(got.Hash, "sha256:") || !strings.Contains(string(got.Definition), `"a_tool"`) {
		t.Errorf("exported record = %+v", got)
	}

	// Approving 3.0.0 changes sales' catalog (every version) but not hr's (2.x).
	salesBefore, _ := a.f.CatalogVersion("sales.example.corp")
	ap := a.mustOK(Transition{Server: "corp.finance/ledger", Version: "3.0.0", To: card.StateApproved, By: "rev", At: t0})
	if v, _ := a.f.CatalogVersion("hr.example.corp"); v != put.Index {
		t.Errorf("hr's version moved to %d on a change that does not concern it", v)
	}
	if v, _ := a.f.CatalogVersion("sales.example.corp"); v != ap.Index || v <= salesBefore {
		t.Errorf("sales' version = %d, want %d (rising from %d)", v, ap.Index, salesBefore)
	}

	// A kill hides; a revive shows again at a higher version.
	k := a.mustOK(PutKill{Kind: KillTool, Name: "corp.finance/ledger/a_tool", Reason: "incident 1", By: "sec", At: t0})
	if v, hr := catalogNames(t, a.f, "hr.example.corp"); v != k.Index || len(hr) != 0 {
		t.Errorf("after killing a_tool hr sees version %d, %v", v, hr)
	}
	r := a.mustOK(Revive{Kind: KillTool, Name: "corp.finance/ledger/a_tool", By: "sec", At: t0})
	if v, hr := catalogNames(t, a.f, "hr.example.corp"); v != r.Index || len(hr) != 1 {
		t.Errorf("after the revive hr sees version %d, %v", v, hr)
	}
	// Quarantine and deprecation.
	a.mustOK(Transition{Server: "corp.finance/ledger", Version: "1.0.0", To: card.StateQuarantined, By: "rev", At: t0, Reason: "drift"})
	if _, sales := catalogNames(t, a.f, "sales.example.corp"); len(sales) != 2 || strings.Contains(sales[0], "1.0.0") {
		t.Errorf("a quarantined version is exported: %v", sales)
	}
	a.mustOK(Transition{Server: "corp.finance/ledger", Version: "2.0.0", To: card.StateDeprecated, By: "rev", At: t0,
		Deprecation: &card.Deprecation{Sunset: t0.Add(30 * 24 * time.Hour), Replacement: "3.0.0"}})
	c, _ = a.f.ExportedCatalog("hr.example.corp")
	if len(c.Tools) != 1 || c.Tools[0].State != card.StateDeprecated || c.Tools[0].Deprecation == nil || c.Tools[0].Deprecation.Replacement != "3.0.0" {
		t.Errorf("deprecated export = %+v", c.Tools)
	}
	// Removing hr from the exports empties its catalog at a new version.
	last := a.mustOK(PutExports{By: "ops", At: t0, Exports: []Export{{Server: "corp.finance/ledger", Tools: []string{"b_tool"}, To: []Consumer{{TrustDomain: "sales.example.corp"}}}}})
	if v, hr := catalogNames(t, a.f, "hr.example.corp"); v != last.Index || len(hr) != 0 {
		t.Errorf("after revoking hr: version %d, %v", v, hr)
	}
	// The same set again changes nothing.
	if r := a.mustOK(PutExports{By: "ops", At: t0, Exports: []Export{{Server: "corp.finance/ledger", Tools: []string{"b_tool"}, To: []Consumer{{TrustDomain: "sales.example.corp"}}}}}); !r.Unchanged {
		t.Error("putting the same export set again was a change")
	}
	es, _ := a.f.Exports()
	if len(es.Exports) != 1 || es.ModifyIndex != last.Index {
		t.Errorf("Exports() = %+v", es)
	}
}

func TestExportValidation(t *testing.T) {
	a := &applier{t: t, f: newTestFSM(t)}
	hr := []Consumer{{TrustDomain: "hr.example.corp"}}
	for _, tc := range []struct {
		e    []Export
		want string
	}{
		{[]Export{{Server: "ledger", Tools: []string{"x"}, To: hr}}, "<namespace>/<server>"},
		{[]Export{{Server: "corp.finance/ledger", To: hr}}, "tools is required"},
		{[]Export{{Server: "corp.finance/ledger", Tools: []string{"*"}, To: hr}}, "no wildcard"},
		{[]Export{{Server: "corp.finance/ledger", Tools: []string{"x", "x"}, To: hr}}, "named twice"},
		{[]Export{{Server: "corp.finance/ledger", Tools: []string{"x"}, Versions: []string{"^2"}, To: hr}}, "2.x"},
		{[]Export{{Server: "corp.finance/ledger", Tools: []string{"x"}, Versions: []string{"2.1.0-rc.1"}, To: hr}}, "2.x"},
		{[]Export{{Server: "corp.finance/ledger", Tools: []string{"x"}}}, "to is required"},
		{[]Export{{Server: "corp.finance/ledger", Tools: []string{"x"}, To: []Consumer{{TrustDomain: "spiffe://hr.example.corp"}}}}, "trust domain"},
		{[]Export{{Server: "corp.finance/ledger", Tools: []string{"x"}, To: []Consumer{{TrustDomain: "hr.example.corp", Scopes: []string{"a b"}}}}}, "scope"},
		{[]Export{{Server: "corp.finance/ledger", Tools: []string{"x"}, To: []Consumer{{TrustDomain: "hr.example.corp", Principals: []string{""}}}}}, "principal prefix"},
		{[]Export{
			{Server: "corp.finance/ledger", Tools: []string{"x"}, Versions: []string{"2.x"}, To: hr},
			{Server: "corp.finance/ledger", Tools: []string{"x"}, Versions: []string{"2.1.x"}, To: hr},
		}, "overlapping versions"},
	} {
		a.mustFail(PutExports{Exports: tc.e, By: "ops", At: t0}, KindInvalid, tc.want)
	}
	// Disjoint versions of one tool may go to one consumer with other terms.
	a.mustOK(PutExports{By: "ops", At: t0, Exports: []Export{
		{Server: "corp.finance/ledger", Tools: []string{"x"}, Versions: []string{"1.x"}, To: hr},
		{Server: "corp.finance/ledger", Tools: []string{"x"}, Versions: []string{"2.x"}, To: []Consumer{{TrustDomain: "hr.example.corp", Scopes: []string{"s"}}}},
	}})
}

func TestVersionPatterns(t *testing.T) {
	for _, tc := range []struct {
		pattern, version string
		want             bool
	}{
		{"2.x", "2.0.0", true}, {"2.x", "2.9.1-rc.1", true}, {"2.x", "20.0.0", false}, {"2.x", "1.2.0", false},
		{"2.1.x", "2.1.7", true}, {"2.1.x", "2.10.0", false}, {"2.1.0", "2.1.0", true}, {"2.1.0", "2.1.1", false},
	} {
		e := Export{Versions: []string{tc.pattern}}
		if got := e.MatchesVersion(tc.version); got != tc.want {
			t.Errorf("%s matches %s = %v, want %v", tc.pattern, tc.version, got, tc.want)
		}
	}
}

func importedTool(name, version, hash string) ImportedTool {
	return ImportedTool{ExportedTool: ExportedTool{Server: "corp.finance/ledger", Version: version, Name: name,
		Definition: []byte(`{"name":"` + name + `","inputSchema":{"type":"object"}}`), Hash: hash, State: card.StateApproved},
		InputSchema: []byte(`{"type":"object"}`)}
}

var (
	hashA = "sha256:" + strings.Repeat("a", 64)
	hashB = "sha256:" + strings.Repeat("b", 64)
)

func TestImportsReplaceAndDelete(t *testing.T) {
	a := &applier{t: t, f: newTestFSM(t)}
	put := PutImports{Namespace: "finance", TrustDomain: "finance.example.corp", CatalogVersion: 7, Hash: hashA,
		Tools: []ImportedTool{importedTool("generate_report", "2.0.0", hashA)}, SyncedAt: t0}
	first := a.mustOK(put)
	if r := a.mustOK(put); !r.Unchanged {
		t.Error("the same imports again was a change")
	}
	im, err := a.f.Imports("finance")
	if err != nil || im.CatalogVersion != 7 || len(im.Tools) != 1 || im.ModifyIndex != first.Index || im.Tools[0].MCPName("finance") != "finance.generate_report" {
		t.Fatalf("Imports = %+v, %v", im, err)
	}
	// Replaced whole.
	put2 := put
	put2.CatalogVersion, put2.Hash = 9, hashB
	put2.Tools = []ImportedTool{importedTool("other", "2.0.0", hashB)}
	a.mustOK(put2)
	if im, _ := a.f.Imports("finance"); len(im.Tools) != 1 || im.Tools[0].Name != "other" {
		t.Errorf("after a replace: %+v", im.Tools)
	}
	// No rollback, no rug pull.
	old := put
	old.CatalogVersion = 8
	a.mustFail(old, KindConflict, "older than the stored 9")
	rug := put2
	rug.CatalogVersion, rug.Hash = 10, hashA
	rug.Tools = []ImportedTool{importedTool("other", "2.0.0", hashA)}
	a.mustFail(rug, KindConflict, "differs from the pinned")
	// Bad names: the /mcp name must fit.
	long := put2
	long.CatalogVersion = 11
	long.Tools = []ImportedTool{importedTool(strings.Repeat("x", 125), "2.0.0", hashB)}
	a.mustFail(long, KindInvalid, "/mcp name")

	a.mustOK(PutPeerStatus{Namespace: "finance", TrustDomain: "finance.example.corp", LastSuccess: t0})
	if r := a.mustOK(PutPeerStatus{Namespace: "finance", TrustDomain: "finance.example.corp", LastSuccess: t0}); !r.Unchanged {
		t.Error("the same status again was a change")
	}
	st, err := a.f.PeerStatus("finance")
	if err != nil || !st.LastSuccess.Equal(t0) || st.Stale(t0.Add(time.Minute), 5*time.Minute) || !st.Stale(t0.Add(6*time.Minute), 5*time.Minute) {
		t.Errorf("PeerStatus = %+v, %v", st, err)
	}
	a.mustFail(PutPeerStatus{Namespace: "finance", TrustDomain: "finance.example.corp", LastError: "a\nb"}, KindInvalid, "one line")

	// Revoked: imports and status go.
	a.mustOK(PutImports{Namespace: "finance", Remove: true})
	if _, err := a.f.Imports("finance"); err == nil {
		t.Error("imports survived their removal")
	}
	if _, err := a.f.PeerStatus("finance"); err == nil {
		t.Error("status survived the removal")
	}
	if r := a.mustOK(PutImports{Namespace: "finance", Remove: true}); !r.Unchanged {
		t.Error("removing nothing was a change")
	}
}
