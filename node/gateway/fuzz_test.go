package gateway

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
)

// FuzzServeHTTP sends arbitrary bodies and protocol headers to the front
// door (which reads the body itself to route by era and set deprecation
// headers before go-sdk parses it). It must never panic, and bad input is
// a client error, never a 5xx.
func FuzzServeHTTP(f *testing.F) {
	r := newRegistry(f)
	up := newUpstream(f, "fuzz")
	r.register("corp.hr/directory", "1.0.0", up.URL, lookupTool, true)
	g, _ := newGateway(f, r)

	for _, seed := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`,
		`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"f","version":"1"}}}`,
		`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"hr.lookup","arguments":{"q":"x"},"_meta":{"io.mcpmesh/version":"1.0.0"}}}`,
		`[{"jsonrpc":"2.0","id":1,"method":"ping"}]`,
		`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"hr.lookup","arguments":[1,2]}}`,
		`{`, ``, `null`,
	} {
		f.Add([]byte(seed), "", "")
		f.Add([]byte(seed), "2026-07-28", "")
		f.Add([]byte(seed), "2025-11-25", "bogus-session")
	}
	f.Fuzz(func(t *testing.T, body []byte, version, session string) {
		req := httptest.NewRequest(http.MethodPost, "/mcp", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		if version != "" {
			req.Header.Set("MCP-Protocol-Version", version)
		}
		if session != "" {
			req.Header.Set("Mcp-Session-Id", session)
		}
		rec := httptest.NewRecorder()
		g.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Errorf("HTTP %d for body %q (version %q, session %q): %s", rec.Code, body, version, session, rec.Body)
		}
	})
}
