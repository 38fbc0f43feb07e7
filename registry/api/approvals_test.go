package api

import (
	"strings"
	"testing"
	"time"

	"github.com/mcpmesh/mcpmesh/registry/state"
)

// TestSelfApprovalRefusedByAPI: an administrator whose identity is the
// held call's caller cannot approve or deny it; the decision of another is
// taken, and listing filters by state.
func TestSelfApprovalRefusedByAPI(t *testing.T) {
	c, cl := newTestAPICluster(t)
	ctx := t.Context()
	waitLeader := func() {
		deadline := time.Now().Add(10 * time.Second)
		for !cl.IsLeader() {
			if time.Now().After(deadline) {
				t.Fatal("no leader within 10s")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitLeader()
	now := time.Now().UTC()
	request := func(id, caller string) {
		cmd, err := state.Encode(state.RequestApproval{ID: id, ApprovalBinding: state.ApprovalBinding{
			Caller: caller, Server: "corp.finance/ledger", Tool: "transfer_funds", Version: "1.0.0", DefinitionHash: "h",
			ArgumentsDigest: "d", PolicyVersion: "p"}, At: now, ExpiresAt: now.Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cl.Apply(ctx, cmd); err != nil {
			t.Fatal(err)
		}
	}
	// The admin of newTestAPI holds this identity; so does the caller.
	request("apr-self0000", "spiffe://hr.example.corp/admin/alice")
	request("apr-other000", "spiffe://hr.example.corp/agent/bot")
	for _, approve := range []bool{true, false} {
		_, err := c.DecideApproval(ctx, "apr-self0000", approve, "mine")
		if err == nil || !strings.Contains(err.Error(), "made the call and cannot decide it") {
			t.Errorf("self-decision (approve %v): err = %v", approve, err)
		}
	}
	res, err := c.DecideApproval(ctx, "apr-other000", true, "")
	if err != nil || res.State != state.ApprovalApproved || res.DecidedBy != "spiffe://hr.example.corp/admin/alice" {
		t.Fatalf("decision of another's call: %+v, %v", res, err)
	}
	pending, err := c.Approvals(ctx, state.ApprovalPending, false)
	if err != nil || len(pending) != 1 || pending[0].ID != "apr-self0000" {
		t.Errorf("pending approvals: %+v, %v", pending, err)
	}
	if _, err := c.DecideApproval(ctx, "apr-other000", false, ""); err == nil || !strings.Contains(err.Error(), "reason is required") {
		t.Errorf("deny without reason: %v", err)
	}
}
