package state

import (
	"cmp"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Quotas, budgets and usage (issue 5, item 2).
//
// The quota set (key b\x00quotas) is one object replaced whole by
// PutQuotas, like the policy set. Usage lives under q\x00:
//
//	q\x00h\x00<node>                                         high-water mark of a node's flushes
//	q\x00t\x00<month>\x00<tenant>                            a tenant's month total (what enforcement reads)
//	q\x00r\x00<month>\x00<tenant>\x00<tool>\x00<bu>\x00<cur>  one chargeback row
//
// Each node counts the calls it answered from its own audit log and
// flushes the sums through Raft (FlushUsage), each batch covering the
// node's audit records From < seq <= To. A batch applies only when From is
// exactly the node's recorded high-water mark: a batch replayed, retried
// after a lost reply or re-derived after a crash is refused with a
// conflict instead of counted twice, and the node re-derives its unflushed
// records from that mark (node/usage).

var (
	keyQuotas        = []byte("b\x00quotas")
	prefixUsageMarks = []byte("q\x00h\x00")
)

func usageMarkKey(node string) []byte { return []byte("q\x00h\x00" + node) }

func tenantUsageKey(month, tenant string) []byte {
	return []byte("q\x00t\x00" + month + "\x00" + tenant)
}

func usageRowPrefix(month string) []byte { return []byte("q\x00r\x00" + month + "\x00") }

func usageRowKey(r UsageRow) []byte {
	return []byte("q\x00r\x00" + r.Month + "\x00" + r.Tenant + "\x00" + r.Tool + "\x00" + r.CallerBU + "\x00" + r.Currency)
}

// DefaultWarnAt is a quota's warning threshold when it declares none: 80 %
// of a limit used.
const DefaultWarnAt = 0.8

// MicrosPerUnit is how costs are stored: integer millionths of a currency
// unit, so that sums are exact (a budget of 1.00 allows exactly ten calls
// of 0.10).
const MicrosPerUnit = 1_000_000

// maxCostUnits bounds a budget or a call's cost, in currency units, so
// that micro-unit sums cannot overflow int64.
const maxCostUnits = 1e12

// ToMicros converts a cost in currency units to micro-units, rounding to
// the nearest; ok is false for a negative, non-finite or huge cost.
func ToMicros(cost float64) (int64, bool) {
	if math.IsNaN(cost) || math.IsInf(cost, 0) || cost < 0 || cost > maxCostUnits {
		return 0, false
	}
	return int64(math.Round(cost * MicrosPerUnit)), true
}

// FromMicros converts micro-units to currency units.
func FromMicros(m int64) float64 { return float64(m) / MicrosPerUnit }

// Quota is one tenant's monthly limits. A zero Calls or Budget sets no
// such limit.
type Quota struct {
	Tenant string `json:"tenant"`
	// Calls is the most calls the tenant may make in a UTC month; 0 means
	// no call quota.
	Calls int64 `json:"calls,omitempty"`
	// Budget is the most the tenant's calls may cost in a UTC month, in
	// Currency units; 0 means no budget.
	Budget float64 `json:"budget,omitempty"`
	// Currency is the budget's currency, an ISO 4217 code such as EUR;
	// required with a budget.
	Currency string `json:"currency,omitempty"`
	// WarnAt is the share of a limit (0 < WarnAt <= 1) from which results
	// carry a warning; DefaultWarnAt when zero.
	WarnAt float64 `json:"warnAt,omitempty"`
}

// BudgetMicros is the budget in micro-units.
func (q Quota) BudgetMicros() int64 {
	m, _ := ToMicros(q.Budget)
	return m
}

// Warn is the warning threshold in force: WarnAt, or DefaultWarnAt.
func (q Quota) Warn() float64 {
	if q.WarnAt == 0 {
		return DefaultWarnAt
	}
	return q.WarnAt
}

var currencyRE = regexp.MustCompile(`^[A-Z]{3}$`)

// ValidCurrency reports whether c looks like an ISO 4217 code (three
// capital letters).
func ValidCurrency(c string) bool { return currencyRE.MatchString(c) }

// ValidateQuota checks one quota; the message names the field.
func ValidateQuota(q Quota) error {
	if err := ValidateScopedTenant(q.Tenant); err != nil {
		return err
	}
	switch {
	case q.Calls < 0:
		return errorf(KindInvalid, "quota of tenant %s: calls is %d; want a positive number of calls per month (or leave it out for no call quota)", q.Tenant, q.Calls)
	case q.Budget < 0 || math.IsNaN(q.Budget) || math.IsInf(q.Budget, 0) || q.Budget > maxCostUnits:
		return errorf(KindInvalid, "quota of tenant %s: budget %v; want a positive amount per month, at most %g (or leave it out for no budget)", q.Tenant, q.Budget, maxCostUnits)
	case q.Budget > 0 && !ValidCurrency(q.Currency):
		return errorf(KindInvalid, "quota of tenant %s: currency %q; a budget needs the ISO 4217 code of its server cards' currency, e.g. EUR", q.Tenant, q.Currency)
	case q.Budget == 0 && q.Currency != "":
		return errorf(KindInvalid, "quota of tenant %s: currency %s without a budget; set budget or drop currency", q.Tenant, q.Currency)
	case math.IsNaN(q.WarnAt) || q.WarnAt < 0 || q.WarnAt > 1:
		return errorf(KindInvalid, "quota of tenant %s: warnAt %v; want a share of the limit between 0 and 1, e.g. 0.8 (the default)", q.Tenant, q.WarnAt)
	case q.Calls == 0 && q.Budget == 0:
		return errorf(KindInvalid, "quota of tenant %s sets neither calls nor budget; set one or remove the tenant's entry", q.Tenant)
	}
	return nil
}

// Quotas is the BU's quota set: every tenant's limits, replaced as a
// whole. Tenants without an entry have no limits.
type Quotas struct {
	// Quotas are sorted by tenant.
	Quotas    []Quota   `json:"quotas"`
	UpdatedBy string    `json:"updatedBy,omitempty"`
	UpdatedAt time.Time `json:"updatedAt,omitzero"`
	// ModifyIndex is the Raft index of the change: the set's version.
	ModifyIndex uint64 `json:"modifyIndex,omitempty"`
}

// For returns tenant's quota, if it has one.
func (q Quotas) For(tenant string) (Quota, bool) {
	i, ok := slices.BinarySearchFunc(q.Quotas, tenant, func(a Quota, t string) int { return cmp.Compare(a.Tenant, t) })
	if !ok {
		return Quota{}, false
	}
	return q.Quotas[i], true
}

// PutQuotas replaces the quota set. An empty Quotas removes every limit.
type PutQuotas struct {
	Quotas []Quota   `json:"quotas"`
	By     string    `json:"by"`
	At     time.Time `json:"at"`
}

func (f *FSM) applyPutQuotas(b *pebble.Batch, index uint64, c PutQuotas) any {
	qs := slices.Clone(c.Quotas)
	slices.SortFunc(qs, func(a, b Quota) int { return cmp.Compare(a.Tenant, b.Tenant) })
	for i, q := range qs {
		if err := ValidateQuota(q); err != nil {
			return err
		}
		if i > 0 && qs[i-1].Tenant == q.Tenant {
			return errorf(KindInvalid, "tenant %s has two quotas; give each tenant one", q.Tenant)
		}
	}
	cur, found := mustGet[Quotas](b, keyQuotas)
	if found && slices.Equal(cur.Quotas, qs) {
		return ApplyResult{Index: index, Unchanged: true}
	}
	mustStage(setJSON(b, keyQuotas, Quotas{Quotas: qs, UpdatedBy: c.By, UpdatedAt: c.At, ModifyIndex: index}))
	return ApplyResult{Index: index}
}

// Quotas returns the quota set; a registry that never had one returns the
// zero Quotas (no limits).
func (f *FSM) Quotas() (Quotas, error) {
	q, err := getOne[Quotas](f, keyQuotas, func() error { return nil })
	if q.Quotas == nil {
		q.Quotas = []Quota{}
	}
	return q, err
}

// monthRE is a UTC month as usage is keyed by.
var monthRE = regexp.MustCompile(`^[0-9]{4}-(0[1-9]|1[0-2])$`)

// ParseMonth parses a month "YYYY-MM" and returns its first instant (UTC).
// The error says what is expected.
func ParseMonth(s string) (time.Time, error) {
	if !monthRE.MatchString(s) {
		return time.Time{}, errorf(KindInvalid, "month %q: want YYYY-MM, e.g. 2026-11", s)
	}
	t, err := time.Parse("2006-01", s)
	if err != nil {
		return time.Time{}, errorf(KindInvalid, "month %q: want YYYY-MM, e.g. 2026-11", s)
	}
	return t, nil
}

// MonthOf is the UTC month of t, as "YYYY-MM".
func MonthOf(t time.Time) string { return t.UTC().Format("2006-01") }

// MonthEnd is the first instant of the UTC month after t's: when t's
// month's quotas reset.
func MonthEnd(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, time.UTC)
}

// UsageRow is the calls and cost of one (month, tenant, tool, calling BU,
// currency). Tenant is empty for calls of principals without a tenant.
type UsageRow struct {
	Month  string `json:"month"`
	Tenant string `json:"tenant"`
	// Tool is "<server>/<tool>".
	Tool string `json:"tool"`
	// CallerBU is the calling BU: the namespace the caller belongs to.
	CallerBU string `json:"callerBU"`
	// Currency is the cost's currency; empty when the card gives none.
	Currency   string `json:"currency,omitempty"`
	Calls      int64  `json:"calls"`
	CostMicros int64  `json:"costMicros"`
}

// TenantUsage is a tenant's total of one month: calls, and cost per
// currency in micro-units.
type TenantUsage struct {
	Month  string           `json:"month"`
	Tenant string           `json:"tenant"`
	Calls  int64            `json:"calls"`
	Cost   map[string]int64 `json:"cost,omitempty"`
}

// UsageMark is the high-water mark of a node's usage flushes: every call
// its audit log records up to Seq is counted.
type UsageMark struct {
	Node string `json:"node"`
	Seq  uint64 `json:"seq"`
	// Index is the Raft index of the flush that set it.
	Index uint64    `json:"index"`
	At    time.Time `json:"at"`
}

// FlushUsage adds a node's counted calls: Rows sum the node's audit
// records From < seq <= To. It applies only when From equals the node's
// high-water mark (0 for its first flush); otherwise it is refused as a
// conflict naming the mark, and nothing changes.
type FlushUsage struct {
	Node string     `json:"node"`
	From uint64     `json:"from"`
	To   uint64     `json:"to"`
	Rows []UsageRow `json:"rows"`
	At   time.Time  `json:"at"`
}

// MaxUsageRows bounds the rows of one flush.
const MaxUsageRows = 100000

// usageConflictFmt is the refusal of a FlushUsage whose From is not the
// node's high-water mark; MarkOfConflict reads the mark back.
const usageConflictFmt = "usage flush of node %s covers audit records %d..%d, but its counted records end at %d; re-derive from there"

// MarkOfConflict extracts the high-water mark from the conflict a
// FlushUsage was refused with; ok is false for any other error.
func MarkOfConflict(err error) (uint64, bool) {
	e, ok := AsError(err)
	if !ok || e.Kind != KindConflict || !strings.HasPrefix(e.Message, "usage flush of node ") {
		return 0, false
	}
	var node string
	var from, to, mark uint64
	if _, err := fmt.Sscanf(e.Message, "usage flush of node %s covers audit records %d..%d, but its counted records end at %d;", &node, &from, &to, &mark); err != nil {
		return 0, false
	}
	return mark, true
}

func validUsageField(s string) bool { return !strings.ContainsRune(s, 0) && len(s) <= 512 }

func (f *FSM) applyFlushUsage(b *pebble.Batch, index uint64, c FlushUsage) any {
	if !auditNodeID.MatchString(c.Node) {
		return errorf(KindInvalid, "usage flush: node id %q is not valid", c.Node)
	}
	if c.To <= c.From {
		return errorf(KindInvalid, "usage flush of node %s: audit records %d..%d is an empty range", c.Node, c.From, c.To)
	}
	if len(c.Rows) > MaxUsageRows {
		return errorf(KindInvalid, "usage flush of node %s: %d rows, more than %d", c.Node, len(c.Rows), MaxUsageRows)
	}
	for i, r := range c.Rows {
		if !monthRE.MatchString(r.Month) || !validUsageField(r.Tenant) || !validUsageField(r.Tool) || r.Tool == "" ||
			!validUsageField(r.CallerBU) || (r.Currency != "" && !ValidCurrency(r.Currency)) || r.Calls < 0 || r.CostMicros < 0 {
			return errorf(KindInvalid, "usage flush of node %s: row %d is malformed: %+v", c.Node, i, r)
		}
	}
	mark, _ := mustGet[UsageMark](b, usageMarkKey(c.Node))
	if c.From != mark.Seq {
		return errorf(KindConflict, usageConflictFmt, c.Node, c.From+1, c.To, mark.Seq)
	}
	for _, r := range c.Rows {
		key := usageRowKey(r)
		cur, found := mustGet[UsageRow](b, key)
		if !found {
			cur = UsageRow{Month: r.Month, Tenant: r.Tenant, Tool: r.Tool, CallerBU: r.CallerBU, Currency: r.Currency}
		}
		cur.Calls += r.Calls
		cur.CostMicros += r.CostMicros
		mustStage(setJSON(b, key, cur))
		tkey := tenantUsageKey(r.Month, r.Tenant)
		tu, found := mustGet[TenantUsage](b, tkey)
		if !found {
			tu = TenantUsage{Month: r.Month, Tenant: r.Tenant}
		}
		tu.Calls += r.Calls
		if r.CostMicros != 0 || r.Currency != "" {
			if tu.Cost == nil {
				tu.Cost = map[string]int64{}
			}
			tu.Cost[r.Currency] += r.CostMicros
		}
		mustStage(setJSON(b, tkey, tu))
	}
	mustStage(setJSON(b, usageMarkKey(c.Node), UsageMark{Node: c.Node, Seq: c.To, Index: index, At: c.At.UTC()}))
	return ApplyResult{Index: index}
}

// UsageMark returns node's high-water mark; a node that never flushed has
// the zero mark (Seq 0).
func (f *FSM) UsageMark(node string) (UsageMark, error) {
	m, err := getOne[UsageMark](f, usageMarkKey(node), func() error { return nil })
	if m.Node == "" {
		m.Node = node
	}
	return m, err
}

// UsageMarks returns every node's high-water mark, by node id.
func (f *FSM) UsageMarks() ([]UsageMark, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return scan[UsageMark](f.db, prefixUsageMarks)
}

// TenantUsage returns a tenant's flushed total of month ("YYYY-MM"); zero
// when it has none.
func (f *FSM) TenantUsage(month, tenant string) (TenantUsage, error) {
	return f.tenantUsage.get(f, string(tenantUsageKey(month, tenant)), func() (TenantUsage, error) {
		tu, err := getOne[TenantUsage](f, tenantUsageKey(month, tenant), func() error { return nil })
		tu.Month, tu.Tenant = month, tenant
		return tu, err
	})
}

// UsageRows returns the flushed chargeback rows of month, by tenant, tool,
// calling BU and currency.
func (f *FSM) UsageRows(month string) ([]UsageRow, error) {
	if _, err := ParseMonth(month); err != nil {
		return nil, err
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	return scan[UsageRow](f.db, usageRowPrefix(month))
}
