package e2e

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpmesh/mcpmesh/registry/api"
	"github.com/mcpmesh/mcpmesh/test/internal/testcluster"
)

// codeDenied is the gateway's JSON-RPC code for a request policy denies.
const codeDenied = -32011

const hrPolicies = `@id("list")
permit (principal, action == Action::"list", resource)
when { principal.method != "anonymous" };

@id("payroll-calls")
permit (principal in Tenant::"payroll", action == Action::"call", resource in Namespace::"hr");

@id("no-contractors")
forbid (
  principal in Group::"contractors",
  action == Action::"call",
  resource in Tool::"corp.hr/directory/lookup"
);
`

// TestPolicies: Cedar policies applied with `mcpmesh apply` decide every
// call on every replica: default deny, forbid wins, listings show what may
// be called, a change takes effect everywhere, a policy that fails the
// schema changes nothing, and `mcpmesh policy eval` gives the same
// decisions offline.
func TestPolicies(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, "directory")
	c := startCluster(t, testcluster.Options{NoSync: true})
	leader := c.Leader(leaderTimeout)
	f := c.Followers(leader)[0]
	mustCLI(t, c, f, "tenant", "add", "payroll", "-owner", "alice@corp.example")
	mustCLI(t, c, f, "tenant", "add", "benefits", "-owner", "bob@corp.example")
	mustCLI(t, c, f, "registry", "submit", "-f", writeCard(t, upstreamCard("corp.hr/directory", "1.0.0", up.URL)))
	mustCLI(t, c, f, "registry", "approve", "corp.hr/directory@1.0.0")
	staff := createKey(t, c, f, "payroll", "staff")
	out := mustCLI(t, c, f, "apikey", "create", "-tenant", "payroll", "-name", "contractor", "-group", "contractors", "-o", "json")
	contractor := decode[api.APIKeyCreated](t, "apikey create", out)
	benefits := createKey(t, c, f, "benefits", "benefits")

	// The BU's catalog: the card (already registered) and the policies.
	dir := t.TempDir()
	writeFile(t, dir, "directory-1.0.0.json", upstreamCard("corp.hr/directory", "1.0.0", up.URL))
	writeFile(t, dir, "policies.cedar", []byte(hrPolicies))
	wantLines(t, "dry run", mustCLI(t, c, f, "apply", "-f", dir, "-dry-run"), "unchanged corp.hr/directory@1.0.0", "create policies (+policies.cedar)")
	mustCLI(t, c, f, "apply", "-f", dir)

	call := func(n *testcluster.Node, key string) error {
		s, err := tryConnect(t, n.URL()+"/mcp", "2026-07-28", key)
		if err != nil {
			return err
		}
		defer s.Close()
		_, err = s.CallTool(t.Context(), &mcp.CallToolParams{Name: "hr.lookup", Arguments: map[string]any{"q": "x"}})
		return err
	}
	denied := func(err error) bool {
		var je *jsonrpc.Error
		return errors.As(err, &je) && je.Code == codeDenied
	}
	// Every replica serves the set once it has applied it.
	for _, n := range c.Nodes {
		var last error
		if !testcluster.Eventually(15*time.Second, func() bool { last = call(n, staff.Secret); return last == nil }) {
			t.Fatalf("%s: payroll's staff cannot call hr.lookup; last: %v", n.ID, last)
		}
		if err := call(n, contractor.Secret); !denied(err) || !strings.Contains(err.Error(), "denied by policy") || strings.Contains(err.Error(), "no-contractors") {
			t.Errorf("%s: contractor's call: err = %v; want -32011 'denied by policy' without the policy's name", n.ID, err)
		}
		if err := call(n, benefits.Secret); !denied(err) || !strings.Contains(err.Error(), "default deny") {
			t.Errorf("%s: benefits' call: err = %v; want a default deny", n.ID, err)
		}
	}
	for key, want := range map[string][]string{staff.Secret: {"hr.lookup"}, contractor.Secret: nil} {
		s := mcpConnectAs(t, leader.URL()+"/mcp", "2025-11-25", key)
		res, err := s.ListTools(t.Context(), nil)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, tool := range res.Tools {
			names = append(names, tool.Name)
		}
		if fmt.Sprint(names) != fmt.Sprint(want) {
			t.Errorf("tools/list as %s = %v, want %v", key[:17], names, want)
		}
	}
	// The denial is recorded in the serving node's log, by key id, never
	// by secret.
	var logs string
	for _, n := range c.Nodes {
		logs += n.Log()
	}
	if !strings.Contains(logs, "policy: denied") || !strings.Contains(logs, "apikey:"+contractor.Key.ID) || !strings.Contains(logs, "no-contractors") {
		t.Errorf("no log line records the contractor's denial with its deciding policy")
	}
	for _, secret := range []string{staff.Secret, contractor.Secret, benefits.Secret} {
		if strings.Contains(logs, secret) {
			t.Errorf("a node logged an API key secret")
		}
	}

	// The same decisions offline, before anything goes live.
	evalArgs := []string{"policy", "eval", "-f", dir, "-principal", "apikey:" + contractor.Key.ID, "-tenant", "payroll", "-groups", "contractors",
		"-action", "call", "-server", "corp.hr/directory", "-tool", "lookup", "-namespace", "hr"}
	if out, code := c.Run(append(evalArgs, "-expect", "deny")...); code != 0 || !strings.Contains(out, "DENY: denied by policy: forbidden by no-contractors") {
		t.Errorf("policy eval: exit %d: %s", code, out)
	}
	if out, code := c.Run(append(evalArgs, "-expect", "allow")...); code != 1 {
		t.Errorf("policy eval -expect allow of a denial: exit %d, want 1: %s", code, out)
	}
	explain, code := c.Run(append([]string{"policy", "explain"}, evalArgs[2:]...)...)
	if code != 0 || !strings.Contains(explain, "no-contractors") || !strings.Contains(explain, "payroll-calls") {
		t.Errorf("policy explain: exit %d: %s", code, explain)
	}

	// A policy that fails the schema is refused whole, naming the file
	// and line; the live set stays.
	before := decode[api.PoliciesResponse](t, "policy show", mustCLI(t, c, f, "policy", "show", "-o", "json", "-consistent"))
	bad := t.TempDir()
	writeFile(t, bad, "policies.cedar", []byte(hrPolicies+"\npermit (principal, action, resource) when { principal.tenat == \"x\" };\n"))
	out, code = c.CLI(f, "apply", "-f", bad)
	if code == 0 || !strings.Contains(out, "policies.cedar:") || !strings.Contains(out, "tenat") {
		t.Errorf("apply of an invalid policy: exit %d: %s", code, out)
	}
	if after := decode[api.PoliciesResponse](t, "policy show", mustCLI(t, c, f, "policy", "show", "-o", "json", "-consistent")); after.Digest != before.Digest || after.ModifyIndex != before.ModifyIndex {
		t.Errorf("the invalid apply changed the set: %s@%d → %s@%d", before.Digest, before.ModifyIndex, after.Digest, after.ModifyIndex)
	}

	// Lifting the forbid takes effect on every replica; measure how soon.
	lifted := t.TempDir()
	writeFile(t, lifted, "policies.cedar", []byte(strings.Split(hrPolicies, `@id("no-contractors")`)[0]))
	start := time.Now()
	mustCLI(t, c, leader, "apply", "-f", lifted)
	applied := time.Since(start)
	for _, n := range c.Nodes {
		var last error
		if !testcluster.Eventually(10*time.Second, func() bool { last = call(n, contractor.Secret); return last == nil }) {
			t.Fatalf("%s: the lifted forbid still denies the contractor; last: %v", n.ID, last)
		}
		t.Logf("%s: the contractor's call is allowed %s after the apply began (the apply command took %s)", n.ID, time.Since(start).Round(time.Millisecond), applied.Round(time.Millisecond))
	}
}
