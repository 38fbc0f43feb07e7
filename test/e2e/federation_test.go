package e2e

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpmesh/mcpmesh/registry/api"
	"github.com/mcpmesh/mcpmesh/test/internal/testcluster"
)

// mesh is two BUs, hr and finance, one node each, federated by a manifest
// central security signed: hr may call what finance exports to it.
type mesh struct {
	dir              string
	hr, fin          *testcluster.Cluster
	hrPeer, finPeer  string
	centralKey       string
	hrCA, finCA      []byte
	manifestVersions int
	// keyring is the mesh's gossip keyring file; finGossip finance's
	// gossip address, which hr joins.
	keyring, finGossip string
}

func startMesh(t *testing.T) *mesh {
	t.Helper()
	m := &mesh{dir: t.TempDir(), hrPeer: testcluster.FreePort(t), finPeer: testcluster.FreePort(t)}
	bin := testcluster.Bin(t)
	central := filepath.Join(m.dir, "central")
	if out, err := runBin(bin, "trust", "manifest", "keygen", "-out", central); err != nil {
		t.Fatalf("manifest keygen: %v: %s", err, out)
	}
	m.centralKey = filepath.Join(central, "central.key")
	key := make([]byte, 32)
	rand.Read(key)
	keyring := writeFile(t, m.dir, "gossip.keys", []byte(base64.StdEncoding.EncodeToString(key)+"\n"))
	m.keyring = keyring
	m.finGossip = testcluster.FreePort(t)
	fed := func(peer, gossip, join string) string {
		return fmt.Sprintf("federation:\n  mesh: e2e\n  manifest_key_file: %q\n  peer:\n    listen: %q\n  gossip:\n    listen: %q\n    keyring_file: %q\n    join: [%s]\n",
			filepath.Join(central, "central.pub"), peer, gossip, keyring, join)
	}
	m.hr = startCluster(t, testcluster.Options{Nodes: 1, NoSync: true, Namespace: "hr", ExtraYAML: fed(m.hrPeer, testcluster.FreePort(t), m.finGossip)})
	m.fin = startCluster(t, testcluster.Options{Nodes: 1, NoSync: true, Namespace: "finance", ExtraYAML: fed(m.finPeer, m.finGossip, "")})
	var err error
	if m.hrCA, err = os.ReadFile(filepath.Join(m.hr.CADir, "ca.crt")); err != nil {
		t.Fatal(err)
	}
	if m.finCA, err = os.ReadFile(filepath.Join(m.fin.CADir, "ca.crt")); err != nil {
		t.Fatal(err)
	}
	return m
}

func runBin(bin string, args ...string) (string, error) {
	out, err := exec.Command(bin, args...).CombinedOutput()
	return string(out), err
}

// push signs a manifest with the given relationships (as "from>to" trust
// domain prefixes) under the next version and pushes it to both BUs.
func (m *mesh) push(t *testing.T, relationships ...string) {
	t.Helper()
	jws := m.sign(t, relationships...)
	for _, c := range []*testcluster.Cluster{m.hr, m.fin} {
		mustCLI(t, c, c.Nodes[0], "trust", "manifest", "push", "-f", jws)
	}
}

// sign signs a manifest with the given relationships under the next
// version, and returns the file of its signed form.
func (m *mesh) sign(t *testing.T, relationships ...string) string {
	t.Helper()
	m.manifestVersions++
	indent := func(pem []byte) string {
		return "      " + strings.ReplaceAll(strings.TrimSpace(string(pem)), "\n", "\n      ")
	}
	rels := "relationships: []"
	if len(relationships) > 0 {
		rels = "relationships:"
	}
	for _, r := range relationships {
		from, to, _ := strings.Cut(r, ">")
		rels += fmt.Sprintf("\n  - from: %s.example.corp\n    to: %s.example.corp", from, to)
	}
	doc := fmt.Sprintf(`version: %d
expires: %s
trust_domains:
  - trust_domain: hr.example.corp
    namespace: hr
    bundle_endpoints:
      - url: https://%s
        spiffe_id: spiffe://hr.example.corp/mcpmesh/node/n1
    bootstrap_bundle: |
%s
  - trust_domain: finance.example.corp
    namespace: finance
    bundle_endpoints:
      - url: https://%s
        spiffe_id: spiffe://finance.example.corp/mcpmesh/node/n1
    bootstrap_bundle: |
%s
%s`, m.manifestVersions, time.Now().Add(24*time.Hour).UTC().Format(time.RFC3339), m.hrPeer, indent(m.hrCA), m.finPeer, indent(m.finCA), rels)
	src := writeFile(t, m.dir, fmt.Sprintf("manifest-%d.yaml", m.manifestVersions), []byte(doc+"\n"))
	jws := filepath.Join(m.dir, fmt.Sprintf("manifest-%d.jws", m.manifestVersions))
	if out, err := runBin(testcluster.Bin(t), "trust", "manifest", "sign", "-key", m.centralKey, "-f", src, "-o", jws); err != nil {
		t.Fatalf("manifest sign: %v: %s\n%s", err, out, doc)
	}
	return jws
}

// TestCrossBUCall: an agent of hr lists and calls a tool finance exports to
// hr, through hr's node, over HTTP/3 between the nodes, with the call
// vouched for by hr's node (the agent's credential ends at hr: finance's
// upstream sees only finance's own token) and recorded by both BUs under
// one request id. A tool finance does not export is neither listed nor
// callable; when central security removes the relationship, hr's calls
// stop and the imported tools go.
func TestCrossBUCall(t *testing.T) {
	t.Parallel()
	ledger := startUpstream(t, "ledger")
	secret := startUpstream(t, "secret")
	m := startMesh(t)
	hrN, finN := m.hr.Nodes[0], m.fin.Nodes[0]

	catalog := permitAll(t)
	writeFile(t, catalog, "exports.yaml", []byte("- server: corp.finance/ledger\n  tools: [lookup]\n  to:\n    - trust_domain: hr.example.corp\n"))
	mustCLI(t, m.fin, finN, "apply", "-f", catalog)
	mustCLI(t, m.fin, finN, "registry", "submit", "-f", writeCard(t, upstreamCard("corp.finance/ledger", "1.0.0", ledger.URL)))
	mustCLI(t, m.fin, finN, "registry", "approve", "corp.finance/ledger@1.0.0")
	mustCLI(t, m.fin, finN, "registry", "submit", "-f", writeCard(t, upstreamCard("corp.finance/secret", "1.0.0", secret.URL)))
	mustCLI(t, m.fin, finN, "registry", "approve", "corp.finance/secret@1.0.0")

	mustCLI(t, m.hr, hrN, "tenant", "add", "payroll", "-owner", "alice@corp.example")
	mustCLI(t, m.hr, hrN, "apply", "-f", permitAll(t))
	key := createKey(t, m.hr, hrN, "payroll", "e2e agent").Secret
	m.push(t, "hr>finance")

	var names []string
	imported := testcluster.Eventually(60*time.Second, func() bool {
		s, err := tryConnect(t, hrN.URL()+"/mcp", "2026-07-28", key)
		if err != nil {
			return false
		}
		res, err := s.ListTools(t.Context(), nil)
		if err != nil {
			return false
		}
		names = names[:0]
		for _, tool := range res.Tools {
			names = append(names, tool.Name)
		}
		return slices.Contains(names, "finance.lookup")
	})
	if !imported {
		out, _ := m.hr.CLI(hrN, "peers")
		t.Fatalf("hr never listed finance.lookup: tools %v\npeers:\n%s\nhr log:\n%s\nfinance log:\n%s", names, out, hrN.LogTail(40), finN.LogTail(40))
	}
	if slices.ContainsFunc(names, func(n string) bool { return strings.Contains(n, "secret") }) {
		t.Errorf("hr lists a tool finance does not export: %v", names)
	}

	for _, era := range []string{"2026-07-28", "2025-11-25"} {
		s := mcpConnectAs(t, hrN.URL()+"/mcp", era, key)
		res, err := s.CallTool(t.Context(), &mcp.CallToolParams{Name: "finance.lookup", Arguments: map[string]any{"q": era}})
		if err != nil || res.IsError || res.Content[0].(*mcp.TextContent).Text != "ledger:"+era {
			t.Fatalf("%s: cross-BU call = %+v, %v\nhr log:\n%s\nfinance log:\n%s", era, res, err, hrN.LogTail(30), finN.LogTail(30))
		}
		// Arguments are checked at hr against the imported schema: finance
		// never sees a call that breaks it.
		before := len(ledger.headersSeen())
		res, err = s.CallTool(t.Context(), &mcp.CallToolParams{Name: "finance.lookup", Arguments: map[string]any{"q": 7}})
		if err == nil && !res.IsError {
			t.Errorf("%s: a call breaking the imported schema was answered: %+v", era, res)
		}
		if after := len(ledger.headersSeen()); after != before {
			t.Errorf("%s: the upstream got %d requests for a call refused at hr", era, after-before)
		}
	}

	// The agent's credential ended at hr; finance's upstream got finance's token.
	for _, h := range ledger.headersSeen() {
		if auth := h.Get("Authorization"); strings.Contains(auth, key) || (auth != "" && !strings.HasPrefix(auth, "Bearer ey")) {
			t.Errorf("finance's upstream received %q", auth)
		}
	}

	// Both BUs recorded the call, under one request id; finance names
	// the caller as hr's.
	hrRecs := decode[api.AuditRecords](t, "hr audit", mustCLI(t, m.hr, hrN, "audit", "query", "-kind", "call", "-o", "json"))
	finRecs := decode[api.AuditRecords](t, "finance audit", mustCLI(t, m.fin, finN, "audit", "query", "-kind", "call", "-o", "json"))
	finByID := map[string]string{}
	for _, r := range finRecs.Records {
		finByID[r.RequestID] = r.Principal + " " + string(r.Outcome)
	}
	matched := 0
	for _, r := range hrRecs.Records {
		if r.Outcome != "ok" || !strings.HasPrefix(r.CalledAs, "finance.") {
			continue
		}
		if got, ok := finByID[r.RequestID]; ok && strings.HasPrefix(got, "hr.example.corp/") && strings.HasSuffix(got, " ok") {
			matched++
		} else {
			t.Errorf("hr's record %s (%s) has no matching finance record: %q", r.RequestID, r.CalledAs, got)
		}
	}
	if matched != 2 {
		t.Errorf("%d cross-BU calls on both records; want 2\nhr: %+v\nfinance: %+v", matched, hrRecs.Records, finRecs.Records)
	}

	// Revocation: central security removes the relationship.
	start := time.Now()
	m.push(t)
	var lastErr string
	stopped := testcluster.Eventually(30*time.Second, func() bool {
		s, err := tryConnect(t, hrN.URL()+"/mcp", "2026-07-28", key)
		if err != nil {
			return false
		}
		res, err := s.CallTool(t.Context(), &mcp.CallToolParams{Name: "finance.lookup", Arguments: map[string]any{"q": "after"}})
		if err == nil && !res.IsError {
			lastErr = "answered"
			return false
		}
		lastErr = fmt.Sprint(err)
		return true
	})
	if !stopped {
		t.Fatalf("hr still calls finance after the relationship was removed: %s", lastErr)
	}
	t.Logf("revocation stopped cross-BU calls %v after the push began (%s)", time.Since(start).Round(time.Millisecond), lastErr)
}

// headersSeen returns the headers of every request the upstream received.
func (u *testUpstream) headersSeen() []http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.headers)
}
