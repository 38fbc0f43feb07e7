package policy

import (
	"fmt"
	"strings"

	"github.com/cedar-policy/cedar-go"
)

// Decision is the answer to a Request.
type Decision struct {
	// Allowed is true when some permit matched and no forbid did.
	Allowed bool `json:"allowed"`
	// Policies are the ids of the policies that decided: every matching
	// forbid of a denial, every matching permit of an allow. Empty for a
	// default deny (nothing permitted).
	Policies []string `json:"policies"`
	// Errors are policies that failed to evaluate on this request (such a
	// policy counts as not matching), as "<id>: <message>".
	Errors []string `json:"errors,omitempty"`
	// Digest names the policy set that decided.
	Digest string `json:"digest"`
	// Approval is "required" or "confirm" when a policy that allowed the
	// request asks for a human's approval or the user's confirmation
	// (@approval, approval.go; "required" wins); "" otherwise.
	Approval string `json:"approval,omitempty"`
	// ApprovalPolicies are the allowing policies that ask for it.
	ApprovalPolicies []string `json:"approvalPolicies,omitempty"`
}

// Reason says in one sentence why the decision went as it did, naming the
// deciding policies only when withPolicies is set.
func (d Decision) Reason(withPolicies bool) string {
	switch {
	case d.Allowed && withPolicies:
		return "permitted by policy " + strings.Join(d.Policies, ", ")
	case d.Allowed:
		return "permitted by policy"
	case len(d.Policies) == 0:
		return "denied by policy: no policy permits it (default deny)"
	case withPolicies:
		return "denied by policy: forbidden by " + strings.Join(d.Policies, ", ")
	}
	return "denied by policy"
}

// Authorize decides r against the set: default deny, forbid wins.
func (s *Set) Authorize(r *Request) Decision { return s.authorize(r, agentEntity(r.Principal)) }

// authorize decides r with agent as its principal's entity.
func (s *Set) authorize(r *Request, agent cedar.Entity) Decision {
	d := Decision{Digest: s.digest}
	req, es, err := r.cedarRequest(agent)
	if err != nil {
		d.Errors = []string{err.Error()}
		return d
	}
	if s.arguments && r.Action == ActionCall {
		req, es = withArguments(req, es, r.Arguments)
	}
	ok, diag := s.policies.IsAuthorized(es, req)
	d.Allowed = ok == cedar.Allow
	for _, reason := range diag.Reasons {
		d.Policies = append(d.Policies, string(reason.PolicyID))
	}
	for _, e := range diag.Errors {
		d.Errors = append(d.Errors, fmt.Sprintf("%s: %s", e.PolicyID, e.Message))
	}
	s.approvalOfDecision(&d)
	return d
}

// Trace is one policy's part in an explained decision.
type Trace struct {
	ID       string `json:"id"`
	Effect   string `json:"effect"` // "permit" or "forbid"
	Position string `json:"position"`
	// Matched is true when the policy's scope and conditions hold.
	Matched bool `json:"matched"`
	// Decided is true for the policies that decided (Decision.Policies).
	Decided bool   `json:"decided"`
	Error   string `json:"error,omitempty"`
}

// Explain decides r like Authorize and says, for every policy of the set
// in file order, whether it matched and whether it decided.
func (s *Set) Explain(r *Request) (Decision, []Trace) {
	d := s.Authorize(r)
	req, es, err := r.cedarRequest(agentEntity(r.Principal))
	if err != nil {
		return d, nil
	}
	if s.arguments && r.Action == ActionCall {
		req, es = withArguments(req, es, r.Arguments)
	}
	traces := make([]Trace, 0, len(s.ids))
	for _, id := range s.ids {
		p := s.policies.Get(cedar.PolicyID(id))
		t := Trace{ID: id, Effect: "permit", Position: position(p)}
		if p.Effect() == cedar.Forbid {
			t.Effect = "forbid"
		}
		_, diag := cedar.Authorize(cedar.PolicyMap{cedar.PolicyID(id): p}, es, req)
		t.Matched = len(diag.Reasons) > 0
		if len(diag.Errors) > 0 {
			t.Error = diag.Errors[0].Message
		}
		for _, dp := range d.Policies {
			t.Decided = t.Decided || dp == id
		}
		traces = append(traces, t)
	}
	return d, traces
}
