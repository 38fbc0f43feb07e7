package peer

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/mcpmesh/mcpmesh/trust/bundles"
	"github.com/mcpmesh/mcpmesh/trust/ca"
)

var (
	financeTD = spiffeid.RequireTrustDomainFromString("finance.example.corp")
	hrTD      = spiffeid.RequireTrustDomainFromString("hr.example.corp")
	salesTD   = spiffeid.RequireTrustDomainFromString("sales.example.corp")
)

// bu is one BU's trust material for a test: its CA and its bundle set.
type bu struct {
	td  spiffeid.TrustDomain
	ca  *ca.CA
	set *bundles.Set
}

func newBU(t *testing.T, td spiffeid.TrustDomain, opts ...ca.Option) *bu {
	t.Helper()
	c, err := ca.Init(t.TempDir(), td, opts...)
	if err != nil {
		t.Fatal(err)
	}
	own, err := bundles.OwnBundle(0, c)
	if err != nil {
		t.Fatal(err)
	}
	set, err := bundles.NewSet(own, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &bu{td: td, ca: c, set: set}
}

// own returns the BU's own bundle as other BUs store it.
func (b *bu) own(t *testing.T) *spiffebundle.Bundle {
	t.Helper()
	return b.set.Own()
}

// trust makes b trust exactly the given other BUs (besides itself).
func (b *bu) trust(t *testing.T, others ...*bu) {
	t.Helper()
	var foreign []*spiffebundle.Bundle
	for _, o := range others {
		foreign = append(foreign, o.own(t))
	}
	if err := b.set.Replace(b.set.Own(), foreign); err != nil {
		t.Fatal(err)
	}
}

func (b *bu) node(t *testing.T, name string) *x509svid.SVID {
	t.Helper()
	return issue(t, b.ca, spiffeid.RequireFromPath(b.td, "/mcpmesh/node/"+name))
}

func issue(t *testing.T, c *ca.CA, id spiffeid.ID) *x509svid.SVID {
	t.Helper()
	s, err := c.IssueX509SVID(id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// whoami answers with the caller's SPIFFE ID.
var whoami = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	id, err := PeerID(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	if r.URL.Path == "/federation/v1/teapot" {
		w.WriteHeader(http.StatusTeapot)
	}
	fmt.Fprint(w, id.String())
})

func startServer(t *testing.T, b *bu, authorize func(spiffeid.ID) error, reg prometheus.Registerer) *Server {
	t.Helper()
	opts := []Option{}
	if reg != nil {
		opts = append(opts, WithMetrics(reg))
	}
	s, err := NewServer(ServerConfig{
		Listen:      "127.0.0.1:0",
		TrustDomain: b.td,
		SVID:        b.node(t, "server-1"),
		Bundles:     b.set,
		OwnBundle:   b.set,
		Authorize:   authorize,
		Handler:     whoami,
	}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("server Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("server Run did not return within 10s of cancel")
		}
	})
	return s
}

func newClient(t *testing.T, b *bu, svid *x509svid.SVID, reg prometheus.Registerer) *Client {
	t.Helper()
	opts := []Option{}
	if reg != nil {
		opts = append(opts, WithMetrics(reg))
	}
	c, err := NewClient(ClientConfig{SVID: svid, Bundles: b.set, HandshakeTimeout: 2 * time.Second}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// get sends GET path to addr for td and returns status and body.
func get(t *testing.T, c *Client, td spiffeid.TrustDomain, addr, path string) (int, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequest(http.MethodGet, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(ctx, td, addr, req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, "", err
	}
	return resp.StatusCode, string(body), nil
}

// deadUDPAddr returns a loopback UDP address nothing listens on.
func deadUDPAddr(t *testing.T) string {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	addr := c.LocalAddr().String()
	c.Close()
	return addr
}

// waitFor polls cond every 10ms for up to 10s; it fails with what last
// saw on timeout.
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
		time.Sleep(10 * time.Millisecond)
	}
}

func ftoa(f float64) string { return fmt.Sprint(f) }
func itoa(i int) string     { return fmt.Sprint(i) }

func newBUF(f *testing.F, name string) *bu {
	td := spiffeid.RequireTrustDomainFromString(name)
	c, err := ca.Init(f.TempDir(), td)
	if err != nil {
		f.Fatal(err)
	}
	own, err := bundles.OwnBundle(0, c)
	if err != nil {
		f.Fatal(err)
	}
	set, err := bundles.NewSet(own, nil)
	if err != nil {
		f.Fatal(err)
	}
	return &bu{td: td, ca: c, set: set}
}

func (b *bu) trustF(f *testing.F, other *bu) {
	if err := b.set.Replace(b.set.Own(), []*spiffebundle.Bundle{other.set.Own()}); err != nil {
		f.Fatal(err)
	}
}

func mustNodeID(b *bu, name string) spiffeid.ID {
	return spiffeid.RequireFromPath(b.td, "/mcpmesh/node/"+name)
}

func newBUB(b *testing.B, td spiffeid.TrustDomain) *bu {
	c, err := ca.Init(b.TempDir(), td)
	if err != nil {
		b.Fatal(err)
	}
	own, err := bundles.OwnBundle(0, c)
	if err != nil {
		b.Fatal(err)
	}
	set, err := bundles.NewSet(own, nil)
	if err != nil {
		b.Fatal(err)
	}
	return &bu{td: td, ca: c, set: set}
}

func (b *bu) trustB(tb testing.TB, other *bu) {
	if err := b.set.Replace(b.set.Own(), []*spiffebundle.Bundle{other.set.Own()}); err != nil {
		tb.Fatal(err)
	}
}

func (b *bu) nodeB(tb testing.TB, name string) *x509svid.SVID {
	s, err := b.ca.IssueX509SVID(mustNodeID(b, name), time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}
