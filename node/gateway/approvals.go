package gateway

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpmesh/mcpmesh/node/audit"
	"github.com/mcpmesh/mcpmesh/registry/card"
	"github.com/mcpmesh/mcpmesh/registry/state"
)

// A tools/call that a policy marks with @approval("required")
// (node/policy approval.go) runs only once an administrator approved that
// exact call. After every other check (kill switch, version, policy,
// argument validation) and just before the upstream, the gateway:
//
//  1. records a pending approval through Raft (registry/state
//     approvals.go), bound to the caller and tenant, the tool version and
//     its definition hash, the SHA-256 of the arguments' canonical JSON
//     and the policy set's digest, valid for ApprovalConfig.TTL;
//  2. holds the call for up to ApprovalConfig.Hold, waking on every
//     registry change this replica applies (no polling), so a decision
//     made on any replica is seen as soon as it is replicated here;
//  3. approved: consumes the approval through Raft (a compare-and-set:
//     one call only, with the same binding, before it expires), then calls
//     the upstream and returns its answer;
//  4. still pending: answers CodeApprovalPending with the approval id; the
//     agent retries the same call with _meta["io.mcpmesh/approval"] = id,
//     which is held again and runs once approved;
//  5. denied, expired, already used, or bound to another call: answers
//     CodeApprovalRefused saying which.
//
// The upstream sees an approved call at most once: the claim is committed
// before the call. If the upstream then fails, the approval is used up
// all the same; the agent needs a new one.

// CodeApprovalPending is the JSON-RPC error of a call held for approval
// that nobody decided within the hold; its data is an ApprovalData.
const CodeApprovalPending = -32016

// CodeApprovalRefused is the JSON-RPC error of a call whose approval was
// denied, expired, was already used, or is bound to another call; its
// data is an ApprovalData.
const CodeApprovalRefused = -32017

// MetaApproval is the request _meta key under which an agent retries a
// held call with its approval id.
const MetaApproval = "io.mcpmesh/approval"

// ApprovalConfig configures how calls are held for approval.
type ApprovalConfig struct {
	// Hold is how long a call is held waiting for a decision; 0 answers
	// at once with the approval id.
	Hold time.Duration
	// TTL is how long an approval request is valid. Default 15m.
	TTL time.Duration
	// MaxHeld bounds how many calls the node holds at once. A call beyond
	// it is not held: its approval is still requested, and it is answered
	// at once with CodeApprovalPending and the id. Default 256.
	MaxHeld int
}

// defaultMaxHeld is ApprovalConfig.MaxHeld's default.
const defaultMaxHeld = 256

// approvalRetention is how long after its expiry an approval stays in the
// registry (for `mcpmesh approvals list` and late retries) before the
// leader prunes it.
const approvalRetention = 24 * time.Hour

// WithApprovals lets the gateway hold calls for approval, recording and
// consuming approvals through propose (cluster.Apply). Without it a call
// that needs approval is refused.
func WithApprovals(cfg ApprovalConfig, propose Proposer) Option {
	return optionFunc(func(g *Gateway) {
		if cfg.TTL <= 0 {
			cfg.TTL = 15 * time.Minute
		}
		if cfg.MaxHeld <= 0 {
			cfg.MaxHeld = defaultMaxHeld
		}
		g.approvals.cfg, g.approvals.propose = cfg, propose
	})
}

// approvals is the gateway's approval state: its settings and what the
// metrics last saw of the replicated approvals.
type approvals struct {
	cfg     ApprovalConfig
	propose Proposer

	// held counts the calls held now, at most cfg.MaxHeld.
	held atomic.Int64

	mu        sync.Mutex
	known     map[string]state.Approval // by id, as last loaded
	loaded    bool
	expired   map[string]bool // ids counted as expired
	lastPrune time.Time
	// wake tells runApprovals (while it runs) that the approvals were
	// reloaded, so the next expiry may be sooner; refreshes counts
	// refreshLocked's runs (for tests of when it runs).
	wake      chan struct{}
	refreshes int
}

// ApprovalData is the data of CodeApprovalPending and CodeApprovalRefused.
type ApprovalData struct {
	// ID is the approval's id: retry with it in _meta[MetaApproval].
	ID    string              `json:"id"`
	State state.ApprovalState `json:"state"`
	// Mismatch names what differs when the approval is bound to another
	// call (caller, tool, tool version, arguments, policy version).
	Mismatch  string    `json:"mismatch,omitempty"`
	Policies  []string  `json:"policies,omitempty"`
	ExpiresAt time.Time `json:"expiresAt,omitzero"`
	DecidedBy string    `json:"decidedBy,omitempty"`
	Reason    string    `json:"reason,omitempty"`
	// RetryMeta is the _meta key to retry with.
	RetryMeta string `json:"retryMeta,omitempty"`
	// NotHeld says why a pending call was answered at once rather than
	// held: the node already held as many calls as it may.
	NotHeld string `json:"notHeld,omitempty"`
	// Fallback says why an administrator must approve a call that its
	// policy would have the user confirm (@approval("confirm")): the
	// agent's client cannot elicit.
	Fallback string `json:"fallback,omitempty"`
}

// approvalNotes are what an answer says besides the approval's state.
type approvalNotes struct {
	notHeld, fallback string
}

// hold takes one of the node's slots for holding a call and returns how
// long to hold it and the function that gives the slot back. With every
// slot taken it returns a zero hold: the call is answered at once.
func (a *approvals) hold() (time.Duration, func()) {
	if a.cfg.Hold <= 0 {
		return 0, func() {}
	}
	if a.held.Add(1) > int64(a.cfg.MaxHeld) {
		a.held.Add(-1)
		return 0, func() {}
	}
	return a.cfg.Hold, func() { a.held.Add(-1) }
}

// newApprovalID returns a fresh random approval id.
func newApprovalID() string {
	var b [16]byte
	rand.Read(b[:])
	return "apr-" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// argumentsDigest is the SHA-256 of the arguments' canonical JSON.
func argumentsDigest(args json.RawMessage) (string, error) {
	if len(strings.TrimSpace(string(args))) == 0 || string(args) == "null" {
		args = json.RawMessage("{}")
	}
	return card.CanonicalHash(args)
}

// holdForApproval returns nil when the call may go to its upstream: it
// needs no approval, or its approval was consumed for it now. Otherwise
// it says why not, and rec says so too. fallback, when set, says why a
// call its policy would have the user confirm needs an administrator's
// approval instead (confirm.go); the answers carry it.
func (g *Gateway) holdForApproval(ctx context.Context, req *mcp.CallToolRequest, e *entry, c callInfo, rec *audit.Record, fallback string) error {
	if c.decision.Approval == "" {
		return nil
	}
	a := &g.approvals
	start := time.Now()
	fail := func(outcome audit.Outcome, metric string, err error) error {
		rec.Outcome = outcome
		g.metrics.observe(g.cfg.Namespace, c.exposed, metric, time.Since(c.start))
		return err
	}
	if a.propose == nil {
		return fail(audit.OutcomeRefused, "refused", &jsonrpc.Error{Code: CodeApprovalRefused,
			Message: fmt.Sprintf("tools/call %s needs an administrator's approval (policy %s), but this node cannot hold calls for approval; tell the BU's operators", c.exposed, strings.Join(c.decision.ApprovalPolicies, ", "))})
	}
	digest, err := argumentsDigest(req.Params.Arguments)
	if err != nil {
		return fail(audit.OutcomeInvalidArguments, "invalid_arguments", &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: fmt.Sprintf("arguments of %s: %v", e.tool, err)})
	}
	b := state.ApprovalBinding{Caller: c.caller, Tenant: c.tenant, Server: e.server, Tool: e.tool, Version: e.version,
		DefinitionHash: e.hash, ArgumentsDigest: digest, PolicyVersion: c.decision.Digest}
	id, isString := req.Params.Meta[MetaApproval].(string)
	switch {
	case req.Params.Meta[MetaApproval] != nil && (!isString || !state.ValidApprovalID(id)):
		return fail(audit.OutcomeRefused, "refused", &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams,
			Message: fmt.Sprintf("_meta[%q]: %v is not an approval id; give the id (apr-…) that the held call's error gave, or leave it out to ask for a new approval", MetaApproval, req.Params.Meta[MetaApproval])})
	case id == "":
		id = newApprovalID()
		now := g.now().UTC()
		cmd, err := state.Encode(state.RequestApproval{ID: id, ApprovalBinding: b, Policies: c.decision.ApprovalPolicies,
			Node: g.nodeID, At: now, ExpiresAt: now.Add(a.cfg.TTL)})
		if err == nil {
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err = a.propose(pctx, cmd)
			cancel()
		}
		if err != nil {
			return fail(audit.OutcomeRefused, "refused", &jsonrpc.Error{Code: jsonrpc.CodeInternalError,
				Message: fmt.Sprintf("tools/call %s needs an administrator's approval, but the request for it could not be recorded (%v); retry later", c.exposed, err)})
		}
		g.logger.Info("approval: call held for approval", "approval", id, "principal", c.caller, "tenant", c.tenant,
			"tool", e.server+"/"+e.tool, "version", e.version, "policies", c.decision.ApprovalPolicies)
	}
	rec.Reason = "approval " + id
	hold, release := a.hold()
	defer release()
	notes := approvalNotes{fallback: fallback}
	if hold == 0 && a.cfg.Hold > 0 {
		notes.notHeld = fmt.Sprintf("not held: this node already holds %d calls for approval (governance.approval_max_held)", a.cfg.MaxHeld)
		rec.Reason += " (" + notes.notHeld + ")"
		g.metrics.approvals.overflow.WithLabelValues(g.cfg.Namespace).Inc()
	} else if hold > 0 {
		g.metrics.approvals.held.WithLabelValues(g.cfg.Namespace).Inc()
		defer g.metrics.approvals.held.WithLabelValues(g.cfg.Namespace).Dec()
	}
	ap, found, err := g.awaitDecision(ctx, id, b, hold)
	if err != nil {
		return fail(audit.OutcomeRefused, "refused", err)
	}
	if !found {
		return fail(audit.OutcomeApprovalDenied, "approval_denied", &jsonrpc.Error{Code: CodeApprovalRefused,
			Message: fmt.Sprintf("approval %s does not exist (it may have been pruned after it expired); call again without _meta[%q] to ask for a new one", id, MetaApproval),
			Data:    mustJSON(ApprovalData{ID: id})})
	}
	if ap.State == state.ApprovalApproved && ap.StateAt(g.now()) == state.ApprovalApproved && ap.Mismatch(b) == "" {
		cmd, err := state.Encode(state.ConsumeApproval{ID: id, ApprovalBinding: b, Node: g.nodeID, At: g.now().UTC()})
		if err == nil {
			pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			err = a.propose(pctx, cmd)
			cancel()
		}
		if err == nil {
			rec.Reason = fmt.Sprintf("approval %s by %s", id, ap.DecidedBy)
			g.logger.Info("approval: approved call runs", "approval", id, "principal", c.caller, "tool", e.server+"/"+e.tool,
				"approved_by", ap.DecidedBy, "held", time.Since(start).Round(time.Millisecond))
			return nil
		}
		var se *state.Error
		if !errors.As(err, &se) {
			return fail(audit.OutcomeRefused, "refused", &jsonrpc.Error{Code: jsonrpc.CodeInternalError,
				Message: fmt.Sprintf("approval %s is approved, but claiming it for this call failed (%v); retry with the same _meta[%q]", id, err, MetaApproval)})
		}
		// Refused by the state machine (used meanwhile by a concurrent
		// retry, or just expired): say what the state says now.
		if now, rerr := g.fsm.Approval(id); rerr == nil {
			ap = now
		}
		if ap.State == state.ApprovalApproved && ap.StateAt(g.now()) == state.ApprovalApproved {
			return fail(audit.OutcomeApprovalDenied, "approval_denied", &jsonrpc.Error{Code: CodeApprovalRefused, Message: se.Message,
				Data: mustJSON(approvalData(ap, "", g.now()))})
		}
	}
	return g.approvalRefusal(c, ap, b, notes, fail)
}

// approvalRefusal is the answer to a call whose approval ap does not let
// it run.
func (g *Gateway) approvalRefusal(c callInfo, ap state.Approval, b state.ApprovalBinding, notes approvalNotes, fail func(audit.Outcome, string, error) error) error {
	withNotes := func(d ApprovalData) json.RawMessage {
		d.Fallback = notes.fallback
		return mustJSON(d)
	}
	if field := ap.Mismatch(b); field != "" {
		return fail(audit.OutcomeApprovalDenied, "approval_denied", &jsonrpc.Error{Code: CodeApprovalRefused,
			Message: fmt.Sprintf("approval %s is bound to another call (its %s differs); call again without _meta[%q] to ask for an approval of this one", ap.ID, field, MetaApproval),
			Data:    withNotes(approvalData(ap, field, g.now()))})
	}
	st := ap.StateAt(g.now())
	data := withNotes(approvalData(ap, "", g.now()))
	switch st {
	case state.ApprovalPending:
		msg := fmt.Sprintf("tools/call %s needs an administrator's approval (policy %s); approval %s is pending. Ask an administrator other than yourself to run `mcpmesh approvals approve %s`, then retry the same call with _meta[%q] = %q before %s",
			c.exposed, strings.Join(ap.Policies, ", "), ap.ID, ap.ID, MetaApproval, ap.ID, ap.ExpiresAt.UTC().Format(time.RFC3339))
		if notes.notHeld != "" {
			d := approvalData(ap, "", g.now())
			d.NotHeld = notes.notHeld
			data = withNotes(d)
			msg += " (" + notes.notHeld + ")"
		}
		if notes.fallback != "" {
			msg += ". " + notes.fallback
		}
		return fail(audit.OutcomeApprovalPending, "approval_pending", &jsonrpc.Error{Code: CodeApprovalPending, Message: msg, Data: data})
	case state.ApprovalDenied:
		return fail(audit.OutcomeApprovalDenied, "approval_denied", &jsonrpc.Error{Code: CodeApprovalRefused,
			Message: fmt.Sprintf("tools/call %s was denied: approval %s denied by %s: %q", c.exposed, ap.ID, ap.DecidedBy, ap.Reason), Data: data})
	case state.ApprovalExpired:
		return fail(audit.OutcomeApprovalExpired, "approval_expired", &jsonrpc.Error{Code: CodeApprovalRefused,
			Message: fmt.Sprintf("approval %s of tools/call %s expired at %s; call again without _meta[%q] to ask for a new one", ap.ID, c.exposed, ap.ExpiresAt.UTC().Format(time.RFC3339), MetaApproval), Data: data})
	case state.ApprovalConsumed:
		return fail(audit.OutcomeApprovalDenied, "approval_denied", &jsonrpc.Error{Code: CodeApprovalRefused,
			Message: fmt.Sprintf("approval %s was already used (on %s at %s): an approval runs one call once; call again without _meta[%q] to ask for a new one", ap.ID, ap.ConsumedOn, ap.ConsumedAt.UTC().Format(time.RFC3339), MetaApproval), Data: data})
	}
	return fail(audit.OutcomeRefused, "refused", &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: fmt.Sprintf("approval %s is in an unknown state %q", ap.ID, st)})
}

func approvalData(ap state.Approval, mismatch string, now time.Time) ApprovalData {
	return ApprovalData{ID: ap.ID, State: ap.StateAt(now), Mismatch: mismatch, Policies: ap.Policies, ExpiresAt: ap.ExpiresAt.UTC(),
		DecidedBy: ap.DecidedBy, Reason: ap.Reason, RetryMeta: MetaApproval}
}

// awaitDecision waits, up to hold and at most until the approval
// expires, for approval id to be decided, waking on each registry entry
// this replica applies. It returns the approval as last seen. A binding
// mismatch or an approval that is no longer pending returns at once; so
// does an id this replica does not know once the hold is over.
func (g *Gateway) awaitDecision(ctx context.Context, id string, b state.ApprovalBinding, hold time.Duration) (state.Approval, bool, error) {
	wctx, cancel := context.WithTimeout(ctx, hold)
	defer cancel()
	for {
		next := g.fsm.AppliedIndex() + 1
		ap, err := g.fsm.Approval(id)
		found := err == nil
		if err != nil && !errors.Is(err, state.ErrNotFound) {
			return ap, false, &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: fmt.Sprintf("read approval %s: %v", id, err)}
		}
		if found && (ap.Mismatch(b) != "" || ap.StateAt(g.now()) != state.ApprovalPending) {
			return ap, true, nil
		}
		wait := wctx
		var stop context.CancelFunc = func() {}
		if found {
			// An expiry changes nothing in the registry: wake for it too.
			wait, stop = context.WithDeadline(wctx, ap.ExpiresAt)
		}
		err = g.fsm.WaitApplied(wait, next)
		stop()
		if ctx.Err() != nil {
			return ap, found, &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: fmt.Sprintf("the call was abandoned while held for approval %s", id)}
		}
		if wctx.Err() != nil {
			return ap, found, nil
		}
		_ = err // woken by a new entry or the approval's expiry: look again
	}
}

// approvalMetrics are the approvals' metrics. Every replica reports the
// namespace's replicated approvals as it applied them, so the figures of
// the replicas agree: aggregate them with max, not sum.
type approvalMetrics struct {
	pending *prometheus.GaugeVec
	wait    *prometheus.HistogramVec
	total   *prometheus.CounterVec
	// held and overflow are this node's own: sum them across replicas.
	held     *prometheus.GaugeVec
	overflow *prometheus.CounterVec
}

func newApprovalMetrics(reg prometheus.Registerer) *approvalMetrics {
	m := &approvalMetrics{
		pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mcpmesh_approvals_pending",
			Help: "Approvals waiting for a decision (not expired) in the namespace's replicated state, as this replica sees it: the approval queue depth. Every replica reports it; aggregate with max.",
		}, []string{"namespace"}),
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mcpmesh_approval_wait_seconds",
			Help:    "Time from an approval's request to its decision (approved or denied), by the times the commands carry, observed by every replica as it applies the decision.",
			Buckets: []float64{1, 5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600},
		}, []string{"namespace"}),
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcpmesh_approvals_total",
			Help: "Approvals by namespace and outcome (approved, denied, consumed: the approved call ran; expired: undecided or unused at its expiry), counted by every replica from the replicated state since it started; aggregate with max.",
		}, []string{"namespace", "outcome"}),
		held: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mcpmesh_approval_held_calls",
			Help: "Calls this node holds now, waiting for an approval decision (at most governance.approval_max_held).",
		}, []string{"namespace"}),
		overflow: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcpmesh_approval_hold_overflow_total",
			Help: "Calls needing approval that this node answered at once with their approval id, without holding them, because it already held governance.approval_max_held calls.",
		}, []string{"namespace"}),
	}
	if reg != nil {
		reg.MustRegister(m.pending, m.wait, m.total, m.held, m.overflow)
	}
	return m
}

// loadApprovals counts the decisions and uses this replica applied since
// the last load and refreshes the pending gauge. Sync calls it.
func (g *Gateway) loadApprovals() error {
	all, err := g.fsm.Approvals()
	if err != nil {
		return err
	}
	a, m, ns := &g.approvals, g.metrics.approvals, g.cfg.Namespace
	a.mu.Lock()
	defer a.mu.Unlock()
	known := make(map[string]state.Approval, len(all))
	for _, ap := range all {
		known[ap.ID] = ap
		prev, seen := a.known[ap.ID]
		if !a.loaded || (seen && prev.State == ap.State) {
			continue
		}
		if !seen {
			prev.State = state.ApprovalPending
		}
		if prev.State == state.ApprovalPending && (ap.State == state.ApprovalApproved || ap.State == state.ApprovalDenied ||
			ap.State == state.ApprovalConsumed) {
			outcome := string(ap.State)
			if ap.State == state.ApprovalConsumed {
				outcome = string(state.ApprovalApproved)
			}
			m.total.WithLabelValues(ns, outcome).Inc()
			m.wait.WithLabelValues(ns).Observe(ap.DecidedAt.Sub(ap.CreatedAt).Seconds())
		}
		if ap.State == state.ApprovalConsumed {
			m.total.WithLabelValues(ns, "consumed").Inc()
		}
	}
	a.known, a.loaded = known, true
	a.refreshLocked(g.now(), m, ns)
	select {
	case a.wake <- struct{}{}:
	default:
	}
	return nil
}

// refreshLocked sets the pending gauge and counts the approvals that
// expired unused.
func (a *approvals) refreshLocked(now time.Time, m *approvalMetrics, ns string) {
	if a.expired == nil {
		a.expired = map[string]bool{}
	}
	a.refreshes++
	pending := 0
	for id, ap := range a.known {
		switch ap.StateAt(now) {
		case state.ApprovalPending:
			pending++
		case state.ApprovalExpired:
			if !a.expired[id] {
				a.expired[id] = true
				m.total.WithLabelValues(ns, "expired").Inc()
			}
		}
	}
	for id := range a.expired {
		if _, ok := a.known[id]; !ok {
			delete(a.expired, id)
		}
	}
	m.pending.WithLabelValues(ns).Set(float64(pending))
}

// approvalPruneEvery is how often the leader prunes approvals expired for
// longer than approvalRetention, and the longest runApprovals sleeps.
const approvalPruneEvery = time.Hour

// nextExpiryLocked is how long after now the first approval that can
// still expire (pending, or approved and unused) does, at most
// approvalPruneEvery.
func (a *approvals) nextExpiryLocked(now time.Time) time.Duration {
	next := approvalPruneEvery
	for _, ap := range a.known {
		if ap.StateAt(now) != state.ApprovalPending && ap.StateAt(now) != state.ApprovalApproved {
			continue
		}
		if d := ap.ExpiresAt.Sub(now); d < next {
			next = max(d, time.Millisecond)
		}
	}
	return next
}

// runApprovals refreshes the approval metrics when the next approval
// expires (an expiry changes nothing in the registry; a reload refreshes
// them itself) and, on the leader, prunes approvals expired for longer
// than approvalRetention once an hour, starting a second after it starts.
// It returns when ctx ends.
func (g *Gateway) runApprovals(ctx context.Context) {
	a := &g.approvals
	wake := make(chan struct{}, 1)
	a.mu.Lock()
	a.wake = wake
	a.mu.Unlock()
	t := time.NewTimer(time.Second)
	defer t.Stop()
	due := time.Now().Add(time.Second)
	for {
		select {
		case <-ctx.Done():
			return
		case <-wake:
			// Reloaded: an approval may now expire before the timer.
			a.mu.Lock()
			d := a.nextExpiryLocked(g.now())
			a.mu.Unlock()
			if at := time.Now().Add(d); at.Before(due) {
				due = at
				t.Reset(d)
			}
			continue
		case <-t.C:
		}
		now := g.now()
		a.mu.Lock()
		a.refreshLocked(now, g.metrics.approvals, g.cfg.Namespace)
		prune := a.propose != nil && g.isLeader != nil && g.isLeader() && now.Sub(a.lastPrune) >= approvalPruneEvery
		if prune {
			a.lastPrune = now
		}
		d := a.nextExpiryLocked(now)
		a.mu.Unlock()
		due = time.Now().Add(d)
		t.Reset(d)
		if !prune {
			continue
		}
		cmd, err := state.Encode(state.PruneApprovals{Before: now.Add(-approvalRetention).UTC()})
		if err == nil {
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err = a.propose(pctx, cmd)
			cancel()
		}
		if err != nil && ctx.Err() == nil {
			g.logger.Warn("approvals: pruning expired approvals failed; the leader retries in an hour", "error", err)
		}
	}
}
