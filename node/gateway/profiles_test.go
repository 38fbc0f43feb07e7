package gateway

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mcpmesh/mcpmesh/registry/card"
	"github.com/mcpmesh/mcpmesh/registry/state"
)

// TestVersionProfiles: a principal's profile picks the version of its
// calls that pin none; a pin in _meta still wins; other principals get
// the newest version; deprecation warnings are counted per caller; a
// profile pinning a version that stopped being live is a clear error.
func TestVersionProfiles(t *testing.T) {
	r := newRegistry(t)
	v1 := newUpstream(t, "v1")
	v2 := newUpstream(t, "v2")
	const s = "corp.hr/directory"
	r.register(s, "1.0.0", v1.URL, lookupTool, true)
	r.register(s, "2.0.0", v2.URL, lookupTool, true)
	r.apply(state.Transition{Server: s, Version: "1.0.0", To: card.StateDeprecated, By: "rev", At: t0,
		Deprecation: &card.Deprecation{Sunset: t0.Add(72 * time.Hour), Replacement: "2.0.0"}})
	const caller = "apikey:" + testKeyID
	r.apply(state.PutProfile{Principal: caller, Pins: map[string]string{s: "1.0.0"}, By: "admin", At: t0})
	g, srv := newGateway(t, r)

	call := func(sess *mcp.ClientSession, pin string) *mcp.CallToolResult {
		t.Helper()
		p := &mcp.CallToolParams{Name: "hr.lookup", Arguments: map[string]any{"q": "x"}}
		if pin != "" {
			p.Meta = mcp.Meta{MetaVersion: pin}
		}
		res, err := sess.CallTool(t.Context(), p)
		if err != nil {
			t.Fatalf("call (pin %q): %v", pin, err)
		}
		return res
	}
	for _, era := range []string{"2026-07-28", "2025-11-25"} {
		sess := connect(t, srv.URL+"/mcp", era)
		res := call(sess, "")
		if res.Content[0].(*mcp.TextContent).Text != "v1:x" || res.Meta[MetaVersion] != "1.0.0" || res.Meta[MetaPinnedBy] != "profile" || res.Meta[MetaDeprecation] == nil {
			t.Errorf("%s: profiled call = %+v, want 1.0.0 by profile, with a deprecation warning", era, res)
		}
		res = call(sess, "2.0.0")
		if res.Content[0].(*mcp.TextContent).Text != "v2:x" || res.Meta[MetaPinnedBy] != "call" {
			t.Errorf("%s: _meta pin over the profile = %+v, want 2.0.0 by call", era, res)
		}
		anon := connectWith(t, srv.URL+"/mcp", era, nil)
		res = call(anon, "")
		if res.Content[0].(*mcp.TextContent).Text != "v2:x" || res.Meta[MetaPinnedBy] != nil {
			t.Errorf("%s: another principal's call = %+v, want the newest, unpinned", era, res)
		}
	}
	if n := testutil.ToFloat64(g.metrics.deprecWarn.WithLabelValues("hr", "hr.lookup", "1.0.0", caller)); n != 2 {
		t.Errorf("deprecation warnings counted for %s: %v, want 2", caller, n)
	}

	// The HTTP answer carries the deprecation headers for the profile's version.
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"hr.lookup","arguments":{"q":"x"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"raw","version":"1"}}}}`
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/mcp", strings.NewReader(body))
	for k, v := range map[string]string{"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
		"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "hr.lookup", "Authorization": "Bearer " + testKey} {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !strings.Contains(resp.Header.Get("X-MCP-Deprecated"), "corp.hr/directory@1.0.0") {
		t.Errorf("profiled call: X-MCP-Deprecated %q, want 1.0.0's warning", resp.Header.Get("X-MCP-Deprecated"))
	}

	// A profile whose version was retired since: the error says so and
	// names the profile.
	r.apply(state.Transition{Server: s, Version: "1.0.0", To: card.StateRetired, By: "rev", At: t0})
	if err := g.Sync(); err != nil {
		t.Fatal(err)
	}
	sess := connect(t, srv.URL+"/mcp", "2026-07-28")
	_, err = sess.CallTool(t.Context(), &mcp.CallToolParams{Name: "hr.lookup", Arguments: map[string]any{"q": "x"}})
	if err == nil || !strings.Contains(err.Error(), "retired") || !strings.Contains(err.Error(), "version profile of "+caller) {
		t.Errorf("call under a profile pinning a retired version: err = %v", err)
	}
	// Deleting the profile gives the caller the newest version again.
	r.apply(state.DeleteProfile{Principal: caller, By: "admin", At: t0})
	if err := g.Sync(); err != nil {
		t.Fatal(err)
	}
	if res := call(sess, ""); res.Meta[MetaVersion] != "2.0.0" {
		t.Errorf("after deleting the profile: version %v, want 2.0.0", res.Meta[MetaVersion])
	}
}

// TestListingByProfile: tools/list shows each tool as the version the
// caller's calls go to, its profile's pin, while other callers see the
// newest version's definition.
func TestListingByProfile(t *testing.T) {
	r := newRegistry(t)
	lookupV2 := `{"name":"lookup","description":"Looks a thing up, in v2.","inputSchema":{"type":"object","properties":{"q":{"type":"string"},"limit":{"type":"integer"}},"required":["q"]}}`
	v1 := newUpstream(t, "v1")
	v2 := newUpstreamOf(t, "v2", lookupV2)
	const s = "corp.hr/directory"
	r.register(s, "1.0.0", v1.URL, lookupTool, true)
	r.register(s, "2.0.0", v2.URL, lookupV2, true)
	const caller = "apikey:" + testKeyID
	r.apply(state.PutProfile{Principal: caller, Pins: map[string]string{s: "1.0.0"}, By: "admin", At: t0})
	_, srv := newGateway(t, r)

	describe := func(sess *mcp.ClientSession, name string) (desc string, props int) {
		t.Helper()
		res, err := sess.ListTools(t.Context(), nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, tool := range res.Tools {
			if tool.Name != name {
				continue
			}
			schema, _ := tool.InputSchema.(map[string]any)
			p, _ := schema["properties"].(map[string]any)
			return tool.Description, len(p)
		}
		t.Fatalf("%s is not listed: %v", name, res.Tools)
		return "", 0
	}
	for _, era := range []string{"2026-07-28", "2025-11-25"} {
		if desc, props := describe(connect(t, srv.URL+"/mcp", era), "hr.lookup"); desc != "Looks a thing up." || props != 1 {
			t.Errorf("%s: the pinned caller lists %q with %d properties, want v1's definition", era, desc, props)
		}
		if desc, props := describe(connectWith(t, srv.URL+"/mcp", era, nil), "hr.lookup"); desc != "Looks a thing up, in v2." || props != 2 {
			t.Errorf("%s: another caller lists %q with %d properties, want v2's definition", era, desc, props)
		}
		if desc, _ := describe(connect(t, srv.URL+"/mcp/s/hr/corp.hr/directory", era), "lookup"); desc != "Looks a thing up." {
			t.Errorf("%s: the pinned caller lists %q on the server's own endpoint, want v1's", era, desc)
		}
	}
}
