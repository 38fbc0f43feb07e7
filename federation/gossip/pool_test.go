package gossip

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

var (
	keyA = bytes.Repeat([]byte{0xa}, 32)
	keyB = bytes.Repeat([]byte{0xb}, 32)
)

// testHint is node i's hint; nodes are spread over three namespaces.
func testHint(i int) Hint {
	ns := []string{"hr", "finance", "legal"}[i%3]
	return Hint{
		Namespace:   ns,
		TrustDomain: ns + ".example.corp",
		NodeID:      fmt.Sprintf("n%d", i),
		PeerAddr:    fmt.Sprintf("127.0.0.1:%d", 20000+i),
		Protocols:   []string{PeerProtocol},
	}
}

func testConfig(i int) Config {
	return Config{
		Bind:    "127.0.0.1:0",
		Keyring: [][]byte{keyA},
		Label:   "test-mesh",
		Hint:    testHint(i),
	}
}

// testLogger logs to the test output when -v and GOSSIP_DEBUG are set.
func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("GOSSIP_DEBUG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(tbWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tbWriter struct{ t testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// recorder keeps every change a pool reported through OnChange.
type recorder struct {
	mu      sync.Mutex
	changes []Member
}

func (r *recorder) record(m Member) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.changes = append(r.changes, m)
}

func (r *recorder) seen() []Member {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.changes)
}

func (r *recorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for _, m := range r.changes {
		fmt.Fprintf(&b, "\n  %s %s catalog=%d leaving=%v err=%v", m.Name, m.State, m.Hint.CatalogVersion, m.Hint.Leaving, m.HintErr)
	}
	return b.String()
}

// newTestPool starts a pool that the test shuts down.
func newTestPool(t testing.TB, cfg Config, opts ...Option) *Pool {
	t.Helper()
	opts = append([]Option{WithLogger(testLogger(t))}, opts...)
	p, err := New(cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Shutdown() })
	return p
}

// waitFor polls cond until it holds or timeout passes, then fails the test
// with what cond last reported.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; last seen: %s", what, timeout, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func describe(ms []Member) string {
	var b strings.Builder
	for _, m := range ms {
		fmt.Fprintf(&b, "\n  %s %s %s catalog=%d err=%v", m.Name, m.Addr, m.State, m.Hint.CatalogVersion, m.HintErr)
	}
	return b.String()
}

// aliveOthers counts the other members p sees alive.
func aliveOthers(p *Pool) int {
	n := 0
	for _, m := range p.Members() {
		if !m.Local && m.State == StateAlive {
			n++
		}
	}
	return n
}

func TestNewRefuses(t *testing.T) {
	for name, tc := range map[string]struct {
		edit func(*Config)
		want string
	}{
		"empty keyring": {func(c *Config) { c.Keyring = nil }, "keyring: empty"},
		"bad key size":  {func(c *Config) { c.Keyring = [][]byte{make([]byte, 10)} }, "keyring[0]"},
		"no label":      {func(c *Config) { c.Label = "" }, "label"},
		"bad hint":      {func(c *Config) { c.Hint.PeerAddr = "" }, "peer address"},
		"name mismatch": {func(c *Config) { c.Name = "hr/other" }, "name"},
		"bad bind":      {func(c *Config) { c.Bind = "localhost" }, "bind"},
		"bad join":      {func(c *Config) { c.Join = []string{"nope"} }, "join[0]"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig(0)
			tc.edit(&cfg)
			p, err := New(cfg)
			if err == nil {
				_ = p.Shutdown()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v; want an error naming %q", err, tc.want)
			}
		})
	}
}

// TestHintChangeAndLeave: three pools join through the first; a hint
// change on one reaches the others through OnChange and Members; a pool
// that leaves is seen as left, one that is shut down without leaving as
// dead.
func TestHintChangeAndLeave(t *testing.T) {
	fast := WithMemberlistConfig(func(c *memberlist.Config) {
		// Shorter probing so the unannounced failure below is declared
		// within seconds; the WAN defaults take about 30s.
		c.ProbeInterval = 200 * time.Millisecond
		c.ProbeTimeout = 100 * time.Millisecond
		c.SuspicionMult = 2
	})
	reg := prometheus.NewRegistry()
	var recs [3]recorder
	pools := make([]*Pool, 3)
	for i := range pools {
		cfg := testConfig(i)
		if i > 0 {
			cfg.Join = []string{pools[0].Addr()}
		}
		opts := []Option{fast, WithOnChange(recs[i].record)}
		if i == 1 {
			opts = append(opts, WithMetrics(reg))
		}
		pools[i] = newTestPool(t, cfg, opts...)
		go pools[i].Run(t.Context())
	}
	for i, p := range pools {
		waitFor(t, 10*time.Second, fmt.Sprintf("pool %d sees the others", i), func() (bool, string) {
			return aliveOthers(p) == 2, describe(p.Members())
		})
	}

	if err := pools[0].SetHint(func(h *Hint) { h.CatalogVersion = 5; h.CatalogHash = "deadbeef" }); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < 3; i++ {
		waitFor(t, 10*time.Second, fmt.Sprintf("pool %d's OnChange sees catalog 5", i), func() (bool, string) {
			for _, m := range recs[i].seen() {
				if m.Name == "hr/n0" && m.Hint.CatalogVersion == 5 && m.Hint.CatalogHash == "deadbeef" && m.State == StateAlive {
					return true, ""
				}
			}
			return false, recs[i].String()
		})
	}
	if got := testutil.ToFloat64(pools[1].met.hintUpdates); got < 1 {
		t.Errorf("mcpmesh_gossip_hint_updates_total = %v on pool 1; want at least 1", got)
	}
	if got := testutil.ToFloat64(pools[1].met.members.WithLabelValues("alive")); got != 3 {
		t.Errorf("mcpmesh_gossip_members{state=alive} = %v on pool 1; want 3", got)
	}
	if err := pools[0].SetHint(func(h *Hint) { h.NodeID = "other" }); err == nil {
		t.Error("SetHint accepted a change of node id")
	}
	if err := pools[0].SetHint(func(h *Hint) { h.CatalogHash = "XYZ" }); err == nil {
		t.Error("SetHint accepted an invalid catalog hash")
	}
	if h := pools[0].LocalHint(); h.CatalogVersion != 5 || h.CatalogHash != "deadbeef" {
		t.Errorf("after refused changes the local hint is %+v; want catalog 5 deadbeef kept", h)
	}

	if err := pools[2].Leave(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	_ = pools[2].Shutdown()
	for i := range 2 {
		waitFor(t, 10*time.Second, fmt.Sprintf("pool %d sees legal/n2 left", i), func() (bool, string) {
			for _, m := range pools[i].Members() {
				if m.Name == "legal/n2" {
					return m.State == StateLeft, describe(pools[i].Members())
				}
			}
			return false, describe(pools[i].Members())
		})
	}

	_ = pools[0].Shutdown() // no leave: a failure
	waitFor(t, 15*time.Second, "pool 1 sees hr/n0 dead", func() (bool, string) {
		for _, m := range pools[1].Members() {
			if m.Name == "hr/n0" {
				return m.State == StateDead, describe(pools[1].Members())
			}
		}
		return false, describe(pools[1].Members())
	})
	if got := testutil.ToFloat64(pools[1].met.members.WithLabelValues("left")); got != 1 {
		t.Errorf("mcpmesh_gossip_members{state=left} = %v; want 1", got)
	}
	if got := testutil.ToFloat64(pools[1].met.members.WithLabelValues("dead")); got != 1 {
		t.Errorf("mcpmesh_gossip_members{state=dead} = %v; want 1", got)
	}
}

// TestSeparatePools: a pool with another label, or with a key the mesh
// does not hold, is never admitted. The keyring rotation of the package doc
// keeps every step admitted: a node that added the new key second joins one
// that has only the old key, and a node that moved it first joins one that
// only added it.
func TestSeparatePools(t *testing.T) {
	for name, tc := range map[string]struct {
		seedKeys, keys [][]byte
		label          string
		admit          bool
	}{
		"other label":                  {[][]byte{keyA}, [][]byte{keyA}, "other-mesh", false},
		"other key":                    {[][]byte{keyA}, [][]byte{keyB}, "", false},
		"new key first, old key alone": {[][]byte{keyA}, [][]byte{keyB, keyA}, "", false},
		"rotation step 1":              {[][]byte{keyA}, [][]byte{keyA, keyB}, "", true},
		"rotation step 2":              {[][]byte{keyA, keyB}, [][]byte{keyB, keyA}, "", true},
		"rotation step 3":              {[][]byte{keyB, keyA}, [][]byte{keyB}, "", true},
	} {
		t.Run(name, func(t *testing.T) {
			seedCfg := testConfig(0)
			seedCfg.Keyring = tc.seedKeys
			seed := newTestPool(t, seedCfg)
			cfg := testConfig(1)
			cfg.Keyring = tc.keys
			if tc.label != "" {
				cfg.Label = tc.label
			}
			p := newTestPool(t, cfg)
			n, err := p.ml.Join([]string{seed.Addr()})
			if tc.admit {
				if err != nil {
					t.Fatalf("join = %d, %v; want admitted", n, err)
				}
				waitFor(t, 5*time.Second, "both see each other", func() (bool, string) {
					return aliveOthers(p) == 1 && aliveOthers(seed) == 1, describe(seed.Members()) + describe(p.Members())
				})
				return
			}
			if err == nil {
				t.Fatalf("join = %d, nil; want refused", n)
			}
			t.Logf("join refused as expected: %v", err)
			// Give gossip a moment to leak anything through, then look.
			time.Sleep(500 * time.Millisecond)
			if aliveOthers(p) != 0 || aliveOthers(seed) != 0 {
				t.Fatalf("pools merged:%s%s", describe(seed.Members()), describe(p.Members()))
			}
		})
	}
}

// TestRunRetriesJoin: a node whose join target is not up yet keeps trying,
// and joins once the target starts.
func TestRunRetriesJoin(t *testing.T) {
	// Reserve a port, free it, and have the joiner aim at it.
	l, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.LocalAddr().String()
	_ = l.Close()
	cfg := testConfig(1)
	cfg.Join = []string{addr}
	joiner := newTestPool(t, cfg, WithJoinBackoff(50*time.Millisecond, 200*time.Millisecond))
	done := make(chan struct{})
	go func() { _ = joiner.Run(t.Context()); close(done) }()
	time.Sleep(300 * time.Millisecond) // a few failed attempts
	seedCfg := testConfig(0)
	seedCfg.Bind = addr
	seed := newTestPool(t, seedCfg)
	waitFor(t, 10*time.Second, "the joiner reaches the late seed", func() (bool, string) {
		return aliveOthers(seed) == 1, describe(seed.Members())
	})
	_ = joiner.Shutdown()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after Shutdown")
	}
}

// faultTransport is memberlist's NetTransport with a fault hook: it can
// drop every incoming UDP packet (where broadcasts travel) and cut TCP
// (push/pull, in both directions) independently.
type faultTransport struct {
	*memberlist.NetTransport
	packets chan *memberlist.Packet
	conns   chan net.Conn
	stop    chan struct{}
	// gone closes once the NetTransport underneath has shut down: until
	// then the forwarders keep draining it (discarding), or its listeners
	// would block handing over a packet and Shutdown would wait forever.
	gone    chan struct{}
	dropUDP atomic.Bool
	cutTCP  atomic.Bool
	dropped atomic.Int64
}

var _ memberlist.NodeAwareTransport = (*faultTransport)(nil)

func newFaultTransport(t testing.TB) *faultTransport {
	t.Helper()
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{"127.0.0.1"},
		Logger:    log.New(io.Discard, "", 0),
	})
	if err != nil {
		t.Fatal(err)
	}
	f := &faultTransport{NetTransport: nt, packets: make(chan *memberlist.Packet), conns: make(chan net.Conn), stop: make(chan struct{}), gone: make(chan struct{})}
	go func() {
		defer f.drain(nt)
		for {
			select {
			case <-f.stop:
				return
			case p := <-nt.PacketCh():
				if f.dropUDP.Load() {
					f.dropped.Add(1)
					continue
				}
				select {
				case f.packets <- p:
				case <-f.stop:
					return
				}
			}
		}
	}()
	go func() {
		defer f.drain(nt)
		for {
			select {
			case <-f.stop:
				return
			case c := <-nt.StreamCh():
				if f.cutTCP.Load() {
					_ = c.Close()
					continue
				}
				select {
				case f.conns <- c:
				case <-f.stop:
					return
				}
			}
		}
	}()
	return f
}

func (f *faultTransport) PacketCh() <-chan *memberlist.Packet { return f.packets }
func (f *faultTransport) StreamCh() <-chan net.Conn           { return f.conns }

func (f *faultTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if f.cutTCP.Load() {
		return nil, fmt.Errorf("fault: TCP to %s cut", addr)
	}
	return f.NetTransport.DialTimeout(addr, timeout)
}

func (f *faultTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return f.DialTimeout(a.Addr, timeout)
}

func (f *faultTransport) Shutdown() error {
	close(f.stop)
	err := f.NetTransport.Shutdown()
	close(f.gone)
	return err
}

// drain discards what nt's listeners still hand over until it has shut
// down.
func (f *faultTransport) drain(nt *memberlist.NetTransport) {
	for {
		select {
		case <-f.gone:
			return
		case <-nt.PacketCh():
		case c := <-nt.StreamCh():
			_ = c.Close()
		}
	}
}

// withTransport makes a pool use ft, advertising its bound address.
func withTransport(ft *faultTransport, tune func(*memberlist.Config)) Option {
	return WithMemberlistConfig(func(c *memberlist.Config) {
		c.Transport = ft
		c.BindPort = ft.GetAutoBindPort()
		c.AdvertiseAddr, c.AdvertisePort = "127.0.0.1", ft.GetAutoBindPort()
		tune(c)
	})
}

// TestLostBroadcastRepairedByPushPull: one node drops every incoming UDP
// packet, so it misses the broadcast of a new catalog version that reaches
// everyone else. While its TCP is cut too it does not learn it, even over
// many push/pull intervals; once TCP is back (UDP still dropped) it learns
// it with the next push/pull. Probing is left at the WAN defaults (5s), so
// nobody declares the cut-off node dead during the few seconds of the test.
func TestLostBroadcastRepairedByPushPull(t *testing.T) {
	const n = 5
	const pushPull = 300 * time.Millisecond // test only: WAN's is 60s
	tune := func(c *memberlist.Config) { c.PushPullInterval = pushPull }
	fts := make([]*faultTransport, n)
	pools := make([]*Pool, n)
	var cut recorder
	for i := range pools {
		fts[i] = newFaultTransport(t)
		cfg := testConfig(i)
		if i > 0 {
			cfg.Join = []string{pools[0].Addr()}
		}
		opts := []Option{withTransport(fts[i], tune)}
		if i == n-1 {
			opts = append(opts, WithOnChange(cut.record))
		}
		pools[i] = newTestPool(t, cfg, opts...)
		go pools[i].Run(t.Context())
	}
	for i, p := range pools {
		waitFor(t, 10*time.Second, fmt.Sprintf("pool %d sees the others", i), func() (bool, string) {
			return aliveOthers(p) == n-1, describe(p.Members())
		})
	}
	victim := pools[n-1]
	catalogOf := func(p *Pool, name string) uint64 {
		for _, m := range p.Members() {
			if m.Name == name {
				return m.Hint.CatalogVersion
			}
		}
		return 0
	}

	fts[n-1].dropUDP.Store(true)
	fts[n-1].cutTCP.Store(true)
	if err := pools[0].SetHint(func(h *Hint) { h.CatalogVersion = 9 }); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < n-1; i++ {
		waitFor(t, 10*time.Second, fmt.Sprintf("pool %d sees catalog 9", i), func() (bool, string) {
			return catalogOf(pools[i], "hr/n0") == 9, describe(pools[i].Members())
		})
	}
	// Ten push/pull intervals with the broadcast already done elsewhere.
	time.Sleep(10 * pushPull)
	if v := catalogOf(victim, "hr/n0"); v != 0 {
		t.Fatalf("the cut-off node learned catalog %d with UDP dropped and TCP cut; the fault hook leaks", v)
	}
	if fts[n-1].dropped.Load() == 0 {
		t.Fatal("the fault transport dropped no packet")
	}
	t.Logf("cut off (UDP dropped, TCP cut): %d packets dropped, catalog still 0 after %s", fts[n-1].dropped.Load(), 10*pushPull)

	fts[n-1].cutTCP.Store(false)
	start := time.Now()
	waitFor(t, 10*time.Second, "the cut-off node learns catalog 9 by push/pull", func() (bool, string) {
		return catalogOf(victim, "hr/n0") == 9, describe(victim.Members())
	})
	t.Logf("learned by push/pull %s after TCP came back (UDP still dropped, %d packets)", time.Since(start), fts[n-1].dropped.Load())
	if !strings.Contains(cut.String(), "hr/n0 alive catalog=9") {
		t.Errorf("OnChange did not report the repaired hint; it saw:%s", cut.String())
	}
}
