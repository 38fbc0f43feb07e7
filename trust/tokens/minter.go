package tokens

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpmesh/mcpmesh/registry/state"
)

// ErrNoKey means the namespace has no active signing key yet: its leader
// generates the first one shortly after the cluster forms.
var ErrNoKey = errors.New("no token signing key yet (the namespace's leader generates one once elected); retry shortly")

// Config configures a Minter.
type Config struct {
	// Issuer is the iss of every token, the BU's issuer, such as
	// spiffe://hr.example.corp/mcpmesh/gateway. Required.
	Issuer string
	// Node is the minting node's SPIFFE ID: the last link of the caller
	// chain, and the subject of the node's own requests. Required.
	Node string
	// TTL is how long a token is valid. Default 60s.
	TTL time.Duration
}

// Minter signs upstream tokens with the namespace's active key and serves
// the public key set. It is safe for concurrent use; minting reads no
// storage (SetKeys hands it the keys).
type Minter struct {
	cfg    Config
	now    func() time.Time
	logger *slog.Logger
	keys   atomic.Pointer[keyring]
	// hasKey is closed once the minter first has an active key.
	hasKey   chan struct{}
	hasKeyMu sync.Once

	minted *prometheus.CounterVec
}

// NewMinter returns a Minter without keys: Mint fails with ErrNoKey until
// SetKeys gives it an active one. It takes WithClock, WithLogger and
// WithMetrics.
func NewMinter(cfg Config, opts ...Option) (*Minter, error) {
	if cfg.Issuer == "" || cfg.Node == "" {
		return nil, errors.New("tokens: a minter needs an issuer and the node's SPIFFE ID")
	}
	if cfg.TTL == 0 {
		cfg.TTL = 60 * time.Second
	}
	if cfg.TTL < time.Second {
		return nil, fmt.Errorf("tokens: TTL %s is too short; use at least 1s", cfg.TTL)
	}
	o := newOptions(opts)
	m := &Minter{cfg: cfg, now: o.now, logger: o.logger, hasKey: make(chan struct{}),
		minted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mcpmesh_tokens_minted_total",
			Help: "Tokens minted toward upstreams, by audience (upstream server) and outcome (ok, no_key, error)."}, []string{"audience", "outcome"})}
	m.keys.Store(&keyring{})
	if reg := o.registry; reg != nil {
		keys := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "mcpmesh_tokens_signing_keys",
			Help: "Signing keys this replica publishes, by state (active: signing now; next: published ahead of signing; retired)."}, []string{"state"})
		age := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mcpmesh_tokens_signing_key_age_seconds",
			Help: "How long the signing key has signed; 0 while there is none."}, func() float64 {
			now := m.now()
			if a := m.keys.Load().at(now); a != nil {
				return now.Sub(a.from).Seconds()
			}
			return 0
		})
		for _, c := range []prometheus.Collector{m.minted, age, keysCollector{m, keys}} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("tokens: register metrics: %w", err)
			}
		}
	}
	return m, nil
}

// keysCollector reports the key counts at scrape time.
type keysCollector struct {
	m *Minter
	g *prometheus.GaugeVec
}

func (c keysCollector) Describe(ch chan<- *prometheus.Desc) { c.g.Describe(ch) }

func (c keysCollector) Collect(ch chan<- prometheus.Metric) {
	active, next, retired := c.m.keys.Load().count(c.m.now())
	c.g.WithLabelValues("active").Set(float64(active))
	c.g.WithLabelValues("next").Set(float64(next))
	c.g.WithLabelValues("retired").Set(float64(retired))
	c.g.Collect(ch)
}

// Issuer is the iss of the minted tokens.
func (m *Minter) Issuer() string { return m.cfg.Issuer }

// SetKeys makes keys (the namespace's signing keys, oldest first, as
// registry/state returns them) the ones to sign with and publish. An
// unchanged list is a no-op, so it may be called on every registry change.
func (m *Minter) SetKeys(keys []state.SigningKey) error {
	if m.keys.Load().fingerprint == fingerprint(keys) && len(keys) > 0 {
		return nil
	}
	kr, err := newKeyring(keys)
	if err != nil {
		return err
	}
	prev := m.keys.Swap(kr)
	if kr.at(m.now()) != nil {
		m.hasKeyMu.Do(func() { close(m.hasKey) })
	}
	for _, k := range kr.keys {
		if !slices.ContainsFunc(prev.keys, func(p *signingKey) bool { return p.id == k.id }) {
			m.logger.Info("tokens: new signing key", "kid", k.id, "signsFrom", k.from, "published", len(kr.public.Keys))
		}
	}
	return nil
}

// WaitKey waits until the minter has had an active key, or ctx ends.
func (m *Minter) WaitKey(ctx context.Context) error {
	select {
	case <-m.hasKey:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("no token signing key yet: %w", ctx.Err())
	}
}

// ActiveKeyID is the id of the key tokens are signed with now, or "".
func (m *Minter) ActiveKeyID() string {
	if a := m.keys.Load().at(m.now()); a != nil {
		return a.id
	}
	return ""
}

// upstreamClaims are the claims of a minted token.
type upstreamClaims struct {
	jwt.Claims
	Tenant    string   `json:"io.mcpmesh/tenant,omitempty"`
	Caller    []string `json:"io.mcpmesh/caller"`
	RequestID string   `json:"io.mcpmesh/request_id"`
}

// Mint returns a token for a request to the upstream server audience on
// behalf of c. It fails with ErrNoKey while the namespace has no active
// key.
func (m *Minter) Mint(audience string, c Caller) (string, error) {
	now := m.now()
	a := m.keys.Load().at(now)
	if a == nil {
		m.minted.WithLabelValues(audience, "no_key").Inc()
		return "", ErrNoKey
	}
	claims := upstreamClaims{
		Claims: jwt.Claims{Issuer: m.cfg.Issuer, Subject: c.Principal, Audience: jwt.Audience{audience},
			IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(m.cfg.TTL)),
			ID: randomID()},
		Tenant:    c.Tenant,
		Caller:    append(slices.Clone(c.Via), m.cfg.Node),
		RequestID: c.RequestID,
	}
	if c.Principal == "" {
		claims.Subject = m.cfg.Node
	} else {
		claims.Caller = append([]string{c.Principal}, claims.Caller...)
	}
	if claims.RequestID == "" {
		claims.RequestID = randomID()
	}
	tok, err := a.signer.sign(claims)
	if err != nil {
		m.minted.WithLabelValues(audience, "error").Inc()
		return "", fmt.Errorf("sign a token for %s with key %s: %w", audience, a.id, err)
	}
	m.minted.WithLabelValues(audience, "ok").Inc()
	return tok, nil
}

// JWKS returns the public key set (RFC 7517) as served: every key still
// published, active and retired; never a private part.
func (m *Minter) JWKS() []byte {
	kr := m.keys.Load()
	if kr.jwks == nil {
		return []byte(`{"keys":[]}`)
	}
	return kr.jwks
}

// JWKSHandler serves the key set, without authentication, for JWKSPath.
// Verifiers cache it for a minute and refetch when a token names a key
// they do not know.
func (m *Minter) JWKSHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.Header().Set("Cache-Control", "public, max-age=60")
		w.Write(m.JWKS())
	})
}
