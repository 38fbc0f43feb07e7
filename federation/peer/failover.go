package peer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/quic-go/quic-go/http3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Attempt is one address tried by DoFailover and its error.
type Attempt struct {
	Addr string
	Err  error
	// Sent is true when the request may have reached the node at Addr
	// before the attempt failed (see DoFailover): it was tried elsewhere
	// only because it is safe to repeat.
	Sent bool
}

// UnavailableError is DoFailover's error when no address answered: each
// address tried, in order, with its error.
type UnavailableError struct {
	TrustDomain spiffeid.TrustDomain
	Attempts    []Attempt
}

// Error lists each address tried with its error.
func (e *UnavailableError) Error() string {
	if len(e.Attempts) == 0 {
		return fmt.Sprintf("no node of trust domain %s is known (no peer address advertised)", e.TrustDomain.Name())
	}
	return fmt.Sprintf("no node of trust domain %s answered (%d tried): %s", e.TrustDomain.Name(), len(e.Attempts), attempts(e.Attempts))
}

func attempts(as []Attempt) string {
	parts := make([]string, len(as))
	for i, a := range as {
		parts[i] = a.Addr + ": " + a.Err.Error()
		if a.Sent {
			parts[i] += " (after the request was sent; repeated as safe to repeat)"
		}
	}
	return strings.Join(parts, "; ")
}

// Unwrap returns the attempts' errors.
func (e *UnavailableError) Unwrap() []error {
	out := make([]error, len(e.Attempts))
	for i, a := range e.Attempts {
		out[i] = a.Err
	}
	return out
}

// InDoubtError is DoFailover's error when a request that is not safe to
// repeat may have reached a node, and no answer came from it: that node
// may have acted on the request. DoFailover sends it to no other node.
type InDoubtError struct {
	TrustDomain spiffeid.TrustDomain
	// Addr is the address of the node that may have the request, and Peer
	// its SPIFFE ID as the connection's handshake verified it.
	Addr string
	Peer spiffeid.ID
	// Err is why no answer came.
	Err error
	// Before are the addresses tried earlier, none of which got the
	// request.
	Before []Attempt
}

// Error says which node may have the request, and that it was sent to no
// other.
func (e *InDoubtError) Error() string {
	msg := fmt.Sprintf("node %s of trust domain %s (%s) may have received the request, but no answer came (%v); it was sent to no other node, as it is not safe to repeat",
		e.Peer, e.TrustDomain.Name(), e.Addr, e.Err)
	if len(e.Before) > 0 {
		msg += "; tried before: " + attempts(e.Before)
	}
	return msg
}

// Unwrap returns why no answer came.
func (e *InDoubtError) Unwrap() error { return e.Err }

// DoFailover sends a request to the first of addrs (the nodes of trust
// domain td, in order of preference) that answers, and returns the answer
// and the address that gave it. newRequest builds the request of each
// attempt once the connection to its address is up, and is told the
// SPIFFE ID of the node there, as the connection's mTLS handshake
// verified it: a credential minted for that one node can go with it (a
// body is consumed by each attempt). An HTTP answer, an error status
// included, ends the search. attemptTimeout bounds each attempt until
// response headers arrive; 0 leaves only ctx. When ctx ends, DoFailover
// returns at once with ctx's error.
//
// Whether a failed attempt moves on to the next address depends on
// whether the request may have been delivered. It certainly was not, and
// the next address is tried, when:
//
//   - no connection came up: dialing, the QUIC or TLS handshake, the
//     server's certificate (another trust domain, a refused chain), the
//     handshake timeout, or the attempt's end while waiting for them;
//   - the HTTP/3 client had not begun to encode the request's header on
//     a request stream (the handshake not confirmed, no stream opened:
//     a closed or going-away connection, no stream credit). quic-go
//     writes nothing of a request before encoding its header, and sends
//     its body only after the header was written;
//   - the server refused this node's certificate (a TLS alert, QUIC
//     CRYPTO_ERROR): in TLS 1.3 its refusal may come after the request
//     was written, but a QUIC server hands no stream to HTTP before its
//     handshake completed, and 0-RTT is off;
//   - the server reset the request stream with H3_REQUEST_REJECTED, which
//     RFC 9114 (section 4.1.1) reserves for requests it did not process.
//
// Any other failure after the header began may follow the request's
// arrival: a connection or stream that broke, the peer's idle timeout
// (a node that died without closing), the attempt timing out. Such a
// request is sent to the next address only if repeat says it is safe to
// repeat (a read, an idempotent call); otherwise DoFailover stops and
// returns an *InDoubtError naming the node that may have it.
//
// If no address answers the error is an *UnavailableError listing each
// address and its error.
//
// An address that gave no answer within the last FailedAddressPenalty is
// tried after the others (in their given order), so that while a node is
// down each request does not first wait for its handshake timeout; it is
// still tried when the others fail, and an answer from it ends its
// penalty.
func (c *Client) DoFailover(ctx context.Context, td spiffeid.TrustDomain, addrs []string, attemptTimeout time.Duration, repeat bool, newRequest func(ctx context.Context, peer spiffeid.ID) (*http.Request, error)) (*http.Response, string, error) {
	if td.IsZero() {
		return nil, "", errors.New("peer request: the expected trust domain is missing")
	}
	uerr := &UnavailableError{TrustDomain: td}
	for _, addr := range c.byHealth(addrs) {
		if err := ctx.Err(); err != nil {
			return nil, "", fmt.Errorf("call to trust domain %s: %w (after %d addresses)", td.Name(), context.Cause(ctx), len(uerr.Attempts))
		}
		actx, cancel := context.WithCancelCause(ctx)
		var timer *time.Timer
		if attemptTimeout > 0 {
			timer = time.AfterFunc(attemptTimeout, func() {
				cancel(fmt.Errorf("no answer within %s: %w", attemptTimeout, context.DeadlineExceeded))
			})
		}
		resp, peer, sent, err := c.attempt(actx, td, addr, newRequest)
		if timer != nil {
			timer.Stop()
		}
		if err == nil {
			c.markFailed(addr, false)
			// The attempt's context lives as long as the body is read.
			resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: func() { cancel(nil) }}
			return resp, addr, nil
		}
		var berr *buildError
		if errors.As(err, &berr) {
			cancel(nil)
			return nil, "", fmt.Errorf("build request for trust domain %s: %w", td.Name(), berr.err)
		}
		if cause := context.Cause(actx); cause != nil && ctx.Err() == nil {
			err = fmt.Errorf("%w (%v)", err, cause)
		}
		cancel(nil)
		if ctx.Err() != nil {
			return nil, "", fmt.Errorf("call to trust domain %s: %w", td.Name(), context.Cause(ctx))
		}
		c.markFailed(addr, true)
		if sent && !repeat {
			c.log.Info("peer failed after the request may have reached it; not repeating it elsewhere", "addr", addr, "peer", peer.String(), "trust_domain", td.Name(), "error", err)
			return nil, "", &InDoubtError{TrustDomain: td, Addr: addr, Peer: peer, Err: err, Before: uerr.Attempts}
		}
		c.log.Debug("peer failed; trying the next", "addr", addr, "trust_domain", td.Name(), "sent", sent, "error", err)
		uerr.Attempts = append(uerr.Attempts, Attempt{Addr: addr, Err: err, Sent: sent})
	}
	return nil, "", uerr
}

// buildError is a failure of DoFailover's newRequest: it ends the search.
type buildError struct{ err error }

func (e *buildError) Error() string { return e.err.Error() }

// attempt is one of DoFailover's attempts: it connects to addr, builds
// the request for the node there, and sends it. sent reports whether the
// request may have been delivered when err is not nil (undelivered).
func (c *Client) attempt(ctx context.Context, td spiffeid.TrustDomain, addr string, newRequest func(context.Context, spiffeid.ID) (*http.Request, error)) (resp *http.Response, peer spiffeid.ID, sent bool, err error) {
	start := time.Now()
	defer func() {
		if _, built := err.(*buildError); !built {
			c.observeOut(td, start, resp, err)
		}
	}()
	cc, err := c.conn(ctx, td, addr)
	if err != nil {
		return nil, spiffeid.ID{}, false, err
	}
	req, err := newRequest(ctx, cc.peer)
	if err != nil {
		return nil, cc.peer, false, &buildError{err}
	}
	resp, wrote, err := c.send(ctx, td, addr, cc, req)
	if err != nil {
		return nil, cc.peer, !undelivered(err, wrote), err
	}
	return resp, cc.peer, false, nil
}

// undelivered reports whether a request that failed with err certainly
// did not reach the peer, by DoFailover's rule; wrote is whether the
// HTTP/3 client had begun to encode its header (Client.send). Errors of
// connecting never get here: no request is built before the connection
// is up.
func undelivered(err error, wrote bool) bool {
	if !wrote || isTLSAlert(err) {
		return true
	}
	var he *http3.Error
	return errors.As(err, &he) && he.Remote && he.ErrorCode == http3.ErrCodeRequestRejected
}

// FailedAddressPenalty is how long DoFailover tries an address that gave
// no answer after the others.
const FailedAddressPenalty = 30 * time.Second

// byHealth returns addrs with those that failed within
// FailedAddressPenalty moved to the end, each group in its given order.
func (c *Client) byHealth(addrs []string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.failed) == 0 {
		return addrs
	}
	now := time.Now()
	ok := make([]string, 0, len(addrs))
	var failed []string
	for _, a := range addrs {
		if at, bad := c.failed[a]; bad && now.Sub(at) < FailedAddressPenalty {
			failed = append(failed, a)
		} else {
			ok = append(ok, a)
		}
	}
	return append(ok, failed...)
}

// markFailed records that addr gave no answer (failed), or answered.
func (c *Client) markFailed(addr string, failed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !failed {
		delete(c.failed, addr)
		return
	}
	if c.failed == nil {
		c.failed = map[string]time.Time{}
	}
	now := time.Now()
	c.failed[addr] = now
	for a, at := range c.failed {
		if now.Sub(at) >= FailedAddressPenalty {
			delete(c.failed, a)
		}
	}
}

type cancelBody struct {
	io.ReadCloser
	cancel func()
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}
