package servers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// testNow is the ledger's clock in tests.
var testNow = time.Date(2026, 3, 15, 10, 30, 0, 0, time.UTC)

// testLedgerOptions is a ledger at testNow whose report steps take no time.
func testLedgerOptions() ledgerOptions {
	return ledgerOptions{
		settings: newSettings([]Option{access(LedgerName)}),
		now:      func() time.Time { return testNow },
		after: func(time.Duration) <-chan time.Time {
			c := make(chan time.Time, 1)
			c <- testNow
			return c
		},
	}
}

func mustLedger(t *testing.T, version string, opts ledgerOptions) *mcp.Server {
	t.Helper()
	s, _, err := newLedger(version, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// jsonEqual compares a result's structuredContent with want, as JSON values.
func jsonEqual(t *testing.T, res *mcp.CallToolResult, want string) {
	t.Helper()
	var got, w any
	decodeStructured(t, res, &got)
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(w, got); diff != "" {
		t.Errorf("structuredContent (-want +got):\n%s", diff)
	}
}

// cost returns the result's CostMetaKey, or -1 when absent.
func cost(res *mcp.CallToolResult) float64 {
	if v, ok := res.Meta[CostMetaKey].(float64); ok {
		return v
	}
	return -1
}

// balanceOf reads the balance from get_balance's result in either version.
func balanceOf(t *testing.T, version string, res *mcp.CallToolResult) int64 {
	t.Helper()
	if res.IsError {
		t.Fatalf("get_balance failed: %s", text(res))
	}
	var v struct {
		BalanceCents int64 `json:"balance_cents"`
		Balance      struct {
			AmountCents int64 `json:"amount_cents"`
		} `json:"balance"`
	}
	decodeStructured(t, res, &v)
	if version == "1.0.0" {
		return v.BalanceCents
	}
	return v.Balance.AmountCents
}

func TestLedgerGetBalance(t *testing.T) {
	tests := []struct {
		name      string
		tenant    string // the caller's
		args      map[string]any
		wantV1    string // structuredContent in 1.0.0
		wantV2    string // structuredContent in 2.0.0
		wantError string // substring of an isError result
	}{
		{
			name: "today by default", tenant: "treasury",
			args:   map[string]any{"account_id": "ACC-1001"},
			wantV1: `{"account_id":"ACC-1001","balance_cents":125000000,"currency":"USD","as_of":"2026-03-15"}`,
			wantV2: `{"account_id":"ACC-1001","balance":{"amount_cents":125000000,"currency":"USD"},"as_of":"2026-03-15"}`,
		},
		{
			name: "other tenant, other currency, past date", tenant: "procurement",
			args:   map[string]any{"account_id": "ACC-2003", "as_of": "2026-02-01"},
			wantV1: `{"account_id":"ACC-2003","balance_cents":5000000,"currency":"GBP","as_of":"2026-02-01"}`,
			wantV2: `{"account_id":"ACC-2003","balance":{"amount_cents":5000000,"currency":"GBP"},"as_of":"2026-02-01"}`,
		},
		{name: "unknown account", tenant: "treasury", args: map[string]any{"account_id": "ACC-9999"}, wantError: "Unknown account ACC-9999"},
		{name: "another tenant's account is unknown", tenant: "treasury", args: map[string]any{"account_id": "ACC-2003"}, wantError: "Unknown account ACC-2003"},
		{name: "before the ledger opened", tenant: "treasury", args: map[string]any{"account_id": "ACC-1001", "as_of": "2025-12-31"}, wantError: "starts on 2026-01-01"},
		{name: "future date", tenant: "treasury", args: map[string]any{"account_id": "ACC-1001", "as_of": "2026-03-16"}, wantError: "in the future"},
	}
	for _, version := range []string{"1.0.0", "2.0.0"} {
		for _, m := range modes {
			t.Run(version+"/"+m.name, func(t *testing.T) {
				h := Handler(mustLedger(t, version, testLedgerOptions()), m.stateless)
				sessions := map[string]*mcp.ClientSession{
					"treasury":    connect(t, h, m, nil, as(t, LedgerName, "treasury")),
					"procurement": connect(t, h, m, nil, as(t, LedgerName, "procurement")),
				}
				for _, tt := range tests {
					t.Run(tt.name, func(t *testing.T) {
						res := callTool(t, sessions[tt.tenant], "get_balance", tt.args)
						if tt.wantError != "" {
							if !res.IsError || !strings.Contains(text(res), tt.wantError) {
								t.Fatalf("isError %v, text %q; want an isError result containing %q", res.IsError, text(res), tt.wantError)
							}
							if c := cost(res); c != -1 {
								t.Errorf("error result carries cost %v", c)
							}
							return
						}
						if res.IsError {
							t.Fatalf("isError result: %s", text(res))
						}
						want := tt.wantV1
						if version == "2.0.0" {
							want = tt.wantV2
						}
						jsonEqual(t, res, want)
						checkOutputSchema(t, LedgerName, version, "get_balance", res)
						if c := cost(res); c != 0.0015 {
							t.Errorf("_meta[%q] = %v, want 0.0015", CostMetaKey, c)
						}
					})
				}
			})
		}
	}
}

// TestTransferFunds runs one scenario per version and mode on a fresh
// ledger: steps depend on the ones before.
func TestTransferFunds(t *testing.T) {
	type step struct {
		name      string
		tool      string
		args      map[string]any
		want      string // structuredContent, when not an error and not a balance
		balance   int64  // get_balance: the expected balance
		wantError string // substring of an isError result
	}
	transfer := func(from, to string, amount int, currency, key string) map[string]any {
		args := map[string]any{"from_account": from, "to_account": to, "amount_cents": amount, "currency": currency, "reference": "PO-77"}
		if key != "" {
			args["idempotency_key"] = key
		}
		return args
	}
	balance := func(id, asOf string) map[string]any {
		args := map[string]any{"account_id": id}
		if asOf != "" {
			args["as_of"] = asOf
		}
		return args
	}
	steps := []step{
		{name: "book", tool: "transfer_funds", args: transfer("ACC-2002", "ACC-2001", 150_000, "USD", "order-0001"),
			want: `{"transfer_id":"TRF-000001","status":"booked","booked_at":"2026-03-15T10:30:00Z"}`},
		{name: "same key replays", tool: "transfer_funds", args: transfer("ACC-2002", "ACC-2001", 150_000, "USD", "order-0001"),
			want: `{"transfer_id":"TRF-000001","status":"booked","booked_at":"2026-03-15T10:30:00Z"}`},
		{name: "same key, other amount", tool: "transfer_funds", args: transfer("ACC-2002", "ACC-2001", 1, "USD", "order-0001"),
			wantError: "already used for transfer TRF-000001"},
		{name: "debited once", tool: "get_balance", args: balance("ACC-2002", ""), balance: 19_850_000},
		{name: "credited once", tool: "get_balance", args: balance("ACC-2001", ""), balance: 7_650_000},
		{name: "not before its booking date", tool: "get_balance", args: balance("ACC-2002", "2026-03-14"), balance: 20_000_000},
		{name: "book without key", tool: "transfer_funds", args: transfer("ACC-2002", "ACC-2001", 50_000, "USD", ""),
			want: `{"transfer_id":"TRF-000002","status":"booked","booked_at":"2026-03-15T10:30:00Z"}`},
		{name: "debited again", tool: "get_balance", args: balance("ACC-2002", ""), balance: 19_800_000},
		{name: "currency mismatch", tool: "transfer_funds", args: transfer("ACC-1001", "ACC-1002", 100, "USD", ""),
			wantError: "does not match account ACC-1002"},
		{name: "overdraft", tool: "transfer_funds", args: transfer("ACC-1003", "ACC-1001", 30_000_001, "USD", ""),
			wantError: "Insufficient funds"},
		{name: "unknown account", tool: "transfer_funds", args: transfer("ACC-1001", "ACC-9999", 100, "USD", ""),
			wantError: "Unknown account ACC-9999"},
		{name: "to itself", tool: "transfer_funds", args: transfer("ACC-1001", "ACC-1001", 100, "USD", ""),
			wantError: "to itself"},
		{name: "refused transfers booked nothing", tool: "get_balance", args: balance("ACC-1001", ""), balance: 125_000_000},
	}
	for _, version := range []string{"1.0.0", "2.0.0"} {
		for _, m := range modes {
			t.Run(version+"/"+m.name, func(t *testing.T) {
				// Both tenants' agents call the same ledger; each step is
				// by the tenant of its accounts.
				h := Handler(mustLedger(t, version, testLedgerOptions()), m.stateless)
				sessions := map[string]*mcp.ClientSession{
					"treasury":    connect(t, h, m, nil, as(t, LedgerName, "treasury")),
					"procurement": connect(t, h, m, nil, as(t, LedgerName, "procurement")),
				}
				for _, st := range steps {
					tenant := "treasury"
					if from, _ := st.args["from_account"].(string); strings.HasPrefix(from, "ACC-2") {
						tenant = "procurement"
					}
					if id, _ := st.args["account_id"].(string); strings.HasPrefix(id, "ACC-2") {
						tenant = "procurement"
					}
					res := callTool(t, sessions[tenant], st.tool, st.args)
					switch {
					case st.wantError != "":
						if !res.IsError || !strings.Contains(text(res), st.wantError) {
							t.Fatalf("%s: isError %v, text %q; want an isError result containing %q", st.name, res.IsError, text(res), st.wantError)
						}
					case st.tool == "get_balance":
						if got := balanceOf(t, version, res); got != st.balance {
							t.Fatalf("%s: balance %d, want %d", st.name, got, st.balance)
						}
					default:
						if res.IsError {
							t.Fatalf("%s: isError result: %s", st.name, text(res))
						}
						jsonEqual(t, res, st.want)
						checkOutputSchema(t, LedgerName, version, st.tool, res)
						if c := cost(res); c != 0.004 {
							t.Errorf("%s: _meta[%q] = %v, want 0.004", st.name, CostMetaKey, c)
						}
					}
				}
			})
		}
	}
}

// progressLog collects the progress notifications a client receives.
type progressLog struct {
	mu    sync.Mutex
	got   []mcp.ProgressNotificationParams
	first chan struct{} // closed on the first notification
	once  sync.Once
}

func newProgressLog() *progressLog { return &progressLog{first: make(chan struct{})} }

func (p *progressLog) handler(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
	p.mu.Lock()
	p.got = append(p.got, *req.Params)
	p.mu.Unlock()
	p.once.Do(func() { close(p.first) })
}

func (p *progressLog) snapshot() []mcp.ProgressNotificationParams {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]mcp.ProgressNotificationParams(nil), p.got...)
}

func TestGenerateReport(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			log := newProgressLog()
			cs := connect(t, Handler(mustLedger(t, "2.0.0", testLedgerOptions()), m.stateless), m,
				&mcp.ClientOptions{ProgressNotificationHandler: log.handler}, as(t, LedgerName, "treasury"))

			// Without a progress token: a report and no notifications.
			res := callTool(t, cs, "generate_report", map[string]any{"kind": "profit_and_loss", "period": "2026-03"})
			if res.IsError {
				t.Fatalf("isError result: %s", text(res))
			}
			var pl report
			decodeStructured(t, res, &pl)
			// Treasury's agent sees treasury's lines only.
			wantPL := []reportLine{
				{"treasury", "revenue", 428_400_000, "USD"},
				{"treasury", "costs", -316_200_000, "USD"},
				{"treasury", "net income", 112_200_000, "USD"},
			}
			if diff := cmp.Diff(wantPL, pl.Lines); diff != "" || pl.AsOf != "2026-03-15" {
				t.Errorf("P&L lines (-want +got):\n%s\nas_of %s, want 2026-03-15 (today)", diff, pl.AsOf)
			}
			if c := cost(res); c != 0.02 {
				t.Errorf("_meta[%q] = %v, want 0.02", CostMetaKey, c)
			}

			// With a progress token: progress 0..3 out of treasury's 3 accounts.
			res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{
				Name:      "generate_report",
				Arguments: map[string]any{"kind": "balance_sheet", "period": "2026-02"},
				Meta:      mcp.Meta{"progressToken": "report-1"},
			})
			if err != nil || res.IsError {
				t.Fatalf("generate_report: %v %v", err, res)
			}
			var bs report
			decodeStructured(t, res, &bs)
			if len(bs.Lines) != 3 || bs.AsOf != "2026-02-28" || bs.Lines[0].AmountCents != 125_000_000 || bs.Lines[2].Tenant != "treasury" {
				t.Errorf("balance sheet %+v: want treasury's 3 lines as of 2026-02-28, ACC-1001 first at 125000000", bs)
			}
			waitFor(t, 10*time.Second, "4 progress notifications", func() (bool, string) {
				got := log.snapshot()
				return len(got) >= 4, strings.TrimSpace(strings.Repeat("•", len(got)))
			})
			got := log.snapshot()
			if len(got) != 4 {
				t.Fatalf("got %d progress notifications, want 4: %+v", len(got), got)
			}
			for i, p := range got {
				if p.ProgressToken != "report-1" || p.Progress != float64(i) || p.Total != 3 || p.Message == "" {
					t.Errorf("notification %d = %+v, want token report-1, progress %d of 3, a message", i, p, i)
				}
			}

			for _, period := range []string{"2025-12", "2026-04"} {
				res := callTool(t, cs, "generate_report", map[string]any{"kind": "balance_sheet", "period": period})
				if !res.IsError || !strings.Contains(text(res), "No report for "+period) {
					t.Errorf("period %s: isError %v, text %q; want a business error", period, res.IsError, text(res))
				}
			}
		})
	}
}

// TestGenerateReportCancel cancels a report mid-way from the client and
// checks the server handler stops: by notifications/cancelled on a legacy
// session, by the HTTP request ending in the stateless 2026-07-28 era.
func TestGenerateReportCancel(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			stopped := make(chan struct{})
			var once sync.Once
			// Report steps end only when the test does, so only
			// cancellation ends the report in time; release lets a
			// handler that missed it finish before the server closes.
			release := make(chan time.Time)
			opts := testLedgerOptions()
			opts.after = func(time.Duration) <-chan time.Time { return release }
			opts.reportCanceled = func() { once.Do(func() { close(stopped) }) }
			rec := NewRecorder(Handler(mustLedger(t, "2.0.0", opts), m.stateless))
			log := newProgressLog()
			cs := connect(t, rec, m, &mcp.ClientOptions{ProgressNotificationHandler: log.handler}, as(t, LedgerName, "treasury"))
			t.Cleanup(func() { close(release) })

			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			errc := make(chan error, 1)
			go func() {
				_, err := cs.CallTool(ctx, &mcp.CallToolParams{
					Name:      "generate_report",
					Arguments: map[string]any{"kind": "balance_sheet", "period": "2026-02"},
					Meta:      mcp.Meta{"progressToken": 7},
				})
				errc <- err
			}()
			select {
			case <-log.first:
			case <-time.After(10 * time.Second):
				t.Fatal("no progress notification within 10s: the report did not start")
			}
			cancel()
			select {
			case <-stopped:
			case <-time.After(10 * time.Second):
				t.Fatalf("the server handler did not observe cancellation within 10s; upstream saw %+v", rec.Requests())
			}
			select {
			case err := <-errc:
				if !errors.Is(err, context.Canceled) {
					t.Errorf("CallTool = %v, want context.Canceled", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("CallTool did not return within 10s of cancel")
			}
			// The upstream saw its HTTP request end before it answered.
			waitFor(t, 10*time.Second, "the recorder to see the cancellation", func() (bool, string) {
				reqs := rec.Requests()
				var calls, cancels int
				for _, r := range reqs {
					// A stateless call is cancelled by ending its HTTP
					// request. A legacy session's call is cancelled by
					// notifications/cancelled; its POST may then end
					// either way, whichever side closes it first.
					if r.ToolName() == "generate_report" && r.Done && (r.Canceled || !m.stateless) {
						calls++
					}
					if r.Method == "notifications/cancelled" {
						cancels++
					}
				}
				return calls == 1 && (m.stateless || cancels == 1), fmt.Sprintf("%+v", reqs)
			})
		})
	}
}
