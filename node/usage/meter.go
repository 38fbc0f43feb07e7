// Package usage counts what each tenant's calls use, per month, and
// replicates the counts through the BU's Raft log, so that quotas and
// budgets hold BU-wide and a failover loses none of it.
//
// Every node counts the calls it answered from its own audit log: the log
// hands the [Meter] each record as soon as it is durable and before the
// call is acknowledged (audit.Log.SetObserver), so every acknowledged call
// is either counted here or already flushed. A call counts when it reached
// its upstream and got an answer (its record carries a cost source: the
// card's costPerCall, or the upstream's own figure in result _meta); calls
// refused, denied, over quota or failed upstream are not charged.
//
// FlushInterval after the first record it has not flushed, and then every
// FlushInterval while records keep coming (an idle meter keeps no timer),
// the meter proposes its sums (state.FlushUsage): rows
// per (UTC month of the record, tenant, tool, calling BU, currency), tagged
// with the range of audit records they cover. The registry applies a batch
// only as the exact continuation of the node's high-water mark, so a batch
// retried after a lost reply, or re-derived after a crash, is never counted
// twice. Recovery is the same path: on start the meter reads its mark from
// the registry and re-derives everything after it from its own audit log;
// when a flush is refused as a conflict (the local state was behind), it
// waits for the registry to catch up (a barrier) and re-derives from the
// mark the registry holds. A node killed with -9 so loses nothing it
// acknowledged: it flushes the rest when it restarts.
//
// Months are UTC and taken from the record's time (when the answer was
// ready), so a call checked at 23:59:59.999 on the last day of a month may
// be charged to the next.
//
// The package owns the counting and the flushing. It does not own the
// quota decision (node/gateway, budget.go) or the report (registry/api).
package usage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpmesh/mcpmesh/node/audit"
	"github.com/mcpmesh/mcpmesh/registry/state"
)

// DefaultFlushInterval is how often a meter flushes when Config leaves it
// zero.
const DefaultFlushInterval = time.Second

// Config configures a Meter.
type Config struct {
	// Node is the node's id; flushes are tagged with it. Required.
	Node string
	// Namespace is the node's BU: the calling BU of the calls its agents
	// make. Required.
	Namespace string
	// FlushInterval is how often counts are proposed through Raft.
	// Default DefaultFlushInterval.
	FlushInterval time.Duration
}

// Source is the audit log the meter counts from; *audit.Log is one.
type Source interface {
	SetObserver(fn func(audit.Record))
	After(ctx context.Context, seq uint64, fn func(audit.Record) error) error
}

// Registry is the replicated state the meter reads and writes.
type Registry struct {
	// FSM is the local registry state.
	FSM *state.FSM
	// Propose commits an encoded command through Raft and returns once the
	// local state applied it.
	Propose func(ctx context.Context, cmd []byte) error
	// Barrier returns once the local state reflects every committed write.
	Barrier func(ctx context.Context) error
}

// Meter counts charged calls and flushes them. It is safe for concurrent
// use.
type Meter struct {
	cfg    Config
	log    Source
	reg    Registry
	logger *slog.Logger
	cost   *prometheus.CounterVec

	// flushMu makes flushes one at a time.
	flushMu sync.Mutex
	mu      sync.Mutex
	// synced is false until Run re-derived the unflushed records; records
	// observed before are left to that.
	synced bool
	// base is the high-water mark the pending counts continue from: the
	// From of the next flush.
	base uint64
	// last is the newest record counted: every record up to it is in
	// pending or flushed.
	last uint64
	// pending are the counts of records (base, last], per row and per
	// tenant and month.
	pending map[rowKey]*state.UsageRow
	tenants map[tenantKey]*state.TenantUsage

	// kick wakes Run when a record arrives with nothing pending, so an
	// idle meter keeps no ticker; wakes counts Run's flush attempts (for
	// tests of exactly that).
	kick  chan struct{}
	wakes atomic.Int64
}

type rowKey struct{ month, tenant, tool, bu, currency string }

type tenantKey struct{ month, tenant string }

// Option configures New.
type Option interface{ apply(*Meter) }

type optionFunc func(*Meter)

func (f optionFunc) apply(m *Meter) { f(m) }

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return optionFunc(func(m *Meter) { m.logger = l }) }

// WithMetrics registers mcpmesh_cost_total with reg.
func WithMetrics(reg prometheus.Registerer) Option {
	return optionFunc(func(m *Meter) { reg.MustRegister(m.cost) })
}

// New returns a meter over log and the registry, and makes log report
// every committed record to it. Call Run to recover and flush.
func New(cfg Config, log Source, reg Registry, opts ...Option) (*Meter, error) {
	if cfg.Node == "" || cfg.Namespace == "" {
		return nil, errors.New("usage meter: node and namespace are required")
	}
	if cfg.FlushInterval == 0 {
		cfg.FlushInterval = DefaultFlushInterval
	}
	m := &Meter{cfg: cfg, log: log, reg: reg, logger: slog.New(slog.DiscardHandler), pending: map[rowKey]*state.UsageRow{}, tenants: map[tenantKey]*state.TenantUsage{},
		kick: make(chan struct{}, 1),
		cost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcpmesh_cost_total",
			Help: "Cost of the calls this node answered, in currency units, by namespace, tenant, tool (<server>/<tool>) and currency: the upstream's own figure where it gives one, else the card's costPerCall.",
		}, []string{"namespace", "tenant", "tool", "currency"}),
	}
	for _, o := range opts {
		o.apply(m)
	}
	log.SetObserver(m.observe)
	return m, nil
}

// charged reports whether a record is a call that counts.
func charged(r audit.Record) bool { return r.Kind == audit.KindCall && r.CostSource != "" }

// observe is the audit log's observer: it counts a committed record.
func (m *Meter) observe(r audit.Record) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.synced || r.Seq <= m.last {
		return
	}
	if r.Seq > m.last+1 {
		// Records the log committed without telling: read them back.
		if err := m.log.After(context.Background(), m.last, func(old audit.Record) error {
			if old.Seq < r.Seq {
				m.countLocked(old)
			}
			return nil
		}); err != nil {
			m.logger.Error("usage: could not read back audit records; they are counted when the node restarts", "after", m.last, "error", err)
		}
	}
	idle := m.last == m.base
	m.countLocked(r)
	if idle && m.last != m.base {
		select {
		case m.kick <- struct{}{}:
		default:
		}
	}
	if charged(r) && r.Cost > 0 {
		m.cost.WithLabelValues(r.Namespace, r.Tenant, r.Tool, r.Currency).Add(r.Cost)
	}
}

// countLocked adds one record and moves last past it.
func (m *Meter) countLocked(r audit.Record) {
	if r.Seq <= m.last {
		return
	}
	m.last = r.Seq
	if !charged(r) {
		return
	}
	micros, ok := state.ToMicros(r.Cost)
	if !ok {
		m.logger.Warn("usage: a call's cost is not a usable amount; counted as 0", "seq", r.Seq, "cost", r.Cost)
	}
	month := state.MonthOf(r.Time)
	k := rowKey{month, r.Tenant, r.Tool, m.cfg.Namespace, r.Currency}
	row := m.pending[k]
	if row == nil {
		row = &state.UsageRow{Month: month, Tenant: r.Tenant, Tool: r.Tool, CallerBU: m.cfg.Namespace, Currency: r.Currency}
		m.pending[k] = row
	}
	row.Calls++
	row.CostMicros += micros
	tk := tenantKey{month, r.Tenant}
	tu := m.tenants[tk]
	if tu == nil {
		tu = &state.TenantUsage{Month: month, Tenant: r.Tenant, Cost: map[string]int64{}}
		m.tenants[tk] = tu
	}
	tu.Calls++
	tu.Cost[r.Currency] += micros
}

// rederiveLocked drops the pending counts and counts again every record
// of the audit log after mark.
func (m *Meter) rederiveLocked(ctx context.Context, mark uint64) error {
	m.pending = map[rowKey]*state.UsageRow{}
	m.tenants = map[tenantKey]*state.TenantUsage{}
	last := m.last
	m.base, m.last = mark, mark
	err := m.log.After(ctx, mark, func(r audit.Record) error {
		m.countLocked(r)
		return nil
	})
	if m.last < last {
		// Counted before, but no longer in the log (retention, a damaged
		// store): do not count them again as new records.
		m.last = last
	}
	if mark > m.last {
		m.logger.Error("usage: the registry's high-water mark of this node is beyond its audit log; was the audit log replaced? calls up to the mark are not counted again",
			"mark", mark, "audit_head", m.last)
		m.last = mark
	}
	return err
}

// Run recovers (Recover) and then, until ctx ends, flushes FlushInterval
// after the first record that is not flushed, and every FlushInterval
// while records keep coming or a flush fails. With nothing to flush it
// keeps no timer.
func (m *Meter) Run(ctx context.Context) error {
	if err := m.Recover(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	t := time.NewTimer(m.cfg.FlushInterval)
	defer t.Stop()
	for {
		m.mu.Lock()
		idle := m.last == m.base
		m.mu.Unlock()
		if idle {
			select {
			case <-ctx.Done():
				return nil
			case <-m.kick:
			}
		}
		t.Reset(m.cfg.FlushInterval)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		m.wakes.Add(1)
		if err := m.Flush(ctx); err != nil && ctx.Err() == nil {
			m.logger.Warn("usage: flush failed; the counts are kept and flushed with the next batch", "error", err)
		}
	}
}

// Recover counts the records of the audit log after this node's
// high-water mark in the local registry state: what it had not flushed
// when it stopped. Records committed from now on are counted as they come.
func (m *Meter) Recover(ctx context.Context) error {
	mark, err := m.reg.FSM.UsageMark(m.cfg.Node)
	if err != nil {
		return fmt.Errorf("usage: read this node's high-water mark: %w", err)
	}
	m.mu.Lock()
	err = m.rederiveLocked(ctx, mark.Seq)
	m.synced = true
	recovered, last := len(m.pending), m.last
	m.mu.Unlock()
	if err != nil {
		return fmt.Errorf("usage: re-derive unflushed calls from the audit log: %w", err)
	}
	m.logger.Info("usage: counting calls", "mark", mark.Seq, "audit_head", last, "recovered_rows", recovered, "flush_interval", m.cfg.FlushInterval)
	return nil
}

// Flush proposes the pending counts now. On a conflict (the registry's
// mark is not where this node thought) it re-derives from the registry's
// mark, and the next flush carries the result.
func (m *Meter) Flush(ctx context.Context) error {
	m.flushMu.Lock()
	defer m.flushMu.Unlock()
	m.mu.Lock()
	if !m.synced || m.last == m.base {
		m.mu.Unlock()
		return nil
	}
	c := state.FlushUsage{Node: m.cfg.Node, From: m.base, To: m.last, At: time.Now().UTC(), Rows: make([]state.UsageRow, 0, len(m.pending))}
	for _, r := range m.pending {
		c.Rows = append(c.Rows, *r)
	}
	m.mu.Unlock()
	cmd, err := state.Encode(c)
	if err != nil {
		return err
	}
	err = m.reg.Propose(ctx, cmd)
	if err == nil {
		m.mu.Lock()
		m.subtractLocked(c)
		m.mu.Unlock()
		return nil
	}
	if _, ok := state.MarkOfConflict(err); !ok {
		return err
	}
	// The registry's mark is elsewhere: catch up with it, then count again
	// from the mark it holds.
	if err := m.reg.Barrier(ctx); err != nil {
		return fmt.Errorf("usage: catch up with the registry after a refused flush: %w", err)
	}
	mark, err := m.reg.FSM.UsageMark(m.cfg.Node)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.logger.Info("usage: the registry's high-water mark differs from this node's; counting again from it", "thought", c.From, "mark", mark.Seq)
	return m.rederiveLocked(ctx, mark.Seq)
}

// subtractLocked removes a flushed batch from the pending counts, which
// may have grown meanwhile, and moves base to its end.
func (m *Meter) subtractLocked(c state.FlushUsage) {
	for _, r := range c.Rows {
		k := rowKey{r.Month, r.Tenant, r.Tool, r.CallerBU, r.Currency}
		if p := m.pending[k]; p != nil {
			p.Calls -= r.Calls
			p.CostMicros -= r.CostMicros
			if p.Calls == 0 && p.CostMicros == 0 {
				delete(m.pending, k)
			}
		}
		tk := tenantKey{r.Month, r.Tenant}
		if tu := m.tenants[tk]; tu != nil {
			tu.Calls -= r.Calls
			tu.Cost[r.Currency] -= r.CostMicros
			if tu.Calls == 0 {
				delete(m.tenants, tk)
			}
		}
	}
	m.base = c.To
}

// Used is tenant's usage of month ("YYYY-MM") as this node knows it: the
// replicated total plus this node's counts not yet flushed. Other nodes'
// unflushed counts are missing, about one FlushInterval of their traffic;
// right after a flush the batch may briefly count twice (the safe side).
func (m *Meter) Used(month, tenant string) (calls int64, cost map[string]int64, err error) {
	tu, err := m.reg.FSM.TenantUsage(month, tenant)
	if err != nil {
		return 0, nil, err
	}
	cost = map[string]int64{}
	for c, v := range tu.Cost {
		cost[c] = v
	}
	calls = tu.Calls
	m.mu.Lock()
	if p := m.tenants[tenantKey{month, tenant}]; p != nil {
		calls += p.Calls
		for c, v := range p.Cost {
			cost[c] += v
		}
	}
	m.mu.Unlock()
	return calls, cost, nil
}

// Pending returns the audit records the unflushed counts cover: (from, to].
func (m *Meter) Pending() (from, to uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.base, m.last
}
