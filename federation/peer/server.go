package peer

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/federation"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/mcpmesh/mcpmesh/trust/mtls"
)

// DefaultMaxIncomingStreams is the number of concurrent requests one peer
// connection may carry. A calling node sends every forwarded MCP call and
// its catalog long-poll to a node of this BU over one connection, so the
// QUIC default of 100 would queue the 101st concurrent call from a busy
// BU. 1000 lets a peer node carry a load-test's concurrency; each open
// stream costs a few kilobytes of flow-control state.
const DefaultMaxIncomingStreams = 1000

// ErrRevoked is the reason given to a peer whose established connection
// Revalidate closes.
var ErrRevoked = errors.New("peer no longer trusted")

// revokedCode is the HTTP/3 application error code of a connection the
// server closes, H3_NO_ERROR: HTTP/3 has no code for a policy decision,
// so the reason phrase says what happened.
const revokedCode = quic.ApplicationErrorCode(http3.ErrCodeNoError)

// ServerConfig configures a Server.
type ServerConfig struct {
	// Listen is the host:port bound on UDP (HTTP/3) and, with the same
	// port number, on TCP (the SPIFFE bundle endpoint):
	// federation.peer.listen. Port 0 picks a free port for both.
	Listen string
	// TrustDomain is the node's own trust domain, whose bundle the bundle
	// endpoint serves.
	TrustDomain spiffeid.TrustDomain
	// SVID is the node's X509-SVID (spiffe://<td>/mcpmesh/node/<id>),
	// presented on both listeners. Required.
	SVID x509svid.Source
	// Bundles is every trust domain the node trusts now (the own one and
	// the foreign ones): a client certificate must verify against it.
	// It is read at each handshake, so a swapped set (bundles.Set)
	// applies to the next connection. Required.
	Bundles x509bundle.Source
	// OwnBundle is the source of the own trust domain's bundle served at
	// the bundle endpoint; bundles.Set serves. Required.
	OwnBundle spiffebundle.Source
	// Authorize decides whether a verified node may connect, after its
	// certificate verified and its path is a node path: the lead checks
	// the manifest's relationships here. A refused peer gets a TLS
	// failure. Nil accepts every verified node.
	Authorize func(peer spiffeid.ID) error
	// Handler serves the HTTP/3 requests (/federation/v1/...). It reads
	// the caller with PeerID. Required.
	Handler http.Handler
	// MaxIncomingStreams bounds concurrent requests per connection.
	// Default DefaultMaxIncomingStreams.
	MaxIncomingStreams int64
	// IdleTimeout closes a connection with no traffic (QUIC keep-alives
	// count) for this long. Default 60s.
	IdleTimeout time.Duration
}

// Server is a node's peer listener: HTTP/3 over QUIC with SPIFFE mutual
// TLS for other BUs' nodes, and the HTTPS SPIFFE bundle endpoint on the
// same port number over TCP. Safe for concurrent use.
type Server struct {
	cfg     ServerConfig
	log     *slog.Logger
	metrics *metrics

	udp    *net.UDPConn
	tcp    net.Listener
	tr     *quic.Transport
	ln     *quic.Listener
	h3     *http3.Server
	bundle *http.Server
	verify verifier

	mu     sync.Mutex
	conns  map[*quic.Conn]struct{}
	closed bool

	closeOnce sync.Once
	done      chan struct{}
}

// NewServer binds cfg.Listen on UDP and TCP. Run serves; Close releases
// the sockets.
func NewServer(cfg ServerConfig, opts ...Option) (*Server, error) {
	switch {
	case cfg.SVID == nil:
		return nil, errors.New("peer server: SVID is required")
	case cfg.Bundles == nil:
		return nil, errors.New("peer server: Bundles is required")
	case cfg.OwnBundle == nil:
		return nil, errors.New("peer server: OwnBundle is required")
	case cfg.Handler == nil:
		return nil, errors.New("peer server: Handler is required")
	case cfg.TrustDomain.IsZero():
		return nil, errors.New("peer server: TrustDomain is required")
	}
	if cfg.MaxIncomingStreams <= 0 {
		cfg.MaxIncomingStreams = DefaultMaxIncomingStreams
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 60 * time.Second
	}
	o := newOptions(opts)
	m, err := newMetrics(o.registry)
	if err != nil {
		return nil, fmt.Errorf("peer server: register metrics: %w", err)
	}
	s := &Server{cfg: cfg, log: o.logger, metrics: m, conns: map[*quic.Conn]struct{}{}, done: make(chan struct{}),
		verify: verifier{bundles: cfg.Bundles, authorize: cfg.Authorize}}
	if s.udp, s.tcp, err = listenBoth(cfg.Listen); err != nil {
		return nil, err
	}
	checkUDPBuffers(s.udp, s.log, "peer listener")

	s.tr = &quic.Transport{Conn: s.udp}
	s.ln, err = s.tr.Listen(http3.ConfigureTLSConfig(s.quicTLSConfig()), &quic.Config{
		Allow0RTT:          false,
		MaxIncomingStreams: cfg.MaxIncomingStreams,
		MaxIdleTimeout:     cfg.IdleTimeout,
	})
	if err != nil {
		s.udp.Close()
		s.tcp.Close()
		return nil, fmt.Errorf("peer server: listen QUIC on %s: %w", s.udp.LocalAddr(), err)
	}
	s.h3 = &http3.Server{Handler: s.instrument(cfg.Handler), IdleTimeout: cfg.IdleTimeout, Logger: s.log}

	bh, err := federation.NewHandler(cfg.TrustDomain, cfg.OwnBundle)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("peer server: bundle endpoint: %w", err)
	}
	btls := tlsconfig.TLSServerConfig(cfg.SVID)
	btls.MinVersion = tls.VersionTLS13
	btls.SessionTicketsDisabled = true
	btls.NextProtos = []string{"h2", "http/1.1"}
	s.bundle = &http.Server{
		Handler:           bh,
		TLSConfig:         btls,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    8 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	return s, nil
}

// quicTLSConfig is the peer listener's TLS configuration: the node's SVID,
// a client X509-SVID required and verified by s.verify, TLS 1.3 only,
// no session tickets (a resumed session would skip the verification).
func (s *Server) quicTLSConfig() *tls.Config {
	cfg := mtls.ServerConfig(s.cfg.SVID, s.cfg.Bundles, tlsconfig.AuthorizeAny(), http3.NextProtoH3)
	cfg.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
		if _, err := s.verify.verify(raw); err != nil {
			var he *HandshakeError
			reason := ReasonOther
			if errors.As(err, &he) {
				reason = he.Reason
			}
			s.metrics.handshakes.WithLabelValues(reason).Inc()
			s.log.Warn("refused peer connection", "reason", reason, "error", err)
			return err
		}
		return nil
	}
	return cfg
}

// listenBoth binds addr on UDP and the same port on TCP. With port 0 it
// retries a few times when the TCP port the kernel gave UDP is taken.
func listenBoth(addr string) (*net.UDPConn, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("peer listen address %q: want host:port, e.g. 0.0.0.0:8443 (federation.peer.listen): %w", addr, err)
	}
	var lastErr error
	for range 10 {
		ua, err := net.ResolveUDPAddr("udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("peer listen address %q: %w", addr, err)
		}
		udp, err := net.ListenUDP("udp", ua)
		if err != nil {
			return nil, nil, fmt.Errorf("peer listener: bind UDP %s (federation.peer.listen): %w", addr, err)
		}
		_, got, _ := net.SplitHostPort(udp.LocalAddr().String())
		tcp, err := net.Listen("tcp", net.JoinHostPort(host, got))
		if err == nil {
			return udp, tcp, nil
		}
		udp.Close()
		lastErr = err
		if port != "0" {
			break
		}
	}
	return nil, nil, fmt.Errorf("peer listener: bind TCP %s for the bundle endpoint (federation.peer.listen serves HTTP/3 on UDP and the bundle endpoint on TCP, same port): %w", addr, lastErr)
}

// Addr returns the bound address (the UDP and TCP ports are equal).
func (s *Server) Addr() net.Addr { return s.udp.LocalAddr() }

// BundleEndpointURL returns the URL of the bundle endpoint on the bound
// address, e.g. https://127.0.0.1:8443/.
func (s *Server) BundleEndpointURL() string { return "https://" + s.tcp.Addr().String() + "/" }

// Run serves both listeners until ctx ends or Close is called, then closes
// every connection and returns nil; it returns an error if a listener
// fails.
func (s *Server) Run(ctx context.Context) error {
	errc := make(chan error, 2)
	go func() { errc <- s.acceptLoop() }()
	go func() {
		err := s.bundle.ServeTLS(s.tcp, "", "")
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		errc <- err
	}()
	var err error
	select {
	case <-ctx.Done():
	case <-s.done:
	case err = <-errc:
		if err != nil {
			err = fmt.Errorf("peer server: %w", err)
		}
	}
	s.Close()
	return err
}

func (s *Server) acceptLoop() error {
	for {
		conn, err := s.ln.Accept(context.Background())
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed || errors.Is(err, quic.ErrServerClosed) {
				return nil
			}
			return fmt.Errorf("accept QUIC connection: %w", err)
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			conn.CloseWithError(revokedCode, "server closing")
			return nil
		}
		s.conns[conn] = struct{}{}
		s.mu.Unlock()
		go func() {
			defer func() {
				s.mu.Lock()
				delete(s.conns, conn)
				s.mu.Unlock()
			}()
			if err := s.h3.ServeQUICConn(conn); err != nil {
				s.log.Debug("peer connection ended", "remote", conn.RemoteAddr().String(), "error", err)
			}
		}()
	}
}

// Revalidate checks every established connection's peer again against
// the current bundle source and Authorize, and closes the connections
// whose peer no longer passes (its trust domain revoked, its bundle
// rotated away, or its relationship removed from the manifest), with
// the reason in the QUIC CONNECTION_CLOSE. Requests in flight on such a
// connection fail. New connections are checked at their handshake in
// any case; call Revalidate after replacing the bundle set or changing
// what Authorize accepts. It returns the number of connections closed.
func (s *Server) Revalidate() int {
	s.mu.Lock()
	conns := make([]*quic.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	closed := 0
	for _, c := range conns {
		state := c.ConnectionState().TLS
		raw := make([][]byte, len(state.PeerCertificates))
		for i, cert := range state.PeerCertificates {
			raw[i] = cert.Raw
		}
		if _, err := s.verify.verify(raw); err != nil {
			msg := fmt.Sprintf("%v: %v", ErrRevoked, err)
			s.log.Warn("closing peer connection: peer no longer trusted", "remote", c.RemoteAddr().String(), "error", err)
			c.CloseWithError(revokedCode, truncate(msg, 200))
			closed++
		}
	}
	return closed
}

// Connections returns the number of established peer connections.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Close closes the listeners and every connection. It is safe to call
// more than once.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		conns := make([]*quic.Conn, 0, len(s.conns))
		for c := range s.conns {
			conns = append(conns, c)
		}
		s.mu.Unlock()
		close(s.done)
		errs := []error{}
		// http3.Server.Close ends the request handling of the connections
		// given to ServeQUICConn; closing them is ours.
		if s.h3 != nil {
			errs = append(errs, s.h3.Close())
		}
		for _, c := range conns {
			c.CloseWithError(revokedCode, "server closing")
		}
		if s.ln != nil {
			errs = append(errs, s.ln.Close())
		}
		if s.bundle != nil {
			errs = append(errs, s.bundle.Close())
		} else if s.tcp != nil {
			errs = append(errs, s.tcp.Close())
		}
		if s.tr != nil {
			errs = append(errs, s.tr.Close())
		}
		errs = append(errs, s.udp.Close())
		err = errors.Join(ignoreClosed(errs)...)
	})
	return err
}

func ignoreClosed(errs []error) []error {
	out := errs[:0]
	for _, e := range errs {
		if e != nil && !errors.Is(e, net.ErrClosed) && !errors.Is(e, quic.ErrServerClosed) && !errors.Is(e, http.ErrServerClosed) {
			out = append(out, e)
		}
	}
	return out
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// instrument counts and times each served request by the caller's trust
// domain and the status written.
func (s *Server) instrument(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		td := "unknown"
		if id, err := PeerID(r); err == nil {
			td = id.TrustDomain().Name()
		}
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			if sw.status == 0 {
				sw.status = http.StatusOK
			}
			s.metrics.requests.WithLabelValues("in", td, codeLabel(sw.status)).Inc()
			s.metrics.duration.WithLabelValues("in").Observe(time.Since(start).Seconds())
		}()
		h.ServeHTTP(sw, r)
	})
}

// statusWriter records the status code; it keeps http.Flusher working for
// long polls and streamed responses.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the HTTP/3 writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
