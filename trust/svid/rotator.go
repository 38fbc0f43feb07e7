// Package svid keeps a workload's X509-SVID fresh: a Rotator obtains an SVID
// from an Issuer, such as the embedded CA of trust/ca, renews it when half of
// its lifetime has passed, and serves the current one to TLS configurations
// as an x509svid.Source.
//
// It owns the renewal schedule and the retries when the issuer fails. It does
// not issue certificates (trust/ca does), fetch SVIDs from the SPIRE Workload
// API (go-spiffe's workloadapi.X509Source fetches and rotates those itself),
// or build TLS configurations (trust/mtls).
package svid

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Retry delays after a failed renewal: the first retry waits minBackoff, each
// later one twice as long as the one before, up to maxBackoff.
const (
	minBackoff = time.Second
	maxBackoff = 30 * time.Second
)

// Issuer issues X509-SVIDs. *ca.CA implements it.
type Issuer interface {
	// IssueX509SVID issues an X509-SVID for id, valid for about ttl.
	IssueX509SVID(id spiffeid.ID, ttl time.Duration) (*x509svid.SVID, error)
}

// Rotator serves an X509-SVID for one SPIFFE ID and, while Run runs, renews
// it before it expires. It is safe for concurrent use.
type Rotator struct {
	issuer   Issuer
	id       spiffeid.ID
	ttl      time.Duration
	logger   *slog.Logger
	onRotate func(*x509svid.SVID)

	current atomic.Pointer[x509svid.SVID]
	running atomic.Bool
}

var _ x509svid.Source = (*Rotator)(nil)

// NewRotator returns a Rotator that serves X509-SVIDs for id, each asked of
// issuer with a lifetime of ttl. It issues the first SVID before returning,
// and fails if issuer does; renewals happen only while Run runs.
func NewRotator(issuer Issuer, id spiffeid.ID, ttl time.Duration, opts ...Option) (*Rotator, error) {
	switch {
	case issuer == nil:
		return nil, errors.New("new SVID rotator: issuer is nil")
	case id.IsZero():
		return nil, errors.New("new SVID rotator: SPIFFE ID is empty")
	case ttl <= 0:
		return nil, fmt.Errorf("new SVID rotator for %s: ttl %s is not positive", id, ttl)
	}
	r := &Rotator{
		issuer: issuer,
		id:     id,
		ttl:    ttl,
		logger: slog.New(slog.DiscardHandler),
	}
	for _, opt := range opts {
		opt.apply(r)
	}
	s, err := r.issue()
	if err != nil {
		return nil, fmt.Errorf("new SVID rotator: %w", err)
	}
	r.current.Store(s)
	return r, nil
}

// GetX509SVID returns the current X509-SVID. It implements x509svid.Source.
// If renewals keep failing it goes on returning the last SVID issued, even
// once that has expired; peers then refuse it, and Run logs the failures.
func (r *Rotator) GetX509SVID() (*x509svid.SVID, error) {
	return r.current.Load(), nil
}

// Run renews the SVID each time half of its lifetime has passed (a little
// earlier, by a random fraction of up to a tenth of the lifetime, so that
// nodes started together do not renew together). When the issuer fails it
// keeps serving the current SVID and retries after 1 s, doubling the delay
// up to 30 s; each failure is logged at warn, or at error once the served
// SVID has expired. Run returns ctx.Err() when ctx is done, and an error at
// once if another Run is already running on r. A call to the issuer is not
// interrupted by ctx.
func (r *Rotator) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return fmt.Errorf("run SVID rotator for %s: already running", r.id)
	}
	defer r.running.Store(false)
	for {
		cur := r.current.Load()
		if err := sleep(ctx, time.Until(renewAt(cur.Certificates[0].NotBefore, cur.Certificates[0].NotAfter))); err != nil {
			return err
		}
		if err := r.renew(ctx, cur); err != nil {
			return err
		}
	}
}

// renew replaces old with a new SVID, retrying until the issuer succeeds or
// ctx is done.
func (r *Rotator) renew(ctx context.Context, old *x509svid.SVID) error {
	backoff := minBackoff
	for attempt := 1; ; attempt++ {
		s, err := r.issue()
		if err == nil {
			r.current.Store(s)
			r.logger.Info("renewed X509-SVID", "spiffe_id", r.id.String(), "expires", s.Certificates[0].NotAfter)
			if r.onRotate != nil {
				r.onRotate(s)
			}
			return nil
		}
		expires := old.Certificates[0].NotAfter
		level, msg := slog.LevelWarn, "renew X509-SVID failed; still serving the current one"
		if !time.Now().Before(expires) {
			level, msg = slog.LevelError, "renew X509-SVID failed; the served SVID has expired and peers will refuse it"
		}
		r.logger.Log(ctx, level, msg, "spiffe_id", r.id.String(), "attempt", attempt,
			"retry_in", backoff, "expires", expires, "err", err)
		if err := sleep(ctx, backoff); err != nil {
			return err
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// issue asks the issuer for an SVID and checks that it is one for r.id.
func (r *Rotator) issue() (*x509svid.SVID, error) {
	s, err := r.issuer.IssueX509SVID(r.id, r.ttl)
	switch {
	case err != nil:
		return nil, fmt.Errorf("issue X509-SVID for %s: %w", r.id, err)
	case s == nil || len(s.Certificates) == 0 || s.PrivateKey == nil:
		return nil, fmt.Errorf("issue X509-SVID for %s: issuer returned no certificate or key", r.id)
	case s.ID != r.id:
		return nil, fmt.Errorf("issue X509-SVID for %s: issuer returned an SVID for %s", r.id, s.ID)
	}
	return s, nil
}

// renewAt returns when to renew a certificate valid from notBefore to
// notAfter: at half its lifetime, less a random jitter of up to a tenth of it.
func renewAt(notBefore, notAfter time.Time) time.Time {
	life := notAfter.Sub(notBefore)
	at := notBefore.Add(life / 2)
	if jitter := life / 10; jitter > 0 {
		at = at.Add(-rand.N(jitter))
	}
	return at
}

// sleep waits for d or until ctx is done, whichever comes first.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
