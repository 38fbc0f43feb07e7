package node

import (
	"errors"
	"strings"
	"testing"

	"github.com/mcpmesh/mcpmesh/registry/state"
	"github.com/mcpmesh/mcpmesh/trust/agentauth"
)

// TestExportsCacheFollowsTheState: a catalog is read once per applied
// index and trust domain, and read again as soon as the index moves; a
// failed read is not kept.
func TestExportsCacheFollowsTheState(t *testing.T) {
	index := uint64(7)
	reads := map[string]int{}
	tool := "a_tool"
	var fail error
	c := &exportsCache{
		applied: func() uint64 { return index },
		read: func(td string) (state.ExportedCatalog, error) {
			reads[td]++
			if fail != nil {
				return state.ExportedCatalog{}, fail
			}
			return state.ExportedCatalog{Tools: []state.ExportedTool{{Server: "corp.finance/ledger", Name: tool, Version: "2.0.0"}}}, nil
		},
	}
	get := func(td string) string {
		t.Helper()
		cat, err := c.get(td)
		if err != nil {
			t.Fatalf("get %s: %v", td, err)
		}
		return cat.Tools[0].Name
	}
	for range 3 {
		get("hr.example.corp")
	}
	get("sales.example.corp")
	if reads["hr.example.corp"] != 1 || reads["sales.example.corp"] != 1 {
		t.Fatalf("reads at one index: %v, want one per trust domain", reads)
	}
	// An entry applied: every trust domain's catalog is read again.
	index, tool = 8, "b_tool"
	if got := get("hr.example.corp"); got != "b_tool" || reads["hr.example.corp"] != 2 {
		t.Fatalf("after the index moved: tool %s, reads %v", got, reads)
	}
	if got := get("sales.example.corp"); got != "b_tool" || reads["sales.example.corp"] != 2 {
		t.Fatalf("after the index moved, the other trust domain: tool %s, reads %v", got, reads)
	}
	index, fail = 9, errors.New("disk gone")
	if _, err := c.get("hr.example.corp"); err == nil {
		t.Fatal("a failed read was answered from the cache")
	}
	fail = nil
	if got := get("hr.example.corp"); got != "b_tool" || reads["hr.example.corp"] != 4 {
		t.Fatalf("after a failed read: tool %s, reads %v", got, reads)
	}
}

// TestExportedTo: a forwarded call is let through only for a tool version
// in the caller's catalog, from a principal the export names, carrying
// its scopes; each refusal says why.
func TestExportedTo(t *testing.T) {
	cat := state.ExportedCatalog{Tools: []state.ExportedTool{
		{Server: "corp.finance/ledger", Name: "report", Version: "2.0.0", Principals: []string{"oidc:"}, Scopes: []string{"reports:read"}},
		{Server: "corp.finance/ledger", Name: "open", Version: "2.0.0"},
	}, Killed: []state.KilledTool{{Server: "corp.finance/ledger", Name: "transfer", Scope: state.KillTool, Reason: "incident 7"}}}
	caller := func(id string, scopes ...string) agentauth.Principal {
		return agentauth.Principal{ID: "hr.example.corp/" + id, TrustDomain: "hr.example.corp", Scopes: scopes, Method: agentauth.MethodFederation}
	}
	for _, tc := range []struct {
		name          string
		p             agentauth.Principal
		tool, version string
		want          string // "" allowed, else a part of the refusal
	}{
		{"exported, any principal", caller("apikey:bot"), "open", "2.0.0", ""},
		{"exported, principal and scope match", caller("oidc:alice", "reports:read"), "report", "2.0.0", ""},
		{"principal prefix not matched", caller("apikey:bot", "reports:read"), "report", "2.0.0", "only for principals oidc:"},
		{"scope missing", caller("oidc:alice"), "report", "2.0.0", `needs scope "reports:read"`},
		{"version not exported", caller("oidc:alice", "reports:read"), "report", "1.0.0", "is not exported to trust domain hr.example.corp"},
		{"tool not exported", caller("oidc:alice"), "delete", "2.0.0", "is not exported"},
		{"tool exported but killed", caller("oidc:alice"), "transfer", "2.0.0", "is not exported"},
		{"killed tool without a version", caller("oidc:alice"), "transfer", "", "is not exported"},
	} {
		err := exportedTo(cat, tc.p, "corp.finance/ledger", tc.tool, tc.version)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: refused: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want one saying %q", tc.name, err, tc.want)
		}
	}
}
