package gateway

import (
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/prometheus/client_golang/prometheus"
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

// agentLogLevel returns the log level a 2026-07-28 agent asked for in
// req's _meta; "" when it asked for none, or when the agent is of a legacy
// era (its level is its session's, and its own upstream sessions relay).
func agentLogLevel(req *mcp.CallToolRequest) mcp.LoggingLevel {
	if req.Params == nil || legacySession(req.Session) {
		return ""
	}
	s, _ := req.Params.Meta[mcp.MetaKeyLogLevel].(string)
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
