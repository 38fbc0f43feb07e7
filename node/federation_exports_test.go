package node

import (
	"strings"
	"testing"

	"github.com/mcpmesh/mcpmesh/registry/state"
	"github.com/mcpmesh/mcpmesh/trust/agentauth"
)

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
