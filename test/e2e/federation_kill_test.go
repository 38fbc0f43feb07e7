package e2e

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"

	"github.com/mcpmesh/mcpmesh/node/audit"
	"github.com/mcpmesh/mcpmesh/node/gateway"
	"github.com/mcpmesh/mcpmesh/registry/api"
	"github.com/mcpmesh/mcpmesh/test/internal/testcluster"
)

// TestKilledExportAtConsumer: finance kills the tool it exports to hr.
// Once hr has synced finance's catalog, hr's /mcp no longer lists the
// tool, and a call of it is answered at hr, without reaching finance,
// with -32012 naming finance's trust domain and finance's reason; hr
// audits it as killed. When finance lifts the kill, hr lists and calls
// the tool again. How long each took to reach hr is logged.
func TestKilledExportAtConsumer(t *testing.T) {
	t.Parallel()
	ledger := startUpstream(t, "ledger")
	m := startMesh(t)
	hrN, finN := m.hr.Nodes[0], m.fin.Nodes[0]
	key := m.exportLedger(t, ledger.URL)
	m.push(t, "hr>finance")
	waitListed(t, m.hr, hrN, key, "finance.lookup", 60*time.Second)
	if text, err := callTool(t, hrN, key, "finance.lookup", "before", 20*time.Second); err != nil || text != "ledger:before" {
		t.Fatalf("cross-BU call before the kill = %q, %v\nhr log:\n%s", text, err, hrN.LogTail(30))
	}

	const reason = "incident 7: wrong totals"
	start := time.Now()
	mustCLI(t, m.fin, finN, "kill", "tool", ledgerServer+"/lookup", "-reason", reason)
	var names []string
	var listErr error
	if !testcluster.Eventually(30*time.Second, func() bool {
		names, listErr = listTools(t, hrN, key)
		return listErr == nil && !slices.Contains(names, "finance.lookup")
	}) {
		out, _ := m.hr.CLI(hrN, "peers")
		t.Fatalf("hr still lists finance.lookup 30s after finance killed it: %v (%v)\npeers:\n%s\nhr log:\n%s", names, listErr, out, hrN.LogTail(40))
	}
	t.Logf("finance's kill reached hr's listing in %v", time.Since(start).Round(time.Millisecond))

	seen := len(ledger.headersSeen())
	_, err := callTool(t, hrN, key, "finance.lookup", "killed", 20*time.Second)
	var je *jsonrpc.Error
	want := `tool finance.lookup is switched off by trust domain finance.example.corp (namespace finance): "` + reason + `"`
	if !errors.As(err, &je) || je.Code != gateway.CodeKilled || !strings.Contains(je.Message, want) {
		t.Fatalf("call of the killed tool at hr: %v; want -32012 containing %q\nhr log:\n%s", err, want, hrN.LogTail(30))
	}
	if n := len(ledger.headersSeen()); n != seen {
		t.Errorf("the ledger got %d requests for a call hr answered as killed", n-seen)
	}

	// hr audited it as killed, with finance's reason; finance never heard
	// of the call (it would have refused and recorded it as killed too).
	hrRecs := decode[api.AuditRecords](t, "hr audit", mustCLI(t, m.hr, hrN, "audit", "query", "-kind", "call", "-o", "json"))
	i := slices.IndexFunc(hrRecs.Records, func(r audit.Record) bool {
		return r.CalledAs == "finance.lookup" && r.Outcome == audit.OutcomeKilled
	})
	if i < 0 {
		t.Fatalf("hr's audit has no killed record of finance.lookup: %+v", hrRecs.Records)
	}
	if r := hrRecs.Records[i]; !strings.Contains(r.Reason, "finance.example.corp") || !strings.Contains(r.Reason, reason) || r.Tool != ledgerServer+"/lookup" || r.ErrorCode != gateway.CodeKilled {
		t.Errorf("hr's record of the killed call = %+v", r)
	}
	finRecs := decode[api.AuditRecords](t, "finance audit", mustCLI(t, m.fin, finN, "audit", "query", "-kind", "call", "-o", "json"))
	for _, r := range finRecs.Records {
		if r.Outcome == audit.OutcomeKilled {
			t.Errorf("finance recorded a killed call, so hr forwarded it: %+v", r)
		}
	}
	_, metrics := get(t, hrN.URL()+"/metrics", "")
	if line := `mcpmesh_kill_refusals_total{kind="tool",namespace="finance"} 1`; !strings.Contains(metrics, line) {
		t.Errorf("hr's /metrics lacks %q", line)
	}

	// Both operators see it in mcpmesh peers.
	hrPeers := decode[api.PeersResponse](t, "hr peers", mustCLI(t, m.hr, hrN, "peers", "-o", "json"))
	if len(hrPeers.Peers) != 1 || len(hrPeers.Peers[0].Killed) != 1 || hrPeers.Peers[0].Killed[0].Reason != reason || hrPeers.Peers[0].Imported != 0 {
		t.Errorf("hr's peers = %+v; want finance with lookup killed for %q", hrPeers.Peers, reason)
	}
	finPeers := decode[api.PeersResponse](t, "finance peers", mustCLI(t, m.fin, finN, "peers", "-o", "json"))
	if len(finPeers.Peers) != 1 || finPeers.Peers[0].ExportedKilled != 1 || finPeers.Peers[0].Exported != 0 {
		t.Errorf("finance's peers = %+v; want hr with 1 exported tool killed", finPeers.Peers)
	}
	if out := mustCLI(t, m.hr, hrN, "peers"); !strings.Contains(out, "switched off by the origin") || !strings.Contains(out, reason) {
		t.Errorf("hr's mcpmesh peers does not say finance switched lookup off:\n%s", out)
	}

	// Finance lifts the kill: hr lists and calls the tool again.
	start = time.Now()
	mustCLI(t, m.fin, finN, "revive", "tool", ledgerServer+"/lookup")
	waitListed(t, m.hr, hrN, key, "finance.lookup", 30*time.Second)
	t.Logf("finance's revive reached hr's listing in %v", time.Since(start).Round(time.Millisecond))
	if text, err := callTool(t, hrN, key, "finance.lookup", "after", 20*time.Second); err != nil || text != "ledger:after" {
		t.Fatalf("cross-BU call after the revive = %q, %v\nhr log:\n%s", text, err, hrN.LogTail(30))
	}
}
