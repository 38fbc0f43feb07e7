package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.uber.org/goleak"

	"github.com/mcpmesh/mcpmesh/trust/tokens"
)

// With MCPMESH_TEST_STDIO_SERVER=1 the test binary is a stdio MCP server
// whose tools report its environment and exit on demand.
func TestMain(m *testing.M) {
	if os.Getenv("MCPMESH_TEST_STDIO_SERVER") == "1" {
		serveStdio()
		return
	}
	goleak.VerifyTestMain(m)
}

func serveStdio() {
	s := mcp.NewServer(&mcp.Implementation{Name: "stdio-test", Version: "1"}, &mcp.ServerOptions{
		SubscribeHandler:   func(context.Context, *mcp.SubscribeRequest) error { return nil },
		UnsubscribeHandler: func(context.Context, *mcp.UnsubscribeRequest) error { return nil },
	})
	for _, uri := range []string{"file:///a", "file:///b"} {
		s.AddResource(&mcp.Resource{URI: uri, Name: uri}, func(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
			return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: req.Params.URI, Text: "x"}}}, nil
		})
	}
	// touch updates file:///a.
	s.AddTool(&mcp.Tool{Name: "touch", InputSchema: json.RawMessage(`{"type":"object"}`)}, func(ctx context.Context, _ *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		s.ResourceUpdated(ctx, &mcp.ResourceUpdatedNotificationParams{URI: "file:///a"})
		return &mcp.CallToolResult{}, nil
	})
	s.AddTool(&mcp.Tool{Name: "env", InputSchema: json.RawMessage(`{"type":"object"}`)}, func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: strings.Join(os.Environ(), "\n")}}}, nil
	})
	s.AddTool(&mcp.Tool{Name: "exit", InputSchema: json.RawMessage(`{"type":"object"}`)}, func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		os.Exit(3)
		return nil, nil
	})
	// hang answers only when cancelled, noting it in
	// $MCPMESH_TEST_CANCELLED (if set); stuck never answers; pid names
	// the server process.
	s.AddTool(&mcp.Tool{Name: "hang", InputSchema: json.RawMessage(`{"type":"object"}`)}, func(ctx context.Context, _ *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		<-ctx.Done()
		if f := os.Getenv("MCPMESH_TEST_CANCELLED"); f != "" {
			os.WriteFile(f, []byte("cancelled"), 0o600)
		}
		return nil, ctx.Err()
	})
	s.AddTool(&mcp.Tool{Name: "stuck", InputSchema: json.RawMessage(`{"type":"object"}`)}, func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		select {}
	})
	s.AddTool(&mcp.Tool{Name: "pid", InputSchema: json.RawMessage(`{"type":"object"}`)}, func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: strconv.Itoa(os.Getpid())}}}, nil
	})
	if jwks := os.Getenv("MCPMESH_TEST_JWKS"); jwks != "" {
		v, err := tokens.NewVerifier(tokens.VerifierConfig{Issuer: testIssuer, Audience: "corp.test/whoami", JWKSURL: jwks})
		if err != nil {
			panic(err)
		}
		s.AddTool(&mcp.Tool{Name: "whoami", InputSchema: json.RawMessage(`{"type":"object"}`)}, whoami(v))
	}
	s.Run(context.Background(), &mcp.StdioTransport{})
}

func httpUpstream(t *testing.T, tool mcp.ToolHandler) string {
	t.Helper()
	s := mcp.NewServer(&mcp.Implementation{Name: "http-test", Version: "1"}, nil)
	s.AddTool(&mcp.Tool{Name: "t", InputSchema: json.RawMessage(`{"type":"object"}`)}, tool)
	srv := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{Stateless: true}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func text(r *mcp.CallToolResult) string { return r.Content[0].(*mcp.TextContent).Text }

func TestStdioGetsAMinimalEnvironmentAndIsRestarted(t *testing.T) {
	t.Setenv("MCPMESH_NODE_SECRET", "must-not-leak")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := NewPool(Config{CallTimeout: 10 * time.Second})
	defer p.Close()
	target := Target{Server: "corp.test/stdio", Version: "1.0.0", Transport: TransportStdio, Command: exe,
		Env: map[string]string{"MCPMESH_TEST_STDIO_SERVER": "1", "REGION": "eu"}}
	res, err := p.CallTool(t.Context(), target, &mcp.CallToolParams{Name: "env"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	env := text(res)
	if strings.Contains(env, "must-not-leak") || strings.Contains(env, "MCPMESH_NODE_SECRET") {
		t.Errorf("the stdio server inherited the node's environment:\n%s", env)
	}
	if !strings.Contains(env, "REGION=eu") || !strings.Contains(env, "PATH=") {
		t.Errorf("declared variables or PATH missing:\n%s", env)
	}

	// The server exits mid-call: the call fails, the session is dropped, and
	// a later call starts the server again (after the restart backoff).
	if _, err := p.CallTool(t.Context(), target, &mcp.CallToolParams{Name: "exit"}, nil); err == nil {
		t.Fatal("call that killed the server succeeded")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err = p.CallTool(t.Context(), target, &mcp.CallToolParams{Name: "env"}, nil)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stdio server not restarted within 10s; last error: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestBreakerOpensAfterRepeatedFailures(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String() + "/mcp"
	ln.Close()
	p := NewPool(Config{BreakerThreshold: 3, BreakerCooldown: time.Hour, CallTimeout: 5 * time.Second})
	defer p.Close()
	target := Target{Server: "corp.test/dead", Version: "1.0.0", Transport: TransportStreamableHTTP, URL: dead}
	// Each failed dial counts; between them the pool backs off (and fails
	// fast meanwhile), so keep calling until the breaker itself is open.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := p.CallTool(t.Context(), target, &mcp.CallToolParams{Name: "t"}, nil)
		if err == nil {
			t.Fatal("call to a dead upstream succeeded")
		}
		if !errors.Is(err, ErrNotSent) {
			// No session, so the tools/call was never sent: the gateway
			// may tell the agent to retry it (mayhaverun.go).
			t.Fatalf("a call to a dead upstream failed with %v, not marked ErrNotSent", err)
		}
		if h := p.Health(); len(h) == 1 && h[0].Open {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("breaker never opened; health %+v, last error %v", p.Health(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := p.CallTool(t.Context(), target, &mcp.CallToolParams{Name: "t"}, nil); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "circuit open") {
		t.Errorf("call with the breaker open: err = %v, want a fast ErrUnavailable", err)
	}
	h := p.Health()
	if len(h) != 1 || !h[0].Open || h[0].Failures < 3 || h[0].LastError == "" {
		t.Errorf("health = %+v, want an open breaker with the last error", h)
	}
}

func TestBulkheadRefusesPastCapacity(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	url := httpUpstream(t, func(ctx context.Context, _ *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		started <- struct{}{}
		<-release
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "done"}}}, nil
	})
	p := NewPool(Config{MaxConcurrent: 1})
	defer p.Close()
	target := Target{Server: "corp.test/slow", Version: "1.0.0", Transport: TransportStreamableHTTP, URL: url}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if _, err := p.CallTool(context.Background(), target, &mcp.CallToolParams{Name: "t"}, nil); err != nil {
			t.Errorf("first call: %v", err)
		}
	}()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("first call never reached the upstream")
	}
	if _, err := p.CallTool(t.Context(), target, &mcp.CallToolParams{Name: "t"}, nil); !errors.Is(err, ErrBusy) {
		t.Errorf("second concurrent call: err = %v, want ErrBusy", err)
	}
	close(release)
	wg.Wait()
	if res, err := p.CallTool(t.Context(), target, &mcp.CallToolParams{Name: "t"}, nil); err != nil || text(res) != "done" {
		t.Errorf("after the first call finished: %v, %v", res, err)
	}
}

func TestUpstreamAnswersAreNotFailures(t *testing.T) {
	url := httpUpstream(t, func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: "no such account"}}}, nil
	})
	p := NewPool(Config{BreakerThreshold: 2})
	defer p.Close()
	target := Target{Server: "corp.test/x", Version: "1.0.0", Transport: TransportStreamableHTTP, URL: url}
	for range 5 {
		res, err := p.CallTool(t.Context(), target, &mcp.CallToolParams{Name: "t"}, nil)
		if err != nil || !res.IsError {
			t.Fatalf("tool error result: %+v, %v", res, err)
		}
	}
	// An unknown tool is the upstream's JSON-RPC answer, passed on as such.
	_, err := p.CallTool(t.Context(), target, &mcp.CallToolParams{Name: "nope"}, nil)
	if _, ok := Answered(err); err == nil || !ok {
		t.Errorf("unknown tool: err = %v, want the upstream's JSON-RPC error", err)
	}
	if h := p.Health(); h[0].Failures != 0 || h[0].Open {
		t.Errorf("answers counted as failures: %+v", h)
	}
}
