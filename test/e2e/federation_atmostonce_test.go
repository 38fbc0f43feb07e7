package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpmesh/mcpmesh/node/audit"
	"github.com/mcpmesh/mcpmesh/node/gateway"
	"github.com/mcpmesh/mcpmesh/registry/api"
	"github.com/mcpmesh/mcpmesh/test/internal/testcluster"
)

// paymentsServer is the registry name of the server whose tools the
// at-most-once test calls.
const paymentsServer = "corp.finance/payments"

// paymentsTools are its tools: transfer is neither read-only nor
// idempotent (a call must never run twice); balance is read-only.
const paymentsTools = `{"name":"transfer","description":"Moves money.","inputSchema":{"type":"object","properties":{"q":{"type":"string"}},"required":["q"]}},` +
	`{"name":"balance","description":"Reads a balance.","inputSchema":{"type":"object","properties":{"q":{"type":"string"}},"required":["q"]},"annotations":{"readOnlyHint":true}}`

// upstreamRun is one call an upstream received: the tool, the request id
// and the node that made it, as the node's token says.
type upstreamRun struct {
	tool, requestID, node string
}

// heldUpstream is an MCP server whose tools record each call and hold it
// until the test lets calls go (or the calling node goes away).
type heldUpstream struct {
	URL     string
	arrived chan upstreamRun

	mu   sync.Mutex
	runs []upstreamRun
	let  chan struct{}
}

func startHeldUpstream(t *testing.T) *heldUpstream {
	t.Helper()
	u := &heldUpstream{arrived: make(chan upstreamRun, 64), let: make(chan struct{})}
	s := mcp.NewServer(&mcp.Implementation{Name: "payments", Version: "1"}, nil)
	var defs []mcp.Tool
	if err := json.Unmarshal([]byte("["+paymentsTools+"]"), &defs); err != nil {
		t.Fatal(err)
	}
	for i := range defs {
		def := &defs[i]
		s.AddTool(def, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			run := runOf(def.Name, req)
			u.mu.Lock()
			u.runs = append(u.runs, run)
			let := u.let
			u.mu.Unlock()
			u.arrived <- run
			select {
			case <-let:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			var args struct{ Q string }
			json.Unmarshal(req.Params.Arguments, &args)
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: def.Name + ":" + args.Q + ":" + run.node}}}, nil
		})
	}
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() {
		u.release()
		srv.Close()
	})
	u.URL = "http://" + ln.Addr().String() + "/mcp"
	return u
}

// hold makes the calls that arrive from now on wait, and forgets the
// arrivals of earlier calls; release lets them go.
func (u *heldUpstream) hold() {
	u.mu.Lock()
	u.let = make(chan struct{})
	u.mu.Unlock()
	for {
		select {
		case <-u.arrived:
		default:
			return
		}
	}
}

func (u *heldUpstream) release() {
	u.mu.Lock()
	select {
	case <-u.let:
	default:
		close(u.let)
	}
	u.mu.Unlock()
}

// runsOf returns the calls of request id rid the upstream received.
func (u *heldUpstream) runsOf(rid string) []upstreamRun {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []upstreamRun
	for _, r := range u.runs {
		if r.requestID == rid {
			out = append(out, r)
		}
	}
	return out
}

// runOf reads the calling node and request id from the node's token
// (the test only reads it: the nodes' own tests verify it).
func runOf(tool string, req *mcp.CallToolRequest) upstreamRun {
	run := upstreamRun{tool: tool}
	if req.Extra == nil || req.Extra.Header == nil {
		return run
	}
	parts := strings.Split(strings.TrimPrefix(req.Extra.Header.Get("Authorization"), "Bearer "), ".")
	if len(parts) != 3 {
		return run
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return run
	}
	var claims struct {
		Caller    []string `json:"io.mcpmesh/caller"`
		RequestID string   `json:"io.mcpmesh/request_id"`
	}
	json.Unmarshal(raw, &claims)
	run.requestID = claims.RequestID
	if n := len(claims.Caller); n > 0 {
		_, run.node, _ = strings.Cut(claims.Caller[n-1], "/mcpmesh/node/")
	}
	return run
}

// TestForwardedCallAtMostOnce: finance runs three nodes, and the node
// serving a call of hr's agent is SIGKILLed while the call runs at the
// (slow) upstream. A read-only tool's call is then repeated on another
// finance node and answered. A tool that is neither read-only nor
// idempotent is not repeated: the agent gets -32018 saying the call may
// have been carried out by that node and which request id to look for,
// hr's audit records the same, and the upstream saw the call once.
func TestForwardedCallAtMostOnce(t *testing.T) {
	t.Parallel()
	up := startHeldUpstream(t)
	m := startMeshWith(t, meshOptions{Nodes: 3})
	card := []byte(fmt.Sprintf(`{"name":%q,"description":"Payments","version":"1.0.0","_meta":{
"io.mcpmesh/governance":{"owner":"o@corp.example","team":"t","dataClassification":"internal","riskTier":"low","costPerCall":0,
"upstream":{"transport":"streamable-http","url":%q}},
"io.mcpmesh/tools":[%s]}}`, paymentsServer, up.URL, paymentsTools))
	key := m.export(t, paymentsServer, "transfer, balance", card)
	m.push(t, "hr>finance")
	hr := m.hr.Nodes[0]
	waitListed(t, m.hr, hr, key, "finance.transfer", 60*time.Second)
	waitListed(t, m.hr, hr, key, "finance.balance", 60*time.Second)
	// minted is how many assertions hr's node minted for finance.
	minted := func() float64 {
		_, body := get(t, hr.URL()+"/metrics", "")
		line := grepLines(body, `mcpmesh_federation_assertions_minted_total{target_trust_domain="finance.example.corp"}`)
		var n float64
		if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &n); err != nil {
			t.Fatalf("hr's metrics: no count of assertions minted for finance: %q", line)
		}
		return n
	}
	// No call is held yet.
	up.release()
	for _, tool := range []string{"finance.balance", "finance.transfer"} {
		if _, err := callTool(t, hr, key, tool, "warm-up", 30*time.Second); err != nil {
			t.Fatalf("%s before any kill: %v\nhr log:\n%s", tool, err, hr.LogTail(30))
		}
	}
	before := minted()
	if _, err := callTool(t, hr, key, "finance.balance", "one", 30*time.Second); err != nil {
		t.Fatalf("finance.balance: %v", err)
	}
	if got := minted() - before; got != 1 {
		t.Errorf("hr minted %v assertions for one answered call; want 1", got)
	}

	// call calls tool with the upstream holding it, SIGKILLs the finance
	// node that runs it once it arrives, lets the upstream go, and returns
	// the agent's answer, the node killed and its first run.
	call := func(tool, q string) (text, rid string, err error, killed *testcluster.Node, first upstreamRun) {
		t.Helper()
		up.hold()
		type answer struct {
			text, rid string
			err       error
		}
		done := make(chan answer, 1)
		start := time.Now()
		go func() {
			var a answer
			a.text, a.rid, a.err = callToolRID(t, hr, key, tool, q, 60*time.Second)
			done <- a
		}()
		select {
		case first = <-up.arrived:
		case a := <-done:
			t.Fatalf("%s answered %q, %v before the upstream saw it", tool, a.text, a.err)
		case <-time.After(30 * time.Second):
			t.Fatalf("the upstream never saw the call of %s within 30s\nhr log:\n%s", tool, hr.LogTail(30))
		}
		for _, n := range m.fin.Nodes {
			if n.ID == first.node {
				killed = n
			}
		}
		if killed == nil || !killed.Running() {
			t.Fatalf("the call of %s came from finance node %q, not a running node of %v", tool, first.node, m.fin.Nodes)
		}
		killed.Kill()
		up.release()
		t.Logf("%s: SIGKILLed finance %s, which was running request %s", tool, killed.ID, first.requestID)
		select {
		case a := <-done:
			t.Logf("%s: the agent had its answer %v after the call began", tool, time.Since(start).Round(time.Millisecond))
			return a.text, a.rid, a.err, killed, first
		case <-time.After(70 * time.Second):
			t.Fatalf("the agent's call of %s did not end within 70s of the kill\nhr log:\n%s", tool, hr.LogTail(30))
		}
		return
	}

	// A read-only tool: answered by another finance node, under an
	// assertion of its own.
	before = minted()
	text, rid, err, killed, first := call("finance.balance", "acct-1")
	if err != nil || !strings.HasPrefix(text, "balance:acct-1:") {
		t.Fatalf("finance.balance with its node killed = %q, %v; want the answer of another finance node\nhr log:\n%s", text, err, hr.LogTail(30))
	}
	runs := up.runsOf(first.requestID)
	if rid != first.requestID || len(runs) != 2 || runs[1].node == killed.ID {
		t.Fatalf("finance.balance (request %s, answered as %s): the upstream's runs %+v; want one by %s, then one by another node", first.requestID, rid, runs, killed.ID)
	}
	t.Logf("finance.balance: repeated on finance %s and answered %q", runs[1].node, text)
	// The finance node that answered recorded the call under hr's request
	// id, and only once.
	for _, n := range m.fin.Nodes {
		if n.ID == runs[1].node {
			recs := decode[api.AuditRecords](t, "audit query", mustCLI(t, m.fin, n, "audit", "query", "-request-id", rid, "-o", "json")).Records
			if len(recs) != 1 || recs[0].RequestID != rid || recs[0].Outcome != audit.OutcomeOK {
				t.Errorf("finance %s: audit query -request-id %s = %+v; want its one record of the answered call", n.ID, rid, recs)
			}
		}
	}
	if got := minted() - before; got != 2 {
		t.Errorf("hr minted %v assertions for a call tried on two nodes; want 2", got)
	}

	// A tool that is not safe to repeat: in doubt, run once.
	text, _, err, killed, first = call("finance.transfer", "acct-2")
	if err == nil {
		t.Fatalf("finance.transfer with its node killed answered %q; want -32018", text)
	}
	msg := err.Error()
	for _, want := range []string{"may have been carried out", "node/" + killed.ID, "not repeated", "request id " + first.requestID, "audit query -all -request-id " + first.requestID} {
		if rpcCode(err) != gateway.CodeRemoteUnavailable || !strings.Contains(msg, want) {
			t.Fatalf("finance.transfer with its node killed: %v; want -32018 saying %q", err, want)
		}
	}
	t.Logf("finance.transfer: the agent got %v", err)
	var rec string
	if !testcluster.Eventually(10*time.Second, func() bool {
		recs := decode[api.AuditRecords](t, "audit query", mustCLI(t, m.hr, hr, "audit", "query", "-request-id", first.requestID, "-o", "json")).Records
		rec = fmt.Sprintf("%+v", recs)
		return len(recs) == 1 && recs[0].RequestID == first.requestID && recs[0].ErrorCode == gateway.CodeRemoteUnavailable &&
			strings.Contains(recs[0].Reason, "may have been carried out") && strings.Contains(recs[0].Reason, first.requestID)
	}) {
		t.Errorf("hr: audit query -request-id %s did not find exactly one record saying it may have been carried out within 10s; last: %s", first.requestID, rec)
	}
	if runs := up.runsOf(first.requestID); len(runs) != 1 {
		t.Errorf("finance.transfer request %s ran %d times at the upstream: %+v; want once", first.requestID, len(runs), runs)
	}

	// What finance's audit says of it, asked as the error says, once the
	// nodes killed are back: nothing. The node died while running the
	// call and records a call when it ends, which is why the error says
	// that such a node has no record and the tool's own records must tell.
	for _, n := range m.fin.Nodes {
		if !n.Running() {
			n.Start()
		}
	}
	for _, n := range m.fin.Nodes {
		n.WaitReady(60 * time.Second)
	}
	out, code := m.fin.CLI(killed, "audit", "query", "-all", "-request-id", first.requestID, "-o", "json")
	var fin api.AuditAllRecords
	if err := json.Unmarshal([]byte(out), &fin); code != 0 || err != nil || fin.Partial || len(fin.Nodes) != len(m.fin.Nodes) || len(fin.Records) != 0 {
		t.Errorf("finance: audit query -all -request-id %s (exit %d) = %s; want every replica's answer, and no record", first.requestID, code, out)
	}
}
