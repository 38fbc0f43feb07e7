package e2e

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
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
	"github.com/mcpmesh/mcpmesh/trust/spire/spiretest"
)

// mesh is BUs federated by a manifest central security signed, each BU
// a cluster of its own with its own CA: by default hr and finance, one
// node each.
type mesh struct {
	dir        string
	opts       meshOptions
	bus        []*meshBU
	hr, fin    *testcluster.Cluster
	centralKey string
	keyring    string
	// hrPeer, finPeer, hrCA and finCA are hr's and finance's first peer
	// address and CA certificate.
	hrPeer, finPeer  string
	hrCA, finCA      []byte
	manifestVersions int
	// finGossip is finance's first node's gossip address.
	finGossip string
}

// meshOptions shape a mesh.
type meshOptions struct {
	// Nodes is the number of nodes of each BU. Default 1.
	Nodes int
	// BUs are the namespaces that run nodes, each in trust domain
	// <ns>.example.corp. Default hr and finance.
	BUs []string
	// Listed are namespaces the manifest names, with a CA of their own,
	// but no nodes (the test process may act as one of their nodes).
	Listed []string
	// Place, when set, returns the host BU ns's nodes bind their peer and
	// gossip listeners on (default 127.0.0.1), and may change ns's
	// cluster options (Host, Exec).
	Place func(ns string, o *testcluster.Options) string
	// FederationYAML is added to every node's federation section,
	// indented by two spaces (e.g. "  call_timeout: 5s\n").
	FederationYAML string
	// SPIRE are namespaces whose nodes take their identity from a
	// Workload API served in the test process (spiretest), its CA (the
	// BU's, made as for any other) standing in for SPIRE's.
	SPIRE []string
}

// meshBU is one BU of a mesh.
type meshBU struct {
	ns    string
	c     *testcluster.Cluster // nil for a BU with no nodes
	caDir string
	ca    []byte
	peers []string // each node's peer address, in node order
	// gossip is the first node's gossip address.
	gossip string
	// first, when not "", is the node (n1, n2, ...) listed first among
	// the BU's bundle endpoints, the node other BUs call first.
	first string
	// spire is the Workload API of a BU of meshOptions.SPIRE.
	spire *spiretest.Server
}

// td is the BU's trust domain name.
func (b *meshBU) td() string { return b.ns + ".example.corp" }

// startMesh starts hr and finance, one node each, federated (no manifest
// pushed yet).
func startMesh(t *testing.T) *mesh {
	t.Helper()
	return startMeshWith(t, meshOptions{})
}

// startMeshWith starts the BUs of o, their nodes in one gossip pool, and
// waits until every node is ready. It pushes no manifest.
func startMeshWith(t *testing.T, o meshOptions) *mesh {
	t.Helper()
	if o.Nodes == 0 {
		o.Nodes = 1
	}
	if len(o.BUs) == 0 {
		o.BUs = []string{"hr", "finance"}
	}
	m := &mesh{dir: t.TempDir(), opts: o}
	bin := testcluster.Bin(t)
	central := filepath.Join(m.dir, "central")
	if out, err := runBin(bin, "trust", "manifest", "keygen", "-out", central); err != nil {
		t.Fatalf("manifest keygen: %v: %s", err, out)
	}
	m.centralKey = filepath.Join(central, "central.key")
	key := make([]byte, 32)
	rand.Read(key)
	m.keyring = writeFile(t, m.dir, "gossip.keys", []byte(base64.StdEncoding.EncodeToString(key)+"\n"))
	// The first BU's first node joins no one; every other node joins it.
	var join string
	for _, ns := range o.BUs {
		copts := testcluster.Options{Nodes: o.Nodes, NoSync: true, Namespace: ns}
		host := "127.0.0.1"
		if o.Place != nil {
			host = o.Place(ns, &copts)
		}
		b := &meshBU{ns: ns}
		gossip := map[string]string{}
		for i := 1; i <= o.Nodes; i++ {
			b.peers = append(b.peers, onHost(host, testcluster.StablePort(t)))
			gossip[fmt.Sprintf("n%d", i)] = onHost(host, testcluster.StablePort(t))
		}
		first := join == ""
		if first {
			join = gossip["n1"]
		}
		b.gossip = gossip["n1"]
		copts.NodeYAML = func(id string) string {
			var i int
			fmt.Sscanf(id, "n%d", &i)
			joins := fmt.Sprintf("%q", join)
			if first && id == "n1" {
				joins = ""
			}
			return fmt.Sprintf("federation:\n  mesh: e2e\n  manifest_key_file: %q\n  peer:\n    listen: %q\n  gossip:\n    listen: %q\n    join: [%s]\n    keyring_file: %q\n%s",
				filepath.Join(central, "central.pub"), b.peers[i-1], gossip[id], joins, m.keyring, o.FederationYAML)
		}
		if slices.Contains(o.SPIRE, ns) {
			b.c, b.spire = startSPIRECluster(t, copts)
		} else {
			b.c = startCluster(t, copts)
		}
		b.caDir = b.c.CADir
		m.bus = append(m.bus, b)
	}
	for _, ns := range o.Listed {
		dir := filepath.Join(m.dir, "ca-"+ns)
		if out, err := runBin(bin, "trust", "init", "-trust-domain", ns+".example.corp", "-out", dir); err != nil {
			t.Fatalf("trust init %s: %v: %s", ns, err, out)
		}
		m.bus = append(m.bus, &meshBU{ns: ns, caDir: dir, peers: []string{testcluster.FreePort(t)}})
	}
	for _, b := range m.bus {
		var err error
		if b.ca, err = os.ReadFile(filepath.Join(b.caDir, "ca.crt")); err != nil {
			t.Fatal(err)
		}
	}
	if hr := m.bu("hr"); hr != nil && hr.c != nil {
		m.hr, m.hrPeer, m.hrCA = hr.c, hr.peers[0], hr.ca
	}
	if fin := m.bu("finance"); fin != nil && fin.c != nil {
		m.fin, m.finPeer, m.finCA, m.finGossip = fin.c, fin.peers[0], fin.ca, fin.gossip
	}
	return m
}

// onHost returns addr's port on host.
func onHost(host, addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return net.JoinHostPort(host, port)
}

// bu returns the mesh's BU of namespace ns, or nil.
func (m *mesh) bu(ns string) *meshBU {
	for _, b := range m.bus {
		if b.ns == ns {
			return b
		}
	}
	return nil
}

func runBin(bin string, args ...string) (string, error) {
	out, err := exec.Command(bin, args...).CombinedOutput()
	return string(out), err
}

// push signs a manifest with the given relationships (as "from>to" trust
// domain prefixes) under the next version and pushes it to every BU with
// nodes. It names every BU of the mesh, each node's peer address a bundle
// endpoint.
func (m *mesh) push(t *testing.T, relationships ...string) {
	t.Helper()
	m.pushTo(t, nil, relationships...)
}

// pushTo is push with the manifest's trust domains limited to those of
// the namespaces named (all when nil): a BU left out is revoked.
func (m *mesh) pushTo(t *testing.T, only []string, relationships ...string) {
	t.Helper()
	jws := m.signOnly(t, only, relationships...)
	for _, b := range m.bus {
		if b.c != nil {
			mustCLI(t, b.c, running(b.c), "trust", "manifest", "push", "-f", jws)
		}
	}
}

// sign signs a manifest naming every BU with the given relationships
// under the next version, and returns the file of its signed form.
func (m *mesh) sign(t *testing.T, relationships ...string) string {
	t.Helper()
	return m.signOnly(t, nil, relationships...)
}

// signOnly is sign with the manifest's trust domains limited to those of
// the namespaces named (all when nil).
func (m *mesh) signOnly(t *testing.T, only []string, relationships ...string) string {
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
	doc := fmt.Sprintf("version: %d\nexpires: %s\ntrust_domains:\n", m.manifestVersions, time.Now().Add(24*time.Hour).UTC().Format(time.RFC3339))
	for _, b := range m.bus {
		if only != nil && !slices.Contains(only, b.ns) {
			continue
		}
		doc += fmt.Sprintf("  - trust_domain: %s\n    namespace: %s\n    bundle_endpoints:\n", b.td(), b.ns)
		var rest string
		for i, p := range b.peers {
			ep := fmt.Sprintf("      - url: https://%s\n        spiffe_id: spiffe://%s/mcpmesh/node/n%d\n", p, b.td(), i+1)
			if fmt.Sprintf("n%d", i+1) == b.first {
				doc += ep
			} else {
				rest += ep
			}
		}
		doc += rest
		doc += fmt.Sprintf("    bootstrap_bundle: |\n%s\n", indent(b.ca))
	}
	doc += rels
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

	key := m.exportLedger(t, ledger.URL)
	mustCLI(t, m.fin, finN, "registry", "submit", "-f", writeCard(t, upstreamCard("corp.finance/secret", "1.0.0", secret.URL)))
	mustCLI(t, m.fin, finN, "registry", "approve", "corp.finance/secret@1.0.0")
	m.push(t, "hr>finance")

	waitListed(t, m.hr, hrN, key, "finance.lookup", 60*time.Second)
	names, err := listTools(t, hrN, key)
	if err != nil {
		t.Fatal(err)
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
