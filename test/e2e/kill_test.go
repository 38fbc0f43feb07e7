package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpmesh/mcpmesh/registry/api"
	"github.com/mcpmesh/mcpmesh/registry/state"
	"github.com/mcpmesh/mcpmesh/test/internal/testcluster"
)

// codeKilled is the gateway's JSON-RPC code for a request a kill switch
// refuses.
const codeKilled = -32012

// TestKillSwitch: `mcpmesh kill` through one node stops a server on every
// replica within about a second, callers are told what is killed and why,
// `mcpmesh revive` restores it everywhere, and a killed agent or tenant
// stops only its own callers.
func TestKillSwitch(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, "directory")
	c := startCluster(t, testcluster.Options{NoSync: true})
	leader := c.Leader(leaderTimeout)
	followers := c.Followers(leader)
	f := followers[0]
	mustCLI(t, c, f, "tenant", "add", "payroll", "-owner", "alice@corp.example")
	mustCLI(t, c, f, "tenant", "add", "benefits", "-owner", "bob@corp.example")
	mustCLI(t, c, f, "apply", "-f", permitAll(t))
	mustCLI(t, c, f, "registry", "submit", "-f", writeCard(t, upstreamCard("corp.hr/directory", "1.0.0", up.URL)))
	mustCLI(t, c, f, "registry", "approve", "corp.hr/directory@1.0.0")
	staff := createKey(t, c, f, "payroll", "staff")
	exporter := createKey(t, c, f, "payroll", "exporter")
	benefits := createKey(t, c, f, "benefits", "benefits")

	// One 2026-07-28 session per node and agent; each call is one POST.
	sessions := map[string]*mcp.ClientSession{}
	session := func(n *testcluster.Node, key string) *mcp.ClientSession {
		if s, ok := sessions[n.ID+key]; ok {
			return s
		}
		s := mcpConnectAs(t, n.URL()+"/mcp", "2026-07-28", key)
		sessions[n.ID+key] = s
		return s
	}
	call := func(n *testcluster.Node, key string) error {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		_, err := session(n, key).CallTool(ctx, &mcp.CallToolParams{Name: "hr.lookup", Arguments: map[string]any{"q": "x"}})
		return err
	}
	killedWith := func(err error, want string) bool {
		var je *jsonrpc.Error
		return errors.As(err, &je) && je.Code == codeKilled && strings.Contains(je.Message, want)
	}
	// waitAll polls every node until ok holds for key's call there, and
	// returns how long after start each node first did.
	waitAll := func(what, key string, start time.Time, ok func(error) bool) map[string]time.Duration {
		t.Helper()
		seen := map[string]time.Duration{}
		last := map[string]error{}
		testcluster.Eventually(10*time.Second, func() bool {
			for _, n := range c.Nodes {
				if _, done := seen[n.ID]; done {
					continue
				}
				err := call(n, key)
				if ok(err) {
					seen[n.ID] = time.Since(start)
				}
				last[n.ID] = err
			}
			return len(seen) == len(c.Nodes)
		})
		for _, n := range c.Nodes {
			if _, done := seen[n.ID]; !done {
				t.Fatalf("%s: %s: not seen within 10s; last call answered: %v", n.ID, what, last[n.ID])
			}
		}
		return seen
	}
	for _, key := range []string{staff.Secret, exporter.Secret, benefits.Secret} {
		waitAll("the call succeeds", key, time.Now(), func(err error) bool { return err == nil })
	}

	// Kill the server through a follower's CLI; measure until the last
	// replica refuses.
	const reason = "incident 4411: wrong balances"
	want := `killed: server corp.hr/directory: "` + reason + `" (by token:bootstrap at `
	start := time.Now()
	out := mustCLI(t, c, f, "kill", "server", "corp.hr/directory", "-reason", reason)
	cliTook := time.Since(start)
	if !strings.Contains(out, "killed server corp.hr/directory") {
		t.Errorf("kill output: %s", out)
	}
	refused := waitAll("the call is refused as killed", staff.Secret, start, func(err error) bool { return killedWith(err, want) })
	var slowest time.Duration
	for _, n := range c.Nodes {
		slowest = max(slowest, refused[n.ID])
		t.Logf("%s refuses calls of the killed server %s after the kill command started", n.ID, refused[n.ID].Round(time.Millisecond))
	}
	t.Logf("kill propagation: the last of %d replicas refused %s after the kill command started (the command itself took %s)",
		len(c.Nodes), slowest.Round(time.Millisecond), cliTook.Round(time.Millisecond))
	for _, n := range c.Nodes {
		if err := call(n, benefits.Secret); !killedWith(err, want) {
			t.Errorf("%s: another tenant's call of the killed server: err = %v", n.ID, err)
		}
	}
	// Every replica audited its refusals, and the node that took the
	// command audited the switch.
	for _, n := range c.Nodes {
		recs := decode[api.AuditRecords](t, "audit query", mustCLI(t, c, n, "audit", "query", "-o", "json", "-outcome", "killed"))
		if len(recs.Records) == 0 || recs.Records[0].Tool != "hr.lookup" {
			t.Errorf("%s: audit records of killed calls = %+v", n.ID, recs.Records)
		}
	}
	if admin := mustCLI(t, c, f, "audit", "query", "-o", "json", "-kind", "admin"); !strings.Contains(admin, `"kill.server"`) || !strings.Contains(admin, reason) {
		t.Errorf("the kill switch is not in the audit log of the node that took it: %s", admin)
	}
	ks := decode[[]state.Kill](t, "kill -list", mustCLI(t, c, c.Nodes[2], "kill", "-list", "-consistent", "-o", "json"))
	if len(ks) != 1 || ks[0].Kind != state.KillServer || ks[0].Name != "corp.hr/directory" || ks[0].Reason != reason || ks[0].By != "token:bootstrap" {
		t.Errorf("kill -list = %+v", ks)
	}
	if code, body := get(t, f.URL()+"/metrics", ""); code != http.StatusOK ||
		!strings.Contains(body, `mcpmesh_kill_refusals_total{kind="server",namespace="hr"}`) || !strings.Contains(body, `mcpmesh_kill_switches{kind="server"} 1`) {
		t.Errorf("/metrics of %s lacks the kill switch's gauge or refusals (HTTP %d)", f.ID, code)
	}

	// Revive through another node: every replica serves again.
	start = time.Now()
	mustCLI(t, c, followers[1], "revive", "server", "corp.hr/directory")
	back := waitAll("the call succeeds after revive", staff.Secret, start, func(err error) bool { return err == nil })
	t.Logf("revive: the last replica served again %s after the revive command started", maxOf(back).Round(time.Millisecond))
	out, code := c.CLI(leader, "revive", "server", "corp.hr/directory")
	wantFailure(t, "revive of a server not killed", out, code, 1, "server corp.hr/directory is not killed")
	out, code = c.CLI(leader, "kill", "tool", "hr.lookup", "-reason", "x")
	wantFailure(t, "kill by the /mcp tool name", out, code, 1, "<server>/<tool>", "corp.finance/ledger/transfer_funds")

	// A killed agent stops that agent only; a killed tenant its agents only.
	for _, tc := range []struct {
		kind, name string
		stopped    []string
		unaffected []string
	}{
		{"agent", "apikey:" + staff.Key.ID, []string{staff.Secret}, []string{exporter.Secret, benefits.Secret}},
		{"tenant", "payroll", []string{staff.Secret, exporter.Secret}, []string{benefits.Secret}},
	} {
		want := fmt.Sprintf(`killed: %s %s: "leaked credentials"`, tc.kind, tc.name)
		start := time.Now()
		mustCLI(t, c, leader, "kill", tc.kind, tc.name, "-reason", "leaked credentials")
		for _, key := range tc.stopped {
			waitAll(tc.kind+" "+tc.name+" is refused", key, start, func(err error) bool { return killedWith(err, want) })
		}
		for _, key := range tc.unaffected {
			for _, n := range c.Nodes {
				if err := call(n, key); err != nil {
					t.Errorf("%s: with %s %s killed, an unaffected agent's call failed: %v", n.ID, tc.kind, tc.name, err)
				}
			}
		}
		mustCLI(t, c, f, "revive", tc.kind, tc.name)
		for _, key := range tc.stopped {
			waitAll(tc.kind+" "+tc.name+" is served after revive", key, time.Now(), func(err error) bool { return err == nil })
		}
	}

	// The nodes' logs record the switches, who pulled them and the refusals.
	var logs string
	for _, n := range c.Nodes {
		logs += n.Log()
	}
	for _, line := range []string{"admin pulled a kill switch", "admin revived a kill switch", "kill switch: refused", "gateway: kill switch in force"} {
		if !strings.Contains(logs, line) {
			t.Errorf("no node logged %q", line)
		}
	}
}

func maxOf(m map[string]time.Duration) time.Duration {
	var d time.Duration
	for _, v := range m {
		d = max(d, v)
	}
	return d
}
