package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcpmesh/mcpmesh/node/gateway"
	"github.com/mcpmesh/mcpmesh/test/internal/testcluster"
)

// netnsLab is two network namespaces, one for hr's node and one for
// finance's, each joined to the root namespace (where the test process and
// the upstream servers run) by a veth pair, and to each other by a third:
// the link between the BUs, which the test cuts and heals.
type netnsLab struct {
	ip string // the ip binary
	// ns, inside, root and link are by BU: the namespace; the node's
	// address on its veth to the root namespace (HTTP, Raft); the root
	// namespace's end of that veth (upstreams listen there); the node's
	// address on the link between the BUs (peer and gossip listeners).
	ns, inside, root, link map[string]string
	// linkDev is each BU's end of the link between the BUs, in its
	// namespace.
	linkDev map[string]string
}

// newNetnsLab builds the namespaces and links under names unique to this
// run, and deletes them when the test ends, failed or not. It skips the
// test when not root; it fails it when ip (iproute2) is missing.
func newNetnsLab(t *testing.T) *netnsLab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root (CI runs as root)")
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		t.Fatalf("the partition test needs the ip command (apt-get install iproute2): %v", err)
	}
	tag := fmt.Sprintf("%05x", rand.IntN(1<<20))
	net := fmt.Sprintf("10.%d.%d.", 200+rand.IntN(50), rand.IntN(256))
	l := &netnsLab{ip: ip,
		ns:      map[string]string{"hr": "e2e-hr-" + tag, "finance": "e2e-fin-" + tag},
		root:    map[string]string{"hr": net + "1", "finance": net + "5"},
		inside:  map[string]string{"hr": net + "2", "finance": net + "6"},
		link:    map[string]string{"hr": net + "9", "finance": net + "10"},
		linkDev: map[string]string{"hr": "ex" + tag + "h", "finance": "ex" + tag + "f"},
	}
	for _, bu := range []string{"hr", "finance"} {
		ns := l.ns[bu]
		l.run(t, "netns", "add", ns)
		t.Cleanup(func() {
			if out, err := exec.Command(ip, "netns", "del", ns).CombinedOutput(); err != nil {
				t.Errorf("delete network namespace %s: %v: %s", ns, err, out)
			}
		})
		rootDev, nsDev := "e"+bu[:1]+tag+"r", "e"+bu[:1]+tag+"n"
		l.run(t, "-n", ns, "link", "set", "lo", "up")
		l.run(t, "link", "add", rootDev, "type", "veth", "peer", "name", nsDev, "netns", ns)
		l.run(t, "addr", "add", l.root[bu]+"/30", "dev", rootDev)
		l.run(t, "link", "set", rootDev, "up")
		l.run(t, "-n", ns, "addr", "add", l.inside[bu]+"/30", "dev", nsDev)
		l.run(t, "-n", ns, "link", "set", nsDev, "up")
	}
	l.run(t, "-n", l.ns["hr"], "link", "add", l.linkDev["hr"], "type", "veth", "peer", "name", l.linkDev["finance"], "netns", l.ns["finance"])
	for _, bu := range []string{"hr", "finance"} {
		l.run(t, "-n", l.ns[bu], "addr", "add", l.link[bu]+"/30", "dev", l.linkDev[bu])
		l.run(t, "-n", l.ns[bu], "link", "set", l.linkDev[bu], "up")
	}
	return l
}

// setLink sets BU bu's end of the link between the BUs up or down.
func (l *netnsLab) setLink(t *testing.T, bu, state string) {
	t.Helper()
	l.run(t, "-n", l.ns[bu], "link", "set", l.linkDev[bu], state)
}

// run runs ip with args and fails the test if it fails.
func (l *netnsLab) run(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(l.ip, args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// place runs BU ns's nodes in its namespace: HTTP and Raft on the address
// the test reaches, peer and gossip on the link to the other BU.
func (l *netnsLab) place(ns string, o *testcluster.Options) string {
	o.Host = l.inside[ns]
	o.Exec = []string{l.ip, "netns", "exec", l.ns[ns]}
	return l.link[ns]
}

// TestFederationPartition runs hr and finance (one node each) in network
// namespaces of their own and cuts the link between them: a call of
// finance's tool through hr fails fast, bounded by call_timeout, with
// -32018 naming finance, while hr's own tool keeps answering and finance's
// stays listed; once the link is back, cross-BU calls resume.
func TestFederationPartition(t *testing.T) {
	t.Parallel()
	lab := newNetnsLab(t)
	ledger := startUpstreamOn(t, "ledger", lab.root["finance"])
	directory := startUpstreamOn(t, "directory", lab.root["hr"])
	const callTimeout = 5 * time.Second
	m := startMeshWith(t, meshOptions{Place: lab.place, FederationYAML: fmt.Sprintf("  call_timeout: %s\n", callTimeout)})
	key := m.exportLedger(t, ledger.URL)
	hrN := m.hr.Nodes[0]
	mustCLI(t, m.hr, hrN, "registry", "submit", "-f", writeCard(t, upstreamCard("corp.hr/directory", "1.0.0", directory.URL)))
	mustCLI(t, m.hr, hrN, "registry", "approve", "corp.hr/directory@1.0.0")
	m.push(t, "hr>finance")
	waitListed(t, m.hr, hrN, key, "finance.lookup", 60*time.Second)
	waitListed(t, m.hr, hrN, key, "hr.lookup", 30*time.Second)
	for tool, want := range map[string]string{"finance.lookup": "ledger:before", "hr.lookup": "directory:before"} {
		if got, err := callTool(t, hrN, key, tool, "before", 30*time.Second); err != nil || got != want {
			t.Fatalf("%s before the cut = %q, %v\nhr log:\n%s", tool, got, err, hrN.LogTail(30))
		}
	}

	// Two cuts: finance's end of the link down, so hr's packets vanish
	// (hr still has a route: only call_timeout and the connection's idle
	// timeout end the call), then hr's own end, so hr has no route.
	for _, cut := range []struct{ name, end string }{
		{"finance's end of the link down (packets dropped)", "finance"},
		{"hr's end of the link down (no route to finance)", "hr"},
	} {
		lab.setLink(t, cut.end, "down")
		start := time.Now()
		got, err := callTool(t, hrN, key, "finance.lookup", "cut", callTimeout+15*time.Second)
		took := time.Since(start)
		if err == nil || rpcCode(err) != gateway.CodeRemoteUnavailable || !strings.Contains(err.Error(), "namespace finance") {
			t.Fatalf("%s: a cross-BU call = %q, %v (after %v); want error -32018 naming namespace finance within call_timeout %s\nhr log:\n%s",
				cut.name, got, err, took, callTimeout, hrN.LogTail(30))
		}
		t.Logf("%s: the cross-BU call failed after %v (call_timeout %s): %v", cut.name, took.Round(time.Millisecond), callTimeout, err)

		start = time.Now()
		if got, err := callTool(t, hrN, key, "hr.lookup", "during", 30*time.Second); err != nil || got != "directory:during" {
			t.Errorf("%s: hr's own tool = %q, %v", cut.name, got, err)
		} else {
			t.Logf("%s: hr's own tool answered in %v", cut.name, time.Since(start).Round(time.Millisecond))
		}
		if names, err := listTools(t, hrN, key); err != nil || !slices.Contains(names, "finance.lookup") {
			t.Errorf("%s: hr no longer lists finance.lookup: %v, %v", cut.name, names, err)
		}

		lab.setLink(t, cut.end, "up")
		start = time.Now()
		var last string
		if !testcluster.Eventually(45*time.Second, func() bool {
			got, err := callTool(t, hrN, key, "finance.lookup", "healed", callTimeout+15*time.Second)
			last = fmt.Sprint(got, err)
			return err == nil && got == "ledger:healed"
		}) {
			t.Fatalf("%s: cross-BU calls did not resume within 45s of healing the link: last %s\nhr log:\n%s", cut.name, last, hrN.LogTail(30))
		}
		t.Logf("%s: cross-BU calls resumed %v after the link came back", cut.name, time.Since(start).Round(time.Millisecond))
	}
}
