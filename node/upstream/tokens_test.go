package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpmesh/mcpmesh/registry/state"
	"github.com/mcpmesh/mcpmesh/trust/tokens"
)

const (
	testIssuer = "spiffe://hr.example.corp/mcpmesh/gateway"
	testNode   = "spiffe://hr.example.corp/mcpmesh/node/n1"
)

// newMinter returns a minter with one active key and the URL of its key set.
func newMinter(t *testing.T, withKey bool) (*tokens.Minter, string) {
	t.Helper()
	m, err := tokens.NewMinter(tokens.Config{Issuer: testIssuer, Node: testNode})
	if err != nil {
		t.Fatal(err)
	}
	if withKey {
		k, err := tokens.NewKey(time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if err := m.SetKeys([]state.SigningKey{{ID: k.ID, Algorithm: k.Algorithm, Private: k.Private, CreatedAt: k.At}}); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(m.JWKSHandler())
	t.Cleanup(srv.Close)
	return m, srv.URL
}

// tokenOf is what the upstream's "whoami" tool got: the token of the HTTP
// request that carried the call when there is one, else the one in _meta.
func tokenOf(req *mcp.CallToolRequest) (string, string) {
	if req.Extra != nil && req.Extra.Header != nil {
		if h := req.Extra.Header.Get("Authorization"); h != "" {
			return strings.TrimPrefix(h, "Bearer "), "header"
		}
	}
	tok, _ := req.Params.Meta[tokens.MetaKey].(string)
	return tok, "meta"
}

// whoami answers with the verified claims of the call's token.
func whoami(v *tokens.Verifier) mcp.ToolHandler {
	return func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		tok, where := tokenOf(req)
		c, err := v.Verify(ctx, tok)
		if err != nil {
			return &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: where + ": " + err.Error()}}}, nil
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: fmt.Sprintf("%s tenant=%s sub=%s rid=%s", where, c.Tenant, c.Subject, c.RequestID)}}}, nil
	}
}

// headerLog records the Authorization header of every HTTP request an
// upstream receives.
type headerLog struct {
	mu   sync.Mutex
	seen []string // "METHOD authorization"
}

func (l *headerLog) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.mu.Lock()
		l.seen = append(l.seen, r.Method+" "+r.Header.Get("Authorization"))
		l.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

func (l *headerLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.seen...)
}

// TestEveryUpstreamRequestCarriesAMintedToken: on every transport, each
// call carries a token naming its own caller, tenant and request id, even
// when calls of different tenants share one session concurrently; every
// other HTTP request (session set-up, streams) carries a valid token of
// the node itself.
func TestEveryUpstreamRequestCarriesAMintedToken(t *testing.T) {
	minter, jwks := newMinter(t, true)
	const server = "corp.test/whoami"
	v, err := tokens.NewVerifier(tokens.VerifierConfig{Issuer: testIssuer, Audience: server, JWKSURL: jwks})
	if err != nil {
		t.Fatal(err)
	}
	s := mcp.NewServer(&mcp.Implementation{Name: "whoami", Version: "1"}, nil)
	s.AddTool(&mcp.Tool{Name: "whoami", InputSchema: json.RawMessage(`{"type":"object"}`)}, whoami(v))
	get := func(*http.Request) *mcp.Server { return s }
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}

	p := NewPool(Config{CallTimeout: 10 * time.Second}, WithTokens(minter))
	defer p.Close()
	for _, tc := range []struct {
		name, transport, via string
		handler              http.Handler
	}{
		{"streamable stateless", TransportStreamableHTTP, "header", mcp.NewStreamableHTTPHandler(get, &mcp.StreamableHTTPOptions{Stateless: true})},
		{"streamable with sessions", TransportStreamableHTTP, "header", mcp.NewStreamableHTTPHandler(get, nil)},
		{"legacy SSE", TransportSSE, "meta", mcp.NewSSEHandler(get, nil)},
		{"stdio", TransportStdio, "meta", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := &headerLog{}
			target := Target{Server: server, Version: tc.name, Transport: tc.transport}
			if tc.handler != nil {
				srv := httptest.NewServer(log.wrap(tc.handler))
				defer srv.Close()
				target.URL = srv.URL
			} else {
				target.Command = exe
				target.Env = map[string]string{"MCPMESH_TEST_STDIO_SERVER": "1", "MCPMESH_TEST_JWKS": jwks}
			}
			defer p.Forget(target.Key())

			var wg sync.WaitGroup
			errs := make(chan error, 20)
			for i := range 20 {
				tenant := []string{"payroll", "benefits"}[i%2]
				caller := tokens.Caller{Principal: "apikey:" + tenant, Tenant: tenant, RequestID: fmt.Sprintf("req-%d", i)}
				wg.Go(func() {
					res, err := p.CallTool(tokens.ContextWithCaller(t.Context(), caller), target, &mcp.CallToolParams{Name: "whoami"}, nil)
					if err != nil {
						errs <- err
						return
					}
					want := fmt.Sprintf("%s tenant=%s sub=apikey:%s rid=req-%d", tc.via, tenant, tenant, i)
					if res.IsError || text(res) != want {
						errs <- fmt.Errorf("call %d as %s: %q, want %q", i, tenant, text(res), want)
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			// A request of the node's own (no caller) is the node's.
			if _, err := p.ListTools(t.Context(), target); err != nil {
				t.Fatal(err)
			}

			seen := log.all()
			if tc.handler != nil && len(seen) < 21 {
				t.Fatalf("the upstream saw %d HTTP requests, want at least 21: %v", len(seen), seen)
			}
			for _, line := range seen {
				method, authz, _ := strings.Cut(line, " ")
				tok, ok := strings.CutPrefix(authz, "Bearer ")
				if !ok {
					t.Errorf("%s request without a bearer token: %q", method, authz)
					continue
				}
				if _, err := v.Verify(t.Context(), tok); err != nil {
					t.Errorf("%s request with a token the upstream refuses: %v", method, err)
				}
			}
		})
	}
}

// TestNoKeyNoCall: without a signing key the call fails before anything
// reaches the upstream.
func TestNoKeyNoCall(t *testing.T) {
	minter, _ := newMinter(t, false)
	log := &headerLog{}
	srv := httptest.NewServer(log.wrap(http.NotFoundHandler()))
	defer srv.Close()
	p := NewPool(Config{CallTimeout: 5 * time.Second}, WithTokens(minter))
	defer p.Close()
	target := Target{Server: "corp.test/x", Version: "1.0.0", Transport: TransportStreamableHTTP, URL: srv.URL}
	_, err := p.CallTool(t.Context(), target, &mcp.CallToolParams{Name: "t"}, nil)
	if !errors.Is(err, ErrNoToken) || !errors.Is(err, tokens.ErrNoKey) {
		t.Errorf("call without a key: err = %v, want ErrNoToken wrapping tokens.ErrNoKey", err)
	}
	if seen := log.all(); len(seen) != 0 {
		t.Errorf("the upstream received %v", seen)
	}
	if h := p.Health(); len(h) != 1 || h[0].Failures != 0 {
		t.Errorf("a missing key counted against the upstream's health: %+v", h)
	}
}
