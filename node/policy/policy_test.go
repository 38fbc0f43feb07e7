package policy

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/x/exp/schema"
	"github.com/cedar-policy/cedar-go/x/exp/schema/validate"
	"github.com/google/go-cmp/cmp"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpmesh/mcpmesh/trust/agentauth"
)

func exampleSet(t testing.TB, ns string) *Set {
	t.Helper()
	path := filepath.Join("..", "..", "examples", "catalog", ns, "policies.cedar")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Compile([]File{{Name: "policies.cedar", Text: string(b)}})
	if err != nil {
		t.Fatalf("the example policies of %s do not compile: %v", ns, err)
	}
	return s
}

var (
	now       = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	directory = Server{Name: "corp.hr/directory", RiskTier: "medium", DataClassification: "restricted", Owner: "hr", Team: "people"}
	ledger    = Server{Name: "corp.finance/ledger", RiskTier: "high", DataClassification: "confidential", Owner: "fin", Team: "ledger"}
	readOnly  = &mcp.ToolAnnotations{ReadOnlyHint: true}
	payroll   = agentauth.Principal{ID: "apikey:payroll234abcd", TrustDomain: "hr.example.corp", Tenant: "payroll", Method: agentauth.MethodAPIKey}
	anonymous = agentauth.Anonymous
)

func with(p agentauth.Principal, f func(*agentauth.Principal)) agentauth.Principal {
	f(&p)
	return p
}

func call(p agentauth.Principal, ns string, s Server, tool string, a *mcp.ToolAnnotations) *Request {
	return &Request{Principal: p, Action: ActionCall, Namespace: ns, Server: s, Tool: Tool{Name: tool, Version: "1.0.0", Annotations: a}, Now: now}
}

// transfer is a call of the ledger's transfer_funds of cents.
func transfer(p agentauth.Principal, cents int, a *mcp.ToolAnnotations) *Request {
	r := call(p, "finance", ledger, "transfer_funds", a)
	r.Arguments = json.RawMessage(fmt.Sprintf(`{"from_account":"ACC-1001","to_account":"ACC-2002","amount_cents":%d,"currency":"EUR"}`, cents))
	return r
}

func TestExamplePolicies(t *testing.T) {
	destructive := &mcp.ToolAnnotations{}
	contractor := with(payroll, func(p *agentauth.Principal) { p.Groups = []string{"contractors"} })
	treasury := with(payroll, func(p *agentauth.Principal) { p.Tenant = "dev"; p.Groups = []string{"treasury"} })
	treasuryWrite := with(treasury, func(p *agentauth.Principal) { p.Scopes = []string{"ledger:write"} })
	noTenant := with(payroll, func(p *agentauth.Principal) { p.Tenant = "" })
	tests := []struct {
		name     string
		ns       string
		req      *Request
		allowed  bool
		policies []string
	}{
		{"a tenant agent lists hr", "hr", &Request{Principal: payroll, Action: ActionList, Namespace: "hr", Now: now}, true, []string{"list-authenticated"}},
		{"a tenant agent lists one server", "hr", &Request{Principal: payroll, Action: ActionList, Namespace: "hr", Server: directory, Now: now}, true, []string{"list-authenticated"}},
		{"anonymous may not list", "hr", &Request{Principal: anonymous, Action: ActionList, Namespace: "hr", Now: now}, false, nil},
		{"a tenant agent searches employees", "hr", call(payroll, "hr", directory, "search_employees", readOnly), true, []string{"tenants-call-read-only"}},
		{"a tenant agent reads salary bands", "hr", call(payroll, "hr", directory, "get_salary_band", readOnly), true, []string{"tenants-call-read-only"}},
		{"a contractor is forbidden salary bands", "hr", call(contractor, "hr", directory, "get_salary_band", readOnly), false, []string{"no-salary-bands-for-contractors"}},
		{"a contractor still searches employees", "hr", call(contractor, "hr", directory, "search_employees", readOnly), true, []string{"tenants-call-read-only"}},
		{"an agent without tenant is denied by default", "hr", call(noTenant, "hr", directory, "search_employees", readOnly), false, nil},
		{"anonymous is denied by default", "hr", call(anonymous, "hr", directory, "search_employees", readOnly), false, nil},
		{"a tool without annotations is not read-only", "hr", call(payroll, "hr", directory, "search_employees", nil), false, nil},
		{"a tool of another namespace is not permitted", "hr", call(payroll, "finance", ledger, "get_balance", readOnly), false, nil},
		{"a tenant agent has finance generate a report", "hr", call(payroll, "finance", ledger, "generate_report", readOnly), true, []string{"tenants-call-finance-reports"}},
		{"anonymous may not have finance generate a report", "hr", call(anonymous, "finance", ledger, "generate_report", readOnly), false, nil},
		{"a tenant agent reads a resource", "hr", &Request{Principal: payroll, Action: ActionReadResource, Namespace: "hr", Server: directory, URI: "directory://employees/E1", Now: now}, true, []string{"tenants-resources-and-prompts"}},
		{"a tenant agent gets a prompt", "hr", &Request{Principal: payroll, Action: ActionGetPrompt, Namespace: "hr", Server: directory, Prompt: "onboarding", Now: now}, true, []string{"tenants-resources-and-prompts"}},
		{"anonymous may not read resources", "hr", &Request{Principal: anonymous, Action: ActionReadResource, Namespace: "hr", Server: directory, URI: "directory://x", Now: now}, false, nil},
		{"a tenant agent reads a balance", "finance", call(payroll, "finance", ledger, "get_balance", readOnly), true, []string{"tenants-call-read-only"}},
		{"a tenant agent may not transfer", "finance", transfer(payroll, 500, destructive), false, []string{"destructive-needs-write-scope"}},
		{"treasury without the write scope is forbidden", "finance", transfer(treasury, 500, destructive), false, []string{"destructive-needs-write-scope"}},
		{"treasury with the write scope transfers", "finance", transfer(treasuryWrite, 1000000, destructive), true, []string{"treasury-transfers"}},
		{"treasury's large transfer needs approval", "finance", transfer(treasuryWrite, 1000001, destructive), true, []string{"treasury-large-transfers"}},
		{"the write scope alone permits nothing", "finance", transfer(with(payroll, func(p *agentauth.Principal) { p.Scopes = []string{"ledger:write"} }), 500, destructive), false, nil},
		{"a deleted-by-hint tool is destructive unless read-only", "finance", transfer(treasury, 500, &mcp.ToolAnnotations{DestructiveHint: new(false)}), true, []string{"treasury-transfers"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := exampleSet(t, tc.ns).Authorize(tc.req)
			if len(d.Errors) > 0 {
				t.Errorf("evaluation errors: %v", d.Errors)
			}
			if d.Allowed != tc.allowed || !cmp.Equal(d.Policies, tc.policies) {
				t.Errorf("decision = %v by %v, want %v by %v", d.Allowed, d.Policies, tc.allowed, tc.policies)
			}
			// Only the large-transfer policy asks for approval.
			if wantApproval := slices.Contains(tc.policies, "treasury-large-transfers"); (d.Approval == "required") != wantApproval {
				t.Errorf("approval = %q, want required: %v", d.Approval, wantApproval)
			}
		})
	}
}

// TestRequestsMatchTheSchema checks that what the gateway sends Cedar is
// what the schema promises policy authors, for every action.
func TestRequestsMatchTheSchema(t *testing.T) {
	var s schema.Schema
	if err := s.UnmarshalCedar([]byte(SchemaText)); err != nil {
		t.Fatal(err)
	}
	r, err := s.Resolve()
	if err != nil {
		t.Fatal(err)
	}
	v := validate.New(r)
	p := with(payroll, func(p *agentauth.Principal) { p.Groups = []string{"g"}; p.Scopes = []string{"s"} })
	reqs := []*Request{
		{Principal: p, Action: ActionList, Namespace: "hr", Now: now},
		{Principal: p, Action: ActionList, Namespace: "hr", Server: directory, Now: now},
		call(p, "hr", directory, "search_employees", readOnly),
		call(anonymous, "hr", directory, "search_employees", nil),
		{Principal: p, Action: ActionReadResource, Namespace: "hr", Server: directory, URI: "file:///x", Now: now},
		{Principal: p, Action: ActionGetPrompt, Namespace: "hr", Server: directory, Prompt: "p", Now: now},
	}
	for _, req := range reqs {
		cr, es, err := req.cedarRequest(agentEntity(req.Principal))
		if err != nil {
			t.Fatal(err)
		}
		if req.Action == ActionCall {
			cr, es = withArguments(cr, es, []byte(`{"amount":12.5,"to":"x","flag":true}`))
		}
		if err := v.Request(cr); err != nil {
			t.Errorf("%s request: %v", req.Action, err)
		}
		m := cedar.EntityMap{}
		for _, e := range es {
			m[e.UID] = e
		}
		if err := v.Entities(m); err != nil {
			t.Errorf("%s entities: %v", req.Action, err)
		}
	}
}

func TestCompileReportsEveryProblemWithItsPosition(t *testing.T) {
	_, err := Compile([]File{
		{Name: "a.cedar", Text: "@id(\"x\")\npermit (principal, action == Action::\"call\", resource)\nwhen { principal.tenat == \"payroll\" };\n"},
		{Name: "b.cedar", Text: "@id(\"x\")\npermit (principal, action, resource);\n"},
		{Name: "c.cedar", Text: "permit (principal, action == Action::\"fly\", resource);\n"},
		{Name: "d.cedar", Text: "permit (principal"},
		{Name: "e.txt", Text: ""},
	})
	if err == nil {
		t.Fatal("Compile accepted invalid policies")
	}
	for _, want := range []string{
		"a.cedar:1:1: policy \"x\" does not match the mcpmesh schema", "tenat",
		"b.cedar:1:1: policy id \"x\" is already used at a.cedar:1:1",
		"c.cedar:1:1: policy \"c.cedar#0\"", "fly",
		"policy file d.cedar:",
		"policy file \"e.txt\": want a base name ending in .cedar",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
}

func TestEmptySetDeniesEverything(t *testing.T) {
	e := NewEngine()
	d := e.Authorize(call(payroll, "hr", directory, "search_employees", readOnly))
	if d.Allowed || len(d.Policies) != 0 {
		t.Fatalf("empty set decided %+v", d)
	}
	if got := d.Reason(true); !strings.Contains(got, "default deny") {
		t.Errorf("reason = %q", got)
	}
	s := exampleSet(t, "hr")
	e.Swap(s, 42)
	if got, v := e.Set(); got != s || v != 42 {
		t.Errorf("Set() = %p, %d; want %p, 42", got, v, s)
	}
	if !e.Authorize(call(payroll, "hr", directory, "search_employees", readOnly)).Allowed {
		t.Error("the swapped-in set did not permit")
	}
}

func TestExplainTracesEveryPolicy(t *testing.T) {
	contractor := with(payroll, func(p *agentauth.Principal) { p.Groups = []string{"contractors"} })
	d, traces := exampleSet(t, "hr").Explain(call(contractor, "hr", directory, "get_salary_band", readOnly))
	if d.Allowed {
		t.Fatal("allowed")
	}
	got := map[string][2]bool{}
	for _, tr := range traces {
		got[tr.ID] = [2]bool{tr.Matched, tr.Decided}
		if tr.Position == "" || (tr.Effect != "permit" && tr.Effect != "forbid") {
			t.Errorf("trace %+v", tr)
		}
	}
	want := map[string][2]bool{
		"list-authenticated":              {false, false},
		"tenants-call-read-only":          {true, false},
		"tenants-call-finance-reports":    {false, false},
		"tenants-resources-and-prompts":   {false, false},
		"no-salary-bands-for-contractors": {true, true},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("traces (-want +got):\n%s", diff)
	}
}

func TestPoliciesWithoutIDAreNamedByFileAndIndex(t *testing.T) {
	s, err := Compile([]File{{Name: "z.cedar", Text: "permit (principal, action, resource);\nforbid (principal, action, resource) when { principal.tenant == \"x\" };"}})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"z.cedar#0", "z.cedar#1"}, s.IDs()); diff != "" {
		t.Error(diff)
	}
}

// TestPrebuiltMatchesFresh: a request with a prebuilt Target through the
// Engine (the agent entity cached) decides exactly as a request built from
// scratch, for every example case, and a target of another action denies.
func TestPrebuiltMatchesFresh(t *testing.T) {
	s := exampleSet(t, "hr")
	e := NewEngine()
	e.Swap(s, 1)
	contractor := with(payroll, func(p *agentauth.Principal) { p.Groups = []string{"contractors"} })
	for _, req := range []*Request{
		call(payroll, "hr", directory, "get_salary_band", readOnly),
		call(contractor, "hr", directory, "get_salary_band", readOnly),
		call(anonymous, "hr", directory, "search_employees", readOnly),
		{Principal: payroll, Action: ActionList, Namespace: "hr", Now: now},
		{Principal: payroll, Action: ActionList, Namespace: "hr", Server: directory, Now: now},
		{Principal: payroll, Action: ActionReadResource, Namespace: "hr", Server: directory, URI: "file:///x", Now: now},
	} {
		fresh := s.Authorize(req)
		pre := *req
		pre.Target = NewTarget(req)
		pre.Server, pre.Tool, pre.URI = Server{}, Tool{}, ""
		for range 2 { // the second time, the agent entity comes from the cache
			if diff := cmp.Diff(fresh, e.Authorize(&pre)); diff != "" {
				t.Errorf("%s %s by %s: prebuilt decides otherwise (-fresh +prebuilt):\n%s", req.Action, req.Tool.Name, req.Principal.ID, diff)
			}
		}
	}
	wrong := *call(payroll, "hr", directory, "get_salary_band", readOnly)
	wrong.Target = NewTarget(&Request{Action: ActionList, Namespace: "hr", Server: directory})
	if d := e.Authorize(&wrong); d.Allowed || len(d.Errors) != 1 {
		t.Errorf("target of another action: %+v, want a deny with an error", d)
	}
}

// TestAgentCacheSeesChangedPrincipal: the cache is keyed by principal ID
// but a principal whose groups changed (a new token) is decided with its
// new groups, both ways.
func TestAgentCacheSeesChangedPrincipal(t *testing.T) {
	e := NewEngine()
	e.Swap(exampleSet(t, "hr"), 1)
	req := call(payroll, "hr", directory, "get_salary_band", readOnly)
	req.Target = NewTarget(req)
	contractor := with(payroll, func(p *agentauth.Principal) { p.Groups = []string{"contractors"} })
	for i, c := range []struct {
		p     agentauth.Principal
		allow bool
	}{{payroll, true}, {contractor, false}, {payroll, true}} {
		r := *req
		r.Principal = c.p
		if got := e.Authorize(&r).Allowed; got != c.allow {
			t.Errorf("step %d (groups %v): allowed = %v, want %v", i, c.p.Groups, got, c.allow)
		}
	}
	// samePrincipal compares every field; a new field must be added there.
	if n := reflect.TypeFor[agentauth.Principal]().NumField(); n != 6 {
		t.Errorf("agentauth.Principal has %d fields; update samePrincipal and this count", n)
	}
}

// BenchmarkAuthorize decides one call: "fresh" builds every entity (the
// offline CLI's path), "prebuilt" is the gateway's (a Target built at
// sync, the principal's entity cached by the Engine).
func BenchmarkAuthorize(b *testing.B) {
	s := exampleSet(b, "hr")
	b.Run("fresh", func(b *testing.B) {
		req := call(payroll, "hr", directory, "get_salary_band", readOnly)
		b.ReportAllocs()
		for b.Loop() {
			if !s.Authorize(req).Allowed {
				b.Fatal("denied")
			}
		}
	})
	b.Run("prebuilt", func(b *testing.B) {
		e := NewEngine()
		e.Swap(s, 1)
		req := call(payroll, "hr", directory, "get_salary_band", readOnly)
		req.Target = NewTarget(req)
		b.ReportAllocs()
		for b.Loop() {
			if !e.Authorize(req).Allowed {
				b.Fatal("denied")
			}
		}
	})
}
