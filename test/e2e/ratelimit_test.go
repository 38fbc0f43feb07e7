package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpmesh/mcpmesh/registry/api"
	"github.com/mcpmesh/mcpmesh/test/internal/testcluster"
)

// codeRateLimited is the gateway's JSON-RPC code for a rate-limited call.
const codeRateLimited = -32014

// limitedAnswer is what one call got.
type limitedAnswer struct {
	status     int
	retryAfter string
	body       string
	err        error
}

// TestRateLimitBUWide: a tenant's limit, declared in limits.yaml and
// applied with mcpmesh apply, holds for the BU as a whole: calls spread
// round-robin over three real nodes are admitted at the limit, not three
// times it (each node enforces a third, the leader having committed 3
// live replicas) and not a third of it. A refused call gets HTTP 429 with
// Retry-After and the JSON-RPC error -32014 with retryAfterMs, is counted
// in mcpmesh_rate_limited_total and audited with outcome rate_limited.
func TestRateLimitBUWide(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, "directory")
	c := startCluster(t, testcluster.Options{NoSync: true})
	leader := c.Leader(leaderTimeout)
	f := c.Followers(leader)[0]
	mustCLI(t, c, f, "tenant", "add", "payroll", "-owner", "alice@corp.example")
	mustCLI(t, c, f, "apply", "-f", permitAll(t))
	mustCLI(t, c, f, "registry", "submit", "-f", writeCard(t, upstreamCard("corp.hr/directory", "1.0.0", up.URL)))
	mustCLI(t, c, f, "registry", "approve", "corp.hr/directory@1.0.0")
	key := createKey(t, c, f, "payroll", "staff")

	// 30/s with a burst of 30: each node 10/s, burst 10. Low enough that a
	// loaded 2-core machine offers well above it through three nodes.
	const rate, burst = 30.0, 30.0
	dir := t.TempDir()
	writeFile(t, dir, "limits.yaml", []byte("# the BU's rate limits\n- tenant: payroll\n  rate: 30/s\n  burst: 30\n"))
	if out := mustCLI(t, c, f, "apply", "-f", dir, "-dry-run"); !strings.Contains(out, "create limits (+tenant=payroll)") {
		t.Errorf("apply -dry-run: %s", out)
	}
	mustCLI(t, c, f, "apply", "-f", dir)
	if out := mustCLI(t, c, leader, "apply", "-f", dir, "-dry-run"); !strings.Contains(out, "unchanged limits") {
		t.Errorf("apply -dry-run after apply: %s", out)
	}
	bad := t.TempDir()
	writeFile(t, bad, "limits.yaml", []byte("- tenant: payroll\n  rate: 30/d\n"))
	out, code := c.CLI(f, "apply", "-f", bad)
	if code != 1 || !strings.Contains(out, `limits.yaml:2: rate: rate "30/d": unknown unit "d"`) || !strings.Contains(out, "nothing was applied") {
		t.Errorf("apply of a bad limits.yaml: exit %d: %s", code, out)
	}

	// Every node serves the limit, shared by the 3 live replicas.
	for _, n := range c.Nodes {
		var last string
		if !testcluster.Eventually(15*time.Second, func() bool {
			ls := decode[api.LimitsResponse](t, "limits", mustCLI(t, c, n, "limits", "-o", "json"))
			_, metrics := get(t, n.URL()+"/metrics", "")
			last = mustCLI(t, c, n, "limits")
			return len(ls.Limits.Limits) == 1 && ls.Replicas.Count == 3 && strings.Contains(metrics, "mcpmesh_rate_limit_live_replicas 3")
		}) {
			t.Fatalf("%s does not enforce the limit over 3 live replicas within 15s; mcpmesh limits says:\n%s", n.ID, last)
		}
	}
	t.Logf("mcpmesh limits:\n%s", mustCLI(t, c, leader, "limits"))

	// Drive calls round-robin over the nodes from 9 workers for a window.
	transport := &http.Transport{MaxIdleConnsPerHost: 16}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: 10 * time.Second}
	call := func(n *testcluster.Node) limitedAnswer {
		body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"hr.lookup","arguments":{"q":"x"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"load","version":"1"}}}}`
		req, _ := http.NewRequest(http.MethodPost, n.URL()+"/mcp", strings.NewReader(body))
		for k, v := range map[string]string{"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
			"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "hr.lookup", "Authorization": "Bearer " + key.Secret} {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			return limitedAnswer{err: err}
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return limitedAnswer{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), body: string(b)}
	}
	// drive calls round-robin over nodes from 9 workers for a window, and
	// checks what was admitted against the BU-wide limit.
	drive := func(phase string, nodes []*testcluster.Node) (limited int, sample limitedAnswer) {
		t.Helper()
		const workers, window = 9, 4 * time.Second
		var (
			mu       sync.Mutex
			answers  []limitedAnswer
			perNode  = map[string]int{}
			admitted int
			wg       sync.WaitGroup
		)
		start := time.Now()
		for w := range workers {
			n := nodes[w%len(nodes)]
			wg.Go(func() {
				for time.Since(start) < window {
					a := call(n)
					mu.Lock()
					answers = append(answers, a)
					if a.status == http.StatusOK && !strings.Contains(a.body, `"error"`) {
						admitted++
						perNode[n.ID]++
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		// Every admission happened between start and now: a conservative
		// window.
		elapsed := time.Since(start)
		failed := 0
		for _, a := range answers {
			switch {
			case a.status == http.StatusTooManyRequests:
				limited++
				sample = a
			case a.err != nil || a.status != http.StatusOK || strings.Contains(a.body, `"error"`):
				failed++
				if failed == 1 {
					t.Errorf("%s: a call failed other than by the limit: HTTP %d %v %s", phase, a.status, a.err, a.body)
				}
			}
		}
		secs := elapsed.Seconds()
		ceiling := rate*secs + burst
		share := (rate*secs + burst) / float64(len(nodes))
		t.Logf("%s: tenant payroll 30/s burst 30 over %d live nodes: %d calls in %s (%.0f/s offered), %d admitted (%.1f/s; per node %v), %d refused with 429; ceiling rate×window+burst = %.0f, one node's share = %.0f",
			phase, len(nodes), len(answers), elapsed.Round(time.Millisecond), float64(len(answers))/secs, admitted, float64(admitted)/secs, perNode, limited, ceiling, share)
		if float64(len(answers)) < 1.5*ceiling {
			t.Fatalf("%s: the load was too light to test the limit: %d calls offered, want at least %.0f (1.5× the ceiling); the machine is too loaded", phase, len(answers), 1.5*ceiling)
		}
		// Each node admits at most its share of rate×window + burst;
		// floating point at the edges of a bucket may let one more call
		// through per node, hence +1 per node. Unshared, the nodes would
		// admit up to len(nodes) times the ceiling.
		if float64(admitted) > ceiling+float64(len(nodes)) {
			t.Errorf("%s: %d calls admitted in %s: more than the BU-wide limit allows (%.0f + %d)", phase, admitted, elapsed.Round(time.Millisecond), ceiling, len(nodes))
		}
		// Spread evenly, the nodes together admit close to the ceiling
		// (measured: 147 of 150 on a shared 2-core machine). Asking only for
		// more than all nodes' shares but one keeps the test robust when
		// one node is slowed, and still fails a BU that admitted 1/N.
		if want := share * float64(len(nodes)-1); float64(admitted) <= want {
			t.Errorf("%s: %d calls admitted in %s: want more than %.0f, close to the BU-wide %.0f (one node's share is %.0f)", phase, admitted, elapsed.Round(time.Millisecond), want, ceiling, share)
		}
		return limited, sample
	}
	limited, sample := drive("3 nodes", c.Nodes)
	if limited == 0 {
		t.Fatal("no call was refused with 429")
	}
	var msg struct {
		Error struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
			Data    struct {
				RetryAfterMs int64  `json:"retryAfterMs"`
				Scope        string `json:"scope"`
				Limit        struct {
					Tenant, Rate string
					Burst        int
				} `json:"limit"`
				Replicas int `json:"replicas"`
			} `json:"data"`
		} `json:"error"`
	}
	ra, raErr := strconv.Atoi(sample.retryAfter)
	if err := json.Unmarshal([]byte(sample.body), &msg); err != nil || raErr != nil || ra < 1 || msg.Error.Code != codeRateLimited ||
		msg.Error.Data.RetryAfterMs < 1 || msg.Error.Data.Scope != "tenant" || msg.Error.Data.Limit.Tenant != "payroll" ||
		msg.Error.Data.Limit.Rate != "30/s" || msg.Error.Data.Replicas != 3 {
		t.Errorf("a refused call: Retry-After %q, body %s; want 429 with Retry-After ≥ 1 and error -32014 with retryAfterMs, the tenant limit and 3 replicas", sample.retryAfter, sample.body)
	}

	// Counted and audited on every node.
	for _, n := range c.Nodes {
		_, metrics := get(t, n.URL()+"/metrics", "")
		if !strings.Contains(metrics, `mcpmesh_rate_limited_total{namespace="hr",scope="tenant",tenant="payroll",tool="hr.lookup"}`) {
			t.Errorf("%s: /metrics lacks mcpmesh_rate_limited_total for the tenant", n.ID)
		}
		recs := decode[api.AuditRecords](t, "audit query", mustCLI(t, c, n, "audit", "query", "-o", "json", "-outcome", "rate_limited"))
		if len(recs.Records) == 0 || recs.Records[0].Tenant != "payroll" || recs.Records[0].ErrorCode != codeRateLimited ||
			!strings.Contains(recs.Records[0].Reason, "rate limit tenant=payroll: 30/s, burst 30, shared by 3 live replicas") {
			t.Errorf("%s: rate_limited audit records = %+v", n.ID, recs.Records)
		}
	}

	// A follower dies: the leader commits 2 live replicas, the survivors
	// each admit half, and the BU still admits the limit once.
	dead := c.Followers(leader)[1]
	dead.Kill()
	survivors := []*testcluster.Node{leader, f}
	killed := time.Now()
	for _, n := range survivors {
		var last string
		if !testcluster.Eventually(15*time.Second, func() bool {
			_, metrics := get(t, n.URL()+"/metrics", "")
			last = mustCLI(t, c, n, "limits")
			return strings.Contains(metrics, "mcpmesh_rate_limit_live_replicas 2")
		}) {
			t.Fatalf("%s does not share the limit by 2 live replicas within 15s of %s's death; mcpmesh limits says:\n%s", n.ID, dead.ID, last)
		}
	}
	t.Logf("after %s was killed, both survivors enforced half the limit within %s:\n%s", dead.ID, time.Since(killed).Round(time.Millisecond), mustCLI(t, c, leader, "limits"))
	drive("2 nodes", survivors)
}
