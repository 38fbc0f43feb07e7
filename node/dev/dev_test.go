package dev

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpmesh/mcpmesh/registry/api"
	"github.com/mcpmesh/mcpmesh/registry/card"
)

// runDev starts a dev mesh and returns dev.json once written, and a stop
// function that waits for a clean exit.
func runDev(t *testing.T, dir string, base int) (Info, func()) {
	t.Helper()
	os.Remove(filepath.Join(dir, "dev.json"))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	var out bytes.Buffer
	go func() {
		done <- Run(ctx, Config{DataDir: dir, BasePort: base}, &out, slog.New(slog.DiscardHandler))
	}()
	// Dev waits (at most 60s) for hr to import finance's tool first.
	deadline := time.Now().Add(90 * time.Second)
	var info Info
	for {
		raw, err := os.ReadFile(filepath.Join(dir, "dev.json"))
		if err == nil && json.Unmarshal(raw, &info) == nil {
			break
		}
		select {
		case err := <-done:
			cancel()
			t.Fatalf("dev exited before writing dev.json: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("dev.json not written within 90s (last read error: %v)", err)
		}
	}
	return info, func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("dev did not stop cleanly: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("dev did not stop within 20s")
		}
	}
}

func TestDevSeedsAndResumes(t *testing.T) {
	dir := t.TempDir()
	base := freeBase(t)
	info, stop := runDev(t, dir, base)
	if len(info.Namespaces) != 2 {
		t.Fatalf("namespaces = %v, want hr and finance", info.Namespaces)
	}
	fin := info.Namespaces["finance"]
	if fin.TrustDomain != "finance.example.corp" || len(fin.Servers) != 2 {
		t.Errorf("finance = %+v", fin)
	}
	tok, _ := os.ReadFile(fin.TokenFile)
	if strings.TrimSpace(string(tok)) != fin.Token || len(fin.Token) < 32 {
		t.Errorf("token file does not hold the dev token")
	}
	c, err := api.NewClient(api.ClientConfig{Addr: fin.AdminURL, Token: fin.Token})
	if err != nil {
		t.Fatal(err)
	}
	rows, err := c.ListServers(t.Context(), "", false)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 {
		t.Fatalf("finance lists %d versions, want 2: %+v", len(rows), rows)
	}
	for _, r := range rows {
		want := card.StateApproved
		if r.Version == "1.0.0" {
			want = card.StateDeprecated
		}
		if r.State != want {
			t.Errorf("%s@%s is %s, want %s", r.Server, r.Version, r.State, want)
		}
	}
	// Agents reach each BU's tools through its MCP endpoint, without a
	// credential in dev; the ledger's 1.0.0 is deprecated in favour of 2.0.0.
	sess := mcpSession(t, fin.MCPURL)
	tools, err := sess.ListTools(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tool := range tools.Tools {
		names = append(names, tool.Name)
	}
	// The example policies and dev.cedar let an anonymous agent run the
	// read-only tools only; moving money is denied, and dev says by what.
	if want := []string{"finance.generate_report", "finance.get_balance"}; !slices.Equal(names, want) {
		t.Errorf("finance tools = %v, want %v", names, want)
	}
	_, err = sess.CallTool(t.Context(), &mcp.CallToolParams{Name: "finance.transfer_funds", Arguments: map[string]any{}})
	if err == nil || !strings.Contains(err.Error(), "denied by policy: forbidden by destructive-needs-write-scope") {
		t.Errorf("anonymous transfer_funds: err = %v, want a denial naming the policy", err)
	}
	// An anonymous agent has no tenant: the example servers show it nothing.
	res, err := sess.CallTool(t.Context(), &mcp.CallToolParams{Name: "finance.get_balance", Arguments: map[string]any{"account_id": "ACC-1001"}})
	if err != nil || !res.IsError || !strings.Contains(fmt.Sprint(res.Content[0]), "has no tenant") {
		t.Errorf("anonymous get_balance through dev: %+v, %v; want a refusal for want of a tenant", res, err)
	}

	// Each BU has a dev API key of its first tenant; keys are per BU.
	hr := info.Namespaces["hr"]
	if raw, _ := os.ReadFile(hr.AgentKeyFile); strings.TrimSpace(string(raw)) != hr.AgentKey || hr.AgentTenant != "payroll" || fin.AgentTenant != "treasury" {
		t.Errorf("dev agent keys: hr %+v, finance tenant %q", hr, fin.AgentTenant)
	}
	finSess, err := connectAs(t, fin.MCPURL, fin.AgentKey)
	if err != nil {
		t.Fatalf("finance's dev key on finance: %v", err)
	}
	res, err = finSess.CallTool(t.Context(), &mcp.CallToolParams{Name: "finance.get_balance", Arguments: map[string]any{"account_id": "ACC-1001"}})
	if err != nil || res.IsError || res.Meta["io.mcpmesh/version"] != "2.0.0" {
		t.Errorf("get_balance through dev as treasury: %+v, %v", res, err)
	}
	res, err = finSess.CallTool(t.Context(), &mcp.CallToolParams{Name: "finance.get_balance", Arguments: map[string]any{"account_id": "ACC-1001"}, Meta: mcp.Meta{"io.mcpmesh/version": "1.0.0"}})
	if err != nil || res.IsError || res.Meta["io.mcpmesh/deprecation"] == nil {
		t.Errorf("pinned to the deprecated 1.0.0: %+v, %v", res, err)
	}
	keySess, err := connectAs(t, hr.MCPURL, hr.AgentKey)
	if err != nil {
		t.Fatalf("hr's dev key on hr: %v", err)
	}
	res, err = keySess.CallTool(t.Context(), &mcp.CallToolParams{Name: "hr.search_employees", Arguments: map[string]any{"query": "payroll"}})
	if err != nil || res.IsError || !strings.Contains(fmt.Sprint(res.Content[0]), "4 employee(s)") {
		t.Errorf("search_employees with hr's dev key: %+v, %v; want payroll's 4 employees", res, err)
	}
	res, err = keySess.CallTool(t.Context(), &mcp.CallToolParams{Name: "hr.search_employees", Arguments: map[string]any{"query": "benefits"}})
	if err != nil || res.IsError || !strings.Contains(fmt.Sprint(res.Content[0]), "No employee matches") {
		t.Errorf("payroll's agent searching benefits' teams: %+v, %v; want none", res, err)
	}
	if _, err := connectAs(t, fin.MCPURL, hr.AgentKey); err == nil || !strings.Contains(err.Error(), "Unauthorized") {
		t.Errorf("hr's dev key on finance: err = %v, want Unauthorized", err)
	}

	// Tokens are per BU: hr's token does not open finance.
	other, _ := api.NewClient(api.ClientConfig{Addr: fin.AdminURL, Token: info.Namespaces["hr"].Token})
	if _, err := other.ListServers(t.Context(), "", false); err == nil {
		t.Error("hr's dev token was accepted by finance's node")
	}

	// The BUs are federated: hr's agent calls finance's report across BUs.
	if info.ManifestVersion != 1 || !slices.Equal(hr.Imported, []string{"finance.generate_report"}) || len(fin.Imported) != 0 ||
		!strings.Contains(hr.CrossBUCall, "finance.generate_report") || hr.PeerAddr == "" {
		t.Errorf("dev.json federation: manifest %d, hr %+v, finance imports %v", info.ManifestVersion, hr, fin.Imported)
	}
	checkCrossBUCall(t, info)
	stop()

	// A second run on the same data dir resumes: same token, same state,
	// nothing approved twice.
	info2, stop2 := runDev(t, dir, base)
	defer stop2()
	if info2.Namespaces["finance"].Token != fin.Token {
		t.Error("token changed across restarts")
	}
	if info2.Namespaces["hr"].AgentKey != hr.AgentKey {
		t.Error("the dev agent key changed across restarts")
	}
	// The manifest in force was kept, not signed again (nor rolled back),
	// and hr still calls finance.
	if info2.ManifestVersion != info.ManifestVersion {
		t.Errorf("manifest version %d after resuming, want %d kept", info2.ManifestVersion, info.ManifestVersion)
	}
	for ns, n := range info2.Namespaces {
		c, _ := api.NewClient(api.ClientConfig{Addr: n.AdminURL, Token: n.Token})
		m, err := c.Manifest(t.Context(), false)
		if err != nil || m.Version != info.ManifestVersion {
			t.Errorf("%s holds manifest %d, %v; want %d", ns, m.Version, err, info.ManifestVersion)
		}
	}
	checkCrossBUCall(t, info2)

	// A manifest whose content must change is signed under the next
	// version: here one without relationships (no exports planned).
	cen, err := loadOrCreateCentral(dir)
	if err != nil {
		t.Fatal(err)
	}
	clients := map[string]*api.Client{}
	for ns, n := range info2.Namespaces {
		clients[ns], _ = api.NewClient(api.ClientConfig{Addr: n.AdminURL, Token: n.Token})
	}
	p, err := planFederation(Config{DataDir: dir, BasePort: base}, []string{"finance", "hr"}, info2.Namespaces, nil)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := pushManifest(t.Context(), p, cen, clients); err != nil || v != info.ManifestVersion+1 {
		t.Errorf("pushing a changed manifest: version %d, %v; want %d", v, err, info.ManifestVersion+1)
	}
	if v, err := pushManifest(t.Context(), p, cen, clients); err != nil || v != info.ManifestVersion+1 {
		t.Errorf("pushing it again: version %d, %v; want %d kept", v, err, info.ManifestVersion+1)
	}
	c, _ = api.NewClient(api.ClientConfig{Addr: fin.AdminURL, Token: fin.Token})
	vs, err := c.ServerVersions(t.Context(), "corp.finance/ledger", true)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		// The example servers listen on ports of this mesh's own.
		if port := base + 400 + map[string]int{"1.0.0": 0, "2.0.0": 1}[v.Version]; v.Governance.Upstream.URL != fmt.Sprintf("http://127.0.0.1:%d/mcp", port) {
			t.Errorf("%s@%s upstream %s, want port %d (base %d + 400 + its place in the catalog)", v.Server, v.Version, v.Governance.Upstream.URL, port, base)
		}
		want, n := card.StateApproved, 2
		if v.Version == "1.0.0" {
			want, n = card.StateDeprecated, 3
		}
		if v.State != want || len(v.History) != n {
			t.Errorf("%s@%s after restart: %s with %d history entries, want %s with %d", v.Server, v.Version, v.State, len(v.History), want, n)
		}
	}
}

// checkCrossBUCall: hr's dev agent lists finance.generate_report and calls
// it; finance's ledger answers with payroll's lines, and finance's audit
// log has the call under hr's qualified principal.
func checkCrossBUCall(t *testing.T, info Info) {
	t.Helper()
	hr, fin := info.Namespaces["hr"], info.Namespaces["finance"]
	s, err := connectAs(t, hr.MCPURL, hr.AgentKey)
	if err != nil {
		t.Fatalf("hr's dev key on hr: %v", err)
	}
	tools, err := s.ListTools(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tool := range tools.Tools {
		names = append(names, tool.Name)
	}
	if !slices.Contains(names, "finance.generate_report") || slices.Contains(names, "finance.get_balance") {
		t.Fatalf("hr's agent lists %v; want finance.generate_report, the only tool finance shares", names)
	}
	res, err := s.CallTool(t.Context(), &mcp.CallToolParams{Name: "finance.generate_report", Arguments: map[string]any{"kind": "profit_and_loss", "period": "2026-01"}})
	if err != nil || res.IsError {
		t.Fatalf("cross-BU finance.generate_report: %+v, %v", res, err)
	}
	var rep struct {
		Kind  string `json:"kind"`
		Lines []struct {
			Tenant      string `json:"tenant"`
			Label       string `json:"label"`
			AmountCents int64  `json:"amount_cents"`
		} `json:"lines"`
	}
	raw, _ := json.Marshal(res.StructuredContent)
	if err := json.Unmarshal(raw, &rep); err != nil || rep.Kind != "profit_and_loss" || len(rep.Lines) != 3 ||
		rep.Lines[1].Tenant != "hr.example.corp/payroll" || rep.Lines[1].AmountCents != -96_000_000 {
		t.Errorf("the ledger's report for hr's payroll: %s (%v)", raw, err)
	}
	c, _ := api.NewClient(api.ClientConfig{Addr: fin.AdminURL, Token: fin.Token})
	recs, err := c.AuditQuery(t.Context(), api.AuditQuery{Kind: "call", Tool: "corp.finance/ledger/generate_report"})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range recs.Records {
		found = found || (strings.HasPrefix(r.Principal, "hr.example.corp/") && r.Outcome == "ok")
	}
	if !found {
		t.Errorf("finance's audit log has no call of generate_report by hr: %+v", recs.Records)
	}
}

func mcpSession(t *testing.T, url string) *mcp.ClientSession {
	t.Helper()
	s, err := connectAs(t, url, "")
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	return s
}

// connectAs connects with an API key, or anonymously when key is "".
func connectAs(t *testing.T, url, key string) (*mcp.ClientSession, error) {
	t.Helper()
	c := mcp.NewClient(&mcp.Implementation{Name: "dev-test", Version: "1"}, nil)
	hc := &http.Client{}
	if key != "" {
		hc.Transport = keyTransport(key)
	}
	s, err := c.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: url, HTTPClient: hc}, nil)
	if err == nil {
		t.Cleanup(func() { s.Close() })
	}
	return s, err
}

type keyTransport string

func (k keyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+string(k))
	return http.DefaultTransport.RoundTrip(r)
}

// freeBase picks a base port below the kernel's ephemeral range (so no
// outgoing connection can take it meanwhile) whose HTTP and Raft ports for
// both BUs are free now.
func freeBase(t *testing.T) int {
	t.Helper()
	for range 100 {
		base := 10000 + rand.IntN(20000)
		free := true
		for _, p := range []int{base, base + 1, base + 100, base + 101, base + 200, base + 201, base + 300, base + 301, base + 400, base + 401, base + 402} {
			addr := fmt.Sprintf("127.0.0.1:%d", p)
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				free = false
				break
			}
			ln.Close()
			pc, err := net.ListenPacket("udp", addr)
			if err != nil {
				free = false
				break
			}
			pc.Close()
		}
		if free {
			return base
		}
	}
	t.Fatal("no free base port found")
	return 0
}
