package peer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// TestUndelivered holds DoFailover's delivery rule: which failures of a
// request leave the peer certainly without it.
func TestUndelivered(t *testing.T) {
	idle := &quic.IdleTimeoutError{}
	for _, tc := range []struct {
		name  string
		err   error
		wrote bool
		want  bool
	}{
		{"nothing written: no stream opened", errors.New("http3: conn unusable: too many open streams"), false, true},
		{"nothing written: the attempt's end while waiting for the handshake", context.DeadlineExceeded, false, true},
		{"written, then the peer went silent", fmt.Errorf("peer request: %w", idle), true, false},
		{"written, then the connection was closed", &quic.ApplicationError{Remote: true, ErrorCode: 0x100}, true, false},
		{"written, then the attempt timed out", context.DeadlineExceeded, true, false},
		{"written, then the stream was reset", &http3.Error{Remote: true, ErrorCode: http3.ErrCodeInternalError}, true, false},
		{"written, refused as unprocessed (H3_REQUEST_REJECTED)", fmt.Errorf("x: %w", &http3.Error{Remote: true, ErrorCode: http3.ErrCodeRequestRejected}), true, true},
		{"written, rejected by this side (not the peer's word)", &http3.Error{Remote: false, ErrorCode: http3.ErrCodeRequestRejected}, true, false},
		{"written, the server refused this node's certificate", fmt.Errorf("x: %w", &quic.TransportError{Remote: true, ErrorCode: quic.TransportErrorCode(0x100 + 42)}), true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := undelivered(tc.err, tc.wrote); got != tc.want {
				t.Errorf("undelivered(%v, wrote=%v) = %v; want %v", tc.err, tc.wrote, got, tc.want)
			}
		})
	}
}

// heldServer is a peer server whose handler records each request and
// holds it until release is closed or the request ends.
type heldServer struct {
	*Server
	id      spiffeid.ID
	arrived chan string // the Authorization of each request, as it arrives
	release chan struct{}

	mu   sync.Mutex
	seen int
}

func startHeldServer(t *testing.T, b *bu, name string) *heldServer {
	t.Helper()
	h := &heldServer{id: spiffeid.RequireFromPath(b.td, "/mcpmesh/node/"+name), arrived: make(chan string, 16), release: make(chan struct{})}
	s, err := NewServer(ServerConfig{Listen: "127.0.0.1:0", TrustDomain: b.td, SVID: b.node(t, name), Bundles: b.set, OwnBundle: b.set,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.ReadAll(r.Body)
			h.mu.Lock()
			h.seen++
			h.mu.Unlock()
			h.arrived <- r.Header.Get("Authorization")
			select {
			case <-h.release:
			case <-r.Context().Done():
				return
			}
			fmt.Fprint(w, name)
		})})
	if err != nil {
		t.Fatal(err)
	}
	h.Server = s
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("server Run did not return within 10s of cancel")
		}
	})
	return h
}

func (h *heldServer) requests() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.seen
}

// TestFailoverAfterDelivery: a node that got a request and closed its
// connection before answering may have acted on it. DoFailover sends a
// request that is not safe to repeat to no other node and names the one
// that may have it; one that is safe to repeat goes to the next node.
// Each attempt's request is built for the node the handshake verified,
// so a credential pinned to one node goes only to that node.
func TestFailoverAfterDelivery(t *testing.T) {
	finance, hr := newBU(t, financeTD), newBU(t, hrTD)
	finance.trust(t, hr)
	hr.trust(t, finance)
	c := newClient(t, hr, hr.node(t, "n1"), nil)

	for _, repeat := range []bool{false, true} {
		t.Run(fmt.Sprintf("repeat=%v", repeat), func(t *testing.T) {
			first, second := startHeldServer(t, finance, "f1"), startHeldServer(t, finance, "f2")
			close(second.release)
			addrs := []string{first.Addr().String(), second.Addr().String()}
			// Connections of the previous subtest's servers, if any, are
			// gone with them.
			c.Revalidate()
			newReq := func(ctx context.Context, peer spiffeid.ID) (*http.Request, error) {
				r, err := http.NewRequestWithContext(ctx, http.MethodPost, "/federation/v1/mcp/x", strings.NewReader(`{"call":1}`))
				if err == nil {
					r.Header.Set("Authorization", "pinned to "+peer.String())
				}
				return r, err
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			type result struct {
				resp *http.Response
				addr string
				err  error
			}
			done := make(chan result, 1)
			go func() {
				resp, addr, err := c.DoFailover(ctx, financeTD, addrs, 0, repeat, newReq)
				done <- result{resp, addr, err}
			}()
			select {
			case auth := <-first.arrived:
				if want := "pinned to " + first.id.String(); auth != want {
					t.Errorf("the first node got Authorization %q; want %q", auth, want)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("the request never reached the first node within 15s")
			}
			// The node goes away while it holds the request.
			first.Close()
			var r result
			select {
			case r = <-done:
			case <-time.After(15 * time.Second):
				t.Fatal("DoFailover did not return within 15s of the first node closing")
			}
			if !repeat {
				var de *InDoubtError
				if !errors.As(r.err, &de) || de.Addr != addrs[0] || de.Peer != first.id {
					t.Fatalf("DoFailover = %v, %v; want an InDoubtError naming %s at %s", r.addr, r.err, first.id, addrs[0])
				}
				if second.requests() != 0 {
					t.Errorf("the second node got %d requests; want none: the request may have run on the first", second.requests())
				}
				t.Logf("error: %v", r.err)
				return
			}
			if r.err != nil {
				t.Fatalf("DoFailover of a request safe to repeat = %v; want the second node's answer", r.err)
			}
			body, _ := io.ReadAll(r.resp.Body)
			r.resp.Body.Close()
			if r.addr != addrs[1] || string(body) != "f2" {
				t.Errorf("answered by %s with %q; want %s with f2", r.addr, body, addrs[1])
			}
			select {
			case auth := <-second.arrived:
				if want := "pinned to " + second.id.String(); auth != want {
					t.Errorf("the second node got Authorization %q; want %q", auth, want)
				}
			default:
				t.Error("the second node recorded no request")
			}
		})
	}
}
