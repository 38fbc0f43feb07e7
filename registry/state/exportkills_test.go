package state

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// killedOf returns hr's catalog: its version, its live tools and its
// killed entries.
func killedOf(t *testing.T, f *FSM) (ExportedCatalog, []string) {
	t.Helper()
	c, err := f.ExportedCatalog("hr.example.corp")
	if err != nil {
		t.Fatal(err)
	}
	var live []string
	for _, tool := range c.Tools {
		live = append(live, tool.Version+" "+tool.Name)
	}
	want, err := CatalogHashOf(c.Tools, c.Killed)
	if err != nil {
		t.Fatal(err)
	}
	if c.Hash != want {
		t.Errorf("catalog hash %s is not CatalogHashOf its tools and killed entries (%s)", c.Hash, want)
	}
	return c, live
}

func TestCatalogListsKilledToolsApart(t *testing.T) {
	a := exportTestState(t)
	put := a.mustOK(PutExports{By: "ops", At: t0, Exports: []Export{
		{Server: "corp.finance/ledger", Tools: []string{"a_tool", "b_tool"}, To: []Consumer{{TrustDomain: "hr.example.corp"}}},
	}})
	c, live := killedOf(t, a.f)
	if len(c.Killed) != 0 || len(live) != 4 || c.Version != put.Index {
		t.Fatalf("before any kill: version %d, live %v, killed %+v", c.Version, live, c.Killed)
	}
	if h, _ := CatalogHash(c.Tools); c.Hash != h {
		t.Errorf("without kills the hash %s differs from CatalogHash of the tools %s", c.Hash, h)
	}

	// One tool killed: its versions leave the live list, one killed entry
	// (no definition, no operator) takes their place, at a new version.
	at := t0.Add(time.Hour)
	kt := a.mustOK(PutKill{Kind: KillTool, Name: "corp.finance/ledger/b_tool", Reason: "incident 7: wrong totals", By: "sec@finance", At: at})
	c, live = killedOf(t, a.f)
	if diff := cmp.Diff([]string{"1.0.0 a_tool", "2.0.0 a_tool"}, live); diff != "" {
		t.Errorf("live tools with b_tool killed (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]KilledTool{{Server: "corp.finance/ledger", Name: "b_tool", Scope: KillTool, Reason: "incident 7: wrong totals", At: at}}, c.Killed); diff != "" {
		t.Errorf("killed entries (-want +got):\n%s", diff)
	}
	if c.Version != kt.Index {
		t.Errorf("version %d after the kill, want its index %d", c.Version, kt.Index)
	}

	// A new reason is news for the consumer: the version moves.
	kr := a.mustOK(PutKill{Kind: KillTool, Name: "corp.finance/ledger/b_tool", Reason: "incident 7: totals fixed, verifying", By: "sec@finance", At: at})
	if c, _ = killedOf(t, a.f); c.Version != kr.Index || c.Killed[0].Reason != "incident 7: totals fixed, verifying" {
		t.Errorf("after a new reason: version %d (want %d), killed %+v", c.Version, kr.Index, c.Killed)
	}

	// The server killed: every exported tool is killed, with the server's
	// switch (it wins over the tool's).
	ks := a.mustOK(PutKill{Kind: KillServer, Name: "corp.finance/ledger", Reason: "ledger offline", By: "sec@finance", At: at})
	c, live = killedOf(t, a.f)
	want := []KilledTool{
		{Server: "corp.finance/ledger", Name: "a_tool", Scope: KillServer, Reason: "ledger offline", At: at},
		{Server: "corp.finance/ledger", Name: "b_tool", Scope: KillServer, Reason: "ledger offline", At: at},
	}
	if diff := cmp.Diff(want, c.Killed); diff != "" || len(live) != 0 || c.Version != ks.Index {
		t.Errorf("server killed: version %d (want %d), live %v, killed (-want +got):\n%s", c.Version, ks.Index, live, diff)
	}
	if c.Killed[0].Switch() != "corp.finance/ledger" || c.Killed[0].MCPName("finance") != "finance.a_tool" {
		t.Errorf("killed entry names: switch %q, /mcp %q", c.Killed[0].Switch(), c.Killed[0].MCPName("finance"))
	}

	// Lifting the server's switch leaves the tool's.
	a.mustOK(Revive{Kind: KillServer, Name: "corp.finance/ledger", By: "sec@finance", At: at})
	if c, live = killedOf(t, a.f); len(live) != 2 || len(c.Killed) != 1 || c.Killed[0].Scope != KillTool {
		t.Errorf("server revived: live %v, killed %+v", live, c.Killed)
	}
	// Lifting the tool's brings everything back, with the hash it had.
	rv := a.mustOK(Revive{Kind: KillTool, Name: "corp.finance/ledger/b_tool", By: "sec@finance", At: at})
	c, live = killedOf(t, a.f)
	if len(live) != 4 || len(c.Killed) != 0 || c.Version != rv.Index {
		t.Errorf("all revived: version %d (want %d), live %v, killed %+v", c.Version, rv.Index, live, c.Killed)
	}
	if h, _ := CatalogHash(c.Tools); c.Hash != h {
		t.Errorf("after the revive the hash %s differs from CatalogHash of the tools %s", c.Hash, h)
	}
}

func TestKilledEntriesFollowTheExportRules(t *testing.T) {
	a := exportTestState(t)
	// hr gets a_tool of 2.x; sales b_tool of every version; 3.0.0 is only
	// submitted.
	a.mustOK(PutExports{By: "ops", At: t0, Exports: []Export{
		{Server: "corp.finance/ledger", Tools: []string{"a_tool"}, Versions: []string{"2.x"}, To: []Consumer{{TrustDomain: "hr.example.corp"}}},
		{Server: "corp.finance/ledger", Tools: []string{"b_tool"}, Versions: []string{"3.x"}, To: []Consumer{{TrustDomain: "sales.example.corp"}}},
	}})
	hrBefore, _ := a.f.CatalogVersion("hr.example.corp")
	// A tool not exported to hr: hr's catalog does not move and hears
	// nothing of it.
	a.mustOK(PutKill{Kind: KillTool, Name: "corp.finance/ledger/b_tool", Reason: "incident 8", By: "sec", At: t0})
	c, _ := killedOf(t, a.f)
	if c.Version != hrBefore || len(c.Killed) != 0 || len(c.Tools) != 1 {
		t.Errorf("killing a tool not exported to hr: version %d (was %d), tools %d, killed %+v", c.Version, hrBefore, len(c.Tools), c.Killed)
	}
	// Sales is exported b_tool of 3.x only, which is not live: no entry.
	if s, err := a.f.ExportedCatalog("sales.example.corp"); err != nil || len(s.Killed) != 0 || len(s.Tools) != 0 {
		t.Errorf("sales' catalog (b_tool only at a submitted version): %+v, %v", s, err)
	}
	// A trust domain never exported to hears of no kill.
	a.mustOK(PutKill{Kind: KillServer, Name: "corp.finance/ledger", Reason: "offline", By: "sec", At: t0})
	if o, err := a.f.ExportedCatalog("other.example.corp"); err != nil || len(o.Killed) != 0 || o.Version != 0 {
		t.Errorf("a trust domain never exported to: %+v, %v", o, err)
	}
	if c, _ := killedOf(t, a.f); len(c.Killed) != 1 || c.Killed[0].Name != "a_tool" || c.Killed[0].Scope != KillServer {
		t.Errorf("hr with the server killed: %+v", c.Killed)
	}
}

func TestImportsKeepKilledEntries(t *testing.T) {
	a := &applier{t: t, f: newTestFSM(t)}
	killed := KilledTool{Server: "corp.finance/ledger", Name: "lookup", Scope: KillTool, Reason: "incident 7", At: t0}
	put := PutImports{Namespace: "finance", TrustDomain: "finance.example.corp", CatalogVersion: 7, Hash: hashA,
		Tools: []ImportedTool{importedTool("generate_report", "2.0.0", hashA)}, Killed: []KilledTool{killed}, SyncedAt: t0}
	a.mustOK(put)
	if r := a.mustOK(put); !r.Unchanged {
		t.Error("the same imports again was a change")
	}
	im, err := a.f.Imports("finance")
	if err != nil || len(im.Killed) != 1 || im.Killed[0] != killed {
		t.Fatalf("Imports = %+v, %v", im, err)
	}
	// A new reason at the same version and hash is still stored.
	again := put
	again.Killed = []KilledTool{{Server: killed.Server, Name: killed.Name, Scope: KillTool, Reason: "incident 7, day 2", At: t0}}
	if r := a.mustOK(again); r.Unchanged {
		t.Error("a new reason was no change")
	}

	bad := func(k KilledTool, substr string) {
		t.Helper()
		p := put
		p.CatalogVersion = 8
		p.Killed = []KilledTool{k}
		a.mustFail(p, KindInvalid, substr)
	}
	live := killed
	live.Name = "generate_report"
	bad(live, "both live and killed")
	scope := killed
	scope.Scope = KillTenant
	bad(scope, "scope")
	reason := killed
	reason.Reason = "two\nlines"
	bad(reason, "one line")
	p := put
	p.CatalogVersion = 8
	p.Killed = []KilledTool{killed, killed}
	a.mustFail(p, KindInvalid, "listed twice")
}
