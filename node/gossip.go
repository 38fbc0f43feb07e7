package node

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/mcpmesh/mcpmesh/federation/gossip"
	"github.com/mcpmesh/mcpmesh/federation/peer"
	"github.com/mcpmesh/mcpmesh/registry/api"
	"github.com/mcpmesh/mcpmesh/registry/state"
	"github.com/mcpmesh/mcpmesh/trust/manifest"
)

// Results of checking a member's gossip claims (mcpmesh_gossip_claim_checks_total).
const (
	// claimVerified: the member's peer listener presented a node
	// certificate of the trust domain it claims.
	claimVerified = "verified"
	// claimRefused: it presented another trust domain's (a forged or
	// stale advertisement).
	claimRefused = "refused"
	// claimUnmapped: the manifest in force does not map the claimed
	// namespace to the claimed trust domain; nothing was dialled.
	claimUnmapped = "unmapped"
	// claimUnchecked: no answer at the peer address, or
	// the claimed trust domain's bundle is not fetched yet; checked again
	// later.
	claimUnchecked = "unchecked"
)

// Results of pulling a manifest a member advertised (mcpmesh_gossip_manifest_pulls_total).
const (
	pullCommitted = "committed"
	pullRefused   = "refused"
	pullFailed    = "failed"
)

// gossipRecheck is how often members whose claims are unchecked (their
// peer listener did not answer) or whose manifest is newer than this
// node's are looked at again without a gossip change.
const gossipRecheck = 15 * time.Second

// gossipCheckTimeout bounds one check of a member's claims (a manifest
// pull from its peer listener).
const gossipCheckTimeout = 5 * time.Second

// meshGossip is the node's member of the gossip pool of all BUs' nodes
// (federation.gossip). It advertises this node's hint — peer address,
// catalog version and hash, bundle sequence, manifest version — and acts
// on the others' hints. A hint is a claim, never authority: a member of
// another BU is believed only once its peer listener, dialled over SPIFFE
// mTLS, presented a node certificate of the trust domain the member
// claims, and the manifest in force maps the claimed namespace to that
// trust domain. Until then its address is not used. What a verified
// member's hint changes:
//
//   - a newer manifest version: the leader pulls the manifest from the
//     member and commits it through Raft if central security's signature
//     verifies and it is newer (the state machine refuses rollback);
//   - a newer catalog version of a BU this one imports from: the
//     importer's sync with it stops waiting out a backoff;
//   - a newer bundle sequence: the bundle watcher fetches that trust
//     domain's bundle now (from the manifest's bundle endpoints);
//   - its liveness and address: calls and catalog pulls try the BU's
//     live nodes first (addrs).
//
// Forged gossip can therefore cost a pull or a dial, never a belief.
type meshGossip struct {
	f      *federation
	pool   *gossip.Pool
	logger *slog.Logger
	wake   chan struct{}

	checks *prometheus.CounterVec
	pulls  *prometheus.CounterVec

	mu      sync.Mutex
	pending map[string]gossip.Member // changed members to act on, by name
	peers   map[string]*meshPeer     // other BUs' members, by name
	// refreshed is when the bundle watcher was last asked to fetch a trust
	// domain's bundle for a gossip hint (at most one ask per gossipRecheck).
	refreshed map[spiffeid.TrustDomain]time.Time
}

// meshPeer is what this node knows of a member of another BU.
type meshPeer struct {
	member gossip.Member
	// verified is the peer address at which the member's claims were
	// checked; "" until they are, and again when it advertises another.
	verified string
	// refused is why the last check refused its claims, pending why they
	// could not be checked yet; both "" after a success.
	refused, pending string
	// checkedAt is when its claims were last checked (a dial).
	checkedAt time.Time
	// catalogSeen is the catalog version last acted on.
	catalogSeen uint64
}

// newMeshGossip builds the node's gossip member; run starts it.
func newMeshGossip(f *federation, reg prometheus.Registerer) (*meshGossip, error) {
	n := f.n
	cfg := n.cfg.Federation
	keys, err := gossip.LoadKeyring(cfg.Gossip.KeyringFile)
	if err != nil {
		return nil, fmt.Errorf("federation.gossip.keyring_file: %w", err)
	}
	g := &meshGossip{f: f, logger: f.logger.With("plane", "gossip"), wake: make(chan struct{}, 1),
		pending: map[string]gossip.Member{}, peers: map[string]*meshPeer{}, refreshed: map[spiffeid.TrustDomain]time.Time{},
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mcpmesh_gossip_claim_checks_total",
			Help: "Checks of another BU's member's gossip claims, by result: verified (its peer listener presented a node certificate of the claimed trust domain), refused (another trust domain's), unmapped (the manifest does not map the claimed namespace to that trust domain), unchecked (no answer, or the claimed trust domain's bundle not fetched yet; checked again)."}, []string{"result"}),
		pulls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mcpmesh_gossip_manifest_pulls_total",
			Help: "Manifests pulled from members of other BUs that advertised a newer version, by result: committed, refused (signature, expiry or rollback), failed (no answer, or Raft)."}, []string{"result"}),
	}
	for _, r := range []string{claimVerified, claimRefused, claimUnmapped, claimUnchecked} {
		g.checks.WithLabelValues(r)
	}
	for _, r := range []string{pullCommitted, pullRefused, pullFailed} {
		g.pulls.WithLabelValues(r)
	}
	if err := errors.Join(reg.Register(g.checks), reg.Register(g.pulls)); err != nil {
		return nil, fmt.Errorf("register gossip metrics: %w", err)
	}
	g.pool, err = gossip.New(gossip.Config{
		Bind: cfg.Gossip.Listen, Advertise: cfg.GossipAdvertise(), Join: cfg.Gossip.Join, Keyring: keys, Label: cfg.Mesh,
		Hint: gossip.Hint{Namespace: n.cfg.Namespace, TrustDomain: f.td.Name(), NodeID: n.cfg.NodeID,
			PeerAddr: cfg.PeerAdvertise(), Protocols: []string{gossip.PeerProtocol}},
	}, gossip.WithLogger(g.logger), gossip.WithMetrics(reg), gossip.WithOnChange(g.observe))
	if err != nil {
		return nil, fmt.Errorf("federation.gossip: %w", err)
	}
	return g, nil
}

// run keeps the node in the pool and acts on the members' hints until ctx
// ends; the pool then leaves and shuts down.
func (g *meshGossip) run(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- g.pool.Run(ctx) }()
	tick := time.NewTicker(gossipRecheck)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return <-done
		case <-g.wake:
		case <-tick.C:
			g.requeue()
		}
		g.mu.Lock()
		batch := make([]gossip.Member, 0, len(g.pending))
		for _, m := range g.pending {
			batch = append(batch, m)
		}
		clear(g.pending)
		g.mu.Unlock()
		slices.SortFunc(batch, func(a, b gossip.Member) int { return strings.Compare(a.Name, b.Name) })
		for _, m := range batch {
			if ctx.Err() != nil {
				break
			}
			g.act(ctx, m)
		}
	}
}

// observe is the pool's change callback: it queues the member for run,
// never blocking the pool.
func (g *meshGossip) observe(m gossip.Member) {
	g.mu.Lock()
	g.pending[m.Name] = m
	g.mu.Unlock()
	g.poke()
}

// poke wakes run to act on what is pending, never blocking.
func (g *meshGossip) poke() {
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// requeue queues again the members whose claims are unchecked, whose
// manifest is newer than this node's, or (on the leader) whose bundle
// sequence is above the stored one: a check that failed, a pull that a
// non-leader skipped, or a bundle hint act deferred (it asks the watcher
// at most once per gossipRecheck per trust domain) is retried.
func (g *meshGossip) requeue() {
	have := manifestVersion(g.f.holder)
	var stored map[string]uint64
	if g.f.n.cluster.IsLeader() {
		if bs, err := g.f.n.cluster.FSM.ForeignBundles(); err == nil {
			stored = make(map[string]uint64, len(bs))
			for _, b := range bs {
				stored[b.TrustDomain] = b.Sequence
			}
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for name, p := range g.peers {
		h := p.member.Hint
		seq, ok := stored[h.TrustDomain] // the watcher fetches one not stored yet on its own
		newerBundle := ok && h.BundleSequence > seq
		if p.member.State == gossip.StateAlive && p.member.HintErr == nil && (p.verified != h.PeerAddr || h.ManifestVersion > have || newerBundle) {
			g.pending[name] = p.member
		}
	}
}

// recheck queues every known member of another BU to be looked at again
// (the manifest changed).
func (g *meshGossip) recheck() {
	g.mu.Lock()
	for name, p := range g.peers {
		g.pending[name] = p.member
	}
	g.mu.Unlock()
	g.poke()
}

// act handles one changed member of another BU.
func (g *meshGossip) act(ctx context.Context, m gossip.Member) {
	h := m.Hint
	if m.Local || (m.HintErr == nil && h.Namespace == g.f.n.cfg.Namespace) {
		return // this BU's own nodes share its Raft state
	}
	g.mu.Lock()
	p, ok := g.peers[m.Name]
	if !ok {
		p = &meshPeer{}
		g.peers[m.Name] = p
	}
	p.member = m
	if m.HintErr != nil {
		p.verified, p.refused, p.pending = "", "unusable hint: "+m.HintErr.Error(), ""
	}
	verified, checkedAt := p.verified, p.checkedAt
	g.mu.Unlock()
	if m.HintErr != nil || m.State != gossip.StateAlive {
		return
	}
	cur := g.f.holder.Current(time.Now())
	td, err := spiffeid.TrustDomainFromString(h.TrustDomain)
	if err == nil {
		err = g.mapped(cur, h.Namespace, td)
	}
	if err != nil {
		g.checks.WithLabelValues(claimUnmapped).Inc()
		g.setCheck(m.Name, "", err.Error(), "")
		g.logger.Debug("gossip: a member's claims do not match the manifest; ignored", "member", m.Name, "error", err)
		return
	}
	if !slices.Contains(cur.Peers(g.f.td), td) {
		// No relationship: this node neither calls it nor can
		// authenticate it.
		g.setCheck(m.Name, "", "", "")
		return
	}
	have := manifestVersion(g.f.holder)
	pullManifest := h.ManifestVersion > have && g.f.n.cluster.IsLeader()
	if verified != h.PeerAddr || pullManifest {
		if verified != h.PeerAddr && time.Since(checkedAt) < time.Second {
			return // flapping: the next change or recheck comes back to it
		}
		if !g.check(ctx, m, td, pullManifest) {
			return
		}
	}
	if cur.Allows(g.f.td, td) {
		g.mu.Lock()
		newer := h.CatalogVersion > p.catalogSeen
		p.catalogSeen = max(p.catalogSeen, h.CatalogVersion)
		g.mu.Unlock()
		if newer {
			g.f.importer.Kick(h.Namespace)
		}
	}
	if h.BundleSequence > g.storedSequence(td) && g.f.n.cluster.IsLeader() {
		g.mu.Lock()
		due := time.Since(g.refreshed[td]) >= gossipRecheck
		if due {
			g.refreshed[td] = time.Now()
		}
		g.mu.Unlock()
		if due {
			g.logger.Info("gossip: a member advertises a newer trust bundle; fetching it now", "member", m.Name, "trust_domain", td.Name(), "sequence", h.BundleSequence)
			g.f.watcher.RefreshNow(td)
		}
	}
}

// mapped checks that the manifest in force maps namespace ns to trust
// domain td.
func (g *meshGossip) mapped(m *manifest.Manifest, ns string, td spiffeid.TrustDomain) error {
	if m == nil {
		return errors.New("no federation manifest in force")
	}
	d, ok := m.DomainByNamespace(ns)
	if !ok {
		return fmt.Errorf("the federation manifest (version %d) has no namespace %q", m.Version, ns)
	}
	if d.ID() != td {
		return fmt.Errorf("claims trust domain %s for namespace %s, which the federation manifest (version %d) maps to %s", td.Name(), ns, m.Version, d.ID().Name())
	}
	return nil
}

// check dials the member's peer listener expecting a node of td and asks
// it for its manifest: any HTTP answer verifies the member's address; a
// certificate of another trust domain refuses it. With commit, a newer
// manifest in the answer is committed through Raft.
func (g *meshGossip) check(ctx context.Context, m gossip.Member, td spiffeid.TrustDomain, commit bool) bool {
	ctx, cancel := context.WithTimeout(ctx, gossipCheckTimeout)
	defer cancel()
	addr := m.Hint.PeerAddr
	g.mu.Lock()
	if p := g.peers[m.Name]; p != nil {
		p.checkedAt = time.Now()
	}
	g.mu.Unlock()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "/federation/v1/manifest", nil)
	resp, err := g.f.client.Do(ctx, td, addr, req)
	if err != nil {
		if forgedClaim(err) {
			g.checks.WithLabelValues(claimRefused).Inc()
			g.setCheck(m.Name, "", err.Error(), "")
			g.logger.Warn("gossip: refused a member's claims: its peer listener is not a node of the trust domain it claims", "member", m.Name, "peer_addr", addr, "claimed_trust_domain", td.Name(), "error", err)
			return false
		}
		g.checks.WithLabelValues(claimUnchecked).Inc()
		g.setCheck(m.Name, "", "", err.Error())
		g.logger.Debug("gossip: a member's peer listener did not answer; checking again later", "member", m.Name, "peer_addr", addr, "error", err)
		return false
	}
	defer resp.Body.Close()
	body, rerr := io.ReadAll(io.LimitReader(resp.Body, manifest.MaxSize+1))
	g.checks.WithLabelValues(claimVerified).Inc()
	if was := g.setCheck(m.Name, addr, "", ""); was != addr {
		g.logger.Info("gossip: verified a member of another BU", "member", m.Name, "trust_domain", td.Name(), "peer_addr", addr)
	}
	if commit && resp.StatusCode == http.StatusOK && rerr == nil {
		g.commitManifest(ctx, m, body)
	}
	return true
}

// commitManifest commits a manifest pulled from member m if central
// security's signature verifies, it has not expired, and it is newer than
// the one in force.
func (g *meshGossip) commitManifest(ctx context.Context, m gossip.Member, body []byte) {
	if len(body) > manifest.MaxSize {
		g.pulls.WithLabelValues(pullRefused).Inc()
		g.logger.Warn("gossip: a pulled manifest exceeds the size limit; refused", "member", m.Name, "limit", manifest.MaxSize)
		return
	}
	pulled, err := manifest.Verify(bytes.TrimSpace(body), g.f.n.manifestKey, time.Now())
	if err != nil {
		g.pulls.WithLabelValues(pullRefused).Inc()
		g.logger.Warn("gossip: refused the manifest a member of another BU served", "member", m.Name, "error", err)
		return
	}
	if pulled.Version <= manifestVersion(g.f.holder) {
		return // another pull, or a push, got there first
	}
	cmd, err := state.Encode(state.PutManifest{Signed: pulled.Signed(), Version: pulled.Version, By: "gossip:" + m.Name, At: time.Now().UTC()})
	if err == nil {
		_, err = g.f.n.cluster.Apply(ctx, cmd)
	}
	if err != nil {
		g.pulls.WithLabelValues(pullFailed).Inc()
		g.logger.Warn("gossip: could not commit the manifest pulled from a member of another BU", "member", m.Name, "version", pulled.Version, "error", err)
		return
	}
	g.pulls.WithLabelValues(pullCommitted).Inc()
	g.logger.Info("gossip: committed a newer federation manifest pulled from a member of another BU", "member", m.Name, "version", pulled.Version)
}

// forgedClaim reports whether err, from dialling a member's peer
// address, shows the member's claims false: the listener there is not a
// node of the claimed trust domain (another trust domain's, a certificate
// the claimed trust domain's bundle does not verify, or no node identity).
// The other failures — no answer, a trust domain whose bundle this node
// has not fetched yet, the peer refusing this node — leave the claims
// unchecked, to be checked again.
func forgedClaim(err error) bool {
	var he *peer.HandshakeError
	if !errors.As(err, &he) {
		return false
	}
	switch he.Reason {
	case peer.ReasonTrustDomainMismatch, peer.ReasonBadCertificate, peer.ReasonUnauthorized, peer.ReasonNoCertificate:
		return true
	}
	return false
}

// setCheck records the outcome of looking at member name's claims: the
// address verified, why they were refused, or why they are not checked
// yet (at most one is set). It reports the address verified before.
func (g *meshGossip) setCheck(name, verified, refused, pending string) (was string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if p := g.peers[name]; p != nil {
		was = p.verified
		p.verified, p.refused, p.pending = verified, refused, pending
	}
	return was
}

// storedSequence is the sequence of trust domain td's stored bundle; 0
// when none is stored.
func (g *meshGossip) storedSequence(td spiffeid.TrustDomain) uint64 {
	stored, err := g.f.n.cluster.FSM.ForeignBundles()
	if err != nil {
		return 0
	}
	for _, b := range stored {
		if b.TrustDomain == td.Name() {
			return b.Sequence
		}
	}
	return 0
}

// advertise puts this node's current versions in its hint: the manifest
// in force, its own bundle's sequence, and its exports (the highest
// catalog version over every consumer, with a short hash of all of them).
// The pool broadcasts only a change.
func (g *meshGossip) advertise() {
	marks, err := g.f.n.cluster.FSM.CatalogMarks()
	if err != nil {
		g.logger.Warn("gossip: read the catalog versions to advertise", "error", err)
		return
	}
	var version uint64
	sum := sha256.New()
	for _, m := range marks {
		version = max(version, m.Version)
		fmt.Fprintf(sum, "%s %d %s\n", m.TrustDomain, m.Version, m.Hash)
	}
	var short string
	if version > 0 {
		short = hex.EncodeToString(sum.Sum(nil)[:4])
	}
	seq, _ := g.f.set.Own().SequenceNumber()
	mv := manifestVersion(g.f.holder)
	err = g.pool.SetHint(func(h *gossip.Hint) {
		h.CatalogVersion, h.CatalogHash, h.BundleSequence, h.ManifestVersion = version, short, seq, mv
	})
	if err != nil && !errors.Is(err, gossip.ErrClosed) {
		g.logger.Warn("gossip: advertise the node's versions", "error", err)
	}
}

// order puts addrs, a BU's peer addresses in the manifest's order, in the
// order to try them: those gossip does not know to be down, then the
// verified live addresses of td's members the manifest does not list (sorted),
// then those whose member was verified there and has since failed or
// left.
func (g *meshGossip) order(td spiffeid.TrustDomain, addrs []string) []string {
	g.mu.Lock()
	alive, down := map[string]bool{}, map[string]bool{}
	var extra []string
	for _, p := range g.peers {
		if p.verified == "" || p.member.Hint.TrustDomain != td.Name() {
			continue
		}
		if p.member.State == gossip.StateAlive {
			alive[p.verified] = true
			if !slices.Contains(addrs, p.verified) && !slices.Contains(extra, p.verified) {
				extra = append(extra, p.verified)
			}
		} else {
			down[p.verified] = true
		}
	}
	g.mu.Unlock()
	slices.Sort(extra)
	out := make([]string, 0, len(addrs)+len(extra))
	var last []string
	for _, a := range addrs {
		if down[a] && !alive[a] {
			last = append(last, a)
		} else {
			out = append(out, a)
		}
	}
	out = append(out, extra...)
	return append(out, last...)
}

// members is GET /v1/federation/members: the pool's members, with what
// this node checked of other BUs' claims.
func (g *meshGossip) members() api.MeshResponse {
	out := api.MeshResponse{Node: g.pool.Name()}
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, m := range g.pool.Members() {
		h := m.Hint
		mm := api.MeshMember{Name: m.Name, Addr: m.Addr, State: m.State.String(), Local: m.Local, Since: m.Since,
			Namespace: h.Namespace, TrustDomain: h.TrustDomain, PeerAddr: h.PeerAddr, Protocols: h.Protocols,
			CatalogVersion: h.CatalogVersion, CatalogHash: h.CatalogHash, BundleSequence: h.BundleSequence, ManifestVersion: h.ManifestVersion}
		if m.HintErr != nil {
			mm.HintError = m.HintErr.Error()
		}
		if p := g.peers[m.Name]; p != nil {
			mm.Verified = p.verified != "" && p.verified == h.PeerAddr
			mm.Refused = p.refused
			mm.Pending = p.pending
		}
		out.Members = append(out.Members, mm)
	}
	return out
}

// manifestVersion is the version of the manifest h holds (expired or
// not); 0 when it holds none.
func manifestVersion(h *manifest.Holder) uint64 {
	if m := h.Load(); m != nil {
		return m.Version
	}
	return 0
}
