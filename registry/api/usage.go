package api

import (
	"cmp"
	"context"
	"net/http"
	"slices"
	"time"

	"github.com/mcpmesh/mcpmesh/registry/state"
)

// Quotas and usage:
//
//	GET /v1/quotas                           the quota set
//	PUT /v1/quotas                           replace it (QuotasRequest)
//	GET /v1/usage?month=YYYY-MM[&tenant=T]   the chargeback report of a month

// QuotasRequest is the body of PUT /v1/quotas: the whole new set.
type QuotasRequest struct {
	Quotas []state.Quota `json:"quotas"`
}

// UsageLine is the calls and cost of one group of a usage report. The
// fields a group does not split by are empty; costs are in Currency units
// (rounded to micro-units), one line per currency.
type UsageLine struct {
	Tenant   string  `json:"tenant,omitempty"`
	Tool     string  `json:"tool,omitempty"`
	CallerBU string  `json:"callerBU,omitempty"`
	Currency string  `json:"currency,omitempty"`
	Calls    int64   `json:"calls"`
	Cost     float64 `json:"cost"`
}

// UsageReport answers GET /v1/usage: a month's calls and cost, the
// chargeback of each tenant, from the replicated usage. Each node's calls
// reach it within about one flush interval (governance.usage_flush); Nodes
// says up to which audit record of each node it counts.
type UsageReport struct {
	Month string `json:"month"`
	// From and Until bound the month: From <= call time < Until (UTC).
	From  time.Time `json:"from"`
	Until time.Time `json:"until"`
	// Tenant is the tenant the report is limited to, if any.
	Tenant string `json:"tenant,omitempty"`
	// Rows split by tenant, tool, calling BU and currency.
	Rows []UsageLine `json:"rows"`
	// Tenants, Tools and Callers sum the rows per tenant, per tool and per
	// calling BU; Totals per currency.
	Tenants []UsageLine `json:"tenants"`
	Tools   []UsageLine `json:"tools"`
	Callers []UsageLine `json:"callers"`
	Totals  []UsageLine `json:"totals"`
	// Nodes are the nodes' flush high-water marks.
	Nodes []state.UsageMark `json:"nodes"`
}

func (h *Handler) showQuotas(w http.ResponseWriter, r *http.Request) {
	if err := h.consistent(r); err != nil {
		h.fail(w, r, err)
		return
	}
	q, err := h.cl.FSM.Quotas()
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, q)
}

func (h *Handler) putQuotas(w http.ResponseWriter, r *http.Request) {
	var req QuotasRequest
	if err := decodeBody(r, &req); err != nil {
		h.fail(w, r, err)
		return
	}
	res, err := h.apply(r, state.PutQuotas{Quotas: req.Quotas, By: by(r), At: h.now().UTC()})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	q, err := h.cl.FSM.Quotas()
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if !res.Unchanged {
		h.logger.Info("admin replaced the quota set", "tenants", len(q.Quotas), "index", res.Index, "by", by(r))
	}
	writeJSON(w, http.StatusOK, q)
}

func (h *Handler) usageReport(w http.ResponseWriter, r *http.Request) {
	month := r.URL.Query().Get("month")
	if month == "" {
		h.fail(w, r, badRequest("month is required: ?month=YYYY-MM, e.g. 2026-11"))
		return
	}
	from, err := state.ParseMonth(month)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if err := h.consistent(r); err != nil {
		h.fail(w, r, err)
		return
	}
	rows, err := h.cl.FSM.UsageRows(month)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	marks, err := h.cl.FSM.UsageMarks()
	if err != nil {
		h.fail(w, r, err)
		return
	}
	tenant := r.URL.Query().Get("tenant")
	if tenant != "" {
		rows = slices.DeleteFunc(rows, func(u state.UsageRow) bool { return u.Tenant != tenant })
	}
	rep := BuildUsageReport(month, rows)
	rep.From, rep.Until, rep.Tenant, rep.Nodes = from, state.MonthEnd(from), tenant, marks
	writeJSON(w, http.StatusOK, rep)
}

// BuildUsageReport sums a month's usage rows into a report (without From,
// Until and Nodes).
func BuildUsageReport(month string, rows []state.UsageRow) UsageReport {
	rep := UsageReport{Month: month, Rows: []UsageLine{}}
	type sums map[UsageLine]*UsageLine
	tenants, tools, callers, totals := sums{}, sums{}, sums{}, sums{}
	add := func(s sums, k UsageLine, r state.UsageRow) {
		l := s[k]
		if l == nil {
			l = &UsageLine{Tenant: k.Tenant, Tool: k.Tool, CallerBU: k.CallerBU, Currency: k.Currency}
			s[k] = l
		}
		l.Calls += r.Calls
		l.Cost += state.FromMicros(r.CostMicros)
	}
	for _, r := range rows {
		rep.Rows = append(rep.Rows, UsageLine{Tenant: r.Tenant, Tool: r.Tool, CallerBU: r.CallerBU, Currency: r.Currency, Calls: r.Calls, Cost: state.FromMicros(r.CostMicros)})
		add(tenants, UsageLine{Tenant: r.Tenant, Currency: r.Currency}, r)
		add(tools, UsageLine{Tool: r.Tool, Currency: r.Currency}, r)
		add(callers, UsageLine{CallerBU: r.CallerBU, Currency: r.Currency}, r)
		add(totals, UsageLine{Currency: r.Currency}, r)
	}
	sorted := func(s sums) []UsageLine {
		out := make([]UsageLine, 0, len(s))
		for _, l := range s {
			l.Cost = roundMicros(l.Cost)
			out = append(out, *l)
		}
		slices.SortFunc(out, func(a, b UsageLine) int {
			return cmp.Or(cmp.Compare(a.Tenant, b.Tenant), cmp.Compare(a.Tool, b.Tool), cmp.Compare(a.CallerBU, b.CallerBU), cmp.Compare(a.Currency, b.Currency))
		})
		return out
	}
	rep.Tenants, rep.Tools, rep.Callers, rep.Totals = sorted(tenants), sorted(tools), sorted(callers), sorted(totals)
	return rep
}

// roundMicros rounds a sum of costs to micro-units, undoing float noise.
func roundMicros(f float64) float64 {
	m, ok := state.ToMicros(f)
	if !ok {
		return f
	}
	return state.FromMicros(m)
}

// Quotas returns the BU's quota set.
func (c *Client) Quotas(ctx context.Context, consistent bool) (state.Quotas, error) {
	var out state.Quotas
	err := c.do(ctx, http.MethodGet, "/v1/quotas", readQuery(consistent), nil, "", &out)
	return out, err
}

// PutQuotas replaces the BU's quota set.
func (c *Client) PutQuotas(ctx context.Context, quotas []state.Quota) (state.Quotas, error) {
	var out state.Quotas
	err := c.do(ctx, http.MethodPut, "/v1/quotas", nil, jsonBody(QuotasRequest{Quotas: quotas}), "application/json", &out)
	return out, err
}

// Usage returns the usage report of month ("YYYY-MM"), of one tenant when
// tenant is not empty.
func (c *Client) Usage(ctx context.Context, month, tenant string, consistent bool) (UsageReport, error) {
	q := readQuery(consistent)
	q.Set("month", month)
	if tenant != "" {
		q.Set("tenant", tenant)
	}
	var out UsageReport
	err := c.do(ctx, http.MethodGet, "/v1/usage", q, nil, "", &out)
	return out, err
}
