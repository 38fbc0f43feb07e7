package peer

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spiffe/go-spiffe/v2/federation"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func TestMutualTLSAcrossTrustDomains(t *testing.T) {
	finance, hr := newBU(t, financeTD), newBU(t, hrTD)
	finance.trust(t, hr)
	hr.trust(t, finance)
	reg := prometheus.NewRegistry()
	srv := startServer(t, finance, nil, reg)
	hrNode := hr.node(t, "n1")
	c := newClient(t, hr, hrNode, reg) // same registry: shared collectors

	for i := range 3 {
		code, body, err := get(t, c, financeTD, srv.Addr().String(), "/federation/v1/whoami")
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if code != http.StatusOK || body != hrNode.ID.String() {
			t.Fatalf("request %d: %d %q; want 200 and the caller's ID %s", i, code, body, hrNode.ID)
		}
	}
	// The three requests shared one connection.
	if n := srv.Connections(); n != 1 {
		t.Errorf("server holds %d connections after 3 requests from one client; want 1 (reuse)", n)
	}
	// An HTTP error status is an answer, not an error.
	if code, _, err := get(t, c, financeTD, srv.Addr().String(), "/federation/v1/teapot"); err != nil || code != http.StatusTeapot {
		t.Errorf("teapot: %d, %v; want 418 and no error", code, err)
	}
	if got := testutil.ToFloat64(c.metrics.requests.WithLabelValues("out", "finance.example.corp", "200")); got != 3 {
		t.Errorf("out requests 200 = %v, want 3", got)
	}
	if got := testutil.ToFloat64(srv.metrics.requests.WithLabelValues("in", "hr.example.corp", "418")); got != 1 {
		t.Errorf("in requests from hr 418 = %v, want 1", got)
	}
}

func TestRefusedPeers(t *testing.T) {
	finance, hr, sales := newBU(t, financeTD), newBU(t, hrTD), newBU(t, salesTD)
	finance.trust(t, hr)
	hr.trust(t, finance)
	sales.trust(t, finance) // sales trusts finance, finance does not trust sales
	refuseHR := func(id spiffeid.ID) error {
		if id.MemberOf(hrTD) {
			return errors.New("the manifest has no relationship from hr to finance")
		}
		return nil
	}

	t.Run("unknown trust domain", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		srv := startServer(t, finance, nil, reg)
		c := newClient(t, sales, sales.node(t, "n1"), nil)
		_, _, err := get(t, c, financeTD, srv.Addr().String(), "/federation/v1/whoami")
		if err == nil {
			t.Fatal("a node of a trust domain finance does not trust was served")
		}
		if !strings.Contains(err.Error(), ReasonRefusedByPeer) {
			t.Errorf("client error %q; want the reason %s", err, ReasonRefusedByPeer)
		}
		waitFor(t, "server counts the refusal", func() (bool, string) {
			n := testutil.ToFloat64(srv.metrics.handshakes.WithLabelValues(ReasonUntrustedTrustDomain))
			return n == 1, "untrusted_trust_domain=" + ftoa(n)
		})
	})
	t.Run("authorize hook", func(t *testing.T) {
		srv := startServer(t, finance, refuseHR, nil)
		c := newClient(t, hr, hr.node(t, "n1"), nil)
		if _, _, err := get(t, c, financeTD, srv.Addr().String(), "/federation/v1/whoami"); err == nil {
			t.Fatal("a peer the Authorize hook refuses was served")
		}
		waitFor(t, "server counts the refusal", func() (bool, string) {
			n := testutil.ToFloat64(srv.metrics.handshakes.WithLabelValues(ReasonUnauthorized))
			return n == 1, "unauthorized=" + ftoa(n)
		})
	})
	t.Run("not a node", func(t *testing.T) {
		srv := startServer(t, finance, nil, nil)
		agent := issue(t, hr.ca, spiffeid.RequireFromPath(hrTD, "/agent/payroll"))
		c := newClient(t, hr, agent, nil)
		if _, _, err := get(t, c, financeTD, srv.Addr().String(), "/federation/v1/whoami"); err == nil {
			t.Fatal("an agent's SVID was accepted on the peer listener")
		}
	})
	t.Run("server not a node", func(t *testing.T) {
		// The client refuses a server of the right trust domain whose ID
		// is not a node's.
		srv, err := NewServer(ServerConfig{Listen: "127.0.0.1:0", TrustDomain: financeTD,
			SVID: issue(t, finance.ca, spiffeid.RequireFromPath(financeTD, "/agent/impostor")), Bundles: finance.set, OwnBundle: finance.set, Handler: whoami})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go srv.Run(ctx)
		c := newClient(t, hr, hr.node(t, "n1"), nil)
		_, _, err = get(t, c, financeTD, srv.Addr().String(), "/federation/v1/whoami")
		var he *HandshakeError
		if !errors.As(err, &he) || he.Reason != ReasonUnauthorized {
			t.Fatalf("err = %v; want a HandshakeError with reason %s", err, ReasonUnauthorized)
		}
	})
}

func TestForgedAdvertisement(t *testing.T) {
	finance, hr := newBU(t, financeTD), newBU(t, hrTD)
	sales := newBU(t, salesTD)
	// sales trusts both; hr's node sits at an address gossip claims for finance.
	sales.trust(t, finance, hr)
	hr.trust(t, sales)
	hrSrv := startServer(t, hr, nil, nil)
	c := newClient(t, sales, sales.node(t, "n1"), nil)

	_, _, err := get(t, c, financeTD, hrSrv.Addr().String(), "/federation/v1/catalog")
	var he *HandshakeError
	if !errors.As(err, &he) || he.Reason != ReasonTrustDomainMismatch {
		t.Fatalf("err = %v; want a HandshakeError with reason %s", err, ReasonTrustDomainMismatch)
	}
	for _, want := range []string{"finance.example.corp", "hr.example.corp"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name trust domain %s", err, want)
		}
	}
	// With a connection to hr's node pooled for hr, a request claiming
	// finance at that address is refused before anything is sent.
	if code, _, err := get(t, c, hrTD, hrSrv.Addr().String(), "/federation/v1/whoami"); err != nil || code != 200 {
		t.Fatalf("request to hr as hr: %d, %v", code, err)
	}
	served := testutil.ToFloat64(hrSrv.metrics.requests.WithLabelValues("in", "sales.example.corp", "200"))
	_, _, err = get(t, c, financeTD, hrSrv.Addr().String(), "/federation/v1/catalog")
	if !errors.As(err, &he) || he.Reason != ReasonTrustDomainMismatch || !strings.Contains(err.Error(), "finance.example.corp") || !strings.Contains(err.Error(), "hr.example.corp") {
		t.Fatalf("over a pooled hr connection: err = %v; want a mismatch naming both trust domains", err)
	}
	if now := testutil.ToFloat64(hrSrv.metrics.requests.WithLabelValues("in", "sales.example.corp", "200")); now != served {
		t.Errorf("hr's node served %v requests after the refused one, want %v: the request was sent", now, served)
	}
}

func TestNoSessionResumption(t *testing.T) {
	finance, hr := newBU(t, financeTD), newBU(t, hrTD)
	finance.trust(t, hr)
	hr.trust(t, finance)
	srv := startServer(t, finance, nil, nil)

	scfg := srv.quicTLSConfig()
	if !scfg.SessionTicketsDisabled || scfg.MinVersion != tls.VersionTLS13 || scfg.ClientAuth != tls.RequireAnyClientCert {
		t.Errorf("server TLS: tickets disabled %v, min version %x, client auth %v; want true, TLS 1.3, required", scfg.SessionTicketsDisabled, scfg.MinVersion, scfg.ClientAuth)
	}
	if srv.bundle.TLSConfig.SessionTicketsDisabled != true || srv.bundle.TLSConfig.MinVersion != tls.VersionTLS13 {
		t.Errorf("bundle endpoint TLS: tickets disabled %v, min version %x", srv.bundle.TLSConfig.SessionTicketsDisabled, srv.bundle.TLSConfig.MinVersion)
	}
	c := newClient(t, hr, hr.node(t, "n1"), nil)
	if c.qcfg.Allow0RTT {
		t.Error("client QUIC config allows 0-RTT")
	}
	// Two connections in a row: the second is a full handshake.
	for i := range 2 {
		req, _ := http.NewRequest(http.MethodGet, "/federation/v1/whoami", nil)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp, err := c.Do(ctx, financeTD, srv.Addr().String(), req)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		resp.Body.Close()
		cancel()
		if resp.TLS.DidResume || resp.TLS.Version != tls.VersionTLS13 || resp.TLS.NegotiatedProtocol != "h3" {
			t.Errorf("connection %d: resumed %v, version %x, ALPN %q", i, resp.TLS.DidResume, resp.TLS.Version, resp.TLS.NegotiatedProtocol)
		}
		c.mu.Lock()
		for _, cc := range c.conns {
			cc.conn.CloseWithError(0, "test: reconnect")
		}
		c.conns = map[string]*clientConn{}
		c.mu.Unlock()
	}
}

func TestFailover(t *testing.T) {
	finance, hr := newBU(t, financeTD), newBU(t, hrTD)
	finance.trust(t, hr)
	hr.trust(t, finance)
	srv := startServer(t, finance, nil, nil)
	c, err := NewClient(ClientConfig{SVID: hr.node(t, "n1"), Bundles: hr.set, HandshakeTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Not safe to repeat: a dead address is still passed, since nothing
	// was sent to it.
	newReq := func(ctx context.Context, _ spiffeid.ID) (*http.Request, error) {
		return http.NewRequestWithContext(ctx, http.MethodGet, "/federation/v1/whoami", nil)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	dead := deadUDPAddr(t)
	live := srv.Addr().String()
	start := time.Now()
	resp, addr, err := c.DoFailover(ctx, financeTD, []string{dead, live}, 2*time.Second, false, newReq)
	if err != nil {
		t.Fatalf("failover past a dead address: %v", err)
	}
	resp.Body.Close()
	if addr != live || resp.StatusCode != 200 {
		t.Errorf("answered by %s with %d; want %s with 200", addr, resp.StatusCode, live)
	}
	t.Logf("failover past one dead address took %s (handshake timeout 300ms)", time.Since(start))

	// While its failure is recent the dead address is tried last: the
	// next request does not wait for its handshake again.
	timeouts := testutil.ToFloat64(c.metrics.handshakes.WithLabelValues(ReasonTimeout))
	if timeouts != 1 {
		t.Fatalf("%v handshake timeouts after one dead address; want 1", timeouts)
	}
	resp, addr, err = c.DoFailover(ctx, financeTD, []string{dead, live}, 2*time.Second, false, newReq)
	if err != nil || addr != live {
		t.Fatalf("second request: %v from %s; want an answer from %s", err, addr, live)
	}
	resp.Body.Close()
	if got := testutil.ToFloat64(c.metrics.handshakes.WithLabelValues(ReasonTimeout)); got != timeouts {
		t.Errorf("the dead address was dialled again first (%v handshake timeouts, %v before)", got, timeouts)
	}
	// A new bundle set ends the penalty: the address is tried first again.
	c.Revalidate()
	resp, addr, err = c.DoFailover(ctx, financeTD, []string{dead, live}, 2*time.Second, false, newReq)
	if err != nil || addr != live {
		t.Fatalf("request after Revalidate: %v from %s; want an answer from %s", err, addr, live)
	}
	resp.Body.Close()
	if got := testutil.ToFloat64(c.metrics.handshakes.WithLabelValues(ReasonTimeout)); got != timeouts+1 {
		t.Errorf("after Revalidate the dead address was not tried first (%v handshake timeouts, %v before)", got, timeouts)
	}

	// An HTTP error answer is not failed over.
	teapot := func(ctx context.Context, _ spiffeid.ID) (*http.Request, error) {
		return http.NewRequestWithContext(ctx, http.MethodGet, "/federation/v1/teapot", nil)
	}
	resp, addr, err = c.DoFailover(ctx, financeTD, []string{live, dead}, 2*time.Second, false, teapot)
	if err != nil || addr != live || resp.StatusCode != http.StatusTeapot {
		t.Fatalf("teapot: %v %s %v; want 418 from the first address", err, addr, resp)
	}
	resp.Body.Close()

	// None answers: one error listing every address and its reason.
	dead2 := deadUDPAddr(t)
	_, _, err = c.DoFailover(ctx, financeTD, []string{dead, dead2}, 2*time.Second, false, newReq)
	var ue *UnavailableError
	if !errors.As(err, &ue) || len(ue.Attempts) != 2 {
		t.Fatalf("err = %v; want an UnavailableError with 2 attempts", err)
	}
	for _, want := range []string{dead, dead2, "finance.example.corp", ReasonTimeout} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}

func TestBundleEndpoint(t *testing.T) {
	finance := newBU(t, financeTD)
	srv := startServer(t, finance, nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The https_spiffe profile: authenticate the endpoint by its SPIFFE ID
	// against finance's bundle (from the manifest's bootstrap bundle).
	endpointID := spiffeid.RequireFromPath(financeTD, "/mcpmesh/node/server-1")
	got, err := federation.FetchBundle(ctx, financeTD, srv.BundleEndpointURL(), federation.WithSPIFFEAuth(finance.own(t), endpointID))
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(finance.own(t)) {
		t.Errorf("fetched bundle differs from finance's own bundle")
	}
	if seq, ok := got.SequenceNumber(); !ok || seq == 0 {
		t.Errorf("fetched bundle sequence %d, %v; want one", seq, ok)
	}
	// Another endpoint ID is refused: the client authenticates the server.
	wrong := spiffeid.RequireFromPath(financeTD, "/mcpmesh/node/other")
	if _, err := federation.FetchBundle(ctx, financeTD, srv.BundleEndpointURL(), federation.WithSPIFFEAuth(finance.own(t), wrong)); err == nil {
		t.Error("fetch with the wrong endpoint SPIFFE ID succeeded")
	}
}

func TestRevocationClosesConnections(t *testing.T) {
	finance, hr := newBU(t, financeTD), newBU(t, hrTD)
	finance.trust(t, hr)
	hr.trust(t, finance)
	srv := startServer(t, finance, nil, nil)
	c := newClient(t, hr, hr.node(t, "n1"), nil)
	addr := srv.Addr().String()
	if _, _, err := get(t, c, financeTD, addr, "/federation/v1/whoami"); err != nil {
		t.Fatal(err)
	}
	if n := srv.Revalidate(); n != 0 {
		t.Fatalf("Revalidate closed %d connections of a trusted peer", n)
	}

	// Central security revokes hr: finance's set no longer holds it.
	finance.trust(t)
	if n := srv.Revalidate(); n != 1 {
		t.Fatalf("Revalidate closed %d connections after hr's revocation; want 1", n)
	}
	waitFor(t, "hr's connection closed", func() (bool, string) {
		n := srv.Connections()
		return n == 0, itoa(n) + " connections"
	})
	_, _, err := get(t, c, financeTD, addr, "/federation/v1/whoami")
	if err == nil {
		t.Fatal("hr's node was served after revocation")
	}
	// A fresh client is refused at its handshake too.
	c2 := newClient(t, hr, hr.node(t, "n2"), nil)
	if _, _, err := get(t, c2, financeTD, addr, "/federation/v1/whoami"); err == nil {
		t.Fatal("a new connection from hr was accepted after revocation")
	}

	// The client side: hr revokes finance, and its pooled connection goes.
	finance.trust(t, hr)
	c3 := newClient(t, hr, hr.node(t, "n3"), nil)
	if _, _, err := get(t, c3, financeTD, addr, "/federation/v1/whoami"); err != nil {
		t.Fatal(err)
	}
	hr.trust(t)
	if n := c3.Revalidate(); n != 1 {
		t.Errorf("client Revalidate closed %d connections after finance's revocation; want 1", n)
	}
	if _, _, err := get(t, c3, financeTD, addr, "/federation/v1/whoami"); err == nil {
		t.Error("request to a revoked trust domain succeeded")
	}
}

func TestServerClosesWithClientsConnected(t *testing.T) {
	finance, hr := newBU(t, financeTD), newBU(t, hrTD)
	finance.trust(t, hr)
	hr.trust(t, finance)
	srv, err := NewServer(ServerConfig{Listen: "127.0.0.1:0", TrustDomain: financeTD, SVID: finance.node(t, "s"),
		Bundles: finance.set, OwnBundle: finance.set, Handler: whoami})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	c := newClient(t, hr, hr.node(t, "n1"), nil)
	if _, _, err := get(t, c, financeTD, srv.Addr().String(), "/federation/v1/whoami"); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s with a client connected")
	}
	if _, _, err := get(t, c, financeTD, srv.Addr().String(), "/federation/v1/whoami"); err == nil {
		t.Error("a closed server answered")
	}
}
