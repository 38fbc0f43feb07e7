package api

import (
	"context"
	"net/http"
	"net/url"
	"slices"

	"github.com/mcpmesh/mcpmesh/registry/state"
)

// DecideRequest is the body of POST /v1/approvals/{id}/approve|deny.
type DecideRequest struct {
	// Reason is required to deny; optional to approve.
	Reason string `json:"reason,omitempty"`
}

// ApprovalsResponse answers GET /v1/approvals. Each approval's State is
// its state at the time of the answer (so "expired" shows).
type ApprovalsResponse struct {
	Approvals []state.Approval `json:"approvals"`
}

// DecideResponse answers a decision: the approval as stored after it.
type DecideResponse struct {
	state.Approval
	Unchanged bool `json:"unchanged,omitempty"`
}

func (h *Handler) listApprovals(w http.ResponseWriter, r *http.Request) {
	filter := state.ApprovalState(r.URL.Query().Get("state"))
	if filter != "" && !slices.Contains(state.ApprovalStates, filter) {
		h.fail(w, r, badRequest("state %q: want pending, approved, denied, consumed or expired", filter))
		return
	}
	if err := h.consistent(r); err != nil {
		h.fail(w, r, err)
		return
	}
	all, err := h.cl.FSM.Approvals()
	if err != nil {
		h.fail(w, r, err)
		return
	}
	now := h.now()
	out := []state.Approval{}
	for _, a := range all {
		a.State = a.StateAt(now)
		if filter == "" || a.State == filter {
			out = append(out, a)
		}
	}
	// Oldest first: the queue in the order it filled.
	slices.SortStableFunc(out, func(a, b state.Approval) int { return a.CreatedAt.Compare(b.CreatedAt) })
	writeJSON(w, http.StatusOK, ApprovalsResponse{Approvals: out})
}

// decideApproval approves or denies. The state machine refuses a
// decision by the caller itself (state.SamePerson), one on an approval
// that is no longer pending, and one after its expiry; each refusal is
// audited like the decisions.
func (h *Handler) decideApproval(w http.ResponseWriter, r *http.Request) {
	id, action := r.PathValue("id"), r.PathValue("action")
	if action != "approve" && action != "deny" {
		h.fail(w, r, badRequest("action %q: want approve or deny", action))
		return
	}
	if !state.ValidApprovalID(id) {
		h.fail(w, r, badRequest("approval id %q: want apr- and 8 to 64 characters of a-z and 0-9 (mcpmesh approvals list shows them)", id))
		return
	}
	var req DecideRequest
	if r.ContentLength != 0 {
		if err := decodeBody(r, &req); err != nil {
			h.fail(w, r, err)
			return
		}
	}
	approve := action == "approve"
	if err := state.ValidateApprovalReason(approve, req.Reason); err != nil {
		h.fail(w, r, err)
		return
	}
	res, err := h.apply(r, state.DecideApproval{ID: id, Approve: approve, By: by(r), Reason: req.Reason, At: h.now().UTC()})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	a, err := h.cl.FSM.Approval(id)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.logger.Info("admin decided an approval", "approval", id, "decision", a.State, "caller", a.Caller, "tool", a.Server+"/"+a.Tool, "by", a.DecidedBy, "reason", a.Reason, "index", res.Index)
	writeJSON(w, http.StatusOK, DecideResponse{Approval: a, Unchanged: res.Unchanged})
}

// Approvals lists the approvals, all or those in one state (at the time
// of the answer).
func (c *Client) Approvals(ctx context.Context, st state.ApprovalState, consistent bool) ([]state.Approval, error) {
	q := readQuery(consistent)
	if st != "" {
		q.Set("state", string(st))
	}
	var out ApprovalsResponse
	err := c.do(ctx, http.MethodGet, "/v1/approvals", q, nil, "", &out)
	return out.Approvals, err
}

// DecideApproval approves (approve true) or denies approval id.
func (c *Client) DecideApproval(ctx context.Context, id string, approve bool, reason string) (DecideResponse, error) {
	action := "deny"
	if approve {
		action = "approve"
	}
	var out DecideResponse
	err := c.do(ctx, http.MethodPost, "/v1/approvals/"+url.PathEscape(id)+"/"+action, nil, jsonBody(DecideRequest{Reason: reason}), "application/json", &out)
	return out, err
}
