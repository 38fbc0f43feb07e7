package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpmesh/mcpmesh/node/audit"
	"github.com/mcpmesh/mcpmesh/node/policy"
	"github.com/mcpmesh/mcpmesh/registry/state"
)

// A tools/call that a policy marks with @approval("confirm") runs once the
// calling user confirms it. The gateway asks through elicitation, as a
// multi round-trip request (mrtr.go): it answers the call with an
// input_required result holding one elicitation (InputConfirm) that names
// the tool, its version and a summary of the arguments, and a requestState
// bound to that exact call (caller and tenant, tool version and definition
// hash, arguments digest, policy set digest). go-sdk turns this into an
// elicitation/create request on the session of a legacy-era agent
// (2025-11-25, 2025-06-18) and calls the handler again with the answer; a
// 2026-07-28 agent fulfils it and calls again itself. Then:
//
//   - accept, for the call the state names: the call goes upstream, once
//     for this answer. Should the upstream then ask for input of its own,
//     its requestState carries the confirmation, so the user is not asked
//     again within that exchange;
//   - decline or cancel: CodeApprovalRefused, "declined by the user",
//     audited as approval_declined; nothing reaches the upstream;
//   - an answer for another call (other arguments, version, caller or
//     policy set): the user is asked again.
//
// An agent whose client declared no elicitation capability (or only URL
// elicitation) gets the "required" flow instead (approvals.go): an
// administrator approves the call, and the error data's "fallback" says
// why.
//
// The answer is the client's to give: the gateway cannot tell a user's
// click from a client that accepts by itself, so the state is bound to
// the call, not signed. This tier is for risks where the user's own
// confirmation is enough; keep "required" for the others.

// InputConfirm is the key of the gateway's confirmation request in an
// input_required result's inputRequests.
const InputConfirm = "io.mcpmesh/confirm"

// approvalDeclined is the state in the data of a call the user declined.
const approvalDeclined state.ApprovalState = "declined"

// approve is the approval stage of a call: nothing to do, the user's
// confirmation, or an administrator's approval. A result or an error is
// the call's answer; neither lets the call go upstream.
func (g *Gateway) approve(ctx context.Context, req *mcp.CallToolRequest, e *entry, c *callInfo, rec *audit.Record) (*mcp.CallToolResult, error) {
	switch c.decision.Approval {
	case "":
		return nil, nil
	case policy.ApprovalConfirm:
		return g.confirmByUser(ctx, req, e, c, rec)
	}
	return nil, g.holdForApproval(ctx, req, e, *c, rec, "")
}

// confirmByUser asks the user to confirm the call, or reads the answer
// of a retry.
func (g *Gateway) confirmByUser(ctx context.Context, req *mcp.CallToolRequest, e *entry, c *callInfo, rec *audit.Record) (*mcp.CallToolResult, error) {
	policies := strings.Join(c.decision.ApprovalPolicies, ", ")
	digest, err := argumentsDigest(req.Params.Arguments)
	if err != nil {
		rec.Outcome = audit.OutcomeInvalidArguments
		g.metrics.observe(g.cfg.Namespace, c.exposed, "invalid_arguments", time.Since(c.start))
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: fmt.Sprintf("arguments of %s: %v", e.tool, err)}
	}
	call := confirmDigest(state.ApprovalBinding{Caller: c.caller, Tenant: c.tenant, Server: e.server, Tool: e.tool, Version: e.version,
		DefinitionHash: e.hash, ArgumentsDigest: digest, PolicyVersion: c.decision.Digest})
	var w wrappedState
	if req.Params.RequestState != "" {
		w, _ = unwrapState(req.Params.RequestState) // versionOfCall refused a state that does not unwrap
	}
	if w.Confirmed == call {
		// A later round of the upstream's own input requests.
		c.confirmed = call
		rec.Reason = "confirmed by the user (policy " + policies + ")"
		return nil, nil
	}
	answer, answered := req.Params.InputResponses[InputConfirm]
	if answered {
		// The answer is the gateway's, never the upstream's.
		delete(req.Params.InputResponses, InputConfirm)
		if len(req.Params.InputResponses) == 0 {
			req.Params.InputResponses = nil
		}
	}
	if answered && w.Ask == call {
		action := "no answer"
		if r, ok := answer.(*mcp.ElicitResult); ok && r != nil {
			action = r.Action
		}
		if action == "accept" {
			c.confirmed = call
			rec.Reason = "confirmed by the user (policy " + policies + ")"
			g.logger.Info("approval: the user confirmed the call", "principal", c.caller, "tool", e.server+"/"+e.tool, "version", e.version, "policies", c.decision.ApprovalPolicies)
			return nil, nil
		}
		rec.Outcome, rec.Reason = audit.OutcomeApprovalDeclined, fmt.Sprintf("declined by the user (%s; policy %s)", action, policies)
		g.metrics.observe(g.cfg.Namespace, c.exposed, "approval_declined", time.Since(c.start))
		return nil, &jsonrpc.Error{Code: CodeApprovalRefused,
			Message: fmt.Sprintf("tools/call %s was declined by the user (the answer was %s when asked to confirm it, policy %s); nothing ran. Call again to be asked again", c.exposed, action, policies),
			Data:    mustJSON(ApprovalData{State: approvalDeclined, Policies: c.decision.ApprovalPolicies, Reason: "declined by the user"})}
	}
	if !canElicit(req.ClientCapabilities()) {
		return nil, g.holdForApproval(ctx, req, e, *c, rec, fmt.Sprintf(
			"policy %s asks the calling user to confirm this call, but the agent's client declared no (form) elicitation capability, so an administrator approves it instead", policies))
	}
	rec.Outcome, rec.Reason = audit.OutcomeInputRequired, "asked the user to confirm (policy "+policies+")"
	g.metrics.observe(g.cfg.Namespace, c.exposed, "input_required", time.Since(c.start))
	return &mcp.CallToolResult{
		InputRequests: mcp.InputRequestMap{InputConfirm: &mcp.ElicitParams{
			Message:         confirmMessage(c.exposed, e, req.Params.Arguments, policies),
			RequestedSchema: map[string]any{"type": "object", "properties": map[string]any{}},
		}},
		RequestState: wrappedState{Version: e.version, State: c.upstreamState, Ask: call}.wrap(),
	}, nil
}

// canElicit reports whether a client with caps can answer a form
// elicitation. A client that declared elicitation without saying which
// modes supports forms (the 2025-06-18 meaning).
func canElicit(caps *mcp.ClientCapabilities) bool {
	if caps == nil || caps.Elicitation == nil {
		return false
	}
	return caps.Elicitation.Form != nil || caps.Elicitation.URL == nil
}

// confirmDigest names one call for its confirmation.
func confirmDigest(b state.ApprovalBinding) string {
	raw, _ := json.Marshal(b)
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:16])
}

// Bounds of the argument summary in a confirmation message, in bytes.
const (
	confirmValueLen   = 80
	confirmSummaryLen = 600
)

// confirmMessage is what the user is asked: the tool, its version, the
// policy and the arguments, each value shortened and the whole bounded.
func confirmMessage(exposed string, e *entry, args json.RawMessage, policies string) string {
	var m map[string]json.RawMessage
	json.Unmarshal(args, &m)
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var sum strings.Builder
	for i, k := range keys {
		var v bytes.Buffer
		if json.Compact(&v, m[k]) != nil {
			v.Reset()
			v.Write(m[k])
		}
		item := fmt.Sprintf("%s=%s", k, shorten(v.String(), confirmValueLen))
		if sum.Len()+len(item) > confirmSummaryLen {
			fmt.Fprintf(&sum, ", and %d more", len(keys)-i)
			break
		}
		if i > 0 {
			sum.WriteString(", ")
		}
		sum.WriteString(item)
	}
	if len(keys) == 0 {
		sum.WriteString("no arguments")
	}
	return fmt.Sprintf("Confirm that %s (%s/%s, version %s) may run with %s. Policy %s asks you to confirm this call; it runs once if you accept.",
		exposed, e.server, e.tool, e.version, sum.String(), policies)
}

// shorten cuts s to at most n bytes on a rune boundary, marking the cut.
func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
