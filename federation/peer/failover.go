package peer

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Attempt is one address tried by DoFailover and its error.
type Attempt struct {
	Addr string
	Err  error
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
	parts := make([]string, len(e.Attempts))
	for i, a := range e.Attempts {
		parts[i] = a.Addr + ": " + a.Err.Error()
	}
	return fmt.Sprintf("no node of trust domain %s answered (%d tried): %s", e.TrustDomain.Name(), len(e.Attempts), strings.Join(parts, "; "))
}

// Unwrap returns the attempts' errors.
func (e *UnavailableError) Unwrap() []error {
	out := make([]error, len(e.Attempts))
	for i, a := range e.Attempts {
		out[i] = a.Err
	}
	return out
}

// DoFailover sends a request to the first of addrs (the nodes of trust
// domain td, in order of preference) that answers, and returns the answer
// and the address that gave it. It moves on to the next address on any
// error of Do (no connection, a refused or mismatched certificate, a
// broken connection) and when attemptTimeout passes without response
// headers; an HTTP answer, an error status included, ends the search.
// newRequest builds the request for each attempt (a body is consumed by
// each). attemptTimeout 0 leaves only ctx to bound each attempt. When ctx
// ends, DoFailover returns at once with ctx's error. If no address
// answers the error is an *UnavailableError listing each address and its
// error.
//
// A request that timed out after it was sent may have been carried out by
// that node; only fail over requests that are safe to repeat, or that the
// receiver deduplicates (a forwarded call's assertion carries a jti that
// the receiving BU refuses to see twice).
//
// An address that gave no answer within the last FailedAddressPenalty is
// tried after the others (in their given order), so that while a node is
// down each request does not first wait for its handshake timeout; it is
// still tried when the others fail, and an answer from it ends its
// penalty.
func (c *Client) DoFailover(ctx context.Context, td spiffeid.TrustDomain, addrs []string, attemptTimeout time.Duration, newRequest func(ctx context.Context) (*http.Request, error)) (*http.Response, string, error) {
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
		req, err := newRequest(actx)
		if err != nil {
			cancel(nil)
			return nil, "", fmt.Errorf("build request for trust domain %s: %w", td.Name(), err)
		}
		resp, err := c.Do(actx, td, addr, req)
		if timer != nil {
			timer.Stop()
		}
		if err == nil {
			c.markFailed(addr, false)
			// The attempt's context lives as long as the body is read.
			resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: func() { cancel(nil) }}
			return resp, addr, nil
		}
		if cause := context.Cause(actx); cause != nil && ctx.Err() == nil {
			err = fmt.Errorf("%w (%v)", err, cause)
		}
		cancel(nil)
		if ctx.Err() != nil {
			return nil, "", fmt.Errorf("call to trust domain %s: %w", td.Name(), context.Cause(ctx))
		}
		c.markFailed(addr, true)
		c.log.Debug("peer failed; trying the next", "addr", addr, "trust_domain", td.Name(), "error", err)
		uerr.Attempts = append(uerr.Attempts, Attempt{Addr: addr, Err: err})
	}
	return nil, "", uerr
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
