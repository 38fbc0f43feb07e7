package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
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
// bundle is refused by finance with -32022, and audited.
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
	if a.err != nil || a.status != http.StatusUnauthorized || !strings.Contains(a.body, strconv.Itoa(-32022)) || strings.Contains(a.body, "ledger:") {
		t.Errorf("an assertion whose x5c chain is not hr's: %s; want 401 with error -32022 and no answer from the ledger", a)
	} else {
		t.Logf("rogue x5c refused: %s", a)
	}
	signWith(spireCA)
	if a := p.forward(t, finTD, m.finPeer, p.mint(t, finTD, spiffeid.ID{}), lookupBody("x5c")); !a.served("x5c") {
		t.Errorf("control: an x5c assertion signed with hr's SVID was not served: %s", a)
	}
	found := false
	var refusals []string
	for _, r := range auditRecords(t, m.fin, finN, "auth", false) {
		if r.Outcome == audit.OutcomeRefused && r.AuthMethod == "federation" {
			refusals = append(refusals, r.Reason)
			found = found || (strings.HasPrefix(r.Reason, "federation assertion unknown_key:") && r.Principal == p.id.String())
		}
	}
	if !found {
		t.Errorf("finance has no audit record of the refused rogue assertion; refusals: %q", refusals)
	}
}
