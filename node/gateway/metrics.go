package gateway

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	calls      *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	deprecWarn *prometheus.CounterVec
	rugPulls   *prometheus.CounterVec
	decisions  *prometheus.CounterVec
	// killRefusals and killSwitches are the kill switches' (kills.go).
	killRefusals *prometheus.CounterVec
	killSwitches *prometheus.GaugeVec
	// rateLimited and liveReplicas are the rate limits' (ratelimit.go).
	rateLimited  *prometheus.CounterVec
	liveReplicas prometheus.Gauge
	// quota is the quotas' and budgets' (budget.go).
	quota *quotaMetrics
	// approvals are the approvals' (approvals.go).
	approvals *approvalMetrics
	// relayDropped counts what the gateway dropped instead of blocking an
	// upstream (logs.go, listen.go).
	relayDropped *prometheus.CounterVec
}

// newMetrics creates the gateway's metrics and registers them with reg
// (nil: unregistered, for tests).
func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcpmesh_gateway_tool_calls_total",
			Help: "Tool calls through the gateway by namespace, exposed tool name and outcome (ok, tool_error, input_required, error, refused, denied, killed, rate_limited, invalid_arguments, over_quota, approval_pending, approval_denied, approval_expired, approval_declined, audit_failed: answer withheld because its audit record could not be written).",
		}, []string{"namespace", "tool", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mcpmesh_gateway_tool_call_duration_seconds",
			Help:    "Duration of tool calls through the gateway, upstream included.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"namespace", "tool"}),
		deprecWarn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcpmesh_gateway_deprecation_warnings_total",
			Help: "Calls answered by a deprecated tool version, by namespace, exposed tool, version and caller (principal id), so that the callers still to migrate can be found.",
		}, []string{"namespace", "tool", "version", "caller"}),
	}
	m.rugPulls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mcpmesh_gateway_definition_changes_total",
		Help: "Server versions quarantined because the upstream changed a tool definition under them (rug pulls), by namespace and server.",
	}, []string{"namespace", "server"})
	m.decisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mcpmesh_policy_decisions_total",
		Help: "Policy decisions at the front door by namespace, action (list, call, readResource, getPrompt) and decision (allow, deny). Items a listing leaves out are counted as deny.",
	}, []string{"namespace", "action", "decision"})
	m.killRefusals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mcpmesh_kill_refusals_total",
		Help: "Requests refused by a kill switch at the front door, by the namespace whose switch refused them (this BU's, or for an imported tool the exporting BU's) and its kind (tool, server, tenant, agent).",
	}, []string{"namespace", "kind"})
	m.killSwitches = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "mcpmesh_kill_switches",
		Help: "Kill switches in force on this node, by kind (tool, server, tenant, agent).",
	}, []string{"kind"})
	if reg != nil {
		reg.MustRegister(m.calls, m.duration, m.deprecWarn, m.rugPulls, m.decisions, m.killRefusals, m.killSwitches)
	}
	m.rateLimited, m.liveReplicas = newRateLimitMetrics(reg)
	m.quota = newQuotaMetrics(reg)
	m.approvals = newApprovalMetrics(reg)
	m.relayDropped = newRelayMetrics(reg)
	return m
}

func (m *metrics) observe(ns, tool, outcome string, d time.Duration) {
	m.calls.WithLabelValues(ns, tool, outcome).Inc()
	m.duration.WithLabelValues(ns, tool).Observe(d.Seconds())
}

func (m *metrics) deprecated(ns, tool, version, caller string) {
	m.deprecWarn.WithLabelValues(ns, tool, version, caller).Inc()
}

func (m *metrics) killRefused(ns, kind string) { m.killRefusals.WithLabelValues(ns, kind).Inc() }

func (m *metrics) rugPull(ns, server string) { m.rugPulls.WithLabelValues(ns, server).Inc() }

func (m *metrics) decided(ns string, action string, allowed bool) {
	d := "deny"
	if allowed {
		d = "allow"
	}
	m.decisions.WithLabelValues(ns, action, d).Inc()
}
