package gateway

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzServeHTTP sends arbitrary bodies, protocol and Authorization headers
// to the front door (which reads the body itself to route by era and set deprecation
// headers before go-sdk parses it). It must never panic, and bad input is
// a client error, never a 5xx.
func FuzzServeHTTP(f *testing.F) {
	r := newRegistry(f)
	up := newUpstream(f, "fuzz")
	r.register("corp.hr/directory", "1.0.0", up.URL, lookupTool, true)
	g, _ := newGateway(f, r)
	h := authenticated(r, g, "/mcp")

	for _, seed := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`,
		`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"f","version":"1"}}}`,
		`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"hr.lookup","arguments":{"q":"x"},"_meta":{"io.mcpmesh/version":"1.0.0"}}}`,
		`[{"jsonrpc":"2.0","id":1,"method":"ping"}]`,
		`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"hr.lookup","arguments":[1,2]}}`,
		`{`, ``, `null`,
	} {
		f.Add([]byte(seed), "", "", "")
		f.Add([]byte(seed), "2026-07-28", "", "Bearer mcpk_aaaaaaaaaaaa_"+strings.Repeat("A", 43))
		f.Add([]byte(seed), "2025-11-25", "bogus-session", "Basic eDp5")
	}
	f.Fuzz(func(t *testing.T, body []byte, version, session, authz string) {
		req := httptest.NewRequest(http.MethodPost, "/mcp", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		if version != "" {
			req.Header.Set("MCP-Protocol-Version", version)
		}
		if session != "" {
			req.Header.Set("Mcp-Session-Id", session)
		}
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Errorf("HTTP %d for body %q (version %q, session %q, authorization %q): %s", rec.Code, body, version, session, authz, rec.Body)
		}
	})
}

// FuzzUnwrapState feeds arbitrary requestStates (an agent's to send) to the
// gateway's unwrapping: it must never panic, must accept what wrapState
// made unchanged, and whatever it accepts must name a version.
func FuzzUnwrapState(f *testing.F) {
	for _, seed := range []string{wrapState("1.0.0", "s"), wrapState("2.0.0", ""), wrappedState{Version: "1.0.0", Ask: "ab"}.wrap(), "mcpmesh1.", "mcpmesh1.e30", "asked-once", ""} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		w, err := unwrapState(s)
		if err == nil && w.Version == "" {
			t.Errorf("unwrapState(%q) accepted a state without a version", s)
		}
		if err == nil {
			if back, err := unwrapState(w.wrap()); err != nil || back != w {
				t.Errorf("round trip of %+v: %+v, %v", w, back, err)
			}
		}
	})
}

// FuzzUpstreamURI feeds arbitrary resource URIs (an agent's to send) to the
// aggregated view's mapping: it must never panic, and what it accepts must
// map back to the same URI.
func FuzzUpstreamURI(f *testing.F) {
	g := &Gateway{cfg: Config{Namespace: "hr"}}
	for _, seed := range []string{"mcpmesh://hr/corp.hr%2Frich/test://readme", "mcpmesh://hr/x/y", "mcpmesh://hr/%zz/x", "mcpmesh://hr//x", "test://readme", ""} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, uri string) {
		server, original, err := g.upstreamURI(uri)
		if err != nil {
			return
		}
		if server == "" || original == "" {
			t.Errorf("upstreamURI(%q) = %q, %q: empty part accepted", uri, server, original)
		}
		if s2, o2, err := g.upstreamURI(g.aggregatedURI(server, original)); err != nil || s2 != server || o2 != original {
			t.Errorf("mapping %q back and forth: %q, %q, %v", uri, s2, o2, err)
		}
	})
}
