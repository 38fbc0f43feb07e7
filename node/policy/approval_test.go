package policy

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/cedar-policy/cedar-go"
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

func TestUsesArguments(t *testing.T) {
	for _, tc := range []struct {
		text string
		want bool
	}{
		{`permit (principal, action, resource) when { context.arguments.hasTag("amount") };`, true},
		{`permit (principal, action, resource) when { context.arguments.getTag("amount") > 5 };`, true},
		{`permit (principal, action, resource) when { context["arguments"].hasTag("a") };`, true},
		{`permit (principal, action, resource) when { context has arguments };`, true},
		{`permit (principal, action, resource) when { context has stringArguments };`, true},
		{`permit (principal, action, resource) when { context.stringArguments.getTag("to") like "x*" };`, true},
		{`forbid (principal, action, resource) when { context.arguments.hasTag("amount") };`, true},
		{`permit (principal, action, resource) unless { context.stringArguments.hasTag("to") };`, true},
		{`permit (principal, action, resource) when { true } unless { !(context.riskLevel > 1 || context.arguments.hasTag("x")) };`, true},
		{`permit (principal, action, resource) when { if context.riskLevel > 1 then context.arguments.hasTag("x") else false };`, true},
		{`permit (principal, action, resource) when { [context.arguments].contains(context.arguments) };`, true},
		// context as a whole may reach its arguments.
		{`permit (principal, action, resource) when { context == {"arguments": 1} };`, true},
		{`permit (principal, action, resource) when { (if true then context else context).arguments.hasTag("x") };`, true},

		{`permit (principal, action, resource);`, false},
		{`permit (principal, action, resource) when { context.riskLevel < 3 };`, false},
		// The words alone, in a comment, a string or an annotation.
		{"// needs no context.arguments\npermit (principal, action, resource) when { context.riskTier == \"low\" };", false},
		{`@note("context.arguments") permit (principal, action, resource) when { context.dataClassification != "arguments" };`, false},
		// An attribute named arguments that is not context's.
		{`permit (principal, action, resource) when { resource.arguments == 1 };`, false},
		{`permit (principal, action, resource) when { principal has arguments && principal["stringArguments"] == "x" };`, false},
		{`permit (principal, action, resource) when { context.annotations has arguments };`, false},
		{`permit (principal, action, resource) when { {"arguments": 1}.arguments == 1 };`, false},
	} {
		list, err := cedar.NewPolicyListFromBytes("p.cedar", []byte(tc.text))
		if err != nil || len(list) != 1 {
			t.Fatalf("%s: %d policies, %v", tc.text, len(list), err)
		}
		if got := usesArguments(list[0]); got != tc.want {
			t.Errorf("%s: usesArguments = %v, want %v", tc.text, got, tc.want)
		}
	}
}

// TestArgumentsOnlyWhenRead: a set builds arguments only when one of its
// policies reads them, and then they decide, in a forbid's unless too.
func TestArgumentsOnlyWhenRead(t *testing.T) {
	quiet, err := Compile([]File{{Name: "p.cedar", Text: "// context.arguments are not read here\n" +
		`permit (principal, action == Action::"call", resource) when { context.dataClassification != "arguments" };`}})
	if err != nil {
		t.Fatal(err)
	}
	if quiet.arguments {
		t.Error("a set that mentions arguments only in a comment and a string builds them")
	}
	reads, err := Compile([]File{
		{Name: "a.cedar", Text: `permit (principal, action == Action::"call", resource);`},
		{Name: "b.cedar", Text: `forbid (principal, action == Action::"call", resource) unless { context has stringArguments && context.stringArguments.hasTag("ticket") };`},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !reads.arguments {
		t.Fatal("a set whose forbid reads context.stringArguments in unless does not build arguments")
	}
	for args, want := range map[string]bool{`{"ticket": "T-1"}`: true, `{"ticket": 1}`: false, `{}`: false} {
		r := call(payroll, "finance", ledger, "transfer_funds", nil)
		r.Arguments = json.RawMessage(args)
		if d := reads.Authorize(r); d.Allowed != want {
			t.Errorf("%s: allowed %v, want %v (%+v)", args, d.Allowed, want, d)
		}
	}
}
