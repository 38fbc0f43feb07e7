package gateway

import (
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpmesh/mcpmesh/registry/card"
	"github.com/mcpmesh/mcpmesh/registry/state"
	"github.com/mcpmesh/mcpmesh/trust/agentauth"
)

// gatewayCodes are the JSON-RPC error codes the gateway (and its front
// door's authentication) answers with.
var gatewayCodes = map[string]int64{
	"CodeUnauthenticated": agentauth.CodeUnauthenticated, "codeVersionSunset": codeVersionSunset,
	"CodeDenied": CodeDenied, "CodeKilled": CodeKilled, "CodeAuditUnavailable": CodeAuditUnavailable,
	"CodeRateLimited": CodeRateLimited, "CodeOverQuota": CodeOverQuota, "CodeApprovalPending": CodeApprovalPending,
	"CodeApprovalRefused": CodeApprovalRefused, "codeUpstreamUnavailable": codeUpstreamUnavailable,
	"CodeRemoteUnavailable": CodeRemoteUnavailable, "CodeRefusedByExporter": CodeRefusedByExporter,
}

// TestErrorCodesAreImplementationDefined keeps the gateway's codes in the
// range revision 2026-07-28 leaves to implementations (-32000 to -32019),
// off go-sdk's own (-32001 unknown, -32002 resource not found, -32003 to
// -32005 closing and rejected; agentauth shares -32001 on purpose: an
// unauthenticated request gets HTTP 401 before go-sdk sees it), and
// distinct: MCP reserves -32020 to -32099, and go-sdk answers -32021 and
// -32022 with HTTP 400 as protocol errors.
func TestErrorCodesAreImplementationDefined(t *testing.T) {
	seen := map[int64]string{}
	for name, c := range gatewayCodes {
		if c > -32000 || c < -32019 {
			t.Errorf("%s = %d: outside -32000..-32019, the range MCP leaves to implementations", name, c)
		}
		if c >= -32005 && c <= -32002 {
			t.Errorf("%s = %d: go-sdk gives this code a meaning of its own", name, c)
		}
		if other, dup := seen[c]; dup {
			t.Errorf("%s and %s share code %d", name, other, c)
		}
		seen[c] = name
	}
}

// TestErrorsReachTheAgentInBothEras calls a tool of another BU that
// cannot be reached, an unknown tool and one with bad arguments, in every
// era: the agent gets each JSON-RPC error with its code and a message
// naming the BU or tool, and a 2026-07-28 request gets the HTTP status that
// revision gives its code (400 for -32602 only).
func TestErrorsReachTheAgentInBothEras(t *testing.T) {
	r := newRegistry(t)
	up := newUpstream(t, "d")
	r.register("corp.hr/directory", "1.0.0", up.URL, lookupTool, true)
	def := []byte(`{"name":"report","inputSchema":{"type":"object"}}`)
	hash, err := card.CanonicalHash(def)
	if err != nil {
		t.Fatal(err)
	}
	r.apply(state.PutImports{Namespace: "finance", TrustDomain: "finance.example.corp", CatalogVersion: 3, Hash: "sha256:" + strings.Repeat("a", 64),
		Tools: []state.ImportedTool{{ExportedTool: state.ExportedTool{Server: "corp.finance/ledger", Version: "2.0.0", Name: "report",
			Definition: def, Hash: hash, State: card.StateApproved}, InputSchema: []byte(`{"type":"object"}`)}},
		SyncedAt: t0})
	// The pool has no federation: the call cannot be vouched for, as when
	// the manifest does not let this BU call finance.
	_, srv := newGateway(t, r)
	calls := []struct {
		name   string
		args   map[string]any
		code   int64
		says   string
		status int
	}{
		{"finance.report", map[string]any{}, CodeRemoteUnavailable, "namespace finance", http.StatusOK},
		{"hr.nope", map[string]any{}, -32602, `unknown tool "hr.nope"`, http.StatusBadRequest},
		{"hr.lookup", map[string]any{"q": 3}, -32602, "/q: must be string", http.StatusBadRequest},
	}
	for _, era := range eras {
		s := connect(t, srv.URL+"/mcp", era)
		for _, c := range calls {
			_, err := s.CallTool(t.Context(), &mcp.CallToolParams{Name: c.name, Arguments: c.args})
			var je *jsonrpc.Error
			if !errors.As(err, &je) || je.Code != c.code || !strings.Contains(je.Message, c.says) {
				t.Errorf("%s: call %s: %v; want JSON-RPC error %d saying %q", era, c.name, err, c.code, c.says)
			}
		}
	}
	for _, c := range calls {
		args := `{}`
		if c.args["q"] != nil {
			args = `{"q":3}`
		}
		body := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"` + c.name + `","arguments":` + args + `,"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"raw","version":"1"}}}}`
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/mcp", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("MCP-Protocol-Version", "2026-07-28")
		req.Header.Set("Mcp-Method", "tools/call")
		req.Header.Set("Mcp-Name", c.name)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status || !strings.Contains(string(got), `"code":`+strconv.FormatInt(c.code, 10)) {
			t.Errorf("2026-07-28 POST tools/call %s: HTTP %d %s; want %d with error %d", c.name, resp.StatusCode, got, c.status, c.code)
		}
	}
}
