package e2e

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpmesh/mcpmesh/node/gateway"
	"github.com/mcpmesh/mcpmesh/registry/api"
	"github.com/mcpmesh/mcpmesh/test/internal/testcluster"
)

// codeOverQuota is the gateway's JSON-RPC code for a call over its
// tenant's quota or budget.
const codeOverQuota = -32015

// pricedUpstream is an MCP server whose tool counts the calls it served.
type pricedUpstream struct {
	URL   string
	calls atomic.Int64
}

func startPricedUpstream(t *testing.T) *pricedUpstream {
	t.Helper()
	u := &pricedUpstream{}
	s := mcp.NewServer(&mcp.Implementation{Name: "priced", Version: "1"}, nil)
	var def mcp.Tool
	if err := json.Unmarshal([]byte(upstreamTool), &def); err != nil {
		t.Fatal(err)
	}
	s.AddTool(&def, func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		n := u.calls.Add(1)
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: fmt.Sprintf("call %d", n)}}}, nil
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	u.URL = "http://" + ln.Addr().String() + "/mcp"
	return u
}

// pricedCard is a card whose tool costs cost EUR a call.
func pricedCard(name, url string, cost float64) []byte {
	return []byte(fmt.Sprintf(`{"name":%q,"description":"Priced upstream","version":"1.0.0","_meta":{
"io.mcpmesh/governance":{"owner":"o@corp.example","team":"t","dataClassification":"internal","riskTier":"low","costPerCall":%v,"currency":"EUR",
"upstream":{"transport":"streamable-http","url":%q}},
"io.mcpmesh/tools":[%s]}}`, name, cost, url, upstreamTool))
}

// usageSetup starts a cluster serving a tool at 0.25 EUR a call, with
// quotas applied from a catalog, and returns a caller per tenant.
func usageSetup(t *testing.T, opts testcluster.Options, quotas string) (*testcluster.Cluster, *pricedUpstream, map[string]string) {
	t.Helper()
	up := startPricedUpstream(t)
	c := startCluster(t, opts)
	leader := c.Leader(leaderTimeout)
	mustCLI(t, c, leader, "tenant", "add", "payroll", "-owner", "alice@corp.example")
	mustCLI(t, c, leader, "tenant", "add", "benefits", "-owner", "bob@corp.example")
	cat := permitAll(t)
	if quotas != "" {
		writeFile(t, cat, "quotas.yaml", []byte(quotas))
		plan := mustCLI(t, c, leader, "apply", "-f", cat, "-dry-run")
		if !strings.Contains(plan, "create quotas (") {
			t.Errorf("apply -dry-run does not show the quotas: %s", plan)
		}
	}
	mustCLI(t, c, leader, "apply", "-f", cat)
	mustCLI(t, c, leader, "registry", "submit", "-f", writeCard(t, pricedCard("corp.hr/priced", up.URL, 0.25)))
	mustCLI(t, c, leader, "registry", "approve", "corp.hr/priced@1.0.0")
	keys := map[string]string{
		"payroll":  createKey(t, c, leader, "payroll", "payroll agent").Secret,
		"benefits": createKey(t, c, leader, "benefits", "benefits agent").Secret,
	}
	return c, up, keys
}

// usageOf reads the usage report of this month through n (consistent).
func usageOf(t *testing.T, c *testcluster.Cluster, n *testcluster.Node) api.UsageReport {
	t.Helper()
	month := time.Now().UTC().Format("2006-01")
	return decode[api.UsageReport](t, "usage report", mustCLI(t, c, n, "usage", "report", "-month", month, "-consistent", "-o", "json"))
}

// callsOf is the calls of tenant in a report.
func callsOf(rep api.UsageReport, tenant string) int64 {
	for _, l := range rep.Tenants {
		if l.Tenant == tenant {
			return l.Calls
		}
	}
	return 0
}

// waitCalls waits until the report through n counts want calls of tenant.
func waitCalls(t *testing.T, c *testcluster.Cluster, n *testcluster.Node, tenant string, want int64) api.UsageReport {
	t.Helper()
	var rep api.UsageReport
	if !testcluster.Eventually(15*time.Second, func() bool {
		rep = usageOf(t, c, n)
		return callsOf(rep, tenant) == want
	}) {
		t.Fatalf("usage report through %s: %s has %d calls, want %d; report: %+v", n.ID, tenant, callsOf(rep, tenant), want, rep.Tenants)
	}
	return rep
}

// TestBudgetRefuses: a budget that allows exactly four calls at the card's
// cost lets four through, BU-wide across replicas, and refuses the fifth
// on every replica before the upstream sees it, saying which budget, the
// figures and when it resets; results past the warning threshold carry the
// figures; a call quota refuses likewise. The usage report gives the same
// figures in JSON and CSV.
func TestBudgetRefuses(t *testing.T) {
	t.Parallel()
	c, up, keys := usageSetup(t, testcluster.Options{NoSync: true}, `
- tenant: payroll
  budget: 1.00
  currency: EUR
  warnAt: 0.5
- {tenant: benefits, calls: 2}
`)
	a, b, third := c.Nodes[0], c.Nodes[1], c.Nodes[2]
	call := func(n *testcluster.Node, tenant string) (*mcp.CallToolResult, error) {
		s := mcpConnectAs(t, n.URL()+"/mcp", "2026-07-28", keys[tenant])
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		return s.CallTool(ctx, &mcp.CallToolParams{Name: "hr.lookup", Arguments: map[string]any{"q": "x"}})
	}
	warning := func(res *mcp.CallToolResult) *gateway.BudgetWarning {
		raw, ok := res.Meta[gateway.MetaBudget]
		if !ok {
			return nil
		}
		var w gateway.BudgetWarning
		b, _ := json.Marshal(raw)
		if err := json.Unmarshal(b, &w); err != nil {
			t.Fatalf("%s: %v", gateway.MetaBudget, err)
		}
		return &w
	}
	// Calls 1-3 through one node, call 4 through another once the
	// replicated usage shows the first three.
	for i := 1; i <= 3; i++ {
		res, err := call(a, "payroll")
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		w := warning(res)
		switch {
		case i == 1 && w != nil:
			t.Errorf("call 1 (25%% of the budget) warns: %+v", w)
		case i >= 2 && (w == nil || w.Budget == nil || w.Budget.Used != 0.25*float64(i) || w.Budget.Limit != 1 || w.Budget.Currency != "EUR"):
			t.Errorf("call %d (%d%% of the budget, past warnAt 50%%): warning %+v", i, 25*i, w)
		}
	}
	waitCalls(t, c, b, "payroll", 3)
	res, err := call(b, "payroll")
	if err != nil {
		t.Fatalf("call 4 through %s: %v", b.ID, err)
	}
	if w := warning(res); w == nil || w.Budget.Used != 1 || w.Budget.Ratio != 1 {
		t.Errorf("call 4 through %s: warning %+v; want used 1 of 1 EUR", b.ID, w)
	}
	waitCalls(t, c, third, "payroll", 4)
	if n := up.calls.Load(); n != 4 {
		t.Fatalf("upstream served %d calls before the refusals, want 4", n)
	}

	now := time.Now().UTC()
	resets := time.Date(now.Year(), now.Month()+1, 1, 0, 0, 0, 0, time.UTC)
	for _, n := range c.Nodes {
		_, err := call(n, "payroll")
		var je *jsonrpc.Error
		if !errors.As(err, &je) || je.Code != codeOverQuota {
			t.Fatalf("call 5 through %s: %v; want JSON-RPC error %d", n.ID, err, codeOverQuota)
		}
		wantMsg := "over budget: tenant payroll has used 1.00 EUR of its 1.00 EUR budget for " + now.Format("2006-01") + " and this call costs 0.25 EUR; the budget resets at " + resets.Format(time.RFC3339)
		if je.Message != wantMsg {
			t.Errorf("call 5 through %s: message\n %q\nwant\n %q", n.ID, je.Message, wantMsg)
		}
		var d gateway.QuotaData
		if err := json.Unmarshal(je.Data, &d); err != nil || d.Limit != "budget" || d.Used != 1 || d.Max != 1 || d.Cost != 0.25 || d.Currency != "EUR" || !d.Resets.Equal(resets) {
			t.Errorf("call 5 through %s: data %s (%v)", n.ID, je.Data, err)
		}
	}
	// Refused before the upstream: it saw none of them; each refusal is
	// audited where it happened.
	if n := up.calls.Load(); n != 4 {
		t.Errorf("upstream served %d calls, want 4: a refused call reached it", n)
	}
	for _, n := range c.Nodes {
		recs := decode[api.AuditRecords](t, "audit query", mustCLI(t, c, n, "audit", "query", "-o", "json", "-outcome", "over_quota"))
		if len(recs.Records) != 1 || recs.Records[0].Tenant != "payroll" || recs.Records[0].ErrorCode != codeOverQuota || recs.Records[0].Cost != 0 {
			t.Errorf("%s: over_quota audit records = %+v", n.ID, recs.Records)
		}
	}
	if code, body := get(t, third.URL()+"/metrics", ""); code != http.StatusOK ||
		!strings.Contains(body, `mcpmesh_quota_refusals_total{kind="budget",namespace="hr",tenant="payroll"} 1`) ||
		!strings.Contains(body, `mcpmesh_quota_used_ratio{kind="budget",tenant="payroll"} 1`) {
		t.Errorf("/metrics of %s lacks the refusal or the ratio (HTTP %d)", third.ID, code)
	}
	if _, body := get(t, a.URL()+"/metrics", ""); !strings.Contains(body, `mcpmesh_cost_total{currency="EUR",namespace="hr",tenant="payroll",tool="corp.hr/priced/lookup"} 0.75`) {
		t.Errorf("/metrics of %s lacks the cost of its three calls", a.ID)
	}

	// A call quota: two calls, the third refused.
	for i := 1; i <= 2; i++ {
		if _, err := call(a, "benefits"); err != nil {
			t.Fatalf("benefits call %d: %v", i, err)
		}
	}
	_, err = call(a, "benefits")
	var je *jsonrpc.Error
	if !errors.As(err, &je) || je.Code != codeOverQuota || !strings.HasPrefix(je.Message, "over quota: tenant benefits has made 2 of its 2 calls for ") {
		t.Errorf("third benefits call: %v", err)
	}
	if n := up.calls.Load(); n != 6 {
		t.Errorf("upstream served %d calls, want 6", n)
	}

	// The chargeback, in JSON and CSV, from any node.
	rep := waitCalls(t, c, third, "benefits", 2)
	wantTenants := []api.UsageLine{{Tenant: "benefits", Currency: "EUR", Calls: 2, Cost: 0.5}, {Tenant: "payroll", Currency: "EUR", Calls: 4, Cost: 1}}
	if fmt.Sprint(rep.Tenants) != fmt.Sprint(wantTenants) {
		t.Errorf("report per tenant = %+v, want %+v", rep.Tenants, wantTenants)
	}
	if len(rep.Tools) != 1 || rep.Tools[0].Tool != "corp.hr/priced/lookup" || rep.Tools[0].Calls != 6 ||
		len(rep.Callers) != 1 || rep.Callers[0].CallerBU != "hr" || rep.Callers[0].Calls != 6 ||
		len(rep.Totals) != 1 || rep.Totals[0].Calls != 6 || rep.Totals[0].Cost != 1.5 {
		t.Errorf("report per tool %+v, per caller %+v, totals %+v", rep.Tools, rep.Callers, rep.Totals)
	}
	month := now.Format("2006-01")
	out := mustCLI(t, c, b, "usage", "report", "-month", month, "-o", "csv", "-consistent")
	lines, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatalf("usage report -o csv: %v\n%s", err, out)
	}
	want := map[string]bool{
		"level,month,tenant,tool,caller_bu,currency,calls,cost":      false,
		"row," + month + ",payroll,corp.hr/priced/lookup,hr,EUR,4,1": false,
		"tenant," + month + ",benefits,,,EUR,2,0.5":                  false,
		"tool," + month + ",,corp.hr/priced/lookup,,EUR,6,1.5":       false,
		"caller," + month + ",,,hr,EUR,6,1.5":                        false,
		"total," + month + ",,,,EUR,6,1.5":                           false,
	}
	for _, l := range lines {
		if _, ok := want[strings.Join(l, ",")]; ok {
			want[strings.Join(l, ",")] = true
		}
	}
	for l, seen := range want {
		if !seen {
			t.Errorf("usage report -o csv lacks the line %q:\n%s", l, out)
		}
	}
	one := decode[api.UsageReport](t, "usage report -tenant", mustCLI(t, c, b, "usage", "report", "-month", month, "-tenant", "benefits", "-o", "json"))
	if len(one.Tenants) != 1 || one.Tenants[0].Tenant != "benefits" {
		t.Errorf("usage report -tenant benefits: %+v", one.Tenants)
	}
	for _, bad := range []string{"2026-13", "11-2026", "2026-11-01"} {
		out, code := c.CLI(b, "usage", "report", "-month", bad)
		if code != 2 || !strings.Contains(out, `-month "`+bad+`": want YYYY-MM, e.g. 2026-11`) {
			t.Errorf("usage report -month %s: exit %d: %s", bad, code, out)
		}
	}
	if code, body := get(t, b.URL()+"/v1/usage?month=2026-13", c.Token); code != http.StatusBadRequest || !strings.Contains(body, "want YYYY-MM") {
		t.Errorf("GET /v1/usage?month=2026-13: HTTP %d %s", code, body)
	}
	q := mustCLI(t, c, third, "usage", "quotas")
	if !strings.Contains(q, "payroll") || !strings.Contains(q, "1 EUR") || !strings.Contains(q, "50%") {
		t.Errorf("usage quotas:\n%s", q)
	}
}

// TestUsageSurvivesLeaderKill: calls made through the leader are all in
// the usage report after the leader is killed with -9: those it had
// flushed at once from the survivors, the unflushed tail once the killed
// node restarts and re-derives it from its audit log. No call is counted
// twice.
func TestUsageSurvivesLeaderKill(t *testing.T) {
	t.Parallel()
	// Durable Raft log and audit log: what a kill -9 may lose, it loses.
	c, up, keys := usageSetup(t, testcluster.Options{}, "")
	leader := c.Leader(leaderTimeout)
	s := mcpConnectAs(t, leader.URL()+"/mcp", "2026-07-28", keys["payroll"])
	call := func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		_, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "hr.lookup", Arguments: map[string]any{"q": "x"}})
		return err
	}
	const flushedCalls, tailCalls = 10, 25
	for i := range flushedCalls {
		if err := call(); err != nil {
			t.Fatalf("call %d: %v", i+1, err)
		}
	}
	survivor := c.Followers(leader)[0]
	waitCalls(t, c, survivor, "payroll", flushedCalls)
	// A burst, then kill -9 right after the last acknowledged call: the
	// leader cannot have flushed all of it.
	for i := range tailCalls {
		if err := call(); err != nil {
			t.Fatalf("tail call %d: %v", i+1, err)
		}
	}
	leader.Kill()
	acknowledged := int64(flushedCalls + tailCalls)
	if n := up.calls.Load(); n != acknowledged {
		t.Fatalf("upstream served %d calls, want %d", n, acknowledged)
	}
	newLeader := c.Leader(leaderTimeout)
	before := callsOf(usageOf(t, c, survivor), "payroll")
	t.Logf("after kill -9 of leader %s (new leader %s): survivors report %d of %d acknowledged calls; the rest waits in %s's audit log",
		leader.ID, newLeader.ID, before, acknowledged, leader.ID)
	if before < flushedCalls || before > acknowledged {
		t.Fatalf("survivors report %d calls; want between %d (flushed before the kill) and %d", before, flushedCalls, acknowledged)
	}
	leader.Start()
	leader.WaitReady(leaderTimeout)
	rep := waitCalls(t, c, survivor, "payroll", acknowledged)
	// Stable: nothing counted twice after a few more flush intervals.
	time.Sleep(3 * time.Second)
	if got := callsOf(usageOf(t, c, survivor), "payroll"); got != acknowledged {
		t.Fatalf("after the restart the report settles at %d calls, want %d", got, acknowledged)
	}
	if rep.Totals[0].Cost != 0.25*float64(acknowledged) {
		t.Errorf("total cost %v, want %v", rep.Totals[0].Cost, 0.25*float64(acknowledged))
	}
	if !strings.Contains(leader.LastRunLog(), "usage: counting calls") {
		t.Errorf("the restarted node did not log its recovery:\n%s", leader.LogTail(30))
	}
}
