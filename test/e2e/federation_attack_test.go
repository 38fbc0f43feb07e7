package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/mcpmesh/mcpmesh/federation/assertion"
	"github.com/mcpmesh/mcpmesh/federation/peer"
	"github.com/mcpmesh/mcpmesh/node/audit"
	"github.com/mcpmesh/mcpmesh/node/gateway"
	"github.com/mcpmesh/mcpmesh/node/upstream"
	"github.com/mcpmesh/mcpmesh/test/internal/testcluster"
	"github.com/mcpmesh/mcpmesh/trust/ca"
)

// peerNode is the test process acting as a node of a BU: it holds an
// X509-SVID of spiffe://<td>/mcpmesh/node/<id> issued by the BU's CA, the
// BU's JWT key to mint assertions with, and an HTTP/3 client that trusts
// the target BU's CA, as a real node's federation does.
type peerNode struct {
	id     spiffeid.ID
	minter *assertion.Minter
	client *peer.Client
}

// newPeerNode acts as node id of the BU whose CA is in caDir, calling the
// BU of trust domain target whose CA certificate is targetCA.
func newPeerNode(t *testing.T, caDir, node string, target spiffeid.TrustDomain, targetCA string) *peerNode {
	t.Helper()
	c, err := ca.Load(caDir)
	if err != nil {
		t.Fatal(err)
	}
	id, err := spiffeid.FromPath(c.TrustDomain(), assertion.NodePathPrefix+node)
	if err != nil {
		t.Fatal(err)
	}
	svid, err := c.IssueX509SVID(id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := x509bundle.Load(target, targetCA)
	if err != nil {
		t.Fatal(err)
	}
	kid, signer := c.JWTSigner()
	minter, err := assertion.NewMinter(assertion.MinterConfig{Node: id, KeyID: kid, Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	client, err := peer.NewClient(peer.ClientConfig{SVID: svid, Bundles: bundle})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return &peerNode{id: id, minter: minter, client: client}
}

// mint mints p's assertion of a call of the ledger's lookup for the BU of
// trust domain aud, as hr's node would for agent apikey:attack-test.
func (p *peerNode) mint(t *testing.T, aud spiffeid.TrustDomain, pin spiffeid.ID) string {
	t.Helper()
	tok, err := p.minter.Mint(aud, assertion.Call{Principal: "apikey:attack-test", Tenant: "payroll",
		Tool: ledgerServer + "/lookup", Version: "1.0.0", TargetNode: pin})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// forwardedAnswer is a peer listener's answer to a forwarded request.
type forwardedAnswer struct {
	status int
	body   string
	err    error // no answer
}

func (a forwardedAnswer) String() string {
	if a.err != nil {
		return "no answer: " + a.err.Error()
	}
	return fmt.Sprintf("%d %s", a.status, strings.TrimSpace(a.body))
}

// served reports whether the ledger answered the lookup of q.
func (a forwardedAnswer) served(q string) bool {
	return a.err == nil && a.status == http.StatusOK && strings.Contains(a.body, `"ledger:`+q+`"`) && !strings.Contains(a.body, `"error"`)
}

// lookupBody is a tools/call of the ledger's lookup of q, as hr's node
// forwards it (revision 2026-07-28, exporter's own tool name).
func lookupBody(q string) string {
	return `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"lookup","arguments":{"q":"` + q + `"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"attack","version":"1"}}}}`
}

// forward sends body to the peer listener at addr (a node of trust
// domain td) as a forwarded call of the ledger, with token as its
// assertion when not "".
func (p *peerNode) forward(t *testing.T, td spiffeid.TrustDomain, addr, token, body string) forwardedAnswer {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	req, err := http.NewRequest(http.MethodPost, upstream.FederationPath+ledgerServer, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
		"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "lookup"} {
		req.Header.Set(k, v)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := p.client.Do(ctx, td, addr, req)
	if err != nil {
		return forwardedAnswer{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return forwardedAnswer{status: resp.StatusCode, body: string(b), err: err}
}

// testForwardedAttacks speaks to finance's peer listener as nodes of hr
// (holding hr's CA: what a compromised hr node could do) and of legal,
// a BU the manifest names but relates to no other. A control call with a
// fresh, correct assertion is served; every misuse is refused, and the
// refusals of assertions are on finance's audit record with their reason.
func testForwardedAttacks(t *testing.T, m *mesh) {
	finTD := spiffeid.RequireTrustDomainFromString("finance.example.corp")
	legalTD := spiffeid.RequireTrustDomainFromString("legal.example.corp")
	finCA := filepath.Join(m.fin.CADir, "ca.crt")
	fin1, fin2 := m.fin.Nodes[0], m.fin.Nodes[1]
	addr1 := m.bu("finance").peers[0]
	finNode2, _ := spiffeid.FromPath(finTD, assertion.NodePathPrefix+fin2.ID)
	n1 := newPeerNode(t, m.hr.CADir, "n1", finTD, finCA)
	n2 := newPeerNode(t, m.hr.CADir, "n2", finTD, finCA)

	// Control: what hr's node n1 sends. Served.
	if a := n1.forward(t, finTD, addr1, n1.mint(t, finTD, spiffeid.ID{}), lookupBody("control")); !a.served("control") {
		t.Fatalf("control: a correct forwarded call was not served: %s\nfinance log:\n%s", a, fin1.LogTail(30))
	}

	// Replay: the same assertion twice to the same node.
	tok := n1.mint(t, finTD, spiffeid.ID{})
	if a := n1.forward(t, finTD, addr1, tok, lookupBody("replay-1")); !a.served("replay-1") {
		t.Fatalf("replay: the first use was not served: %s", a)
	}
	cases := []struct {
		name   string
		from   *peerNode
		token  string
		body   string
		status int
		reason string // on finance n1's audit record
	}{
		{"replayed assertion", n1, tok, lookupBody("replay-2"), http.StatusUnauthorized, "replayed"},
		{"audience another BU's gateway", n1, n1.mint(t, legalTD, spiffeid.ID{}), lookupBody("aud"), http.StatusUnauthorized, "audience"},
		{"pinned to another finance node", n1, n1.mint(t, finTD, finNode2), lookupBody("pinned"), http.StatusUnauthorized, "audience"},
		{"issuer is not the mTLS peer", n2, n1.mint(t, finTD, spiffeid.ID{}), lookupBody("peer"), http.StatusUnauthorized, "peer"},
		{"tools/call with no assertion", n1, "", lookupBody("none"), http.StatusUnauthorized, "missing"},
		// serveForwarded refuses a batch before looking at the
		// assertion.
		{"batch", n1, n1.mint(t, finTD, spiffeid.ID{}), "[" + lookupBody("batch") + "]", http.StatusBadRequest, "batch"},
	}
	for _, c := range cases {
		a := c.from.forward(t, finTD, addr1, c.token, c.body)
		if a.err != nil || a.status != c.status || !strings.Contains(a.body, strconv.Itoa(gateway.CodeRefusedByExporter)) || strings.Contains(a.body, "ledger:") {
			t.Errorf("%s: %s; want %d with error -32009 and no answer from the ledger", c.name, a, c.status)
			continue
		}
		t.Logf("%s: refused: %s", c.name, a)
	}

	// A smuggled call: the body's method is read twice (the listener's
	// peek, then the gateway), and must never be a tools/call to one and
	// something else to the other.
	for _, body := range []string{
		strings.Replace(lookupBody("smuggled-1"), `"method":"tools/call"`, `"method":"ping","method":"tools/call"`, 1),
		strings.Replace(lookupBody("smuggled-2"), `"method":"tools/call"`, `"method":"ping","Method":"tools/call"`, 1),
		strings.Replace(lookupBody("smuggled-3"), `"method":"tools/call"`, `"METHOD":"tools/call"`, 1),
	} {
		if a := n1.forward(t, finTD, addr1, "", body); a.err != nil || strings.Contains(a.body, "ledger:") {
			t.Errorf("a forwarded tools/call without an assertion, disguised as %s, was answered by the ledger: %s", body[:60], a)
		} else {
			t.Logf("smuggled call refused: %s", a)
		}
	}

	// Finance's audit names each refused assertion and why.
	var refusals []audit.Record
	for _, r := range auditRecords(t, m.fin, fin1, "auth", false) {
		if r.Outcome == audit.OutcomeRefused && r.AuthMethod == "federation" {
			refusals = append(refusals, r)
		}
	}
	for _, c := range cases {
		want, target := "federation assertion "+c.reason+":", ledgerServer+"/lookup"
		if c.reason == "batch" {
			want, target = "batch:", ledgerServer
		}
		found := false
		for _, r := range refusals {
			if strings.HasPrefix(r.Reason, want) && r.Principal == c.from.id.String() && r.Target == target {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no audit record on finance %s with reason %q from %s; refusals: %+v", c.name, fin1.ID, want, c.from.id, refusals)
		}
	}

	// legal is in the manifest but related to no BU: finance refuses its
	// node at the TLS handshake (its bundle is not in finance's set).
	before := handshakeFailures(t, fin1, peer.ReasonUntrustedTrustDomain)
	legal := newPeerNode(t, m.bu("legal").caDir, "n1", finTD, finCA)
	if a := legal.forward(t, finTD, addr1, legal.mint(t, finTD, spiffeid.ID{}), lookupBody("legal")); a.err == nil {
		t.Errorf("legal's node got an answer from finance: %s", a)
	} else if !strings.Contains(a.err.Error(), "refused this node's certificate") {
		t.Errorf("legal's node: %v; want finance to refuse its certificate", a.err)
	} else {
		t.Logf("legal refused: %v", a.err)
	}
	var after int
	if !testcluster.Eventually(5*time.Second, func() bool {
		after = handshakeFailures(t, fin1, peer.ReasonUntrustedTrustDomain)
		return after > before
	}) {
		t.Errorf("finance counted no %s handshake failure for legal's node (%d before, %d after)", peer.ReasonUntrustedTrustDomain, before, after)
	}

	// The control still works: the refusals were not an artefact of a
	// broken connection or node.
	if a := n1.forward(t, finTD, addr1, n1.mint(t, finTD, spiffeid.ID{}), lookupBody("control-2")); !a.served("control-2") {
		t.Errorf("control after the attacks: %s", a)
	}
}

var handshakeMetric = regexp.MustCompile(`(?m)^mcpmesh_federation_peer_handshake_failures_total\{reason="([a-z_]+)"\} ([0-9.e+]+)$`)

// handshakeFailures reads n's count of peer handshakes refused for reason.
func handshakeFailures(t *testing.T, n *testcluster.Node, reason string) int {
	t.Helper()
	_, body := get(t, n.URL()+"/metrics", "")
	for _, m := range handshakeMetric.FindAllStringSubmatch(body, -1) {
		if m[1] == reason {
			v, _ := strconv.ParseFloat(m[2], 64)
			return int(v)
		}
	}
	t.Fatalf("%s's /metrics has no handshake failure count for %s", n.ID, reason)
	return 0
}
