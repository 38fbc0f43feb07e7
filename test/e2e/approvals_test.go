package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpmesh/mcpmesh/registry/api"
	"github.com/mcpmesh/mcpmesh/registry/state"
	"github.com/mcpmesh/mcpmesh/test/internal/testcluster"
)

// The gateway's approval error codes.
const (
	codeApprovalPending = -32016
	codeApprovalRefused = -32017
)

const transferTool = `{"name":"transfer","description":"Moves money.","inputSchema":{"type":"object","properties":{"amount":{"type":"integer"},"to":{"type":"string"}},"required":["amount","to"]}}`

// countingUpstream serves transfer and counts its calls by "to".
type countingUpstream struct {
	URL   string
	mu    sync.Mutex
	calls map[string]int
}

func (u *countingUpstream) count(to string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.calls[to]
}

func startCountingUpstream(t *testing.T) *countingUpstream {
	t.Helper()
	u := &countingUpstream{calls: map[string]int{}}
	s := mcp.NewServer(&mcp.Implementation{Name: "bank", Version: "1"}, nil)
	var def mcp.Tool
	if err := json.Unmarshal([]byte(transferTool), &def); err != nil {
		t.Fatal(err)
	}
	s.AddTool(&def, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		var args struct {
			Amount int
			To     string
		}
		json.Unmarshal(req.Params.Arguments, &args)
		u.mu.Lock()
		u.calls[args.To]++
		u.mu.Unlock()
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: fmt.Sprintf("moved %d to %s", args.Amount, args.To)}}}, nil
	})
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	u.URL = "http://" + ln.Addr().String() + "/mcp"
	return u
}

// TestApprovals: a policy marks transfers above 1000 for approval; such a
// call is held on one replica and decided through another. Approved in the
// hold window it runs once; undecided it answers -32016 with the id, and a
// retry with the id (on yet another replica) runs it once approved, a
// second retry is refused as used, and a retry with other arguments or by
// another caller is refused; denied and expired calls are refused saying
// so; decisions and outcomes are audited.
func TestApprovals(t *testing.T) {
	t.Parallel()
	const hold, ttl = 4 * time.Second, 12 * time.Second
	up := startCountingUpstream(t)
	c := startCluster(t, testcluster.Options{NoSync: true,
		ExtraYAML: fmt.Sprintf("governance:\n  approval_hold: %s\n  approval_ttl: %s\n", hold, ttl)})
	leader := c.Leader(leaderTimeout)
	fs := c.Followers(leader)
	a, b := fs[0], fs[1]
	mustCLI(t, c, a, "tenant", "add", "payroll", "-owner", "alice@corp.example")
	dir := bankPolicyDir(t)
	mustCLI(t, c, a, "apply", "-f", dir)
	mustCLI(t, c, a, "registry", "submit", "-f", writeCard(t, []byte(bankCard(up.URL))))
	mustCLI(t, c, a, "registry", "approve", "corp.bank/payments@1.0.0")
	alice := createKey(t, c, a, "payroll", "alice")
	mallory := createKey(t, c, a, "payroll", "mallory")

	sessions := map[string]*mcp.ClientSession{}
	var smu sync.Mutex
	session := func(n *testcluster.Node, key string) *mcp.ClientSession {
		smu.Lock()
		defer smu.Unlock()
		if s, ok := sessions[n.ID+key]; ok {
			return s
		}
		s := mcpConnectAs(t, n.URL()+"/mcp", "2026-07-28", key)
		sessions[n.ID+key] = s
		return s
	}
	call := func(n *testcluster.Node, key string, amount int, to, approval string) (*mcp.CallToolResult, error) {
		ctx, cancel := context.WithTimeout(t.Context(), hold+20*time.Second)
		defer cancel()
		p := &mcp.CallToolParams{Name: "hr.transfer", Arguments: map[string]any{"amount": amount, "to": to}}
		if approval != "" {
			p.Meta = mcp.Meta{"io.mcpmesh/approval": approval}
		}
		return session(n, key).CallTool(ctx, p)
	}
	// approvalErr returns the code, message and data of an approval error.
	approvalErr := func(err error) (int64, string, state.Approval) {
		t.Helper()
		var je *jsonrpc.Error
		if !errors.As(err, &je) {
			t.Fatalf("want a JSON-RPC error, got %v", err)
		}
		var d state.Approval
		json.Unmarshal(je.Data, &d)
		return je.Code, je.Message, d
	}
	// pendingFor waits until an approval of a call to "to" is pending and
	// returns it.
	pendingFor := func(n *testcluster.Node, to string) state.Approval {
		t.Helper()
		var last []state.Approval
		var found state.Approval
		ok := testcluster.Eventually(hold, func() bool {
			last = decode[[]state.Approval](t, "approvals list", mustCLI(t, c, n, "approvals", "list", "-state", "pending", "-o", "json"))
			for _, ap := range last {
				if ap.Caller == "apikey:"+alice.Key.ID && ap.State == state.ApprovalPending {
					found = ap
					return true
				}
			}
			return false
		})
		if !ok {
			t.Fatalf("no pending approval of the call to %s within %s; last list: %+v", to, hold, last)
		}
		return found
	}
	// Small transfers need no approval; wait for every replica to serve.
	testcluster.Eventually(10*time.Second, func() bool {
		for _, n := range c.Nodes {
			if _, err := call(n, alice.Secret, 10, "warmup-"+n.ID, ""); err != nil {
				return false
			}
		}
		return true
	})
	for _, n := range c.Nodes {
		if res, err := call(n, alice.Secret, 1000, "small", ""); err != nil || res.IsError {
			t.Fatalf("%s: a transfer of 1000 needs no approval: %v %+v", n.ID, err, res)
		}
	}

	t.Run("approved within the hold runs once", func(t *testing.T) {
		type outcome struct {
			res  *mcp.CallToolResult
			err  error
			took time.Duration
		}
		done := make(chan outcome, 1)
		start := time.Now()
		go func() {
			res, err := call(a, alice.Secret, 5000, "held", "")
			done <- outcome{res, err, time.Since(start)}
		}()
		ap := pendingFor(b, "held")
		if up.count("held") != 0 {
			t.Fatal("the upstream saw the call before it was approved")
		}
		if ap.Tool != "transfer" || ap.Tenant != "payroll" || !strings.HasPrefix(ap.ID, "apr-") || len(ap.Policies) != 1 || ap.Policies[0] != "big-transfers" {
			t.Errorf("pending approval = %+v", ap)
		}
		// Decided on another replica than the one holding the call.
		out := mustCLI(t, c, b, "approvals", "approve", ap.ID, "-reason", "checked with finance")
		if !strings.Contains(out, "approved "+ap.ID) {
			t.Errorf("approve output: %s", out)
		}
		o := <-done
		if o.err != nil || o.res.IsError {
			t.Fatalf("approved call: %v %+v", o.err, o.res)
		}
		if got := o.res.Content[0].(*mcp.TextContent).Text; got != "moved 5000 to held" {
			t.Errorf("result = %q", got)
		}
		if n := up.count("held"); n != 1 {
			t.Errorf("the upstream saw the approved call %d times, want 1", n)
		}
		t.Logf("held call returned %s after it started (approved through another replica)", o.took.Round(time.Millisecond))
		// Its approval is used: a retry with it is refused.
		_, err := call(b, alice.Secret, 5000, "held", ap.ID)
		if code, msg, _ := approvalErr(err); code != codeApprovalRefused || !strings.Contains(msg, "already used") {
			t.Errorf("retry of a consumed approval: %d %s", code, msg)
		}
	})

	t.Run("pending then retried with the id", func(t *testing.T) {
		start := time.Now()
		_, err := call(a, alice.Secret, 2000, "later", "")
		took := time.Since(start)
		code, msg, data := approvalErr(err)
		if code != codeApprovalPending || !strings.Contains(msg, "io.mcpmesh/approval") || !strings.HasPrefix(data.ID, "apr-") || !strings.Contains(msg, data.ID) {
			t.Fatalf("undecided call: %d %s (data %+v)", code, msg, data)
		}
		if took < hold-500*time.Millisecond {
			t.Errorf("an undecided call was answered after %s; the hold is %s", took, hold)
		}
		id := data.ID
		mustCLI(t, c, leader, "approvals", "approve", id)
		// Another caller, or other arguments, cannot use it.
		_, err = call(b, mallory.Secret, 2000, "later", id)
		if code, msg, _ := approvalErr(err); code != codeApprovalRefused || !strings.Contains(msg, "its caller differs") {
			t.Errorf("another caller's retry: %d %s", code, msg)
		}
		_, err = call(b, alice.Secret, 2001, "later", id)
		if code, msg, _ := approvalErr(err); code != codeApprovalRefused || !strings.Contains(msg, "its arguments differs") {
			t.Errorf("retry with other arguments: %d %s", code, msg)
		}
		// The retry runs on yet another replica, once.
		res, err := call(b, alice.Secret, 2000, "later", id)
		if err != nil || res.IsError {
			t.Fatalf("retry of an approved call: %v %+v", err, res)
		}
		_, err = call(a, alice.Secret, 2000, "later", id)
		if code, msg, _ := approvalErr(err); code != codeApprovalRefused || !strings.Contains(msg, "already used") {
			t.Errorf("second retry: %d %s", code, msg)
		}
		if n := up.count("later"); n != 1 {
			t.Errorf("the upstream saw the approved call %d times, want 1", n)
		}
	})

	t.Run("denied", func(t *testing.T) {
		done := make(chan error, 1)
		go func() {
			_, err := call(a, alice.Secret, 9000, "denied", "")
			done <- err
		}()
		ap := pendingFor(leader, "denied")
		if out, code := c.CLI(leader, "approvals", "deny", ap.ID); code == 0 || !strings.Contains(out, "-reason is required") {
			t.Errorf("deny without a reason: exit %d: %s", code, out)
		}
		mustCLI(t, c, leader, "approvals", "deny", ap.ID, "-reason", "above the quarterly limit")
		code, msg, _ := approvalErr(<-done)
		if code != codeApprovalRefused || !strings.Contains(msg, `denied by token:bootstrap: "above the quarterly limit"`) {
			t.Errorf("denied call: %d %s", code, msg)
		}
		// Approving after the denial is refused.
		if out, code := c.CLI(b, "approvals", "approve", ap.ID); code == 0 || !strings.Contains(out, "is denied, not pending") {
			t.Errorf("approve after deny: exit %d: %s", code, out)
		}
		if n := up.count("denied"); n != 0 {
			t.Errorf("the upstream saw a denied call %d times", n)
		}
	})

	t.Run("expired", func(t *testing.T) {
		_, err := call(b, alice.Secret, 7000, "expired", "")
		code, _, data := approvalErr(err)
		if code != codeApprovalPending {
			t.Fatalf("undecided call: %d %v", code, err)
		}
		ap := decode[[]state.Approval](t, "approvals list", mustCLI(t, c, a, "approvals", "list", "-o", "json"))
		var expires time.Time
		for _, x := range ap {
			if x.ID == data.ID {
				expires = x.ExpiresAt
			}
		}
		if expires.IsZero() {
			t.Fatalf("approval %s not listed: %+v", data.ID, ap)
		}
		time.Sleep(time.Until(expires) + 200*time.Millisecond) // the TTL must pass; nothing to poll for
		if out, code := c.CLI(a, "approvals", "approve", data.ID); code == 0 || !strings.Contains(out, "expired") {
			t.Errorf("approve after expiry: exit %d: %s", code, out)
		}
		_, err = call(a, alice.Secret, 7000, "expired", data.ID)
		if code, msg, _ := approvalErr(err); code != codeApprovalRefused || !strings.Contains(msg, "expired") {
			t.Errorf("retry after expiry: %d %s", code, msg)
		}
		listed := decode[[]state.Approval](t, "approvals list", mustCLI(t, c, b, "approvals", "list", "-state", "expired", "-o", "json"))
		if len(listed) == 0 {
			t.Error("approvals list -state expired lists nothing")
		}
		if n := up.count("expired"); n != 0 {
			t.Errorf("the upstream saw an expired call %d times", n)
		}
	})

	// The outcomes are audited where the calls were held, and each
	// decision where it was made.
	for _, check := range []struct {
		n       *testcluster.Node
		args    []string
		wantMin int
	}{
		{a, []string{"-outcome", "approval_pending"}, 1},
		{a, []string{"-outcome", "approval_denied"}, 2},
		{a, []string{"-outcome", "approval_expired"}, 1},
		{b, []string{"-kind", "admin"}, 1},
		{leader, []string{"-kind", "admin"}, 2},
	} {
		recs := decode[api.AuditRecords](t, "audit query", mustCLI(t, c, check.n, append([]string{"audit", "query", "-o", "json"}, check.args...)...))
		n := 0
		for _, r := range recs.Records {
			if check.args[0] == "-kind" && !strings.HasPrefix(r.Action, "approval.") {
				continue
			}
			n++
		}
		if n < check.wantMin {
			t.Errorf("%s: audit query %v: %d records, want at least %d: %+v", check.n.ID, check.args, n, check.wantMin, recs.Records)
		}
	}
	// Metrics: the decisions, as every replica applied them.
	_, body := get(t, a.URL()+"/metrics", "")
	for _, want := range []string{`mcpmesh_approvals_total{namespace="hr",outcome="approved"} 2`, `mcpmesh_approvals_total{namespace="hr",outcome="denied"} 1`,
		`mcpmesh_approvals_total{namespace="hr",outcome="consumed"} 2`, `mcpmesh_approval_wait_seconds_count{namespace="hr"} 3`, `mcpmesh_approvals_pending{namespace="hr"} 0`} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics of %s lack %s", a.ID, want)
		}
	}
}

// bankPolicyDir is a catalog directory whose policies let every call
// through and hold transfers above 1000 for an administrator's approval.
func bankPolicyDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, dir, "policies.cedar", []byte(`
@id("call-all")
permit (principal, action, resource);

@id("big-transfers")
@approval("required")
permit (principal, action == Action::"call", resource)
when { resource in Tool::"corp.bank/payments/transfer" &&
       context.arguments.hasTag("amount") && context.arguments.getTag("amount") > 1000 };
`))
	return dir
}

// bankCard is the card of the test bank, whose transfer tool is at url.
func bankCard(url string) string {
	return fmt.Sprintf(`{"name":"corp.bank/payments","description":"Test bank","version":"1.0.0","_meta":{
"io.mcpmesh/governance":{"owner":"o@corp.example","team":"t","dataClassification":"internal","riskTier":"high","costPerCall":0,
"upstream":{"transport":"streamable-http","url":%q}},
"io.mcpmesh/tools":[%s]}}`, url, transferTool)
}
