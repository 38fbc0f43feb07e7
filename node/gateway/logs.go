package gateway

import (
	"context"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpmesh/mcpmesh/node/upstream"
)

// A 2026-07-28 agent asks for the log messages of one request by putting
// a level in that request's _meta ("io.modelcontextprotocol/logLevel"),
// and gets them on that request's response stream. For a tools/call the
// gateway asks the upstream for them at the same level, over a session
// the call holds alone (upstream.Pool.CallToolLogged), and relays each
// one from the handler (callUpstream), filtered again by go-sdk against
// the agent's level. A legacy agent's logs take its own upstream sessions
// instead (relay.go). What an upstream logs outside any call of the agent
// never reaches it.

// A resources/read or prompts/get of a 2026-07-28 agent that asks for logs
// in its _meta gets them the same way (upstream.Pool.CallLogged, on
// /mcp and on a server's own endpoint): the request's context carries its
// relay (withLogs) to the caller it goes through (logged), and each log
// message is sent to the agent from the upstream session's reading
// goroutine, under the request's context, while the handler waits for
// the result; the pool settles the logs before the result returns. stdio
// upstreams send none: their one session is shared by every request, and
// a log message there could not be told to be this one's.

// logRelay is one request's wish for logs and where they go.
type logRelay struct {
	level mcp.LoggingLevel
	onLog func(*mcp.LoggingMessageParams)
}

type logRelayKey struct{}

// withLogs returns ctx carrying req's log relay when req is a
// resources/read or prompts/get of a 2026-07-28 agent that asked for logs.
func withLogs(ctx context.Context, method string, req mcp.Request) context.Context {
	if method != "resources/read" && method != "prompts/get" {
		return ctx
	}
	ss := session(req)
	if ss == nil || legacySession(ss) {
		return ctx
	}
	level := logLevelOf(paramsMeta(req.GetParams()))
	if level == "" {
		return ctx
	}
	return context.WithValue(ctx, logRelayKey{}, &logRelay{level: level, onLog: func(p *mcp.LoggingMessageParams) {
		// go-sdk filters by the level of the agent's request.
		ss.Log(ctx, p)
	}})
}

// logged returns the caller of a request whose context carries a log
// relay (withLogs), else via.
func (g *Gateway) logged(ctx context.Context, via caller) caller {
	if r, ok := ctx.Value(logRelayKey{}).(*logRelay); ok && via == caller(g.pool) {
		return loggedCaller{g.pool, r}
	}
	return via
}

// loggedCaller sends a request's upstream calls through the pool on a
// session of their own, relaying what the upstream logs.
type loggedCaller struct {
	pool *upstream.Pool
	r    *logRelay
}

func (lc loggedCaller) CallTool(ctx context.Context, t upstream.Target, params *mcp.CallToolParams, onProgress func(*mcp.ProgressNotificationParams)) (*mcp.CallToolResult, error) {
	return lc.pool.CallToolLogged(ctx, t, params, lc.r.level, lc.r.onLog, onProgress)
}

func (lc loggedCaller) Call(ctx context.Context, t upstream.Target, fn func(context.Context, *mcp.ClientSession) error) error {
	return lc.pool.CallLogged(ctx, t, lc.r.level, lc.r.onLog, fn)
}

// agentLogLevel returns the log level a 2026-07-28 agent asked for in
// req's _meta; "" when it asked for none, or when the agent is of a legacy
// era (its level is its session's, and its own upstream sessions relay).
func agentLogLevel(req *mcp.CallToolRequest) mcp.LoggingLevel {
	if req.Params == nil || legacySession(req.Session) {
		return ""
	}
	return logLevelOf(req.Params.Meta)
}

// logLevelOf returns the valid log level in a request's _meta, or "".
func logLevelOf(meta mcp.Meta) mcp.LoggingLevel {
	s, _ := meta[mcp.MetaKeyLogLevel].(string)
	switch mcp.LoggingLevel(s) {
	case "debug", "info", "notice", "warning", "error", "critical", "alert", "emergency":
		return mcp.LoggingLevel(s)
	}
	return ""
}

// newRelayMetrics creates the counter of notifications dropped on the way
// to an agent that did not keep up, and registers it with reg (if any).
func newRelayMetrics(reg prometheus.Registerer) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mcpmesh_gateway_relay_dropped_total",
		Help: "Notifications from upstreams dropped instead of blocking the upstream, because the agent's (or the listeners') bounded queue was full, by namespace and kind (progress, log, resource_updated, list_changed).",
	}, []string{"namespace", "kind"})
	if reg != nil {
		reg.MustRegister(c)
	}
	return c
}
