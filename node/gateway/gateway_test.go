package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/google/jsonschema-go/jsonschema"
	"github.com/hashicorp/raft"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpmesh/mcpmesh/node/upstream"
	"github.com/mcpmesh/mcpmesh/registry/card"
	"github.com/mcpmesh/mcpmesh/registry/state"
	"github.com/mcpmesh/mcpmesh/trust/agentauth"
	"github.com/mcpmesh/mcpmesh/trust/apikey"
)

// registry drives a real FSM the way Raft would.
type registry struct {
	t     testing.TB
	fsm   *state.FSM
	index uint64
}

func newRegistry(t testing.TB) *registry {
	t.Helper()
	f, err := state.Open("state", state.WithFS(vfs.NewMem()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	r := &registry{t: t, fsm: f}
	r.apply(state.PutTenant{Tenant: state.Tenant{Name: "payroll", Owners: []string{"alice"}}, By: "admin", At: t0})
	r.apply(state.CreateAPIKey{Key: state.APIKey{ID: testKeyID, Tenant: "payroll", Name: "test agent", Hash: apikey.Hash(testKey)}, By: "admin", At: t0})
	// Policy is default deny; tests of other features permit everything.
	r.apply(state.PutPolicies{Files: []state.PolicyFile{{Name: "allow-all.cedar", Text: allowAll}}, By: "admin", At: t0})
	return r
}

const allowAll = "permit (principal, action, resource);"

// testKey is the API key test agents authenticate with: a real credential,
// so that tests can check it never reaches an upstream.
const (
	testKeyID = "testagent234"
	testKey   = "mcpk_" + testKeyID + "_agentsecretagentsecretagentsecretagentsecre"
)

func (r *registry) apply(cmd any) {
	r.t.Helper()
	data, err := state.Encode(cmd)
	if err != nil {
		r.t.Fatal(err)
	}
	r.index++
	if res := r.fsm.Apply(&raft.Log{Index: r.index, Type: raft.LogCommand, Data: data}); res != nil {
		if err, ok := res.(error); ok {
			r.t.Fatalf("apply %T: %v", cmd, err)
		}
	}
}

var t0 = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

const lookupTool = `{"name":"lookup","description":"Looks a thing up.","inputSchema":{"type":"object","properties":{"q":{"type":"string"}},"required":["q"]}}`

func cardJSON(name, version, url, tools string) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"name":%q,"description":"test server","version":%q,"_meta":{
		"io.mcpmesh/governance":{"owner":"o","team":"t","dataClassification":"internal","riskTier":"low","costPerCall":0,
		"upstream":{"transport":"streamable-http","url":%q}},
		"io.mcpmesh/tools":[%s]}}`, name, version, url, tools))
}

func (r *registry) register(name, version, url, tools string, approve bool) {
	r.t.Helper()
	raw := cardJSON(name, version, url, tools)
	if _, err := card.Parse(raw); err != nil {
		r.t.Fatalf("test card invalid: %v", err)
	}
	r.apply(state.SubmitVersion{Card: raw, By: "ci", At: t0})
	if approve {
		r.apply(state.Transition{Server: name, Version: version, To: card.StateApproved, By: "rev", At: t0})
	}
}

// upstreamServer is a go-sdk MCP server that records what it received.
type upstreamServer struct {
	*httptest.Server
	mu      sync.Mutex
	headers []http.Header
	calls   []string
}

func newUpstream(t testing.TB, label string) *upstreamServer {
	t.Helper()
	return newUpstreamOf(t, label, lookupTool)
}

// newUpstreamOf is newUpstream serving tool, a definition of lookup.
func newUpstreamOf(t testing.TB, label, tool string) *upstreamServer {
	t.Helper()
	u := &upstreamServer{}
	s := mcp.NewServer(&mcp.Implementation{Name: "up-" + label, Version: "1"}, nil)
	var def mcp.Tool
	json.Unmarshal([]byte(tool), &def)
	s.AddTool(&def, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		var args struct{ Q string }
		json.Unmarshal(req.Params.Arguments, &args)
		u.mu.Lock()
		u.calls = append(u.calls, args.Q)
		u.mu.Unlock()
		return &mcp.CallToolResult{
			Content:           []mcp.Content{&mcp.TextContent{Text: label + ":" + args.Q}},
			StructuredContent: map[string]any{"from": label, "q": args.Q},
		}, nil
	})
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{Stateless: true})
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.headers = append(u.headers, r.Header.Clone())
		u.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(u.Close)
	return u
}

// authenticated puts g behind the front door's authentication, as a node does.
func authenticated(r *registry, g *Gateway, anon ...string) http.Handler {
	authn := agentauth.New(agentauth.Config{AnonymousRoutes: anon, SVIDPathPrefix: "/agent/",
		Methods: []agentauth.Method{agentauth.MethodAPIKey, agentauth.MethodSVID}}, r.fsm)
	return authn.Middleware(g)
}

func newGateway(t testing.TB, r *registry, anon ...string) (*Gateway, *httptest.Server) {
	t.Helper()
	pool := upstream.NewPool(upstream.Config{CallTimeout: 10 * time.Second})
	t.Cleanup(func() { pool.Close() })
	if anon == nil {
		anon = []string{"/mcp", "/mcp/s/*"}
	}
	g := New(Config{Namespace: "hr"}, r.fsm, pool, WithClock(func() time.Time { return t0.Add(time.Hour) }))
	t.Cleanup(func() { g.Close() })
	if err := g.Sync(); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(authenticated(r, g, anon...))
	t.Cleanup(srv.Close)
	return g, srv
}

// headerTransport adds the agent's own credentials to every request.
type headerTransport struct{ h http.Header }

func (t headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, v := range t.h {
		r.Header[k] = v
	}
	return http.DefaultTransport.RoundTrip(r)
}

func connect(t *testing.T, url, version string) *mcp.ClientSession {
	t.Helper()
	return connectWith(t, url, version, http.Header{"Authorization": {"Bearer " + testKey}, "Cookie": {"session=agent-cookie"}})
}

// connectWith connects sending headers h on every request; without an
// Authorization header the session is anonymous.
func connectWith(t *testing.T, url, version string, h http.Header) *mcp.ClientSession {
	t.Helper()
	c := mcp.NewClient(&mcp.Implementation{Name: "agent", Version: "1"}, nil)
	hc := &http.Client{Transport: headerTransport{h}}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	s, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url, HTTPClient: hc}, &mcp.ClientSessionOptions{ProtocolVersion: version})
	if err != nil {
		t.Fatalf("connect %s with %s: %v", url, version, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func toolNames(t *testing.T, s *mcp.ClientSession) []string {
	t.Helper()
	res, err := s.ListTools(t.Context(), nil)
	if err != nil {
		t.Fatalf("tools/list: %v", err)
	}
	var names []string
	for _, tool := range res.Tools {
		names = append(names, tool.Name)
	}
	return names
}

var eras = []string{"2026-07-28", "2025-11-25", "2025-06-18"}

func TestServesApprovedToolsInBothEras(t *testing.T) {
	r := newRegistry(t)
	dir := newUpstream(t, "directory")
	other := newUpstream(t, "other")
	r.register("corp.hr/directory", "1.0.0", dir.URL, lookupTool+`,{"name":"count","inputSchema":{"type":"object"}}`, true)
	r.register("corp.hr/other", "1.0.0", other.URL, lookupTool, true)
	r.register("corp.hr/shadow", "1.0.0", other.URL, `{"name":"secret","inputSchema":{"type":"object"}}`, false)
	_, srv := newGateway(t, r)

	for _, era := range eras {
		t.Run(era, func(t *testing.T) {
			s := connect(t, srv.URL+"/mcp", era)
			if got := s.InitializeResult().ProtocolVersion; got != era {
				t.Errorf("negotiated %s, want %s", got, era)
			}
			// Colliding names get the server's short name; order is by name.
			want := []string{"hr.count", "hr.directory.lookup", "hr.other.lookup"}
			if got := toolNames(t, s); !slices.Equal(got, want) {
				t.Errorf("tools = %v, want %v (the unapproved shadow server must not appear)", got, want)
			}
			res, err := s.CallTool(t.Context(), &mcp.CallToolParams{Name: "hr.directory.lookup", Arguments: map[string]any{"q": "ada-" + era}})
			if err != nil {
				t.Fatalf("call: %v", err)
			}
			if res.IsError || len(res.Content) != 1 || res.Content[0].(*mcp.TextContent).Text != "directory:ada-"+era {
				t.Errorf("result = %+v", res)
			}
			if sc, _ := json.Marshal(res.StructuredContent); !strings.Contains(string(sc), `"from":"directory"`) {
				t.Errorf("structuredContent lost: %s", sc)
			}

			one := connect(t, srv.URL+"/mcp/s/hr/corp.hr/other", era)
			if got := toolNames(t, one); !slices.Equal(got, []string{"lookup"}) {
				t.Errorf("per-server tools = %v, want [lookup]", got)
			}
			res, err = one.CallTool(t.Context(), &mcp.CallToolParams{Name: "lookup", Arguments: map[string]any{"q": "x"}})
			if err != nil || res.Content[0].(*mcp.TextContent).Text != "other:x" {
				t.Errorf("per-server call = %+v, %v", res, err)
			}
		})
	}

	// No agent credential ever reaches an upstream.
	for _, u := range []*upstreamServer{dir, other} {
		u.mu.Lock()
		for _, h := range u.headers {
			if h.Get("Authorization") != "" || h.Get("Cookie") != "" {
				t.Errorf("upstream received agent credentials: Authorization=%q Cookie=%q", h.Get("Authorization"), h.Get("Cookie"))
			}
		}
		if len(u.headers) == 0 {
			t.Errorf("upstream %s received no requests", u.URL)
		}
		u.mu.Unlock()
	}
}

func TestUnapprovedServerIsUnreachable(t *testing.T) {
	r := newRegistry(t)
	up := newUpstream(t, "shadow")
	r.register("corp.hr/shadow", "1.0.0", up.URL, lookupTool, false)
	_, srv := newGateway(t, r)
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/mcp/s/hr/corp.hr/shadow", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("unapproved server endpoint: HTTP %d, want 404", resp.StatusCode)
	}
	s := connect(t, srv.URL+"/mcp", "2026-07-28")
	if got := toolNames(t, s); len(got) != 0 {
		t.Errorf("aggregated view lists %v for an unapproved server", got)
	}
	if _, err := s.CallTool(t.Context(), &mcp.CallToolParams{Name: "hr.lookup", Arguments: map[string]any{"q": "x"}}); err == nil {
		t.Error("calling an unapproved server's tool succeeded")
	}
	up.mu.Lock()
	defer up.mu.Unlock()
	if len(up.calls) != 0 {
		t.Errorf("the unapproved upstream was called: %v", up.calls)
	}
}

func TestViewsFollowTheRegistry(t *testing.T) {
	r := newRegistry(t)
	v1 := newUpstream(t, "v1")
	v2 := newUpstream(t, "v2")
	r.register("corp.hr/directory", "1.0.0", v1.URL, lookupTool, true)
	g, srv := newGateway(t, r)
	s := connect(t, srv.URL+"/mcp", "2025-11-25") // a legacy session lives across changes
	call := func() string {
		t.Helper()
		res, err := s.CallTool(t.Context(), &mcp.CallToolParams{Name: "hr.lookup", Arguments: map[string]any{"q": "q"}})
		if err != nil {
			t.Fatalf("call: %v", err)
		}
		return res.Content[0].(*mcp.TextContent).Text
	}
	if got := call(); got != "v1:q" {
		t.Fatalf("before: %s", got)
	}
	// A newer approved version takes over.
	r.register("corp.hr/directory", "2.0.0", v2.URL, lookupTool, true)
	g.Sync()
	if got := call(); got != "v2:q" {
		t.Errorf("after approving 2.0.0: %s, want v2:q", got)
	}
	// Retiring every live version removes the tool.
	r.apply(state.Transition{Server: "corp.hr/directory", Version: "2.0.0", To: card.StateRetired, By: "rev", At: t0})
	g.Sync()
	if got := call(); got != "v1:q" {
		t.Errorf("after retiring 2.0.0: %s, want v1:q (1.0.0 is still approved)", got)
	}
	r.apply(state.Transition{Server: "corp.hr/directory", Version: "1.0.0", To: card.StateRetired, By: "rev", At: t0})
	g.Sync()
	if got := toolNames(t, s); len(got) != 0 {
		t.Errorf("after retiring every version: tools %v", got)
	}
}

func TestRoutesNeedAnonymousGrant(t *testing.T) {
	r := newRegistry(t)
	up := newUpstream(t, "d")
	r.register("corp.hr/directory", "1.0.0", up.URL, lookupTool, true)
	_, srv := newGateway(t, r, "/mcp/s/hr/corp.hr/directory")
	for path, want := range map[string]int{"/mcp": http.StatusUnauthorized, "/mcp/s/hr/corp.hr/other": http.StatusUnauthorized} {
		resp, err := http.Post(srv.URL+path, "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want || resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: HTTP %d (WWW-Authenticate %q), want %d with a challenge", path, resp.StatusCode, resp.Header.Get("WWW-Authenticate"), want)
		}
	}
	s := connect(t, srv.URL+"/mcp/s/hr/corp.hr/directory", "2026-07-28")
	if got := toolNames(t, s); !slices.Equal(got, []string{"lookup"}) {
		t.Errorf("granted route: tools %v", got)
	}
}

func TestUpstreamDownIsAClearError(t *testing.T) {
	r := newRegistry(t)
	up := newUpstream(t, "d")
	url := up.URL
	up.Close()
	r.register("corp.hr/directory", "1.0.0", url, lookupTool, true)
	_, srv := newGateway(t, r)
	s := connect(t, srv.URL+"/mcp", "2026-07-28")
	_, err := s.CallTool(t.Context(), &mcp.CallToolParams{Name: "hr.lookup", Arguments: map[string]any{"q": "x"}})
	var je *jsonrpc.Error
	if !errors.As(err, &je) || je.Code != codeUpstreamUnavailable || codeUpstreamUnavailable != -32019 || !strings.Contains(je.Message, "corp.hr/directory@1.0.0") {
		t.Errorf("call to a dead upstream: err = %v, want error -32019 naming the upstream", err)
	}
}

func TestVersionsPinsDeprecationAndSunset(t *testing.T) {
	r := newRegistry(t)
	v1 := newUpstream(t, "v1")
	v2 := newUpstream(t, "v2")
	old := newUpstream(t, "old")
	const s = "corp.finance/ledger"
	r.register(s, "0.9.0", old.URL, lookupTool, true)
	r.register(s, "1.0.0", v1.URL, lookupTool, true)
	r.register(s, "2.0.0", v2.URL, lookupTool, true)
	r.register(s, "3.0.0", v2.URL, lookupTool, false) // submitted only
	// The gateway's clock is t0+1h: 1.0.0's sunset is ahead, 0.9.0's passed.
	r.apply(state.Transition{Server: s, Version: "1.0.0", To: card.StateDeprecated, By: "rev", At: t0,
		Deprecation: &card.Deprecation{Sunset: t0.Add(48 * time.Hour), Replacement: "2.0.0", Note: "get_balance returns an amount object"}})
	r.apply(state.Transition{Server: s, Version: "0.9.0", To: card.StateDeprecated, By: "rev", At: t0,
		Deprecation: &card.Deprecation{Sunset: t0.Add(30 * time.Minute), Replacement: "2.0.0", Note: "see the migration guide"}})
	g, srv := newGateway(t, r)
	if at := g.nextSunset(); !at.Equal(t0.Add(48 * time.Hour)) {
		t.Errorf("next sunset = %s, want 1.0.0's", at)
	}

	for _, era := range eras {
		t.Run(era, func(t *testing.T) {
			sess := connect(t, srv.URL+"/mcp", era)
			call := func(pin string) (*mcp.CallToolResult, error) {
				p := &mcp.CallToolParams{Name: "hr.lookup", Arguments: map[string]any{"q": "q"}}
				if pin != "" {
					p.Meta = mcp.Meta{MetaVersion: pin}
				}
				return sess.CallTool(t.Context(), p)
			}
			// No pin: the newest live version answers, and says so.
			res, err := call("")
			if err != nil || res.Content[0].(*mcp.TextContent).Text != "v2:q" || res.Meta[MetaVersion] != "2.0.0" || res.Meta[MetaDeprecation] != nil {
				t.Errorf("unpinned: %+v (meta %v), %v", res, res.Meta, err)
			}
			// Pinned to the deprecated 1.0.0: answers, with a warning.
			res, err = call("1.0.0")
			if err != nil || res.Content[0].(*mcp.TextContent).Text != "v1:q" || res.Meta[MetaVersion] != "1.0.0" {
				t.Fatalf("pinned 1.0.0: %+v, %v", res, err)
			}
			dep, _ := res.Meta[MetaDeprecation].(map[string]any)
			if dep["replacement"] != "2.0.0" || !strings.Contains(fmt.Sprint(dep["message"]), "get_balance returns an amount object") {
				t.Errorf("deprecation warning = %v", res.Meta[MetaDeprecation])
			}
			// Past its sunset: an error naming the replacement and the note.
			_, err = call("0.9.0")
			if err == nil || !strings.Contains(err.Error(), "was sunset") || !strings.Contains(err.Error(), "use 2.0.0: see the migration guide") {
				t.Errorf("pinned to a sunset version: err = %v", err)
			}
			for pin, want := range map[string]string{"3.0.0": "is submitted, not live", "9.9.9": "is not registered", "latest": "not a version"} {
				if _, err := call(pin); err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("pin %s: err = %v, want %q", pin, err, want)
				}
			}
		})
	}
	old.mu.Lock()
	defer old.mu.Unlock()
	if len(old.calls) != 0 {
		t.Errorf("the sunset version's upstream was called %d times", len(old.calls))
	}
}

func TestDeprecationHeaders(t *testing.T) {
	r := newRegistry(t)
	v1 := newUpstream(t, "v1")
	v2 := newUpstream(t, "v2")
	const s = "corp.hr/directory"
	r.register(s, "1.0.0", v1.URL, lookupTool, true)
	r.register(s, "2.0.0", v2.URL, lookupTool, true)
	sunset := t0.Add(72 * time.Hour)
	r.apply(state.Transition{Server: s, Version: "1.0.0", To: card.StateDeprecated, By: "rev", At: t0,
		Deprecation: &card.Deprecation{Sunset: sunset, Replacement: "2.0.0"}})
	_, srv := newGateway(t, r)
	post := func(meta string) *http.Response {
		body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"hr.lookup","arguments":{"q":"x"},"_meta":{` + meta + `"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"raw","version":"1"}}}}`
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/mcp", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("MCP-Protocol-Version", "2026-07-28")
		req.Header.Set("Mcp-Method", "tools/call")
		req.Header.Set("Mcp-Name", "hr.lookup")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	resp := post(`"io.mcpmesh/version":"1.0.0",`)
	if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("X-MCP-Deprecated"), "corp.hr/directory@1.0.0 is deprecated") || resp.Header.Get("Sunset") != sunset.Format(http.TimeFormat) {
		t.Errorf("pinned deprecated call: HTTP %d, X-MCP-Deprecated %q, Sunset %q", resp.StatusCode, resp.Header.Get("X-MCP-Deprecated"), resp.Header.Get("Sunset"))
	}
	resp = post("")
	if resp.Header.Get("X-MCP-Deprecated") != "" || resp.Header.Get("Sunset") != "" {
		t.Errorf("unpinned call (2.0.0 answers) carries deprecation headers: %q %q", resp.Header.Get("X-MCP-Deprecated"), resp.Header.Get("Sunset"))
	}
}

func TestChangedDefinitionQuarantinesTheVersion(t *testing.T) {
	r := newRegistry(t)
	honest := newUpstream(t, "honest")
	rug := newUpstream(t, "rug")
	// The registry pinned a different description than the rug server
	// serves: its definition changed after review.
	pinned := strings.Replace(lookupTool, "Looks a thing up.", "Looks a thing up, read-only.", 1)
	r.register("corp.hr/honest", "1.0.0", honest.URL, lookupTool, true)
	r.register("corp.hr/rug", "1.0.0", rug.URL, pinned, true)

	var mu sync.Mutex
	pool := upstream.NewPool(upstream.Config{CallTimeout: 10 * time.Second})
	t.Cleanup(func() { pool.Close() })
	g := New(Config{Namespace: "hr"}, r.fsm, pool,
		WithClock(func() time.Time { return t0.Add(time.Hour) }),
		WithQuarantine(func(_ context.Context, cmd []byte) error {
			mu.Lock()
			defer mu.Unlock()
			r.index++
			if res := r.fsm.Apply(&raft.Log{Index: r.index, Type: raft.LogCommand, Data: cmd}); res != nil {
				if err, ok := res.(error); ok {
					return err
				}
			}
			return nil
		}, func() bool { return true }))
	t.Cleanup(func() { g.Close() })
	if err := g.Sync(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	var sv state.ServerVersion
	for {
		mu.Lock()
		sv, _ = r.fsm.ServerVersion("corp.hr/rug", "1.0.0")
		mu.Unlock()
		if sv.State == card.StateQuarantined || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if sv.State != card.StateQuarantined {
		t.Fatalf("rug-pulled version is %s, want quarantined", sv.State)
	}
	last := sv.History[len(sv.History)-1]
	if last.By != "mcpmesh:definition-check" || !strings.Contains(last.Reason, "lookup (pinned") {
		t.Errorf("quarantine recorded as %+v", last)
	}
	if hv, _ := r.fsm.ServerVersion("corp.hr/honest", "1.0.0"); hv.State != card.StateApproved {
		t.Errorf("the honest server was quarantined too: %s", hv.State)
	}
	// Once the registry says quarantined, the tool is no longer served.
	mu.Lock()
	err := g.Sync()
	mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(authenticated(r, g, "/mcp"))
	t.Cleanup(srv.Close)
	s := connect(t, srv.URL+"/mcp", "2026-07-28")
	if got := toolNames(t, s); !slices.Equal(got, []string{"hr.honest.lookup"}) && !slices.Equal(got, []string{"hr.lookup"}) {
		t.Errorf("tools after quarantine = %v, want only the honest server's", got)
	}
	if _, err := s.CallTool(t.Context(), &mcp.CallToolParams{Name: "hr.rug.lookup", Arguments: map[string]any{"q": "x"}}); err == nil {
		t.Error("the quarantined tool still answers")
	}
}

// progressUpstream serves "slow": it reports progress three times, then
// finishes, or waits until its call is cancelled (arguments {"hang":true})
// and reports that on cancelled.
func progressUpstream(t *testing.T) (string, chan struct{}) {
	t.Helper()
	cancelled := make(chan struct{}, 4)
	s := mcp.NewServer(&mcp.Implementation{Name: "slow", Version: "1"}, nil)
	s.AddTool(&mcp.Tool{Name: "slow", InputSchema: json.RawMessage(`{"type":"object"}`)}, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		var args struct{ Hang bool }
		json.Unmarshal(req.Params.Arguments, &args)
		if tok := req.Params.GetProgressToken(); tok != nil {
			for i := 1; i <= 3; i++ {
				req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: tok, Progress: float64(i), Total: 3, Message: fmt.Sprintf("step %d", i)})
			}
		}
		if args.Hang {
			select {
			case <-ctx.Done():
				cancelled <- struct{}{}
				return nil, ctx.Err()
			case <-time.After(30 * time.Second):
			}
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "done"}}}, nil
	})
	srv := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil))
	t.Cleanup(srv.Close)
	return srv.URL, cancelled
}

func TestProgressAndCancellationCrossTheGateway(t *testing.T) {
	r := newRegistry(t)
	url, cancelled := progressUpstream(t)
	r.register("corp.hr/slow", "1.0.0", url, `{"name":"slow","inputSchema":{"type":"object"}}`, true)
	_, srv := newGateway(t, r)
	for _, era := range eras {
		t.Run(era, func(t *testing.T) {
			var mu sync.Mutex
			var got []*mcp.ProgressNotificationParams
			c := mcp.NewClient(&mcp.Implementation{Name: "agent", Version: "1"}, &mcp.ClientOptions{
				ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
					mu.Lock()
					got = append(got, req.Params)
					mu.Unlock()
				},
			})
			s, err := c.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: srv.URL + "/mcp"}, &mcp.ClientSessionOptions{ProtocolVersion: era})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			params := &mcp.CallToolParams{Name: "hr.slow", Arguments: map[string]any{}}
			params.SetProgressToken("agent-token-" + era)
			if _, err := s.CallTool(t.Context(), params); err != nil {
				t.Fatal(err)
			}
			// Notifications are delivered asynchronously; wait for them.
			var seen []mcp.ProgressNotificationParams
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				mu.Lock()
				seen = seen[:0]
				for _, p := range got {
					seen = append(seen, *p)
				}
				mu.Unlock()
				if len(seen) >= 3 || time.Now().After(deadline) {
					break
				}
			}
			ok := len(seen) == 3
			for i, p := range seen {
				ok = ok && p.ProgressToken == "agent-token-"+era && p.Progress == float64(i+1) && p.Message == fmt.Sprintf("step %d", i+1)
			}
			if !ok {
				t.Errorf("progress reaching the agent = %+v, want 3 notifications under the agent's own token", seen)
			}

			// The agent gives up: the upstream's call is cancelled too.
			ctx, cancel := context.WithCancel(t.Context())
			hang := &mcp.CallToolParams{Name: "hr.slow", Arguments: map[string]any{"hang": true}}
			hang.SetProgressToken("hang-" + era)
			done := make(chan error, 1)
			go func() {
				_, err := s.CallTool(ctx, hang)
				done <- err
			}()
			deadline := time.Now().Add(10 * time.Second)
			for {
				mu.Lock()
				started := len(got) >= 6
				mu.Unlock()
				if started || time.Now().After(deadline) {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			cancel()
			select {
			case <-cancelled:
			case <-time.After(10 * time.Second):
				t.Fatalf("cancelling the agent's call did not cancel the upstream's within 10s")
			}
			<-done
		})
	}
}

func TestInvalidArgumentsNeverReachTheUpstream(t *testing.T) {
	r := newRegistry(t)
	up := newUpstream(t, "d")
	r.register("corp.hr/directory", "1.0.0", up.URL, lookupTool, true)
	_, srv := newGateway(t, r)
	for _, era := range eras {
		s := connect(t, srv.URL+"/mcp", era)
		for name, args := range map[string]map[string]any{
			"missing required": {},
			"wrong type":       {"q": 42},
		} {
			_, err := s.CallTool(t.Context(), &mcp.CallToolParams{Name: "hr.lookup", Arguments: args})
			var want string
			switch name {
			case "missing required":
				want = "/q: is required (required)"
			case "wrong type":
				want = "(type)"
			}
			if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "do not match its input schema") {
				t.Errorf("%s %s: err = %v, want a -32602 naming %q", era, name, err, want)
			}
		}
		if _, err := s.CallTool(t.Context(), &mcp.CallToolParams{Name: "hr.lookup", Arguments: map[string]any{"q": "ok"}}); err != nil {
			t.Errorf("%s valid call: %v", era, err)
		}
	}
	up.mu.Lock()
	defer up.mu.Unlock()
	if len(up.calls) != len(eras) || slices.ContainsFunc(up.calls, func(q string) bool { return q != "ok" }) {
		t.Errorf("the upstream saw calls %q, want only the %d valid ones", up.calls, len(eras))
	}
}

func richUpstream(t *testing.T) string {
	t.Helper()
	s := mcp.NewServer(&mcp.Implementation{Name: "rich", Version: "1"}, &mcp.ServerOptions{
		CompletionHandler: func(_ context.Context, req *mcp.CompleteRequest) (*mcp.CompleteResult, error) {
			return &mcp.CompleteResult{Completion: mcp.CompletionResultDetails{Values: []string{req.Params.Argument.Value + "-done"}}}, nil
		},
	})
	var def mcp.Tool
	json.Unmarshal([]byte(lookupTool), &def)
	s.AddTool(&def, func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "ok"}}}, nil
	})
	s.AddResource(&mcp.Resource{URI: "test://readme", Name: "readme", MIMEType: "text/plain"}, func(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: req.Params.URI, MIMEType: "text/plain", Text: "hello from upstream"}}}, nil
	})
	s.AddResourceTemplate(&mcp.ResourceTemplate{URITemplate: "test://items/{id}", Name: "item"}, func(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: req.Params.URI, Text: "item " + req.Params.URI}}}, nil
	})
	s.AddPrompt(&mcp.Prompt{Name: "greet", Arguments: []*mcp.PromptArgument{{Name: "who", Required: true}}}, func(_ context.Context, req *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
		return &mcp.GetPromptResult{Messages: []*mcp.PromptMessage{{Role: "user", Content: &mcp.TextContent{Text: "hello " + req.Params.Arguments["who"]}}}}, nil
	})
	srv := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{Stateless: true}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestPerServerEndpointPassesResourcesPromptsCompletion(t *testing.T) {
	r := newRegistry(t)
	r.register("corp.hr/rich", "1.0.0", richUpstream(t), lookupTool, true)
	_, srv := newGateway(t, r)
	for _, era := range eras {
		t.Run(era, func(t *testing.T) {
			s := connect(t, srv.URL+"/mcp/s/hr/corp.hr/rich", era)
			caps := s.InitializeResult().Capabilities
			if caps.Resources == nil || caps.Prompts == nil || caps.Completions == nil {
				t.Errorf("capabilities = %+v, want resources, prompts and completions", caps)
			}
			rl, err := s.ListResources(t.Context(), nil)
			if err != nil || len(rl.Resources) != 1 || rl.Resources[0].URI != "test://readme" {
				t.Fatalf("resources/list = %+v, %v", rl, err)
			}
			rr, err := s.ReadResource(t.Context(), &mcp.ReadResourceParams{URI: "test://readme"})
			if err != nil || rr.Contents[0].Text != "hello from upstream" {
				t.Errorf("resources/read = %+v, %v", rr, err)
			}
			tl, err := s.ListResourceTemplates(t.Context(), nil)
			if err != nil || len(tl.ResourceTemplates) != 1 {
				t.Errorf("resources/templates/list = %+v, %v", tl, err)
			}
			rr, err = s.ReadResource(t.Context(), &mcp.ReadResourceParams{URI: "test://items/7"})
			if err != nil || rr.Contents[0].Text != "item test://items/7" {
				t.Errorf("templated read = %+v, %v", rr, err)
			}
			pl, err := s.ListPrompts(t.Context(), nil)
			if err != nil || len(pl.Prompts) != 1 || pl.Prompts[0].Name != "greet" {
				t.Errorf("prompts/list = %+v, %v", pl, err)
			}
			pg, err := s.GetPrompt(t.Context(), &mcp.GetPromptParams{Name: "greet", Arguments: map[string]string{"who": "ada"}})
			if err != nil || pg.Messages[0].Content.(*mcp.TextContent).Text != "hello ada" {
				t.Errorf("prompts/get = %+v, %v", pg, err)
			}
			cr, err := s.Complete(t.Context(), &mcp.CompleteParams{Ref: &mcp.CompleteReference{Type: "ref/prompt", Name: "greet"}, Argument: mcp.CompleteParamsArgument{Name: "who", Value: "ad"}})
			if err != nil || len(cr.Completion.Values) != 1 || cr.Completion.Values[0] != "ad-done" {
				t.Errorf("completion/complete = %+v, %v", cr, err)
			}
			if _, err := s.ReadResource(t.Context(), &mcp.ReadResourceParams{URI: "test://missing"}); err == nil {
				t.Error("reading a missing resource succeeded")
			}
		})
	}
}

func TestAggregatedPrompts(t *testing.T) {
	r := newRegistry(t)
	r.register("corp.hr/rich", "1.0.0", richUpstream(t), lookupTool, true)
	r.register("corp.hr/rich2", "1.0.0", richUpstream(t), `{"name":"other","inputSchema":{"type":"object"}}`, true)
	_, srv := newGateway(t, r)
	for _, era := range eras {
		t.Run(era, func(t *testing.T) {
			s := connect(t, srv.URL+"/mcp", era)
			if caps := s.InitializeResult().Capabilities; caps.Prompts == nil || caps.Completions == nil {
				t.Errorf("/mcp capabilities = %+v, want prompts and completions", caps)
			}
			pl, err := s.ListPrompts(t.Context(), nil)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, p := range pl.Prompts {
				names = append(names, p.Name)
			}
			if want := []string{"hr.rich.greet", "hr.rich2.greet"}; !slices.Equal(names, want) {
				t.Fatalf("prompts = %v, want %v", names, want)
			}
			for _, name := range names {
				pg, err := s.GetPrompt(t.Context(), &mcp.GetPromptParams{Name: name, Arguments: map[string]string{"who": name}})
				if err != nil || pg.Messages[0].Content.(*mcp.TextContent).Text != "hello "+name {
					t.Errorf("prompts/get %s = %+v, %v", name, pg, err)
				}
			}
			cr, err := s.Complete(t.Context(), &mcp.CompleteParams{Ref: &mcp.CompleteReference{Type: "ref/prompt", Name: "hr.rich2.greet"}, Argument: mcp.CompleteParamsArgument{Name: "who", Value: "x"}})
			if err != nil || len(cr.Completion.Values) != 1 || cr.Completion.Values[0] != "x-done" {
				t.Errorf("completion = %+v, %v", cr, err)
			}
			if _, err := s.GetPrompt(t.Context(), &mcp.GetPromptParams{Name: "hr.nope"}); err == nil || !strings.Contains(err.Error(), "unknown prompt") {
				t.Errorf("unknown prompt: err = %v", err)
			}
		})
	}
}

// inputUpstream serves "greet", which asks the agent for its name by
// elicitation (a multi round-trip result) unless the agent declared no
// elicitation capability, and records the capabilities and client it saw.
func inputUpstream(t *testing.T) (url string, seen func() (caps []*mcp.ClientCapabilities, clients []string)) {
	t.Helper()
	var mu sync.Mutex
	var caps []*mcp.ClientCapabilities
	var clients []string
	s := mcp.NewServer(&mcp.Implementation{Name: "asker", Version: "1"}, nil)
	s.AddTool(&mcp.Tool{Name: "greet", InputSchema: json.RawMessage(`{"type":"object"}`)}, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		mu.Lock()
		caps = append(caps, req.ClientCapabilities())
		if ci := req.ClientInfo(); ci != nil {
			clients = append(clients, ci.Name)
		}
		mu.Unlock()
		if r, ok := req.Params.InputResponses["name"].(*mcp.ElicitResult); ok {
			if req.Params.RequestState != "asked-once" {
				return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: "bad state " + req.Params.RequestState}
			}
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: fmt.Sprintf("hello %v", r.Content["name"])}}}, nil
		}
		if c := req.ClientCapabilities(); c == nil || c.Elicitation == nil {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "hello stranger"}}}, nil
		}
		return &mcp.CallToolResult{
			InputRequests: mcp.InputRequestMap{"name": &mcp.ElicitParams{Message: "Your name?",
				RequestedSchema: &jsonschema.Schema{Type: "object", Properties: map[string]*jsonschema.Schema{"name": {Type: "string"}}}}},
			RequestState: "asked-once",
		}, nil
	})
	srv := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{Stateless: true}))
	t.Cleanup(srv.Close)
	return srv.URL, func() ([]*mcp.ClientCapabilities, []string) {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(caps), slices.Clone(clients)
	}
}

const greetTool = `{"name":"greet","inputSchema":{"type":"object"}}`

func TestInputRequestsReachTheAgent(t *testing.T) {
	r := newRegistry(t)
	url, seen := inputUpstream(t)
	r.register("example.com/asker", "1.0.0", url, greetTool, true)
	_, srv := newGateway(t, r)
	for _, era := range eras {
		t.Run(era, func(t *testing.T) {
			asked := 0
			c := mcp.NewClient(&mcp.Implementation{Name: "agent", Version: "1"}, &mcp.ClientOptions{
				ElicitationHandler: func(ctx context.Context, req *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
					asked++
					return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"name": "Ada"}}, nil
				},
			})
			s, err := c.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: srv.URL + "/mcp"}, &mcp.ClientSessionOptions{ProtocolVersion: era})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			res, err := s.CallTool(t.Context(), &mcp.CallToolParams{Name: "hr.greet"})
			if err != nil {
				t.Fatalf("call: %v", err)
			}
			if got := res.Content[0].(*mcp.TextContent).Text; got != "hello Ada" || asked != 1 {
				t.Fatalf("got %q after %d elicitations, want %q after 1", got, asked, "hello Ada")
			}
			if res.Meta[MetaVersion] != "1.0.0" {
				t.Fatalf("result _meta = %v, want the answering version", res.Meta)
			}
		})
	}
	// An agent that cannot answer elicitations is not asked: the upstream
	// sees the agent's capabilities, not the node's.
	s := connect(t, srv.URL+"/mcp", "2026-07-28")
	res, err := s.CallTool(t.Context(), &mcp.CallToolParams{Name: "hr.greet"})
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Content[0].(*mcp.TextContent).Text; got != "hello stranger" {
		t.Fatalf("agent without elicitation got %q", got)
	}
	_, clients := seen()
	for _, c := range clients {
		if c != "mcpmesh" {
			t.Fatalf("the upstream saw client %q; the agent's identity must not cross", c)
		}
	}
}

func TestRequestStateIsCheckedAndBindsTheVersion(t *testing.T) {
	r := newRegistry(t)
	url, _ := inputUpstream(t)
	r.register("example.com/asker", "1.0.0", url, greetTool, true)
	_, srv := newGateway(t, r)
	c := mcp.NewClient(&mcp.Implementation{Name: "agent", Version: "1"}, &mcp.ClientOptions{
		ElicitationHandler: func(context.Context, *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"name": "Ada"}}, nil
		},
		MultiRoundTrip: &mcp.MultiRoundTripOptions{Disabled: true},
	})
	s, err := c.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: srv.URL + "/mcp"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	first, err := s.CallTool(t.Context(), &mcp.CallToolParams{Name: "hr.greet"})
	if err != nil {
		t.Fatal(err)
	}
	if !first.NeedsInput() || first.InputRequests["name"] == nil {
		t.Fatalf("first round = %+v, want input_required asking for name", first)
	}
	if w, err := unwrapState(first.RequestState); err != nil || w.Version != "1.0.0" || w.State != "asked-once" {
		t.Fatalf("requestState %q unwraps to %+v, %v", first.RequestState, w, err)
	}
	answers := mcp.InputResponseMap{"name": &mcp.ElicitResult{Action: "accept", Content: map[string]any{"name": "Ada"}}}
	for name, tc := range map[string]struct {
		state string
		meta  mcp.Meta
		want  string
	}{
		"tampered":        {state: first.RequestState + "-TAMPERED", want: "not issued by this gateway"},
		"foreign":         {state: "asked-once", want: "not issued by this gateway"},
		"pin disagrees":   {state: first.RequestState, meta: mcp.Meta{MetaVersion: "2.0.0"}, want: "belongs to version 1.0.0"},
		"another version": {state: wrapState("9.9.9", "asked-once"), want: "9.9.9 is not registered"},
	} {
		_, err := s.CallTool(t.Context(), &mcp.CallToolParams{Name: "hr.greet", Meta: tc.meta, InputResponses: answers, RequestState: tc.state})
		var je *jsonrpc.Error
		if !errors.As(err, &je) || je.Code != jsonrpc.CodeInvalidParams || !strings.Contains(je.Message, tc.want) {
			t.Errorf("%s: err = %v, want -32602 mentioning %q", name, err, tc.want)
		}
	}
	res, err := s.CallTool(t.Context(), &mcp.CallToolParams{Name: "hr.greet", InputResponses: answers, RequestState: first.RequestState})
	if err != nil || res.NeedsInput() || res.Content[0].(*mcp.TextContent).Text != "hello Ada" {
		t.Fatalf("retry: %+v, %v", res, err)
	}
}

func TestWaitSyncedFollowsSync(t *testing.T) {
	r := newRegistry(t)
	g, _ := newGateway(t, r) // synced at the empty registry
	r.register("corp.hr/directory", "1.0.0", newUpstream(t, "a").URL, lookupTool, true)
	index := r.fsm.AppliedIndex()
	short, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := g.WaitSynced(short, index); err == nil {
		t.Fatal("WaitSynced returned before the gateway synced the new registry state")
	}
	done := make(chan error, 1)
	go func() { done <- g.WaitSynced(t.Context(), index) }()
	if err := g.Sync(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WaitSynced did not return within 10s of Sync")
	}
	if !g.agg.served() {
		t.Error("synced, but /mcp serves no tool")
	}
}

// TestRunSyncsAWriteAppliedDuringSync: an entry applied while Sync reads
// the registry is synced by Run at once, not at the next wake-up (10m).
func TestRunSyncsAWriteAppliedDuringSync(t *testing.T) {
	r := newRegistry(t)
	// The real clock: with newGateway's fixed one, Run's wake-up deadline
	// is in the past and it would spin instead of waiting.
	pool := upstream.NewPool(upstream.Config{CallTimeout: 10 * time.Second})
	t.Cleanup(func() { pool.Close() })
	g := New(Config{Namespace: "hr"}, r.fsm, pool)
	t.Cleanup(func() { g.Close() })
	var once sync.Once
	g.syncedRead = func() {
		once.Do(func() {
			r.register("corp.hr/directory", "1.0.0", newUpstream(t, "a").URL, lookupTool, true)
		})
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	// Wait until the hook has written, then for the gateway to serve it.
	var index uint64
	for deadline := time.Now().Add(10 * time.Second); index == 0 || index < 4; {
		if time.Now().After(deadline) {
			t.Fatalf("the registry write during Sync did not happen; applied index %d", index)
		}
		index = r.fsm.AppliedIndex()
		time.Sleep(time.Millisecond)
	}
	wctx, wcancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer wcancel()
	if err := g.WaitSynced(wctx, r.fsm.AppliedIndex()); err != nil {
		t.Fatalf("Run did not sync the entry applied during Sync: %v", err)
	}
}
