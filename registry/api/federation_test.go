package api

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/mcpmesh/mcpmesh/node/audit"
	"github.com/mcpmesh/mcpmesh/registry/state"
)

// TestExportsAndPeers: the export set is replaced through the admin API,
// audited as an intent and an outcome, refused whole when invalid, and
// counted per consumer in the peers list.
func TestExportsAndPeers(t *testing.T) {
	c := newOneNodeCluster(t)
	a := &memAuditor{}
	h := New(c, WithAudit(a, "finance", "n1"))

	body := `{"exports":[{"server":"corp.finance/ledger","tools":["generate_report"],"to":[{"trust_domain":"hr.example.corp","scopes":["reports:read"]}]}]}`
	if w := do(t, h, "PUT", "/v1/federation/exports", body); w.Code != http.StatusOK {
		t.Fatalf("put exports: HTTP %d %s", w.Code, w.Body)
	}
	n := len(a.recs)
	if n < 2 || a.recs[n-2].Outcome != audit.OutcomeRequested || a.recs[n-1].Action != "exports.put" || a.recs[n-1].Outcome != audit.OutcomeOK || a.recs[n-1].Reason != "corp.finance/ledger" {
		t.Errorf("audit records of an exports put: %+v", a.recs)
	}
	w := do(t, h, "GET", "/v1/federation/exports", "")
	var es state.Exports
	if err := json.Unmarshal(w.Body.Bytes(), &es); err != nil || len(es.Exports) != 1 || es.Exports[0].To[0].Scopes[0] != "reports:read" || es.ModifyIndex == 0 {
		t.Errorf("GET exports: %s (%v)", w.Body, err)
	}
	// Invalid: refused whole, before Raft, naming the problem.
	w = do(t, h, "PUT", "/v1/federation/exports", `{"exports":[{"server":"corp.finance/ledger","tools":["*"],"to":[{"trust_domain":"hr.example.corp"}]}]}`)
	if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "no wildcard") {
		t.Errorf("invalid exports: HTTP %d %s", w.Code, w.Body)
	}
	// Peers: hr is a consumer (nothing live is registered, so 0 exported),
	// finance-side imports show up per origin.
	if _, err := c.Apply(t.Context(), mustEncode(t, state.PutImports{Namespace: "sales", TrustDomain: "sales.example.corp", CatalogVersion: 3,
		Hash: "sha256:" + strings.Repeat("a", 64), Tools: []state.ImportedTool{}})); err != nil {
		t.Fatal(err)
	}
	w = do(t, h, "GET", "/v1/federation/peers", "")
	var pr PeersResponse
	if err := json.Unmarshal(w.Body.Bytes(), &pr); err != nil || len(pr.Peers) != 2 {
		t.Fatalf("GET peers: %s (%v)", w.Body, err)
	}
	if p := pr.Peers[0]; p.Namespace != "sales" || p.CatalogVersion != 3 || !p.Stale {
		t.Errorf("origin row = %+v (never synced: stale)", p)
	}
	if p := pr.Peers[1]; p.Namespace != "" || p.TrustDomain != "hr.example.corp" || p.Exported != 0 {
		t.Errorf("consumer row = %+v", p)
	}
}

func mustEncode(t *testing.T, cmd any) []byte {
	t.Helper()
	b, err := state.Encode(cmd)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
