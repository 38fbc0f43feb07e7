package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpmesh/mcpmesh/node/upstream"
	"github.com/mcpmesh/mcpmesh/registry/state"
	"github.com/mcpmesh/mcpmesh/trust/tokens"
)

// TestUpstreamsGetTheCallersToken: every call reaches its upstream with a
// token the node minted for that upstream, naming the agent, its tenant and
// the request id the agent sees in the result; in every era, on both
// endpoints; never with the agent's own credentials.
func TestUpstreamsGetTheCallersToken(t *testing.T) {
	const issuer, node = "spiffe://hr.example.corp/mcpmesh/gateway", "spiffe://hr.example.corp/mcpmesh/node/n1"
	minter, err := tokens.NewMinter(tokens.Config{Issuer: issuer, Node: node})
	if err != nil {
		t.Fatal(err)
	}
	k, err := tokens.NewKey(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := minter.SetKeys([]state.SigningKey{{ID: k.ID, Algorithm: k.Algorithm, Private: k.Private, CreatedAt: k.At}}); err != nil {
		t.Fatal(err)
	}
	jwks := httptest.NewServer(minter.JWKSHandler())
	t.Cleanup(jwks.Close)
	v, err := tokens.NewVerifier(tokens.VerifierConfig{Issuer: issuer, Audience: "corp.hr/directory", JWKSURL: jwks.URL})
	if err != nil {
		t.Fatal(err)
	}

	// The upstream answers with the claims of the token its call came with,
	// and records every header it received.
	var mu sync.Mutex
	var headers []http.Header
	s := mcp.NewServer(&mcp.Implementation{Name: "whoami", Version: "1"}, nil)
	var def mcp.Tool
	json.Unmarshal([]byte(lookupTool), &def)
	s.AddTool(&def, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		c, err := v.Verify(ctx, strings.TrimPrefix(req.Extra.Header.Get("Authorization"), "Bearer "))
		if err != nil {
			return &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: err.Error()}}}, nil
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: fmt.Sprintf("tenant=%s sub=%s rid=%s chain=%v", c.Tenant, c.Subject, c.RequestID, c.Caller)}}}, nil
	})
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		headers = append(headers, r.Header.Clone())
		mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(up.Close)

	r := newRegistry(t)
	r.register("corp.hr/directory", "1.0.0", up.URL, lookupTool, true)
	pool := upstream.NewPool(upstream.Config{CallTimeout: 10 * time.Second}, upstream.WithTokens(minter))
	t.Cleanup(func() { pool.Close() })
	g := New(Config{Namespace: "hr"}, r.fsm, pool)
	t.Cleanup(func() { g.Close() })
	if err := g.Sync(); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(authenticated(r, g, "/mcp", "/mcp/s/*"))
	t.Cleanup(srv.Close)

	for _, era := range eras {
		for _, who := range []struct {
			name, tenant, sub string
			h                 http.Header
		}{
			{"payroll key", "payroll", "apikey:" + testKeyID, http.Header{"Authorization": {"Bearer " + testKey}, "Cookie": {"session=agent-cookie"}, "X-Api-Key": {"agent-api-key"}}},
			{"anonymous", "", "anonymous", http.Header{"Cookie": {"session=agent-cookie"}}},
		} {
			for path, tool := range map[string]string{"/mcp": "hr.lookup", "/mcp/s/hr/corp.hr/directory": "lookup"} {
				sess := connectWith(t, srv.URL+path, era, who.h)
				res, err := sess.CallTool(t.Context(), &mcp.CallToolParams{Name: tool, Arguments: map[string]any{"q": "x"}})
				if err != nil || res.IsError {
					t.Fatalf("%s %s %s: %+v, %v", era, who.name, path, res, err)
				}
				rid, _ := res.Meta[MetaRequestID].(string)
				want := fmt.Sprintf("tenant=%s sub=%s rid=%s chain=[%s %s]", who.tenant, who.sub, rid, who.sub, node)
				if got := res.Content[0].(*mcp.TextContent).Text; rid == "" || got != want {
					t.Errorf("%s %s %s: the upstream's token says %q, want %q", era, who.name, path, got, want)
				}
			}
		}
	}

	mu.Lock()
	defer mu.Unlock()
	for _, h := range headers {
		tok, _ := strings.CutPrefix(h.Get("Authorization"), "Bearer ")
		if _, err := v.Verify(t.Context(), tok); err != nil {
			t.Errorf("an upstream request without a valid node token: %v", err)
		}
		if h.Get("Cookie") != "" || h.Get("X-Api-Key") != "" || strings.Contains(fmt.Sprint(h), testKey) {
			t.Errorf("the upstream received the agent's credentials: %v", h)
		}
	}
}
