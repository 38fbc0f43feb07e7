package e2e

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/mcpmesh/mcpmesh/node/audit"
	"github.com/mcpmesh/mcpmesh/node/gateway"
	"github.com/mcpmesh/mcpmesh/registry/api"
	"github.com/mcpmesh/mcpmesh/test/internal/testcluster"
)

// ledgerServer is the registry name of the server finance exports to hr.
const ledgerServer = "corp.finance/ledger"

// exportLedger registers finance's ledger at ledgerURL, exporting its
// lookup to hr, and gives hr a tenant, a permissive policy and an API key
// for it, which it returns. It pushes no manifest.
func (m *mesh) exportLedger(t *testing.T, ledgerURL string) string {
	t.Helper()
	return m.export(t, ledgerServer, "lookup", upstreamCard(ledgerServer, "1.0.0", ledgerURL))
}

// export registers server version 1.0.0 (card) in finance, exporting its
// tool to hr, and gives hr a tenant, a permissive policy and an API key
// for it, which it returns. It pushes no manifest.
func (m *mesh) export(t *testing.T, server, tool string, card []byte) string {
	t.Helper()
	fin, hr := running(m.fin), running(m.hr)
	catalog := permitAll(t)
	writeFile(t, catalog, "exports.yaml", []byte("- server: "+server+"\n  tools: ["+tool+"]\n  to:\n    - trust_domain: hr.example.corp\n"))
	mustCLI(t, m.fin, fin, "apply", "-f", catalog)
	mustCLI(t, m.fin, fin, "registry", "submit", "-f", writeCard(t, card))
	mustCLI(t, m.fin, fin, "registry", "approve", server+"@1.0.0")
	mustCLI(t, m.hr, hr, "tenant", "add", "payroll", "-owner", "alice@corp.example")
	mustCLI(t, m.hr, hr, "apply", "-f", permitAll(t))
	return createKey(t, m.hr, hr, "payroll", "e2e agent").Secret
}

// running returns c's first running node.
func running(c *testcluster.Cluster) *testcluster.Node {
	for _, n := range c.Nodes {
		if n.Running() {
			return n
		}
	}
	return c.Nodes[0]
}

// listTools returns the names of the tools n's /mcp lists to the agent
// holding key.
func listTools(t *testing.T, n *testcluster.Node, key string) ([]string, error) {
	t.Helper()
	s, err := tryConnect(t, n.URL()+"/mcp", "2026-07-28", key)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	res, err := s.ListTools(ctx, nil)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, tool := range res.Tools {
		names = append(names, tool.Name)
	}
	return names, nil
}

// waitListed waits up to timeout for n to list tool to the agent holding
// key, and fails the test with what n last listed if it does not.
func waitListed(t *testing.T, c *testcluster.Cluster, n *testcluster.Node, key, tool string, timeout time.Duration) {
	t.Helper()
	var names []string
	var last error
	if !testcluster.Eventually(timeout, func() bool {
		names, last = listTools(t, n, key)
		return slices.Contains(names, tool)
	}) {
		out, _ := c.CLI(n, "peers")
		t.Fatalf("%s never listed %s within %s: tools %v (%v)\npeers:\n%s\nlog:\n%s", n.ID, tool, timeout, names, last, out, n.LogTail(40))
	}
}

// callTool calls tool at n's /mcp as the agent holding key, in a session of
// its own, bounded by timeout, and returns the first text of the answer.
// A tool error is returned as an error.
func callTool(t *testing.T, n *testcluster.Node, key, tool, q string, timeout time.Duration) (string, error) {
	t.Helper()
	text, _, err := callToolRID(t, n, key, tool, q, timeout)
	return text, err
}

// callToolRID is callTool that also returns the request id the node
// recorded the call under.
func callToolRID(t *testing.T, n *testcluster.Node, key, tool, q string, timeout time.Duration) (text, rid string, err error) {
	t.Helper()
	s, err := tryConnect(t, n.URL()+"/mcp", "2026-07-28", key)
	if err != nil {
		return "", "", err
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	res, err := s.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: map[string]any{"q": q}})
	if err != nil {
		return "", "", err
	}
	rid, _ = res.Meta[gateway.MetaRequestID].(string)
	if len(res.Content) > 0 {
		if tc, ok := res.Content[0].(*mcp.TextContent); ok {
			text = tc.Text
		}
	}
	if res.IsError {
		return "", rid, fmt.Errorf("tool error: %s", text)
	}
	return text, rid, nil
}

// servedBy waits (bounded) for a running node of c to record the call of
// request id rid as served, and returns that node's id, or "" with the
// nodes' last records when none did within 10s.
func servedBy(t *testing.T, c *testcluster.Cluster, rid string) (string, error) {
	t.Helper()
	var node string
	if testcluster.Eventually(10*time.Second, func() bool {
		for _, n := range c.Nodes {
			if !n.Running() {
				continue
			}
			for _, r := range auditRecords(t, c, n, "call", false) {
				if r.RequestID == rid && r.Outcome == audit.OutcomeOK {
					node = n.ID
					return true
				}
			}
		}
		return false
	}) {
		return node, nil
	}
	return "", fmt.Errorf("no running node recorded request %s as served within 10s", rid)
}

// rpcCode returns the JSON-RPC error code of err, or 0.
func rpcCode(err error) int64 {
	var je *jsonrpc.Error
	if errors.As(err, &je) {
		return je.Code
	}
	return 0
}

// auditRecords returns n's audit records (its own log, or with all the
// BU's) of the given kind.
func auditRecords(t *testing.T, c *testcluster.Cluster, n *testcluster.Node, kind string, all bool) []audit.Record {
	t.Helper()
	args := []string{"audit", "query", "-kind", kind, "-limit", "1000", "-o", "json"}
	if all {
		args = append(args, "-all")
	}
	return decode[api.AuditRecords](t, "audit query", mustCLI(t, c, n, args...)).Records
}

// TestMeshCall runs two BUs of three nodes each. An agent of hr calls the
// tool finance exports to it through each hr node, and both BUs record
// every call under one request id. Then, on the same mesh: forged and
// misused forwarded calls from a node of hr (the test process holding
// hr's CA) and of an unrelated BU are refused by finance; finance's leader
// is killed and hr's imports stay listed and its calls served by the
// other finance nodes; last, central security revokes hr and its calls
// stop (timed).
func TestMeshCall(t *testing.T) {
	t.Parallel()
	ledger := startUpstream(t, "ledger")
	m := startMeshWith(t, meshOptions{Nodes: 3, Listed: []string{"legal"}})
	key := m.exportLedger(t, ledger.URL)
	m.push(t, "hr>finance")

	start := time.Now()
	for _, n := range m.hr.Nodes {
		waitListed(t, m.hr, n, key, "finance.lookup", 60*time.Second)
	}
	t.Logf("every hr node listed finance.lookup %v after the manifest push", time.Since(start).Round(time.Millisecond))

	for _, n := range m.hr.Nodes {
		got, err := callTool(t, n, key, "finance.lookup", "via-"+n.ID, 30*time.Second)
		if err != nil || got != "ledger:via-"+n.ID {
			t.Fatalf("cross-BU call through hr %s = %q, %v\nhr log:\n%s", n.ID, got, err, n.LogTail(30))
		}
	}

	// Each hr node recorded its call; finance recorded each under the
	// same request id, as hr's caller, on whichever node served it.
	var problems []string
	if !testcluster.Eventually(10*time.Second, func() bool {
		problems = problems[:0]
		finByID := map[string]audit.Record{}
		for _, r := range auditRecords(t, m.fin, running(m.fin), "call", true) {
			finByID[r.RequestID] = r
		}
		for _, n := range m.hr.Nodes {
			var matched []string
			for _, r := range auditRecords(t, m.hr, n, "call", false) {
				if r.CalledAs != "finance.lookup" || r.Outcome != audit.OutcomeOK {
					continue
				}
				fr, ok := finByID[r.RequestID]
				if !ok || fr.Outcome != audit.OutcomeOK || !strings.HasPrefix(fr.Principal, "hr.example.corp/") {
					problems = append(problems, fmt.Sprintf("hr %s's record %s has no matching finance record: %+v", n.ID, r.RequestID, fr))
					continue
				}
				matched = append(matched, fmt.Sprintf("%s by finance %s as %s", r.RequestID, fr.Node, fr.Principal))
			}
			if len(matched) != 1 {
				problems = append(problems, fmt.Sprintf("hr %s: %d cross-BU calls on both BUs' records %v; want 1", n.ID, len(matched), matched))
			} else {
				t.Logf("hr %s's call %s", n.ID, matched[0])
			}
		}
		return len(problems) == 0
	}) {
		t.Errorf("the audits of hr and finance disagree after 10s:\n%s", strings.Join(problems, "\n"))
	}

	t.Run("ForwardedAttacks", func(t *testing.T) { testForwardedAttacks(t, m) })
	t.Run("FinanceLeaderKilled", func(t *testing.T) { testFinanceLeaderKilled(t, m, key) })
	t.Run("Revocation", func(t *testing.T) { testRevocation(t, m, key) })
}

// testFinanceLeaderKilled SIGKILLs finance's leader, after central
// security listed it first in the manifest (so hr calls it first): hr
// keeps listing the imported tool, and its calls fail over to the finance
// nodes left.
func testFinanceLeaderKilled(t *testing.T, m *mesh, key string) {
	leader := m.fin.Leader(30 * time.Second)
	m.bu("finance").first = leader.ID
	m.push(t, "hr>finance")
	// Every hr node calls the leader first once it applied the manifest.
	for _, n := range m.hr.Nodes {
		var last string
		if !testcluster.Eventually(20*time.Second, func() bool {
			got, rid, err := callToolRID(t, n, key, "finance.lookup", "to-leader", 30*time.Second)
			if err != nil || got != "ledger:to-leader" {
				last = fmt.Sprintf("%q, %v", got, err)
				return false
			}
			by, err := servedBy(t, m.fin, rid)
			last = fmt.Sprintf("served by %q %v", by, err)
			return by == leader.ID
		}) {
			t.Fatalf("hr %s does not call finance's leader %s first after the manifest listed it first: %s\nhr %s's federation log:\n%s", n.ID, leader.ID, last, n.ID, grepLines(n.Log(), "federation"))
		}
	}
	leader.Kill()
	t.Logf("killed finance's leader %s, listed first in the manifest", leader.ID)

	for _, n := range m.hr.Nodes {
		start := time.Now()
		got, rid, err := callToolRID(t, n, key, "finance.lookup", "after-kill-"+n.ID, 60*time.Second)
		took := time.Since(start)
		if err != nil || got != "ledger:after-kill-"+n.ID {
			t.Fatalf("call through hr %s after finance's leader was killed = %q, %v (after %v)\nhr log:\n%s", n.ID, got, err, took, n.LogTail(30))
		}
		by, err := servedBy(t, m.fin, rid)
		if err != nil {
			t.Errorf("call through hr %s after the kill: %v", n.ID, err)
		}
		t.Logf("first call through hr %s after the kill took %v, served by finance %s", n.ID, took.Round(time.Millisecond), by)
	}
	start := time.Now()
	if got, err := callTool(t, m.hr.Nodes[0], key, "finance.lookup", "again", 30*time.Second); err != nil || got != "ledger:again" {
		t.Errorf("a second call after the kill = %q, %v", got, err)
	}
	t.Logf("a second call through hr n1 after the kill took %v", time.Since(start).Round(time.Millisecond))

	// The imports stay on every hr node (a new finance leader serves
	// the catalog).
	newLeader := m.fin.Leader(30 * time.Second)
	t.Logf("finance elected %s", newLeader.ID)
	for _, n := range m.hr.Nodes {
		names, err := listTools(t, n, key)
		if err != nil || !slices.Contains(names, "finance.lookup") {
			t.Errorf("hr %s no longer lists finance.lookup after finance's leader was killed: %v, %v", n.ID, names, err)
		}
	}
}

// testRevocation pushes a manifest without hr: hr's calls to finance must
// stop, and the imported tools go, within a bounded wait; it logs how long
// each took.
func testRevocation(t *testing.T, m *mesh, key string) {
	hrN := m.hr.Nodes[0]
	if got, err := callTool(t, hrN, key, "finance.lookup", "before-revocation", 30*time.Second); err != nil || got != "ledger:before-revocation" {
		t.Fatalf("call before the revocation = %q, %v", got, err)
	}
	// Finance must refuse hr on its own, not only because hr stops
	// calling: a node of hr (the test process with hr's CA) keeps trying.
	finTD := spiffeid.RequireTrustDomainFromString("finance.example.corp")
	fin := running(m.fin)
	finAddr := m.bu("finance").peers[slices.Index(m.fin.Nodes, fin)]
	hrNode := newPeerNode(t, m.hr.CADir, "n1", finTD, filepath.Join(m.fin.CADir, "ca.crt"))
	if a := hrNode.forward(t, finTD, finAddr, hrNode.mint(t, finTD, spiffeid.ID{}), lookupBody("pre-revocation")); !a.served("pre-revocation") {
		t.Fatalf("hr's node before the revocation: %s", a)
	}
	start := time.Now()
	m.pushTo(t, []string{"finance", "legal"})
	pushed := time.Since(start)
	var refusedAt, goneAt, finRefusedAt time.Duration
	var lastCall, lastList, lastFin string
	ok := testcluster.Eventually(20*time.Second, func() bool {
		if finRefusedAt == 0 {
			a := hrNode.forward(t, finTD, finAddr, hrNode.mint(t, finTD, spiffeid.ID{}), lookupBody("post-revocation"))
			lastFin = a.String()
			if !a.served("post-revocation") {
				finRefusedAt = time.Since(start)
			}
		}
		if refusedAt == 0 {
			got, err := callTool(t, hrN, key, "finance.lookup", "after-revocation", 10*time.Second)
			if err == nil {
				lastCall = "answered " + got
			} else {
				lastCall = err.Error()
				refusedAt = time.Since(start)
			}
		}
		if goneAt == 0 {
			names, err := listTools(t, hrN, key)
			lastList = fmt.Sprint(names, err)
			if err == nil && !slices.Contains(names, "finance.lookup") {
				goneAt = time.Since(start)
			}
		}
		return refusedAt != 0 && goneAt != 0 && finRefusedAt != 0
	})
	if !ok {
		t.Fatalf("20s after a manifest without hr was pushed: last call %s; last listing %s; finance answered hr's node %s\nhr log:\n%s\nfinance log:\n%s",
			lastCall, lastList, lastFin, hrN.LogTail(30), fin.LogTail(30))
	}
	t.Logf("revocation (push took %v): hr's calls refused after %v (%s), finance.lookup gone from hr's list after %v, finance refused hr's node after %v (%s)",
		pushed.Round(time.Millisecond), refusedAt.Round(time.Millisecond), lastCall, goneAt.Round(time.Millisecond), finRefusedAt.Round(time.Millisecond), lastFin)
	// Every hr node, not only the one asked first.
	for _, n := range m.hr.Nodes[1:] {
		if got, err := callTool(t, n, key, "finance.lookup", "after-revocation", 10*time.Second); err == nil {
			t.Errorf("hr %s still calls finance after the revocation: %q", n.ID, got)
		}
	}
}
