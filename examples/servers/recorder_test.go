package servers

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func TestRecorderSeesWhatArrived(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			rec := NewRecorder(Handler(mustLedger(t, "1.0.0", testLedgerOptions()), m.stateless))
			agentHeader := as(t, LedgerName, "treasury")
			cs := connect(t, rec, m, nil, agentHeader)

			callTool(t, cs, "get_balance", map[string]any{"account_id": "ACC-1001"})
			_, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "transfer_funds", Arguments: map[string]any{"from_account": "nope"}})
			wantRPCError(t, err, jsonrpc.CodeInvalidParams)

			var methods []string
			for _, r := range rec.Requests() {
				methods = append(methods, r.Method)
			}
			for _, want := range []string{"tools/call"} {
				if !slices.Contains(methods, want) {
					t.Errorf("methods %v lack %s", methods, want)
				}
			}
			if !m.stateless && !slices.Contains(methods, "initialize") {
				t.Errorf("legacy session: methods %v lack initialize", methods)
			}

			// A legacy session streams the result before its HTTP handler
			// returns, so Done may be set just after the client has the
			// result: wait for it, bounded.
			var calls []RecordedRequest
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
				calls = rec.Calls("get_balance")
				if len(calls) != 1 || calls[0].Done || time.Now().After(deadline) {
					break
				}
			}
			if len(calls) != 1 {
				t.Fatalf("Calls(get_balance) = %d requests, want 1: %+v", len(calls), rec.Requests())
			}
			c := calls[0]
			var params struct {
				Arguments map[string]any `json:"arguments"`
			}
			if err := json.Unmarshal(c.Params, &params); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(map[string]any{"account_id": "ACC-1001"}, params.Arguments); diff != "" {
				t.Errorf("recorded arguments (-want +got):\n%s", diff)
			}
			if len(c.ID) == 0 || !c.Done || c.Canceled {
				t.Errorf("recorded call: id %s, done %v, canceled %v; want an id, done, not canceled", c.ID, c.Done, c.Canceled)
			}
			// Here the client talks to the upstream directly, so the
			// agent's header arrives; a gateway test asserts the opposite.
			if got := c.Header.Get("Authorization"); got != agentHeader.Get("Authorization") {
				t.Errorf("recorded Authorization %q", got)
			}
			if n := len(rec.Calls("transfer_funds")); n != 1 {
				t.Errorf("Calls(transfer_funds) = %d, want 1 (the invalid call reached this upstream)", n)
			}
			if n := len(rec.Calls("")); n != 2 {
				t.Errorf("Calls(\"\") = %d, want 2", n)
			}
			rec.Reset()
			if n := len(rec.Requests()); n != 0 {
				t.Errorf("after Reset: %d requests", n)
			}
		})
	}
}

// TestRecorderPassesBodiesThrough checks the wrapped handler gets every body
// byte, decodable or not, and that only JSON-RPC requests are recorded.
func TestRecorderPassesBodiesThrough(t *testing.T) {
	var (
		mu   sync.Mutex
		seen []string
	)
	rec := NewRecorder(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Error(err)
		}
		mu.Lock()
		seen = append(seen, string(b))
		mu.Unlock()
	}))
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	big := `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"x","arguments":{"pad":"` + strings.Repeat("a", maxRecordedBody) + `"}}}`
	bodies := []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_balance"}}`,
		`[{"jsonrpc":"2.0","method":"notifications/initialized"},{"jsonrpc":"2.0","id":2,"result":{}}]`,
		`not json`,
		big,
	}
	for _, b := range bodies {
		resp, err := http.Post(srv.URL, "application/json", strings.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(seen, bodies) {
		t.Errorf("the wrapped handler saw other bodies (lengths %d of %d)", len(seen), len(bodies))
	}
	var got []string
	for _, r := range rec.Requests() {
		got = append(got, r.Method+"/"+r.ToolName())
	}
	want := []string{"tools/call/get_balance", "notifications/initialized/"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("recorded (-want +got):\n%s", diff)
	}
}
