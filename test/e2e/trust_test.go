package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/mcpmesh/mcpmesh/registry/api"
	"github.com/mcpmesh/mcpmesh/registry/card"
	"github.com/mcpmesh/mcpmesh/registry/state"
	"github.com/mcpmesh/mcpmesh/test/internal/testcluster"
	"github.com/mcpmesh/mcpmesh/trust/ca"
)

// TestForeignTrustDomainRefused: a node with an SVID of another trust
// domain, configured to join, never becomes a member, and the refusal is
// logged on both ends. A node of the right trust domain joining the same
// way becomes a 4th voter, and `operator remove` takes it out again.
func TestForeignTrustDomainRefused(t *testing.T) {
	t.Parallel()
	c := startCluster(t, testcluster.Options{NoSync: true})
	leader := c.Leader(leaderTimeout)
	member := c.Followers(leader)[0] // joining through a follower must work too
	submit(t, c, leader, "corp.hr/directory", "1.0.0")

	otherCA := c.InitCA("other.example.corp")
	foreign := c.AddNodeWith("f4", member, testcluster.NodeOverrides{TrustDomain: "other.example.corp", CADir: otherCA})
	refusedBefore := strings.Count(member.Log(), "TLS handshake refused")
	foreign.Start()

	// The one fixed observation window of the suite: "never joins" can only
	// be observed for a while. The joiner retries every 0.2-5 s with
	// backoff, so 5 s covers several attempts; members is polled all along
	// so a join that happens and is undone would still be seen.
	deadline := time.Now().Add(5 * time.Second)
	polls := 0
	for time.Now().Before(deadline) {
		m, out, ok := members(t, c, member)
		if !ok {
			t.Fatalf("members on %s failed while the foreign node was knocking: %s", member.ID, out)
		}
		if len(m.Members) != 3 || strings.Contains(describeMembers(m), foreign.ID) {
			t.Fatalf("the foreign-trust-domain node got into the cluster: %s", describeMembers(m))
		}
		polls++
		time.Sleep(500 * time.Millisecond)
	}
	if !foreign.Running() {
		t.Fatalf("the foreign node exited instead of retrying (so the window proved nothing); log tail:\n%s", foreign.LogTail(20))
	}
	t.Logf("members stayed at 3 over %d polls in 5s", polls)

	// The joiner refused the member's hr.example.corp certificate: in TLS
	// 1.3 the client checks the server first, so its own (foreign) SVID
	// never reaches the member, which can only log that the handshake was
	// refused, not the foreign SPIFFE ID.
	if log := foreign.Log(); !strings.Contains(log, "join attempt failed") || !strings.Contains(log, "refused peer spiffe://hr.example.corp/mcpmesh/node/"+member.ID) {
		t.Errorf("the foreign node's log does not record its refused join attempts; tail:\n%s", foreign.LogTail(10))
	}
	if n := strings.Count(member.Log(), "TLS handshake refused"); n <= refusedBefore {
		t.Errorf("%s's log records no refused handshake from the foreign node (%d before, %d after)", member.ID, refusedBefore, n)
	}
	if r, err := foreign.Ready(); err != nil || r.Ready || r.Leader != "" {
		t.Errorf("foreign node /readyz = %+v, %v; want not ready, no leader known", r, err)
	}
	// An operator cannot add it either: the leader checks who answers at
	// the address over mTLS before giving it a vote.
	out, code := c.CLI(member, "operator", "join", "-id", foreign.ID, "-address", foreign.RaftAddr)
	if code != 1 || !strings.Contains(out, "cannot verify node "+foreign.ID) || strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Errorf("operator join of the foreign node: exit %d, output %q; want exit 1 and one line saying it cannot be verified", code, out)
	}
	// Nor can a real member be added under another node's id.
	out, code = c.CLI(member, "operator", "join", "-id", "n7", "-address", member.RaftAddr)
	if code != 1 || !strings.Contains(out, `not "n7"`) {
		t.Errorf("operator join under a wrong id: exit %d, output %q", code, out)
	}
	if m, out, ok := members(t, c, member); !ok || len(m.Members) != 3 {
		t.Errorf("refused operator joins changed the cluster: %s %s", describeMembers(m), out)
	}
	foreign.Kill() // Leader() below asks every running node

	// Positive control: the same join, from a node of hr.example.corp.
	n4 := c.AddNode("n4", member)
	n4.Start()
	n4.WaitReady(readyTimeout)
	ids := []string{"n1", "n2", "n3", "n4"}
	eventuallyMembers(t, c, leader, "n4 as a 4th voter", func(m api.MembersResponse) bool { return healthyVoters(m, ids...) })
	eventuallyShow(t, c, n4, ref("corp.hr/directory", "1.0.0"), func(d api.VersionDetail) bool { return d.State == card.StateSubmitted })

	// operator remove (through a follower, which forwards) takes it out.
	out = mustCLI(t, c, member, "operator", "remove", "-id", "n4", "-o", "json")
	if m := decode[api.MembersResponse](t, "operator remove", out); strings.Contains(describeMembers(m), "n4") {
		t.Errorf("operator remove -id n4 answered a member list that still has n4: %s", describeMembers(m))
	}
	n4.Kill()
	for _, n := range c.Nodes[:3] {
		eventuallyMembers(t, c, n, "the 3 original voters", func(m api.MembersResponse) bool { return healthyVoters(m, ids[:3]...) })
	}
	// Three voters still make progress.
	submit(t, c, member, "corp.hr/directory", "2.0.0")
}

// TestAdminAuth: the admin API refuses missing and wrong credentials;
// health, readiness and metrics are open.
func TestAdminAuth(t *testing.T) {
	t.Parallel()
	c := startCluster(t, testcluster.Options{NoSync: true, Nodes: 1})
	n := c.Nodes[0]
	submit(t, c, n, "corp.hr/directory", "1.0.0") // so raft has applied a command and has metrics

	for _, tc := range []struct{ name, token string }{
		{"no token", ""},
		{"wrong token", "not-the-admin-token-0123456789"},
	} {
		code, body := get(t, n.URL()+"/v1/operator/members", tc.token)
		if code != http.StatusUnauthorized || !strings.Contains(body, `"unauthenticated"`) {
			t.Errorf("%s: GET /v1/operator/members = %d %s; want 401 unauthenticated", tc.name, code, body)
		}
	}

	// The CLI with a wrong token: exit 1, one line.
	wrong := writeFile(t, t.TempDir(), "wrong.token", []byte("not-the-admin-token-0123456789\n"))
	out, code := c.Run("members", "-addr", n.URL(), "-token-file", wrong)
	wantFailure(t, "members with a wrong token", out, code, 1, "unauthenticated", "not accepted")
	// Without any credential the CLI refuses before sending anything: a
	// usage error, exit 2 (main.go's convention), one line saying what to pass.
	out, code = c.Run("members", "-addr", n.URL())
	wantFailure(t, "members without a credential", out, code, 2, "-token-file")

	// Health, readiness and metrics need no credential.
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		if code, body := get(t, n.URL()+p, ""); code != http.StatusOK {
			t.Errorf("GET %s without credentials = %d %s; want 200", p, code, firstLine(body))
		}
	}
	// Raft's own metrics reach /metrics through the go-metrics Prometheus
	// sink (cmd/mcpmesh/cmd_node.go, built with -tags hashicorpmetrics).
	var metrics string
	ok := testcluster.Eventually(catchUp, func() bool {
		_, metrics = get(t, n.URL()+"/metrics", "")
		return strings.Contains(metrics, "\nmcpmesh_registry_applied_index{") && strings.Contains(metrics, "\nmcpmesh_raft_")
	})
	if !ok {
		t.Errorf("/metrics lacks mcpmesh_registry_applied_index or any mcpmesh_raft_ metric:\n%s", grepLines(metrics, "mcpmesh_"))
	}
}

// TestAdminSVID: on an HTTPS node, an admin SVID authenticates without a
// token and is recorded as the author; an agent SVID is refused.
func TestAdminSVID(t *testing.T) {
	t.Parallel()
	c := testcluster.New(t, testcluster.Options{NoSync: true, Nodes: 1})
	n := c.Nodes[0]
	n.WriteConfigWith(testcluster.NodeOverrides{HTTPTLS: true},
		"bootstrap:\n  expect: 1\n  peers:\n    - { id: n1, address: \""+n.RaftAddr+"\" }\n")
	alice := c.IssueSVID(c.CADir, "spiffe://hr.example.corp/admin/alice")
	bob := c.IssueSVID(c.CADir, "spiffe://hr.example.corp/agent/bob")
	n.Start()
	waitReadyTLS(t, n, alice)

	// alice, with her SVID and no token, is an administrator.
	as := func(dir string, args ...string) (string, int) {
		return c.Run(append(args, "-addr", n.HTTPSURL(), "-svid-dir", dir)...)
	}
	out, code := as(alice, "members", "-o", "json")
	if code != 0 {
		t.Fatalf("members with an admin SVID: exit %d: %s", code, out)
	}
	if m := decode[api.MembersResponse](t, "members", out); len(m.Members) != 1 || m.Members[0].Role != "Leader" {
		t.Errorf("members with an admin SVID = %s; want n1 as leader", describeMembers(m))
	}
	out, code = as(alice, "tenant", "add", "payroll", "-owner", "alice@corp", "-o", "json")
	if code != 0 {
		t.Fatalf("tenant add with an admin SVID: exit %d: %s", code, out)
	}
	if tn := decode[state.Tenant](t, "tenant add", out); tn.CreatedBy != "spiffe://hr.example.corp/admin/alice" {
		t.Errorf("tenant created by %q, want alice's SPIFFE ID", tn.CreatedBy)
	}

	// bob is an agent of the same trust domain, not an administrator.
	out, code = as(bob, "members")
	wantFailure(t, "members with an agent SVID", out, code, 1, "spiffe://hr.example.corp/agent/bob", "not an administrator")
	out, code = as(bob, "tenant", "add", "mallory", "-owner", "bob@corp")
	wantFailure(t, "tenant add with an agent SVID", out, code, 1, "not an administrator")
	out, code = as(alice, "tenant", "list", "-o", "json")
	if code != 0 || strings.Contains(out, "mallory") {
		t.Errorf("after the agent's refused write, tenant list (exit %d) = %s; want no tenant mallory", code, out)
	}
}

// waitReadyTLS polls /readyz of an HTTPS node, trusting the bundle in
// svidDir and accepting only a node SVID of its trust domain.
func waitReadyTLS(t *testing.T, n *testcluster.Node, svidDir string) {
	t.Helper()
	_, bundle, err := ca.LoadSVID(svidDir)
	if err != nil {
		t.Fatal(err)
	}
	td := spiffeid.RequireTrustDomainFromString("hr.example.corp")
	tr := &http.Transport{TLSClientConfig: tlsconfig.TLSClientConfig(bundle, tlsconfig.AuthorizeMemberOf(td))}
	cl := &http.Client{Timeout: 2 * time.Second, Transport: tr}
	defer tr.CloseIdleConnections()
	var last string
	ok := testcluster.Eventually(readyTimeout, func() bool {
		if !n.Running() {
			last = "process exited"
			return false
		}
		resp, err := cl.Get(n.HTTPSURL() + "/readyz")
		if err != nil {
			last = err.Error()
			return false
		}
		resp.Body.Close()
		last = resp.Status
		return resp.StatusCode == http.StatusOK
	})
	if !ok {
		t.Fatalf("HTTPS node %s not ready within %s; last seen: %s; log tail:\n%s", n.ID, readyTimeout, last, n.LogTail(20))
	}
}

// firstLine returns the first line of s.
func firstLine(s string) string {
	first, _, _ := strings.Cut(s, "\n")
	return first
}

// grepLines returns the lines of s that contain substr.
func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
