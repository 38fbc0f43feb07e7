package gateway

import (
	"fmt"
	"math"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpmesh/mcpmesh/node/usage"
	"github.com/mcpmesh/mcpmesh/registry/state"
)

// Quotas and budgets (registry/state.Quotas, declared in a catalog's
// quotas.yaml). A tenant's calls of a UTC month are limited in number
// (calls) and in cost (budget, in the currency of the server cards). The
// check runs after argument validation and before the upstream is called:
// a call that would take the tenant past a limit is refused with
// CodeOverQuota, saying which limit, the figures and when it resets, and
// audited as over_quota. The call's cost for the check is its card's
// costPerCall; an upstream that reports a different cost in result _meta
// (MetaCost) is charged that, so a tenant may end a month a little past
// its budget, never by more than the last call's difference.
//
// "Used" is what this node knows: the usage replicated through Raft plus
// this node's calls not yet flushed (node/usage). The other replicas'
// unflushed calls are missing, at most about one flush interval
// (governance.usage_flush, 1s by default) of their traffic, and calls
// checked at the same moment on one node do not see each other; a tenant
// can so overshoot a limit by that much, never more.
//
// From the warning threshold (warnAt, 80 % by default) on, successful
// results carry MetaBudget with the figures after the call, and
// mcpmesh_quota_used_ratio shows the share used.

// MetaBudget carries on a result the tenant's use of its monthly quota and
// budget once it is past the warning threshold.
const MetaBudget = "io.mcpmesh/budget"

// CodeOverQuota is the JSON-RPC error of a call refused because its
// tenant's monthly call quota or cost budget would be exceeded.
const CodeOverQuota = -32015

// WithUsage enforces the BU's quotas and budgets with m's counts.
func WithUsage(m *usage.Meter) Option { return optionFunc(func(g *Gateway) { g.usage = m }) }

// QuotaData is the data of a CodeOverQuota error.
type QuotaData struct {
	Tenant string `json:"tenant"`
	// Limit is which limit refused the call: "calls" or "budget".
	Limit string `json:"limit"`
	Month string `json:"month"`
	// Used and Max are the limit's figures before the call: calls, or cost
	// in Currency units.
	Used float64 `json:"used"`
	Max  float64 `json:"max"`
	// Cost is what the call would have cost (budget only).
	Cost     float64 `json:"cost,omitempty"`
	Currency string  `json:"currency,omitempty"`
	// Resets is when the month's limits reset: the first instant of the
	// next UTC month.
	Resets time.Time `json:"resets"`
}

// QuotaUse is one limit's use in a MetaBudget warning.
type QuotaUse struct {
	Used     float64 `json:"used"`
	Limit    float64 `json:"limit"`
	Ratio    float64 `json:"ratio"`
	Currency string  `json:"currency,omitempty"`
}

// BudgetWarning is the value of MetaBudget.
type BudgetWarning struct {
	Tenant string    `json:"tenant"`
	Month  string    `json:"month"`
	WarnAt float64   `json:"warnAt"`
	Resets time.Time `json:"resets"`
	// Calls and Budget are set for the limits the tenant has.
	Calls   *QuotaUse `json:"calls,omitempty"`
	Budget  *QuotaUse `json:"budget,omitempty"`
	Message string    `json:"message"`
}

// quotaCheck is what the check learned of a call's tenant, for the
// warning after the call.
type quotaCheck struct {
	q      state.Quota
	month  string
	resets time.Time
	calls  int64 // calls before this one
	cost   int64 // cost before this one, micro-units of q.Currency
}

// loadQuotas swaps in the registry's quota set.
func (g *Gateway) loadQuotas() error {
	if g.usage == nil {
		return nil
	}
	q, err := g.fsm.Quotas()
	if err != nil {
		return err
	}
	g.quotas.Store(&q)
	return nil
}

// checkQuota refuses a call of tenant by version e when it would exceed
// the tenant's call quota or budget this month. It returns nil, nil when
// the tenant has no quota.
func (g *Gateway) checkQuota(tenant string, e *entry) (*quotaCheck, error) {
	if g.usage == nil || tenant == "" {
		return nil, nil
	}
	qs := g.quotas.Load()
	if qs == nil {
		return nil, nil
	}
	q, ok := qs.For(tenant)
	if !ok {
		return nil, nil
	}
	now := g.now().UTC()
	c := &quotaCheck{q: q, month: state.MonthOf(now), resets: state.MonthEnd(now)}
	calls, cost, err := g.usage.Used(c.month, tenant)
	if err != nil {
		// Fail closed: a limit that cannot be read is not a limit lifted.
		g.logger.Error("quota: cannot read the tenant's usage; refusing the call", "tenant", tenant, "error", err)
		return nil, &jsonrpc.Error{Code: CodeOverQuota, Message: fmt.Sprintf("tenant %s has a quota, and this node cannot read its usage now (%v); retry, and tell the BU's operators", tenant, err)}
	}
	c.calls, c.cost = calls, cost[q.Currency]
	m := g.metrics.quota
	if q.Calls > 0 && calls+1 > q.Calls {
		m.refused(g.cfg.Namespace, tenant, "calls")
		g.setRatios(c, 0, 0)
		d := QuotaData{Tenant: tenant, Limit: "calls", Month: c.month, Used: float64(calls), Max: float64(q.Calls), Resets: c.resets}
		return nil, &jsonrpc.Error{Code: CodeOverQuota,
			Message: fmt.Sprintf("over quota: tenant %s has made %d of its %d calls for %s; the quota resets at %s",
				tenant, calls, q.Calls, c.month, c.resets.Format(time.RFC3339)),
			Data: mustJSON(d)}
	}
	if budget := q.BudgetMicros(); budget > 0 {
		this := g.cardMicros(e, q.Currency)
		if c.cost+this > budget {
			m.refused(g.cfg.Namespace, tenant, "budget")
			g.setRatios(c, 0, 0)
			d := QuotaData{Tenant: tenant, Limit: "budget", Month: c.month, Used: state.FromMicros(c.cost), Max: q.Budget,
				Cost: state.FromMicros(this), Currency: q.Currency, Resets: c.resets}
			return nil, &jsonrpc.Error{Code: CodeOverQuota,
				Message: fmt.Sprintf("over budget: tenant %s has used %s of its %s budget for %s and this call costs %s; the budget resets at %s",
					tenant, money(c.cost, q.Currency), money(budget, q.Currency), c.month, money(this, q.Currency), c.resets.Format(time.RFC3339)),
				Data: mustJSON(d)}
		}
	}
	return c, nil
}

// cardMicros is e's card cost of one call in micro-units of currency; a
// card in another currency does not count against the budget.
func (g *Gateway) cardMicros(e *entry, currency string) int64 {
	if e.cost <= 0 {
		return 0
	}
	if e.currency != currency {
		// Once per version and currency pair, not on every call.
		if _, seen := g.currencyWarned.LoadOrStore(e.server+"@"+e.version+" "+currency, true); !seen {
			g.logger.Warn("quota: the tool's card costs in another currency than the tenant's budget; its cost does not count against the budget",
				"server", e.server, "version", e.version, "card_currency", e.currency, "budget_currency", currency)
		}
		return 0
	}
	m, _ := state.ToMicros(e.cost)
	return m
}

// budgetWarning adds MetaBudget to a successful result's meta when the
// tenant is past its warning threshold after the call, and sets the
// gauges.
func (g *Gateway) budgetWarning(c *quotaCheck, e *entry, res *mcp.CallToolResult, meta mcp.Meta) {
	if c == nil {
		return
	}
	this := g.cardMicros(e, c.q.Currency)
	if v, ok := metaNumber(res.Meta, MetaCost); ok && v >= 0 && e.currency == c.q.Currency {
		this, _ = state.ToMicros(v)
	}
	callsRatio, budgetRatio := g.setRatios(c, 1, this)
	warnAt := c.q.Warn()
	if callsRatio < warnAt && budgetRatio < warnAt {
		return
	}
	w := BudgetWarning{Tenant: c.q.Tenant, Month: c.month, WarnAt: warnAt, Resets: c.resets}
	if c.q.Calls > 0 {
		w.Calls = &QuotaUse{Used: float64(c.calls + 1), Limit: float64(c.q.Calls), Ratio: round4(callsRatio)}
	}
	if c.q.Budget > 0 {
		w.Budget = &QuotaUse{Used: state.FromMicros(c.cost + this), Limit: c.q.Budget, Ratio: round4(budgetRatio), Currency: c.q.Currency}
	}
	w.Message = fmt.Sprintf("tenant %s has used %.0f%% of its monthly %s for %s; the limits reset at %s",
		c.q.Tenant, math.Floor(100*max(callsRatio, budgetRatio)), map[bool]string{true: "budget", false: "call quota"}[budgetRatio >= callsRatio], c.month, c.resets.Format(time.RFC3339))
	meta[MetaBudget] = w
}

// setRatios sets the gauges to the tenant's use with extra calls and cost
// added, and returns the ratios (0 for a limit it does not have).
func (g *Gateway) setRatios(c *quotaCheck, calls, cost int64) (callsRatio, budgetRatio float64) {
	if c.q.Calls > 0 {
		callsRatio = float64(c.calls+calls) / float64(c.q.Calls)
		g.metrics.quota.ratio.WithLabelValues(c.q.Tenant, "calls").Set(callsRatio)
	}
	if b := c.q.BudgetMicros(); b > 0 {
		budgetRatio = float64(c.cost+cost) / float64(b)
		g.metrics.quota.ratio.WithLabelValues(c.q.Tenant, "budget").Set(budgetRatio)
	}
	return callsRatio, budgetRatio
}

func round4(f float64) float64 { return math.Round(f*1e4) / 1e4 }

// money formats micro-units of a currency, e.g. "0.25 EUR".
func money(micros int64, currency string) string {
	s := fmt.Sprintf("%.6f", state.FromMicros(micros))
	for s[len(s)-1] == '0' && s[len(s)-3] != '.' {
		s = s[:len(s)-1]
	}
	return s + " " + currency
}

// quotaMetrics are the quotas' and budgets' metrics.
type quotaMetrics struct {
	ratio    *prometheus.GaugeVec
	refusals *prometheus.CounterVec
}

func newQuotaMetrics(reg prometheus.Registerer) *quotaMetrics {
	m := &quotaMetrics{
		ratio: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mcpmesh_quota_used_ratio",
			Help: "Share of its monthly limit a tenant has used, as this node last saw it, by tenant and kind (calls, budget); 1 is the limit.",
		}, []string{"tenant", "kind"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcpmesh_quota_refusals_total",
			Help: "Tool calls refused because the tenant's monthly call quota or cost budget would be exceeded, by namespace, tenant and kind (calls, budget).",
		}, []string{"namespace", "tenant", "kind"}),
	}
	if reg != nil {
		reg.MustRegister(m.ratio, m.refusals)
	}
	return m
}

func (m *quotaMetrics) refused(ns, tenant, kind string) {
	m.refusals.WithLabelValues(ns, tenant, kind).Inc()
}
