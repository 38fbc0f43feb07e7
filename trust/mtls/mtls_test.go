package mtls

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/mcpmesh/mcpmesh/trust/ca"
)

const raftProto = "mcpmesh-raft/1"

var (
	hrTD      = spiffeid.RequireTrustDomainFromString("hr.example.corp")
	financeTD = spiffeid.RequireTrustDomainFromString("finance.example.corp")
)

// world holds two trust domains, each with its own CA, and SVIDs of both.
type world struct {
	hr, finance *ca.CA
	hrBundle    *x509bundle.Bundle
	federated   *x509bundle.Set // both bundles, as a node that federates with finance holds

	node1, node2, agent, expiredNode, expiredAdmin, admin *x509svid.SVID
	financeNode, financeAgent                             *x509svid.SVID
}

func newWorld(t *testing.T) *world {
	t.Helper()
	hrDir := filepath.Join(t.TempDir(), "hr")
	w := &world{hr: mustInit(t, hrDir, hrTD), finance: mustInit(t, filepath.Join(t.TempDir(), "finance"), financeTD)}
	w.hrBundle = w.hr.Bundle()
	w.federated = x509bundle.NewSet(w.hr.Bundle(), w.finance.Bundle())
	w.node1 = issue(t, w.hr, "/mcpmesh/node/1")
	w.node2 = issue(t, w.hr, "/mcpmesh/node/2")
	w.agent = issue(t, w.hr, "/agent/x")
	w.admin = issue(t, w.hr, "/admin/alice")
	w.financeNode = issue(t, w.finance, "/mcpmesh/node/1")
	w.financeAgent = issue(t, w.finance, "/agent/x")
	// The same CA two hours ago issues SVIDs that expired an hour ago.
	past, err := ca.Load(hrDir, ca.WithClock(func() time.Time { return time.Now().Add(-2 * time.Hour) }))
	if err != nil {
		t.Fatal(err)
	}
	w.expiredNode = issue(t, past, "/mcpmesh/node/3")
	w.expiredAdmin = issue(t, past, "/admin/bob")
	return w
}

func mustInit(t *testing.T, dir string, td spiffeid.TrustDomain) *ca.CA {
	t.Helper()
	c, err := ca.Init(dir, td)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func issue(t *testing.T, c *ca.CA, path string) *x509svid.SVID {
	t.Helper()
	s, err := c.IssueX509SVID(spiffeid.RequireFromPath(c.TrustDomain(), path), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// plainCert returns a self-signed certificate without a URI SAN.
func plainCert(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "node1.hr.example.corp"},
		DNSNames:     []string{"node1.hr.example.corp"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// lockedBuffer is a log sink shared by the server goroutine and the test.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type handshakeResult struct {
	server, client       tls.ConnectionState
	serverErr, clientErr error
}

// handshake connects a client to a server over loopback TCP. After the
// handshake the server writes one byte and the client reads it, so that a
// refusal of the client's certificate, which TLS 1.3 reports after the
// client's handshake has returned, and any session ticket reach the client.
func handshake(t *testing.T, serverCfg, clientCfg *tls.Config) handshakeResult {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	deadline := time.Now().Add(10 * time.Second)

	type serverSide struct {
		state tls.ConnectionState
		err   error
	}
	done := make(chan serverSide, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- serverSide{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(deadline)
		tc := tls.Server(c, serverCfg)
		if err := tc.Handshake(); err != nil {
			done <- serverSide{err: err}
			return
		}
		_, err = tc.Write([]byte{1})
		done <- serverSide{state: tc.ConnectionState(), err: err}
	}()

	var res handshakeResult
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(deadline)
	tc := tls.Client(conn, clientCfg)
	res.clientErr = tc.Handshake()
	if res.clientErr == nil {
		_, res.clientErr = io.ReadFull(tc, make([]byte, 1))
		res.client = tc.ConnectionState()
	}
	tc.Close()
	s := <-done
	res.server, res.serverErr = s.state, s.err
	return res
}

func TestNodeHandshake(t *testing.T) {
	w := newWorld(t)
	tests := []struct {
		name string
		// configs builds the two ends; logger is the one to hand to
		// NodeAuthorizer.
		configs func(logger *slog.Logger) (server, client *tls.Config)
		// wantServerErr and wantClientErr are substrings of the errors of
		// the end that refuses; "" means that end succeeds, unless the
		// other end refused.
		wantServerErr, wantClientErr string
		wantLog                      []string
	}{
		{
			name: "nodes of one trust domain",
			configs: func(l *slog.Logger) (*tls.Config, *tls.Config) {
				return ServerConfig(w.node1, w.hrBundle, NodeAuthorizer(hrTD, l), raftProto),
					ClientConfig(w.node2, w.hrBundle, NodeAuthorizer(hrTD, l), raftProto)
			},
		},
		{
			name: "foreign node as client, bundle federated",
			configs: func(l *slog.Logger) (*tls.Config, *tls.Config) {
				return ServerConfig(w.node1, w.federated, NodeAuthorizer(hrTD, l), raftProto),
					ClientConfig(w.financeNode, w.federated, tlsconfig.AuthorizeAny(), raftProto)
			},
			wantServerErr: `refused peer spiffe://finance.example.corp/mcpmesh/node/1: not a node of hr.example.corp: trust domain "finance.example.corp" is not "hr.example.corp"`,
			wantLog:       []string{"level=WARN", "peer_id=spiffe://finance.example.corp/mcpmesh/node/1", `reason="trust domain \"finance.example.corp\" is not \"hr.example.corp\""`},
		},
		{
			name: "foreign node as server, bundle federated",
			configs: func(l *slog.Logger) (*tls.Config, *tls.Config) {
				return ServerConfig(w.financeNode, w.federated, tlsconfig.AuthorizeAny(), raftProto),
					ClientConfig(w.node2, w.federated, NodeAuthorizer(hrTD, l), raftProto)
			},
			wantClientErr: `refused peer spiffe://finance.example.corp/mcpmesh/node/1: not a node of hr.example.corp`,
			wantLog:       []string{"level=WARN", "peer_id=spiffe://finance.example.corp/mcpmesh/node/1", "trust domain"},
		},
		{
			name: "foreign node as client, own bundle only",
			configs: func(l *slog.Logger) (*tls.Config, *tls.Config) {
				return ServerConfig(w.node1, w.hrBundle, NodeAuthorizer(hrTD, l), raftProto),
					ClientConfig(w.financeNode, w.federated, tlsconfig.AuthorizeAny(), raftProto)
			},
			wantServerErr: `refused peer spiffe://finance.example.corp/mcpmesh/node/1: x509svid: could not get X509 bundle`,
		},
		{
			name: "foreign node as server, own bundle only",
			configs: func(l *slog.Logger) (*tls.Config, *tls.Config) {
				return ServerConfig(w.financeNode, w.federated, tlsconfig.AuthorizeAny(), raftProto),
					ClientConfig(w.node2, w.hrBundle, NodeAuthorizer(hrTD, l), raftProto)
			},
			wantClientErr: `refused peer spiffe://finance.example.corp/mcpmesh/node/1: x509svid: could not get X509 bundle`,
		},
		{
			name: "agent of the same trust domain as client",
			configs: func(l *slog.Logger) (*tls.Config, *tls.Config) {
				return ServerConfig(w.node1, w.hrBundle, NodeAuthorizer(hrTD, l), raftProto),
					ClientConfig(w.agent, w.hrBundle, tlsconfig.AuthorizeAny(), raftProto)
			},
			wantServerErr: `refused peer spiffe://hr.example.corp/agent/x: not a node of hr.example.corp: path "/agent/x" is not under /mcpmesh/node/`,
			wantLog:       []string{"level=WARN", "peer_id=spiffe://hr.example.corp/agent/x", "is not under /mcpmesh/node/"},
		},
		{
			name: "agent of the same trust domain as server",
			configs: func(l *slog.Logger) (*tls.Config, *tls.Config) {
				return ServerConfig(w.agent, w.hrBundle, tlsconfig.AuthorizeAny(), raftProto),
					ClientConfig(w.node2, w.hrBundle, NodeAuthorizer(hrTD, l), raftProto)
			},
			wantClientErr: `refused peer spiffe://hr.example.corp/agent/x: not a node of hr.example.corp: path "/agent/x"`,
			wantLog:       []string{"level=WARN", "peer_id=spiffe://hr.example.corp/agent/x"},
		},
		{
			name: "expired client SVID",
			configs: func(l *slog.Logger) (*tls.Config, *tls.Config) {
				return ServerConfig(w.node1, w.hrBundle, NodeAuthorizer(hrTD, l), raftProto),
					ClientConfig(w.expiredNode, w.hrBundle, tlsconfig.AuthorizeAny(), raftProto)
			},
			wantServerErr: "refused peer spiffe://hr.example.corp/mcpmesh/node/3: x509svid: could not verify leaf certificate: x509: certificate has expired",
		},
		{
			name: "expired server SVID",
			configs: func(l *slog.Logger) (*tls.Config, *tls.Config) {
				return ServerConfig(w.expiredNode, w.hrBundle, tlsconfig.AuthorizeAny(), raftProto),
					ClientConfig(w.node2, w.hrBundle, NodeAuthorizer(hrTD, l), raftProto)
			},
			wantClientErr: "refused peer spiffe://hr.example.corp/mcpmesh/node/3: x509svid: could not verify leaf certificate: x509: certificate has expired",
		},
		{
			name: "client without certificate",
			configs: func(l *slog.Logger) (*tls.Config, *tls.Config) {
				return ServerConfig(w.node1, w.hrBundle, NodeAuthorizer(hrTD, l), raftProto),
					tlsconfig.TLSClientConfig(w.hrBundle, tlsconfig.AuthorizeAny())
			},
			wantServerErr: "client didn't provide a certificate",
		},
		{
			name: "client certificate without SPIFFE ID",
			configs: func(l *slog.Logger) (*tls.Config, *tls.Config) {
				return ServerConfig(w.node1, w.hrBundle, NodeAuthorizer(hrTD, l), raftProto),
					&tls.Config{
						Certificates:       []tls.Certificate{plainCert(t)},
						InsecureSkipVerify: true, // only the server's refusal is under test
						MinVersion:         tls.VersionTLS13,
						NextProtos:         []string{raftProto},
					}
			},
			wantServerErr: "refused peer with no SPIFFE ID: x509svid: could not get leaf SPIFFE ID: certificate contains no URI SAN",
		},
		{
			name: "client limited to TLS 1.2",
			configs: func(l *slog.Logger) (*tls.Config, *tls.Config) {
				client := ClientConfig(w.node2, w.hrBundle, NodeAuthorizer(hrTD, l), raftProto)
				client.MinVersion, client.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
				return ServerConfig(w.node1, w.hrBundle, NodeAuthorizer(hrTD, l), raftProto), client
			},
			wantServerErr: "client offered only unsupported versions",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs := &lockedBuffer{}
			serverCfg, clientCfg := tt.configs(slog.New(slog.NewTextHandler(logs, nil)))
			res := handshake(t, serverCfg, clientCfg)

			switch {
			case tt.wantServerErr != "":
				if res.serverErr == nil || !strings.Contains(res.serverErr.Error(), tt.wantServerErr) {
					t.Errorf("server error = %v, want one containing %q", res.serverErr, tt.wantServerErr)
				}
				if res.clientErr == nil {
					t.Error("client connected although the server refused it")
				}
			case tt.wantClientErr != "":
				if res.clientErr == nil || !strings.Contains(res.clientErr.Error(), tt.wantClientErr) {
					t.Errorf("client error = %v, want one containing %q", res.clientErr, tt.wantClientErr)
				}
				if res.serverErr == nil {
					t.Error("server finished the handshake although the client refused it")
				}
			default:
				if res.serverErr != nil || res.clientErr != nil {
					t.Fatalf("handshake failed: server: %v; client: %v", res.serverErr, res.clientErr)
				}
				checkNodeConnection(t, res, w.node1.ID, w.node2.ID)
			}
			out := logs.String()
			for _, want := range tt.wantLog {
				if !strings.Contains(out, want) {
					t.Errorf("logs do not contain %q:\n%s", want, out)
				}
			}
			if len(tt.wantLog) == 0 && out != "" {
				t.Errorf("unexpected logs:\n%s", out)
			}
		})
	}
}

func checkNodeConnection(t *testing.T, res handshakeResult, serverID, clientID spiffeid.ID) {
	t.Helper()
	for _, end := range []struct {
		name   string
		state  tls.ConnectionState
		wantID spiffeid.ID
	}{
		{"server", res.server, clientID},
		{"client", res.client, serverID},
	} {
		if end.state.Version != tls.VersionTLS13 {
			t.Errorf("%s: TLS version = %s, want TLS 1.3", end.name, tls.VersionName(end.state.Version))
		}
		if end.state.NegotiatedProtocol != raftProto {
			t.Errorf("%s: ALPN protocol = %q, want %q", end.name, end.state.NegotiatedProtocol, raftProto)
		}
		got, err := PeerID(&end.state)
		if err != nil || got != end.wantID {
			t.Errorf("%s: PeerID = %v, %v; want %v", end.name, got, err, end.wantID)
		}
	}
}

// TestNoSessionResumption checks that a client that caches sessions never
// resumes one, so that every connection passes the SPIFFE authorizer.
func TestNoSessionResumption(t *testing.T) {
	w := newWorld(t)
	newClient := func() *tls.Config {
		c := ClientConfig(w.node2, w.hrBundle, NodeAuthorizer(hrTD, nil), raftProto)
		// Let the client try as hard as it can: only the server's settings
		// should prevent resumption.
		c.SessionTicketsDisabled = false
		c.ClientSessionCache = tls.NewLRUClientSessionCache(8)
		c.ServerName = "node1" // the cache key; each listener has another port
		return c
	}
	tests := []struct {
		name       string
		server     func() *tls.Config
		wantResume bool
	}{
		{
			name:   "ServerConfig",
			server: func() *tls.Config { return ServerConfig(w.node1, w.hrBundle, NodeAuthorizer(hrTD, nil), raftProto) },
		},
		{
			// Shows that the test can tell: with tickets enabled the same
			// client resumes.
			name: "ServerConfig with tickets re-enabled",
			server: func() *tls.Config {
				c := ServerConfig(w.node1, w.hrBundle, NodeAuthorizer(hrTD, nil), raftProto)
				c.SessionTicketsDisabled = false
				return c
			},
			wantResume: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			server, client := tt.server(), newClient()
			for i, wantResume := range []bool{false, tt.wantResume} {
				res := handshake(t, server, client)
				if res.serverErr != nil || res.clientErr != nil {
					t.Fatalf("connection %d: server: %v; client: %v", i, res.serverErr, res.clientErr)
				}
				if res.client.DidResume != wantResume {
					t.Errorf("connection %d: DidResume = %v, want %v", i, res.client.DidResume, wantResume)
				}
			}
		})
	}

	// ClientConfig itself asks for no resumption either.
	if c := ClientConfig(w.node2, w.hrBundle, NodeAuthorizer(hrTD, nil)); !c.SessionTicketsDisabled || c.ClientSessionCache != nil {
		t.Error("ClientConfig leaves session resumption on")
	}
}

func TestOptionalClientServerConfig(t *testing.T) {
	w := newWorld(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			id, err := PeerID(r.TLS)
			switch {
			case errors.Is(err, ErrNoPeerCertificate):
				io.WriteString(rw, "token required")
			case err != nil:
				http.Error(rw, err.Error(), http.StatusInternalServerError)
			default:
				io.WriteString(rw, id.String())
			}
		}),
		ReadHeaderTimeout: 10 * time.Second,
		// Refused handshakes are logged here; the subtests assert on what
		// the clients see.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	go srv.Serve(tls.NewListener(ln, OptionalClientServerConfig(w.node1, w.hrBundle, "http/1.1")))
	t.Cleanup(func() { srv.Close() })
	url := "https://" + ln.Addr().String() + "/v1/whoami"

	tests := []struct {
		name     string
		client   *tls.Config
		wantBody string // "" means the request fails
	}{
		{"no client certificate", tlsconfig.TLSClientConfig(w.hrBundle, tlsconfig.AuthorizeID(w.node1.ID)), "token required"},
		{"admin SVID", tlsconfig.MTLSClientConfig(w.admin, w.hrBundle, tlsconfig.AuthorizeID(w.node1.ID)), "spiffe://hr.example.corp/admin/alice"},
		{"SVID of a trust domain not in the bundle", tlsconfig.MTLSClientConfig(w.financeAgent, w.federated, tlsconfig.AuthorizeAny()), ""},
		{"expired SVID", tlsconfig.MTLSClientConfig(w.expiredAdmin, w.hrBundle, tlsconfig.AuthorizeAny()), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client := &http.Client{
				Transport: &http.Transport{TLSClientConfig: tt.client, DisableKeepAlives: true},
				Timeout:   10 * time.Second,
			}
			resp, err := client.Get(url)
			if tt.wantBody == "" {
				if err == nil {
					resp.Body.Close()
					t.Fatalf("request succeeded with status %s, want the handshake refused", resp.Status)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if string(body) != tt.wantBody {
				t.Errorf("handler saw %q, want %q", body, tt.wantBody)
			}
			if resp.TLS.Version != tls.VersionTLS13 {
				t.Errorf("TLS version = %s, want TLS 1.3", tls.VersionName(resp.TLS.Version))
			}
		})
	}
}

func TestPeerIDErrors(t *testing.T) {
	tests := []struct {
		name  string
		state *tls.ConnectionState
		want  string
	}{
		{"nil state", nil, "not TLS"},
		{"handshake incomplete", &tls.ConnectionState{}, "not complete"},
		{"no certificate", &tls.ConnectionState{HandshakeComplete: true}, ErrNoPeerCertificate.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := PeerID(tt.state)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("PeerID error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestNodeAuthorizer(t *testing.T) {
	tests := []struct {
		name string
		id   spiffeid.ID
		ok   bool
		log  string
	}{
		{"node", spiffeid.RequireFromPath(hrTD, "/mcpmesh/node/1"), true, ""},
		{"node prefix only", spiffeid.RequireFromPath(hrTD, "/mcpmesh/node"), false, `path \"/mcpmesh/node\"`},
		{"node-like path", spiffeid.RequireFromPath(hrTD, "/mcpmesh/nodes/1"), false, `path \"/mcpmesh/nodes/1\"`},
		{"trust domain ID", hrTD.ID(), false, `path \"\"`},
		{"foreign node", spiffeid.RequireFromPath(financeTD, "/mcpmesh/node/1"), false, "trust domain"},
		{"no ID", spiffeid.ID{}, false, `peer_id="no SPIFFE ID"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs := &lockedBuffer{}
			err := NodeAuthorizer(hrTD, slog.New(slog.NewTextHandler(logs, nil)))(tt.id, nil)
			if (err == nil) != tt.ok {
				t.Fatalf("authorizer(%v) = %v, want ok=%v", tt.id, err, tt.ok)
			}
			out := logs.String()
			if tt.ok && out != "" {
				t.Errorf("accepted peer logged:\n%s", out)
			}
			if !tt.ok && (!strings.Contains(out, "level=WARN") || !strings.Contains(out, tt.log)) {
				t.Errorf("refusal log %q does not contain level=WARN and %q", out, tt.log)
			}
		})
	}
}
