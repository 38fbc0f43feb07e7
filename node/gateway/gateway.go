package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpmesh/mcpmesh/node/upstream"
	"github.com/mcpmesh/mcpmesh/registry/card"
	"github.com/mcpmesh/mcpmesh/registry/state"
)

// Config configures a Gateway.
type Config struct {
	// Namespace is the node's namespace; aggregated tool names start with it.
	Namespace string
	// AnonymousRoutes are the /mcp paths served without authentication. A
	// trailing "/*" matches a prefix. Empty means every /mcp request is
	// refused (agent authentication is not built yet).
	AnonymousRoutes []string
	// MaxBodyBytes bounds a request body. Default 4 MiB.
	MaxBodyBytes int64
}

// Gateway serves /mcp. It is safe for concurrent use.
type Gateway struct {
	cfg     Config
	logger  *slog.Logger
	fsm     *state.FSM
	pool    *upstream.Pool
	metrics *metrics
	now     func() time.Time

	mu          sync.Mutex // serializes Sync
	fingerprint string
	agg         *endpoint
	servers     sync.Map // server name → *endpoint
}

// Option configures New.
type Option interface{ apply(*Gateway) }

type optionFunc func(*Gateway)

func (f optionFunc) apply(g *Gateway) { f(g) }

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return optionFunc(func(g *Gateway) { g.logger = l }) }

// WithMetrics registers the gateway's metrics with reg.
func WithMetrics(reg prometheus.Registerer) Option {
	return optionFunc(func(g *Gateway) { g.metrics = newMetrics(reg) })
}

// WithClock sets the clock used for sunset dates; the default is time.Now.
func WithClock(now func() time.Time) Option { return optionFunc(func(g *Gateway) { g.now = now }) }

// New returns a gateway over the registry state and upstream pool. Call
// Sync (or Run) before serving.
func New(cfg Config, fsm *state.FSM, pool *upstream.Pool, opts ...Option) *Gateway {
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = 4 << 20
	}
	g := &Gateway{cfg: cfg, logger: slog.New(slog.DiscardHandler), fsm: fsm, pool: pool, now: time.Now}
	for _, o := range opts {
		o.apply(g)
	}
	if g.metrics == nil {
		g.metrics = newMetrics(nil)
	}
	g.agg = g.newEndpoint("mcpmesh " + cfg.Namespace)
	return g
}

// endpoint is one MCP server view with its two era handlers.
type endpoint struct {
	server    *mcp.Server
	stateless http.Handler
	stateful  http.Handler
	// names are the tool names currently registered, for diffing.
	names map[string]string // exposed name → entry fingerprint
}

func (g *Gateway) newEndpoint(name string) *endpoint {
	s := mcp.NewServer(&mcp.Implementation{Name: name, Version: "1"}, &mcp.ServerOptions{Logger: g.logger})
	get := func(*http.Request) *mcp.Server { return s }
	return &endpoint{
		server:    s,
		stateless: mcp.NewStreamableHTTPHandler(get, &mcp.StreamableHTTPOptions{Stateless: true, Logger: g.logger, MaxRequestBodyBytes: g.cfg.MaxBodyBytes}),
		stateful:  mcp.NewStreamableHTTPHandler(get, &mcp.StreamableHTTPOptions{Logger: g.logger, MaxRequestBodyBytes: g.cfg.MaxBodyBytes, SessionTimeout: 30 * time.Minute}),
		names:     map[string]string{},
	}
}

// entry is one served tool.
type entry struct {
	server, version, tool string
	hash                  string
	def                   *mcp.Tool
	target                upstream.Target
	deprecation           *card.Deprecation
}

func (e *entry) fingerprint() string { return e.version + "|" + e.hash }

// Run keeps the views in step with the registry until ctx ends.
func (g *Gateway) Run(ctx context.Context) error {
	for {
		if err := g.Sync(); err != nil {
			g.logger.Error("gateway: sync with registry failed", "error", err)
		}
		next := g.fsm.AppliedIndex() + 1
		if err := g.fsm.WaitApplied(ctx, next); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

// Sync rebuilds the served tool set from the registry state, changing only
// what differs.
func (g *Gateway) Sync() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	all, err := g.fsm.AllVersions()
	if err != nil {
		return err
	}
	served := g.servedVersions(all)
	fp := fingerprintOf(served)
	if fp == g.fingerprint {
		return nil
	}
	byServer := map[string][]*entry{}
	for _, sv := range served {
		tvs, err := g.fsm.ToolVersions(sv.Server, sv.Version)
		if err != nil {
			return err
		}
		for _, tv := range tvs {
			def, err := toolFromDefinition(tv.Definition)
			if err != nil {
				g.logger.Error("gateway: tool definition unusable; not served", "server", sv.Server, "version", sv.Version, "tool", tv.Name, "error", err)
				continue
			}
			byServer[sv.Server] = append(byServer[sv.Server], &entry{
				server: sv.Server, version: sv.Version, tool: tv.Name, hash: tv.Hash, def: def,
				target: targetOf(sv), deprecation: sv.Deprecation,
			})
		}
	}
	// Aggregated names: <ns>.<tool>, or <ns>.<server>.<tool> on collisions.
	count := map[string]int{}
	for _, es := range byServer {
		for _, e := range es {
			count[e.tool]++
		}
	}
	agg := map[string]*entry{}
	for _, es := range byServer {
		for _, e := range es {
			name := g.cfg.Namespace + "." + e.tool
			if count[e.tool] > 1 {
				name = g.cfg.Namespace + "." + shortName(e.server) + "." + e.tool
			}
			agg[name] = e
		}
	}
	g.apply(g.agg, agg)
	seen := map[string]bool{}
	for server, es := range byServer {
		seen[server] = true
		v, _ := g.servers.LoadOrStore(server, g.newEndpoint(server))
		own := map[string]*entry{}
		for _, e := range es {
			own[e.tool] = e
		}
		g.apply(v.(*endpoint), own)
	}
	g.servers.Range(func(k, v any) bool {
		if !seen[k.(string)] {
			g.apply(v.(*endpoint), nil)
		}
		return true
	})
	g.fingerprint = fp
	g.logger.Info("gateway: serving registry state", "servers", len(byServer), "tools", len(agg))
	return nil
}

// apply makes ep serve exactly want.
func (g *Gateway) apply(ep *endpoint, want map[string]*entry) {
	var remove []string
	for name := range ep.names {
		if _, ok := want[name]; !ok {
			remove = append(remove, name)
			delete(ep.names, name)
		}
	}
	if len(remove) > 0 {
		ep.server.RemoveTools(remove...)
	}
	names := make([]string, 0, len(want))
	for name := range want {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		e := want[name]
		if ep.names[name] == e.fingerprint() {
			continue
		}
		t := *e.def
		t.Name = name
		ep.server.AddTool(&t, g.handler(e, name))
		ep.names[name] = e.fingerprint()
	}
}

// servedVersions picks, for each server, the newest version that is live:
// approved, or deprecated with its sunset still ahead.
func (g *Gateway) servedVersions(all []state.ServerVersion) []state.ServerVersion {
	now := g.now()
	best := map[string]state.ServerVersion{}
	for _, sv := range all {
		live := sv.State == card.StateApproved ||
			(sv.State == card.StateDeprecated && sv.Deprecation != nil && now.Before(sv.Deprecation.Sunset))
		if !live {
			continue
		}
		if cur, ok := best[sv.Server]; !ok || card.CompareVersions(sv.Version, cur.Version) > 0 {
			best[sv.Server] = sv
		}
	}
	out := make([]state.ServerVersion, 0, len(best))
	for _, sv := range best {
		out = append(out, sv)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Server < out[j].Server })
	return out
}

func fingerprintOf(served []state.ServerVersion) string {
	h := sha256.New()
	for _, sv := range served {
		fmt.Fprintf(h, "%s@%s:%s:%s\n", sv.Server, sv.Version, sv.CardHash, sv.State)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func shortName(server string) string {
	if i := strings.LastIndex(server, "/"); i >= 0 {
		return server[i+1:]
	}
	return server
}

func targetOf(sv state.ServerVersion) upstream.Target {
	u := sv.Governance.Upstream
	return upstream.Target{Server: sv.Server, Version: sv.Version, Transport: u.Transport, URL: u.URL, Command: u.Command, Args: u.Args, Env: u.Env}
}

// toolFromDefinition turns a pinned definition into the go-sdk tool the
// views advertise. Schemas stay the raw JSON that was pinned.
func toolFromDefinition(def json.RawMessage) (*mcp.Tool, error) {
	var raw struct {
		Name         string               `json:"name"`
		Title        string               `json:"title"`
		Description  string               `json:"description"`
		InputSchema  json.RawMessage      `json:"inputSchema"`
		OutputSchema json.RawMessage      `json:"outputSchema"`
		Annotations  *mcp.ToolAnnotations `json:"annotations"`
	}
	if err := json.Unmarshal(def, &raw); err != nil {
		return nil, err
	}
	var root struct {
		Type string `json:"type"`
	}
	// mcp.Server.AddTool panics on a nil or non-object input schema; the
	// registry refused such cards already, but a panic here would take the
	// node down, so check again.
	if err := json.Unmarshal(raw.InputSchema, &root); err != nil || root.Type != "object" {
		return nil, errors.New("inputSchema is not an object schema")
	}
	t := &mcp.Tool{Name: raw.Name, Title: raw.Title, Description: raw.Description, InputSchema: raw.InputSchema, Annotations: raw.Annotations}
	if len(raw.OutputSchema) > 0 {
		t.OutputSchema = raw.OutputSchema
	}
	return t, nil
}

// handler forwards a call of one served tool to its upstream.
func (g *Gateway) handler(e *entry, exposed string) mcp.ToolHandler {
	return func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		start := time.Now()
		params := &mcp.CallToolParams{Name: e.tool, Arguments: req.Params.Arguments}
		res, err := g.pool.CallTool(ctx, e.target, params)
		outcome := "ok"
		switch {
		case err != nil:
			outcome = "error"
		case res.IsError:
			outcome = "tool_error"
		}
		g.metrics.observe(g.cfg.Namespace, exposed, outcome, time.Since(start))
		if err != nil {
			return nil, g.upstreamError(e, err)
		}
		return res, nil
	}
}

// upstreamError maps a failed upstream call to the JSON-RPC error the agent
// sees: an upstream's own JSON-RPC error passes through; anything else says
// which upstream failed and that the call did not complete.
func (g *Gateway) upstreamError(e *entry, err error) error {
	if je, ok := upstream.Answered(err); ok {
		return je
	}
	g.logger.Warn("gateway: upstream call failed", "server", e.server, "version", e.version, "tool", e.tool, "error", err)
	msg := fmt.Sprintf("upstream %s@%s failed: %v", e.server, e.version, err)
	switch {
	case errors.Is(err, upstream.ErrBusy), errors.Is(err, upstream.ErrUnavailable):
		msg = fmt.Sprintf("upstream %s@%s is unavailable: %v; retry later", e.server, e.version, err)
	case errors.Is(err, context.DeadlineExceeded):
		msg = fmt.Sprintf("upstream %s@%s did not answer in time", e.server, e.version)
	}
	return &jsonrpc.Error{Code: codeUpstreamUnavailable, Message: msg}
}

// codeUpstreamUnavailable is the JSON-RPC server error for a call that
// could not reach its upstream (implementation-defined range).
const codeUpstreamUnavailable = -32002

// ServeHTTP serves /mcp and /mcp/s/<namespace>/<server>.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !g.anonymousAllowed(r.URL.Path) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="mcpmesh"`)
		http.Error(w, "agent authentication is not available on this node yet, and this route is not in mcp.anonymous_routes", http.StatusUnauthorized)
		return
	}
	var ep *endpoint
	switch {
	case r.URL.Path == "/mcp":
		ep = g.agg
	case strings.HasPrefix(r.URL.Path, "/mcp/s/"):
		ns, server, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/mcp/s/"), "/")
		if !ok || ns != g.cfg.Namespace {
			http.Error(w, fmt.Sprintf("no MCP server at %s: this node serves namespace %q (/mcp/s/%s/<server>)", r.URL.Path, g.cfg.Namespace, g.cfg.Namespace), http.StatusNotFound)
			return
		}
		v, found := g.servers.Load(server)
		if !found || len(v.(*endpoint).names) == 0 {
			http.Error(w, fmt.Sprintf("server %q is not served by namespace %s (not registered, or no approved version)", server, ns), http.StatusNotFound)
			return
		}
		ep = v.(*endpoint)
	default:
		http.NotFound(w, r)
		return
	}
	if useStateful(r, g.cfg.MaxBodyBytes) {
		ep.stateful.ServeHTTP(w, r)
		return
	}
	ep.stateless.ServeHTTP(w, r)
}

func (g *Gateway) anonymousAllowed(p string) bool {
	p = path.Clean(p)
	for _, route := range g.cfg.AnonymousRoutes {
		if prefix, ok := strings.CutSuffix(route, "/*"); ok {
			if p == prefix || strings.HasPrefix(p, prefix+"/") {
				return true
			}
			continue
		}
		if p == route {
			return true
		}
	}
	return false
}
