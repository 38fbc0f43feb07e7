package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/sync/errgroup"

	"github.com/mcpmesh/mcpmesh/federation/assertion"
	"github.com/mcpmesh/mcpmesh/federation/catalog"
	"github.com/mcpmesh/mcpmesh/federation/peer"
	"github.com/mcpmesh/mcpmesh/node/audit"
	"github.com/mcpmesh/mcpmesh/node/gateway"
	"github.com/mcpmesh/mcpmesh/node/upstream"
	"github.com/mcpmesh/mcpmesh/registry/state"
	"github.com/mcpmesh/mcpmesh/trust/agentauth"
	"github.com/mcpmesh/mcpmesh/trust/bundles"
	"github.com/mcpmesh/mcpmesh/trust/manifest"
)

// federation is a node's part in the mesh of BUs (config federation.*):
// central security's manifest as this BU's Raft state holds it, the trust
// bundles of the BUs it names, the peer listener other BUs' nodes call
// (HTTP/3, SPIFFE mTLS: catalog sync, forwarded calls, the manifest) and
// the client this node calls them with, the importer of what they export
// here, and the assertions that carry a caller across.
//
// Peer addresses come from the manifest: each bundle endpoint's host:port
// is also that node's peer listener (UDP for HTTP/3, TCP for the bundle
// endpoint). Gossip (meshGossip) orders them by liveness and adds the
// verified addresses of a BU's nodes the manifest does not list.
//
// It works with either identity source (trust.source); what differs, the
// own bundle and how assertions are signed, is in federation_spire.go.
type federation struct {
	n      *Node
	td     spiffeid.TrustDomain
	logger *slog.Logger

	holder   *manifest.Holder
	set      *bundles.Set
	own      *spiffebundle.Bundle
	server   *peer.Server
	client   *peer.Client
	watcher  *bundles.Watcher
	importer *catalog.Importer
	minter   *assertion.Minter
	verifier *assertion.Verifier
	gossip   *meshGossip
	// leaderChanged wakes the importer and the bundle watcher when this
	// node gains or loses the leadership (fed by run).
	leaderChanged []chan struct{}
	// applied marks the manifest version and stored bundle sequences
	// reconcile last applied (only follow's goroutine uses it).
	applied string
}

// newFederation builds the node's federation from its config; nil when
// federation is off.
func newFederation(n *Node, td spiffeid.TrustDomain, nodeID spiffeid.ID, reg prometheus.Registerer) (*federation, error) {
	cfg := n.cfg.Federation
	if !cfg.Enabled() {
		return nil, nil
	}
	pub, err := manifest.LoadPublicKeyFile(cfg.ManifestKeyFile)
	if err != nil {
		return nil, fmt.Errorf("federation.manifest_key_file: %w", err)
	}
	f := &federation{n: n, td: td, logger: n.logger.With("component", "federation"), holder: &manifest.Holder{}}
	n.manifestKey = pub
	if err := reg.Register(manifest.NewCollector(f.holder)); err != nil {
		return nil, fmt.Errorf("register manifest metrics: %w", err)
	}
	if f.own, err = f.ownBundle(); err != nil {
		return nil, fmt.Errorf("federation: own bundle: %w", err)
	}
	if f.set, err = bundles.NewSet(f.own, nil, bundles.WithMetrics(reg), bundles.WithLogger(f.logger)); err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	exporter, err := catalog.NewExporter(catalog.ExporterConfig{FSM: n.cluster.FSM, ConsumerTD: f.consumer},
		catalog.WithLogger(f.logger), catalog.WithMetrics(reg))
	if err != nil {
		return nil, err
	}
	mux.Handle(catalog.Path, exporter)
	mux.HandleFunc("GET /federation/v1/manifest", f.serveManifest)
	mux.HandleFunc(upstream.FederationPath, f.serveForwarded)
	if f.server, err = peer.NewServer(peer.ServerConfig{Listen: cfg.Peer.Listen, TrustDomain: td, SVID: n.identity.svid,
		Bundles: f.set, OwnBundle: f.set, Authorize: f.authorize, Handler: mux}, peer.WithMetrics(reg), peer.WithLogger(f.logger)); err != nil {
		return nil, fmt.Errorf("federation.peer.listen: %w", err)
	}
	if f.client, err = peer.NewClient(peer.ClientConfig{SVID: n.identity.svid, Bundles: f.set}, peer.WithMetrics(reg), peer.WithLogger(f.logger)); err != nil {
		return nil, err
	}
	propose := func(ctx context.Context, cmd []byte) error {
		_, err := n.cluster.Apply(ctx, cmd)
		return err
	}
	watcherLeader := make(chan struct{}, 1)
	f.leaderChanged = append(f.leaderChanged, watcherLeader)
	if f.watcher, err = bundles.NewWatcher(bundles.WatcherConfig{IsLeader: n.cluster.IsLeader, LeaderChanged: watcherLeader, Propose: propose, Store: n.cluster.FSM, By: nodeID.String()},
		bundles.WithMetrics(reg), bundles.WithLogger(f.logger)); err != nil {
		return nil, err
	}
	importerLeader := make(chan struct{}, 1)
	f.leaderChanged = append(f.leaderChanged, importerLeader)
	if f.importer, err = catalog.NewImporter(catalog.ImporterConfig{FSM: n.cluster.FSM, Apply: n.cluster.Apply, IsLeader: n.cluster.IsLeader, LeaderChanged: importerLeader, TrustDomain: td, RetryMax: cfg.SyncInterval},
		catalog.WithLogger(f.logger), catalog.WithMetrics(reg)); err != nil {
		return nil, err
	}
	if f.minter, err = newAssertionMinter(n.identity, nodeID, cfg.AssertionTTL, reg); err != nil {
		return nil, err
	}
	if f.verifier, err = assertion.NewVerifier(assertion.VerifierConfig{TrustDomain: td, Node: nodeID, Bundles: f.set, X509Bundles: f.set}, assertion.WithMetrics(reg)); err != nil {
		return nil, err
	}
	if f.gossip, err = newMeshGossip(f, reg); err != nil {
		f.server.Close()
		f.client.Close()
		return nil, err
	}
	return f, nil
}

// run keeps the federation in step with the manifest and the registry
// until ctx ends.
func (f *federation) run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	// Watch before the loops first read IsLeader, so no change is missed.
	lead := f.n.cluster.WatchLeadership(ctx)
	g.Go(func() error { relayLeadership(ctx, lead, f.leaderChanged); return nil })
	g.Go(func() error { return manifest.Follow(ctx, f.n.cluster.FSM, f.n.manifestKey, f.holder, f.logger) })
	g.Go(func() error { return f.server.Run(ctx) })
	g.Go(func() error { return f.watcher.Run(ctx) })
	g.Go(func() error { return f.importer.Run(ctx) })
	g.Go(func() error { f.follow(ctx); return nil })
	g.Go(func() error { return f.gossip.run(ctx) })
	return g.Wait()
}

// close releases the peer listener, the connections to other BUs and the
// gossip pool (run leaves it first when its context ends).
func (f *federation) close() error {
	return errors.Join(f.client.Close(), f.server.Close(), f.gossip.pool.Shutdown())
}

// follow applies every change of the manifest or of the stored bundles:
// the trusted bundle set (a trust domain the manifest no longer names is
// dropped at once, and connections of its nodes closed), the bundles to
// watch, and the BUs to import from.
func (f *federation) follow(ctx context.Context) {
	fsm := f.n.cluster.FSM
	for {
		changed, own := f.holder.Changed(), f.n.identity.bundleChanged()
		next := fsm.AppliedIndex() + 1
		if err := f.reconcile(); err != nil {
			f.logger.Error("federation: could not apply the manifest", "error", err)
		}
		f.gossip.advertise()
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		done := make(chan struct{})
		go func() {
			defer close(done)
			fsm.WaitApplied(wctx, next)
		}()
		select {
		case <-changed:
		case <-own:
		case <-done:
		case <-ctx.Done():
		}
		cancel()
		<-done
		if ctx.Err() != nil {
			return
		}
	}
}

// reconcile makes the bundle set, the watcher's targets and the importer's
// origins what the manifest in force and the stored bundles say.
func (f *federation) reconcile() (err error) {
	m := f.holder.Current(time.Now())
	peers := m.Peers(f.td)
	stored, err := f.n.cluster.FSM.ForeignBundles()
	if err != nil {
		return err
	}
	own := f.own
	if f.n.identity.ca == nil {
		// SPIRE's bundle changes under the node (a CA rotation).
		if own, err = f.ownBundle(); err != nil {
			return err
		}
	}
	// Most registry changes touch neither: skip them.
	var mark strings.Builder
	ownSeq, _ := own.SequenceNumber()
	fmt.Fprintf(&mark, "own %d;", ownSeq)
	if m != nil {
		fmt.Fprintf(&mark, "manifest %d;", m.Version)
	}
	for _, b := range stored {
		fmt.Fprintf(&mark, "%s %d;", b.TrustDomain, b.Sequence)
	}
	if mark.String() == f.applied {
		return nil
	}
	defer func() {
		if err == nil {
			f.applied = mark.String()
		}
	}()
	foreign, err := bundles.ParseStored(stored, func(td spiffeid.TrustDomain) bool { return slices.Contains(peers, td) })
	if err != nil {
		return err
	}
	if err := f.set.Replace(own, foreign); err != nil {
		return err
	}
	f.own = own
	f.server.Revalidate()
	f.client.Revalidate()
	var targets []bundles.Target
	var origins []catalog.Origin
	for _, td := range peers {
		d, ok := m.Domain(td)
		if !ok {
			continue
		}
		t := bundles.Target{TrustDomain: td, Bootstrap: spiffebundle.FromX509Bundle(d.Bundle())}
		for _, ep := range d.BundleEndpoints {
			id, err := spiffeid.FromString(ep.SPIFFEID)
			if err != nil {
				continue
			}
			t.Endpoints = append(t.Endpoints, bundles.Endpoint{URL: ep.URL, ID: id})
		}
		targets = append(targets, t)
		if m.Allows(f.td, td) {
			ns := d.Namespace
			origins = append(origins, catalog.Origin{Namespace: ns, TrustDomain: td,
				Fetch: catalog.HTTPFetcher(f.httpClient(), func() []string { return []string{upstream.FederationBaseURL(ns)} })})
		}
	}
	if err := f.watcher.SetTargets(targets); err != nil {
		return err
	}
	if err := f.importer.SetOrigins(origins); err != nil {
		return err
	}
	// Members whose claims the previous manifest did not map may be
	// mapped now (and the reverse).
	f.gossip.recheck()
	return nil
}

// addrs returns the peer addresses of trust domain td's nodes to try, in
// order: the manifest's bundle endpoints, with those gossip knows to be
// down moved last and the verified addresses of td's other live members
// before them (meshGossip.order).
func (f *federation) addrs(m *manifest.Manifest, td spiffeid.TrustDomain) []string {
	return f.gossip.order(td, f.manifestAddrs(m, td))
}

// manifestAddrs returns the peer addresses of trust domain td's nodes, in
// the manifest's order.
func (f *federation) manifestAddrs(m *manifest.Manifest, td spiffeid.TrustDomain) []string {
	d, ok := m.Domain(td)
	if !ok {
		return nil
	}
	var out []string
	for _, ep := range d.BundleEndpoints {
		if u, err := url.Parse(ep.URL); err == nil && u.Host != "" {
			out = append(out, u.Host)
		}
	}
	return out
}

// authorize admits a peer node of a trust domain the manifest in force
// relates to this one (either direction: callers, and exporters that
// answer our pulls), or of this BU itself.
func (f *federation) authorize(id spiffeid.ID) error {
	if id.TrustDomain() == f.td {
		return nil
	}
	m := f.holder.Current(time.Now())
	if m == nil {
		return errors.New("no federation manifest in force (none pushed, or it expired)")
	}
	if !slices.Contains(m.Peers(f.td), id.TrustDomain()) {
		return fmt.Errorf("the federation manifest (version %d) relates trust domain %s to %s in neither direction", m.Version, id.TrustDomain().Name(), f.td.Name())
	}
	return nil
}

// consumer is the trust domain a catalog pull is for: the mTLS peer's,
// when the manifest lets it call this BU.
func (f *federation) consumer(r *http.Request) (spiffeid.TrustDomain, error) {
	id, err := peer.PeerID(r)
	if err != nil {
		return spiffeid.TrustDomain{}, err
	}
	if !f.holder.Current(time.Now()).Allows(id.TrustDomain(), f.td) {
		return spiffeid.TrustDomain{}, fmt.Errorf("the federation manifest does not let %s call %s", id.TrustDomain().Name(), f.td.Name())
	}
	return id.TrustDomain(), nil
}

// serveManifest answers another BU's pull of the manifest in force.
func (f *federation) serveManifest(w http.ResponseWriter, r *http.Request) {
	m := f.holder.Load()
	if m == nil {
		http.Error(w, "no federation manifest here", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/jose")
	w.Write(m.Signed())
}

// forwardedBodyLimit bounds how much of a forwarded request's body is
// decoded to learn the tool it calls; the gateway bounds the body itself.
const forwardedBodyLimit = 4 << 20

// serveForwarded serves a call another BU forwards: the assertion must be
// the mTLS peer's own, for this BU, unseen, and for the very tool the
// request calls; the call then runs this BU's whole pipeline on the
// exporting server's endpoint, as the caller the assertion names.
// Requests that call no tool (session set-up, pings) run as the peer node
// itself, which the gateway lets do nothing else.
func (f *federation) serveForwarded(w http.ResponseWriter, r *http.Request) {
	peerID, err := peer.PeerID(r)
	if err != nil {
		forwardedError(w, http.StatusUnauthorized, "no peer identity: "+err.Error())
		return
	}
	server := strings.TrimPrefix(r.URL.Path, upstream.FederationPath)
	method, tool, batch := gateway.PeekCall(r, forwardedBodyLimit)
	if batch {
		// A batch would carry several calls under one assertion.
		err := errors.New("a forwarded request must be one JSON-RPC message (an object), not a batch")
		f.logger.Info("federation: forwarded request refused", "peer", peerID.String(), "server", server, "error", err)
		auditForwardedRefusal(f.n, peerID, "forwarded request", server, "batch", err)
		forwardedError(w, http.StatusBadRequest, err.Error())
		return
	}
	p := agentauth.Principal{ID: peerID.String(), TrustDomain: peerID.TrustDomain().Name(), Method: agentauth.MethodFederation}
	ctx := r.Context()
	if method == "tools/call" {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			f.refuseForwarded(w, r, peerID, server+"/"+tool, "missing", errors.New("a forwarded tools/call must carry the calling node's federation assertion"))
			return
		}
		claims, err := f.verifier.Verify(tok, peerID, time.Now())
		if err == nil {
			err = f.verifier.CheckTool(claims, server+"/"+tool)
		}
		if err != nil {
			f.refuseForwarded(w, r, peerID, server+"/"+tool, assertion.ReasonOf(err), err)
			return
		}
		ap := assertion.PrincipalOf(claims)
		p = ap.Agent()
		ctx = gateway.ContextWithRequestID(ctx, ap.RequestID)
		// The calling node (act) goes on the record between the caller
		// and this node, and the trace is the signed one, whatever the
		// request's unsigned header or _meta say.
		ctx = gateway.ContextWithVia(ctx, ap.Actor.String())
		ctx = upstream.ContextWithTrace(ctx, ap.Trace, ap.TraceState)
	}
	r.Header.Del("Authorization")
	r = r.WithContext(agentauth.NewContext(ctx, p))
	r.URL.Path = "/mcp/s/" + f.n.cfg.Namespace + "/" + server
	r.URL.RawPath = ""
	serveH3(w, r, agentauth.Established(f.n.gateway))
}

// serveH3 serves r with h over HTTP/3: through h3Writer, and with the
// forbidden headers stripped once more after h returns, for an answer h
// wrote nothing to, whose headers quic-go then sends as h left them.
func serveH3(w http.ResponseWriter, r *http.Request, h http.Handler) {
	hw := h3Writer{w}
	h.ServeHTTP(hw, r)
	hw.strip()
}

// h3Writer drops the connection-specific headers HTTP/3 forbids (RFC 9114
// §4.2; quic-go's client refuses a response carrying one) from what the
// gateway writes: go-sdk sets "Connection: keep-alive" on its event
// streams, meant for HTTP/1.1.
type h3Writer struct{ http.ResponseWriter }

func (w h3Writer) strip() {
	h := w.Header()
	for _, k := range []string{"Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Upgrade"} {
		h.Del(k)
	}
}

// WriteHeader implements http.ResponseWriter.
func (w h3Writer) WriteHeader(code int) {
	w.strip()
	w.ResponseWriter.WriteHeader(code)
}

// Write implements http.ResponseWriter.
func (w h3Writer) Write(b []byte) (int, error) {
	w.strip()
	return w.ResponseWriter.Write(b)
}

// Flush sends what was written so far (event streams need it).
func (w h3Writer) Flush() {
	w.strip()
	http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap gives http.ResponseController the writer underneath.
func (w h3Writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// refuseForwarded answers a forwarded call whose assertion is refused, and
// puts the refusal on the audit record.
func (f *federation) refuseForwarded(w http.ResponseWriter, r *http.Request, peerID spiffeid.ID, tool, reason string, err error) {
	f.logger.Info("federation: forwarded call refused", "peer", peerID.String(), "tool", tool, "reason", reason, "error", err)
	auditForwardedRefusal(f.n, peerID, "tools/call "+tool, tool, "federation assertion "+reason, err)
	status := http.StatusUnauthorized
	if errors.Is(err, assertion.ErrReplayCacheFull) {
		status = http.StatusServiceUnavailable
	}
	forwardedError(w, status, fmt.Sprintf("federation assertion refused (%s): %v", reason, err))
}

func forwardedError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"jsonrpc": "2.0", "id": nil, "error": map[string]any{"code": gateway.CodeRefusedByExporter, "message": msg}})
}

// exportCheck is the gateway's check of a forwarded call against this
// BU's exports: the tool version must be in the catalog exported to the
// caller's trust domain, and the caller must match the export's principal
// prefixes (its own id at its BU) and carry its scopes.
func (f *federation) exportCheck(p agentauth.Principal, server, tool, version string) error {
	if id, err := spiffeid.FromString(p.ID); err == nil && strings.HasPrefix(id.Path(), "/mcpmesh/node/") {
		// serveForwarded lets a peer node act as itself only for requests
		// that call no tool.
		return errors.New("a forwarded tools/call must carry the calling node's federation assertion for its caller")
	}
	cat, err := f.n.cluster.FSM.ExportedCatalog(p.TrustDomain)
	if err != nil {
		return fmt.Errorf("exports unreadable: %w", err)
	}
	return exportedTo(cat, p, server, tool, version)
}

// exportedTo says whether cat, the catalog exported to p's trust domain,
// lets p call the tool version: it must be in it, and p must match the
// export's principal prefixes (its own id at its BU) and carry its scopes.
func exportedTo(cat state.ExportedCatalog, p agentauth.Principal, server, tool, version string) error {
	for _, t := range cat.Tools {
		if t.Server != server || t.Name != tool || t.Version != version {
			continue
		}
		subject := strings.TrimPrefix(p.ID, p.TrustDomain+"/")
		if len(t.Principals) > 0 && !slices.ContainsFunc(t.Principals, func(prefix string) bool { return strings.HasPrefix(subject, prefix) }) {
			return fmt.Errorf("%s@%s is exported to %s only for principals %s, not %s", server, version, p.TrustDomain, strings.Join(t.Principals, ", "), subject)
		}
		for _, s := range t.Scopes {
			if !slices.Contains(p.Scopes, s) {
				return fmt.Errorf("%s@%s needs scope %q of callers from %s", server, version, s, p.TrustDomain)
			}
		}
		return nil
	}
	return fmt.Errorf("%s/%s@%s is not exported to trust domain %s", server, tool, version, p.TrustDomain)
}

// httpClient is the client of requests to other BUs: a federation URL's
// host names the namespace, resolved through the manifest to that BU's
// nodes, tried in order (peer.Client.DoFailover).
func (f *federation) httpClient() *http.Client {
	return &http.Client{Transport: federationTransport{f}}
}

// HTTPClient implements upstream.Federation.
func (f *federation) HTTPClient() *http.Client { return f.httpClient() }

var _ upstream.Federation = (*federation)(nil)

// auditForwardedRefusal records a forwarded request this node refused
// (its assertion, or its shape): who sent it (the peer node), what it
// asked, and why.
func auditForwardedRefusal(n *Node, peerID spiffeid.ID, action, target, reason string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rec := audit.Record{Kind: audit.KindAuth, Namespace: n.cfg.Namespace, AuthMethod: string(agentauth.MethodFederation), Principal: peerID.String(),
		Actors: []string{peerID.String()}, Action: action, Target: target, Outcome: audit.OutcomeRefused, Reason: reason + ": " + err.Error()}
	if _, aerr := n.audit.Append(ctx, rec); aerr != nil {
		n.logger.Error("audit: the record of a refused forwarded request could not be written", "peer", peerID.String(), "error", aerr)
	}
}
