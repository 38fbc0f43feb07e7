package gateway

import (
	"bytes"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpmesh/mcpmesh/node/audit"
	"github.com/mcpmesh/mcpmesh/node/ratelimit"
	"github.com/mcpmesh/mcpmesh/registry/state"
	"github.com/mcpmesh/mcpmesh/trust/agentauth"
)

// Rate limits (registry/state.Limit, enforced by node/ratelimit) are
// checked after the policy decision and before argument validation: a
// call the policy denies takes no token, and a limited call never reaches
// the upstream. Sync swaps in the limit set and the live replica count N
// on every registry change; this replica admits 1/N of each limit.
//
// A limited call is answered with CodeRateLimited, whose data says when to
// retry and which limit was hit (RateLimitedData), counted in
// mcpmesh_rate_limited_total and audited with outcome rate_limited. On a
// Streamable HTTP POST that carries that one request, the HTTP answer is
// 429 Too Many Requests with Retry-After and the JSON-RPC error as its
// body (limitWriter); within a batch, or once the response has started,
// the error travels in the stream like any other.

// CodeRateLimited is the JSON-RPC error of a call refused by a rate limit
// (implementation-defined range).
const CodeRateLimited = -32014

// RateLimitedData is the data of a CodeRateLimited error.
type RateLimitedData struct {
	// RetryAfterMs is when this replica would admit the call, at the
	// earliest, in milliseconds.
	RetryAfterMs int64 `json:"retryAfterMs"`
	// Scope is the limit's kind of scope: identity, tenant, tool or
	// tenant_tool; Limit the limit as declared.
	Scope string      `json:"scope"`
	Limit state.Limit `json:"limit"`
	// Replicas is the number of live replicas the limit is shared by.
	Replicas int `json:"replicas"`
}

// loadLimits swaps in the registry's rate limits and live replica count.
func (g *Gateway) loadLimits() error {
	ls, err := g.fsm.Limits()
	if err != nil {
		return err
	}
	lr, err := g.fsm.LiveReplicas()
	if err != nil {
		return err
	}
	if ls.ModifyIndex != g.limitsIndex || lr.Count != g.limitsReplicas {
		g.limiter.Set(ls.Limits, lr.Count)
		if len(ls.Limits) > 0 || g.limitsIndex != 0 {
			g.logger.Info("gateway: rate limits in force", "limits", len(ls.Limits), "version", ls.ModifyIndex, "live_replicas", lr.String())
		}
		g.limitsIndex, g.limitsReplicas = ls.ModifyIndex, lr.Count
		g.metrics.liveReplicas.Set(float64(lr.Count))
	}
	return nil
}

// rateLimit takes a token from every limit matching p's call of e, or
// refuses the call: it then completes rec, counts the refusal, tells the
// HTTP answer to be a 429 and returns the error.
func (g *Gateway) rateLimit(req *mcp.CallToolRequest, p agentauth.Principal, e *entry, c callInfo, rec *audit.Record) error {
	tool := e.server + "/" + e.tool
	r, ok := g.limiter.Allow(ratelimit.Call{Principal: p.ID, Tenant: p.Tenant, Tool: tool})
	if ok {
		return nil
	}
	l := r.Limit
	rec.Outcome = audit.OutcomeRateLimited
	rec.Reason = fmt.Sprintf("rate limit %s: %s, burst %d, shared by %d live replicas", l.Scope(), l.Rate, l.Burst, r.Replicas)
	g.metrics.rateLimited.WithLabelValues(g.cfg.Namespace, p.Tenant, c.exposed, l.ScopeKind()).Inc()
	g.metrics.observe(g.cfg.Namespace, c.exposed, "rate_limited", time.Since(c.start))
	if extra := req.GetExtra(); extra != nil && extra.TokenInfo != nil {
		if w, ok := g.limitWriters.Load(extra.TokenInfo); ok {
			w.(*limitWriter).limited(r.RetryAfter)
		}
	}
	ms := max(int64(math.Ceil(float64(r.RetryAfter)/float64(time.Millisecond))), 1)
	return &jsonrpc.Error{Code: CodeRateLimited,
		Message: fmt.Sprintf("rate limited: %s allows %s (burst %d) across namespace %s; retry after %dms", l.Scope(), l.Rate, l.Burst, g.cfg.Namespace, ms),
		Data:    mustJSON(RateLimitedData{RetryAfterMs: ms, Scope: l.ScopeKind(), Limit: l, Replicas: r.Replicas})}
}

// newRateLimitMetrics creates the rate limits' metrics and registers them
// with reg (nil: unregistered).
func newRateLimitMetrics(reg prometheus.Registerer) (*prometheus.CounterVec, prometheus.Gauge) {
	limited := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mcpmesh_rate_limited_total",
		Help: "Tool calls refused by a rate limit, by namespace, tenant, exposed tool and the kind of limit's scope (identity, tenant, tool, tenant_tool).",
	}, []string{"namespace", "tenant", "tool", "scope"})
	live := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "mcpmesh_rate_limit_live_replicas",
		Help: "The live replica count this node divides each rate limit by (committed by the Raft leader).",
	})
	if reg != nil {
		reg.MustRegister(limited, live)
	}
	return limited, live
}

// withLimitWriter serves a POST through a limitWriter that the call's
// handler can find by the request's TokenInfo (go-sdk hands the handler
// that same pointer in req.Extra, in both eras; agentauth makes one per
// HTTP request), and finishes it after next returns. Without limits in
// force the request is served as is.
func (g *Gateway) withLimitWriter(w http.ResponseWriter, r *http.Request, next http.Handler) {
	ti := auth.TokenInfoFromContext(r.Context())
	if r.Method != http.MethodPost || ti == nil || g.limiter.None() {
		next.ServeHTTP(w, r)
		return
	}
	lw := &limitWriter{ResponseWriter: w}
	g.limitWriters.Store(ti, lw)
	defer g.limitWriters.Delete(ti)
	next.ServeHTTP(lw, r)
	lw.finish()
}

// limitWriter turns the answer to a POST into HTTP 429 with Retry-After
// when the call it carries was rate limited.
//
// go-sdk gives a tool handler no way to set the HTTP status: it writes the
// JSON-RPC response itself, as an SSE event, after the handler returns.
// So the handler signals this wrapper (limited), which from then on holds
// back what go-sdk writes; when go-sdk is done, finish sends 429 with the
// JSON-RPC error as an application/json body if what was held is exactly
// that one response, and otherwise (a batch) sends what was held
// unchanged. Nothing is held unless a call was limited, and a response
// already started (headers sent) is never changed.
type limitWriter struct {
	http.ResponseWriter
	mu      sync.Mutex
	started bool // headers sent through
	holding bool
	retry   time.Duration
	status  int
	held    bytes.Buffer
}

// limited tells the writer that the request's call was rate limited.
func (w *limitWriter) limited(retry time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.started {
		w.holding, w.retry = true, retry
	}
}

// WriteHeader passes the status on, or holds it.
func (w *limitWriter) WriteHeader(status int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.holding {
		w.status = status
		return
	}
	w.started = true
	w.ResponseWriter.WriteHeader(status)
}

// Write passes b on, or holds it.
func (w *limitWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.holding {
		return w.held.Write(b)
	}
	w.started = true
	return w.ResponseWriter.Write(b)
}

// Flush flushes unless the answer is held.
func (w *limitWriter) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.holding {
		return
	}
	w.started = true
	http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap gives http.ResponseController the underlying writer.
func (w *limitWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// finish sends what was held.
func (w *limitWriter) finish() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.holding {
		return
	}
	w.holding = false
	held := w.held.Bytes()
	if body, ok := oneMessage(held); ok {
		h := w.ResponseWriter.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Retry-After", strconv.FormatInt(max(int64(math.Ceil(w.retry.Seconds())), 1), 10))
		h.Del("Content-Length")
		w.ResponseWriter.WriteHeader(http.StatusTooManyRequests)
		w.ResponseWriter.Write(body)
		return
	}
	if w.status != 0 {
		w.ResponseWriter.WriteHeader(w.status)
	}
	w.ResponseWriter.Write(held)
}

// oneMessage returns the JSON-RPC message of a response body that holds
// exactly one: an application/json body, or one SSE event's data.
func oneMessage(b []byte) ([]byte, bool) {
	t := bytes.TrimSpace(b)
	if len(t) > 0 && t[0] == '{' {
		return t, true
	}
	var data [][]byte
	events := 0
	for _, block := range bytes.Split(t, []byte("\n\n")) {
		var d [][]byte
		for _, line := range bytes.Split(block, []byte("\n")) {
			if v, ok := bytes.CutPrefix(line, []byte("data:")); ok {
				d = append(d, bytes.TrimPrefix(v, []byte(" ")))
			}
		}
		if len(d) > 0 {
			events++
			data = d
		}
	}
	if events != 1 {
		return nil, false
	}
	msg := bytes.Join(data, []byte("\n"))
	if len(msg) == 0 || msg[0] != '{' {
		return nil, false
	}
	return msg, true
}
