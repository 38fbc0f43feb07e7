package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/cedar-policy/cedar-go"
	xast "github.com/cedar-policy/cedar-go/x/exp/ast"
)

// A permit policy may ask for a human's approval of the calls it allows,
// with the annotation @approval("required"):
//
//	@id("big-transfers")
//	@approval("required")
//	permit (principal, action == Action::"call", resource)
//	when { resource in Tool::"corp.finance/ledger/transfer_funds" &&
//	       context.arguments.hasTag("amount") &&
//	       context.arguments.getTag("amount") > 1000 };
//
// A call needs approval when a policy so annotated is among those that
// allowed it (Decision.Policies). The gateway then holds it until an
// administrator decides (node/gateway approvals.go).
//
// The lower tier, @approval("confirm"), asks the calling user instead: the
// gateway asks the agent's client to confirm the call through elicitation
// and runs it once on accept (node/gateway confirm.go). A client that
// cannot elicit gets the "required" flow. When several annotated policies
// allowed a call, "required" wins over "confirm".
//
// Policies see a call's top-level arguments as tags, since a Cedar schema
// cannot declare the arguments of every tool: context.arguments has a
// Long tag per number (a fraction is rounded up, so that "> limit" never
// lets a larger amount pass) and context.stringArguments a String tag per
// string. Other values (booleans, objects, arrays, null) are not given.
// Arguments are only built for a set with a policy that reads them
// (usesArguments).

// AnnotationApproval is the policy annotation that asks for approval.
const AnnotationApproval = "approval"

// The values of @approval.
const (
	// ApprovalRequired: an administrator must approve the call.
	ApprovalRequired = "required"
	// ApprovalConfirm: the calling user confirms the call through
	// elicitation; an administrator approves it when the agent's client
	// cannot elicit.
	ApprovalConfirm = "confirm"
)

// approvalOf checks a policy's @approval annotation and returns its value
// ("" when it has none).
func approvalOf(p *cedar.Policy, pos, id string) (string, error) {
	v, ok := p.Annotations()[AnnotationApproval]
	if !ok {
		return "", nil
	}
	if string(v) != ApprovalRequired && string(v) != ApprovalConfirm {
		return "", fmt.Errorf("%s: policy %q: @approval(%q): want @approval(%q) (an administrator approves each call it allows) or @approval(%q) (the calling user confirms each call through elicitation)", pos, id, v, ApprovalRequired, ApprovalConfirm)
	}
	if p.Effect() != cedar.Permit {
		return "", fmt.Errorf("%s: policy %q: @approval is only meaningful on a permit policy: it asks for approval of the calls the permit allows", pos, id)
	}
	return string(v), nil
}

// approvalOfDecision fills d's Approval from the annotated policies among
// those that allowed it.
func (s *Set) approvalOfDecision(d *Decision) {
	if !d.Allowed || len(s.approvals) == 0 {
		return
	}
	for _, id := range d.Policies {
		if tier, ok := s.approvals[id]; ok {
			if d.Approval != ApprovalRequired {
				d.Approval = tier
			}
			d.ApprovalPolicies = append(d.ApprovalPolicies, id)
		}
	}
	slices.Sort(d.ApprovalPolicies)
}

// usesArguments reports whether a policy reads a call's arguments: whether
// its conditions (when or unless, of a permit or a forbid) access the
// arguments or stringArguments attribute of context, with ".", "[…]" or
// "has". It walks the parsed policy, so a comment, a string literal or an
// attribute of an entity that happens to be named arguments does not count.
// A use of context other than reading one of its attributes (context
// compared as a whole, or chosen by an if) counts too, as it may reach
// the arguments; a false positive only costs building them.
func usesArguments(p *cedar.Policy) bool {
	uses := false
	for _, c := range (*xast.Policy)(p.AST()).Conditions {
		xast.Inspect(xast.NewNode(c.Body), func(n xast.IsNode) bool {
			if uses {
				return false
			}
			var arg xast.IsNode
			var attr string
			switch n := n.(type) {
			case xast.NodeTypeAccess:
				arg, attr = n.Arg, string(n.Value)
			case xast.NodeTypeHas:
				arg, attr = n.Arg, string(n.Value)
			case xast.NodeTypeVariable:
				// Reached only when context is not the operand of an
				// attribute access (those are not descended into below).
				uses = n.Name == "context"
				return false
			default:
				return true
			}
			if v, ok := arg.(xast.NodeTypeVariable); ok && v.Name == "context" {
				uses = attr == "arguments" || attr == "stringArguments"
				return false
			}
			return true
		})
		if uses {
			return true
		}
	}
	return false
}

// argumentsUID names the arguments entities of a request.
var (
	argumentsUID       = cedar.NewEntityUID("Arguments", "call")
	stringArgumentsUID = cedar.NewEntityUID("StringArguments", "call")
)

// withArguments adds the call's arguments to a request: two entities whose
// tags are the arguments, and the context entries naming them.
func withArguments(req cedar.Request, es entities, raw json.RawMessage) (cedar.Request, entities) {
	numbers, strs := cedar.RecordMap{}, cedar.RecordMap{}
	if len(raw) > 0 {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		var args map[string]any
		if dec.Decode(&args) == nil {
			for k, v := range args {
				switch v := v.(type) {
				case json.Number:
					if n, ok := ceilLong(v); ok {
						numbers[cedar.String(k)] = cedar.Long(n)
					}
				case string:
					strs[cedar.String(k)] = cedar.String(v)
				}
			}
		}
	}
	es = append(es,
		cedar.Entity{UID: argumentsUID, Tags: cedar.NewRecord(numbers)},
		cedar.Entity{UID: stringArgumentsUID, Tags: cedar.NewRecord(strs)})
	ctx := req.Context.Map()
	ctx["arguments"] = argumentsUID
	ctx["stringArguments"] = stringArgumentsUID
	req.Context = cedar.NewRecord(ctx)
	return req, es
}

// ceilLong is a JSON number rounded up to an int64, if it fits.
func ceilLong(n json.Number) (int64, bool) {
	if i, err := strconv.ParseInt(string(n), 10, 64); err == nil {
		return i, true
	}
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) {
		return 0, false
	}
	f = math.Ceil(f)
	if f < math.MinInt64 || f >= math.MaxInt64 {
		return 0, false
	}
	return int64(f), true
}
