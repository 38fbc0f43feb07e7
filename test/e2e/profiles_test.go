package e2e

import (
	"fmt"
	"regexp"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpmesh/mcpmesh/registry/state"
	"github.com/mcpmesh/mcpmesh/test/internal/testcluster"
)

// TestVersionProfiles: `mcpmesh profile set` pins an agent (by its
// principal) to a server version on every replica; its unpinned calls go
// there and say so, with the deprecation warning counted for that caller;
// other agents get the newest version; a version that is not live cannot
// be pinned; deleting the profile unpins.
func TestVersionProfiles(t *testing.T) {
	t.Parallel()
	v1 := startUpstream(t, "v1")
	v2 := startUpstream(t, "v2")
	c := startCluster(t, testcluster.Options{NoSync: true})
	leader := c.Leader(leaderTimeout)
	f := c.Followers(leader)[0]
	mustCLI(t, c, f, "apply", "-f", permitAll(t))
	const dir = "corp.hr/directory"
	mustCLI(t, c, f, "registry", "submit", "-f", writeCard(t, upstreamCard(dir, "1.0.0", v1.URL)))
	mustCLI(t, c, f, "registry", "submit", "-f", writeCard(t, upstreamCard(dir, "2.0.0", v2.URL)))
	mustCLI(t, c, f, "registry", "approve", ref(dir, "1.0.0"))
	mustCLI(t, c, f, "registry", "approve", ref(dir, "2.0.0"))
	mustCLI(t, c, f, "registry", "deprecate", ref(dir, "1.0.0"), "-sunset", "2031-01-31", "-replacement", "2.0.0")
	mustCLI(t, c, f, "tenant", "add", "payroll", "-owner", "alice@corp.example")
	pinned := createKey(t, c, f, "payroll", "legacy report job")
	other := createKey(t, c, f, "payroll", "new report job")
	principal := "apikey:" + pinned.Key.ID

	out, code := c.CLI(f, "profile", "set", principal, ref(dir, "3.0.0"))
	wantFailure(t, "profile set to an unregistered version", out, code, 1, "corp.hr/directory@3.0.0 is not registered")
	out, code = c.CLI(f, "profile", "set", principal, "corp.hr/directory")
	wantFailure(t, "profile set without a version", out, code, 2, "NAME@VERSION")
	mustCLI(t, c, f, "profile", "set", principal, ref(dir, "1.0.0"))
	p := decode[state.Profile](t, "profile show", mustCLI(t, c, leader, "profile", "show", principal, "-consistent", "-o", "json"))
	if p.Pins[dir] != "1.0.0" || p.UpdatedBy == "" {
		t.Fatalf("profile show = %+v", p)
	}

	call := func(n *testcluster.Node, key string) (*mcp.CallToolResult, error) {
		s, err := tryConnect(t, n.URL()+"/mcp", "2026-07-28", key)
		if err != nil {
			return nil, err
		}
		return s.CallTool(t.Context(), &mcp.CallToolParams{Name: "hr.lookup", Arguments: map[string]any{"q": n.ID}})
	}
	for _, n := range c.Nodes {
		var last string
		ok := testcluster.Eventually(catchUp, func() bool {
			res, err := call(n, pinned.Secret)
			if err != nil {
				last = err.Error()
				return false
			}
			last = fmt.Sprintf("%v %v", res.Content[0].(*mcp.TextContent).Text, res.Meta)
			return res.Content[0].(*mcp.TextContent).Text == "v1:"+n.ID && res.Meta["io.mcpmesh/pinnedBy"] == "profile" && res.Meta["io.mcpmesh/deprecation"] != nil
		})
		if !ok {
			t.Fatalf("%s: the profiled agent's call: %s; want v1 by profile, with a deprecation warning", n.ID, last)
		}
		res, err := call(n, other.Secret)
		if err != nil || res.Content[0].(*mcp.TextContent).Text != "v2:"+n.ID || res.Meta["io.mcpmesh/pinnedBy"] != nil {
			t.Errorf("%s: another agent's call = %+v, %v; want v2, unpinned", n.ID, res, err)
		}
		_, m := get(t, n.URL()+"/metrics", "")
		want := regexp.MustCompile(`mcpmesh_gateway_deprecation_warnings_total\{caller="` + regexp.QuoteMeta(principal) + `",namespace="hr",tool="hr.lookup",version="1.0.0"\} [1-9]`)
		if !want.MatchString(m) {
			t.Errorf("%s: /metrics does not count the deprecation warning for %s", n.ID, principal)
		}
	}

	mustCLI(t, c, f, "profile", "delete", principal)
	ok := testcluster.Eventually(catchUp, func() bool {
		res, err := call(leader, pinned.Secret)
		return err == nil && res.Content[0].(*mcp.TextContent).Text == "v2:"+leader.ID
	})
	if !ok {
		t.Error("after profile delete, the agent's calls do not go to the newest version")
	}
	out, code = c.CLI(f, "profile", "show", principal)
	wantFailure(t, "profile show after delete", out, code, 1, "has no profile")
}
