package tokens

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpmesh/mcpmesh/registry/state"
)

// RotationConfig says when the namespace's signing key rotates and how long
// a retired key stays published.
type RotationConfig struct {
	// RotateEvery is the age at which the active key is replaced. Default 24h.
	RotateEvery time.Duration
	// TTL is the lifetime of a minted token. Default 60s.
	TTL time.Duration
	// Leeway is added to TTL before a retired key is deleted: it covers
	// verifiers' clock skew and replicas that applied the rotation late
	// (they may sign with the old key a moment after its retirement).
	// Default 30s.
	Leeway time.Duration
	// PublishAhead is how long a new key is published before it signs, so
	// that verifiers which cache the key set (and refetch it only now and
	// then) know it by its first token. 0 makes new keys sign at once;
	// it must be below RotateEvery.
	PublishAhead time.Duration
}

func (c *RotationConfig) setDefaults() {
	if c.RotateEvery == 0 {
		c.RotateEvery = 24 * time.Hour
	}
	if c.TTL == 0 {
		c.TTL = 60 * time.Second
	}
	if c.Leeway == 0 {
		c.Leeway = 30 * time.Second
	}
}

// Plan is what the leader should do to the signing keys at one moment.
type Plan struct {
	// Rotate is set when there is no key to sign with, or the signing key
	// is due for replacement within PublishAhead and no next key is
	// published yet.
	Rotate bool
	// ActiveFrom is when the new key of a rotation starts signing.
	ActiveFrom time.Time
	// Delete lists the retired keys every token of which has expired.
	Delete []string
	// Next is when the plan changes next, if nothing else changes the
	// keys: the next rotation or a retired key's deletion.
	Next time.Time
}

// PlanRotation returns the plan for keys (oldest first) at now.
func PlanRotation(keys []state.SigningKey, now time.Time, cfg RotationConfig) Plan {
	cfg.setDefaults()
	var p Plan
	next := func(t time.Time) {
		if p.Next.IsZero() || t.Before(p.Next) {
			p.Next = t
		}
	}
	var current *state.SigningKey
	pending := false
	for i, k := range keys {
		switch {
		case k.SignsAt(now):
			current = &keys[i]
		case now.Before(k.SigningFrom()):
			pending = true
		default:
			gone := k.RetiredAt.Add(cfg.TTL + cfg.Leeway)
			if !now.Before(gone) {
				p.Delete = append(p.Delete, k.ID)
			} else {
				next(gone)
			}
			continue
		}
		// A key that signs now or later is deleted once it is retired and
		// its tokens have expired: plan for that moment.
		if k.RetiredAt != nil {
			next(*k.RetiredAt)
			next(k.RetiredAt.Add(cfg.TTL + cfg.Leeway))
		}
	}
	switch {
	case current == nil && !pending:
		// Nothing signs and nothing will: the first key, or a namespace
		// whose keys all ended. Sign at once.
		p.Rotate, p.ActiveFrom = true, now
	case current != nil && !pending && current.RetiredAt == nil:
		publish := current.SigningFrom().Add(cfg.RotateEvery - cfg.PublishAhead)
		if !now.Before(publish) {
			p.Rotate, p.ActiveFrom = true, now.Add(cfg.PublishAhead)
		} else {
			next(publish)
		}
	}
	return p
}

// Rotator keeps the namespace's signing keys rotated: on the leader only,
// it generates the first key, rotates it every RotateEvery and deletes
// retired keys once their tokens have expired, all through Raft. It is
// safe for concurrent use.
type Rotator struct {
	cfg      RotationConfig
	keys     func() ([]state.SigningKey, error)
	propose  func(ctx context.Context, cmd []byte) error
	isLeader func() bool
	now      func() time.Time
	logger   *slog.Logger

	rotations, deletions, failures prometheus.Counter
}

// NewRotator returns a Rotator that reads the keys with keys, commits
// commands (state.RotateSigningKey, state.DeleteSigningKey) through
// propose, and acts only while isLeader reports true. It takes WithClock,
// WithLogger and WithMetrics.
func NewRotator(cfg RotationConfig, keys func() ([]state.SigningKey, error), propose func(ctx context.Context, cmd []byte) error, isLeader func() bool, opts ...Option) (*Rotator, error) {
	cfg.setDefaults()
	if cfg.PublishAhead < 0 || cfg.PublishAhead >= cfg.RotateEvery {
		return nil, fmt.Errorf("tokens: PublishAhead %s must be at least 0 and below RotateEvery %s", cfg.PublishAhead, cfg.RotateEvery)
	}
	o := newOptions(opts)
	r := &Rotator{cfg: cfg, keys: keys, propose: propose, isLeader: isLeader, now: o.now, logger: o.logger,
		rotations: prometheus.NewCounter(prometheus.CounterOpts{Name: "mcpmesh_tokens_key_rotations_total",
			Help: "Signing key rotations this node committed as leader (the first key included)."}),
		deletions: prometheus.NewCounter(prometheus.CounterOpts{Name: "mcpmesh_tokens_keys_deleted_total",
			Help: "Retired signing keys this node deleted as leader once their tokens had expired."}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "mcpmesh_tokens_rotation_failures_total",
			Help: "Rotation steps that failed (and are retried)."}),
	}
	if reg := o.registry; reg != nil {
		for _, c := range []prometheus.Collector{r.rotations, r.deletions, r.failures} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("tokens: register metrics: %w", err)
			}
		}
	}
	return r, nil
}

// Step carries out the plan for now, if this node is the leader, and
// returns the plan it found.
func (r *Rotator) Step(ctx context.Context) (Plan, error) {
	if !r.isLeader() {
		return Plan{}, nil
	}
	keys, err := r.keys()
	if err != nil {
		return Plan{}, fmt.Errorf("read the signing keys: %w", err)
	}
	now := r.now()
	p := PlanRotation(keys, now, r.cfg)
	if p.Rotate {
		cmd, err := NewKey(now)
		if err != nil {
			return p, err
		}
		if p.ActiveFrom.After(now) {
			cmd.ActiveFrom = p.ActiveFrom
		}
		if err := r.commit(ctx, cmd); err != nil {
			return p, fmt.Errorf("commit the new signing key: %w", err)
		}
		r.rotations.Inc()
		r.logger.Info("tokens: rotated the signing key", "kid", cmd.ID, "signsFrom", p.ActiveFrom)
	}
	for _, id := range p.Delete {
		if err := r.commit(ctx, state.DeleteSigningKey{ID: id, At: now}); err != nil {
			return p, fmt.Errorf("delete retired signing key %s: %w", id, err)
		}
		r.deletions.Inc()
		r.logger.Info("tokens: deleted a retired signing key; its tokens have expired", "kid", id)
	}
	return p, nil
}

func (r *Rotator) commit(ctx context.Context, cmd any) error {
	raw, err := state.Encode(cmd)
	if err != nil {
		return err
	}
	return r.propose(ctx, raw)
}

// Run steps until ctx ends: soon after the keys next need a change, and at
// least every 5s (leadership may move), every 250ms while there is no key.
func (r *Rotator) Run(ctx context.Context) error {
	for {
		p, err := r.Step(ctx)
		wait := 5 * time.Second
		switch {
		case err != nil:
			r.failures.Inc()
			r.logger.Warn("tokens: signing key rotation failed; retrying", "error", err)
			wait = time.Second
		case p.Rotate:
			// Just rotated, or not the leader and no key seen: look again soon.
			wait = 250 * time.Millisecond
		case !p.Next.IsZero():
			wait = min(wait, max(p.Next.Sub(r.now()), 50*time.Millisecond))
		}
		if !r.isLeader() {
			if keys, err := r.keys(); err == nil && len(keys) == 0 {
				wait = 250 * time.Millisecond
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			if errors.Is(ctx.Err(), context.Canceled) {
				return nil
			}
			return ctx.Err()
		case <-t.C:
		}
	}
}
