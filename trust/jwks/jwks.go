// Package jwks keeps a JSON Web Key Set (RFC 7517) fetched from a URL: it
// fetches the set on first use and again when it is stale or lacks a key a
// token names, at most once per minimum interval, so that rotated keys are
// picked up at once and made-up key ids cannot make a verifier flood the
// publisher.
//
// It owns the fetching and caching only; verifying tokens is its callers'
// job: OIDC access tokens in trust/agentauth, node-minted tokens in
// trust/tokens.
package jwks

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// maxSetBytes bounds a fetched key set.
const maxSetBytes = 1 << 20

// Config configures a Set.
type Config struct {
	// URL is where the key set is published.
	URL string
	// RefreshInterval is how often the set is fetched again. Default 5m.
	RefreshInterval time.Duration
	// MinRefreshInterval is the least time between two fetches, however
	// many unknown key ids are asked for. Default 10s.
	MinRefreshInterval time.Duration
	// HTTPClient fetches the set. Default: a client with a 10s timeout.
	HTTPClient *http.Client
}

// Set is a cached key set. It is safe for concurrent use.
type Set struct {
	cfg Config
	now func() time.Time

	mu      sync.Mutex
	keys    jose.JSONWebKeySet
	fetched time.Time
	lastErr error
}

// New returns a Set that fetches cfg.URL on first use; now is its clock.
func New(cfg Config, now func() time.Time) *Set {
	if cfg.RefreshInterval == 0 {
		cfg.RefreshInterval = 5 * time.Minute
	}
	if cfg.MinRefreshInterval == 0 {
		cfg.MinRefreshInterval = 10 * time.Second
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	return &Set{cfg: cfg, now: now}
}

// MissingError says a key set has no signing key of the id asked for.
type MissingError struct {
	// KID is the key id asked for.
	KID string
	// Fetch is why the last fetch of the set failed; nil when it succeeded.
	Fetch error
}

// Error says which key is missing and, if so, why the set could not be
// fetched.
func (e *MissingError) Error() string {
	if e.Fetch != nil {
		return fmt.Sprintf("key %q is not known and the key set could not be fetched: %v", e.KID, e.Fetch)
	}
	return fmt.Sprintf("key %q is not in the key set", e.KID)
}

func signing(kid string) func(jose.JSONWebKey) bool {
	return func(k jose.JSONWebKey) bool { return k.KeyID == kid && (k.Use == "" || k.Use == "sig") }
}

// Key returns the signing key with id kid, fetching the set first when it
// is stale or does not have kid (at most once per MinRefreshInterval). The
// error is a *MissingError when the set has no such key.
func (s *Set) Key(ctx context.Context, kid string) (*jose.JSONWebKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	find := func() *jose.JSONWebKey {
		if i := slices.IndexFunc(s.keys.Keys, signing(kid)); i >= 0 {
			return &s.keys.Keys[i]
		}
		return nil
	}
	k := find()
	stale := s.fetched.IsZero() || now.Sub(s.fetched) >= s.cfg.RefreshInterval
	if (k == nil || stale) && (s.fetched.IsZero() || now.Sub(s.fetched) >= s.cfg.MinRefreshInterval) {
		s.fetched = now
		s.lastErr = s.fetch(ctx)
		k = find()
	}
	if k == nil {
		return nil, &MissingError{KID: kid, Fetch: s.lastErr}
	}
	return k, nil
}

// Has reports whether the set as held now, without fetching, has signing
// key kid: a token verified earlier needs its key still published.
func (s *Set) Has(kid string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.ContainsFunc(s.keys.Keys, signing(kid))
}

func (s *Set) fetch(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.cfg.URL, nil)
	if err != nil {
		return err
	}
	resp, err := s.cfg.HTTPClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: HTTP %d", s.cfg.URL, resp.StatusCode)
	}
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxSetBytes)).Decode(&set); err != nil {
		return fmt.Errorf("GET %s: not a JWK set: %w", s.cfg.URL, err)
	}
	s.keys = set
	return nil
}
