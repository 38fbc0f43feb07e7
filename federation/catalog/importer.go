package catalog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/mcpmesh/mcpmesh/registry/state"
)

// Importer defaults.
const (
	DefaultRetryMin       = time.Second
	DefaultRetryMax       = 30 * time.Second
	DefaultStatusInterval = time.Minute
	DefaultStaleAfter     = state.DefaultStaleAfter
	DefaultLeaderCheck    = time.Second
	DefaultRescan         = 10 * time.Minute
)

// Fetcher asks an exporting BU for its catalog: it returns the catalog
// when its version differs from since, nil and no error when the exporter
// answered that nothing changed (after its long poll). It must bound its
// own wait (the exporter holds a long poll up to DefaultMaxWait) and
// return when ctx ends. HTTPFetcher is one.
type Fetcher func(ctx context.Context, since uint64) (*Catalog, error)

// Origin is one exporting BU this BU imports from: a relationship of the
// federation manifest in which this BU calls the origin.
type Origin struct {
	// Namespace is the origin's namespace, the prefix of its tools on
	// /mcp ("finance" gives "finance.generate_report").
	Namespace string
	// TrustDomain is the origin's trust domain.
	TrustDomain spiffeid.TrustDomain
	// Fetch pulls the origin's catalog. Required.
	Fetch Fetcher
}

// ImporterConfig configures the importer.
type ImporterConfig struct {
	// FSM is the local replica's registry state. Required.
	FSM *state.FSM
	// Apply commits a command through Raft (registry/cluster's
	// Cluster.Apply). Required.
	Apply func(ctx context.Context, cmd []byte) (state.ApplyResult, error)
	// IsLeader reports whether this node leads its BU; only the leader
	// syncs. Required.
	IsLeader func() bool
	// TrustDomain is this BU's trust domain: a catalog built for another
	// is refused. Required.
	TrustDomain spiffeid.TrustDomain
	// RetryMin and RetryMax bound the backoff after a failed sync;
	// defaults DefaultRetryMin and DefaultRetryMax.
	RetryMin, RetryMax time.Duration
	// StatusInterval is how often, at most, a successful sync that changed
	// nothing is committed to the peer status (last sync time); defaults
	// DefaultStatusInterval. Changes (an error, its end, new imports) are
	// committed at once.
	StatusInterval time.Duration
	// StaleAfter is how long an origin may go without a successful sync
	// before its imports are stale; default DefaultStaleAfter. Keep it
	// above twice StatusInterval plus the long poll.
	StaleAfter time.Duration
	// LeaderChanged, when set, receives whenever this node may have
	// gained or lost the leadership (registry/cluster's
	// Cluster.WatchLeadership): Run then re-reads IsLeader on it instead
	// of polling. Signals may coalesce.
	LeaderChanged <-chan struct{}
	// LeaderCheck is how often IsLeader is polled when LeaderChanged is
	// nil; default DefaultLeaderCheck.
	LeaderCheck time.Duration
	// Rescan is how often the leader looks for the imports of origins no
	// longer listed with nothing changed, a backstop for imports a sync
	// stored while its origin was being removed; default DefaultRescan.
	// It looks at once when the origins change and when this node
	// becomes leader.
	Rescan time.Duration
}

// Importer keeps this BU's imports in step with what each origin exports
// to it. Run it on every node: only the leader syncs (one long-poll loop
// per origin); the others idle, and all can answer Stale. It is safe for
// concurrent use.
type Importer struct {
	cfg    ImporterConfig
	logger *slog.Logger
	now    func() time.Time
	syncs  *prometheus.CounterVec

	mu      sync.Mutex
	origins map[string]Origin // by namespace; nil until SetOrigins
	changed chan struct{}
	kicks   map[string]chan struct{} // by namespace, of the running sync loops

	// scans counts removeRevoked's reads of the imports (for tests).
	scans atomic.Int64
}

// NewImporter returns an importer; call SetOrigins and Run.
func NewImporter(cfg ImporterConfig, opts ...Option) (*Importer, error) {
	if cfg.FSM == nil || cfg.Apply == nil || cfg.IsLeader == nil || cfg.TrustDomain.IsZero() {
		return nil, errors.New("catalog importer: FSM, Apply, IsLeader and TrustDomain are required")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.RetryMin, DefaultRetryMin)
	def(&cfg.RetryMax, DefaultRetryMax)
	def(&cfg.StatusInterval, DefaultStatusInterval)
	def(&cfg.StaleAfter, DefaultStaleAfter)
	def(&cfg.LeaderCheck, DefaultLeaderCheck)
	def(&cfg.Rescan, DefaultRescan)
	cfg.RetryMax = max(cfg.RetryMax, cfg.RetryMin)
	o := newOptions(opts)
	im := &Importer{cfg: cfg, logger: o.logger, now: o.now, changed: make(chan struct{}, 1)}
	im.syncs = newSyncsCounter(nil)
	if o.reg != nil {
		if err := o.reg.Register(im.syncs); err != nil {
			return nil, fmt.Errorf("catalog importer: register metrics: %w", err)
		}
		if err := o.reg.Register(newImportedCollector(cfg.FSM)); err != nil {
			return nil, fmt.Errorf("catalog importer: register metrics: %w", err)
		}
	}
	return im, nil
}

// SetOrigins replaces the list of origins (from the federation manifest's
// relationships in which this BU is the caller). The first call arms the
// removal of imports: from then on, the leader deletes the imports and
// status of every namespace not in the list (a revoked relationship).
// Before it, nothing is deleted. An origin whose trust domain changed is
// restarted; a changed Fetch is used from the origin's next fetch on.
func (im *Importer) SetOrigins(origins []Origin) error {
	m := make(map[string]Origin, len(origins))
	for _, o := range origins {
		if err := state.ValidateNamespace(o.Namespace); err != nil {
			return fmt.Errorf("catalog importer: origin: %w", err)
		}
		if o.TrustDomain.IsZero() || o.Fetch == nil {
			return fmt.Errorf("catalog importer: origin %s: trust domain and Fetch are required", o.Namespace)
		}
		if _, dup := m[o.Namespace]; dup {
			return fmt.Errorf("catalog importer: origin %s is listed twice", o.Namespace)
		}
		m[o.Namespace] = o
	}
	im.mu.Lock()
	im.origins = m
	im.mu.Unlock()
	select {
	case im.changed <- struct{}{}:
	default:
	}
	return nil
}

// Stale reports whether the imports of origin namespace ns are stale at
// now: no successful sync for longer than StaleAfter (or none recorded).
// Every replica answers the same from its state.
func (im *Importer) Stale(ns string, now time.Time) bool {
	st, err := im.cfg.FSM.PeerStatus(ns)
	if err != nil {
		return true
	}
	return st.Stale(now, im.cfg.StaleAfter)
}

// worker is one origin's running sync loop.
type worker struct {
	origin Origin
	cancel context.CancelFunc
	done   chan struct{}
}

// Run syncs while this node leads, until ctx ends. The leader removes
// the imports of origins no longer listed when the origins change, when
// it becomes leader, every Rescan, and RetryMin after a removal failed;
// with nothing changed it does no work.
func (im *Importer) Run(ctx context.Context) error {
	workers := map[string]*worker{}
	stopAll := func() {
		for ns, w := range workers {
			w.cancel()
			<-w.done
			delete(workers, ns)
		}
	}
	defer stopAll()
	var tick <-chan time.Time
	if im.cfg.LeaderChanged == nil {
		t := time.NewTicker(im.cfg.LeaderCheck)
		defer t.Stop()
		tick = t.C
	}
	rescan := time.NewTimer(im.cfg.Rescan)
	defer rescan.Stop()
	leading, scan := false, true
	for {
		im.mu.Lock()
		origins := im.origins
		im.mu.Unlock()
		if im.cfg.IsLeader() && origins != nil {
			for ns, w := range workers {
				o, keep := origins[ns]
				if !keep || o.TrustDomain != w.origin.TrustDomain {
					w.cancel()
					<-w.done
					delete(workers, ns)
				}
			}
			for ns, o := range origins {
				if _, ok := workers[ns]; !ok {
					wctx, cancel := context.WithCancel(ctx)
					w := &worker{origin: o, cancel: cancel, done: make(chan struct{})}
					workers[ns] = w
					kick := im.kickFor(ns)
					go func() {
						defer close(w.done)
						im.syncLoop(wctx, o, kick)
					}()
				}
			}
			if scan || !leading {
				next := im.cfg.Rescan
				if !im.removeRevoked(ctx, origins) {
					next = im.cfg.RetryMin
				}
				rescan.Reset(next)
			}
			leading, scan = true, false
		} else {
			stopAll()
			leading = false
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick:
		case <-im.cfg.LeaderChanged:
		case <-rescan.C:
			scan = true
		case <-im.changed:
			scan = true
		}
	}
}

// removeRevoked deletes the imports and status of origins not in the
// list; it reports whether it read them and deleted every one it found.
func (im *Importer) removeRevoked(ctx context.Context, origins map[string]Origin) bool {
	im.scans.Add(1)
	ims, err := im.cfg.FSM.AllImports()
	if err != nil {
		im.logger.Error("catalog importer: read imports", "error", err)
		return false
	}
	sts, err := im.cfg.FSM.PeerStatuses()
	if err != nil {
		im.logger.Error("catalog importer: read peer status", "error", err)
		return false
	}
	var gone []string
	for _, i := range ims {
		gone = append(gone, i.Namespace)
	}
	for _, s := range sts {
		gone = append(gone, s.Namespace)
	}
	slices.Sort(gone)
	ok := true
	for _, ns := range slices.Compact(gone) {
		if _, ok := origins[ns]; ok {
			continue
		}
		if _, err := im.propose(ctx, state.PutImports{Namespace: ns, Remove: true}); err != nil {
			im.logger.Warn("catalog importer: delete the imports of a revoked origin", "origin", ns, "error", err)
			ok = false
			continue
		}
		im.logger.Info("catalog importer: deleted the imports of an origin no longer in the manifest", "origin", ns)
	}
	return ok
}

func (im *Importer) propose(ctx context.Context, cmd any) (state.ApplyResult, error) {
	enc, err := state.Encode(cmd)
	if err != nil {
		return state.ApplyResult{}, err
	}
	return im.cfg.Apply(ctx, enc)
}

// kickFor returns the kick channel of origin namespace ns's sync loop.
func (im *Importer) kickFor(ns string) chan struct{} {
	im.mu.Lock()
	defer im.mu.Unlock()
	if im.kicks == nil {
		im.kicks = map[string]chan struct{}{}
	}
	k, ok := im.kicks[ns]
	if !ok {
		k = make(chan struct{}, 1)
		im.kicks[ns] = k
	}
	return k
}

// Kick ends the wait of origin namespace ns's sync loop, if it is waiting
// out a backoff after failed syncs: a gossip hint says the origin has a
// new catalog, or a node of it is back. A loop in a long poll learns a new
// catalog from the poll itself; a node that does not lead has no loop,
// and the kick is dropped. Kicks do not queue beyond one.
func (im *Importer) Kick(ns string) {
	select {
	case im.kickFor(ns) <- struct{}{}:
	default:
	}
}

// syncLoop long-polls one origin until ctx ends; a kick ends a backoff
// wait early.
func (im *Importer) syncLoop(ctx context.Context, o Origin, kick <-chan struct{}) {
	backoff := im.cfg.RetryMin
	for ctx.Err() == nil {
		im.mu.Lock()
		if cur, ok := im.origins[o.Namespace]; ok && cur.TrustDomain == o.TrustDomain {
			o = cur // the latest Fetch
		}
		im.mu.Unlock()
		retry, err := im.syncOnce(ctx, o)
		if ctx.Err() != nil {
			return
		}
		var delay time.Duration
		switch {
		case err != nil:
			im.recordError(ctx, o, err)
			delay = backoff
			backoff = min(2*backoff, im.cfg.RetryMax)
		case retry:
			delay = im.cfg.RetryMin
		default:
			backoff = im.cfg.RetryMin
			continue
		}
		// Jitter so that origins and BUs do not retry in step.
		delay += rand.N(delay/4 + 1)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-kick:
			t.Stop()
		}
	}
}

// SyncOnce performs one sync with origin o: fetch, check, store. retry is
// set when the exporter answered an older catalog than stored (one of its
// replicas lags) and the caller should ask again shortly. It is exported
// for the lead's triggers (a gossip hint of a new catalog version) and for
// tests; Run calls it in a loop.
func (im *Importer) SyncOnce(ctx context.Context, o Origin) (retry bool, err error) {
	retry, err = im.syncOnce(ctx, o)
	if err != nil && ctx.Err() == nil {
		im.recordError(ctx, o, err)
	}
	return retry, err
}

func (im *Importer) syncOnce(ctx context.Context, o Origin) (retry bool, err error) {
	cur, err := im.cfg.FSM.Imports(o.Namespace)
	have := err == nil && cur.TrustDomain == o.TrustDomain.Name()
	if err != nil && !errors.Is(err, state.ErrNotFound) {
		return false, fmt.Errorf("read imports of %s: %w", o.Namespace, err)
	}
	var since uint64
	if have {
		since = cur.CatalogVersion
	}
	cat, err := o.Fetch(ctx, since)
	if err != nil {
		im.syncs.WithLabelValues(o.Namespace, resultError).Inc()
		return false, err
	}
	if cat == nil {
		im.syncs.WithLabelValues(o.Namespace, resultUnchanged).Inc()
		return false, im.recordSuccess(ctx, o)
	}
	tools, killed, err := cat.Import(o.Namespace, im.cfg.TrustDomain)
	if err != nil {
		im.syncs.WithLabelValues(o.Namespace, resultRefused).Inc()
		return false, err
	}
	if have && cat.Version < cur.CatalogVersion {
		im.logger.Debug("catalog importer: an exporter replica answered an older catalog; asking again", "origin", o.Namespace, "version", cat.Version, "stored", cur.CatalogVersion)
		return true, nil
	}
	if have && cat.Version == cur.CatalogVersion && cat.Hash == cur.Hash {
		im.syncs.WithLabelValues(o.Namespace, resultUnchanged).Inc()
		return false, im.recordSuccess(ctx, o)
	}
	// A definition never changes under its version: keep the pinned one
	// and record the refusal (a rug pull across BUs).
	var refused []state.RefusedTool
	if have {
		pinned := map[string]state.ImportedTool{}
		for _, t := range cur.Tools {
			pinned[t.Server+"\x00"+t.Version+"\x00"+t.Name] = t
		}
		for i, t := range tools {
			if old, ok := pinned[t.Server+"\x00"+t.Version+"\x00"+t.Name]; ok && old.Hash != t.Hash {
				refused = append(refused, state.RefusedTool{Server: t.Server, Version: t.Version, Name: t.Name, Pinned: old.Hash, Offered: t.Hash})
				tools[i] = old
			}
		}
	}
	res, err := im.propose(ctx, state.PutImports{
		Namespace: o.Namespace, TrustDomain: o.TrustDomain.Name(), CatalogVersion: cat.Version, Hash: cat.Hash,
		Tools: tools, Killed: killed, Refused: refused, SyncedAt: im.now().UTC(),
	})
	if err != nil {
		im.syncs.WithLabelValues(o.Namespace, resultError).Inc()
		return false, fmt.Errorf("store the catalog of %s: %w", o.Namespace, err)
	}
	im.syncs.WithLabelValues(o.Namespace, resultChanged).Inc()
	if !res.Unchanged {
		im.logger.Info("catalog importer: imported a new catalog", "origin", o.Namespace, "trust_domain", o.TrustDomain.Name(),
			"version", cat.Version, "hash", ShortHash(cat.Hash), "tools", len(tools), "killed", len(killed), "refused", len(refused))
		for _, k := range killed {
			if have && slices.ContainsFunc(cur.Killed, func(old state.KilledTool) bool {
				return old.Server == k.Server && old.Name == k.Name && old.Reason == k.Reason
			}) {
				continue // logged when it was new
			}
			im.logger.Info("catalog importer: the origin has switched off an exported tool; calls are answered as killed here", "origin", o.Namespace,
				"server", k.Server, "tool", k.Name, "scope", k.Scope, "reason", k.Reason, "at", k.At)
		}
		for _, r := range refused {
			im.logger.Warn("catalog importer: refused a changed definition under the same version (rug pull); kept the pinned one",
				"origin", o.Namespace, "server", r.Server, "version", r.Version, "tool", r.Name, "pinned", r.Pinned, "offered", r.Offered)
		}
	}
	return false, im.recordSuccess(ctx, o)
}

// recordSuccess commits a successful sync to the peer status when it
// ends an error or the last recorded success is StatusInterval old.
func (im *Importer) recordSuccess(ctx context.Context, o Origin) error {
	now := im.now().UTC()
	st, err := im.cfg.FSM.PeerStatus(o.Namespace)
	if err == nil && st.LastError == "" && st.TrustDomain == o.TrustDomain.Name() && now.Sub(st.LastSuccess) < im.cfg.StatusInterval {
		return nil
	}
	if _, err := im.propose(ctx, state.PutPeerStatus{Namespace: o.Namespace, TrustDomain: o.TrustDomain.Name(), LastSuccess: now}); err != nil {
		return fmt.Errorf("record the sync status of %s: %w", o.Namespace, err)
	}
	return nil
}

// recordError commits a failed sync to the peer status when the error
// differs from the one recorded or that one is StatusInterval old.
func (im *Importer) recordError(ctx context.Context, o Origin, syncErr error) {
	msg := oneLine(syncErr.Error())
	im.logger.Warn("catalog importer: sync failed", "origin", o.Namespace, "trust_domain", o.TrustDomain.Name(), "error", msg)
	now := im.now().UTC()
	st, err := im.cfg.FSM.PeerStatus(o.Namespace)
	if err == nil && st.LastError == msg && now.Sub(st.LastErrorAt) < im.cfg.StatusInterval {
		return
	}
	cmd := state.PutPeerStatus{Namespace: o.Namespace, TrustDomain: o.TrustDomain.Name(), LastError: msg, LastErrorAt: now}
	if err == nil {
		cmd.LastSuccess = st.LastSuccess
	}
	if _, err := im.propose(ctx, cmd); err != nil && ctx.Err() == nil {
		im.logger.Warn("catalog importer: record the sync status", "origin", o.Namespace, "error", err)
	}
}

// oneLine makes an error a status line: no control characters, bounded.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	if len(s) > state.MaxPeerErrorLen {
		s = strings.ToValidUTF8(s[:state.MaxPeerErrorLen-3], "") + "..."
	}
	return s
}

// HTTPFetcher fetches a catalog, with its killed entries, over HTTP from
// the first of baseURLs that
// answers (the origin's peer addresses, such as "https://10.0.0.5:8443";
// baseURLs is called on every fetch so the list can follow gossip),
// trying the next on a transport error or a 5xx. client carries the mTLS
// configuration (HTTP/3 on the peer listener). Each attempt waits at most
// DefaultMaxWait plus 10 s for the long poll.
func HTTPFetcher(client *http.Client, baseURLs func() []string) Fetcher {
	return func(ctx context.Context, since uint64) (*Catalog, error) {
		urls := baseURLs()
		if len(urls) == 0 {
			return nil, errors.New("no address known for the exporting BU (no node of it in gossip yet)")
		}
		var errs []error
		for _, base := range urls {
			cat, err := fetchOne(ctx, client, strings.TrimSuffix(base, "/")+Path+"?since="+strconv.FormatUint(since, 10)+"&"+KilledParam+"=1")
			if err == nil {
				return cat, nil
			}
			var de *DecodeError
			if errors.As(err, &de) || ctx.Err() != nil {
				return nil, err
			}
			errs = append(errs, fmt.Errorf("%s: %w", base, err))
		}
		return nil, fmt.Errorf("no node of the exporting BU answered: %w", errors.Join(errs...))
	}
}

func fetchOne(ctx context.Context, client *http.Client, url string) (*Catalog, error) {
	ctx, cancel := context.WithTimeout(ctx, DefaultMaxWait+10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		return nil, nil
	case http.StatusOK:
	default:
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("the exporter answered %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, MaxCatalogBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read the catalog: %w", err)
	}
	return DecodeCatalog(raw)
}
