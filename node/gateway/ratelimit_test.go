package gateway

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mcpmesh/mcpmesh/node/audit"
	"github.com/mcpmesh/mcpmesh/registry/state"
)

// postCall posts one modern-era tools/call of hr.lookup as the payroll key.
func postCall(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	body := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"hr.lookup","arguments":{"q":"x"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"raw","version":"1"}}}}`
	req, _ := http.NewRequest(http.MethodPost, url+"/mcp", strings.NewReader(body))
	for k, v := range map[string]string{"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
		"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "hr.lookup", "Authorization": "Bearer " + testKey} {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestRateLimitedCall: past its burst a tenant's call is answered 429
// with Retry-After and the JSON-RPC error, counted and audited; a legacy
// session gets the refusal too; the upstream never sees the call.
func TestRateLimitedCall(t *testing.T) {
	r := newRegistry(t)
	up := newUpstream(t, "one")
	r.register("corp.hr/directory", "1.0.0", up.URL, lookupTool, true)
	// 1/h: nothing refills during the test.
	r.apply(state.PutLimits{Limits: []state.Limit{{Tenant: "payroll", Rate: "1/h", Burst: 2}}, By: "admin", At: t0})
	log := openAuditLog(t)
	srv := newAuditedGateway(t, r, log, nil)

	for i := range 2 {
		if resp, body := postCall(t, srv.URL); resp.StatusCode != http.StatusOK || strings.Contains(body, `"error"`) {
			t.Fatalf("call %d within the burst: HTTP %d %s", i+1, resp.StatusCode, body)
		}
	}
	resp, body := postCall(t, srv.URL)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "3600" || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("limited call: HTTP %d, Retry-After %q, Content-Type %q, body %s; want 429, 3600, application/json",
			resp.StatusCode, resp.Header.Get("Retry-After"), resp.Header.Get("Content-Type"), body)
	}
	var msg struct {
		ID    int           `json:"id"`
		Error jsonrpc.Error `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &msg); err != nil {
		t.Fatalf("429 body %q: %v", body, err)
	}
	var data RateLimitedData
	if err := json.Unmarshal(msg.Error.Data, &data); err != nil || msg.ID != 7 || msg.Error.Code != CodeRateLimited ||
		data.RetryAfterMs > 3_600_000 || data.RetryAfterMs < 3_590_000 || data.Scope != "tenant" || data.Limit.Tenant != "payroll" || data.Limit.Rate != "1/h" || data.Replicas != 1 {
		t.Errorf("429 body = %s; want error -32014 for request 7 with retryAfterMs of about an hour and the tenant limit", body)
	}
	if !strings.Contains(msg.Error.Message, "tenant=payroll allows 1/h (burst 2) across namespace hr") {
		t.Errorf("message = %q", msg.Error.Message)
	}

	// A legacy session's POST is answered 429 too; go-sdk's client reports it.
	s := connect(t, srv.URL+"/mcp", "2025-11-25")
	if err := callLookup(t, s, "hr.lookup"); err == nil || !strings.Contains(err.Error(), "Too Many Requests") {
		t.Errorf("legacy call past the limit: err = %v, want Too Many Requests", err)
	}

	up.mu.Lock()
	calls := len(up.calls)
	up.mu.Unlock()
	if calls != 2 {
		t.Errorf("the upstream got %d calls, want the 2 admitted", calls)
	}
	recs, err := log.Query(t.Context(), audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var limited []audit.Record
	for _, rec := range recs {
		if rec.Outcome == audit.OutcomeRateLimited {
			limited = append(limited, rec)
		}
	}
	if len(limited) != 2 || limited[0].ErrorCode != CodeRateLimited || limited[0].Tenant != "payroll" ||
		limited[0].Reason != "rate limit tenant=payroll: 1/h, burst 2, shared by 1 live replicas" {
		t.Errorf("rate_limited records = %+v; want 2 naming the limit", limited)
	}
}

func TestRateLimitMetrics(t *testing.T) {
	r := newRegistry(t)
	r.register("corp.hr/directory", "1.0.0", newUpstream(t, "one").URL, lookupTool, true)
	r.apply(state.PutLimits{Limits: []state.Limit{{Tool: "corp.hr/directory/lookup", Rate: "1/h", Burst: 1}}, By: "admin", At: t0})
	r.apply(state.SetLiveReplicas{Count: 1, Voters: 3, Down: []string{"n2", "n3"}, Leader: "n1", At: t0})
	g, srv := newGateway(t, r)
	for range 3 {
		postCall(t, srv.URL)
	}
	if n := testutil.ToFloat64(g.metrics.rateLimited.WithLabelValues("hr", "payroll", "hr.lookup", "tool")); n != 2 {
		t.Errorf("mcpmesh_rate_limited_total = %v, want 2", n)
	}
	if n := testutil.ToFloat64(g.metrics.calls.WithLabelValues("hr", "hr.lookup", "rate_limited")); n != 2 {
		t.Errorf("calls with outcome rate_limited = %v, want 2", n)
	}
	// The share follows the live replica count: 3 live replicas of a burst
	// of 3 leave this one a burst of 1.
	r.apply(state.PutLimits{Limits: []state.Limit{{Tenant: "payroll", Rate: "1/h", Burst: 3}}, By: "admin", At: t0})
	r.apply(state.SetLiveReplicas{Count: 3, Voters: 3, Leader: "n1", At: t0})
	if err := g.Sync(); err != nil {
		t.Fatal(err)
	}
	if n := testutil.ToFloat64(g.metrics.liveReplicas); n != 3 {
		t.Errorf("live replicas gauge = %v", n)
	}
	ok := 0
	for range 3 {
		if resp, _ := postCall(t, srv.URL); resp.StatusCode == http.StatusOK {
			ok++
		}
	}
	if ok != 1 {
		t.Errorf("%d calls admitted with a third of a burst of 3, want 1", ok)
	}
}

// TestLimitWriter: the answer becomes a 429 only when the limited call's
// response is all there is and nothing was sent yet.
func TestLimitWriter(t *testing.T) {
	const event = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32014}}\n\n"
	for _, tc := range []struct {
		name       string
		write      func(w *limitWriter)
		wantStatus int
		wantBody   string
	}{
		{"one SSE event", func(w *limitWriter) {
			w.limited(1500 * time.Millisecond)
			w.Header().Set("Content-Type", "text/event-stream")
			w.Write([]byte(event))
			w.Flush()
		}, 429, `{"jsonrpc":"2.0","id":1,"error":{"code":-32014}}`},
		{"batch of two", func(w *limitWriter) {
			w.limited(time.Second)
			w.WriteHeader(200)
			w.Write([]byte(event))
			w.Write([]byte("event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}}\n\n"))
		}, 200, event + "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}}\n\n"},
		{"already started", func(w *limitWriter) {
			w.Write([]byte("event: message\ndata: {}\n\n"))
			w.limited(time.Second)
			w.Write([]byte(event))
		}, 200, "event: message\ndata: {}\n\n" + event},
		{"not limited", func(w *limitWriter) { w.Write([]byte(event)) }, 200, event},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			w := &limitWriter{ResponseWriter: rec}
			tc.write(w)
			w.finish()
			if rec.Code != tc.wantStatus || rec.Body.String() != tc.wantBody {
				t.Errorf("HTTP %d %q; want %d %q", rec.Code, rec.Body.String(), tc.wantStatus, tc.wantBody)
			}
			if tc.wantStatus == 429 && rec.Header().Get("Retry-After") != "2" {
				t.Errorf("Retry-After = %q, want 2 (1.5 s rounded up)", rec.Header().Get("Retry-After"))
			}
		})
	}
}
