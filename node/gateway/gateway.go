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

	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpmesh/mcpmesh/node/audit"
	"github.com/mcpmesh/mcpmesh/node/policy"
	"github.com/mcpmesh/mcpmesh/node/ratelimit"
	"github.com/mcpmesh/mcpmesh/node/upstream"
	"github.com/mcpmesh/mcpmesh/node/usage"
	"github.com/mcpmesh/mcpmesh/node/validate"
	"github.com/mcpmesh/mcpmesh/registry/card"
	"github.com/mcpmesh/mcpmesh/registry/state"
	"github.com/mcpmesh/mcpmesh/trust/agentauth"
)

// Config configures a Gateway.
type Config struct {
	// Namespace is the node's namespace; aggregated tool names start with it.
	Namespace string
	// MaxBodyBytes bounds a request body. Default 4 MiB.
	MaxBodyBytes int64
	// CheckInterval is how often the leader re-checks each live version's
	// tool definitions against the pinned ones. Default 10m.
	CheckInterval time.Duration
	// ExplainDenials names the deciding policies in the error a denied
	// agent gets; by default the error only says it was denied by policy
	// (the node's log always names them).
	ExplainDenials bool
}

// Gateway serves /mcp. It is safe for concurrent use.
type Gateway struct {
	cfg    Config
	logger *slog.Logger
	// sdkLogger is what go-sdk logs to: warnings and errors only, since it
	// writes several info lines for every stateless request.
	sdkLogger *slog.Logger
	fsm       *state.FSM
	pool      *upstream.Pool
	metrics   *metrics
	now       func() time.Time

	propose  Proposer
	isLeader func() bool
	// auditor records every tools/call (audit.go); nil records nothing.
	auditor   Auditor
	auditArgs *audit.Arguments
	nodeID    string
	// life bounds the background definition checks; Close ends it.
	life    context.Context
	stop    context.CancelFunc
	bg      sync.WaitGroup
	checkMu sync.Mutex
	checked map[string]time.Time // version@hash → last definition check
	// retryAt is when a failed definition check is due again (zero: none
	// failed); the registry loop wakes for it.
	retryAt time.Time

	mu          sync.Mutex // serializes Sync
	fingerprint string
	// syncedRead, when set (tests), runs in Sync right after it read the
	// applied index, where a concurrent write can slip in.
	syncedRead func()
	// synced is the registry's applied index the views reflect at least.
	synced state.Watermark
	// targets is each served server's newest live upstream, for the
	// aggregated view's prompts and completion.
	targets atomic.Pointer[map[string]upstream.Target]
	// profiles are the agents' version profiles: principal → server →
	// version, reloaded on every registry change.
	profiles atomic.Pointer[map[string]map[string]string]
	// policy holds the BU's policy set, swapped in by Sync (policy.go).
	policy *policy.Engine
	// listNamespace is the prebuilt policy target of listing /mcp.
	listNamespace *policy.Target
	// kills are the kill switches in force, swapped in by Sync (kills.go).
	kills atomic.Pointer[killSet]
	// limiter holds the rate limits' buckets, set by Sync (ratelimit.go);
	// limitsIndex and limitsReplicas are what it was last set from, and
	// limitWriters the POSTs in flight by TokenInfo.
	limiter        *ratelimit.Limiter
	limitsIndex    uint64
	limitsReplicas int
	limitWriters   sync.Map // *auth.TokenInfo → *limitWriter
	// usage counts calls for quotas and budgets, and quotas is the quota
	// set in force, swapped in by Sync (budget.go); nil usage enforces none.
	usage  *usage.Meter
	quotas atomic.Pointer[state.Quotas]
	// currencyWarned holds the "<server>@<version> <currency>" pairs
	// whose currency mismatch was logged.
	currencyWarned sync.Map
	// approvals holds calls for approval (approvals.go).
	approvals approvals
	// exportCheck decides the calls other BUs forward (forwarded.go); nil
	// refuses them all.
	exportCheck ExportCheck
	// govs is what the policy knows of each served server: its newest
	// live version's governance.
	govs    atomic.Pointer[map[string]serverPolicy]
	schemas *validate.Cache
	sunset  time.Time // the earliest future sunset among live versions
	agg     *endpoint
	servers sync.Map    // server name → *endpoint
	links   sync.Map    // *mcp.ServerSession → *agentLink (legacy agents; relay.go)
	listen  listenRelay // 2026-07-28 agents' resource subscriptions (listen.go)
	lists   listRelay   // upstreams' prompt and resource list changes (listchanged.go)
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

// WithQuarantine lets the gateway check live tool definitions against the
// pinned ones and quarantine a changed version through propose; only while
// isLeader reports true, so one node per namespace checks.
func WithQuarantine(propose Proposer, isLeader func() bool) Option {
	return optionFunc(func(g *Gateway) { g.propose, g.isLeader = propose, isLeader })
}

// WithClock sets the clock used for sunset dates; the default is time.Now.
func WithClock(now func() time.Time) Option { return optionFunc(func(g *Gateway) { g.now = now }) }

// New returns a gateway over the registry state and upstream pool. Call
// Sync (or Run) before serving.
func New(cfg Config, fsm *state.FSM, pool *upstream.Pool, opts ...Option) *Gateway {
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = 4 << 20
	}
	if cfg.CheckInterval == 0 {
		cfg.CheckInterval = 10 * time.Minute
	}
	g := &Gateway{cfg: cfg, logger: slog.New(slog.DiscardHandler), fsm: fsm, pool: pool, now: time.Now, checked: map[string]time.Time{}, policy: policy.NewEngine(), limiter: ratelimit.New()}
	for _, o := range opts {
		o.apply(g)
	}
	g.sdkLogger = slog.New(minLevel{g.logger.Handler(), slog.LevelWarn})
	g.life, g.stop = context.WithCancel(context.Background())
	g.schemas = validate.NewCache(0)
	if g.metrics == nil {
		g.metrics = newMetrics(nil)
	}
	g.agg = g.newEndpoint("mcpmesh "+cfg.Namespace, false)
	g.listNamespace = policy.NewTarget(&policy.Request{Action: policy.ActionList, Namespace: cfg.Namespace})
	return g
}

// endpoint is one MCP server view with its two era handlers.
type endpoint struct {
	server    *mcp.Server
	stateless http.Handler
	stateful  http.Handler
	mu        sync.Mutex
	// names are the tool names currently registered, for diffing, and
	// routes what each one calls.
	names  map[string]string // exposed name → route fingerprint
	routes map[string]*route
	// deprecated is set while any route has a deprecated version.
	deprecated atomic.Bool
	// target is the upstream of the server's newest live version, for the
	// pass-through methods of a per-server endpoint; nil otherwise.
	target atomic.Pointer[upstream.Target]
	// notifyMu and onlyTo direct a resource update to one session
	// (resourceUpdated).
	notifyMu sync.Mutex
	onlyTo   atomic.Pointer[mcp.ServerSession]
}

func (g *Gateway) newEndpoint(name string, perServer bool) *endpoint {
	opts := &mcp.ServerOptions{Logger: g.sdkLogger}
	ep := &endpoint{}
	if !perServer {
		opts.Capabilities = aggregatedCapabilities
		opts.CompletionHandler = func(context.Context, *mcp.CompleteRequest) (*mcp.CompleteResult, error) {
			return nil, errors.New("completion not routed")
		}
		opts.SubscribeHandler, opts.UnsubscribeHandler = g.subscribe(ep, g.resolveURI)
	}
	if perServer {
		opts.Capabilities = passthroughCapabilities
		opts.CompletionHandler = func(context.Context, *mcp.CompleteRequest) (*mcp.CompleteResult, error) {
			// Never reached: the pass-through middleware answers first.
			return nil, errors.New("completion not routed")
		}
		opts.SubscribeHandler, opts.UnsubscribeHandler = g.subscribe(ep, func(uri string) (upstream.Target, string, error) {
			t, err := ep.live()
			return t, uri, err
		})
	}
	s := mcp.NewServer(&mcp.Implementation{Name: name, Version: "1"}, opts)
	// The first middleware added is the outermost: the policy guard sees
	// every request first.
	if perServer {
		s.AddReceivingMiddleware(g.guard(ep, true), g.listAudience(ep), g.loggingLevel(ep), g.passthrough(ep))
	} else {
		s.AddReceivingMiddleware(g.guard(ep, false), g.listAudience(ep), g.loggingLevel(ep), g.aggregatedPrompts(ep), g.aggregatedResources(ep))
	}
	// Outermost: every request below knows its caller (caller.go).
	s.AddReceivingMiddleware(g.withCaller)
	s.AddSendingMiddleware(ep.onlyToMiddleware, g.listenFilter(ep), g.listFilter)
	get := func(*http.Request) *mcp.Server { return s }
	ep.server = s
	// In the 2026-07-28 era the POST is the whole request: an agent that
	// goes away cancels the call, and so the upstream's.
	ep.stateless = mcp.NewStreamableHTTPHandler(get, &mcp.StreamableHTTPOptions{Stateless: true, Logger: g.sdkLogger, MaxRequestBodyBytes: g.cfg.MaxBodyBytes, PropagateRequestCancellation: true})
	ep.stateful = mcp.NewStreamableHTTPHandler(get, &mcp.StreamableHTTPOptions{Logger: g.sdkLogger, MaxRequestBodyBytes: g.cfg.MaxBodyBytes, SessionTimeout: 30 * time.Minute})
	ep.names = map[string]string{}
	ep.routes = map[string]*route{}
	return ep
}

// entry is one tool of one live server version.
type entry struct {
	server, version, tool string
	hash                  string
	def                   *mcp.Tool
	target                upstream.Target
	deprecation           *card.Deprecation
	// authz is the policy's view of calling this version, built once.
	authz *policy.Target
	// input checks the call's arguments; compiled once per schema.
	input *validate.Schema
	// cost and currency are the card's cost of one call.
	cost     float64
	currency string
	// exportKill, on an imported tool, is its origin's kill switch: the
	// tool is not listed and its calls are refused (exportkills.go).
	exportKill *exportKill
}

// route is one exposed tool: the live versions that have it, and the
// newest of them, which answers calls that pin no version.
type route struct {
	server, tool string
	newest       *entry
	versions     map[string]*entry
}

// addRoute adds version e of a tool to its server's routes; the newest
// version of a tool defines it in listings.
func addRoute(byServer map[string]map[string]*route, e *entry) {
	if byServer[e.server] == nil {
		byServer[e.server] = map[string]*route{}
	}
	r := byServer[e.server][e.tool]
	if r == nil {
		r = &route{server: e.server, tool: e.tool, versions: map[string]*entry{}}
		byServer[e.server][e.tool] = r
	}
	r.versions[e.version] = e
	if r.newest == nil || card.CompareVersions(e.version, r.newest.version) > 0 {
		r.newest = e
	}
}

// nameRoutes puts the routes of namespace ns's servers into out under
// their aggregated names: "<ns>.<tool>", or "<ns>.<server>.<tool>" where
// two servers share a tool name.
func nameRoutes(ns string, byServer map[string]map[string]*route, out map[string]*route) {
	count := map[string]int{}
	for _, rs := range byServer {
		for tool := range rs {
			count[tool]++
		}
	}
	for server, rs := range byServer {
		for tool, r := range rs {
			name := ns + "." + tool
			if count[tool] > 1 {
				name = ns + "." + shortName(server) + "." + tool
			}
			out[name] = r
		}
	}
}

// fingerprint changes whenever anything the handler or the listing uses
// changes.
func (r *route) fingerprint() string {
	vs := make([]string, 0, len(r.versions))
	for v, e := range r.versions {
		dep := ""
		if e.deprecation != nil {
			dep = e.deprecation.Sunset.String() + e.deprecation.Replacement
		}
		vs = append(vs, v+"|"+e.hash+"|"+dep+e.exportKill.fingerprint())
	}
	sort.Strings(vs)
	return r.newest.version + ";" + strings.Join(vs, ";")
}

// deprecated reports whether any version of the route is deprecated, so
// that the HTTP layer knows when a call may need deprecation headers.
func (r *route) deprecated() bool {
	for _, e := range r.versions {
		if e.deprecation != nil {
			return true
		}
	}
	return false
}

// Close stops background definition checks, ends every agent session
// still open (legacy sessions otherwise live until they idle out) with
// its own upstream sessions, and waits for all of it.
func (g *Gateway) Close() error {
	g.stop()
	eps := []*endpoint{g.agg}
	g.servers.Range(func(_, v any) bool {
		eps = append(eps, v.(*endpoint))
		return true
	})
	for _, ep := range eps {
		// Collect first: a closing session removes itself from the server.
		sessions := slices.Collect(ep.server.Sessions())
		for _, ss := range sessions {
			ss.Close()
		}
	}
	// Last: legacy agents' links (relay.go) end with their sessions.
	g.bg.Wait()
	g.stopListWatches()
	return nil
}

// Run keeps the views in step with the registry until ctx ends.
func (g *Gateway) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { g.runApprovals(ctx) })
	for {
		// Wake on the first entry the views do not reflect: one applied
		// while Sync ran must not be mistaken for one it read.
		next := g.fsm.AppliedIndex() + 1
		if err := g.Sync(); err != nil {
			g.logger.Error("gateway: sync with registry failed", "error", err)
		} else {
			next = g.synced.Load() + 1
		}
		// Wake on the next registry change, or when the next sunset date
		// passes (a version stops answering without any write).
		// Also wake for the periodic definition checks.
		wake := g.now().Add(g.cfg.CheckInterval)
		if at := g.nextSunset(); !at.IsZero() && at.Before(wake) {
			wake = at
		}
		g.checkMu.Lock()
		switch at := g.retryAt; {
		case at.IsZero():
		case !at.After(g.now()):
			g.retryAt = time.Time{} // due: the Sync above started it
		case at.Before(wake):
			wake = at
		}
		g.checkMu.Unlock()
		wctx, cancel := context.WithDeadline(ctx, wake)
		err := g.fsm.WaitApplied(wctx, next)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil && wctx.Err() == nil {
			return err
		}
	}
}

// loadProfiles swaps in the registry's version profiles.
func (g *Gateway) loadProfiles() error {
	ps, err := g.fsm.Profiles()
	if err != nil {
		return err
	}
	m := make(map[string]map[string]string, len(ps))
	for _, p := range ps {
		m[p.Principal] = p.Pins
	}
	g.profiles.Store(&m)
	return nil
}

// Sync rebuilds the served tool set from the registry state, changing only
// what differs.
func (g *Gateway) Sync() (err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	// Read before the state: the views will reflect at least this much.
	index := g.fsm.AppliedIndex()
	if g.syncedRead != nil {
		g.syncedRead()
	}
	all, err := g.fsm.AllVersions()
	if err != nil {
		return err
	}
	defer func() {
		if err == nil {
			g.synced.Raise(index)
		}
	}()
	if err := g.loadProfiles(); err != nil {
		return err
	}
	if err := g.loadPolicies(); err != nil {
		return err
	}
	if err := g.loadKills(); err != nil {
		return err
	}
	if err := g.loadLimits(); err != nil {
		return err
	}
	if err := g.loadQuotas(); err != nil {
		return err
	}
	if err := g.loadApprovals(); err != nil {
		return err
	}
	live := g.liveVersions(all)
	g.sunset = time.Time{}
	for _, sv := range live {
		if d := sv.Deprecation; d != nil && (g.sunset.IsZero() || d.Sunset.Before(g.sunset)) {
			g.sunset = d.Sunset
		}
	}
	g.checkVersions(live)
	imported, importsFP, err := g.importedRoutes()
	if err != nil {
		return err
	}
	fp := fingerprintOf(live) + importsFP
	if fp == g.fingerprint {
		return nil
	}
	// Routes per server and tool, over every live version; the newest
	// version that has a tool defines it in listings.
	byServer := map[string]map[string]*route{}
	for _, sv := range live {
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
			input, err := g.compileInput(def)
			if err != nil {
				// The registry refuses such schemas at submission; one that
				// got in anyway is not served rather than served unchecked.
				g.logger.Error("gateway: input schema does not compile; tool not served", "server", sv.Server, "version", sv.Version, "tool", tv.Name, "error", err)
				continue
			}
			e := &entry{server: sv.Server, version: sv.Version, tool: tv.Name, hash: tv.Hash, def: def, target: targetOf(sv), deprecation: sv.Deprecation, input: input,
				cost: sv.Governance.CostPerCall, currency: currencyOf(sv.Governance)}
			e.authz = policy.NewTarget(&policy.Request{Action: policy.ActionCall, Namespace: g.cfg.Namespace, Server: serverInfo(sv),
				Tool: policy.Tool{Name: tv.Name, Version: sv.Version, Deprecated: sv.Deprecation != nil, Annotations: def.Annotations}})
			addRoute(byServer, e)
		}
	}
	agg := map[string]*route{}
	nameRoutes(g.cfg.Namespace, byServer, agg)
	g.apply(g.agg, withImports(agg, imported))
	seen := map[string]bool{}
	newest := map[string]state.ServerVersion{}
	for _, sv := range live {
		if cur, ok := newest[sv.Server]; !ok || card.CompareVersions(sv.Version, cur.Version) > 0 {
			newest[sv.Server] = sv
		}
	}
	targets := map[string]upstream.Target{}
	govs := map[string]serverPolicy{}
	for server := range byServer {
		targets[server] = targetOf(newest[server])
		info := serverInfo(newest[server])
		govs[server] = serverPolicy{info: info, list: policy.NewTarget(&policy.Request{Action: policy.ActionList, Namespace: g.cfg.Namespace, Server: info})}
	}
	g.targets.Store(&targets)
	g.govs.Store(&govs)
	defer g.reconcileLists() // the list watches follow the served servers (listchanged.go)
	for server, rs := range byServer {
		seen[server] = true
		ep, ok := g.servers.Load(server)
		if !ok {
			ep, _ = g.servers.LoadOrStore(server, g.newEndpoint(server, true))
		}
		t := targetOf(newest[server])
		ep.(*endpoint).target.Store(&t)
		g.apply(ep.(*endpoint), rs)
	}
	g.servers.Range(func(k, v any) bool {
		if !seen[k.(string)] {
			v.(*endpoint).target.Store(nil)
			g.apply(v.(*endpoint), nil)
		}
		return true
	})
	g.fingerprint = fp
	g.logger.Info("gateway: serving registry state", "servers", len(byServer), "tools", len(agg))
	return nil
}

// WaitSynced waits until the views serve the registry state as of index
// (a Raft log index applied to the registry) or later, or ctx ends.
func (g *Gateway) WaitSynced(ctx context.Context, index uint64) error {
	if synced, err := g.synced.Wait(ctx, index); err != nil {
		return fmt.Errorf("gateway serves the registry as of index %d, not yet %d: %w", synced, index, err)
	}
	return nil
}

// apply makes ep serve exactly want.
func (g *Gateway) apply(ep *endpoint, want map[string]*route) {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	var remove []string
	for name := range ep.names {
		if _, ok := want[name]; !ok {
			remove = append(remove, name)
			delete(ep.names, name)
			delete(ep.routes, name)
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
		r := want[name]
		fp := r.fingerprint()
		if ep.names[name] == fp {
			continue
		}
		t := *r.newest.def
		t.Name = name
		ep.server.AddTool(&t, g.handler(ep, r, name))
		ep.names[name] = fp
		ep.routes[name] = r
	}
	anyDeprecated := false
	for _, r := range ep.routes {
		anyDeprecated = anyDeprecated || r.deprecated()
	}
	ep.deprecated.Store(anyDeprecated)
}

// route returns the route behind an exposed tool name of ep.
func (ep *endpoint) route(name string) *route {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	return ep.routes[name]
}

// served reports whether ep serves any tool.
func (ep *endpoint) served() bool {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	return len(ep.names) > 0
}

// nextSunset returns the earliest sunset still ahead, zero if none.
func (g *Gateway) nextSunset() time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.sunset
}

// liveVersions returns the versions that answer calls: approved, or
// deprecated with the sunset still ahead; by server, then version.
func (g *Gateway) liveVersions(all []state.ServerVersion) []state.ServerVersion {
	now := g.now()
	var out []state.ServerVersion
	for _, sv := range all {
		if sv.State == card.StateApproved || (sv.State == card.StateDeprecated && sv.Deprecation != nil && now.Before(sv.Deprecation.Sunset)) {
			out = append(out, sv)
		}
	}
	return out
}

func fingerprintOf(live []state.ServerVersion) string {
	h := sha256.New()
	for _, sv := range live {
		fmt.Fprintf(h, "%s@%s:%s:%s\n", sv.Server, sv.Version, sv.CardHash, sv.State)
		if d := sv.Deprecation; d != nil {
			fmt.Fprintf(h, "  %s %s %s\n", d.Sunset, d.Replacement, d.Note)
		}
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

// compileInput compiles a tool's input schema through the cache (keyed by
// the schema's canonical hash), so equal schemas compile once.
func (g *Gateway) compileInput(def *mcp.Tool) (*validate.Schema, error) {
	raw := def.InputSchema.(json.RawMessage)
	hash, err := validate.Hash(raw)
	if err != nil {
		return nil, err
	}
	return g.schemas.Schema(hash, raw)
}

// toolFromDefinition turns a pinned definition into the go-sdk tool the
// views advertise. Schemas stay the raw JSON that was pinned.
func toolFromDefinition(def json.RawMessage) (*mcp.Tool, error) {
	var ct card.Tool
	if err := json.Unmarshal(def, &ct); err != nil {
		return nil, err
	}
	var root struct {
		Type string `json:"type"`
	}
	// mcp.Server.AddTool panics on a nil or non-object input schema; the
	// registry refused such cards already, but a panic here would take the
	// node down, so check again.
	if err := json.Unmarshal(ct.InputSchema, &root); err != nil || root.Type != "object" {
		return nil, errors.New("inputSchema is not an object schema")
	}
	t := &mcp.Tool{Name: ct.Name, Title: ct.Title, Description: ct.Description, InputSchema: ct.InputSchema}
	if len(ct.OutputSchema) > 0 {
		t.OutputSchema = ct.OutputSchema
	}
	if len(ct.Annotations) > 0 {
		var a mcp.ToolAnnotations
		if err := json.Unmarshal(ct.Annotations, &a); err != nil {
			return nil, fmt.Errorf("annotations: %w", err)
		}
		t.Annotations = &a
	}
	return t, nil
}

// upstreamError maps a failed upstream call to the JSON-RPC error the agent
// sees: an upstream's own JSON-RPC error passes through; anything else says
// which upstream failed, that the call did not complete, and whether it
// may have run all the same (under request id rid; mayhaverun.go).
func (g *Gateway) upstreamError(e *entry, rid string, forwarded bool, err error) error {
	if je, ok := upstream.Answered(err); ok {
		if ns := e.target.Namespace; ns != "" && je.Code == codeUpstreamUnavailable {
			// The exporting BU could not get its upstream's answer: to
			// this BU's agent, namespace ns did not complete the call.
			return &jsonrpc.Error{Code: CodeRemoteUnavailable, Message: fmt.Sprintf("namespace %s: %s", ns, je.Message), Data: je.Data}
		}
		return je
	}
	g.logger.Warn("gateway: upstream call failed", "server", e.server, "version", e.version, "tool", e.tool, "error", err)
	if ns := e.target.Namespace; ns != "" {
		if errors.Is(err, upstream.ErrNoToken) {
			// This node would not vouch for the call: the manifest in
			// force does not (or no longer) let this BU call ns.
			return &jsonrpc.Error{Code: CodeRemoteUnavailable, Message: fmt.Sprintf("namespace %s cannot be called from this BU now: %v; central security's federation manifest decides which BUs may call which", ns, err)}
		}
		if errors.Is(err, upstream.ErrInDoubt) {
			// Not "retry later": the call may have run there.
			return &jsonrpc.Error{Code: CodeRemoteUnavailable, Message: fmt.Sprintf("namespace %s: %v", ns, err)}
		}
		if m := g.mayHaveRunError(e, rid, forwarded, err); m != nil {
			return &jsonrpc.Error{Code: CodeRemoteUnavailable, Message: m.Error()}
		}
		return &jsonrpc.Error{Code: CodeRemoteUnavailable, Message: fmt.Sprintf("namespace %s did not answer the call of %s@%s: %v; this BU's own tools are unaffected; retry later", ns, e.server, e.version, err)}
	}
	msg := fmt.Sprintf("upstream %s@%s failed: %v", e.server, e.version, err)
	switch {
	case errors.Is(err, upstream.ErrBusy), errors.Is(err, upstream.ErrUnavailable), errors.Is(err, upstream.ErrNotSent):
		msg = fmt.Sprintf("upstream %s@%s is unavailable: %v; retry later", e.server, e.version, err)
	case errors.Is(err, context.DeadlineExceeded):
		msg = fmt.Sprintf("upstream %s@%s did not answer in time; the tool is annotated readOnlyHint or idempotentHint: retry later", e.server, e.version)
		if m := g.mayHaveRunError(e, rid, forwarded, err); m != nil {
			msg = m.Error()
		}
	}
	return &jsonrpc.Error{Code: codeUpstreamUnavailable, Message: msg}
}

// codeUpstreamUnavailable is the JSON-RPC server error for a call that
// could not reach its upstream, in mcpmesh's block of server errors
// (not -32002, which MCP gives to "resource not found").
const codeUpstreamUnavailable = -32019

// CodeRemoteUnavailable is the JSON-RPC error of a call of another BU's
// tool when no node of that BU answered. It lies in the range the
// 2026-07-28 revision leaves to implementations (-32000 to -32019): MCP
// reserves -32020 to -32099, and go-sdk answers its own -32021 (missing
// client capabilities) and -32022 (unsupported protocol version) with
// HTTP 400, as protocol errors a client acts on.
const CodeRemoteUnavailable = -32018

// ServeHTTP serves /mcp and /mcp/s/<namespace>/<server>. Requests must
// have passed agentauth's middleware, which authenticates them; any other
// is refused, so a wiring mistake cannot open the front door.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	principal, ok := agentauth.FromContext(r.Context())
	if !ok {
		g.logger.Error("gateway: request without a principal; the front door must sit behind agentauth's middleware", "path", r.URL.Path)
		http.Error(w, "internal error: request not authenticated", http.StatusInternalServerError)
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
		if !found || !v.(*endpoint).served() {
			http.Error(w, fmt.Sprintf("server %q is not served by namespace %s (not registered, or no approved version)", server, ns), http.StatusNotFound)
			return
		}
		ep = v.(*endpoint)
	default:
		http.NotFound(w, r)
		return
	}
	// The body is read before go-sdk only when needed: to route a request
	// that names no protocol version, or to set deprecation headers.
	var call *rpcCall
	var batch bool
	if r.Method == http.MethodPost && (r.Header.Get("MCP-Protocol-Version") == "" && r.Header.Get("Mcp-Session-Id") == "" || ep.deprecated.Load()) {
		call, batch = peekCall(r, g.cfg.MaxBodyBytes)
	}
	g.deprecationHeaders(w, ep, call, principal.ID)
	next := ep.stateless
	if useStateful(r, call, batch) {
		next = ep.stateful
	} else if r, ok = withCarriedDeadline(w, r); !ok {
		return
	}
	g.withLimitWriter(w, r, next)
}

// minLevel passes on records at or above min only.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(attrs []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(attrs), h.min}
}

func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{h.Handler.WithGroup(name), h.min}
}

// currencyOf is the currency of a card's costPerCall: the registry keeps
// the card's governance as written, and a card that names none costs in
// card.DefaultCurrency.
func currencyOf(g card.Governance) string {
	if g.Currency == "" {
		return card.DefaultCurrency
	}
	return g.Currency
}
