package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mcpmesh/mcpmesh/registry/api"
	"github.com/mcpmesh/mcpmesh/registry/card"
	"github.com/mcpmesh/mcpmesh/test/internal/testcluster"
)

// TestFailover: kill -9 the leader; the other two elect a new one and take
// writes; the killed node comes back from its data dir and catches up.
func TestFailover(t *testing.T) {
	t.Parallel()
	c := startCluster(t, testcluster.Options{}) // fsync on: durability matters here
	const name = "corp.hr/ledger"
	old := c.Leader(leaderTimeout)
	submit(t, c, c.Followers(old)[0], name, "1.0.0")

	killedAt := time.Now()
	old.Kill()
	// A write sent at once, while the survivors still look for a leader, is
	// held and retried by the node until one is elected: it succeeds.
	survivor := c.Followers(old)[0]
	submit(t, c, survivor, name, "2.0.0")
	t.Logf("write sent during the election succeeded after %s", time.Since(killedAt).Round(time.Millisecond))
	leader := c.Leader(leaderTimeout)
	if leader == old {
		t.Fatalf("the killed node %s is still reported leader", old.ID)
	}
	t.Logf("new leader %s agreed %s after kill -9 of %s", leader.ID, time.Since(killedAt).Round(time.Millisecond), old.ID)

	// Writes through either survivor (the follower forwards).
	for _, n := range c.Followers(old) {
		mustCLI(t, c, n, "tenant", "add", "t-"+n.ID, "-owner", "ops@corp")
	}
	mustCLI(t, c, leader, "registry", "approve", ref(name, "1.0.0"), "-reason", "approved while "+old.ID+" was down")

	// The killed node restarts from its data dir and catches up with what
	// was written while it was down.
	old.Start()
	old.WaitReady(readyTimeout)
	eventuallyShow(t, c, old, ref(name, "2.0.0"), func(d api.VersionDetail) bool { return d.State == card.StateSubmitted })
	eventuallyShow(t, c, old, ref(name, "1.0.0"), func(d api.VersionDetail) bool { return d.State == card.StateApproved })

	// members, asked on the restarted node, lists 3 reachable voters with
	// one leader.
	var ids []string
	for _, n := range c.Nodes {
		ids = append(ids, n.ID)
	}
	eventuallyMembers(t, c, old, "3 voters with one leader", func(m api.MembersResponse) bool { return healthyVoters(m, ids...) })
	if got := tenants(t, c, old); len(got) != 2 {
		t.Errorf("%s after catching up lists %d tenants, want the 2 added while it was down: %+v", old.ID, len(got), got)
	}

	// Metrics agree: exactly one node reports itself leader.
	var last string
	ok := testcluster.Eventually(catchUp, func() bool {
		leaders := 0
		last = ""
		for _, n := range c.Nodes {
			_, body := get(t, n.URL()+"/metrics", "")
			line := grepLines(body, "mcpmesh_registry_is_leader{")
			last += n.ID + ": " + line + "; "
			if strings.HasSuffix(line, " 1") {
				leaders++
			}
		}
		return leaders == 1
	})
	if !ok {
		t.Errorf("mcpmesh_registry_is_leader is not 1 on exactly one node: %s", last)
	}
}

// TestKillAll: acknowledged writes survive kill -9 of every node at once
// (fsync on), and the cluster comes back by itself.
func TestKillAll(t *testing.T) {
	t.Parallel()
	c := startCluster(t, testcluster.Options{}) // fsync on: durability matters here
	const name = "corp.hr/ledger"
	var want []string
	for i, n := range []*testcluster.Node{c.Nodes[0], c.Nodes[1], c.Nodes[2], c.Nodes[0], c.Nodes[1], c.Nodes[2]} {
		v := fmt.Sprintf("1.%d.0", i)
		submit(t, c, n, name, v)
		want = append(want, v)
	}
	mustCLI(t, c, c.Nodes[2], "registry", "approve", ref(name, "1.5.0"))
	for _, n := range c.Nodes {
		n.Kill()
	}
	c.Start()
	c.Leader(leaderTimeout)
	for _, n := range c.Nodes {
		for _, v := range want {
			d, raw, ok := show(t, c, n, ref(name, v), "-consistent")
			if !ok {
				t.Errorf("%s after kill -9 of all: acknowledged %s@%s is lost: %s", n.ID, name, v, raw)
				continue
			}
			wantState := card.StateSubmitted
			if v == "1.5.0" {
				wantState = card.StateApproved
			}
			if d.State != wantState {
				t.Errorf("%s after kill -9 of all: %s@%s is %s, want %s", n.ID, name, v, d.State, wantState)
			}
		}
	}
}

// TestFullRestart: SIGTERM all three nodes (each must exit 0: the drain),
// start them again, and find everything as it was, without a second
// bootstrap.
func TestFullRestart(t *testing.T) {
	t.Parallel()
	c := startCluster(t, testcluster.Options{}) // fsync on: durability matters here
	leader := c.Leader(leaderTimeout)
	via := c.Followers(leader)[0]

	// Versions in every lifecycle state, across two servers, and tenants.
	const dir, ledger = "corp.hr/directory", "corp.hr/ledger"
	for _, v := range []string{"1.0.0", "1.1.0", "2.0.0", "2.1.0-rc.1"} {
		submit(t, c, via, dir, v)
	}
	for _, v := range []string{"1.0.0", "2.0.0", "3.0.0"} {
		submit(t, c, via, ledger, v)
	}
	steps := [][]string{
		{"registry", "approve", ref(dir, "1.0.0")},
		{"registry", "approve", ref(dir, "1.1.0"), "-reason", "patch"},
		{"registry", "deprecate", ref(dir, "1.0.0"), "-sunset", "2031-01-31", "-replacement", "1.1.0", "-note", "move to 1.1"},
		{"registry", "reject", ref(dir, "2.0.0"), "-reason", "breaks callers"},
		{"registry", "approve", ref(ledger, "1.0.0")},
		{"registry", "retire", ref(ledger, "1.0.0"), "-reason", "end of life"},
		{"registry", "approve", ref(ledger, "2.0.0")},
		{"registry", "quarantine", ref(ledger, "2.0.0"), "-reason", "definition drift"},
		{"tenant", "add", "payroll", "-owner", "alice@corp"},
		{"tenant", "add", "recruiting", "-owner", "bob@corp", "-owner", "hr-leads@corp", "-display-name", "Recruiting"},
	}
	for _, s := range steps {
		mustCLI(t, c, via, s...)
	}
	wantStates := map[string]card.State{
		ref(dir, "1.0.0"): card.StateDeprecated, ref(dir, "1.1.0"): card.StateApproved,
		ref(dir, "2.0.0"): card.StateRejected, ref(dir, "2.1.0-rc.1"): card.StateSubmitted,
		ref(ledger, "1.0.0"): card.StateRetired, ref(ledger, "2.0.0"): card.StateQuarantined,
		ref(ledger, "3.0.0"): card.StateSubmitted,
	}

	// What every node holds before the restart, read consistently.
	before := mustCLI(t, c, leader, "registry", "list", "-consistent", "-o", "json")
	beforeTenants := mustCLI(t, c, leader, "tenant", "list", "-consistent", "-o", "json")
	beforeDetail := map[string]string{}
	for r := range wantStates {
		_, raw, ok := show(t, c, leader, r)
		if !ok {
			t.Fatalf("registry show %s before the restart: %s", r, raw)
		}
		beforeDetail[r] = raw
	}
	checkStates(t, before, wantStates)

	// SIGTERM each node; Stop fails the test unless it exits 0 in time.
	for _, n := range c.Nodes {
		start := time.Now()
		n.Stop(stopTimeout)
		t.Logf("%s drained and stopped in %s", n.ID, time.Since(start).Round(time.Millisecond))
	}
	for _, n := range c.Nodes {
		if log := n.LastRunLog(); !strings.Contains(log, "node stopped") {
			t.Errorf("%s: log of the stopped run does not end with \"node stopped\"; tail:\n%s", n.ID, n.LogTail(20))
		}
	}

	c.Start()
	c.Leader(leaderTimeout)
	for _, n := range c.Nodes {
		// Each node resumed its own Raft state; a second bootstrap would
		// either fail or fork the cluster.
		log := n.LastRunLog()
		for _, bad := range []string{"bootstrapped new cluster", "bootstrap cluster:", "bootstrap only works on new clusters"} {
			if strings.Contains(log, bad) {
				t.Errorf("%s: the second start logged %q: it bootstrapped again instead of resuming", n.ID, bad)
			}
		}
		// Local reads: the node's own persisted state, nothing lost.
		var list, tens string
		ok := testcluster.Eventually(catchUp, func() bool {
			list = mustCLI(t, c, n, "registry", "list", "-o", "json")
			tens = mustCLI(t, c, n, "tenant", "list", "-o", "json")
			return list == before && tens == beforeTenants
		})
		if !ok {
			t.Errorf("%s after restart: registry list\n%s\nwant (before the restart)\n%s\ntenant list\n%s\nwant\n%s", n.ID, list, before, tens, beforeTenants)
			continue
		}
		for r, want := range beforeDetail {
			if _, got, _ := show(t, c, n, r); got != want {
				t.Errorf("%s after restart: registry show %s =\n%s\nwant (before the restart)\n%s", n.ID, r, got, want)
			}
		}
	}
	// And the restarted cluster takes writes.
	submit(t, c, via, ledger, "4.0.0")
}

// checkStates checks a `registry list -o json` output against want.
func checkStates(t *testing.T, listJSON string, want map[string]card.State) {
	t.Helper()
	rows := decode[[]api.ServerSummary](t, "registry list", listJSON)
	got := map[string]card.State{}
	for _, r := range rows {
		got[ref(r.Server, r.Version)] = r.State
	}
	if len(got) != len(want) {
		t.Errorf("registry list has %d versions, want %d: %v", len(got), len(want), got)
	}
	for r, st := range want {
		if got[r] != st {
			t.Errorf("registry list: %s is %q, want %q", r, got[r], st)
		}
	}
}

// TestNoLeader: with two of three nodes down, a write on the third fails
// fast with a clear message and /readyz says 503; with one node back,
// writes work again.
func TestNoLeader(t *testing.T) {
	t.Parallel()
	c := startCluster(t, testcluster.Options{NoSync: true})
	const name = "corp.hr/directory"
	survivor, down := c.Nodes[0], c.Nodes[1:]
	submit(t, c, survivor, name, "1.0.0")
	for _, n := range down {
		n.Stop(stopTimeout)
	}

	// The survivor notices it has no leader: /readyz answers 503.
	var last string
	ok := testcluster.Eventually(catchUp, func() bool {
		code, body := get(t, survivor.URL()+"/readyz", "")
		last = body
		return code == http.StatusServiceUnavailable && strings.Contains(body, "no leader")
	})
	if !ok {
		t.Fatalf("%s: /readyz never answered 503 with 2 of 3 nodes down; last body: %s", survivor.ID, last)
	}

	// A write fails within a bounded time, with one line naming the cause.
	start := time.Now()
	out, code := c.CLI(survivor, "registry", "submit", "-f", writeCard(t, testcluster.Card(name, "2.0.0")))
	took := time.Since(start)
	if code == 0 {
		t.Fatalf("submit without a majority succeeded: %s", out)
	}
	wantFailure(t, "submit without a leader", out, code, 1, "no registry leader", "not applied")
	if took > 15*time.Second {
		t.Errorf("submit without a leader took %s to fail, want it bounded well under the CLI's 30s timeout", took)
	}
	t.Logf("submit without a leader failed after %s: %s", took.Round(time.Millisecond), strings.TrimSpace(out))
	// Reads of the local state still work.
	if d, raw, ok := show(t, c, survivor, ref(name, "1.0.0")); !ok || d.State != card.StateSubmitted {
		t.Errorf("local read without a leader failed: %s", raw)
	}

	// One node back makes a majority: writes work again, and the refused
	// write was indeed never applied.
	down[0].Start()
	c.Leader(leaderTimeout)
	submit(t, c, survivor, name, "3.0.0")
	if _, raw, ok := show(t, c, survivor, ref(name, "2.0.0"), "-consistent"); ok || !strings.Contains(raw, "not registered") {
		t.Errorf("registry show of the version whose submit was refused without a leader: %s; want \"not registered\"", raw)
	}
	for _, n := range []*testcluster.Node{survivor, down[0]} {
		eventuallyShow(t, c, n, ref(name, "3.0.0"), func(d api.VersionDetail) bool { return d.State == card.StateSubmitted })
	}
}
