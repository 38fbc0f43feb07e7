package bundles

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/federation"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/mcpmesh/mcpmesh/registry/state"
	"github.com/mcpmesh/mcpmesh/trust/ca"
)

var (
	financeTD = spiffeid.RequireTrustDomainFromString("finance.example.corp")
	hrTD      = spiffeid.RequireTrustDomainFromString("hr.example.corp")
)

func newCA(t *testing.T, td spiffeid.TrustDomain, opts ...ca.Option) *ca.CA {
	t.Helper()
	c, err := ca.Init(t.TempDir(), td, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ownBundle(t *testing.T, cas ...*ca.CA) *spiffebundle.Bundle {
	t.Helper()
	b, err := OwnBundle(0, cas...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSetReplaceRevokes(t *testing.T) {
	hr, finance := newCA(t, hrTD), newCA(t, financeTD)
	reg := prometheus.NewRegistry()
	s, err := NewSet(ownBundle(t, hr), []*spiffebundle.Bundle{ownBundle(t, finance)}, WithMetrics(reg))
	if err != nil {
		t.Fatal(err)
	}
	for _, td := range []spiffeid.TrustDomain{hrTD, financeTD} {
		if _, err := s.GetX509BundleForTrustDomain(td); err != nil {
			t.Errorf("x509 bundle of %s: %v", td, err)
		}
		if _, err := s.GetJWTBundleForTrustDomain(td); err != nil {
			t.Errorf("JWT bundle of %s: %v", td, err)
		}
	}
	if n, err := testutil.GatherAndCount(reg, "mcpmesh_federation_bundle_sequence"); err != nil || n != 2 {
		t.Errorf("sequence series = %d, %v; want 2", n, err)
	}
	changed := s.Changed()
	// Revocation: finance left out of the new set is no longer trusted.
	if err := s.Replace(ownBundle(t, hr), nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	default:
		t.Error("Changed was not closed by Replace")
	}
	if _, err := s.GetX509BundleForTrustDomain(financeTD); !errors.Is(err, ErrNotTrusted) {
		t.Errorf("finance after revocation: err = %v, want ErrNotTrusted", err)
	}
	if got := s.TrustDomains(); len(got) != 1 || got[0] != hrTD {
		t.Errorf("trust domains after revocation = %v, want [hr]", got)
	}
	// Bad replacements leave the set as it was.
	if err := s.Replace(ownBundle(t, hr), []*spiffebundle.Bundle{ownBundle(t, hr)}); err == nil || !strings.Contains(err.Error(), "given twice") {
		t.Errorf("own trust domain as foreign: err = %v", err)
	}
	if err := s.Replace(nil, nil); err == nil {
		t.Error("Replace without an own bundle succeeded")
	}
	if !s.Has(hrTD) {
		t.Error("a refused Replace changed the set")
	}
}

func TestOwnBundleSequence(t *testing.T) {
	old := newCA(t, financeTD)
	// A second CA of the same trust domain, made later, as in a rotation.
	later := time.Now().Add(5 * time.Second)
	next := newCA(t, financeTD, ca.WithClock(func() time.Time { return later }))

	before := ownBundle(t, old)
	again := ownBundle(t, old)
	during := ownBundle(t, old, next)
	after := ownBundle(t, next)
	seq := func(b *spiffebundle.Bundle) uint64 { n, _ := b.SequenceNumber(); return n }
	if seq(before) != seq(again) {
		t.Errorf("sequence differs between two builds from one CA: %d, %d (replicas must agree)", seq(before), seq(again))
	}
	if !(seq(before) < seq(during) && seq(during) < seq(after)) {
		t.Errorf("sequence through a rotation: %d, %d, %d; want rising", seq(before), seq(during), seq(after))
	}
	if len(during.X509Authorities()) != 2 || len(during.JWTAuthorities()) != 2 {
		t.Errorf("during the rotation: %d X.509 and %d JWT authorities, want 2 and 2", len(during.X509Authorities()), len(during.JWTAuthorities()))
	}
	if hint, ok := before.RefreshHint(); !ok || hint != DefaultRefreshHint {
		t.Errorf("refresh hint %s, %v", hint, ok)
	}
	if _, err := OwnBundle(0, old, newCA(t, hrTD)); err == nil {
		t.Error("CAs of two trust domains made one bundle")
	}
}

// fsmProposer applies proposed commands to a real registry FSM, as the
// BU's Raft group would.
type fsmProposer struct {
	t     *testing.T
	fsm   *state.FSM
	mu    sync.Mutex
	index uint64
	puts  int
	after func() // run after each applied command (a replica rebuilding its set)
}

func newFSMProposer(t *testing.T) *fsmProposer {
	t.Helper()
	f, err := state.Open("state", state.WithFS(vfs.NewMem()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &fsmProposer{t: t, fsm: f}
}

func (p *fsmProposer) propose(_ context.Context, cmd []byte) error {
	p.mu.Lock()
	p.index++
	if state.CommandType(cmd[0]) == state.CmdPutBundle {
		p.puts++
	}
	res := p.fsm.Apply(&raft.Log{Index: p.index, Term: 1, Type: raft.LogCommand, Data: cmd})
	after := p.after
	p.mu.Unlock()
	if err, ok := res.(error); ok {
		return err
	}
	if after != nil {
		after()
	}
	return nil
}

func (p *fsmProposer) stored(td spiffeid.TrustDomain) (uint64, bool) {
	fb, err := p.fsm.ForeignBundle(td.Name())
	if err != nil {
		return 0, false
	}
	return fb.Sequence, true
}

// endpoint serves a trust domain's bundle (https_spiffe) from a bundle
// the test changes, and counts fetches.
type endpoint struct {
	srv     *httptest.Server
	url     string
	id      spiffeid.ID
	mu      sync.Mutex
	bundle  *spiffebundle.Bundle
	fetches atomic.Int64
}

func newEndpoint(t *testing.T, c *ca.CA, b *spiffebundle.Bundle) *endpoint {
	t.Helper()
	e := &endpoint{id: spiffeid.RequireFromPath(c.TrustDomain(), "/mcpmesh/node/n1"), bundle: b}
	svid, err := c.IssueX509SVID(e.id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	h, err := federation.NewHandler(c.TrustDomain(), e)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.fetches.Add(1)
		h.ServeHTTP(w, r)
	}))
	// Not StartTLS: it adds httptest's own certificate, which a client
	// without SNI (an IP address) would get instead of the SVID.
	e.srv.Listener = tls.NewListener(e.srv.Listener, tlsconfig.TLSServerConfig(svid))
	e.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	e.srv.Start()
	e.url = "https://" + e.srv.Listener.Addr().String() + "/"
	t.Cleanup(e.srv.Close)
	return e
}

func (e *endpoint) GetBundleForTrustDomain(spiffeid.TrustDomain) (*spiffebundle.Bundle, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.bundle.Clone(), nil
}

func (e *endpoint) serve(b *spiffebundle.Bundle) {
	e.mu.Lock()
	e.bundle = b
	e.mu.Unlock()
}

func withSeq(b *spiffebundle.Bundle, seq uint64) *spiffebundle.Bundle {
	c := b.Clone()
	c.SetSequenceNumber(seq)
	c.SetRefreshHint(time.Millisecond) // clamped to MinRefresh
	return c
}

func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s; last saw %s", what, last)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func deadURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "https://" + addr + "/"
}

func memFS() vfs.FS { return vfs.NewMem() }

func newCAForFuzz(f *testing.F) (*ca.CA, error) {
	return ca.Init(f.TempDir(), financeTD)
}
