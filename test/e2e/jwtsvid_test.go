package e2e

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/mcpmesh/mcpmesh/test/internal/testcluster"
	"github.com/mcpmesh/mcpmesh/trust/ca"
)

// TestAgentJWTSVID: a node with jwt-svid in mcp.auth.methods takes a
// JWT-SVID from `mcpmesh trust issue -jwt` as a bearer token, and the agent
// calls tools as the tenant its SPIFFE ID maps to; expired, wrong-audience,
// foreign-domain and non-agent JWT-SVIDs are refused with 401 and counted
// by reason, and no token reaches the node's log.
func TestAgentJWTSVID(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, "directory")
	c := testcluster.New(t, testcluster.Options{NoSync: true, Nodes: 1,
		ExtraYAML: "mcp:\n  auth:\n    methods: [api-key, jwt-svid]\n    svid_tenants:\n      - { path_prefix: /agent/payroll/, tenant: payroll }\n"})
	n := c.Nodes[0]
	n.WriteConfig("bootstrap:\n  expect: 1\n  peers:\n    - { id: n1, address: \"" + n.RaftAddr + "\" }\n")
	c.Start()
	c.Leader(leaderTimeout)
	c.WaitAllReady(leaderTimeout)
	mustCLI(t, c, n, "apply", "-f", permitAll(t))
	mustCLI(t, c, n, "registry", "submit", "-f", writeCard(t, upstreamCard("corp.hr/directory", "1.0.0", up.URL)))
	mustCLI(t, c, n, "registry", "approve", "corp.hr/directory@1.0.0")

	const aud = "spiffe://hr.example.corp/mcpmesh/gateway" // the default
	issue := func(caDir, id, audience string) string {
		t.Helper()
		out, code := c.Run("trust", "issue", "-ca-dir", caDir, "-jwt", "-audience", audience, "-spiffe-id", id)
		if code != 0 {
			t.Fatalf("trust issue -jwt %s: exit %d: %s", id, code, out)
		}
		return strings.TrimSpace(out)
	}
	good := issue(c.CADir, "spiffe://hr.example.corp/agent/payroll/exporter", aud)

	var last string
	ok := testcluster.Eventually(catchUp, func() bool {
		s, err := tryConnect(t, n.URL()+"/mcp", "2026-07-28", good)
		if err != nil {
			last = err.Error()
			return false
		}
		res, err := s.CallTool(t.Context(), &mcp.CallToolParams{Name: "hr.lookup", Arguments: map[string]any{"q": "jwt"}})
		if err != nil || res.IsError {
			last = fmt.Sprint(res, err)
			return false
		}
		return res.Content[0].(*mcp.TextContent).Text == "directory:jwt"
	})
	if !ok {
		t.Fatalf("a JWT-SVID does not call hr.lookup; last: %s", last)
	}
	// The legacy era too, and the session is the JWT-SVID's principal.
	s := mcpConnectAs(t, n.URL()+"/mcp", "2025-11-25", good)
	if res, err := s.CallTool(t.Context(), &mcp.CallToolParams{Name: "hr.lookup", Arguments: map[string]any{"q": "legacy"}}); err != nil || res.IsError {
		t.Errorf("legacy session with a JWT-SVID: %v %v", res, err)
	}

	// An expired JWT-SVID: the same CA with its clock two hours back (the
	// CLI issues only from now on).
	past, err := ca.Load(c.CADir, ca.WithClock(func() time.Time { return time.Now().Add(-2 * time.Hour) }))
	if err != nil {
		t.Fatal(err)
	}
	expired, err := past.IssueJWTSVID(spiffeid.RequireFromString("spiffe://hr.example.corp/agent/payroll/exporter"), []string{aud}, 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	finance := c.InitCA("finance.example.corp")
	for _, tc := range []struct {
		name, token, want string
	}{
		{"expired", expired, "expired"},
		{"wrong audience", issue(c.CADir, "spiffe://hr.example.corp/agent/payroll/exporter", "spiffe://finance.example.corp/mcpmesh/gateway"), "not this node"},
		{"foreign trust domain", issue(finance, "spiffe://finance.example.corp/agent/payroll/exporter", aud), "finance.example.corp"},
		{"not an agent", issue(c.CADir, "spiffe://hr.example.corp/admin/alice", aud), "not an agent"},
	} {
		resp, body := rawPost(t, n.URL()+"/mcp", map[string]string{"Authorization": "Bearer " + tc.token}, legacyInit)
		challenge := resp.Header.Get("WWW-Authenticate")
		if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(challenge, "Bearer ") || !strings.Contains(body, "-32001") || !strings.Contains(body, tc.want) {
			t.Errorf("%s: HTTP %d, WWW-Authenticate %q, body %s; want 401 with -32001 mentioning %q", tc.name, resp.StatusCode, challenge, body, tc.want)
		}
	}

	_, metrics := get(t, n.URL()+"/metrics", "")
	for _, outcome := range []string{"ok", "expired", "wrong-audience", "foreign-trust-domain", "not-agent"} {
		re := regexp.MustCompile(`mcpmesh_agent_auth_total\{method="jwt-svid",namespace="hr",outcome="` + outcome + `"\} [1-9]`)
		if !re.MatchString(metrics) {
			t.Errorf("/metrics lacks mcpmesh_agent_auth_total for jwt-svid %s", outcome)
		}
	}
	log := n.Log()
	for _, tok := range []string{good, expired} {
		if strings.Contains(log, strings.Split(tok, ".")[1]) || strings.Contains(log, strings.Split(tok, ".")[2]) {
			t.Fatal("the node's log contains a JWT-SVID")
		}
	}
	if !strings.Contains(log, "agent auth: refused") {
		t.Error("the node did not log the refusals")
	}
}
