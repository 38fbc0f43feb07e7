package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

const (
	protoRaft byte = 'R'
	protoRPC  byte = 'C'

	// handshakeTimeout bounds the TLS handshake and the protocol byte, so a
	// silent peer cannot hold an accept slot.
	handshakeTimeout = 10 * time.Second

	// maxPendingHandshakes bounds unauthenticated connections in flight;
	// past it new connections are closed at once, so a flood of TCP
	// connects cannot exhaust memory before mTLS has said who is calling.
	maxPendingHandshakes = 128
)

// mux accepts TLS connections on the node port and splits them by their
// first byte. It is the raft.StreamLayer for protoRaft connections.
type mux struct {
	ln        net.Listener
	advertise net.Addr
	serverTLS *tls.Config
	clientTLS *tls.Config
	logger    *slog.Logger
	handleRPC func(net.Conn)
	// cut, when set (tests only), severs traffic with a peer node: every
	// read and write on a connection to a node for which it returns true
	// fails, as if the network between them were down.
	cut func(peerNodeID string) bool

	raftConns chan net.Conn
	pending   chan struct{}
	// serveDone is closed when the accept loop has returned; only then is
	// it safe to wait on wg (the loop is what calls wg.Add).
	serveDone chan struct{}

	// live holds every connection handed out, so Close can end them:
	// raft's NetworkTransport.Close leaves its pooled and inbound
	// connections (and their goroutines) open.
	liveMu sync.Mutex
	live   map[net.Conn]struct{}
	closed bool

	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

var _ raft.StreamLayer = (*mux)(nil)

func newMux(ln net.Listener, advertise net.Addr, serverTLS, clientTLS *tls.Config, logger *slog.Logger) *mux {
	return &mux{
		ln:        ln,
		advertise: advertise,
		serverTLS: serverTLS,
		clientTLS: clientTLS,
		logger:    logger,
		raftConns: make(chan net.Conn),
		pending:   make(chan struct{}, maxPendingHandshakes),
		live:      map[net.Conn]struct{}{},
		done:      make(chan struct{}),
	}
}

// start runs the accept loop in its own goroutine.
func (m *mux) start() {
	m.serveDone = make(chan struct{})
	go func() {
		defer close(m.serveDone)
		m.serve()
	}()
}

// serve accepts connections until the listener closes.
func (m *mux) serve() {
	for {
		c, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.done:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			m.logger.Error("node port accept failed; no more peers can connect", "error", err)
			return
		}
		select {
		case m.pending <- struct{}{}:
		default:
			m.logger.Warn("node port: too many handshakes in flight; dropping connection", "remote", c.RemoteAddr().String())
			c.Close()
			continue
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.route(c)
		}()
	}
}

func (m *mux) route(raw net.Conn) {
	c := tls.Server(raw, m.serverTLS)
	c.SetDeadline(time.Now().Add(handshakeTimeout))
	err := c.Handshake()
	<-m.pending
	if err != nil {
		// The SPIFFE authorizer already logged refused identities; this
		// covers everything else (bad certificates, plain TCP probes).
		m.logger.Warn("node port: TLS handshake refused", "remote", raw.RemoteAddr().String(), "error", err)
		c.Close()
		return
	}
	var b [1]byte
	if _, err := c.Read(b[:]); err != nil {
		c.Close()
		return
	}
	c.SetDeadline(time.Time{})
	conn := m.track(m.withFaults(c))
	if conn == nil {
		return
	}
	switch b[0] {
	case protoRaft:
		select {
		case m.raftConns <- conn:
		case <-m.done:
			conn.Close()
		}
	case protoRPC:
		if m.handleRPC != nil {
			m.handleRPC(conn)
		}
		conn.Close()
	default:
		m.logger.Warn("node port: unknown protocol byte", "remote", raw.RemoteAddr().String(), "byte", b[0])
		c.Close()
	}
}

// Accept returns the next Raft connection.
func (m *mux) Accept() (net.Conn, error) {
	select {
	case c := <-m.raftConns:
		return c, nil
	case <-m.done:
		return nil, net.ErrClosed
	}
}

// Close stops accepting and closes the listener.
func (m *mux) Close() error {
	var err error
	m.closeOnce.Do(func() {
		close(m.done)
		err = m.ln.Close()
		m.liveMu.Lock()
		m.closed = true
		live := make([]net.Conn, 0, len(m.live))
		for c := range m.live {
			live = append(live, c)
		}
		m.liveMu.Unlock()
		// Outside the lock: trackedConn.Close takes it.
		for _, c := range live {
			c.Close()
		}
	})
	return err
}

// Addr is the advertised address, which Raft stores in its configuration.
func (m *mux) Addr() net.Addr { return m.advertise }

// Dial opens a Raft connection to a peer.
func (m *mux) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return m.dial(context.Background(), string(address), protoRaft, timeout)
}

func (m *mux) dial(ctx context.Context, address string, proto byte, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	d := &net.Dialer{}
	raw, err := d.DialContext(ctx, "tcp", address)
	if err != nil {
		return nil, err
	}
	c := tls.Client(raw, m.clientTLS)
	if err := c.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("TLS handshake with %s: %w", address, err)
	}
	conn := m.track(m.withFaults(c))
	if conn == nil {
		return nil, net.ErrClosed
	}
	if _, err := conn.Write([]byte{proto}); err != nil {
		conn.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return conn, nil
}

// track registers a connection for closing on shutdown; it returns nil
// (and closes c) if the mux is already closed.
func (m *mux) track(c net.Conn) net.Conn {
	m.liveMu.Lock()
	defer m.liveMu.Unlock()
	if m.closed {
		c.Close()
		return nil
	}
	tc := &trackedConn{Conn: c, m: m}
	m.live[tc] = struct{}{}
	return tc
}

type trackedConn struct {
	net.Conn
	m    *mux
	once sync.Once
}

func (t *trackedConn) Close() error {
	t.once.Do(func() {
		t.m.liveMu.Lock()
		delete(t.m.live, t)
		t.m.liveMu.Unlock()
	})
	return t.Conn.Close()
}

// peerNodeID dials address, completes the mTLS handshake (so the peer is
// a node of this trust domain, or the dial fails) and returns the node ID
// its SVID names: the last segment of spiffe://<td>/mcpmesh/node/<id>.
func (m *mux) peerNodeID(ctx context.Context, address string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	raw, err := (&net.Dialer{}).DialContext(ctx, "tcp", address)
	if err != nil {
		return "", err
	}
	c := tls.Client(raw, m.clientTLS)
	defer c.Close()
	if err := c.HandshakeContext(ctx); err != nil {
		return "", fmt.Errorf("TLS handshake with %s: %w", address, err)
	}
	certs := c.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return "", fmt.Errorf("%s presented no certificate", address)
	}
	id, err := x509svid.IDFromCert(certs[0])
	if err != nil {
		return "", fmt.Errorf("%s: %w", address, err)
	}
	return path.Base(id.Path()), nil
}

func (m *mux) withFaults(c *tls.Conn) net.Conn {
	if m.cut == nil {
		return c
	}
	peer := ""
	if certs := c.ConnectionState().PeerCertificates; len(certs) > 0 {
		if id, err := x509svid.IDFromCert(certs[0]); err == nil {
			peer = path.Base(id.Path())
		}
	}
	return &faultConn{Conn: c, peer: peer, cut: m.cut}
}

// faultConn fails reads and writes while its peer is cut off.
type faultConn struct {
	net.Conn
	peer string
	cut  func(string) bool
}

var errCut = errors.New("connection cut by test fault hook")

func (f *faultConn) Read(p []byte) (int, error) {
	if f.cut(f.peer) {
		f.Conn.Close()
		return 0, errCut
	}
	return f.Conn.Read(p)
}

func (f *faultConn) Write(p []byte) (int, error) {
	if f.cut(f.peer) {
		f.Conn.Close()
		return 0, errCut
	}
	return f.Conn.Write(p)
}

// wait blocks until the accept loop and every routed connection handler
// have returned. Call it after Close.
func (m *mux) wait() {
	if m.serveDone != nil {
		<-m.serveDone
	}
	m.wg.Wait()
}
