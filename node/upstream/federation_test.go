package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpmesh/mcpmesh/trust/tokens"
)

// testFederation sends every federation request to one test server and
// sends a tools/call with "assertion:<ns>:<server>:<tool>:<principal>" as
// its assertion. When fail is set, it fails the tools/call requests that
// reach the server with it, after they were served, and marks them in
// doubt.
type testFederation struct {
	srv  *httptest.Server
	fail error

	mu   sync.Mutex
	seen []string // the namespaces requests were addressed to
}

// testCall is a testFederation's ForwardedCall.
type testCall struct {
	assertion string

	mu    sync.Mutex
	doubt error
}

func (c *testCall) InDoubt() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.doubt
}

func (f *testFederation) HTTPClient() *http.Client {
	return &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		ns, ok := FederationNamespace(r.URL)
		f.mu.Lock()
		f.seen = append(f.seen, ns)
		f.mu.Unlock()
		if !ok {
			return nil, &url.Error{Op: "federation", URL: r.URL.String(), Err: http.ErrNotSupported}
		}
		u, _ := url.Parse(f.srv.URL)
		r = r.Clone(r.Context())
		r.URL.Scheme, r.URL.Host, r.Host = u.Scheme, u.Host, u.Host
		fc, _ := ForwardedCallFromContext(r.Context()).(*testCall)
		if fc != nil {
			r.Header.Set("Authorization", "Bearer "+fc.assertion)
		}
		resp, err := http.DefaultTransport.RoundTrip(r)
		if err == nil && fc != nil && f.fail != nil {
			resp.Body.Close()
			fc.mu.Lock()
			fc.doubt = fmt.Errorf("%w: %w", ErrInDoubt, f.fail)
			fc.mu.Unlock()
			return nil, f.fail
		}
		return resp, err
	})}
}

func (f *testFederation) PrepareCall(ctx context.Context, t Target, tool string) (ForwardedCall, error) {
	c, _ := tokens.CallerFromContext(ctx)
	return &testCall{assertion: "assertion:" + t.Namespace + ":" + t.Server + ":" + tool + ":" + c.Principal}, nil
}

func (f *testFederation) CallTimeout() time.Duration { return 0 }

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestFederationTargets: a tool of another BU is called over the
// Federation's client at its FederationURL; the tools/call request carries
// the assertion minted for that call and caller in its Authorization
// header (never in _meta, never the node's upstream token), and the
// session's other requests carry no credential at all.
func TestFederationTargets(t *testing.T) {
	const server = "corp.finance/ledger"
	log := &headerLog{}
	var (
		mu    sync.Mutex
		calls []string
	)
	s := mcp.NewServer(&mcp.Implementation{Name: "finance", Version: "1"}, nil)
	s.AddTool(&mcp.Tool{Name: "generate_report", InputSchema: json.RawMessage(`{"type":"object"}`)}, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		tok, where := tokenOf(req)
		mu.Lock()
		calls = append(calls, where+" "+tok)
		mu.Unlock()
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "report"}}}, nil
	})
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{Stateless: true})
	mux := http.NewServeMux()
	mux.Handle(FederationPath+server, log.wrap(h))
	fed := &testFederation{srv: httptest.NewServer(mux)}
	defer fed.srv.Close()

	minter, _ := newMinter(t, true)
	p := NewPool(Config{CallTimeout: 10 * time.Second}, WithTokens(minter), WithFederation(fed))
	defer p.Close()
	target := Target{Namespace: "finance", Server: server, Version: "2.0.0", Transport: TransportFederation, URL: FederationURL("finance", server)}
	if got := target.Key(); got != "finance:corp.finance/ledger@2.0.0" {
		t.Fatalf("Key() = %q", got)
	}
	ctx := tokens.ContextWithCaller(context.Background(), tokens.Caller{Principal: "oidc:alice", Tenant: "payroll", RequestID: "r1"})
	for i := range 2 {
		res, err := p.CallTool(ctx, target, &mcp.CallToolParams{Name: "generate_report", Arguments: map[string]any{}}, nil)
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if res.IsError || len(res.Content) != 1 {
			t.Fatalf("call %d: result %+v", i, res)
		}
	}
	want := "header assertion:finance:corp.finance/ledger:generate_report:oidc:alice"
	mu.Lock()
	for i, c := range calls {
		if c != want {
			t.Errorf("call %d reached the exporter with %q; want %q", i, c, want)
		}
	}
	mu.Unlock()
	var withCredential int
	for _, r := range log.all() {
		method, auth, _ := strings.Cut(r, " ")
		switch {
		case auth == "":
		case strings.HasPrefix(auth, "Bearer assertion:"):
			withCredential++
		default:
			t.Errorf("%s request carried %q; want an assertion or nothing", method, auth)
		}
	}
	if withCredential != 2 {
		t.Errorf("%d requests carried an assertion; want the 2 tools/call requests: %v", withCredential, log.all())
	}
	fed.mu.Lock()
	for _, ns := range fed.seen {
		if ns != "finance" {
			t.Errorf("a request was addressed to namespace %q", ns)
		}
	}
	fed.mu.Unlock()

	// Without a Federation the pool refuses such targets, and says why.
	bare := NewPool(Config{CallTimeout: 5 * time.Second})
	defer bare.Close()
	if _, err := bare.CallTool(ctx, target, &mcp.CallToolParams{Name: "generate_report"}, nil); err == nil || !strings.Contains(err.Error(), "federation is not configured") {
		t.Fatalf("call without federation: %v", err)
	}
}

// TestSlowRemoteToolKeepsTheBU: a call to another BU that runs out of the
// call timeout (the remote tool was slow) does not count against that BU:
// the next call goes through at once, where an unreachable upstream's
// failure would make the pool wait before dialling again.
func TestSlowRemoteToolKeepsTheBU(t *testing.T) {
	const server = "corp.finance/ledger"
	release := make(chan struct{})
	s := mcp.NewServer(&mcp.Implementation{Name: "finance", Version: "1"}, nil)
	s.AddTool(&mcp.Tool{Name: "generate_report", InputSchema: json.RawMessage(`{"type":"object"}`)}, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		if strings.Contains(string(req.Params.Arguments), `"slow"`) {
			select {
			case <-ctx.Done():
			case <-release:
			}
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "report"}}}, nil
	})
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{Stateless: true})
	mux := http.NewServeMux()
	mux.Handle(FederationPath+server, h)
	fed := &testFederation{srv: httptest.NewServer(mux)}
	defer fed.srv.Close()
	p := NewPool(Config{CallTimeout: 300 * time.Millisecond, BreakerThreshold: 1}, WithFederation(fed))
	defer p.Close()
	defer close(release) // first: the server's Close waits for the held call
	target := Target{Namespace: "finance", Server: server, Version: "2.0.0", Transport: TransportFederation, URL: FederationURL("finance", server)}
	ctx := tokens.ContextWithCaller(context.Background(), tokens.Caller{Principal: "oidc:alice", Tenant: "payroll", RequestID: "r1"})
	if _, err := p.CallTool(ctx, target, &mcp.CallToolParams{Name: "generate_report", Arguments: map[string]any{"slow": true}}, nil); err == nil {
		t.Fatal("a call held past the call timeout returned no error")
	}
	res, err := p.CallTool(ctx, target, &mcp.CallToolParams{Name: "generate_report", Arguments: map[string]any{}}, nil)
	if err != nil || res.IsError {
		t.Fatalf("the call after a slow one: %+v, %v; want it answered", res, err)
	}
}

// TestForwardedCallInDoubt: when the Federation's client says a call may
// have been carried out at the exporter without its answer arriving, the
// pool's error says so (ErrInDoubt), in place of go-sdk's account of the
// broken request; a call that fails otherwise does not.
func TestForwardedCallInDoubt(t *testing.T) {
	const server = "corp.finance/ledger"
	var runs sync.WaitGroup
	s := mcp.NewServer(&mcp.Implementation{Name: "finance", Version: "1"}, nil)
	s.AddTool(&mcp.Tool{Name: "transfer", InputSchema: json.RawMessage(`{"type":"object"}`)}, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		runs.Done()
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "done"}}}, nil
	})
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{Stateless: true})
	mux := http.NewServeMux()
	mux.Handle(FederationPath+server, h)
	broke := errors.New("the node broke off before answering")
	fed := &testFederation{srv: httptest.NewServer(mux), fail: broke}
	defer fed.srv.Close()
	p := NewPool(Config{CallTimeout: 10 * time.Second}, WithFederation(fed))
	defer p.Close()
	target := Target{Namespace: "finance", Server: server, Version: "2.0.0", Transport: TransportFederation, URL: FederationURL("finance", server)}
	ctx := tokens.ContextWithCaller(context.Background(), tokens.Caller{Principal: "oidc:alice", Tenant: "payroll", RequestID: "r1"})
	runs.Add(1)
	_, err := p.CallTool(ctx, target, &mcp.CallToolParams{Name: "transfer", Arguments: map[string]any{}}, nil)
	if !errors.Is(err, ErrInDoubt) || !strings.Contains(err.Error(), broke.Error()) {
		t.Fatalf("a call the exporter served but whose answer was lost = %v; want an error wrapping ErrInDoubt and saying why", err)
	}
	runs.Wait()

	// A call that fails while nothing marks it in doubt keeps its error.
	fed.srv.Close()
	fed.fail = nil
	_, err = p.CallTool(ctx, target, &mcp.CallToolParams{Name: "transfer", Arguments: map[string]any{}}, nil)
	if err == nil || errors.Is(err, ErrInDoubt) {
		t.Fatalf("a call to a closed server = %v; want an error, not ErrInDoubt", err)
	}
}
