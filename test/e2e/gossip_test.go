package e2e

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpmesh/mcpmesh/federation/gossip"
	"github.com/mcpmesh/mcpmesh/registry/api"
	"github.com/mcpmesh/mcpmesh/test/internal/testcluster"
)

// TestMeshGossip: hr joins the gossip pool through finance's node and
// verifies it over mTLS before believing its claims; a manifest pushed to
// finance alone reaches hr because finance advertises its version; and
// forged advertisements — a member claiming finance's trust domain whose
// peer listener is another BU's node, and one claiming a trust domain the
// manifest does not give its namespace — are refused: hr keeps its
// manifest and its cross-BU calls keep working.
func TestMeshGossip(t *testing.T) {
	t.Parallel()
	ledger := startUpstream(t, "ledger")
	m := startMesh(t)
	hrN, finN := m.hr.Nodes[0], m.fin.Nodes[0]
	key := m.exportLedger(t, ledger.URL)
	m.push(t, "hr>finance")

	mesh := func() api.MeshResponse {
		out, code := m.hr.CLI(hrN, "members", "-wan", "-o", "json")
		if code != 0 {
			t.Logf("members -wan: exit %d: %s", code, out)
			return api.MeshResponse{}
		}
		return decode[api.MeshResponse](t, "members -wan", out)
	}
	member := func(r api.MeshResponse, name string) api.MeshMember {
		for _, mm := range r.Members {
			if mm.Name == name {
				return mm
			}
		}
		return api.MeshMember{}
	}
	var last api.MeshResponse
	if !testcluster.Eventually(30*time.Second, func() bool {
		last = mesh()
		return member(last, "finance/n1").Verified
	}) {
		t.Fatalf("hr never verified finance's node in gossip: %+v\nhr log:\n%s", last, hrN.LogTail(30))
	}
	if fin := member(last, "finance/n1"); fin.TrustDomain != "finance.example.corp" || fin.PeerAddr != m.finPeer || fin.State != "alive" {
		t.Errorf("finance's member as hr sees it: %+v; want alive, finance.example.corp at %s", fin, m.finPeer)
	}
	if self := member(last, "hr/n1"); !self.Local || self.ManifestVersion != 1 {
		t.Errorf("hr's own member: %+v; want local, manifest version 1", self)
	}

	call := func(q string) error {
		s, err := tryConnect(t, hrN.URL()+"/mcp", "2026-07-28", key)
		if err != nil {
			return err
		}
		res, err := s.CallTool(t.Context(), &mcp.CallToolParams{Name: "finance.lookup", Arguments: map[string]any{"q": q}})
		if err != nil {
			return err
		}
		if res.IsError || res.Content[0].(*mcp.TextContent).Text != "ledger:"+q {
			return fmt.Errorf("answer %+v", res)
		}
		return nil
	}
	var callErr error
	if !testcluster.Eventually(60*time.Second, func() bool { callErr = call("before"); return callErr == nil }) {
		t.Fatalf("cross-BU call never worked: %v\nhr log:\n%s", callErr, hrN.LogTail(30))
	}

	// A manifest pushed to finance alone reaches hr by gossip.
	manifestVersion := func() uint64 {
		out, code := m.hr.CLI(hrN, "trust", "manifest", "show", "-o", "json")
		if code != 0 {
			return 0
		}
		return decode[api.ManifestResponse](t, "manifest show", out).Version
	}
	jws := m.sign(t, "hr>finance")
	start := time.Now()
	mustCLI(t, m.fin, finN, "trust", "manifest", "push", "-f", jws)
	if !testcluster.Eventually(30*time.Second, func() bool { return manifestVersion() == 2 }) {
		t.Fatalf("hr never pulled manifest version 2 that finance advertises (has %d)\nhr log:\n%s", manifestVersion(), hrN.LogTail(30))
	}
	t.Logf("a manifest pushed to finance reached hr by gossip in %s", time.Since(start).Round(time.Millisecond))

	// Forged advertisements, made with the mesh's keyring (an insider,
	// or a stolen key): the gossip layer lets them in; hr must not
	// believe them.
	keys, err := gossip.LoadKeyring(m.keyring)
	if err != nil {
		t.Fatal(err)
	}
	forge := func(node, td, peerAddr string) {
		pool, err := gossip.New(gossip.Config{Bind: "127.0.0.1:0", Join: []string{m.finGossip}, Keyring: keys, Label: "e2e",
			Hint: gossip.Hint{Namespace: "finance", TrustDomain: td, NodeID: node, PeerAddr: peerAddr, Protocols: []string{gossip.PeerProtocol},
				ManifestVersion: 99, CatalogVersion: 1 << 40, CatalogHash: "deadbeef", BundleSequence: 1 << 50}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); pool.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	// finance's trust domain, but the peer listener is hr's own node.
	forge("forged", "finance.example.corp", m.hrPeer)
	// A trust domain the manifest does not give namespace finance.
	forge("unmapped", "hr.example.corp", m.finPeer)
	if !testcluster.Eventually(30*time.Second, func() bool {
		last = mesh()
		f, u := member(last, "finance/forged"), member(last, "finance/unmapped")
		return strings.Contains(f.Refused, "expected in trust domain finance.example.corp") && strings.Contains(u.Refused, "maps to finance.example.corp")
	}) {
		t.Fatalf("hr did not refuse the forged members: %+v\nhr log:\n%s", last, hrN.LogTail(30))
	}
	for _, name := range []string{"finance/forged", "finance/unmapped"} {
		if mm := member(last, name); mm.Verified {
			t.Errorf("%s verified: %+v", name, mm)
		}
	}
	if v := manifestVersion(); v != 2 {
		t.Errorf("hr's manifest version is %d after forged advertisements of 99; want 2", v)
	}
	_, metrics := get(t, hrN.URL()+"/metrics", "")
	for _, result := range []string{"refused", "unmapped", "verified"} {
		re := regexp.MustCompile(`mcpmesh_gossip_claim_checks_total\{[^}]*result="` + result + `"[^}]*\} ([0-9.e+]+)`)
		if mm := re.FindStringSubmatch(metrics); mm == nil || mm[1] == "0" {
			t.Errorf("mcpmesh_gossip_claim_checks_total{result=%q} is %v; want above 0", result, mm)
		}
	}
	if callErr = call("after"); callErr != nil {
		t.Errorf("cross-BU call after the forged advertisements: %v\nhr log:\n%s", callErr, hrN.LogTail(30))
	}
}
