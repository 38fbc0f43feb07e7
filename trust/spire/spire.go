// Package spire takes identities from a SPIRE agent's Workload API, the
// alternative to the embedded CA of trust/ca: a node's X.509-SVID and the
// X.509 and JWT bundles (Source), and, for the CLI, an SVID or JWT-SVID of
// the calling workload (FetchX509, FetchJWT).
//
// It builds on go-spiffe's workloadapi, which keeps the SVID and bundles
// current as SPIRE rotates them: nothing here renews anything. It owns the
// checks mcpmesh puts on what SPIRE hands out (the SVID is the node's own
// SPIFFE ID, in the node's trust domain) and the reporting of rotations. It
// does not register workloads with SPIRE, build TLS configurations
// (trust/mtls) or verify agents' credentials (trust/agentauth).
//
// Package spiretest serves the real Workload API gRPC service in-process,
// for tests of this package, the node and the CLI.
package spire

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// Config says which Workload API to use and what identity to expect.
type Config struct {
	// Addr is the Workload API's address, as SPIFFE_ENDPOINT_SOCKET is
	// written: unix:///run/spire/sockets/agent.sock or tcp://IP:PORT.
	// Required.
	Addr string
	// ID is the SPIFFE ID the workload must have; when SPIRE hands out
	// several X.509-SVIDs, the one with this ID is used. Required.
	ID spiffeid.ID
	// JWTBundles also watches the JWT bundles (for verifying JWT-SVIDs);
	// without it GetJWTBundleForTrustDomain fails.
	JWTBundles bool
	// StartTimeout bounds how long New waits for the first SVID (and JWT
	// bundles). Default 30s.
	StartTimeout time.Duration
}

// Source serves a workload's X.509-SVID and the bundles of every trust
// domain the Workload API knows, kept current by go-spiffe. It implements
// x509svid.Source, x509bundle.Source and jwtbundle.Source, and is safe for
// concurrent use. Close it when done.
type Source struct {
	cfg    Config
	logger *slog.Logger
	client *workloadapi.Client
	x509   *workloadapi.X509Source
	jwt    *workloadapi.JWTSource

	mu      sync.Mutex
	changed chan struct{}
}

var (
	_ x509svid.Source   = (*Source)(nil)
	_ x509bundle.Source = (*Source)(nil)
	_ jwtbundle.Source  = (*Source)(nil)
)

// Option configures New.
type Option interface{ apply(*Source) }

type optionFunc func(*Source)

func (f optionFunc) apply(s *Source) { f(s) }

// WithLogger sets the logger for rotations and the Workload API client's
// own messages; the default discards.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(s *Source) {
		if l != nil {
			s.logger = l
		}
	})
}

// New connects to the Workload API and waits (up to cfg.StartTimeout) for
// the first X.509 context, and the JWT bundles if cfg.JWTBundles. It fails
// unless the SVID SPIRE hands out has cfg.ID.
func New(ctx context.Context, cfg Config, opts ...Option) (*Source, error) {
	switch {
	case cfg.Addr == "":
		return nil, errors.New("workload API: no address; set one such as unix:///run/spire/sockets/agent.sock")
	case cfg.ID.IsZero():
		return nil, errors.New("workload API: the expected SPIFFE ID is empty")
	}
	if err := workloadapi.ValidateAddress(cfg.Addr); err != nil {
		return nil, fmt.Errorf("workload API address %q: %w; use unix:///path/to/agent.sock or tcp://IP:PORT", cfg.Addr, err)
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 30 * time.Second
	}
	s := &Source{cfg: cfg, logger: slog.New(slog.DiscardHandler), changed: make(chan struct{})}
	for _, o := range opts {
		o.apply(s)
	}
	lg := &clientLogger{l: s.logger}
	client, err := workloadapi.New(ctx, workloadapi.WithAddr(cfg.Addr), workloadapi.WithLogger(lg))
	if err != nil {
		return nil, fmt.Errorf("workload API at %s: %w", cfg.Addr, err)
	}
	s.client = client
	wctx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
	defer cancel()
	s.x509, err = workloadapi.NewX509Source(wctx, workloadapi.WithClient(client), workloadapi.WithDefaultX509SVIDPicker(s.pick))
	if err != nil {
		s.Close()
		return nil, lg.startError(cfg.Addr, "X.509-SVID", err)
	}
	if cfg.JWTBundles {
		s.jwt, err = workloadapi.NewJWTSource(wctx, workloadapi.WithClient(client))
		if err != nil {
			s.Close()
			return nil, lg.startError(cfg.Addr, "the JWT bundles", err)
		}
	}
	svid, err := s.x509.GetX509SVID()
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("workload API at %s: %w", cfg.Addr, err)
	}
	if svid.ID != cfg.ID {
		s.Close()
		return nil, fmt.Errorf("workload API at %s: SPIRE issued this workload %s, not %s; register the workload with SPIFFE ID %s (spire-server entry create -spiffeID %s …)", cfg.Addr, svid.ID, cfg.ID, cfg.ID, cfg.ID)
	}
	return s, nil
}

// pick chooses the SVID with the configured ID among several; when none
// has it, the first, which New then refuses.
func (s *Source) pick(svids []*x509svid.SVID) *x509svid.SVID {
	for _, sv := range svids {
		if sv.ID == s.cfg.ID {
			return sv
		}
	}
	return svids[0]
}

// GetX509SVID returns the current X.509-SVID. It implements x509svid.Source.
func (s *Source) GetX509SVID() (*x509svid.SVID, error) { return s.x509.GetX509SVID() }

// GetX509BundleForTrustDomain returns the X.509 bundle of td as the
// Workload API last sent it. It implements x509bundle.Source.
func (s *Source) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	return s.x509.GetX509BundleForTrustDomain(td)
}

// GetJWTBundleForTrustDomain returns the JWT bundle of td as the Workload
// API last sent it; it fails unless Config.JWTBundles was set. It
// implements jwtbundle.Source.
func (s *Source) GetJWTBundleForTrustDomain(td spiffeid.TrustDomain) (*jwtbundle.Bundle, error) {
	if s.jwt == nil {
		return nil, errors.New("workload API: JWT bundles are not watched")
	}
	return s.jwt.GetJWTBundleForTrustDomain(td)
}

// Run logs each X.509-SVID the Workload API rotates in (at info, with its
// ID and expiry), and at error when SPIRE hands out an SVID for another ID,
// which peers will refuse; it signals every update on Changed. It returns
// ctx.Err() when ctx is done.
func (s *Source) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.x509.Updated():
		}
		s.mu.Lock()
		close(s.changed)
		s.changed = make(chan struct{})
		s.mu.Unlock()
		svid, err := s.x509.GetX509SVID()
		if err != nil {
			continue // closed under us; ctx ends next
		}
		leaf := svid.Certificates[0]
		if svid.ID != s.cfg.ID {
			s.logger.Error("the Workload API rotated in an SVID for another SPIFFE ID; peers will refuse it", "spiffe_id", svid.ID.String(), "want", s.cfg.ID.String())
			continue
		}
		s.logger.Info("X509-SVID from the Workload API", "spiffe_id", svid.ID.String(), "serial", leaf.SerialNumber.Text(16), "expires", leaf.NotAfter)
	}
}

// Changed returns a channel that is closed at the next update of the
// X.509 context Run sees: an SVID rotation, or a change of the bundles (a
// SPIRE CA rotation). Callers that act on the trust domain's bundle wait
// on it and then call Changed again. Without Run it is never closed.
func (s *Source) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// Close drops the connection to the Workload API.
func (s *Source) Close() error {
	var errs []error
	if s.jwt != nil {
		errs = append(errs, s.jwt.Close())
	}
	if s.x509 != nil {
		errs = append(errs, s.x509.Close())
	}
	if s.client != nil {
		errs = append(errs, s.client.Close())
	}
	return errors.Join(errs...)
}

// clientLogger passes go-spiffe's client messages to slog and keeps the
// last error, so that a start that times out can say why.
type clientLogger struct {
	l       *slog.Logger
	mu      sync.Mutex
	lastErr string
}

func (c *clientLogger) Debugf(format string, args ...any) { c.l.Debug(fmt.Sprintf(format, args...)) }
func (c *clientLogger) Infof(format string, args ...any)  { c.l.Info(fmt.Sprintf(format, args...)) }
func (c *clientLogger) Warnf(format string, args ...any)  { c.l.Warn(fmt.Sprintf(format, args...)) }
func (c *clientLogger) Errorf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	c.mu.Lock()
	c.lastErr = msg
	c.mu.Unlock()
	c.l.Error(msg)
}

func (c *clientLogger) startError(addr, what string, err error) error {
	c.mu.Lock()
	last := c.lastErr
	c.mu.Unlock()
	if last != "" && errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("workload API at %s: received no %s in time (last error: %s); check that the SPIRE agent runs there and has a registration entry for this workload: %w", addr, what, last, err)
	}
	return fmt.Errorf("workload API at %s: received no %s: %w; check that the SPIRE agent runs there and has a registration entry for this workload", addr, what, err)
}
