package servers

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mcpmesh/mcpmesh/registry/card"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// mode is one way an upstream is served and reached: the handler's style and
// the protocol revision the client asks for.
type mode struct {
	name      string
	stateless bool
	ask       string // ClientSessionOptions.ProtocolVersion; "" = the client's latest
	want      string // the revision the session must end up on
}

// modes covers both handler styles with a current and a legacy client.
var modes = []mode{
	{"stateless/2026-07-28", true, "", "2026-07-28"},
	{"stateless/2025-06-18", true, "2025-06-18", "2025-06-18"},
	{"stateful/2025-11-25", false, "", "2025-11-25"},
	{"stateful/2025-06-18", false, "2025-06-18", "2025-06-18"},
}

// headerTransport adds fixed headers to every request, as an agent's client
// with a bearer token would.
type headerTransport struct {
	header http.Header
	next   http.RoundTripper
}

func (h headerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	for k, vs := range h.header {
		req.Header[k] = vs
	}
	return h.next.RoundTrip(req)
}

// connect serves h on a loopback test server and connects a go-sdk client
// to it the way m says; it checks the negotiated revision.
func connect(t *testing.T, h http.Handler, m mode, opts *mcp.ClientOptions, header http.Header) *mcp.ClientSession {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	tr := &mcp.StreamableClientTransport{Endpoint: srv.URL}
	if header != nil {
		tr.HTTPClient = &http.Client{Transport: headerTransport{header, http.DefaultTransport}}
	}
	c := mcp.NewClient(&mcp.Implementation{Name: "servers-test", Version: "0.0.1"}, opts)
	cs, err := c.Connect(t.Context(), tr, &mcp.ClientSessionOptions{ProtocolVersion: m.ask})
	if err != nil {
		t.Fatalf("connect (%s): %v", m.name, err)
	}
	t.Cleanup(func() { _ = cs.Close() })
	if got := cs.InitializeResult().ProtocolVersion; got != m.want {
		t.Fatalf("negotiated protocol %q, want %q", got, m.want)
	}
	return cs
}

// example is one example server version.
type example struct {
	name, version string
	new           func(t *testing.T) *mcp.Server
}

var examplesUnderTest = []example{
	{DirectoryName, "1.0.0", func(t *testing.T) *mcp.Server { return NewDirectory(access(DirectoryName)) }},
	{LedgerName, "1.0.0", func(t *testing.T) *mcp.Server { return mustLedger(t, "1.0.0", testLedgerOptions()) }},
	{LedgerName, "2.0.0", func(t *testing.T) *mcp.Server { return mustLedger(t, "2.0.0", testLedgerOptions()) }},
}

// cardHashes returns tool name → definition hash from the example's card.
func cardHashes(t *testing.T, name, version string) map[string]string {
	t.Helper()
	c, err := Card(name, version)
	if err != nil {
		t.Fatal(err)
	}
	tvs, err := c.ToolVersions()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, tv := range tvs {
		out[tv.Name] = tv.Hash
	}
	return out
}

func hashOf(t *testing.T, v any) string {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	h, err := card.CanonicalHash(raw)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestToolsListMatchesCard lists the tools through the go-sdk client in
// every mode and checks each definition hashes like the card's, as the
// gateway's pin check will.
func TestToolsListMatchesCard(t *testing.T) {
	for _, ex := range examplesUnderTest {
		for _, m := range modes {
			t.Run(ex.name+"@"+ex.version+"/"+m.name, func(t *testing.T) {
				cs := connect(t, Handler(ex.new(t), m.stateless), m, nil, nil)
				res, err := cs.ListTools(t.Context(), nil)
				if err != nil {
					t.Fatal(err)
				}
				got := map[string]string{}
				for _, tool := range res.Tools {
					got[tool.Name] = hashOf(t, tool)
				}
				if diff := cmp.Diff(cardHashes(t, ex.name, ex.version), got); diff != "" {
					t.Errorf("advertised tool hashes differ from the card (-card +advertised):\n%s", diff)
				}
			})
		}
	}
}

// TestToolsListWireJSON reads tools/list off the wire, without the go-sdk
// client's decoding, and hashes each tool's raw JSON.
func TestToolsListWireJSON(t *testing.T) {
	for _, ex := range examplesUnderTest {
		t.Run(ex.name+"@"+ex.version, func(t *testing.T) {
			srv := httptest.NewServer(Handler(ex.new(t), true))
			t.Cleanup(srv.Close)
			msg := rawCall(t, srv.URL, `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}`)
			var body struct {
				Result struct {
					Tools []json.RawMessage `json:"tools"`
				} `json:"result"`
			}
			if err := json.Unmarshal(msg, &body); err != nil {
				t.Fatalf("decode %s: %v", msg, err)
			}
			got := map[string]string{}
			for _, raw := range body.Result.Tools {
				var named struct{ Name string }
				if err := json.Unmarshal(raw, &named); err != nil {
					t.Fatal(err)
				}
				h, err := card.CanonicalHash(raw)
				if err != nil {
					t.Fatal(err)
				}
				got[named.Name] = h
			}
			if diff := cmp.Diff(cardHashes(t, ex.name, ex.version), got); diff != "" {
				t.Errorf("wire tool hashes differ from the card (-card +wire):\n%s\nwire: %s", diff, msg)
			}
		})
	}
}

// rawCall POSTs one legacy-era (2025-06-18) JSON-RPC request to a stateless
// handler and returns the JSON-RPC response, from JSON or an SSE stream.
func rawCall(t *testing.T, url, body string) json.RawMessage {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %s", resp.Status)
	}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		var buf bytes.Buffer
		if _, err := buf.ReadFrom(resp.Body); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok && strings.Contains(data, `"id":1`) {
			return json.RawMessage(data)
		}
	}
	t.Fatalf("no response in the event stream (scan error: %v)", sc.Err())
	return nil
}

// TestMCPToolRefusesDrift checks the constructor guard: a card definition
// the go-sdk cannot advertise byte-for-byte (here a key mcp.Tool lacks) is
// an error, not a tool the gateway would quarantine later.
func TestMCPToolRefusesDrift(t *testing.T) {
	def := json.RawMessage(`{"name":"t","inputSchema":{"type":"object"},"x-extra":true}`)
	h, err := card.CanonicalHash(def)
	if err != nil {
		t.Fatal(err)
	}
	_, err = mcpTool(card.ToolVersion{Server: "x/y", Version: "1.0.0", Name: "t", Definition: def, Hash: h})
	if err == nil || !strings.Contains(err.Error(), "quarantine") {
		t.Fatalf("mcpTool = %v, want an error about quarantine", err)
	}
}

func TestNewAndCard(t *testing.T) {
	tests := []struct {
		name, version string
		wantErr       bool
	}{
		{DirectoryName, "1.0.0", false},
		{LedgerName, "1.0.0", false},
		{LedgerName, "2.0.0", false},
		{DirectoryName, "2.0.0", true},
		{LedgerName, "3.0.0", true},
		{"corp.hr/payroll", "1.0.0", true},
	}
	for _, tt := range tests {
		t.Run(tt.name+"@"+tt.version, func(t *testing.T) {
			s, err := New(tt.name, tt.version)
			if tt.wantErr {
				if !errors.Is(err, ErrUnknownServer) {
					t.Fatalf("New = %v, want ErrUnknownServer", err)
				}
				if _, err := Card(tt.name, tt.version); !errors.Is(err, ErrUnknownServer) {
					t.Fatalf("Card = %v, want ErrUnknownServer", err)
				}
				return
			}
			if err != nil || s == nil {
				t.Fatalf("New = %v, %v", s, err)
			}
			c, err := Card(tt.name, tt.version)
			if err != nil || c.Name != tt.name || c.Version != tt.version {
				t.Fatalf("Card = %+v, %v", c, err)
			}
		})
	}
}

// callTool calls a tool and fails the test on a protocol error.
func callTool(t *testing.T, cs *mcp.ClientSession, name string, args map[string]any) *mcp.CallToolResult {
	t.Helper()
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("call %s(%v): %v", name, args, err)
	}
	return res
}

// wantRPCError checks err is a JSON-RPC error with code.
func wantRPCError(t *testing.T, err error, code int64) {
	t.Helper()
	var rpcErr *jsonrpc.Error
	if !errors.As(err, &rpcErr) {
		t.Fatalf("got %v, want a JSON-RPC error %d", err, code)
	}
	if rpcErr.Code != code {
		t.Fatalf("JSON-RPC error code %d (%s), want %d", rpcErr.Code, rpcErr.Message, code)
	}
}

// text joins a result's text content.
func text(res *mcp.CallToolResult) string {
	var parts []string
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			parts = append(parts, tc.Text)
		}
	}
	return strings.Join(parts, "\n")
}

// decodeStructured re-decodes a result's structuredContent into v.
func decodeStructured(t *testing.T, res *mcp.CallToolResult, v any) {
	t.Helper()
	if res.StructuredContent == nil {
		t.Fatalf("no structuredContent; content: %s", text(res))
	}
	raw, err := json.Marshal(res.StructuredContent)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("decode structuredContent %s: %v", raw, err)
	}
}

// checkOutputSchema validates a result's structuredContent against the
// card's outputSchema of the tool.
func checkOutputSchema(t *testing.T, name, version, tool string, res *mcp.CallToolResult) {
	t.Helper()
	c, err := Card(name, version)
	if err != nil {
		t.Fatal(err)
	}
	tools, err := c.Tools()
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(tools, func(ct card.Tool) bool { return ct.Name == tool })
	if i < 0 || len(tools[i].OutputSchema) == 0 {
		t.Fatalf("card %s@%s has no outputSchema for %s", name, version, tool)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(tools[i].OutputSchema))
	if err != nil {
		t.Fatal(err)
	}
	comp := jsonschema.NewCompiler()
	comp.AssertFormat()
	if err := comp.AddResource("mem://output.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := comp.Compile("mem://output.json")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(res.StructuredContent)
	if err != nil {
		t.Fatal(err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if err := sch.Validate(inst); err != nil {
		t.Errorf("structuredContent %s of %s does not match the card's outputSchema: %v", raw, tool, err)
	}
}

// waitFor polls cond until it holds or d passes, then reports what it last
// saw.
func waitFor(t *testing.T, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s; last saw %s", d, what, last)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
