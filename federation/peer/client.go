package peer

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/mcpmesh/mcpmesh/trust/mtls"
)

// ClientConfig configures a Client.
type ClientConfig struct {
	// SVID is the node's X509-SVID, presented as the client certificate.
	// Required.
	SVID x509svid.Source
	// Bundles is every trust domain the node trusts now; a server's
	// certificate must verify against it. Required.
	Bundles x509bundle.Source
	// HandshakeTimeout bounds connecting to a peer address, the QUIC and
	// TLS handshakes included: an address where nothing answers fails
	// after it. Default 3s.
	HandshakeTimeout time.Duration
	// IdleTimeout closes a pooled connection with no traffic for this
	// long. Keep-alives are sent at a third of it, so a live idle
	// connection stays open and a dead peer is noticed within it: a
	// request sent to a peer that died without closing its connection
	// (killed, host lost, network cut) fails after at most this long,
	// and DoFailover moves on. Default 5s.
	IdleTimeout time.Duration
}

// Client sends HTTP/3 requests to other BUs' nodes. It keeps one QUIC
// connection per peer address, reused by every request to it, all over
// one UDP socket. Safe for concurrent use.
type Client struct {
	cfg     ClientConfig
	log     *slog.Logger
	metrics *metrics
	udp     *net.UDPConn
	tr      *quic.Transport
	h3      *http3.Transport
	qcfg    *quic.Config

	mu     sync.Mutex
	conns  map[string]*clientConn
	failed map[string]time.Time // address → when it last gave no answer (DoFailover)
	closed bool
}

// clientConn is a pooled connection, or one being dialed.
type clientConn struct {
	ready chan struct{} // closed when dialing ends
	err   error         // dial error, set before ready is closed
	conn  *quic.Conn
	cc    *http3.ClientConn
	peer  spiffeid.ID
}

// NewClient opens the client's UDP socket.
func NewClient(cfg ClientConfig, opts ...Option) (*Client, error) {
	switch {
	case cfg.SVID == nil:
		return nil, errors.New("peer client: SVID is required")
	case cfg.Bundles == nil:
		return nil, errors.New("peer client: Bundles is required")
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 3 * time.Second
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 5 * time.Second
	}
	o := newOptions(opts)
	m, err := newMetrics(o.registry)
	if err != nil {
		return nil, fmt.Errorf("peer client: register metrics: %w", err)
	}
	udp, err := net.ListenUDP("udp", nil)
	if err != nil {
		return nil, fmt.Errorf("peer client: open UDP socket: %w", err)
	}
	checkUDPBuffers(udp, o.logger, "peer client")
	return &Client{
		cfg: cfg, log: o.logger, metrics: m, udp: udp,
		tr: &quic.Transport{Conn: udp},
		h3: &http3.Transport{Logger: o.logger},
		qcfg: &quic.Config{
			HandshakeIdleTimeout: cfg.HandshakeTimeout,
			MaxIdleTimeout:       cfg.IdleTimeout,
			KeepAlivePeriod:      cfg.IdleTimeout / 3,
			MaxIncomingStreams:   -1, // servers open no request streams
			Allow0RTT:            false,
		},
		conns: map[string]*clientConn{},
	}, nil
}

// Do sends req to the node at addr (host:port, as gossip advertised it),
// which must be an mcpmesh node of trust domain td: its certificate must
// verify against the bundle source and carry
// spiffe://<td>/mcpmesh/node/<id>. req's URL needs only a path; its
// scheme and host are set to https://addr. The request is bounded by
// ctx (req's own context is replaced). An HTTP error status is an
// answer, returned with a nil error; every error means no answer: no
// connection, a refused certificate (a *HandshakeError; a server of
// another trust domain is ReasonTrustDomainMismatch), a broken
// connection, or ctx's end.
func (c *Client) Do(ctx context.Context, td spiffeid.TrustDomain, addr string, req *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := c.do(ctx, td, addr, req)
	c.observeOut(td, start, resp, err)
	return resp, err
}

// observeOut counts one request sent to a node of td since start, and
// how it ended: resp's status, or err.
func (c *Client) observeOut(td spiffeid.TrustDomain, start time.Time, resp *http.Response, err error) {
	code := "error"
	if err == nil {
		code = codeLabel(resp.StatusCode)
	}
	c.metrics.requests.WithLabelValues("out", td.Name(), code).Inc()
	c.metrics.duration.WithLabelValues("out").Observe(time.Since(start).Seconds())
}

func (c *Client) do(ctx context.Context, td spiffeid.TrustDomain, addr string, req *http.Request) (*http.Response, error) {
	if td.IsZero() {
		return nil, errors.New("peer request: the expected trust domain is missing")
	}
	cc, err := c.conn(ctx, td, addr)
	if err != nil {
		return nil, err
	}
	resp, _, err := c.send(ctx, td, addr, cc, req)
	return resp, err
}

// send sends req over cc, the connection to addr, bounded by ctx. wrote
// reports whether the HTTP/3 client began to encode the request's header
// on a request stream: until it has, nothing of the request can have
// been written, so a failure before leaves the peer without it
// (DoFailover's delivery rule, failover.go).
func (c *Client) send(ctx context.Context, td spiffeid.TrustDomain, addr string, cc *clientConn, req *http.Request) (resp *http.Response, wrote bool, err error) {
	var began atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{WroteHeaderField: func(string, []string) { began.Store(true) }})
	r := req.Clone(ctx)
	r.URL.Scheme, r.URL.Host, r.Host = "https", addr, addr
	resp, err = cc.cc.RoundTrip(r)
	if err != nil {
		err = c.sendFailed(td, addr, cc, err)
	}
	return resp, began.Load(), err
}

// sendFailed handles a request over cc that failed with err: it drops a
// connection that is no longer of use, and says what happened.
func (c *Client) sendFailed(td spiffeid.TrustDomain, addr string, cc *clientConn, err error) error {
	if cc.conn.Context().Err() != nil {
		c.drop(addr, cc)
	}
	if isTLSAlert(err) {
		// In TLS 1.3 the server checks the client certificate after
		// the client finished its handshake: its refusal arrives with
		// the first request.
		c.drop(addr, cc)
		c.metrics.handshakes.WithLabelValues(ReasonRefusedByPeer).Inc()
		return fmt.Errorf("peer %s (%s) refused this node's certificate (%s): does the manifest relate the two trust domains, and has %s stored this trust domain's bundle? %w", addr, td.Name(), ReasonRefusedByPeer, td.Name(), err)
	}
	return fmt.Errorf("peer request to %s (%s): %w", addr, td.Name(), err)
}

// conn returns the pooled connection to addr, dialing one if needed, and
// checks that its peer is a node of td.
func (c *Client) conn(ctx context.Context, td spiffeid.TrustDomain, addr string) (*clientConn, error) {
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, errors.New("peer client is closed")
		}
		cc, ok := c.conns[addr]
		if !ok {
			cc = &clientConn{ready: make(chan struct{})}
			c.conns[addr] = cc
			c.mu.Unlock()
			go c.dial(td, addr, cc)
		} else {
			c.mu.Unlock()
		}
		select {
		case <-cc.ready:
		case <-ctx.Done():
			return nil, fmt.Errorf("connect to peer %s (%s): %w", addr, td.Name(), context.Cause(ctx))
		}
		if cc.err != nil {
			c.drop(addr, cc)
			// A dial started for another trust domain's request failed
			// its check; this request's own dial may succeed.
			var he *HandshakeError
			if errors.As(cc.err, &he) && he.Reason == ReasonTrustDomainMismatch && !he.Expected.IsZero() && he.Expected != td {
				continue
			}
			return nil, cc.err
		}
		if cc.conn.Context().Err() != nil {
			c.drop(addr, cc)
			continue
		}
		if cc.peer.TrustDomain() != td {
			// The pooled connection was verified for another trust domain:
			// this address is not td's node, whatever gossip says.
			c.metrics.handshakes.WithLabelValues(ReasonTrustDomainMismatch).Inc()
			return nil, &HandshakeError{Reason: ReasonTrustDomainMismatch, Peer: cc.peer.String(), Expected: td,
				Err: fmt.Errorf("refusing to send to %s: the address was advertised (gossip) for the other trust domain; a forged or stale advertisement", addr)}
		}
		return cc, nil
	}
}

// dial connects to addr, expecting a node of td, and publishes the
// result in cc. It runs detached from any one request, so a cancelled
// request does not waste a handshake others wait for; the handshake
// timeout bounds it.
func (c *Client) dial(td spiffeid.TrustDomain, addr string, cc *clientConn) {
	defer close(cc.ready)
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		cc.err = fmt.Errorf("connect to peer %s (%s): %w", addr, td.Name(), err)
		return
	}
	v := verifier{bundles: c.cfg.Bundles, expect: td}
	var refused error
	var peer spiffeid.ID
	tlsCfg := mtls.ClientConfig(c.cfg.SVID, c.cfg.Bundles, tlsconfig.AuthorizeAny(), http3.NextProtoH3)
	tlsCfg.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
		id, err := v.verify(raw)
		if err != nil {
			refused = err
			return err
		}
		peer = id
		return nil
	}
	tlsCfg.ServerName = host(addr)
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.HandshakeTimeout+time.Second)
	defer cancel()
	conn, err := c.tr.Dial(ctx, ua, tlsCfg, c.qcfg)
	if err != nil {
		reason := ReasonOther
		switch {
		case refused != nil:
			var he *HandshakeError
			if errors.As(refused, &he) {
				reason = he.Reason
			}
			err = refused
		case isTimeout(err):
			reason = ReasonTimeout
		case isTLSAlert(err):
			reason = ReasonRefusedByPeer
		}
		c.metrics.handshakes.WithLabelValues(reason).Inc()
		if reason == ReasonTrustDomainMismatch {
			cc.err = err
			return
		}
		cc.err = fmt.Errorf("connect to peer %s (%s): %s: %w", addr, td.Name(), reason, err)
		return
	}
	cc.conn, cc.peer = conn, peer
	cc.cc = c.h3.NewClientConn(conn)
}

func host(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// isTLSAlert reports a handshake the peer aborted with a TLS alert (a
// QUIC CRYPTO_ERROR), as a server does that refuses the client's
// certificate.
func isTLSAlert(err error) bool {
	var te *quic.TransportError
	return errors.As(err, &te) && te.ErrorCode.IsCryptoError()
}

// drop removes cc from the pool if it is still addr's entry.
func (c *Client) drop(addr string, cc *clientConn) {
	c.mu.Lock()
	if c.conns[addr] == cc {
		delete(c.conns, addr)
	}
	c.mu.Unlock()
}

// Revalidate closes the pooled connections whose server no longer passes
// the checks against the current bundle source (its trust domain
// revoked or rotated away); the next request to it reconnects and is
// checked afresh. Call it after replacing the bundle set. It returns the
// number of connections closed. It also ends DoFailover's penalty of
// addresses that failed: under the new trust they may answer (a node
// refused until its BU's bundle was stored, say).
func (c *Client) Revalidate() int {
	c.mu.Lock()
	clear(c.failed)
	type entry struct {
		addr string
		cc   *clientConn
	}
	var ready []entry
	for addr, cc := range c.conns {
		select {
		case <-cc.ready:
			if cc.err == nil {
				ready = append(ready, entry{addr, cc})
			}
		default:
		}
	}
	c.mu.Unlock()
	closed := 0
	for _, e := range ready {
		state := e.cc.conn.ConnectionState().TLS
		raw := make([][]byte, len(state.PeerCertificates))
		for i, cert := range state.PeerCertificates {
			raw[i] = cert.Raw
		}
		v := verifier{bundles: c.cfg.Bundles, expect: e.cc.peer.TrustDomain()}
		if _, err := v.verify(raw); err != nil {
			c.drop(e.addr, e.cc)
			e.cc.conn.CloseWithError(revokedCode, truncate(fmt.Sprintf("%v: %v", ErrRevoked, err), 200))
			closed++
		}
	}
	return closed
}

// Close closes every connection and the socket.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	conns := c.conns
	c.conns = nil
	c.mu.Unlock()
	for _, cc := range conns {
		<-cc.ready
		if cc.conn != nil {
			cc.conn.CloseWithError(revokedCode, "client closing")
		}
	}
	err := c.tr.Close()
	return errors.Join(ignoreClosed([]error{err, c.udp.Close()})...)
}
