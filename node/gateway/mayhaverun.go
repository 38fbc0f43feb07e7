package gateway

import (
	"context"
	"errors"
	"fmt"

	"github.com/mcpmesh/mcpmesh/node/upstream"
)

// What an agent hears of a call that failed after it may have run.
//
// "Retry later" is advice only where following it cannot run a call
// twice: the call certainly did not reach its upstream (the bulkhead was
// full, the circuit open, its session could not be set up, no node of the
// exporting BU could be reached),
// or its tool is annotated readOnlyHint or idempotentHint. A call whose
// time ran out after it was sent may have run: an upstream past its call
// timeout may still carry it out, and another BU's node may still be
// running a forwarded call when this node's federation.call_timeout ends.
// For those, the message says so and names the request id under which
// the call can be looked up, where it can be: another BU's audit records
// a forwarded call under the id this node gave it; a local upstream's
// token carries it (io.mcpmesh/request_id).

// safeToRepeat reports whether e's tool may be called again after a call
// of it that may have run: its definition is annotated readOnlyHint or
// idempotentHint.
func safeToRepeat(e *entry) bool {
	if e.target.SafeToRepeat {
		return true
	}
	a := e.def
	return a != nil && a.Annotations != nil && (a.Annotations.ReadOnlyHint || a.Annotations.IdempotentHint)
}

// certainlyNotRun reports whether a failed call never reached its
// upstream.
func certainlyNotRun(err error) bool {
	return errors.Is(err, upstream.ErrBusy) || errors.Is(err, upstream.ErrUnavailable) || errors.Is(err, upstream.ErrNotSent) || errors.Is(err, upstream.ErrNotDelivered)
}

// RemoteAuditHint says where a call forwarded to namespace ns under
// request id rid, which may have run there, is recorded: in ns's audit,
// under the same id, by the node that ran it once the call ended.
func RemoteAuditHint(ns, rid string) string {
	rid = orNone(rid)
	return fmt.Sprintf("%s's audit for request id %s (`mcpmesh audit query -all -request-id %s` against a node of %s; a node that died while running the call has no record of it, and the tool's own records must tell)", ns, rid, rid, ns)
}

func orNone(rid string) string {
	if rid == "" {
		return "(none)"
	}
	return rid
}

// mayHaveRunError is upstreamError's answer to a call that failed in a
// way that says nothing of whether its upstream ran it, or nil when the
// failure is better put otherwise (the call did not run, its tool is safe
// to repeat, or it is not a timeout of a local upstream). forwarded says
// the call came from another BU, whose agent must look this BU's audit up
// from there.
func (g *Gateway) mayHaveRunError(e *entry, rid string, forwarded bool, err error) error {
	if safeToRepeat(e) || certainlyNotRun(err) {
		return nil
	}
	const why = "the tool is not annotated readOnlyHint or idempotentHint, so repeating it could run it twice"
	rid = orNone(rid)
	if ns := e.target.Namespace; ns != "" {
		what := fmt.Sprintf("the call of %s@%s to namespace %s failed (%v)", e.server, e.version, ns, err)
		if errors.Is(err, context.DeadlineExceeded) {
			what = fmt.Sprintf("namespace %s did not answer the call of %s@%s in time (%v)", ns, e.server, e.version, err)
		}
		return fmt.Errorf("%s; it may have run there all the same, and %s: before repeating it, check %s", what, why, RemoteAuditHint(ns, rid))
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	audit := fmt.Sprintf("this BU's audit holds the call under that id (`mcpmesh audit query -request-id %s`)", rid)
	if forwarded {
		audit = "the call is recorded under that id in " + RemoteAuditHint(g.cfg.Namespace, rid)
	}
	return fmt.Errorf("upstream %s@%s did not answer in time; it may have run the call all the same, and %s: before repeating it, look for request id %s (its token's io.mcpmesh/request_id) in the upstream's own records; %s",
		e.server, e.version, why, rid, audit)
}
