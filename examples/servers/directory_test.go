package servers

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func TestDirectoryCalls(t *testing.T) {
	type search struct {
		Employees []struct {
			ID     string `json:"id"`
			Tenant string `json:"tenant"`
		} `json:"employees"`
		Total int `json:"total"`
	}
	tests := []struct {
		name      string
		tenant    string // the caller's
		tool      string
		args      map[string]any
		wantIDs   []string // search_employees: employee ids, in order
		wantTotal int
		wantText  string // a substring of the text content
		wantBand  *bandResult
		wantError bool // isError result
	}{
		{
			name: "search by location", tenant: "benefits", tool: "search_employees", args: map[string]any{"query": "boston"},
			wantIDs: []string{"E-2001", "E-2003"}, wantTotal: 2, wantText: "Margaret Hamilton",
		},
		{
			name: "another tenant's rows stay hidden", tenant: "payroll", tool: "search_employees", args: map[string]any{"query": "boston"},
			wantIDs: []string{}, wantTotal: 0, wantText: "No employee matches",
		},
		{
			name: "search by team with limit", tenant: "payroll", tool: "search_employees", args: map[string]any{"query": "PAYROLL-eng", "limit": 1},
			wantIDs: []string{"E-1001"}, wantTotal: 2, wantText: "the first 1",
		},
		{
			name: "search without match", tenant: "payroll", tool: "search_employees", args: map[string]any{"query": "zz"},
			wantIDs: []string{}, wantTotal: 0, wantText: "No employee matches",
		},
		{
			name: "salary band", tenant: "payroll", tool: "get_salary_band", args: map[string]any{"grade": "E4"},
			wantBand: &bandResult{"E4", 11_500_000, 15_500_000, "USD"}, wantText: `"min_cents":11500000`,
		},
		{
			name: "salary band of the other tenant", tenant: "benefits", tool: "get_salary_band", args: map[string]any{"grade": "B3"},
			wantBand: &bandResult{"B3", 6_500_000, 8_500_000, "EUR"},
		},
		{
			name: "another tenant's grade is unknown", tenant: "payroll", tool: "get_salary_band", args: map[string]any{"grade": "B3"},
			wantError: true, wantText: `No salary band for grade "B3" in your tenant`,
		},
		{
			name: "unknown grade is a business error", tenant: "payroll", tool: "get_salary_band", args: map[string]any{"grade": "Z9"},
			wantError: true, wantText: `No salary band for grade "Z9"`,
		},
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			h := Handler(NewDirectory(access(DirectoryName)), m.stateless)
			sessions := map[string]*mcp.ClientSession{
				"payroll":  connect(t, h, m, nil, as(t, DirectoryName, "payroll")),
				"benefits": connect(t, h, m, nil, as(t, DirectoryName, "benefits")),
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					res := callTool(t, sessions[tt.tenant], tt.tool, tt.args)
					if res.IsError != tt.wantError {
						t.Fatalf("isError = %v, want %v; content: %s", res.IsError, tt.wantError, text(res))
					}
					if !strings.Contains(text(res), tt.wantText) {
						t.Errorf("text %q does not contain %q", text(res), tt.wantText)
					}
					switch {
					case tt.wantError:
						if res.StructuredContent != nil {
							t.Errorf("error result has structuredContent %v", res.StructuredContent)
						}
					case tt.wantBand != nil:
						var got bandResult
						decodeStructured(t, res, &got)
						if diff := cmp.Diff(*tt.wantBand, got); diff != "" {
							t.Errorf("band (-want +got):\n%s", diff)
						}
						checkOutputSchema(t, DirectoryName, "1.0.0", tt.tool, res)
					default:
						var got search
						decodeStructured(t, res, &got)
						ids := []string{}
						for _, e := range got.Employees {
							ids = append(ids, e.ID)
							if e.Tenant == "" {
								t.Errorf("employee %s has no tenant", e.ID)
							}
						}
						if diff := cmp.Diff(tt.wantIDs, ids); diff != "" || got.Total != tt.wantTotal {
							t.Errorf("ids (-want +got):\n%s\ntotal %d, want %d", diff, got.Total, tt.wantTotal)
						}
					}
				})
			}
		})
	}
}

// TestInvalidArgumentsAreProtocolErrors checks that arguments outside the
// card's inputSchema never reach a handler: the server answers JSON-RPC
// -32602, not a tool result.
func TestInvalidArgumentsAreProtocolErrors(t *testing.T) {
	tests := []struct {
		name    string
		example int // index in examplesUnderTest
		tool    string
		args    map[string]any
	}{
		{"query too short", 0, "search_employees", map[string]any{"query": "a"}},
		{"query missing", 0, "search_employees", map[string]any{}},
		{"limit too large", 0, "search_employees", map[string]any{"query": "boston", "limit": 101}},
		{"limit not an integer", 0, "search_employees", map[string]any{"query": "boston", "limit": 1.5}},
		{"unknown argument", 0, "search_employees", map[string]any{"query": "boston", "tenant": "payroll"}},
		{"grade pattern", 0, "get_salary_band", map[string]any{"grade": "e4"}},
		{"unknown tool", 0, "delete_employee", map[string]any{}},
		{"account pattern", 1, "get_balance", map[string]any{"account_id": "1001"}},
		{"as_of not a date", 1, "get_balance", map[string]any{"account_id": "ACC-1001", "as_of": "2026-02-30"}},
		{"amount zero", 1, "transfer_funds", map[string]any{"from_account": "ACC-1001", "to_account": "ACC-1003", "amount_cents": 0, "currency": "USD"}},
		{"short idempotency key", 1, "transfer_funds", map[string]any{"from_account": "ACC-1001", "to_account": "ACC-1003", "amount_cents": 5, "currency": "USD", "idempotency_key": "k"}},
		{"no generate_report in 1.0.0", 1, "generate_report", map[string]any{"kind": "balance_sheet", "period": "2026-02"}},
		{"report kind", 2, "generate_report", map[string]any{"kind": "cash_flow", "period": "2026-02"}},
		{"report period", 2, "generate_report", map[string]any{"kind": "balance_sheet", "period": "2026-13"}},
	}
	for _, m := range []mode{modes[0], modes[2]} {
		t.Run(m.name, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					ex := examplesUnderTest[tt.example]
					cs := connect(t, Handler(ex.new(t), m.stateless), m, nil, as(t, ex.name, "payroll"))
					res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: tt.tool, Arguments: tt.args})
					if err == nil {
						t.Fatalf("got a result (isError %v: %s), want JSON-RPC error -32602", res.IsError, text(res))
					}
					wantRPCError(t, err, jsonrpc.CodeInvalidParams)
				})
			}
		})
	}
}
