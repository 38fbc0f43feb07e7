package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpmesh/mcpmesh/registry/card"
	"github.com/mcpmesh/mcpmesh/registry/state"
	"github.com/mcpmesh/mcpmesh/trust/apikey"
)

const (
	peekTool = `{"name":"peek","inputSchema":{"type":"object"},"annotations":{"readOnlyHint":true}}`
	wipeTool = `{"name":"wipe","inputSchema":{"type":"object"},"annotations":{"destructiveHint":true}}`
)

// setPolicies replaces the registry's policy set with one file.
func (r *registry) setPolicies(text string) {
	r.t.Helper()
	var files []state.PolicyFile
	if text != "" {
		files = []state.PolicyFile{{Name: "test.cedar", Text: text}}
	}
	r.apply(state.PutPolicies{Files: files, By: "admin", At: t0})
}

// registerRisk registers and approves a server version of the given risk tier.
func (r *registry) registerRisk(name, version, url, risk string, tools ...string) {
	r.t.Helper()
	raw := json.RawMessage(strings.Replace(string(cardJSON(name, version, url, strings.Join(tools, ","))), `"riskTier":"low"`, `"riskTier":"`+risk+`"`, 1))
	if _, err := card.Parse(raw); err != nil {
		r.t.Fatalf("test card invalid: %v", err)
	}
	r.apply(state.SubmitVersion{Card: raw, By: "ci", At: t0})
	r.apply(state.Transition{Server: name, Version: version, To: card.StateApproved, By: "rev", At: t0})
}

// key creates an API key of tenant with groups and scopes; id is 12
// characters of a-z2-7.
func (r *registry) key(id, tenant string, groups, scopes []string) string {
	r.t.Helper()
	secret := "mcpk_" + id + "_" + strings.Repeat("s", 43)
	if _, err := apikey.Parse(secret); err != nil {
		r.t.Fatal(err)
	}
	r.apply(state.CreateAPIKey{Key: state.APIKey{ID: id, Tenant: tenant, Name: id, Hash: apikey.Hash(secret), Groups: groups, Scopes: scopes}, By: "admin", At: t0})
	return secret
}

// anyToolUpstream answers every tool of tools with "ok".
func anyToolUpstream(t *testing.T, tools ...string) string {
	t.Helper()
	s := mcp.NewServer(&mcp.Implementation{Name: "any", Version: "1"}, nil)
	for _, raw := range tools {
		var def mcp.Tool
		if err := json.Unmarshal([]byte(raw), &def); err != nil {
			t.Fatal(err)
		}
		s.AddTool(&def, func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "ok"}}}, nil
		})
	}
	srv := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{Stateless: true}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func bearer(key string) http.Header {
	if key == "" {
		return http.Header{}
	}
	return http.Header{"Authorization": {"Bearer " + key}}
}

// deniedByPolicy reports whether err is the gateway's policy denial.
func deniedByPolicy(err error) bool {
	var je *jsonrpc.Error
	return errors.As(err, &je) && je.Code == CodeDenied
}

func TestDefaultDenyWithoutPolicies(t *testing.T) {
	r := newRegistry(t)
	up := newUpstream(t, "one")
	r.register("corp.hr/one", "1.0.0", up.URL, lookupTool, true)
	r.setPolicies("")
	_, srv := newGateway(t, r)
	for _, era := range eras {
		t.Run(era, func(t *testing.T) {
			s := connect(t, srv.URL+"/mcp", era)
			_, err := s.ListTools(t.Context(), nil)
			if !deniedByPolicy(err) || !strings.Contains(err.Error(), "no policy permits it") {
				t.Errorf("tools/list: err = %v, want a -32003 default deny", err)
			}
			_, err = s.CallTool(t.Context(), &mcp.CallToolParams{Name: "hr.lookup", Arguments: map[string]any{"q": "x"}})
			if !deniedByPolicy(err) || !strings.Contains(err.Error(), "tools/call hr.lookup (corp.hr/one@1.0.0): denied by policy") {
				t.Errorf("tools/call: err = %v, want a -32003 default deny naming the tool", err)
			}
		})
	}
	up.mu.Lock()
	defer up.mu.Unlock()
	if len(up.calls) != 0 {
		t.Errorf("a denied call reached an upstream: %v", up.calls)
	}
}

func TestDenialsNameThePolicyOnlyWhenConfigured(t *testing.T) {
	r := newRegistry(t)
	r.register("corp.hr/one", "1.0.0", newUpstream(t, "one").URL, lookupTool, true)
	r.setPolicies(allowAll + `
@id("no-lookups")
forbid (principal, action == Action::"call", resource in Tool::"corp.hr/one/lookup");`)
	for _, explain := range []bool{false, true} {
		g, srv := newGateway(t, r)
		g.cfg.ExplainDenials = explain
		s := connect(t, srv.URL+"/mcp", "2026-07-28")
		_, err := s.CallTool(t.Context(), &mcp.CallToolParams{Name: "hr.lookup", Arguments: map[string]any{"q": "x"}})
		if !deniedByPolicy(err) || strings.Contains(err.Error(), "no-lookups") != explain {
			t.Errorf("explain=%v: err = %v", explain, err)
		}
	}
}

// TestListingsMatchCallAuthorization is a property test: under random
// policy sets, for several principals, both eras and both kinds of
// endpoint, a tool is listed exactly when calling it is not denied.
func TestListingsMatchCallAuthorization(t *testing.T) {
	r := newRegistry(t)
	alpha1 := anyToolUpstream(t, lookupTool, peekTool)
	alpha2 := anyToolUpstream(t, lookupTool, peekTool)
	beta := anyToolUpstream(t, lookupTool, wipeTool)
	r.registerRisk("corp.hr/alpha", "1.0.0", alpha1, "low", lookupTool, peekTool)
	r.registerRisk("corp.hr/alpha", "2.0.0", alpha2, "low", lookupTool, peekTool)
	r.registerRisk("corp.hr/beta", "1.0.0", beta, "high", lookupTool, wipeTool)
	r.apply(state.PutTenant{Tenant: state.Tenant{Name: "benefits", Owners: []string{"bob"}}, By: "admin", At: t0})
	principals := map[string]string{
		"payroll":   r.key("payrollaaaaa", "payroll", nil, nil),
		"benefits":  r.key("benefitsaaaa", "benefits", []string{"ops"}, nil),
		"ops":       r.key("opsaaaaaaaaa", "payroll", []string{"ops"}, []string{"wipe"}),
		"anonymous": "",
	}
	// payroll's profile pins alpha 1.0.0, which some policies forbid.
	r.apply(state.PutProfile{Principal: "apikey:payrollaaaaa", Pins: map[string]string{"corp.hr/alpha": "1.0.0"}, By: "admin", At: t0})
	pieces := []string{
		`permit (principal in Tenant::"payroll", action == Action::"call", resource in Server::"corp.hr/alpha");`,
		`permit (principal in Group::"ops", action == Action::"call", resource) when { context.annotations.readOnly };`,
		`forbid (principal, action == Action::"call", resource in Tool::"corp.hr/beta/wipe") unless { principal.scopes.contains("wipe") };`,
		`permit (principal, action == Action::"call", resource in Tool::"corp.hr/beta/lookup");`,
		`forbid (principal in Tenant::"benefits", action in [Action::"call", Action::"readResource"], resource in Server::"corp.hr/alpha");`,
		`permit (principal, action == Action::"call", resource) when { context.riskLevel >= 2 };`,
		`forbid (principal, action == Action::"call", resource == ToolVersion::"corp.hr/alpha/peek@1.0.0");`,
		`permit (principal == Agent::"anonymous", action == Action::"call", resource in Tool::"corp.hr/alpha/peek");`,
		`forbid (principal, action == Action::"call", resource) when { context.annotations.destructive && principal.method == "anonymous" };`,
	}
	endpoints := map[string][]string{
		"/mcp":                    {"hr.alpha.lookup", "hr.beta.lookup", "hr.peek", "hr.wipe"},
		"/mcp/s/hr/corp.hr/alpha": {"lookup", "peek"},
		"/mcp/s/hr/corp.hr/beta":  {"lookup", "wipe"},
	}
	g, srv := newGateway(t, r)
	rng := rand.New(rand.NewPCG(1, 2))
	listedSomething, deniedSomething := false, false
	for round := range 10 {
		policy := `permit (principal, action == Action::"list", resource);`
		for _, p := range pieces {
			if rng.IntN(2) == 0 {
				policy += "\n" + p
			}
		}
		r.setPolicies(policy)
		if err := g.Sync(); err != nil {
			t.Fatal(err)
		}
		for who, key := range principals {
			for _, era := range []string{"2026-07-28", "2025-11-25"} {
				for path, names := range endpoints {
					s := connectWith(t, srv.URL+path, era, bearer(key))
					res, err := s.ListTools(t.Context(), nil)
					if err != nil {
						t.Fatalf("round %d %s %s %s: tools/list: %v", round, who, era, path, err)
					}
					if res.CacheScope != "private" {
						t.Errorf("tools/list cacheScope = %q, want private", res.CacheScope)
					}
					var listed []string
					for _, tool := range res.Tools {
						listed = append(listed, tool.Name)
					}
					for _, name := range names {
						_, err := s.CallTool(t.Context(), &mcp.CallToolParams{Name: name, Arguments: map[string]any{"q": "x"}})
						denied := deniedByPolicy(err)
						if !denied && err != nil {
							t.Fatalf("round %d %s %s %s: call %s: unexpected error %v", round, who, era, path, name, err)
						}
						if slices.Contains(listed, name) == denied {
							t.Errorf("round %d, %s, %s, %s: %s listed=%v but call denied=%v\npolicy:\n%s", round, who, era, path, name, !denied, denied, policy)
						}
						listedSomething = listedSomething || !denied
						deniedSomething = deniedSomething || denied
					}
					s.Close()
				}
			}
		}
	}
	if !listedSomething || !deniedSomething {
		t.Errorf("the rounds never exercised both sides: listed=%v denied=%v", listedSomething, deniedSomething)
	}
}

func TestListNeedsTheListAction(t *testing.T) {
	r := newRegistry(t)
	r.register("corp.hr/rich", "1.0.0", richUpstream(t), lookupTool, true)
	// Calls and reads are permitted, listing only the one server.
	r.setPolicies(`permit (principal, action, resource) unless { action == Action::"list" };
permit (principal, action == Action::"list", resource == Server::"corp.hr/rich");`)
	_, srv := newGateway(t, r)
	agg := connect(t, srv.URL+"/mcp", "2026-07-28")
	for name, list := range map[string]func() error{
		"tools/list":     func() error { _, err := agg.ListTools(t.Context(), nil); return err },
		"resources/list": func() error { _, err := agg.ListResources(t.Context(), nil); return err },
		"templates/list": func() error { _, err := agg.ListResourceTemplates(t.Context(), nil); return err },
		"prompts/list":   func() error { _, err := agg.ListPrompts(t.Context(), nil); return err },
	} {
		if err := list(); !deniedByPolicy(err) {
			t.Errorf("/mcp %s: err = %v, want denied", name, err)
		}
	}
	one := connect(t, srv.URL+"/mcp/s/hr/corp.hr/rich", "2026-07-28")
	if names := toolNames(t, one); !slices.Equal(names, []string{"lookup"}) {
		t.Errorf("per-server tools = %v", names)
	}
	if _, err := agg.CallTool(t.Context(), &mcp.CallToolParams{Name: "hr.lookup", Arguments: map[string]any{"q": "x"}}); err != nil {
		t.Errorf("call: %v", err)
	}
}

func TestResourcesAndPromptsFollowPolicy(t *testing.T) {
	r := newRegistry(t)
	r.register("corp.hr/rich", "1.0.0", richUpstream(t), lookupTool, true)
	r.register("corp.hr/rich2", "1.0.0", richUpstream(t), `{"name":"other","inputSchema":{"type":"object"}}`, true)
	r.setPolicies(`permit (principal, action == Action::"list", resource);
permit (principal, action == Action::"readResource", resource) when { resource.uri == "test://readme" };
permit (principal, action == Action::"getPrompt", resource in Server::"corp.hr/rich2");`)
	_, srv := newGateway(t, r)
	const rich = "mcpmesh://hr/corp.hr%2Frich/"
	for _, era := range []string{"2026-07-28", "2025-11-25"} {
		t.Run(era, func(t *testing.T) {
			s := connect(t, srv.URL+"/mcp", era)
			rl, err := s.ListResources(t.Context(), nil)
			if err != nil {
				t.Fatal(err)
			}
			var uris []string
			for _, res := range rl.Resources {
				uris = append(uris, res.URI)
			}
			if want := []string{rich + "test://readme", "mcpmesh://hr/corp.hr%2Frich2/test://readme"}; !slices.Equal(uris, want) {
				t.Errorf("resources = %v, want %v", uris, want)
			}
			if _, err := s.ReadResource(t.Context(), &mcp.ReadResourceParams{URI: rich + "test://readme"}); err != nil {
				t.Errorf("permitted read: %v", err)
			}
			if _, err := s.ReadResource(t.Context(), &mcp.ReadResourceParams{URI: rich + "test://items/7"}); !deniedByPolicy(err) {
				t.Errorf("templated read: err = %v, want denied", err)
			}
			tl, err := s.ListResourceTemplates(t.Context(), nil)
			if err != nil || len(tl.ResourceTemplates) != 0 {
				t.Errorf("templates = %+v, %v; want none", tl, err)
			}
			pl, err := s.ListPrompts(t.Context(), nil)
			if err != nil || len(pl.Prompts) != 1 || pl.Prompts[0].Name != "hr.rich2.greet" {
				t.Fatalf("prompts = %+v, %v", pl, err)
			}
			if _, err := s.GetPrompt(t.Context(), &mcp.GetPromptParams{Name: "hr.rich.greet", Arguments: map[string]string{"who": "x"}}); !deniedByPolicy(err) {
				t.Errorf("get a forbidden prompt: err = %v", err)
			}
			if _, err := s.Complete(t.Context(), &mcp.CompleteParams{Ref: &mcp.CompleteReference{Type: "ref/prompt", Name: "hr.rich.greet"}, Argument: mcp.CompleteParamsArgument{Name: "who", Value: "x"}}); !deniedByPolicy(err) {
				t.Errorf("complete a forbidden prompt: err = %v", err)
			}
			if _, err := s.GetPrompt(t.Context(), &mcp.GetPromptParams{Name: "hr.rich2.greet", Arguments: map[string]string{"who": "x"}}); err != nil {
				t.Errorf("get a permitted prompt: %v", err)
			}
			one := connect(t, srv.URL+"/mcp/s/hr/corp.hr/rich", era)
			if pl, err := one.ListPrompts(t.Context(), nil); err != nil || len(pl.Prompts) != 0 {
				t.Errorf("per-server prompts = %+v, %v; want none", pl, err)
			}
			if _, err := one.GetPrompt(t.Context(), &mcp.GetPromptParams{Name: "greet", Arguments: map[string]string{"who": "x"}}); !deniedByPolicy(err) {
				t.Errorf("per-server get: err = %v", err)
			}
			if _, err := one.ReadResource(t.Context(), &mcp.ReadResourceParams{URI: "test://items/1"}); !deniedByPolicy(err) {
				t.Errorf("per-server read: err = %v", err)
			}
		})
	}
}

func ExampleCodeDenied() {
	fmt.Println(CodeDenied)
	// Output: -32011
}
