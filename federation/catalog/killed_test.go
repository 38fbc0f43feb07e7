package catalog

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mcpmesh/mcpmesh/registry/state"
)

// killReport kills generate_report, which finance exports to hr.
func killReport(fin *bu, reason string) state.ApplyResult {
	return fin.must(state.PutKill{Kind: state.KillTool, Name: "corp.finance/ledger/generate_report", Reason: reason, By: "sec@finance", At: t0})
}

func TestKilledEntriesGoOnlyToConsumersThatAsk(t *testing.T) {
	fin := newFinance(t)
	srv := serveExporter(t, fin, time.Second)
	k := killReport(fin, "incident 7: wrong totals")

	_, c := get(t, srv, hrTD, "?killed=1")
	if c.Version != k.Index || len(c.Tools) != 0 || len(c.Killed) != 1 {
		t.Fatalf("hr asking for kills got version %d (want %d), tools %+v, killed %+v", c.Version, k.Index, c.Tools, c.Killed)
	}
	tools, killed, err := c.Import("finance", hrTD)
	if err != nil || len(tools) != 0 || len(killed) != 1 {
		t.Fatalf("Import = %v, %+v, %v", tools, killed, err)
	}
	if got := killed[0]; got.Server != "corp.finance/ledger" || got.Name != "generate_report" || got.Scope != state.KillTool || got.Reason != "incident 7: wrong totals" || !got.At.Equal(t0) {
		t.Errorf("killed entry = %+v", got)
	}

	// A consumer that does not ask gets the catalog consumers always got:
	// no killed field at all, so a strict decoder that predates it (an
	// unknown field is refused) takes it, and the tool is simply absent.
	client := &http.Client{Transport: asTD{hrTD}, Timeout: 20 * time.Second}
	resp, err := client.Get(srv.URL + Path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var raw bytes.Buffer
	raw.ReadFrom(resp.Body)
	if strings.Contains(raw.String(), `"killed"`) {
		t.Fatalf("a consumer that did not ask got killed entries: %s", raw.String())
	}
	var old struct {
		Consumer string               `json:"consumer"`
		Version  uint64               `json:"version"`
		Hash     string               `json:"hash"`
		Tools    []state.ExportedTool `json:"tools"`
	}
	dec := json.NewDecoder(&raw)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&old); err != nil {
		t.Fatalf("the catalog for a consumer that did not ask does not decode as the older message: %v", err)
	}
	if h, _ := state.CatalogHash(old.Tools); old.Hash != h || len(old.Tools) != 0 || old.Version != k.Index {
		t.Errorf("older consumer's catalog: version %d, hash %s (CatalogHash of its tools %s), tools %d", old.Version, old.Hash, h, len(old.Tools))
	}
}

func TestImporterStoresKillsAndTheirLifting(t *testing.T) {
	fin := newFinance(t)
	srv := serveExporter(t, fin, time.Second)
	hr := newBU(t)
	im := newImporter(t, hr, func() bool { return true })
	o := httpOrigin(srv)
	ctx := t.Context()
	sync := func(what string) state.Imports {
		t.Helper()
		if _, err := im.SyncOnce(ctx, o); err != nil {
			t.Fatalf("sync %s: %v", what, err)
		}
		imp, err := hr.fsm.Imports("finance")
		if err != nil {
			t.Fatalf("imports %s: %v", what, err)
		}
		return imp
	}
	if imp := sync("before the kill"); len(imp.Tools) != 1 || len(imp.Killed) != 0 {
		t.Fatalf("before the kill: tools %d, killed %+v", len(imp.Tools), imp.Killed)
	}
	k := killReport(fin, "incident 7: wrong totals")
	imp := sync("after the kill")
	if len(imp.Tools) != 0 || len(imp.Killed) != 1 || imp.Killed[0].Reason != "incident 7: wrong totals" || imp.CatalogVersion != k.Index {
		t.Fatalf("after the kill: version %d (want %d), tools %d, killed %+v", imp.CatalogVersion, k.Index, len(imp.Tools), imp.Killed)
	}
	// The whole server killed too: the entry names the server's switch.
	fin.must(state.PutKill{Kind: state.KillServer, Name: "corp.finance/ledger", Reason: "ledger offline", By: "sec@finance", At: t0})
	if imp := sync("with the server killed"); len(imp.Killed) != 1 || imp.Killed[0].Scope != state.KillServer || imp.Killed[0].Reason != "ledger offline" {
		t.Fatalf("with the server killed: %+v", imp.Killed)
	}
	fin.must(state.Revive{Kind: state.KillServer, Name: "corp.finance/ledger", By: "sec@finance", At: t0})
	r := fin.must(state.Revive{Kind: state.KillTool, Name: "corp.finance/ledger/generate_report", By: "sec@finance", At: t0})
	imp = sync("after the revive")
	if len(imp.Tools) != 1 || len(imp.Killed) != 0 || imp.CatalogVersion != r.Index {
		t.Fatalf("after the revive: version %d (want %d), tools %d, killed %+v", imp.CatalogVersion, r.Index, len(imp.Tools), imp.Killed)
	}
}

func TestHostileKilledEntriesAreRefused(t *testing.T) {
	fin := newFinance(t)
	ec, err := fin.fsm.ExportedCatalog(hrTD.Name())
	if err != nil {
		t.Fatal(err)
	}
	entry := state.KilledTool{Server: "corp.finance/ledger", Name: "transfer_funds", Scope: state.KillTool, Reason: "incident 7", At: t0}
	for _, tc := range []struct {
		name   string
		killed []state.KilledTool
		rehash bool
		want   string
	}{
		{"not hashed", []state.KilledTool{entry}, false, "does not match"},
		{"also live", []state.KilledTool{{Server: "corp.finance/ledger", Name: "generate_report", Scope: state.KillTool, Reason: "x"}}, true, "both live and killed"},
		{"listed twice", []state.KilledTool{entry, entry}, true, "listed twice"},
		{"bad scope", []state.KilledTool{{Server: entry.Server, Name: entry.Name, Scope: state.KillTenant, Reason: "x"}}, true, "scope"},
		{"no reason", []state.KilledTool{{Server: entry.Server, Name: entry.Name, Scope: state.KillServer}}, true, "reason is required"},
		{"two-line reason", []state.KilledTool{{Server: entry.Server, Name: entry.Name, Scope: state.KillServer, Reason: "a\nb"}}, true, "one line"},
		{"name too long once prefixed", []state.KilledTool{{Server: entry.Server, Name: strings.Repeat("k", 125), Scope: state.KillTool, Reason: "x"}}, true, "/mcp name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Catalog{Consumer: hrTD.Name(), Version: ec.Version, Hash: ec.Hash, Tools: ec.Tools, Killed: tc.killed}
			if tc.rehash {
				c.Hash, _ = state.CatalogHashOf(c.Tools, c.Killed)
			}
			raw, err := json.Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			dc, err := DecodeCatalog(raw)
			if err == nil {
				_, _, err = dc.Import("finance", hrTD)
			}
			var de *DecodeError
			if !errors.As(err, &de) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want a *DecodeError mentioning %q", err, tc.want)
			}
		})
	}
}
