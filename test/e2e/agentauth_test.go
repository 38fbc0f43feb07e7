package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/mcpmesh/mcpmesh/registry/state"
	"github.com/mcpmesh/mcpmesh/test/internal/testcluster"
	"github.com/mcpmesh/mcpmesh/trust/ca"
)

// rawPost posts body to url with the given headers (plus the JSON-RPC
// content negotiation) and returns the response, its body read.
func rawPost(t *testing.T, url string, headers map[string]string, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	cl := http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp, string(b)
}

const legacyInit = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`

// TestAgentAPIKeys: per-tenant API keys through the real binary — shown
// once and listed without secret or hash; accepted by every replica;
// every malformed, unknown, tampered or missing credential refused with
// 401, a challenge and a JSON-RPC error; a session bound to the key that
// opened it; revocation effective on every replica (the time is logged);
// and no key in any node's log.
func TestAgentAPIKeys(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, "directory")
	c := startCluster(t, testcluster.Options{NoSync: true})
	leader := c.Leader(leaderTimeout)
	mustCLI(t, c, leader, "apply", "-f", permitAll(t))
	followers := c.Followers(leader)
	mustCLI(t, c, followers[0], "registry", "submit", "-f", writeCard(t, upstreamCard("corp.hr/directory", "1.0.0", up.URL)))
	mustCLI(t, c, followers[0], "registry", "approve", "corp.hr/directory@1.0.0")
	mustCLI(t, c, followers[0], "tenant", "add", "payroll", "-owner", "alice@corp.example")
	mustCLI(t, c, followers[0], "tenant", "add", "benefits", "-owner", "bob@corp.example")
	payroll := createKey(t, c, followers[0], "payroll", "payroll bot")
	benefits := createKey(t, c, leader, "benefits", "benefits bot")
	if payroll.Key.Tenant != "payroll" || !strings.HasPrefix(payroll.Secret, "mcpk_"+payroll.Key.ID+"_") || payroll.Key.Hash != "" {
		t.Fatalf("apikey create = %+v", payroll)
	}
	out, code := c.CLI(leader, "apikey", "create", "-tenant", "nosuch", "-name", "x")
	wantFailure(t, "apikey create for a missing tenant", out, code, 1, "tenant nosuch does not exist")

	// The list shows ids, never a secret or a hash.
	out = mustCLI(t, c, followers[1], "apikey", "list", "-consistent", "-o", "json")
	keys := decode[[]state.APIKey](t, "apikey list", out)
	if len(keys) != 2 || strings.Contains(out, payroll.Secret[len(payroll.Secret)-43:]) || strings.Contains(out, `"hash"`) {
		t.Errorf("apikey list = %s; want two keys, no secret, no hash", out)
	}
	out = mustCLI(t, c, followers[1], "apikey", "list", "-tenant", "benefits", "-o", "json")
	if ks := decode[[]state.APIKey](t, "apikey list -tenant", out); len(ks) != 1 || ks[0].ID != benefits.Key.ID {
		t.Errorf("apikey list -tenant benefits = %s", out)
	}

	// Every replica accepts the key, in both eras, and the CLI agent too.
	for _, n := range c.Nodes {
		for _, era := range []string{"2026-07-28", "2025-11-25"} {
			var last string
			ok := testcluster.Eventually(catchUp, func() bool {
				s, err := tryConnect(t, n.URL()+"/mcp", era, payroll.Secret)
				if err != nil {
					last = err.Error()
					return false
				}
				res, err := s.CallTool(t.Context(), &mcp.CallToolParams{Name: "hr.lookup", Arguments: map[string]any{"q": n.ID}})
				if err != nil || res.IsError {
					last = fmt.Sprint(res, err)
					return false
				}
				return res.Content[0].(*mcp.TextContent).Text == "directory:"+n.ID
			})
			if !ok {
				t.Fatalf("%s %s: the payroll key does not call hr.lookup; last: %s", n.ID, era, last)
			}
		}
	}
	keyFile := writeFile(t, t.TempDir(), "agent.key", []byte(payroll.Secret+"\n"))
	out, code = c.Run("call", "-url", followers[1].URL()+"/mcp", "-api-key-file", keyFile, "hr.lookup", "q=cli")
	if code != 0 || firstLine(out) != "directory:cli" {
		t.Errorf("mcpmesh call -api-key-file: exit %d: %s", code, out)
	}
	out, code = c.Run("call", "-url", followers[1].URL()+"/mcp", "-list")
	wantFailure(t, "mcpmesh call without a credential", out, code, 1, "Unauthorized")

	// Each way to fail: 401, a Bearer challenge, and a JSON-RPC error that
	// says what was wrong, without repeating the credential.
	unknown := "mcpk_aaaaaaaaaaaa_" + payroll.Secret[len(payroll.Secret)-43:]
	tampered := payroll.Secret[:len(payroll.Secret)-4] + "AAAA"
	if tampered == payroll.Secret {
		tampered = payroll.Secret[:len(payroll.Secret)-4] + "BBBB"
	}
	for _, tc := range []struct{ name, authz, want string }{
		{"missing", "", "needs a credential"},
		{"malformed key", "Bearer mcpk_short", "malformed API key"},
		{"unknown key", "Bearer " + unknown, "is not known"},
		{"tampered secret", "Bearer " + tampered, "does not match"},
		{"a JWT", "Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", "JWT"},
		{"basic auth", "Basic YWxpY2U6c2VjcmV0", "Bearer"},
	} {
		h := map[string]string{}
		if tc.authz != "" {
			h["Authorization"] = tc.authz
		}
		resp, body := rawPost(t, leader.URL()+"/mcp", h, legacyInit)
		var e struct {
			Error struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		json.Unmarshal([]byte(body), &e)
		if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer ") ||
			e.Error.Code != -32001 || !strings.Contains(e.Error.Message, tc.want) {
			t.Errorf("%s: HTTP %d, challenge %q, body %s; want 401 with a -32001 error saying %q", tc.name, resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body, tc.want)
		}
		if strings.Contains(body, payroll.Secret[len(payroll.Secret)-43:]) {
			t.Errorf("%s: the refusal repeats the secret: %s", tc.name, body)
		}
	}

	// A legacy session belongs to the key that opened it: another tenant's
	// key cannot use it (go-sdk's session check, fed the principal).
	resp, body := rawPost(t, leader.URL()+"/mcp", map[string]string{"Authorization": "Bearer " + payroll.Secret}, legacyInit)
	sid := resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != http.StatusOK || sid == "" {
		t.Fatalf("initialize with the payroll key: HTTP %d, session %q: %s", resp.StatusCode, sid, body)
	}
	list := `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`
	session := func(key string) int {
		resp, _ := rawPost(t, leader.URL()+"/mcp", map[string]string{"Authorization": "Bearer " + key, "Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-11-25"}, list)
		return resp.StatusCode
	}
	if code := session(benefits.Secret); code != http.StatusForbidden {
		t.Errorf("payroll's session used with benefits' key: HTTP %d, want 403", code)
	}
	if code := session(payroll.Secret); code != http.StatusOK {
		t.Errorf("payroll's session with its own key: HTTP %d, want 200", code)
	}

	// Revocation reaches every replica; each request checks the key anew,
	// so the open session stops working too.
	mustCLI(t, c, followers[0], "apikey", "revoke", payroll.Key.ID)
	revoked := time.Now()
	var mu sync.Mutex
	took := map[string]time.Duration{}
	var wg sync.WaitGroup
	for _, n := range c.Nodes {
		wg.Go(func() {
			ok := testcluster.Eventually(5*time.Second, func() bool {
				resp, _ := rawPost(t, n.URL()+"/mcp", map[string]string{"Authorization": "Bearer " + payroll.Secret}, legacyInit)
				return resp.StatusCode == http.StatusUnauthorized
			})
			mu.Lock()
			defer mu.Unlock()
			if ok {
				took[n.ID] = time.Since(revoked)
			}
		})
	}
	wg.Wait()
	if len(took) != len(c.Nodes) {
		t.Fatalf("the revoked key is still accepted after 5s by some node; refused by %v", took)
	}
	t.Logf("revocation refused on every replica within %v of the CLI returning (per node: %v)", slices.Max(slices.Collect(maps.Values(took))), took)
	if code := session(payroll.Secret); code != http.StatusUnauthorized {
		t.Errorf("the revoked key's open session: HTTP %d, want 401", code)
	}
	if _, err := tryConnect(t, followers[1].URL()+"/mcp", "2026-07-28", benefits.Secret); err != nil {
		t.Errorf("benefits' key after payroll's revocation: %v", err)
	}

	// Secrets never reach a log, and the refusals are counted.
	for _, n := range c.Nodes {
		log := n.Log()
		for _, secret := range []string{payroll.Secret, benefits.Secret, payroll.Secret[len(payroll.Secret)-43:], benefits.Secret[len(benefits.Secret)-43:]} {
			if strings.Contains(log, secret) {
				t.Errorf("%s's log contains an API key's secret", n.ID)
			}
		}
	}
	revokedMetric := regexp.MustCompile(`mcpmesh_agent_auth_total\{method="api-key",namespace="hr",outcome="revoked"\} [1-9]`)
	seen := false
	for _, n := range c.Nodes {
		_, m := get(t, n.URL()+"/metrics", "")
		seen = seen || revokedMetric.MatchString(m)
	}
	if !seen {
		t.Error(`no node counts mcpmesh_agent_auth_total{method="api-key",outcome="revoked"}`)
	}
}

// TestAgentSVID: on an HTTPS node, an agent with an X.509-SVID of the
// trust domain calls tools as its tenant; an administrator's SVID, a
// missing certificate and another trust domain's SVID are refused.
func TestAgentSVID(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, "directory")
	c := testcluster.New(t, testcluster.Options{NoSync: true, Nodes: 1,
		ExtraYAML: "mcp:\n  auth:\n    svid_tenants:\n      - { path_prefix: /agent/payroll/, tenant: payroll }\n"})
	n := c.Nodes[0]
	n.WriteConfigWith(testcluster.NodeOverrides{HTTPTLS: true},
		"bootstrap:\n  expect: 1\n  peers:\n    - { id: n1, address: \""+n.RaftAddr+"\" }\n")
	admin := c.IssueSVID(c.CADir, "spiffe://hr.example.corp/admin/alice")
	agent := c.IssueSVID(c.CADir, "spiffe://hr.example.corp/agent/payroll/exporter")
	foreign := c.IssueSVID(c.InitCA("finance.example.corp"), "spiffe://finance.example.corp/agent/payroll/exporter")
	n.Start()
	waitReadyTLS(t, n, admin)
	as := func(args ...string) string {
		t.Helper()
		out, code := c.Run(append(args, "-addr", n.HTTPSURL(), "-svid-dir", admin)...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, out)
		}
		return out
	}
	as("apply", "-f", permitAll(t))
	as("registry", "submit", "-f", writeCard(t, upstreamCard("corp.hr/directory", "1.0.0", up.URL)))
	as("registry", "approve", "corp.hr/directory@1.0.0")

	// client presents the SVID in dir (none when dir is "") and trusts only
	// a node of hr's trust domain.
	_, hrBundle, err := ca.LoadSVID(admin)
	if err != nil {
		t.Fatal(err)
	}
	td := spiffeid.RequireTrustDomainFromString("hr.example.corp")
	client := func(dir string) *http.Client {
		cfg := tlsconfig.TLSClientConfig(hrBundle, tlsconfig.AuthorizeMemberOf(td))
		if dir != "" {
			svid, _, err := ca.LoadSVID(dir)
			if err != nil {
				t.Fatal(err)
			}
			cfg = tlsconfig.MTLSClientConfig(svid, hrBundle, tlsconfig.AuthorizeMemberOf(td))
		}
		tr := &http.Transport{TLSClientConfig: cfg}
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr, Timeout: 10 * time.Second}
	}
	connect := func(dir string) (*mcp.ClientSession, error) {
		cl := mcp.NewClient(&mcp.Implementation{Name: "svid-agent", Version: "1"}, nil)
		ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
		defer cancel()
		s, err := cl.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: n.HTTPSURL() + "/mcp", HTTPClient: client(dir)}, nil)
		if err == nil {
			t.Cleanup(func() { s.Close() })
		}
		return s, err
	}

	var last string
	ok := testcluster.Eventually(catchUp, func() bool {
		s, err := connect(agent)
		if err != nil {
			last = err.Error()
			return false
		}
		res, err := s.CallTool(t.Context(), &mcp.CallToolParams{Name: "hr.lookup", Arguments: map[string]any{"q": "svid"}})
		if err != nil || res.IsError {
			last = fmt.Sprint(res, err)
			return false
		}
		return res.Content[0].(*mcp.TextContent).Text == "directory:svid"
	})
	if !ok {
		t.Fatalf("the agent SVID does not call hr.lookup; last: %s", last)
	}
	if _, err := connect(admin); err == nil || !strings.Contains(err.Error(), "Unauthorized") {
		t.Errorf("an admin SVID at /mcp: err = %v, want Unauthorized (not an agent)", err)
	}
	if _, err := connect(""); err == nil || !strings.Contains(err.Error(), "Unauthorized") {
		t.Errorf("no client certificate at /mcp: err = %v, want Unauthorized", err)
	}
	if _, err := connect(foreign); err == nil {
		t.Error("an SVID of finance.example.corp was accepted by hr's node")
	}

	resp, err := client(agent).Get(n.HTTPSURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, outcome := range []string{"ok", "not-agent"} {
		re := regexp.MustCompile(`mcpmesh_agent_auth_total\{method="x509-svid",namespace="hr",outcome="` + outcome + `"\} [1-9]`)
		if !re.Match(metrics) {
			t.Errorf("/metrics lacks mcpmesh_agent_auth_total for x509-svid %s", outcome)
		}
	}
	if !strings.Contains(n.Log(), "agent auth: refused") {
		t.Error("the node did not log the refused admin SVID")
	}
}
