package gateway

import (
	"encoding/json"
	"errors"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mcpmesh/mcpmesh/node/audit"
	"github.com/mcpmesh/mcpmesh/node/upstream"
	"github.com/mcpmesh/mcpmesh/registry/card"
	"github.com/mcpmesh/mcpmesh/registry/state"
)

// importedFinance is an imported tool of finance's ledger.
func importedFinance(t *testing.T, server, name string) state.ImportedTool {
	t.Helper()
	def := []byte(`{"name":"` + name + `","inputSchema":{"type":"object"}}`)
	hash, err := card.CanonicalHash(def)
	if err != nil {
		t.Fatal(err)
	}
	return state.ImportedTool{ExportedTool: state.ExportedTool{Server: server, Version: "2.0.0", Name: name,
		Definition: def, Hash: hash, State: card.StateApproved}, InputSchema: []byte(`{"type":"object"}`)}
}

// TestImportedToolKilledByItsOrigin: a tool finance switched off is not
// listed on hr's /mcp, and a call of it is answered at hr with -32012
// naming finance and its reason (the pool has no federation, so a call
// that went to finance would get -32018 instead), audited as killed and
// counted under finance's namespace; killing one of two same-named tools
// renames neither; lifting the kill serves the tool again.
func TestImportedToolKilledByItsOrigin(t *testing.T) {
	r := newRegistry(t)
	up := newUpstream(t, "d")
	r.register("corp.hr/directory", "1.0.0", up.URL, lookupTool, true)
	const reason = "incident 7: wrong totals"
	at := t0.Add(-time.Hour)
	r.apply(state.PutImports{Namespace: "finance", TrustDomain: "finance.example.corp", CatalogVersion: 3, Hash: "sha256:" + strings.Repeat("a", 64),
		Tools: []state.ImportedTool{importedFinance(t, "corp.finance/ledger", "report"), importedFinance(t, "corp.finance/ledger", "balance")},
		Killed: []state.KilledTool{
			{Server: "corp.finance/archive", Name: "report", Scope: state.KillServer, Reason: "archive offline", At: at},
			{Server: "corp.finance/ledger", Name: "transfer", Scope: state.KillTool, Reason: reason, At: at},
		},
		SyncedAt: t0})
	log := openAuditLog(t)
	pool := upstream.NewPool(upstream.Config{CallTimeout: 10 * time.Second})
	t.Cleanup(func() { pool.Close() })
	g := New(Config{Namespace: "hr"}, r.fsm, pool, WithClock(func() time.Time { return t0.Add(time.Hour) }), WithAudit(log, nil, nodeSPIFFEID))
	t.Cleanup(func() { g.Close() })
	if err := g.Sync(); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(authenticated(r, g))
	t.Cleanup(hs.Close)
	srv := hs.URL

	for _, era := range eras {
		s := connect(t, srv+"/mcp", era)
		// Two servers share "report": both keep their qualified names
		// though one is killed, and only the live one is listed.
		want := []string{"finance.balance", "finance.ledger.report", "hr.lookup"}
		if names := toolNames(t, s); !slices.Equal(names, want) {
			t.Errorf("%s: /mcp tools = %v, want %v (finance's killed tools left out)", era, names, want)
		}
		_, err := s.CallTool(t.Context(), &mcp.CallToolParams{Name: "finance.transfer", Arguments: map[string]any{}})
		var je *jsonrpc.Error
		var data KilledData
		if !errors.As(err, &je) || je.Code != CodeKilled || json.Unmarshal(je.Data, &data) != nil {
			t.Fatalf("%s: call of a tool finance killed: %v; want -32012", era, err)
		}
		if msg := `tool finance.transfer is switched off by trust domain finance.example.corp (namespace finance): "incident 7: wrong totals"`; !strings.Contains(je.Message, msg) {
			t.Errorf("%s: message %q, want it to contain %q", era, je.Message, msg)
		}
		if data.Kind != state.KillTool || data.Name != "corp.finance/ledger/transfer" || data.Reason != reason || data.TrustDomain != "finance.example.corp" || data.Namespace != "finance" || data.By != "" || !data.At.Equal(at) {
			t.Errorf("%s: error data %+v", era, data)
		}
		_, err = s.CallTool(t.Context(), &mcp.CallToolParams{Name: "finance.archive.report", Arguments: map[string]any{}})
		if !errors.As(err, &je) || je.Code != CodeKilled || !strings.Contains(je.Message, `which switched off its server corp.finance/archive: "archive offline"`) {
			t.Errorf("%s: call of a tool of a server finance killed: %v", era, err)
		}
		// A live import still goes to finance (unreachable here).
		if _, err := s.CallTool(t.Context(), &mcp.CallToolParams{Name: "finance.balance", Arguments: map[string]any{}}); !errors.As(err, &je) || je.Code != CodeRemoteUnavailable {
			t.Errorf("%s: call of a live import: %v, want %d", era, err, CodeRemoteUnavailable)
		}
	}
	if n := testutil.ToFloat64(g.metrics.killRefusals.WithLabelValues("finance", "tool")); n != float64(len(eras)) {
		t.Errorf("kill refusals under finance's tool switch = %v, want %d", n, len(eras))
	}
	if n := testutil.ToFloat64(g.metrics.calls.WithLabelValues("hr", "finance.transfer", "killed")); n != float64(len(eras)) {
		t.Errorf("killed calls of finance.transfer = %v, want %d", n, len(eras))
	}
	recs, err := log.Query(t.Context(), audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var killed []audit.Record
	for _, rec := range recs {
		if rec.CalledAs == "finance.transfer" {
			killed = append(killed, rec)
		}
	}
	if len(killed) != len(eras) {
		t.Fatalf("audit records of finance.transfer: %d, want %d", len(killed), len(eras))
	}
	if rec := killed[0]; rec.Outcome != audit.OutcomeKilled || rec.Tool != "corp.finance/ledger/transfer" || rec.ErrorCode != CodeKilled ||
		!strings.Contains(rec.Reason, "finance.example.corp") || !strings.Contains(rec.Reason, reason) {
		t.Errorf("audit record = %+v", rec)
	}

	// Finance lifts the kill: the next catalog lists transfer live.
	r.apply(state.PutImports{Namespace: "finance", TrustDomain: "finance.example.corp", CatalogVersion: 4, Hash: "sha256:" + strings.Repeat("b", 64),
		Tools: []state.ImportedTool{importedFinance(t, "corp.finance/ledger", "report"), importedFinance(t, "corp.finance/ledger", "balance"),
			importedFinance(t, "corp.finance/ledger", "transfer")},
		SyncedAt: t0})
	if err := g.Sync(); err != nil {
		t.Fatal(err)
	}
	s := connect(t, srv+"/mcp", eras[0])
	if names := toolNames(t, s); !slices.Equal(names, []string{"finance.balance", "finance.report", "finance.transfer", "hr.lookup"}) {
		t.Errorf("/mcp tools after the lift = %v", names)
	}
	var je *jsonrpc.Error
	if _, err := s.CallTool(t.Context(), &mcp.CallToolParams{Name: "finance.transfer", Arguments: map[string]any{}}); !errors.As(err, &je) || je.Code != CodeRemoteUnavailable {
		t.Errorf("call after the lift: %v, want it forwarded (%d here)", err, CodeRemoteUnavailable)
	}
}
