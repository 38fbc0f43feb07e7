package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpmesh/mcpmesh/registry/api"
	"github.com/mcpmesh/mcpmesh/registry/card"
	"github.com/mcpmesh/mcpmesh/test/internal/testcluster"
)

// testUpstream is a go-sdk MCP server in the test process that the node
// under test reaches over loopback; it records the headers it received.
type testUpstream struct {
	URL     string
	mu      sync.Mutex
	headers []http.Header
}

// upstreamTool is the test upstream's one tool. It is read-only (so a
// call of it that another BU's node may have received before it died is
// repeated on the next node, federation_atmostonce_test.go).
const upstreamTool = `{"name":"lookup","description":"Looks a thing up.","inputSchema":{"type":"object","properties":{"q":{"type":"string"}},"required":["q"]},"annotations":{"readOnlyHint":true}}`

func startUpstream(t *testing.T, label string) *testUpstream {
	t.Helper()
	return startUpstreamOn(t, label, "127.0.0.1")
}

// startUpstreamOn is startUpstream listening on host.
func startUpstreamOn(t *testing.T, label, host string) *testUpstream {
	t.Helper()
	u := &testUpstream{}
	s := mcp.NewServer(&mcp.Implementation{Name: label, Version: "1"}, nil)
	var def mcp.Tool
	if err := json.Unmarshal([]byte(upstreamTool), &def); err != nil {
		t.Fatal(err)
	}
	s.AddTool(&def, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		var args struct{ Q string }
		json.Unmarshal(req.Params.Arguments, &args)
		// Sent only to a caller that asked for log messages.
		req.Session.Log(ctx, &mcp.LoggingMessageParams{Level: "info", Logger: label, Data: "looked up " + args.Q})
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: label + ":" + args.Q}}}, nil
	})
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil)
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.headers = append(u.headers, r.Header.Clone())
		u.mu.Unlock()
		h.ServeHTTP(w, r)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	u.URL = "http://" + ln.Addr().String() + "/mcp"
	return u
}

func upstreamCard(name, version, url string) []byte {
	return []byte(fmt.Sprintf(`{"name":%q,"description":"Test upstream","version":%q,"_meta":{
"io.mcpmesh/governance":{"owner":"o@corp.example","team":"t","dataClassification":"internal","riskTier":"low","costPerCall":0,
"upstream":{"transport":"streamable-http","url":%q}},
"io.mcpmesh/tools":[%s]}}`, name, version, url, upstreamTool))
}

// credentialTransport makes the agent send credentials: its API key, when
// it has one, and headers that look like credentials of other kinds. None
// of them may travel past the node.
type credentialTransport struct{ key string }

func (c credentialTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	if c.key != "" {
		r.Header.Set("Authorization", "Bearer "+c.key)
	}
	r.Header.Set("X-Api-Key", "agent-key-must-not-travel")
	r.Header.Set("Cookie", "session=agent-cookie-must-not-travel")
	return http.DefaultTransport.RoundTrip(r)
}

// mcpConnect connects without an API key: for nodes that grant the route
// anonymously.
func mcpConnect(t *testing.T, url, version string) *mcp.ClientSession {
	t.Helper()
	return mcpConnectAs(t, url, version, "")
}

// mcpConnectAs connects as the agent holding key.
func mcpConnectAs(t *testing.T, url, version, key string) *mcp.ClientSession {
	t.Helper()
	s, err := tryConnect(t, url, version, key)
	if err != nil {
		t.Fatalf("connect to %s (%s): %v", url, version, err)
	}
	return s
}

func tryConnect(t *testing.T, url, version, key string) (*mcp.ClientSession, error) {
	t.Helper()
	return dial(t, url, version, credentialTransport{key})
}

// dial connects an agent that sends its requests through rt.
func dial(t *testing.T, url, version string, rt http.RoundTripper) (*mcp.ClientSession, error) {
	c := mcp.NewClient(&mcp.Implementation{Name: "e2e-agent", Version: "1"}, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	s, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url, HTTPClient: &http.Client{Transport: rt}}, &mcp.ClientSessionOptions{ProtocolVersion: version})
	if err != nil {
		return nil, fmt.Errorf("connect to %s (%s): %w", url, version, err)
	}
	t.Cleanup(func() { s.Close() })
	return s, nil
}

// createKey makes an API key for tenant with the CLI and returns it.
func createKey(t *testing.T, c *testcluster.Cluster, n *testcluster.Node, tenant, name string) api.APIKeyCreated {
	t.Helper()
	out := mustCLI(t, c, n, "apikey", "create", "-tenant", tenant, "-name", name, "-o", "json")
	return decode[api.APIKeyCreated](t, "apikey create", out)
}

// TestGatewayServesApprovedServers: agents list and call, through the real
// binary, only the tools of approved servers, in both protocol eras, on the
// aggregated and the per-server endpoint, via any node of the cluster; no
// agent credential (its API key, or anything else that looks like one)
// reaches an upstream.
func TestGatewayServesApprovedServers(t *testing.T) {
	t.Parallel()
	directory := startUpstream(t, "directory")
	shadow := startUpstream(t, "shadow")
	c := startCluster(t, testcluster.Options{NoSync: true})
	leader := c.Leader(leaderTimeout)
	follower := c.Followers(leader)[0]
	mustCLI(t, c, follower, "tenant", "add", "payroll", "-owner", "alice@corp.example")
	mustCLI(t, c, follower, "apply", "-f", permitAll(t))
	key := createKey(t, c, follower, "payroll", "e2e agent").Secret

	mustCLI(t, c, follower, "registry", "submit", "-f", writeCard(t, upstreamCard("corp.hr/directory", "1.0.0", directory.URL)))
	mustCLI(t, c, follower, "registry", "submit", "-f", writeCard(t, upstreamCard("corp.hr/shadow", "1.0.0", shadow.URL)))
	mustCLI(t, c, follower, "registry", "approve", "corp.hr/directory@1.0.0")

	for _, n := range c.Nodes {
		for _, era := range []string{"2026-07-28", "2025-11-25", "2025-06-18"} {
			var names []string
			ok := testcluster.Eventually(catchUp, func() bool {
				s := mcpConnectAs(t, n.URL()+"/mcp", era, key)
				res, err := s.ListTools(t.Context(), nil)
				if err != nil {
					return false
				}
				names = names[:0]
				for _, tool := range res.Tools {
					names = append(names, tool.Name)
				}
				return slices.Equal(names, []string{"hr.lookup"})
			})
			if !ok {
				t.Fatalf("%s %s: tools/list = %v, want [hr.lookup] (the unapproved shadow server must not appear)", n.ID, era, names)
			}
			s := mcpConnectAs(t, n.URL()+"/mcp", era, key)
			res, err := s.CallTool(t.Context(), &mcp.CallToolParams{Name: "hr.lookup", Arguments: map[string]any{"q": n.ID}})
			if err != nil || res.IsError || res.Content[0].(*mcp.TextContent).Text != "directory:"+n.ID {
				t.Errorf("%s %s: call = %+v, %v", n.ID, era, res, err)
			}
			one := mcpConnectAs(t, n.URL()+"/mcp/s/hr/corp.hr/directory", era, key)
			res, err = one.CallTool(t.Context(), &mcp.CallToolParams{Name: "lookup", Arguments: map[string]any{"q": "one"}})
			if err != nil || res.Content[0].(*mcp.TextContent).Text != "directory:one" {
				t.Errorf("%s %s: per-server call = %+v, %v", n.ID, era, res, err)
			}
		}
	}

	// Upstream health is in the metrics (and /readyz), per server version.
	if code, body := get(t, leader.URL()+"/metrics", ""); code != http.StatusOK || !strings.Contains(body, `mcpmesh_upstream_connected{namespace="hr",upstream="corp.hr/directory@1.0.0"} 1`) || !strings.Contains(body, `mcpmesh_upstream_circuit_open{namespace="hr",upstream="corp.hr/directory@1.0.0"} 0`) {
		t.Errorf("/metrics lacks the upstream's health (HTTP %d)", code)
	}
	if code, body := get(t, leader.URL()+"/readyz", ""); code != http.StatusOK || !strings.Contains(body, `"upstream":"corp.hr/directory@1.0.0"`) {
		t.Errorf("/readyz lacks the upstream's health: HTTP %d %s", code, body)
	}

	// The unapproved server is unreachable, by name and by its own route.
	code, body := postJSON(t, leader.URL()+"/mcp/s/hr/corp.hr/shadow", key, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
	if code != http.StatusNotFound {
		t.Errorf("unapproved server route: HTTP %d %s, want 404", code, body)
	}
	shadow.mu.Lock()
	if len(shadow.headers) != 0 {
		t.Errorf("the unapproved upstream received %d requests", len(shadow.headers))
	}
	shadow.mu.Unlock()

	// No agent credential traveled upstream.
	directory.mu.Lock()
	defer directory.mu.Unlock()
	if len(directory.headers) == 0 {
		t.Fatal("the upstream received no requests")
	}
	for _, h := range directory.headers {
		for k, vs := range h {
			for _, v := range vs {
				if strings.Contains(v, "must-not-travel") || strings.Contains(v, key) || strings.Contains(v, key[len(key)-20:]) {
					t.Errorf("upstream received the agent's credential in %s", k)
				}
			}
		}
	}
}

// postJSON posts a JSON-RPC body, with key as a bearer token unless it is "".
func postJSON(t *testing.T, url, key, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	n, _ := resp.Body.Read(buf)
	b.Write(buf[:n])
	return resp.StatusCode, b.String()
}

// TestRugPullQuarantines: an upstream whose live tool definition differs
// from the one reviewed and pinned gets its version quarantined through
// Raft by the leader's definition check, on every node, and its tool is
// no longer served.
func TestRugPullQuarantines(t *testing.T) {
	t.Parallel()
	rug := startUpstream(t, "rug")
	c := startCluster(t, testcluster.Options{NoSync: true, ExtraYAML: "mcp:\n  anonymous_routes: [\"/mcp\", \"/mcp/s/*\"]\n"})
	leader := c.Leader(leaderTimeout)
	mustCLI(t, c, leader, "apply", "-f", permitAll(t))
	// The card pins a description the upstream does not serve.
	pinned := strings.Replace(string(upstreamCard("corp.hr/rug", "1.0.0", rug.URL)), "Looks a thing up.", "Looks a thing up; read-only.", 1)
	mustCLI(t, c, leader, "registry", "submit", "-f", writeCard(t, []byte(pinned)))
	mustCLI(t, c, leader, "registry", "approve", "corp.hr/rug@1.0.0")
	for _, n := range c.Nodes {
		d := eventuallyShow(t, c, n, "corp.hr/rug@1.0.0", func(d api.VersionDetail) bool { return d.State == card.StateQuarantined })
		last := d.History[len(d.History)-1]
		if last.By != "mcpmesh:definition-check" || !strings.Contains(last.Reason, "rug pull") || !strings.Contains(last.Reason, "lookup") {
			t.Errorf("%s: quarantine recorded as %+v", n.ID, last)
		}
	}
	ok := testcluster.Eventually(catchUp, func() bool {
		s := mcpConnect(t, leader.URL()+"/mcp", "2026-07-28")
		res, err := s.ListTools(t.Context(), nil)
		return err == nil && len(res.Tools) == 0
	})
	if !ok {
		t.Error("the quarantined tool is still listed")
	}
	if out, code := c.CLI(leader, "registry", "list", "-state", "quarantined"); code != 0 || !strings.Contains(out, "corp.hr/rug") {
		t.Errorf("registry list -state quarantined: exit %d\n%s", code, out)
	}
}
