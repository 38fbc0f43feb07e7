package policy

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const approvalPolicies = `
@id("call-all")
permit (principal, action == Action::"call", resource);

@id("big-transfers")
@approval("required")
permit (principal, action == Action::"call", resource)
when { resource in Tool::"corp.finance/ledger/transfer_funds" &&
       context.arguments.hasTag("amount") && context.arguments.getTag("amount") > 1000 };

@id("to-offshore")
@approval("required")
permit (principal, action == Action::"call", resource)
when { context.stringArguments.hasTag("to") && context.stringArguments.getTag("to") like "offshore-*" };
`

func TestApprovalAnnotation(t *testing.T) {
	s, err := Compile([]File{{Name: "p.cedar", Text: approvalPolicies}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		tool, args   string
		wantApproval []string
	}{
		{"transfer_funds", `{"amount": 1000, "to": "acct-1"}`, nil},
		{"transfer_funds", `{"amount": 1001, "to": "acct-1"}`, []string{"big-transfers"}},
		// A fraction is rounded up: 1000.01 is above 1000.
		{"transfer_funds", `{"amount": 1000.01, "to": "acct-1"}`, []string{"big-transfers"}},
		{"transfer_funds", `{"amount": 5000, "to": "offshore-9"}`, []string{"big-transfers", "to-offshore"}},
		{"transfer_funds", `{"amount": "5000"}`, nil},
		{"transfer_funds", `{}`, nil},
		{"transfer_funds", ``, nil},
		{"get_balance", `{"amount": 5000}`, nil},
		{"get_balance", `{"to": "offshore-1"}`, []string{"to-offshore"}},
	} {
		r := call(payroll, "finance", ledger, tc.tool, nil)
		r.Arguments = json.RawMessage(tc.args)
		d := s.Authorize(r)
		if !d.Allowed {
			t.Errorf("%s %s: denied: %+v", tc.tool, tc.args, d)
			continue
		}
		want := ""
		if tc.wantApproval != nil {
			want = ApprovalRequired
		}
		if d.Approval != want || !cmp.Equal(d.ApprovalPolicies, tc.wantApproval) {
			t.Errorf("%s %s: approval %q by %v, want %q by %v", tc.tool, tc.args, d.Approval, d.ApprovalPolicies, want, tc.wantApproval)
		}
	}
	// A forbid wins over an annotated permit: no approval is asked for.
	f, err := Compile([]File{{Name: "p.cedar", Text: approvalPolicies + `forbid (principal, action == Action::"call", resource) when { context.arguments.hasTag("amount") && context.arguments.getTag("amount") > 9999 };`}})
	if err != nil {
		t.Fatal(err)
	}
	r := call(payroll, "finance", ledger, "transfer_funds", nil)
	r.Arguments = json.RawMessage(`{"amount": 10000}`)
	if d := f.Authorize(r); d.Allowed || d.Approval != "" {
		t.Errorf("forbidden call: %+v", d)
	}
}

func TestApprovalAnnotationErrors(t *testing.T) {
	for text, want := range map[string]string{
		`@id("p1") @approval("ask") permit (principal, action, resource);`:            `policy "p1": @approval("ask"): want @approval("required")`,
		`@approval("") permit (principal, action, resource);`:                         `or @approval("confirm")`,
		`@approval("required") forbid (principal, action, resource);`:                 "only meaningful on a permit",
		`permit (principal, action, resource) when { context.arguments.amount > 1 };`: "does not match the mcpmesh schema",
	} {
		_, err := Compile([]File{{Name: "p.cedar", Text: text}})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want %q", text, err, want)
		}
	}
}

// TestApprovalConfirmTier: @approval("confirm") asks for the user's
// confirmation; where a "required" policy allowed the call too, the
// administrator's approval wins.
func TestApprovalConfirmTier(t *testing.T) {
	s, err := Compile([]File{{Name: "p.cedar", Text: approvalPolicies + `
@id("confirm-transfers")
@approval("confirm")
permit (principal, action == Action::"call", resource)
when { resource in Tool::"corp.finance/ledger/transfer_funds" };
`}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args     string
		want     string
		policies []string
	}{
		{`{"amount": 10}`, ApprovalConfirm, []string{"confirm-transfers"}},
		{`{"amount": 5000}`, ApprovalRequired, []string{"big-transfers", "confirm-transfers"}},
	} {
		r := call(payroll, "finance", ledger, "transfer_funds", nil)
		r.Arguments = json.RawMessage(tc.args)
		d := s.Authorize(r)
		if !d.Allowed || d.Approval != tc.want || !cmp.Equal(d.ApprovalPolicies, tc.policies) {
			t.Errorf("%s: %+v, want approval %q by %v", tc.args, d, tc.want, tc.policies)
		}
	}
}

// BenchmarkDecideWithArguments is a call decision by a set that reads
// arguments, against one that does not (same policies otherwise).
func BenchmarkDecideWithArguments(b *testing.B) {
	s, err := Compile([]File{{Name: "p.cedar", Text: approvalPolicies}})
	if err != nil {
		b.Fatal(err)
	}
	r := call(payroll, "finance", ledger, "transfer_funds", nil)
	r.Target = NewTarget(r)
	r.Arguments = json.RawMessage(`{"amount": 1500, "to": "acct-1", "memo": "rent"}`)
	for b.Loop() {
		s.Authorize(r)
	}
}
