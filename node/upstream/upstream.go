// Package upstream connects a node to the upstream MCP servers its registry
// approved: one reusable client session per server version, over Streamable
// HTTP (both protocol eras; the go-sdk client negotiates), legacy HTTP+SSE,
// or stdio (a child process with a minimal environment, never the node's).
//
// Every call is bounded: a per-call timeout, a concurrency bulkhead per
// upstream, and a circuit breaker that fails fast after consecutive
// transport failures and probes again after a cooldown. Sessions are
// dropped and re-dialled after a transport failure; a stdio server that
// exits is restarted on the next call, after a backoff.
//
// It owns the connections only. Which calls may reach an upstream, and with
// what arguments, is decided before (package gateway); nothing the agent
// sent — headers, tokens — is ever forwarded: sessions are the node's own.
//
// # Tokens
//
// With WithTokens, every request to an upstream carries a token the node
// minted for that upstream (package trust/tokens), never the agent's
// credential. Sessions are shared by many agents, so the token is attached
// per request, not per session (tokens.go): on HTTP upstreams (Streamable
// HTTP and legacy SSE alike: every message is its own POST) as
// "Authorization: Bearer <token>"; on stdio upstreams, which have no
// header, in the request's _meta under "io.mcpmesh/token", and on legacy
// SSE upstreams there too (go-sdk's SSE server does not hand a message's
// POST headers to its handlers). A request made
// on behalf of an agent (the gateway put a tokens.Caller in its context)
// gets a token naming that agent, its tenant and request id; everything
// else (session set-up, the GET streams, definition checks, cancellation
// notices) gets a token of the node itself, without a tenant. A stdio
// server gets tokens on requests only: its session set-up (initialize)
// carries none.
package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Transports an upstream can use (registry card `upstream.transport`).
const (
	TransportStreamableHTTP = "streamable-http"
	TransportSSE            = "sse"
	TransportStdio          = "stdio"
)

// Target identifies one upstream server version and how to reach it.
type Target struct {
	// Namespace is set on a tool of another BU (TransportFederation): the
	// exporting namespace, whose registry names Server.
	Namespace string
	Server    string
	Version   string
	Transport string
	URL       string
	Command   string
	Args      []string
	// SafeToRepeat is set on the target of one tool of another BU whose
	// exported definition is annotated readOnlyHint or idempotentHint: a
	// call of it that may have reached a node of that BU, which then
	// broke off, is repeated on another of its nodes. Other calls are
	// not (ErrInDoubt). It is no part of the target's identity (Key).
	SafeToRepeat bool
	// Env is the whole environment of a stdio server (plus PATH and HOME
	// set by the pool); nothing of the node's environment is inherited.
	Env map[string]string
}

// Key names the target in logs, metrics and the pool: "<server>@<version>",
// and for a tool of another BU "<namespace>:<server>@<version>".
func (t Target) Key() string {
	if t.Namespace != "" {
		return t.Namespace + ":" + t.Server + "@" + t.Version
	}
	return t.Server + "@" + t.Version
}

// Config bounds the pool. Zero values take the defaults listed.
type Config struct {
	// CallTimeout bounds one call, including connecting. Default 30s.
	CallTimeout time.Duration
	// MaxConcurrent is the bulkhead: calls in flight per upstream. Default 64.
	MaxConcurrent int
	// BreakerThreshold consecutive transport failures open the breaker.
	// Default 5.
	BreakerThreshold int
	// BreakerCooldown is how long an open breaker fails fast before it lets
	// one probe through. Default 10s.
	BreakerCooldown time.Duration
}

func (c *Config) setDefaults() {
	if c.CallTimeout == 0 {
		c.CallTimeout = 30 * time.Second
	}
	if c.MaxConcurrent == 0 {
		c.MaxConcurrent = 64
	}
	if c.BreakerThreshold == 0 {
		c.BreakerThreshold = 5
	}
	if c.BreakerCooldown == 0 {
		c.BreakerCooldown = 10 * time.Second
	}
}

// ErrBusy means the upstream's bulkhead is full: too many calls in flight.
var ErrBusy = errors.New("upstream at capacity; retry shortly")

// ErrUnavailable means the upstream's circuit breaker is open after
// repeated failures; calls fail fast until a probe succeeds.
var ErrUnavailable = errors.New("upstream unavailable (circuit open after repeated failures)")

// ErrNotSent marks a call that failed before its request was sent: the
// session to its upstream could not be set up. The upstream has not run
// it, so it can be made again.
var ErrNotSent = errors.New("the call was not sent")

// Pool holds the upstream sessions of one node. It is safe for concurrent use.
type Pool struct {
	cfg    Config
	logger *slog.Logger
	http   *http.Client
	client *mcp.Client
	// tokens mints the token of each upstream request; nil sends none.
	tokens Minter
	// fed reaches other BUs' tools (federation.go); nil reaches none.
	fed Federation

	mu    sync.Mutex
	conns map[string]*conn

	// progress routes upstream progress notifications to the call that
	// asked for them, by the token the pool gave that call.
	progressMu  sync.Mutex
	progress    map[string]*progressWatch
	progressSeq uint64

	// logSessions are the sessions of calls that want log messages, and
	// the call holding each (logged.go); logCl is their client.
	logMu       sync.Mutex
	logSessions map[*mcp.ClientSession]leasedSession
	logOnce     sync.Once
	logCl       *mcp.Client

	// watches are the watch sessions of resource subscriptions and list
	// changes (watch.go), each kept up by a goroutine of watchWG; stdioCl
	// is the client of stdio upstreams' sessions.
	watchMu   sync.Mutex
	watches   map[*conn]*watch
	watchWG   sync.WaitGroup
	watchOnce sync.Once
	watchCl   *mcp.Client
	stdioOnce sync.Once
	stdioCl   *mcp.Client

	// restarts are stuck stdio servers being stopped (stdio.go).
	restarts sync.WaitGroup
}

// Option configures NewPool.
type Option interface{ apply(*Pool) }

type optionFunc func(*Pool)

func (f optionFunc) apply(p *Pool) { f(p) }

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return optionFunc(func(p *Pool) { p.logger = l }) }

// WithHTTPClient sets the HTTP client for HTTP upstreams; the default is a
// dedicated client with connection reuse.
func WithHTTPClient(c *http.Client) Option { return optionFunc(func(p *Pool) { p.http = c }) }

// WithTokens makes every request to an upstream carry a token m mints
// for it (see the package doc); without it, requests carry no credential.
func WithTokens(m Minter) Option { return optionFunc(func(p *Pool) { p.tokens = m }) }

// NewPool returns an empty pool; sessions are dialled on first use.
func NewPool(cfg Config, opts ...Option) *Pool {
	cfg.setDefaults()
	p := &Pool{cfg: cfg, logger: slog.New(slog.DiscardHandler), conns: map[string]*conn{}, progress: map[string]*progressWatch{}, logSessions: map[*mcp.ClientSession]leasedSession{}, watches: map[*conn]*watch{}}
	for _, o := range opts {
		o.apply(p)
	}
	if p.http == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 64
		// The node talks to upstreams it was told to; never through a proxy
		// taken from the environment.
		tr.Proxy = nil
		p.http = &http.Client{Transport: tr}
	}
	p.client = mcp.NewClient(&mcp.Implementation{Name: "mcpmesh", Version: "1"}, &mcp.ClientOptions{
		Logger:                      p.logger,
		ProgressNotificationHandler: p.onProgress,
		// Input requests of a multi round-trip result are the agent's to
		// fulfil: the result goes back to the gateway as it came.
		MultiRoundTrip: &mcp.MultiRoundTripOptions{Disabled: true},
	})
	p.client.AddSendingMiddleware(metaToken)
	return p
}

// conn is one upstream's session, bulkhead and breaker.
type conn struct {
	target Target
	slots  chan struct{}

	mu      sync.Mutex
	session *mcp.ClientSession
	// legacy is set once the upstream turned the 2026-07-28 era down (a
	// stateful server): its sessions use legacyVersion from then on.
	legacy   bool
	failures int
	openedAt time.Time
	nextDial time.Time
	lastErr  error
	// timeouts counts consecutive calls to a stdio upstream that ran out
	// of time (stdio.go).
	timeouts int
	// logIdle are sessions kept for calls that want log messages
	// (logged.go).
	logIdle []*mcp.ClientSession
}

func (p *Pool) conn(t Target) *conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	c, ok := p.conns[t.Key()]
	if !ok || !sameTarget(c.target, t) {
		if ok {
			c.close(p)
		}
		c = &conn{target: t, slots: make(chan struct{}, p.cfg.MaxConcurrent)}
		p.conns[t.Key()] = c
	}
	return c
}

func sameTarget(a, b Target) bool {
	if a.Transport != b.Transport || a.URL != b.URL || a.Command != b.Command || len(a.Args) != len(b.Args) || len(a.Env) != len(b.Env) {
		return false
	}
	for i := range a.Args {
		if a.Args[i] != b.Args[i] {
			return false
		}
	}
	for k, v := range a.Env {
		if b.Env[k] != v {
			return false
		}
	}
	return true
}

// CallTool calls a tool on the target and returns the upstream's result
// unchanged. A JSON-RPC error from the upstream comes back as the error.
// If onProgress is not nil, the call asks the upstream for progress and
// every progress notification it sends for this call reaches onProgress
// (under a token of the pool's, never the caller's).
func (p *Pool) CallTool(ctx context.Context, t Target, params *mcp.CallToolParams, onProgress func(*mcp.ProgressNotificationParams)) (*mcp.CallToolResult, error) {
	return p.callTool(ctx, t, shared{p}, params, onProgress)
}

func (p *Pool) callTool(ctx context.Context, t Target, src source, params *mcp.CallToolParams, onProgress func(*mcp.ProgressNotificationParams)) (*mcp.CallToolResult, error) {
	if onProgress != nil {
		token, done := p.watchProgress(onProgress)
		defer done()
		params.SetProgressToken(token)
	}
	// A call to another BU is prepared here and its assertions minted by
	// the Federation's client, one per node tried (federation.go).
	var fc ForwardedCall
	if t.Transport == TransportFederation {
		var err error
		if fc, err = p.forward(ctx, t, params.Name); err != nil {
			return nil, err
		}
	}
	if tp, ts, _ := TraceFromContext(ctx); tp != "" {
		withTrace(params, tp, ts)
	}
	var res *mcp.CallToolResult
	err := p.do(ctx, t, src, func(ctx context.Context, s *mcp.ClientSession) error {
		if fc != nil {
			ctx = context.WithValue(ctx, forwardedCallKey{}, fc)
		}
		var err error
		res, err = s.CallTool(ctx, params)
		return err
	})
	return res, settleForwarded(fc, err)
}

// progressWatch relays one call's progress.
type progressWatch struct {
	fn   func(*mcp.ProgressNotificationParams)
	mu   sync.Mutex
	last time.Time
}

func (p *Pool) watchProgress(fn func(*mcp.ProgressNotificationParams)) (string, func()) {
	w := &progressWatch{fn: fn, last: time.Now()}
	p.progressMu.Lock()
	p.progressSeq++
	token := fmt.Sprintf("mcpmesh-%d", p.progressSeq)
	p.progress[token] = w
	p.progressMu.Unlock()
	return token, func() {
		w.settle()
		p.progressMu.Lock()
		delete(p.progress, token)
		p.progressMu.Unlock()
	}
}

// settle waits until the call's progress has been quiet for a moment
// (10 ms after the result at least, 100 ms at most). go-sdk's client hands a call its result as soon as
// it is read, while notifications read just before it still wait in the
// session's handler queue; without this the last progress updates would be
// relayed after the agent already has its result (and be lost). go-sdk
// offers no way to drain that queue, so this is a bounded heuristic, paid
// only by calls that asked for progress.
func (w *progressWatch) settle() { settle(&w.mu, &w.last) }

// settle waits until *last (guarded by mu), the time of the latest
// notification, is 10 ms in the past, counting from now at the earliest,
// and for 100 ms at most.
func settle(mu *sync.Mutex, last *time.Time) {
	const quiet, most = 10 * time.Millisecond, 100 * time.Millisecond
	start := time.Now()
	// Quiet is counted from the result's arrival at the earliest: what the
	// upstream sent just before it may not have been handled yet at all.
	mu.Lock()
	if last.Before(start) {
		*last = start
	}
	mu.Unlock()
	for time.Since(start) < most {
		mu.Lock()
		idle := time.Since(*last)
		mu.Unlock()
		if idle >= quiet {
			return
		}
		time.Sleep(quiet - idle)
	}
}

func (p *Pool) onProgress(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
	token, _ := req.Params.ProgressToken.(string)
	p.progressMu.Lock()
	w := p.progress[token]
	p.progressMu.Unlock()
	if w == nil {
		return
	}
	w.mu.Lock()
	w.last = time.Now()
	w.mu.Unlock()
	w.fn(req.Params)
}

// Call runs fn with the target's session, under the same bulkhead,
// breaker, timeout and detached context as a tool call: for the requests
// the gateway passes through as they are (resources, prompts, completion).
// fn's result must not keep the context.
func (p *Pool) Call(ctx context.Context, t Target, fn func(context.Context, *mcp.ClientSession) error) error {
	return p.do(ctx, t, shared{p}, fn)
}

// ListTools lists the target's live tools (used to check the registry's
// pinned definitions against what the upstream really serves).
func (p *Pool) ListTools(ctx context.Context, t Target) ([]*mcp.Tool, error) {
	var out []*mcp.Tool
	err := p.do(ctx, t, shared{p}, func(ctx context.Context, s *mcp.ClientSession) error {
		params := &mcp.ListToolsParams{}
		for {
			res, err := s.ListTools(ctx, params)
			if err != nil {
				return err
			}
			out = append(out, res.Tools...)
			if res.NextCursor == "" {
				return nil
			}
			params.Cursor = res.NextCursor
		}
	})
	return out, err
}

// source is where a call gets its session: the pool's shared one per
// upstream, or an agent's own (Affinity).
type source interface {
	session(ctx context.Context, c *conn) (*mcp.ClientSession, error)
	// drop forgets s after it failed or its upstream refused its era.
	drop(c *conn, s *mcp.ClientSession)
}

// shared is the pool's own session per upstream.
type shared struct{ p *Pool }

func (sh shared) session(ctx context.Context, c *conn) (*mcp.ClientSession, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.session != nil {
		return c.session, nil
	}
	client := sh.p.client
	if c.target.Transport == TransportStdio {
		// The one session of a stdio upstream also carries what it
		// notifies unsolicited (watch.go).
		client = sh.p.stdioClient()
	}
	s, err := sh.p.dial(ctx, c, client, false)
	if err != nil {
		return nil, err
	}
	c.session = s
	return s, nil
}

func (sh shared) drop(c *conn, s *mcp.ClientSession) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.session == s {
		c.session = nil
		s.Close()
	}
}

func (p *Pool) do(ctx context.Context, t Target, src source, fn func(context.Context, *mcp.ClientSession) error) error {
	c := p.conn(t)
	select {
	case c.slots <- struct{}{}:
		defer func() { <-c.slots }()
	default:
		return fmt.Errorf("%s: %w", t.Key(), ErrBusy)
	}
	// Minted before detaching: the caller is a value of the agent's
	// request context, which detach leaves behind.
	tok, err := p.mint(ctx, t)
	if err != nil {
		return err
	}
	// Also read before detaching: the call's trace context (hop.go).
	tp, ts, _ := TraceFromContext(ctx)
	caller := ctx
	ctx, cancel := detach(ctx, p.callTimeout(t))
	defer cancel()
	// The session is set up under the node's own token (withToken is
	// only for the request itself): sessions are shared by every agent.
	s, err := src.session(ctx, c)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNotSent, err)
	}
	callCtx := withToken(ctx, t, tok)
	if tp != "" {
		callCtx = ContextWithTrace(callCtx, tp, ts)
	}
	err = fn(callCtx, s)
	if err != nil && versionRejected(err) && p.downgrade(c) {
		// The upstream refused the request before handling it; retry once
		// on a legacy session.
		src.drop(c, s)
		if s, err = src.session(ctx, c); err != nil {
			return fmt.Errorf("%w: %w", ErrNotSent, err)
		}
		err = fn(callCtx, s)
	}
	// A call its caller stopped waiting for (cancelled, or past a deadline
	// the caller set or another BU carried) says nothing of the upstream.
	// Nor does a call to another BU that ran out of its call timeout: the
	// remote tool was slow, and that BU's node, which answers for its
	// upstream's health with its own breakers, was reached (a BU that
	// cannot be reached fails before, with no connection or a refused
	// certificate, and is counted).
	slowRemote := t.Transport == TransportFederation && errors.Is(ctx.Err(), context.DeadlineExceeded)
	if err != nil && t.Transport == TransportStdio && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return p.stdioTimedOut(c, src, s, err)
	}
	if err != nil && !callerGone(caller) && !slowRemote && isTransportFailure(ctx, err) {
		src.drop(c, s)
		p.failed(c, err)
		return fmt.Errorf("%s: %w", t.Key(), err)
	}
	c.mu.Lock()
	c.failures, c.timeouts = 0, 0
	c.mu.Unlock()
	return err
}

// detach returns a context for an upstream call that keeps the caller's
// cancellation and deadline (bounded by timeout) but none of its values,
// and the function that releases it once the call has returned.
// The agent's request context carries go-sdk state such as the agent's
// negotiated protocol version, which the upstream client would otherwise
// pick up and send upstream; nothing of the agent's request may cross.
func detach(parent context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	if d, ok := parent.Deadline(); ok {
		ctx, cancel = withEarlierDeadline(ctx, cancel, d)
	}
	stop := context.AfterFunc(parent, func() {
		// A caller past its deadline: ctx has that deadline too and ends
		// with context.DeadlineExceeded by itself, which the caller's
		// error must say (cancelling here could win the race and make it
		// context.Canceled).
		if !errors.Is(parent.Err(), context.DeadlineExceeded) {
			cancel()
		}
	})
	return ctx, func() {
		// The call is over: the caller's end no longer concerns it. But
		// go-sdk may still be reading the rest of the upstream's response
		// after handing over the result; cancelling now would cut that
		// read and cost the pooled connection (seen as one new upstream
		// connection every five calls). So cancel a moment later.
		stop()
		releases.add(cancel)
	}
}

// releaseGrace is how long a finished upstream call's context stays open
// for go-sdk to finish reading the response, at least (releases batches
// the cancels: up to twice that).
const releaseGrace = time.Second

func withEarlierDeadline(ctx context.Context, cancel context.CancelFunc, d time.Time) (context.Context, context.CancelFunc) {
	dctx, dcancel := context.WithDeadline(ctx, d)
	return dctx, func() {
		dcancel()
		cancel()
	}
}

// callerGone reports whether the caller of ctx stopped waiting: it was
// cancelled or its deadline passed (checked by the clock too, since the
// call's own copy of that deadline may fire before ctx's timer does).
func callerGone(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d)
}

// isTransportFailure separates a broken connection from an answer: an
// upstream's JSON-RPC error or a caller's cancellation says nothing about
// the upstream's health.
func isTransportFailure(ctx context.Context, err error) bool {
	if errors.Is(err, context.Canceled) {
		return false // the caller gave up; says nothing about the upstream
	}
	_, answered := Answered(err)
	return !answered
}

// dial connects client to c's upstream, unless the breaker is open or a
// re-dial is not due yet. c.mu must be held.
func (p *Pool) dial(ctx context.Context, c *conn, client *mcp.Client, standalone bool) (*mcp.ClientSession, error) {
	return p.dialWith(ctx, c, client, func() (mcp.Transport, error) { return p.transport(c.target, standalone) })
}

// dialWith is dial over the transports newTransport makes. c.mu must be
// held.
func (p *Pool) dialWith(ctx context.Context, c *conn, client *mcp.Client, newTransport func() (mcp.Transport, error)) (*mcp.ClientSession, error) {
	now := time.Now()
	if c.failures >= p.cfg.BreakerThreshold && now.Sub(c.openedAt) < p.cfg.BreakerCooldown {
		return nil, fmt.Errorf("%s: %w: last error: %v", c.target.Key(), ErrUnavailable, c.lastErr)
	}
	if now.Before(c.nextDial) {
		return nil, fmt.Errorf("%s: %w: restarting after a failure (last error: %v)", c.target.Key(), ErrUnavailable, c.lastErr)
	}
	tr, err := newTransport()
	if err != nil {
		return nil, err
	}
	s, err := client.Connect(ctx, tr, c.sessionOptions())
	if err != nil && !c.legacy && versionRejected(err) {
		c.legacy = true
		p.logger.Info("upstream refuses the 2026-07-28 era; using "+legacyVersion, "upstream", c.target.Key())
		if tr, err = newTransport(); err != nil {
			return nil, err
		}
		s, err = client.Connect(ctx, tr, c.sessionOptions())
	}
	if err != nil {
		c.recordFailure(err, p.cfg.BreakerThreshold)
		return nil, fmt.Errorf("connect to upstream %s: %w", c.target.Key(), err)
	}
	return s, nil
}

// legacyVersion is the protocol revision used with upstreams that refuse
// the stateless 2026-07-28 era.
const legacyVersion = "2025-11-25"

func (c *conn) sessionOptions() *mcp.ClientSessionOptions {
	if c.legacy {
		return &mcp.ClientSessionOptions{ProtocolVersion: legacyVersion}
	}
	return nil
}

// downgrade switches c to the legacy era after its upstream refused a
// modern request; it reports whether anything changed.
func (p *Pool) downgrade(c *conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.legacy {
		return false
	}
	c.legacy = true
	p.logger.Info("upstream refuses the 2026-07-28 era; using "+legacyVersion, "upstream", c.target.Key())
	return true
}

func (c *conn) recordFailure(err error, threshold int) {
	c.failures++
	c.lastErr = err
	if c.failures >= threshold {
		c.openedAt = time.Now()
	}
	// Back off re-dials (a crashing stdio server is restarted at most this
	// often): 100ms doubling to 5s.
	backoff := min(100*time.Millisecond<<min(c.failures-1, 6), 5*time.Second)
	c.nextDial = time.Now().Add(backoff)
}

func (p *Pool) failed(c *conn, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.recordFailure(err, p.cfg.BreakerThreshold)
	p.logger.Warn("upstream call failed; session dropped", "upstream", c.target.Key(), "failures", c.failures, "error", err)
}

// transport returns a fresh transport to t. standalone opens the stream an
// upstream sends unsolicited messages on: the pool's shared sessions leave
// it closed, since nothing unsolicited on them could be told to any one
// agent; an agent's own sessions (Affinity) open it for resource updates.
func (p *Pool) transport(t Target, standalone bool) (mcp.Transport, error) {
	switch t.Transport {
	case TransportStreamableHTTP:
		return &mcp.StreamableClientTransport{Endpoint: t.URL, HTTPClient: p.httpFor(t), MaxRetries: 1, DisableStandaloneSSE: !standalone}, nil
	case TransportSSE:
		return &mcp.SSEClientTransport{Endpoint: t.URL, HTTPClient: p.httpFor(t)}, nil
	case TransportFederation:
		hc, err := p.federationClient()
		if err != nil {
			return nil, fmt.Errorf("upstream %s: %w", t.Key(), err)
		}
		return &mcp.StreamableClientTransport{Endpoint: t.URL, HTTPClient: hc, MaxRetries: 1, DisableStandaloneSSE: !standalone}, nil
	case TransportStdio:
		cmd := exec.Command(t.Command, t.Args...)
		cmd.Env = stdioEnv(t.Env)
		cmd.Stderr = nil
		return &mcp.CommandTransport{Command: cmd}, nil
	}
	return nil, fmt.Errorf("upstream %s: unsupported transport %q", t.Key(), t.Transport)
}

// stdioEnv is a stdio server's whole environment: what its card declares,
// plus a PATH and HOME so ordinary commands run. The node's own variables
// (and so any secret in them) are never passed on.
func stdioEnv(declared map[string]string) []string {
	env := map[string]string{"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": os.TempDir()}
	for k, v := range declared {
		env[k] = v
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// Health is one upstream's state, for /readyz detail and metrics.
type Health struct {
	Upstream  string `json:"upstream"`
	Connected bool   `json:"connected"`
	Open      bool   `json:"circuitOpen"`
	Failures  int    `json:"consecutiveFailures"`
	LastError string `json:"lastError,omitempty"`
	InFlight  int    `json:"inFlight"`
}

// Health reports every upstream the pool has dialled, by key.
func (p *Pool) Health() []Health {
	p.mu.Lock()
	conns := make([]*conn, 0, len(p.conns))
	for _, c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	out := make([]Health, 0, len(conns))
	for _, c := range conns {
		c.mu.Lock()
		h := Health{Upstream: c.target.Key(), Connected: c.session != nil, Failures: c.failures, InFlight: len(c.slots),
			Open: c.failures >= p.cfg.BreakerThreshold && time.Since(c.openedAt) < p.cfg.BreakerCooldown}
		if c.lastErr != nil {
			h.LastError = c.lastErr.Error()
		}
		c.mu.Unlock()
		out = append(out, h)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Upstream < out[j].Upstream })
	return out
}

// Forget closes and drops the session of a target no longer served.
func (p *Pool) Forget(key string) {
	p.mu.Lock()
	c, ok := p.conns[key]
	delete(p.conns, key)
	p.mu.Unlock()
	if ok {
		c.close(p)
	}
}

func (c *conn) close(p *Pool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p.closeLogSessions(c)
	if c.session != nil {
		c.session.Close()
		c.session = nil
	}
}

// Close closes every session (and stops stdio servers).
func (p *Pool) Close() error {
	// Watches first: they would re-dial sessions closed under them.
	p.closeWatches()
	p.mu.Lock()
	conns := p.conns
	p.conns = map[string]*conn{}
	p.mu.Unlock()
	for _, c := range conns {
		c.close(p)
	}
	p.restarts.Wait()
	return nil
}
