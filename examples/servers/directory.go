package servers

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// employee is one row of the HR directory.
type employee struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Email    string `json:"email"`
	Team     string `json:"team"`
	Location string `json:"location"`
	Grade    string `json:"grade"`
	Tenant   string `json:"tenant"`
}

// salaryBand is the pay range of one job grade in one tenant: payroll uses E
// and M grades, benefits B grades, and both have an E3 band (of their own
// pay scales), so a lookup shows which tenant's table answered.
type salaryBand struct {
	Grade    string
	MinCents int64
	MaxCents int64
	Currency string
	Tenant   string
}

// employees is the directory, in a fixed order (search results keep it).
var employees = []employee{
	{"E-1001", "Ada Lovelace", "ada.lovelace@corp.example", "payroll-engineering", "London", "E5", "payroll"},
	{"E-1002", "Grace Hopper", "grace.hopper@corp.example", "payroll-operations", "New York", "M1", "payroll"},
	{"E-1003", "Alan Turing", "alan.turing@corp.example", "payroll-engineering", "Manchester", "E4", "payroll"},
	{"E-1004", "Katherine Johnson", "katherine.johnson@corp.example", "payroll-analytics", "Hampton", "E3", "payroll"},
	{"E-2001", "Margaret Hamilton", "margaret.hamilton@corp.example", "benefits-platform", "Boston", "B5", "benefits"},
	{"E-2002", "Edsger Dijkstra", "edsger.dijkstra@corp.example", "benefits-platform", "Amsterdam", "B4", "benefits"},
	{"E-2003", "Barbara Liskov", "barbara.liskov@corp.example", "benefits-enrolment", "Boston", "B3", "benefits"},
	{"E-2004", "Tony Hoare", "tony.hoare@corp.example", "benefits-enrolment", "Cambridge", "B4", "benefits"},
}

// salaryBands holds the bands of both tenants.
var salaryBands = []salaryBand{
	{"E3", 9_000_000, 12_000_000, "USD", "payroll"},
	{"E4", 11_500_000, 15_500_000, "USD", "payroll"},
	{"E5", 14_500_000, 19_500_000, "USD", "payroll"},
	{"M1", 16_000_000, 22_000_000, "USD", "payroll"},
	{"E3", 7_000_000, 9_500_000, "EUR", "benefits"},
	{"B3", 6_500_000, 8_500_000, "EUR", "benefits"},
	{"B4", 8_000_000, 10_500_000, "EUR", "benefits"},
	{"B5", 10_000_000, 13_000_000, "EUR", "benefits"},
}

// NewDirectory returns the HR directory MCP server (corp.hr/directory 1.0.0)
// with its tools search_employees and get_salary_band. It is safe for
// concurrent use and holds no state beyond its fixed records. It panics only
// if the embedded card no longer matches the handlers, which this package's
// tests rule out.
func NewDirectory(opts ...Option) *mcp.Server {
	s, err := newCardServer(DirectoryName, "1.0.0", map[string]toolFunc{
		"search_employees": searchEmployees,
		"get_salary_band":  getSalaryBand,
	}, newSettings(opts))
	if err != nil {
		panic(fmt.Sprintf("examples/servers: %v", err)) // static, embedded input
	}
	return s
}

// searchResult is search_employees' structuredContent.
type searchResult struct {
	Employees []employee `json:"employees"`
	// Total counts every match, also those beyond the limit.
	Total int `json:"total"`
}

// searchEmployees finds employees whose name, team or location contains the
// query, case-insensitively, up to limit (default 20).
func searchEmployees(ctx context.Context, req *mcp.CallToolRequest, raw json.RawMessage) (*mcp.CallToolResult, error) {
	args := struct {
		Query string `json:"query"`
		Limit *int   `json:"limit"`
	}{}
	if err := decodeArgs("search_employees", raw, &args); err != nil {
		return nil, err
	}
	limit := 20
	if args.Limit != nil {
		limit = *args.Limit
	}
	q := strings.ToLower(args.Query)
	res := searchResult{Employees: []employee{}}
	for _, e := range employees {
		if !tenantVisible(ctx, e.Tenant) {
			continue
		}
		if !strings.Contains(strings.ToLower(e.Name), q) &&
			!strings.Contains(strings.ToLower(e.Team), q) &&
			!strings.Contains(strings.ToLower(e.Location), q) {
			continue
		}
		res.Total++
		if len(res.Employees) < limit {
			res.Employees = append(res.Employees, e)
		}
	}
	var b strings.Builder
	switch {
	case res.Total == 0:
		fmt.Fprintf(&b, "No employee matches %q.", args.Query)
	case res.Total > len(res.Employees):
		fmt.Fprintf(&b, "%d employees match %q; the first %d:", res.Total, args.Query, len(res.Employees))
	default:
		fmt.Fprintf(&b, "%d employee(s) match %q:", res.Total, args.Query)
	}
	for _, e := range res.Employees {
		fmt.Fprintf(&b, "\n- %s %s <%s>, %s, %s, grade %s (tenant %s)", e.ID, e.Name, e.Email, e.Team, e.Location, e.Grade, e.Tenant)
	}
	return structured(res, b.String())
}

// bandResult is get_salary_band's structuredContent (the card's outputSchema).
type bandResult struct {
	Grade    string `json:"grade"`
	MinCents int64  `json:"min_cents"`
	MaxCents int64  `json:"max_cents"`
	Currency string `json:"currency"`
}

// getSalaryBand returns the band of one grade; an unknown grade is a business
// error.
func getSalaryBand(ctx context.Context, req *mcp.CallToolRequest, raw json.RawMessage) (*mcp.CallToolResult, error) {
	args := struct {
		Grade string `json:"grade"`
	}{}
	if err := decodeArgs("get_salary_band", raw, &args); err != nil {
		return nil, err
	}
	for _, b := range salaryBands {
		if b.Grade == args.Grade && tenantVisible(ctx, b.Tenant) {
			return structured(bandResult{b.Grade, b.MinCents, b.MaxCents, b.Currency}, "")
		}
	}
	return toolError("No salary band for grade %q in your tenant. Check the grade with search_employees.", args.Grade), nil
}
