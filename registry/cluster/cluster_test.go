package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/mcpmesh/mcpmesh/registry/state"
	"github.com/mcpmesh/mcpmesh/trust/ca"
	"github.com/mcpmesh/mcpmesh/trust/mtls"
	"github.com/mcpmesh/mcpmesh/trust/svid"
)

// withCut installs the fault hook (tests only).
func withCut(cut func(peer string) bool) Option {
	return optionFunc(func(o *options) { o.cut = cut })
}

// testNet decides which nodes are cut off from the rest.
type testNet struct {
	mu  sync.Mutex
	off map[string]bool
}

func (n *testNet) isolate(id string, off bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.off[id] = off
}

func (n *testNet) cutFor(self string) func(string) bool {
	return func(peer string) bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		return n.off[self] || n.off[peer]
	}
}

type testCluster struct {
	t     *testing.T
	ca    *ca.CA
	net   *testNet
	nodes map[string]*Cluster
	addrs map[string]string
	dirs  map[string]string
}

// newTestCluster starts n in-process replicas on loopback with real mTLS
// and test-sized timeouts.
func newTestCluster(t *testing.T, n int) *testCluster {
	t.Helper()
	td := spiffeid.RequireTrustDomainFromString("hr.example.corp")
	authority, err := ca.Init(t.TempDir()+"/ca", td)
	if err != nil {
		t.Fatal(err)
	}
	tc := &testCluster{t: t, ca: authority, net: &testNet{off: map[string]bool{}}, nodes: map[string]*Cluster{}, addrs: map[string]string{}, dirs: map[string]string{}}
	lns := map[string]net.Listener{}
	var peers []Peer
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("n%d", i)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[id], tc.addrs[id], tc.dirs[id] = ln, ln.Addr().String(), t.TempDir()
		peers = append(peers, Peer{ID: id, Address: ln.Addr().String()})
	}
	for id, ln := range lns {
		tc.start(id, ln, peers, nil)
	}
	t.Cleanup(func() {
		for id, c := range tc.nodes {
			shutdownWithin(t, id, c, 30*time.Second)
		}
	})
	return tc
}

// shutdownWithin shuts c down, failing the test with the goroutines of
// Raft and this package if it takes longer than limit, so a hang shows
// where it is instead of running into the package timeout. It gives
// Shutdown twice as long again to finish before it leaves it running.
func shutdownWithin(t *testing.T, id string, c *Cluster, limit time.Duration) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- c.Shutdown() }()
	select {
	case err := <-done:
		return err
	case <-time.After(limit):
	}
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	var stuck []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "hashicorp/raft") || strings.Contains(g, "registry/cluster.") {
			stuck = append(stuck, g)
		}
	}
	t.Errorf("shutdown of %s not within %s; goroutines of raft and the cluster:\n%s", id, limit, strings.Join(stuck, "\n\n"))
	select {
	case err := <-done:
		return err
	case <-time.After(2 * limit):
		return fmt.Errorf("shutdown of %s still running after %s", id, 3*limit)
	}
}

func (tc *testCluster) start(id string, ln net.Listener, peers []Peer, join []string) *Cluster {
	t := tc.t
	t.Helper()
	nodeID := spiffeid.RequireFromSegments(tc.ca.TrustDomain(), "mcpmesh", "node", id)
	rot, err := svid.NewRotator(tc.ca, nodeID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	authz := mtls.NodeAuthorizer(tc.ca.TrustDomain(), slog.New(slog.DiscardHandler))
	logger := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})).With("node", id)
	c, err := New(Config{
		NodeID:             id,
		Listener:           ln,
		Dir:                tc.dirs[id],
		ServerTLS:          mtls.ServerConfig(rot, tc.ca.Bundle(), authz, "mcpmesh-node/1"),
		ClientTLS:          mtls.ClientConfig(rot, tc.ca.Bundle(), authz, "mcpmesh-node/1"),
		Peers:              peers,
		Join:               join,
		HeartbeatTimeout:   100 * time.Millisecond,
		ElectionTimeout:    100 * time.Millisecond,
		LeaderLeaseTimeout: 50 * time.Millisecond,
		ApplyTimeout:       3 * time.Second,
		NoSync:             true,
	}, WithLogger(logger), withCut(tc.net.cutFor(id)))
	if err != nil {
		t.Fatal(err)
	}
	tc.nodes[id] = c
	return c
}

// testWriter sends log lines to t.Log, so they show only on failure.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		var ok bool
		if ok, last = cond(); ok {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s; last seen: %s", what, timeout, last)
}

// leader waits for a leader among the nodes not isolated, agreed by all of them.
func (tc *testCluster) leader(exclude ...string) *Cluster {
	tc.t.Helper()
	var leader *Cluster
	waitFor(tc.t, "leader elected", 10*time.Second, func() (bool, string) {
		leader = nil
		seen := []string{}
		agreed := ""
	nodes:
		for id, c := range tc.nodes {
			for _, x := range exclude {
				if x == id {
					continue nodes
				}
			}
			l, _ := c.Leader()
			seen = append(seen, id+"→"+l)
			if l == "" || (agreed != "" && l != agreed) {
				return false, strings.Join(seen, " ")
			}
			agreed = l
			if c.IsLeader() {
				leader = c
			}
		}
		return leader != nil && leader.cfg.NodeID == agreed, strings.Join(seen, " ")
	})
	return leader
}

func (tc *testCluster) follower(leader *Cluster) *Cluster {
	for _, c := range tc.nodes {
		if c != leader {
			return c
		}
	}
	return nil
}

func tenantCmd(t *testing.T, name string) []byte {
	t.Helper()
	b, err := state.Encode(state.PutTenant{Tenant: state.Tenant{Name: name, Owners: []string{"o"}}, By: "test", At: time.Unix(1, 0).UTC()})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func hasTenant(c *Cluster, name string) bool {
	_, err := c.FSM.Tenant(name)
	return err == nil
}

func TestElectReplicateForward(t *testing.T) {
	tc := newTestCluster(t, 3)
	leader := tc.leader()
	f := tc.follower(leader)

	// A write sent to a follower is forwarded to the leader.
	res, err := f.Apply(t.Context(), tenantCmd(t, "payroll"))
	if err != nil {
		t.Fatalf("apply on follower: %v", err)
	}
	if res.Index == 0 || res.Unchanged {
		t.Errorf("result = %+v, want a new index", res)
	}
	for id, c := range tc.nodes {
		if err := c.FSM.WaitApplied(ctxTimeout(t, 5*time.Second), res.Index); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		if !hasTenant(c, "payroll") {
			t.Errorf("%s: tenant not replicated", id)
		}
	}
	// A state-machine refusal comes back through forwarding with its kind.
	bad, _ := state.Encode(state.PutTenant{Tenant: state.Tenant{Name: "x"}, By: "t", At: time.Unix(1, 0)})
	if _, err := f.Apply(t.Context(), bad); !errors.Is(err, state.ErrInvalid) {
		t.Errorf("forwarded refusal: err = %v, want ErrInvalid", err)
	}
	// A barrier on a follower returns only once it has applied everything
	// committed before the call.
	res, err = leader.Apply(t.Context(), tenantCmd(t, "benefits"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Barrier(t.Context()); err != nil {
		t.Fatalf("barrier: %v", err)
	}
	if f.FSM.AppliedIndex() <= res.Index || !hasTenant(f, "benefits") {
		t.Errorf("after barrier: applied %d (write at %d), has tenant %v", f.FSM.AppliedIndex(), res.Index, hasTenant(f, "benefits"))
	}
	ms, err := f.Members(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	roles := map[string]int{}
	for _, m := range ms {
		roles[m.Role]++
	}
	if len(ms) != 3 || roles["Leader"] != 1 || roles["Follower"] != 2 {
		t.Errorf("members = %+v, want 1 leader and 2 followers", ms)
	}
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestPartitionedFollowerCatchesUp(t *testing.T) {
	tc := newTestCluster(t, 3)
	leader := tc.leader()
	f := tc.follower(leader)
	fid := f.cfg.NodeID

	tc.net.isolate(fid, true)
	for i := range 20 {
		if _, err := leader.Apply(t.Context(), tenantCmd(t, fmt.Sprintf("t%d", i))); err != nil {
			t.Fatalf("write %d with a follower cut off: %v", i, err)
		}
	}
	if hasTenant(f, "t19") {
		t.Fatalf("isolated follower received writes: the fault hook does not cut")
	}
	// The isolated node cannot write: no leader reachable.
	if _, err := f.Apply(ctxTimeout(t, 500*time.Millisecond), tenantCmd(t, "isolated")); !errors.Is(err, ErrNoLeader) {
		t.Errorf("write on isolated node: err = %v, want ErrNoLeader", err)
	}

	tc.net.isolate(fid, false)
	leader = tc.leader()
	waitFor(t, "healed follower catches up", 10*time.Second, func() (bool, string) {
		return hasTenant(f, "t19"), fmt.Sprintf("applied %d", f.FSM.AppliedIndex())
	})
	if hasTenant(leader, "isolated") {
		t.Errorf("a write refused for lack of a leader was applied later")
	}
}

func TestLeaderPartitionElectsNewLeaderAndConverges(t *testing.T) {
	tc := newTestCluster(t, 3)
	old := tc.leader()
	if _, err := old.Apply(t.Context(), tenantCmd(t, "before")); err != nil {
		t.Fatal(err)
	}
	oldID := old.cfg.NodeID
	tc.net.isolate(oldID, true)
	newLeader := tc.leader(oldID)
	if newLeader == old {
		t.Fatal("isolated leader still leads the majority")
	}
	if _, err := newLeader.Apply(t.Context(), tenantCmd(t, "during")); err != nil {
		t.Fatalf("write to the new leader: %v", err)
	}
	tc.net.isolate(oldID, false)
	tc.leader()
	waitFor(t, "old leader converges", 10*time.Second, func() (bool, string) {
		return hasTenant(old, "during") && hasTenant(old, "before"), fmt.Sprintf("applied %d, leader %v", old.FSM.AppliedIndex(), old.IsLeader())
	})
	// Every replica holds the same state.
	var want []byte
	for id, c := range tc.nodes {
		if err := c.Barrier(t.Context()); err != nil {
			t.Fatal(err)
		}
		ts, _ := c.FSM.Tenants()
		got := []byte(fmt.Sprint(ts))
		if want == nil {
			want = got
		} else if !bytes.Equal(got, want) {
			t.Errorf("%s diverged:\n%s\nvs\n%s", id, got, want)
		}
	}
}

func TestJoinRemoveAndRestore(t *testing.T) {
	tc := newTestCluster(t, 3)
	leader := tc.leader()
	f := tc.follower(leader)
	if _, err := leader.Apply(t.Context(), tenantCmd(t, "kept")); err != nil {
		t.Fatal(err)
	}
	var snap bytes.Buffer
	if err := f.Barrier(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := f.SaveSnapshot(&snap); err != nil {
		t.Fatal(err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tc.addrs["n4"], tc.dirs["n4"] = ln.Addr().String(), t.TempDir()
	n4 := tc.start("n4", ln, nil, []string{tc.addrs[f.cfg.NodeID]})
	waitFor(t, "n4 joins and catches up", 10*time.Second, func() (bool, string) {
		ms, _ := leader.Members(t.Context())
		return len(ms) == 4 && hasTenant(n4, "kept"), fmt.Sprintf("%d members, n4 applied %d", len(ms), n4.FSM.AppliedIndex())
	})

	if _, err := f.Apply(t.Context(), tenantCmd(t, "later")); err != nil {
		t.Fatal(err)
	}
	// Restore through a follower: forwarded to the leader, installed everywhere.
	if err := f.RestoreSnapshot(t.Context(), bytes.NewReader(snap.Bytes())); err != nil {
		t.Fatalf("restore: %v", err)
	}
	for id, c := range tc.nodes {
		waitFor(t, id+" restored", 10*time.Second, func() (bool, string) {
			return hasTenant(c, "kept") && !hasTenant(c, "later"), fmt.Sprintf("kept=%v later=%v", hasTenant(c, "kept"), hasTenant(c, "later"))
		})
	}
	corrupt := bytes.Clone(snap.Bytes())
	corrupt[len(corrupt)/2] ^= 1
	if err := f.RestoreSnapshot(t.Context(), bytes.NewReader(corrupt)); !errors.Is(err, state.ErrCorruptSnapshot) {
		t.Errorf("corrupt restore: err = %v, want ErrCorruptSnapshot", err)
	}
	// Writes still work after a restore.
	if _, err := f.Apply(t.Context(), tenantCmd(t, "after-restore")); err != nil {
		t.Fatalf("write after restore: %v", err)
	}

	if err := f.RemoveServer(t.Context(), "n4"); err != nil {
		t.Fatalf("remove n4: %v", err)
	}
	waitFor(t, "n4 removed on every remaining node", 5*time.Second, func() (bool, string) {
		seen := ""
		for id, c := range tc.nodes {
			if id == "n4" {
				continue
			}
			ms, _ := c.Members(t.Context())
			seen += fmt.Sprintf("%s sees %d; ", id, len(ms))
			if len(ms) != 3 {
				return false, seen
			}
		}
		return true, seen
	})
	if err := f.RemoveServer(t.Context(), "nope"); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("remove unknown: err = %v, want ErrNotFound", err)
	}
}

func TestRestartResumesFromDisk(t *testing.T) {
	tc := newTestCluster(t, 3)
	leader := tc.leader()
	for i := range 5 {
		if _, err := leader.Apply(t.Context(), tenantCmd(t, fmt.Sprintf("t%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	f := tc.follower(leader)
	id := f.cfg.NodeID
	waitFor(t, "follower has t4", 5*time.Second, func() (bool, string) { return hasTenant(f, "t4"), "" })
	if err := shutdownWithin(t, id, f, 30*time.Second); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if _, err := leader.Apply(t.Context(), tenantCmd(t, "while-down")); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", tc.addrs[id])
	if err != nil {
		t.Skipf("cannot rebind %s: %v", tc.addrs[id], err)
	}
	re := tc.start(id, ln, []Peer{{ID: "ignored", Address: "ignored:1"}}, nil)
	if !hasTenant(re, "t4") {
		t.Errorf("restarted node lost state it had applied")
	}
	waitFor(t, "restarted follower catches up", 10*time.Second, func() (bool, string) {
		return hasTenant(re, "while-down"), fmt.Sprintf("applied %d", re.FSM.AppliedIndex())
	})
}

func TestAddVoterVerifiesTheNode(t *testing.T) {
	tc := newTestCluster(t, 3)
	leader := tc.leader()
	f := tc.follower(leader)

	// Nothing listens at the address: refused, nothing added.
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	if err := f.AddVoter(t.Context(), "n9", deadAddr); !errors.Is(err, state.ErrInvalid) || !strings.Contains(err.Error(), "cannot verify node n9") {
		t.Errorf("add an address with no node: err = %v", err)
	}
	// A real node, asked for under another id: refused.
	if err := f.AddVoter(t.Context(), "n9", tc.addrs[f.cfg.NodeID]); !errors.Is(err, state.ErrInvalid) || !strings.Contains(err.Error(), "not \"n9\"") {
		t.Errorf("add a node under the wrong id: err = %v", err)
	}
	ms, err := leader.Members(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 3 {
		t.Errorf("refused adds changed the configuration: %d members", len(ms))
	}
}
