package node

import (
	"context"
	"crypto"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/sync/errgroup"

	"github.com/mcpmesh/mcpmesh/node/adminauth"
	"github.com/mcpmesh/mcpmesh/node/audit"
	"github.com/mcpmesh/mcpmesh/node/config"
	"github.com/mcpmesh/mcpmesh/node/gateway"
	"github.com/mcpmesh/mcpmesh/node/upstream"
	"github.com/mcpmesh/mcpmesh/node/usage"
	"github.com/mcpmesh/mcpmesh/registry/api"
	"github.com/mcpmesh/mcpmesh/registry/cluster"
	"github.com/mcpmesh/mcpmesh/trust/agentauth"
	"github.com/mcpmesh/mcpmesh/trust/mtls"
	"github.com/mcpmesh/mcpmesh/trust/tokens"
)

// nodeALPN is the ALPN protocol of the node port.
const nodeALPN = "mcpmesh-node/1"

// Node is one running node. Create it with New, then Run it.
type Node struct {
	cfg      config.Config
	logger   *slog.Logger
	registry *prometheus.Registry

	identity *identity
	cluster  *cluster.Cluster
	pool     *upstream.Pool
	minter   *tokens.Minter
	keys     *tokens.Rotator
	gateway  *gateway.Gateway
	audit    *audit.Log
	usage    *usage.Meter
	ckpt     *checkpointer
	auth     *adminauth.Authenticator
	agents   *agentauth.Authenticator
	// fed is the node's part in the mesh of BUs; nil with federation off.
	fed *federation
	// manifestKey is central security's public key (federation on).
	manifestKey crypto.PublicKey
	httpLn      net.Listener
	server      *http.Server
	draining    atomic.Bool
}

// Option configures New.
type Option interface{ apply(*options) }

type options struct {
	logger   *slog.Logger
	registry *prometheus.Registry
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return optionFunc(func(o *options) { o.logger = l }) }

// WithMetricsRegistry sets the Prometheus registry served at /metrics; the
// default is a new registry with the Go and process collectors.
func WithMetricsRegistry(r *prometheus.Registry) Option {
	return optionFunc(func(o *options) { o.registry = r })
}

// New loads the node's identity and opens its stores and listeners. Nothing
// is served until Run. On error, everything opened is closed again.
func New(cfg config.Config, opts ...Option) (n *Node, err error) {
	o := options{logger: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt.apply(&o)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if o.registry == nil {
		o.registry = prometheus.NewRegistry()
		o.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	n = &Node{cfg: cfg, logger: o.logger.With("node", cfg.NodeID, "namespace", cfg.Namespace), registry: o.registry}
	// Keep our own reference: `return nil, err` sets the named result n to
	// nil before this deferred cleanup runs.
	opened := n
	defer func() {
		if err != nil {
			opened.close()
		}
	}()

	td, err := spiffeid.TrustDomainFromString(cfg.TrustDomain)
	if err != nil {
		return nil, fmt.Errorf("trust_domain: %w", err)
	}
	n.identity, err = newIdentity(cfg, td, n.logger)
	if err != nil {
		return nil, err
	}
	nodeSVID, bundle := n.identity.svid, n.identity.bundle
	authz := mtls.NodeAuthorizer(td, n.logger)

	n.auth, err = adminauth.New(adminauth.Config{TokenFile: cfg.Admin.TokenFile, TrustDomain: td, PathPrefix: cfg.Admin.SPIFFEPathPrefix, OIDC: adminOIDC(cfg)}, n.logger)
	if err != nil {
		return nil, err
	}

	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	// Bind the HTTP port before starting Raft, so a port clash fails fast
	// without touching the cluster.
	n.httpLn, err = net.Listen("tcp", cfg.HTTP.Listen)
	if err != nil {
		return nil, fmt.Errorf("http.listen: %w", err)
	}
	if cfg.HTTP.TLS {
		n.httpLn = tls.NewListener(n.httpLn, mtls.OptionalClientServerConfig(nodeSVID, bundle, "h2", "http/1.1"))
	}

	ccfg := cluster.Config{
		NodeID:             cfg.NodeID,
		Listen:             cfg.Raft.Listen,
		Advertise:          cfg.RaftAdvertise(),
		Dir:                cfg.DataDir,
		ServerTLS:          mtls.ServerConfig(nodeSVID, bundle, authz, nodeALPN),
		ClientTLS:          mtls.ClientConfig(nodeSVID, bundle, authz, nodeALPN),
		Join:               cfg.Bootstrap.Join,
		HeartbeatTimeout:   cfg.Raft.HeartbeatTimeout,
		ElectionTimeout:    cfg.Raft.ElectionTimeout,
		LeaderLeaseTimeout: cfg.Raft.LeaderLeaseTimeout,
		SnapshotThreshold:  cfg.Raft.SnapshotThreshold,
		SnapshotRetain:     cfg.Raft.SnapshotRetain,
		NoSync:             cfg.Raft.NoSync,
		APIURL:             cfg.APIURL(n.httpLn.Addr().String()),
	}
	for _, p := range cfg.Bootstrap.Peers {
		ccfg.Peers = append(ccfg.Peers, cluster.Peer{ID: p.ID, Address: p.Address})
	}
	n.cluster, err = cluster.New(ccfg, cluster.WithLogger(n.logger))
	if err != nil {
		return nil, err
	}
	if err := n.registry.Register(newCollector(n)); err != nil {
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	// newIdentity checked that this is a valid SPIFFE ID.
	nodeID, err := spiffeid.FromSegments(td, "mcpmesh", "node", cfg.NodeID)
	if err != nil {
		return nil, fmt.Errorf("node SPIFFE ID: %w", err)
	}
	n.minter, n.keys, err = newTokens(cfg, td, nodeID, n.cluster, n.logger, n.registry)
	if err != nil {
		return nil, err
	}
	var auditArgs *audit.Arguments
	n.audit, auditArgs, err = openAudit(cfg, n.identity, n.logger, n.registry)
	if err != nil {
		return nil, err
	}
	if n.fed, err = newFederation(n, td, nodeID, n.registry); err != nil {
		return nil, err
	}
	poolOpts := []upstream.Option{upstream.WithLogger(n.logger), upstream.WithTokens(n.minter)}
	gwOpts := []gateway.Option{}
	if n.fed != nil {
		poolOpts = append(poolOpts, upstream.WithFederation(n.fed))
		gwOpts = append(gwOpts, gateway.WithExportCheck(n.fed.exportCheck))
	}
	n.pool = upstream.NewPool(upstream.Config{CallTimeout: cfg.MCP.CallTimeout, MaxConcurrent: cfg.MCP.MaxConcurrentPerUpstream}, poolOpts...)
	n.agents, err = newAgentAuth(cfg, td, n.cluster.FSM, n.identity.jwt, n.logger, n.registry, auditRefusal(n.audit, cfg.Namespace, n.logger))
	if err != nil {
		return nil, err
	}
	propose := func(ctx context.Context, cmd []byte) error {
		_, err := n.cluster.Apply(ctx, cmd)
		return err
	}
	n.ckpt = &checkpointer{log: n.audit, node: cfg.NodeID, propose: propose, now: time.Now, logger: n.logger}
	n.usage, err = usage.New(usage.Config{Node: cfg.NodeID, Namespace: cfg.Namespace, FlushInterval: cfg.Governance.UsageFlush}, n.audit,
		usage.Registry{FSM: n.cluster.FSM, Propose: propose, Barrier: n.cluster.Barrier}, usage.WithLogger(n.logger), usage.WithMetrics(n.registry))
	if err != nil {
		return nil, err
	}
	n.gateway = gateway.New(gateway.Config{Namespace: cfg.Namespace, ExplainDenials: cfg.MCP.ExplainDenials},
		n.cluster.FSM, n.pool, append(gwOpts, gateway.WithLogger(n.logger), gateway.WithMetrics(n.registry),
			gateway.WithQuarantine(auditedQuarantine(n.audit, cfg.Namespace, nodeID.String(), propose, n.logger), n.cluster.IsLeader),
			gateway.WithAudit(n.audit, auditArgs, nodeID.String()), gateway.WithUsage(n.usage),
			gateway.WithApprovals(gateway.ApprovalConfig{Hold: cfg.Governance.ApprovalHold, TTL: cfg.Governance.ApprovalTTL, MaxHeld: cfg.Governance.ApprovalMaxHeld}, propose))...)

	n.server = &http.Server{
		Handler:           n.handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(n.logger.Handler(), slog.LevelWarn),
	}
	return n, nil
}

// HTTPAddr is the address the HTTP listener is bound to.
func (n *Node) HTTPAddr() net.Addr { return n.httpLn.Addr() }

// Cluster returns the node's Raft replica.
func (n *Node) Cluster() *cluster.Cluster { return n.cluster }

// WaitServing waits until the MCP front door serves the registry state as
// this node has applied it now, and the node can mint upstream tokens (its
// namespace has a signing key), or ctx ends.
func (n *Node) WaitServing(ctx context.Context) error {
	if err := n.gateway.WaitSynced(ctx, n.cluster.FSM.AppliedIndex()); err != nil {
		return err
	}
	return n.minter.WaitKey(ctx)
}

func (n *Node) handler() http.Handler {
	mux := http.NewServeMux()
	apiOpts := []api.Option{api.WithLogger(n.logger), api.WithAudit(n.audit, n.cfg.Namespace, n.cfg.NodeID)}
	if n.manifestKey != nil {
		apiOpts = append(apiOpts, api.WithManifestKey(n.manifestKey))
		if n.fed != nil {
			apiOpts = append(apiOpts, api.WithMesh(n.fed.gossip.members))
		}
	}
	mux.Handle("/v1/", n.auth.Middleware(api.New(n.cluster, apiOpts...)))
	// Browsers must not drive the MCP endpoints from other origins
	// (Sec-Fetch-Site / Origin checks); go-sdk adds DNS-rebinding protection.
	mcpHandler := http.NewCrossOriginProtection().Handler(n.agents.Middleware(n.gateway))
	if o := n.cfg.MCP.Auth.OIDC; o.Issuer != "" {
		mux.Handle(prmHandler(o))
	}
	mux.Handle("/mcp", mcpHandler)
	mux.Handle("/mcp/", mcpHandler)
	// The key set upstreams verify the node's tokens with: public, no auth.
	mux.Handle("GET "+tokens.JWKSPath, n.minter.JWKSHandler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", n.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(n.registry, promhttp.HandlerOpts{Registry: n.registry}))
	return mux
}

// Readiness is the body of /readyz.
type Readiness struct {
	Ready   bool   `json:"ready"`
	Reason  string `json:"reason,omitempty"`
	Node    string `json:"node"`
	Leader  string `json:"leader"`
	Role    string `json:"role"`
	Applied uint64 `json:"appliedIndex"`
	// Upstreams is the health of every upstream the node has called. An
	// unhealthy upstream does not make the node unready: its other tools
	// and its registry still work.
	Upstreams []upstream.Health `json:"upstreams"`
}

func (n *Node) readyz(w http.ResponseWriter, r *http.Request) {
	st := n.cluster.Status()
	rd := Readiness{Node: n.cfg.NodeID, Leader: st.Leader, Role: st.State, Applied: st.AppliedIndex, Upstreams: n.pool.Health()}
	rd.Ready, rd.Reason = n.cluster.Ready()
	if rd.Ready && n.minter.ActiveKeyID() == "" {
		// Every upstream request needs a token this node mints.
		rd.Ready, rd.Reason = false, "no token signing key yet (the namespace's leader generates one once elected)"
	}
	if n.draining.Load() {
		rd.Ready, rd.Reason = false, "draining"
	}
	status := http.StatusOK
	if !rd.Ready {
		status = http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(rd)
}

// Run serves until ctx ends, then drains and stops. It returns nil after a
// clean stop.
func (n *Node) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := n.identity.run(gctx); err != nil && !errors.Is(err, context.Canceled) {
			return fmt.Errorf("SVID rotation: %w", err)
		}
		return nil
	})
	g.Go(func() error { return loadSigningKeys(gctx, n.cluster, n.minter, n.logger) })
	g.Go(func() error {
		if err := n.keys.Run(gctx); err != nil {
			return fmt.Errorf("signing key rotation: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		if err := n.gateway.Run(gctx); err != nil {
			return fmt.Errorf("gateway: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		runRetention(gctx, n.audit, n.cfg.Audit.Retention, time.Now, n.logger)
		return nil
	})
	g.Go(func() error {
		n.ckpt.run(gctx, n.cfg.Audit.CheckpointInterval)
		return nil
	})
	g.Go(func() error { return n.usage.Run(gctx) })
	if n.fed != nil {
		g.Go(func() error {
			if err := n.fed.run(gctx); err != nil && !errors.Is(err, context.Canceled) {
				return fmt.Errorf("federation: %w", err)
			}
			return nil
		})
	}
	g.Go(func() error {
		n.cluster.RunLiveReplicas(gctx)
		return nil
	})
	g.Go(func() error {
		if err := n.server.Serve(n.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http server: %w", err)
		}
		return nil
	})
	n.logger.Info("node started", append([]any{"http", n.httpLn.Addr().String(), "raft", n.cfg.RaftAdvertise(), "trust_domain", n.cfg.TrustDomain}, n.identity.startAttrs()...)...)
	g.Go(func() error {
		<-gctx.Done()
		n.draining.Store(true)
		n.logger.Info("draining")
		sctx, cancel := context.WithTimeout(context.Background(), n.cfg.HTTP.ShutdownTimeout)
		defer cancel()
		if err := n.server.Shutdown(sctx); err != nil {
			n.logger.Warn("http shutdown did not finish in time", "error", err)
		}
		return nil
	})
	err := g.Wait()
	// Every request is answered: checkpoint the final head while Raft is
	// still up.
	cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if cerr := n.ckpt.once(cctx); cerr != nil {
		n.logger.Warn("audit: could not checkpoint the chain head at shutdown", "error", cerr)
	}
	if uerr := n.usage.Flush(cctx); uerr != nil {
		n.logger.Warn("usage: could not flush at shutdown; the node flushes the rest when it starts again", "error", uerr)
	}
	cancel()
	if cerr := n.close(); cerr != nil {
		err = errors.Join(err, cerr)
	}
	n.logger.Info("node stopped")
	return err
}

// Close releases a node that was created but never Run (Run closes
// everything itself when it returns).
func (n *Node) Close() error { return n.close() }

func (n *Node) close() error {
	var errs []error
	if n.httpLn != nil {
		n.httpLn.Close()
	}
	if n.gateway != nil {
		errs = append(errs, n.gateway.Close())
	}
	if n.pool != nil {
		errs = append(errs, n.pool.Close())
	}
	if n.fed != nil {
		errs = append(errs, n.fed.close())
		n.fed = nil
	}
	if n.audit != nil {
		errs = append(errs, n.audit.Close())
		n.audit = nil
	}
	if n.cluster != nil {
		errs = append(errs, n.cluster.Shutdown())
		n.cluster = nil
	}
	if n.identity != nil {
		errs = append(errs, n.identity.close())
		n.identity = nil
	}
	return errors.Join(errs...)
}
