package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/federation"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/mcpmesh/mcpmesh/federation/assertion"
	"github.com/mcpmesh/mcpmesh/node/audit"
	"github.com/mcpmesh/mcpmesh/node/gateway"
	"github.com/mcpmesh/mcpmesh/test/internal/testcluster"
	"github.com/mcpmesh/mcpmesh/trust/ca"
	"github.com/mcpmesh/mcpmesh/trust/spire/spiretest"
)

// startSPIRECluster is startCluster for a BU whose nodes take their
// identity from a Workload API: one served in the test process for every
// node (each picks its own node ID), issuing from the cluster's CA, which
// the nodes' configs do not name.
func startSPIRECluster(t *testing.T, opts testcluster.Options) (*testcluster.Cluster, *spiretest.Server) {
	t.Helper()
	c := testcluster.New(t, opts)
	spireCA, err := ca.Load(c.CADir)
	if err != nil {
		t.Fatal(err)
	}
	td := spireCA.TrustDomain()
	var ids []spiffeid.ID
	var peers strings.Builder
	for _, n := range c.Nodes {
		ids = append(ids, spiffeid.RequireFromPath(td, assertion.NodePathPrefix+n.ID))
		fmt.Fprintf(&peers, "    - { id: %s, address: %q }\n", n.ID, n.RaftAddr)
	}
	srv, err := spiretest.New(spiretest.Config{CA: spireCA, IDs: ids})
	if err != nil {
		t.Fatal(err)
	}
	// The nodes go before their Workload API does.
	t.Cleanup(func() { c.KillAll(); srv.Close() })
	for _, n := range c.Nodes {
		n.WriteConfigWith(testcluster.NodeOverrides{WorkloadAPIAddr: srv.Addr()}, fmt.Sprintf("bootstrap:\n  expect: %d\n  peers:\n%s", len(c.Nodes), peers.String()))
	}
	c.Start()
	c.Leader(leaderTimeout)
	c.WaitAllReady(leaderTimeout)
	return c, srv
}

// servedLeaf returns the certificate the node at peer address addr
// presents on its bundle endpoint (TCP), which must be node id's SVID
// under bundle.
func servedLeaf(addr string, bundle *x509bundle.Bundle, id spiffeid.ID) (*x509.Certificate, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, tlsconfig.TLSClientConfig(bundle, tlsconfig.AuthorizeID(id)))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

// TestCrossBUCallSPIRE: hr's node takes its identity from SPIRE's Workload
// API and holds no CA or JWT key; finance is on its embedded CA. hr's
// bundle endpoint serves SPIRE's X.509 authorities; an agent of hr calls
// the tool finance exports (hr's node signs the assertion with its
// X.509-SVID) and an agent of finance the tool hr exports (hr checks
// finance's usual assertion), each answered and recorded by both BUs
// under one request id. SPIRE rotates hr's SVID and calls go on. An
// assertion signed with an SVID of hr's node that does not chain to hr's
// bundle is refused by finance with the refused-by-exporter error
// (gateway.CodeRefusedByExporter), and audited. Last, SPIRE rotates hr's
// CA (prepare, activate, prune): each bundle change reaches finance, calls
// go on both ways throughout, and an SVID of the retired CA signs for
// nothing.
func TestCrossBUCallSPIRE(t *testing.T) {
	t.Parallel()
	ledger := startUpstream(t, "ledger")
	directory := startUpstream(t, "directory")
	m := startMeshWith(t, meshOptions{SPIRE: []string{"hr"}})
	hrBU := m.bu("hr")
	hrN, finN := m.hr.Nodes[0], m.fin.Nodes[0]
	hrTD := spiffeid.RequireTrustDomainFromString("hr.example.corp")
	finTD := spiffeid.RequireTrustDomainFromString("finance.example.corp")
	hrNode := spiffeid.RequireFromPath(hrTD, assertion.NodePathPrefix+hrN.ID)
	spireBundle, err := x509bundle.Load(hrTD, filepath.Join(m.hr.CADir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}

	key := m.exportLedger(t, ledger.URL)
	// The other direction: hr exports its directory to finance.
	const dirServer = "corp.hr/directory"
	catalog := permitAll(t)
	writeFile(t, catalog, "exports.yaml", []byte("- server: "+dirServer+"\n  tools: [lookup]\n  to:\n    - trust_domain: finance.example.corp\n"))
	mustCLI(t, m.hr, hrN, "apply", "-f", catalog)
	mustCLI(t, m.hr, hrN, "registry", "submit", "-f", writeCard(t, upstreamCard(dirServer, "1.0.0", directory.URL)))
	mustCLI(t, m.hr, hrN, "registry", "approve", dirServer+"@1.0.0")
	mustCLI(t, m.fin, finN, "tenant", "add", "ops", "-owner", "bob@corp.example")
	finKey := createKey(t, m.fin, finN, "ops", "e2e agent").Secret
	m.push(t, "hr>finance", "finance>hr")

	// hr's bundle endpoint serves what SPIRE holds: its X.509 authority,
	// no JWT authority (hr's nodes have none to sign with).
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	served, err := federation.FetchBundle(ctx, hrTD, "https://"+m.hrPeer, federation.WithSPIFFEAuth(spireBundle, hrNode))
	cancel()
	if err != nil {
		t.Fatalf("fetch hr's bundle from its bundle endpoint: %v\nhr log:\n%s", err, hrN.LogTail(30))
	}
	seq, _ := served.SequenceNumber()
	if !served.X509Bundle().Equal(spireBundle) || len(served.JWTAuthorities()) != 0 || seq == 0 {
		t.Errorf("hr's bundle endpoint serves %d X.509 authorities (SPIRE's: %v), %d JWT authorities, sequence %d; want SPIRE's authority only, a sequence",
			len(served.X509Authorities()), served.X509Bundle().Equal(spireBundle), len(served.JWTAuthorities()), seq)
	}

	waitListed(t, m.hr, hrN, key, "finance.lookup", 60*time.Second)
	waitListed(t, m.fin, finN, finKey, "hr.lookup", 60*time.Second)

	// call makes one cross-BU call from the node `from` and checks that
	// both BUs recorded it as served under its request id.
	call := func(name string, from, to *testcluster.Cluster, key, tool, q, want string) {
		t.Helper()
		text, rid, err := callToolRID(t, from.Nodes[0], key, tool, q, 30*time.Second)
		if err != nil || text != want {
			t.Fatalf("%s: %s = %q, %v; want %q\n%s log:\n%s\n%s log:\n%s", name, tool, text, err, want,
				from.Opts.Namespace, from.Nodes[0].LogTail(30), to.Opts.Namespace, to.Nodes[0].LogTail(30))
		}
		if r := auditRecordEventually(t, from, from.Nodes[0], rid); r.Outcome != audit.OutcomeOK {
			t.Errorf("%s: the caller's BU recorded %s as %s (%s)", name, rid, r.Outcome, r.Reason)
		}
		r := auditRecordEventually(t, to, to.Nodes[0], rid)
		if r.Outcome != audit.OutcomeOK || !strings.HasPrefix(r.Principal, from.Opts.TrustDomain+"/") {
			t.Errorf("%s: the exporting BU recorded %s as %s by %q (%s); want ok, by a principal of %s", name, rid, r.Outcome, r.Principal, r.Reason, from.Opts.TrustDomain)
		}
		t.Logf("%s: %s answered %q, request %s on both records", name, tool, text, rid)
	}
	call("hr (SPIRE) to finance", m.hr, m.fin, key, "finance.lookup", "spire-1", "ledger:spire-1")
	call("finance to hr (SPIRE)", m.fin, m.hr, finKey, "hr.lookup", "embedded-1", "directory:embedded-1")

	// SPIRE rotates hr's SVID: once the node holds the new one, its
	// assertions carry it, and finance still answers.
	rotated, err := hrBU.spire.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	var last string
	if !testcluster.Eventually(catchUp, func() bool {
		leaf, err := servedLeaf(m.hrPeer, spireBundle, hrNode)
		if err != nil {
			last = err.Error()
			return false
		}
		last = "serial " + leaf.SerialNumber.Text(16)
		return leaf.Equal(rotated.Certificates[0])
	}) {
		t.Fatalf("hr's node does not present the rotated SVID %x; last: %s", rotated.Certificates[0].SerialNumber, last)
	}
	call("hr to finance after the SVID rotation", m.hr, m.fin, key, "finance.lookup", "spire-2", "ledger:spire-2")
	call("finance to hr after the SVID rotation", m.fin, m.hr, finKey, "hr.lookup", "embedded-2", "directory:embedded-2")

	// The test process acts as hr's node n1, with an mTLS SVID SPIRE
	// issued; an assertion signed with an SVID of the same ID from
	// another CA is refused, one signed with a real SVID is served.
	spireCA, err := ca.Load(m.hr.CADir)
	if err != nil {
		t.Fatal(err)
	}
	rogueCA, err := ca.Init(filepath.Join(t.TempDir(), "rogue"), hrTD)
	if err != nil {
		t.Fatal(err)
	}
	p := newPeerNode(t, m.hr.CADir, hrN.ID, finTD, filepath.Join(m.fin.CADir, "ca.crt"))
	signWith := func(c *ca.CA) {
		t.Helper()
		sv, err := c.IssueX509SVID(p.id, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if p.minter, err = assertion.NewMinter(assertion.MinterConfig{Node: p.id, SVID: sv}); err != nil {
			t.Fatal(err)
		}
	}
	signWith(rogueCA)
	a := p.forward(t, finTD, m.finPeer, p.mint(t, finTD, spiffeid.ID{}), lookupBody("rogue"))
	if a.err != nil || a.status != http.StatusUnauthorized || !strings.Contains(a.body, strconv.Itoa(gateway.CodeRefusedByExporter)) || strings.Contains(a.body, "ledger:") {
		t.Errorf("an assertion whose x5c chain is not hr's: %s; want 401 with error %d and no answer from the ledger", a, gateway.CodeRefusedByExporter)
	} else {
		t.Logf("rogue x5c refused: %s", a)
	}
	signWith(spireCA)
	if a := p.forward(t, finTD, m.finPeer, p.mint(t, finTD, spiffeid.ID{}), lookupBody("x5c")); !a.served("x5c") {
		t.Errorf("control: an x5c assertion signed with hr's SVID was not served: %s", a)
	}
	if n := unknownKeyRefusals(t, m.fin, finN, p.id); n != 1 {
		t.Errorf("finance has %d audit records of the refused rogue assertion; want 1", n)
	}

	// SPIRE rotates hr's CA: prepares the next CA (its root joins the
	// bundle), activates it (SVIDs from it), prunes the old one. Adding
	// and pruning each raise the sequence of the bundle hr's node serves,
	// finance's leader stores it (gossip tells it), and calls go on both
	// ways at every step. Then an SVID of the old CA signs for nothing.
	nextDir := filepath.Join(t.TempDir(), "next")
	nextCA, err := ca.Init(nextDir, hrTD, ca.WithClock(func() time.Time { return time.Now().Add(2 * time.Second) }))
	if err != nil {
		t.Fatal(err)
	}
	seq = bundleSequence(t, finN, hrTD.Name())
	rose := func(name string) {
		t.Helper()
		start, got := time.Now(), uint64(0)
		if !testcluster.Eventually(45*time.Second, func() bool { got = bundleSequence(t, finN, hrTD.Name()); return got > seq }) {
			t.Fatalf("%s: finance still holds hr's bundle of sequence %d\nhr log:\n%s\nfinance log:\n%s", name, got, hrN.LogTail(20), finN.LogTail(20))
		}
		t.Logf("%s: finance stored hr's bundle of sequence %d (was %d) %v after the Workload API's update", name, got, seq, time.Since(start).Round(time.Millisecond))
		seq = got
	}
	if _, err := hrBU.spire.SetCA(spireCA, spireCA, nextCA); err != nil {
		t.Fatal(err)
	}
	rose("next CA prepared")
	call("next CA prepared: hr to finance", m.hr, m.fin, key, "finance.lookup", "prepared", "ledger:prepared")

	activated, err := hrBU.spire.SetCA(nextCA, spireCA, nextCA)
	if err != nil {
		t.Fatal(err)
	}
	both := x509bundle.FromX509Authorities(hrTD, append(spireCA.Bundle().X509Authorities(), nextCA.Bundle().X509Authorities()...))
	if !testcluster.Eventually(catchUp, func() bool {
		leaf, err := servedLeaf(m.hrPeer, both, hrNode)
		if err != nil {
			last = err.Error()
			return false
		}
		last = "serial " + leaf.SerialNumber.Text(16)
		return leaf.Equal(activated.Certificates[0])
	}) {
		t.Fatalf("hr's node does not present its SVID from the next CA; last: %s", last)
	}
	call("next CA active: hr to finance", m.hr, m.fin, key, "finance.lookup", "active", "ledger:active")
	call("next CA active: finance to hr", m.fin, m.hr, finKey, "hr.lookup", "active", "directory:active")

	if _, err := hrBU.spire.SetCA(nextCA, nextCA); err != nil {
		t.Fatal(err)
	}
	rose("old CA pruned")
	call("old CA pruned: hr to finance", m.hr, m.fin, key, "finance.lookup", "pruned", "ledger:pruned")
	call("old CA pruned: finance to hr", m.fin, m.hr, finKey, "hr.lookup", "pruned", "directory:pruned")
	p2 := newPeerNode(t, nextDir, hrN.ID, finTD, filepath.Join(m.fin.CADir, "ca.crt"))
	p = p2
	signWith(spireCA)
	if a := p.forward(t, finTD, m.finPeer, p.mint(t, finTD, spiffeid.ID{}), lookupBody("retired")); a.err != nil || a.status != http.StatusUnauthorized || strings.Contains(a.body, "ledger:") {
		t.Errorf("an assertion signed with an SVID of hr's retired CA: %s; want 401", a)
	}
	if n := unknownKeyRefusals(t, m.fin, finN, p.id); n != 2 {
		t.Errorf("finance has %d audit records of refused x5c chains; want 2 (the rogue CA's, the retired CA's)", n)
	}
}

// unknownKeyRefusals counts n's audit records of forwarded calls from
// node id refused for an unknown key.
func unknownKeyRefusals(t *testing.T, c *testcluster.Cluster, n *testcluster.Node, id spiffeid.ID) int {
	t.Helper()
	count := 0
	for _, r := range auditRecords(t, c, n, "auth", false) {
		if r.Outcome == audit.OutcomeRefused && r.AuthMethod == "federation" && r.Principal == id.String() &&
			strings.HasPrefix(r.Reason, "federation assertion unknown_key:") {
			count++
		}
	}
	return count
}

var sequenceMetric = regexp.MustCompile(`(?m)^mcpmesh_federation_bundle_sequence\{trust_domain="([a-z0-9.-]+)"\} ([0-9.e+]+)$`)

// bundleSequence reads the sequence of trust domain td's bundle in n's
// trusted set, 0 when it has none.
func bundleSequence(t *testing.T, n *testcluster.Node, td string) uint64 {
	t.Helper()
	_, body := get(t, n.URL()+"/metrics", "")
	for _, m := range sequenceMetric.FindAllStringSubmatch(body, -1) {
		if m[1] == td {
			v, _ := strconv.ParseFloat(m[2], 64)
			return uint64(v)
		}
	}
	return 0
}
