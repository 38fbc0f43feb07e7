package bundles

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/mcpmesh/mcpmesh/registry/state"
)

// Endpoint is one SPIFFE bundle endpoint of a foreign trust domain
// (https_spiffe profile): its URL and the SPIFFE ID its server
// certificate must carry.
type Endpoint struct {
	URL string
	ID  spiffeid.ID
}

// Target is a foreign trust domain whose bundle the BU needs, as the
// federation manifest describes it.
type Target struct {
	TrustDomain spiffeid.TrustDomain
	// Endpoints are tried in order at each refresh until one answers.
	Endpoints []Endpoint
	// Bootstrap authenticates the endpoints until a bundle of the trust
	// domain is stored; after that, the stored bundle does.
	Bootstrap *spiffebundle.Bundle
}

// Store reads the foreign bundles the BU's Raft state holds;
// *state.FSM implements it.
type Store interface {
	ForeignBundle(td string) (state.ForeignBundle, error)
	ForeignBundles() ([]state.ForeignBundle, error)
}

// WatcherConfig configures a Watcher.
type WatcherConfig struct {
	// IsLeader reports whether this node leads the BU's Raft group. Only
	// the leader fetches and proposes. Required.
	IsLeader func() bool
	// LeaderChanged, when set, receives whenever this node may have
	// gained or lost the leadership (registry/cluster's
	// Cluster.WatchLeadership): Run then wakes only when a fetch is due,
	// the targets change or the leadership does, instead of every
	// MinRefresh to poll IsLeader. Signals may coalesce.
	LeaderChanged <-chan struct{}
	// Propose commits an encoded registry command (state.Encode) through
	// the BU's Raft group. Required.
	Propose func(ctx context.Context, cmd []byte) error
	// Store reads the stored bundles. Required.
	Store Store
	// By names this node in the commands it proposes, e.g. its SPIFFE ID.
	By string
	// MinRefresh and MaxRefresh bound the wait between two fetches of a
	// trust domain, whatever refresh hint its bundle carries; a bundle
	// without a hint is fetched every MaxRefresh. After a failed fetch the
	// next try waits MinRefresh. Defaults 5s and 5m.
	MinRefresh, MaxRefresh time.Duration
	// FetchTimeout bounds one fetch from one endpoint. Default 10s.
	FetchTimeout time.Duration
}

// Watcher keeps the foreign bundles in the BU's Raft state current. It
// fetches each target's bundle from its endpoints and proposes PutBundle
// when the fetched sequence is higher than the stored one; it proposes
// DeleteBundle for a stored trust domain that is no longer a target. It
// acts only while IsLeader reports true, so run it on every replica. Safe
// for concurrent use.
type Watcher struct {
	cfg         WatcherConfig
	log         *slog.Logger
	now         func() time.Time
	fetchErrors *prometheus.CounterVec

	mu      sync.Mutex
	targets map[spiffeid.TrustDomain]Target
	known   bool // SetTargets has been called: deletions are safe
	urgent  map[spiffeid.TrustDomain]bool
	kick    chan struct{}
}

// NewWatcher returns a Watcher with no targets; call SetTargets, then Run.
func NewWatcher(cfg WatcherConfig, opts ...Option) (*Watcher, error) {
	switch {
	case cfg.IsLeader == nil:
		return nil, errors.New("bundle watcher: IsLeader is required")
	case cfg.Propose == nil:
		return nil, errors.New("bundle watcher: Propose is required")
	case cfg.Store == nil:
		return nil, errors.New("bundle watcher: Store is required")
	}
	if cfg.MinRefresh <= 0 {
		cfg.MinRefresh = 5 * time.Second
	}
	if cfg.MaxRefresh <= 0 {
		cfg.MaxRefresh = 5 * time.Minute
	}
	if cfg.MaxRefresh < cfg.MinRefresh {
		return nil, fmt.Errorf("bundle watcher: MaxRefresh %s is below MinRefresh %s", cfg.MaxRefresh, cfg.MinRefresh)
	}
	if cfg.FetchTimeout <= 0 {
		cfg.FetchTimeout = 10 * time.Second
	}
	o := newOptions(opts)
	fe, err := newFetchErrors(o.registry)
	if err != nil {
		return nil, fmt.Errorf("bundle watcher: register metrics: %w", err)
	}
	return &Watcher{cfg: cfg, log: o.logger, now: o.now, fetchErrors: fe, targets: map[spiffeid.TrustDomain]Target{}, kick: make(chan struct{}, 1)}, nil
}

// SetTargets replaces the trust domains to watch. A trust domain dropped
// from the list gets its stored bundle deleted (by the leader); one added
// is fetched at once. Each target needs at least one endpoint with an
// https URL and the SPIFFE ID the endpoint's certificate carries, which
// the target's bundle (stored, or the bootstrap one) must verify. On an
// error nothing changes.
func (w *Watcher) SetTargets(targets []Target) error {
	next := make(map[spiffeid.TrustDomain]Target, len(targets))
	for i, t := range targets {
		if err := checkTarget(t); err != nil {
			return fmt.Errorf("bundle watcher target %d: %w", i, err)
		}
		if _, dup := next[t.TrustDomain]; dup {
			return fmt.Errorf("bundle watcher target %d: trust domain %s listed twice", i, t.TrustDomain.Name())
		}
		next[t.TrustDomain] = t
	}
	w.mu.Lock()
	w.targets, w.known = next, true
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
	return nil
}

// RefreshNow asks for trust domain td's bundle to be fetched at once
// rather than when its refresh hint says (a gossip hint advertised a newer
// sequence). A fetch already running, or td not being a target, makes it
// a no-op; the fetched bundle is stored only if its sequence rises, as
// always, so a false hint costs one fetch.
func (w *Watcher) RefreshNow(td spiffeid.TrustDomain) {
	w.mu.Lock()
	if w.urgent == nil {
		w.urgent = map[spiffeid.TrustDomain]bool{}
	}
	w.urgent[td] = true
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func checkTarget(t Target) error {
	if t.TrustDomain.IsZero() {
		return errors.New("trust domain is missing")
	}
	if len(t.Endpoints) == 0 {
		return fmt.Errorf("trust domain %s has no bundle endpoint; the manifest must give at least one", t.TrustDomain.Name())
	}
	for j, ep := range t.Endpoints {
		u, err := url.Parse(ep.URL)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return fmt.Errorf("trust domain %s endpoint %d: URL %q; want https://host:port/ (https_spiffe profile)", t.TrustDomain.Name(), j, ep.URL)
		}
		if ep.ID.IsZero() {
			return fmt.Errorf("trust domain %s endpoint %d: the endpoint SPIFFE ID is missing", t.TrustDomain.Name(), j)
		}
	}
	if t.Bootstrap != nil && t.Bootstrap.TrustDomain() != t.TrustDomain {
		return fmt.Errorf("trust domain %s: bootstrap bundle is for %s", t.TrustDomain.Name(), t.Bootstrap.TrustDomain().Name())
	}
	return nil
}

// Run watches until ctx ends and returns ctx's error. Each due target is
// fetched in its own goroutine, so a slow endpoint delays only its own
// trust domain.
func (w *Watcher) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	due := map[spiffeid.TrustDomain]time.Time{}
	running := map[spiffeid.TrustDomain]bool{}
	type result struct {
		td   spiffeid.TrustDomain
		next time.Duration
	}
	results := make(chan result)
	timer := time.NewTimer(0)
	defer timer.Stop()
	// Stored bundles of trust domains no longer targets are looked for
	// when the targets change, on becoming leader, after a fetch of a
	// dropped target, and MinRefresh after a deletion failed; without
	// LeaderChanged, at every wake as before.
	leading, drop := false, true
	for {
		now := time.Now()
		if w.cfg.IsLeader() {
			if drop || !leading || w.cfg.LeaderChanged == nil {
				drop = !w.deleteDropped(ctx)
			}
			leading = true
			for td, t := range w.snapshotTargets() {
				if running[td] || now.Before(due[td]) {
					continue
				}
				running[td] = true
				wg.Add(1)
				go func() {
					defer wg.Done()
					next := w.refresh(ctx, t)
					select {
					case results <- result{td, next}:
					case <-ctx.Done():
					}
				}()
			}
		} else {
			leading = false
		}
		// Without LeaderChanged, wake every MinRefresh to poll IsLeader;
		// with it, only when a fetch is due or a deletion is retried.
		wait := time.Duration(-1)
		if w.cfg.LeaderChanged == nil || (leading && drop) {
			wait = w.cfg.MinRefresh
		}
		if leading {
			for td := range due {
				if running[td] {
					continue
				}
				if d := max(due[td].Sub(now), 0); wait < 0 || d < wait {
					wait = d
				}
			}
		}
		if wait >= 0 {
			timer.Reset(wait)
		} else {
			timer.Stop()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case r := <-results:
			running[r.td] = false
			due[r.td] = time.Now().Add(r.next)
			if _, ok := w.snapshotTargets()[r.td]; !ok {
				drop = true // it may have stored a bundle after the target went
			}
		case <-w.kick:
			// New targets: forget when removed ones were due. Urgent
			// ones are due now.
			drop = true
			targets := w.snapshotTargets()
			for td := range due {
				if _, ok := targets[td]; !ok {
					delete(due, td)
				}
			}
			w.mu.Lock()
			for td := range w.urgent {
				delete(due, td)
			}
			clear(w.urgent)
			w.mu.Unlock()
		case <-w.cfg.LeaderChanged:
		case <-timer.C:
		}
	}
}

func (w *Watcher) snapshotTargets() map[spiffeid.TrustDomain]Target {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[spiffeid.TrustDomain]Target, len(w.targets))
	for td, t := range w.targets {
		out[td] = t
	}
	return out
}

// deleteDropped proposes DeleteBundle for each stored bundle whose trust
// domain is not a target, once targets are known; it reports whether
// nothing is left to retry.
func (w *Watcher) deleteDropped(ctx context.Context) bool {
	w.mu.Lock()
	known := w.known
	w.mu.Unlock()
	if !known {
		return true // SetTargets kicks Run
	}
	stored, err := w.cfg.Store.ForeignBundles()
	if err != nil {
		w.log.Warn("bundle watcher: read stored bundles", "error", err)
		return false
	}
	targets := w.snapshotTargets()
	ok := true
	for _, fb := range stored {
		td, err := spiffeid.TrustDomainFromString(fb.TrustDomain)
		if err == nil {
			if _, ok := targets[td]; ok {
				continue
			}
		}
		cmd, err := state.Encode(state.DeleteBundle{TrustDomain: fb.TrustDomain, By: w.cfg.By, At: w.now()})
		if err != nil {
			w.log.Error("bundle watcher: encode delete", "error", err)
			return false
		}
		pctx, cancel := context.WithTimeout(ctx, w.cfg.FetchTimeout)
		err = w.cfg.Propose(pctx, cmd)
		cancel()
		if err != nil {
			w.log.Warn("bundle watcher: could not delete the bundle of a trust domain no longer needed; retrying", "trust_domain", fb.TrustDomain, "error", err)
			ok = false
			continue
		}
		w.log.Info("deleted the bundle of a trust domain the manifest no longer relates to", "trust_domain", fb.TrustDomain, "sequence", fb.Sequence)
	}
	return ok
}

// refresh fetches t's bundle, proposes it if its sequence rose, and
// returns the wait until the next fetch.
func (w *Watcher) refresh(ctx context.Context, t Target) time.Duration {
	td := t.TrustDomain
	stored, storedSeq, have, err := w.stored(td)
	if err != nil {
		w.log.Warn("bundle watcher: read stored bundle", "trust_domain", td.Name(), "error", err)
		return w.cfg.MinRefresh
	}
	auth := t.Bootstrap
	if have {
		auth = stored
	}
	if auth == nil {
		w.fetchErrors.WithLabelValues(td.Name()).Inc()
		w.log.Warn("bundle watcher: no bundle to authenticate the bundle endpoint with; the manifest must carry a bootstrap bundle for the trust domain", "trust_domain", td.Name())
		return w.cfg.MaxRefresh
	}
	fetched, err := w.fetch(ctx, t, auth)
	if err != nil {
		if ctx.Err() == nil {
			w.fetchErrors.WithLabelValues(td.Name()).Inc()
			w.log.Warn("bundle watcher: fetch failed on every endpoint; keeping the stored bundle", "trust_domain", td.Name(), "error", err)
		}
		return w.cfg.MinRefresh
	}
	next := w.cfg.MaxRefresh
	if hint, ok := fetched.RefreshHint(); ok && hint > 0 {
		next = min(max(hint, w.cfg.MinRefresh), w.cfg.MaxRefresh)
	}
	seq, ok := fetched.SequenceNumber()
	if !ok {
		// A bundle without spiffe_sequence: number it one above the
		// stored one when its content changed.
		if have && stored.Equal(fetched) {
			return next
		}
		seq = storedSeq + 1
	}
	if have && seq <= storedSeq {
		return next
	}
	raw, err := encodeFetched(fetched)
	if err != nil {
		w.fetchErrors.WithLabelValues(td.Name()).Inc()
		w.log.Warn("bundle watcher: refusing the fetched bundle; keeping the stored one", "trust_domain", td.Name(), "error", err)
		return w.cfg.MinRefresh
	}
	cmd, err := state.Encode(state.PutBundle{TrustDomain: td.Name(), Sequence: seq, Bundle: raw, By: w.cfg.By, At: w.now()})
	if err != nil {
		w.log.Error("bundle watcher: encode", "error", err)
		return w.cfg.MinRefresh
	}
	pctx, cancel := context.WithTimeout(ctx, w.cfg.FetchTimeout)
	defer cancel()
	if err := w.cfg.Propose(pctx, cmd); err != nil {
		w.log.Warn("bundle watcher: could not store a newer bundle; retrying", "trust_domain", td.Name(), "sequence", seq, "error", err)
		return w.cfg.MinRefresh
	}
	w.log.Info("stored a newer trust bundle", "trust_domain", td.Name(), "sequence", seq, "previous_sequence", storedSeq)
	return next
}

// encodeFetched checks a fetched bundle and returns the document to
// store. A bundle without X.509 authorities is refused: storing it would
// silently stop trusting every node of the trust domain, which is what
// removing the trust domain from the manifest is for.
func encodeFetched(b *spiffebundle.Bundle) ([]byte, error) {
	if len(b.X509Authorities()) == 0 {
		return nil, fmt.Errorf("the bundle of %s holds no X.509 authority", b.TrustDomain().Name())
	}
	raw, err := b.Marshal()
	if err != nil {
		return nil, fmt.Errorf("marshal the bundle of %s: %w", b.TrustDomain().Name(), err)
	}
	return raw, nil
}

// stored returns the stored bundle of td, parsed, and its stored
// sequence.
func (w *Watcher) stored(td spiffeid.TrustDomain) (*spiffebundle.Bundle, uint64, bool, error) {
	fb, err := w.cfg.Store.ForeignBundle(td.Name())
	if errors.Is(err, state.ErrNotFound) {
		return nil, 0, false, nil
	}
	if err != nil {
		return nil, 0, false, err
	}
	b, err := spiffebundle.Parse(td, fb.Bundle)
	if err != nil {
		return nil, 0, false, fmt.Errorf("stored bundle of %s: %w", td.Name(), err)
	}
	return b, fb.Sequence, true, nil
}

// fetch tries t's endpoints in order and returns the first bundle one
// serves, or an error naming each endpoint and its error.
func (w *Watcher) fetch(ctx context.Context, t Target, auth *spiffebundle.Bundle) (*spiffebundle.Bundle, error) {
	var errs []string
	for _, ep := range t.Endpoints {
		fctx, cancel := context.WithTimeout(ctx, w.cfg.FetchTimeout)
		b, err := fetchBundle(fctx, t.TrustDomain, ep.URL, auth, ep.ID)
		cancel()
		if err == nil {
			return b, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		errs = append(errs, fmt.Sprintf("%s (%s): %v", ep.URL, ep.ID, err))
	}
	return nil, fmt.Errorf("fetch the bundle of %s: %s", t.TrustDomain.Name(), strings.Join(errs, "; "))
}

// ParseStored parses stored foreign bundles for Set.Replace, keeping only
// those whose trust domain keep reports true (the manifest's current
// relationships; nil keeps all). A bundle that does not parse is
// reported and left out: the FSM checked it when it was stored, so this
// means a corrupt state.
func ParseStored(stored []state.ForeignBundle, keep func(spiffeid.TrustDomain) bool) ([]*spiffebundle.Bundle, error) {
	out := make([]*spiffebundle.Bundle, 0, len(stored))
	var errs []error
	for _, fb := range stored {
		td, err := spiffeid.TrustDomainFromString(fb.TrustDomain)
		if err != nil {
			errs = append(errs, fmt.Errorf("stored bundle trust domain %q: %w", fb.TrustDomain, err))
			continue
		}
		if keep != nil && !keep(td) {
			continue
		}
		b, err := spiffebundle.Parse(td, fb.Bundle)
		if err != nil {
			errs = append(errs, fmt.Errorf("stored bundle of %s: %w", td.Name(), err))
			continue
		}
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b *spiffebundle.Bundle) int {
		return strings.Compare(a.TrustDomain().Name(), b.TrustDomain().Name())
	})
	return out, errors.Join(errs...)
}
