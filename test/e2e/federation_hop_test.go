package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
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

// hopCall is what the slow upstream saw of one call, by its "tag".
type hopCall struct {
	progressToken any
	// metaTrace and headerTrace are the traceparent of the request's
	// _meta and HTTP header; timeout its Mcpmesh-Timeout header.
	metaTrace, headerTrace, timeout string
	// metaState and headerState are its tracestate in _meta and header.
	metaState, headerState string
	// requestID and callers are the node token's request id and caller
	// chain.
	requestID string
	callers   []string
	started   time.Time
	// ended is when the handler returned; endErr its context's error
	// then (nil when it finished its work).
	ended  time.Time
	endErr error
	done   chan struct{}
}

// hopUpstream is an MCP server (go-sdk) with one slow tool that reports
// progress to a caller that gave a progress token, and records what each
// call carried and how it ended.
type hopUpstream struct {
	URL   string
	mu    sync.Mutex
	calls map[string]*hopCall
}

const slowTool = `{"name":"slow","description":"Works in steps, reporting progress; holds until cancelled when asked.","inputSchema":{"type":"object","properties":{"tag":{"type":"string"},"steps":{"type":"integer"},"hold":{"type":"boolean"}},"required":["tag","steps"]}}`

func startHopUpstream(t *testing.T) *hopUpstream {
	t.Helper()
	u := &hopUpstream{calls: map[string]*hopCall{}}
	s := mcp.NewServer(&mcp.Implementation{Name: "slowpoke", Version: "1"}, nil)
	var def mcp.Tool
	if err := json.Unmarshal([]byte(slowTool), &def); err != nil {
		t.Fatal(err)
	}
	s.AddTool(&def, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		var args struct {
			Tag   string
			Steps int
			Hold  bool
		}
		json.Unmarshal(req.Params.Arguments, &args)
		c := &hopCall{progressToken: req.Params.GetProgressToken(), started: time.Now(), done: make(chan struct{})}
		c.metaTrace, _ = req.Params.Meta["traceparent"].(string)
		c.metaState, _ = req.Params.Meta["tracestate"].(string)
		if req.Extra != nil && req.Extra.Header != nil {
			h := req.Extra.Header
			c.headerTrace, c.timeout = h.Get("Traceparent"), h.Get("Mcpmesh-Timeout")
			c.headerState = h.Get("Tracestate")
			c.requestID, c.callers = tokenClaims(h.Get("Authorization"))
		}
		u.mu.Lock()
		u.calls[args.Tag] = c
		u.mu.Unlock()
		defer func() {
			c.ended, c.endErr = time.Now(), ctx.Err()
			close(c.done)
		}()
		for i := 1; i <= args.Steps; i++ {
			if c.progressToken != nil {
				req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: c.progressToken, Progress: float64(i), Total: float64(args.Steps), Message: fmt.Sprintf("step %d", i)})
			}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(30 * time.Millisecond):
			}
		}
		if args.Hold {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(2 * time.Minute):
			}
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "done:" + args.Tag}}}, nil
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

// tokenClaims reads the request id and caller chain of a node token (its
// signature is the business of the token tests).
func tokenClaims(auth string) (string, []string) {
	tok, _ := strings.CutPrefix(auth, "Bearer ")
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return "", nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", nil
	}
	var c struct {
		RequestID string   `json:"io.mcpmesh/request_id"`
		Caller    []string `json:"io.mcpmesh/caller"`
	}
	json.Unmarshal(raw, &c)
	return c.RequestID, c.Caller
}

// call returns what the upstream saw of the call tagged tag, waiting up to
// timeout for it to begin.
func (u *hopUpstream) call(t *testing.T, tag string, timeout time.Duration) *hopCall {
	t.Helper()
	var c *hopCall
	testcluster.Eventually(timeout, func() bool {
		u.mu.Lock()
		defer u.mu.Unlock()
		c = u.calls[tag]
		return c != nil
	})
	if c == nil {
		t.Fatalf("the upstream never saw the call %q", tag)
	}
	return c
}

// ended waits up to timeout for c's handler to return.
func (c *hopCall) waitEnded(timeout time.Duration) bool {
	select {
	case <-c.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

func hopCard(url string) []byte {
	return []byte(fmt.Sprintf(`{"name":"corp.finance/slowpoke","description":"Slow test upstream","version":"1.0.0","_meta":{
"io.mcpmesh/governance":{"owner":"o@corp.example","team":"t","dataClassification":"internal","riskTier":"low","costPerCall":0,
"upstream":{"transport":"streamable-http","url":%q}},
"io.mcpmesh/tools":[%s]}}`, url, slowTool))
}

// progressLog collects the progress notifications an agent receives, by
// progress token.
type progressLog struct {
	mu   sync.Mutex
	seen map[string][]float64
}

func (l *progressLog) handle(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
	l.mu.Lock()
	defer l.mu.Unlock()
	tok := fmt.Sprint(req.Params.ProgressToken)
	l.seen[tok] = append(l.seen[tok], req.Params.Progress)
}

func (l *progressLog) of(token string) []float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.seen[token])
}

// dialWithProgress connects an agent holding key that records progress.
func dialWithProgress(t *testing.T, url, era, key string) (*mcp.ClientSession, *progressLog) {
	t.Helper()
	log := &progressLog{seen: map[string][]float64{}}
	c := mcp.NewClient(&mcp.Implementation{Name: "e2e-agent", Version: "1"}, &mcp.ClientOptions{ProgressNotificationHandler: log.handle})
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	s, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url, HTTPClient: &http.Client{Transport: credentialTransport{key}}}, &mcp.ClientSessionOptions{ProtocolVersion: era})
	if err != nil {
		t.Fatalf("connect to %s (%s): %v", url, era, err)
	}
	t.Cleanup(func() { s.Close() })
	return s, log
}

func newTraceparent() (string, string) {
	b := make([]byte, 24)
	rand.Read(b)
	id := hex.EncodeToString(b[:16])
	return "00-" + id + "-" + hex.EncodeToString(b[16:]) + "-01", id
}

// hrTimeout is hr's federation.call_timeout in TestFederationHop; finance's
// own mcp.call_timeout is far longer (finTimeout).
const (
	hrTimeout  = 5 * time.Second
	finTimeout = 5 * time.Minute
)

// TestFederationHop: what an agent of hr sends with a call of a tool
// finance exports crosses both nodes: progress comes back in order, a
// cancellation reaches finance's upstream, hr's call timeout bounds
// finance's work (finance's upstream is told the time left, and is
// cancelled when hr gives up, not at finance's own timeout), the agent's
// W3C trace context reaches both BUs' audit records and finance's
// upstream unchanged, and finance's record names hr's node between the
// caller and itself. In both protocol eras of the agent.
func TestFederationHop(t *testing.T) {
	t.Parallel()
	up := startHopUpstream(t)
	m := startMeshWith(t, meshOptions{
		// hr's bound on calls to finance (finance calls no other BU).
		FederationYAML: fmt.Sprintf("  call_timeout: %s\n", hrTimeout),
		Place: func(ns string, o *testcluster.Options) string {
			if ns == "finance" {
				o.ExtraYAML += fmt.Sprintf("mcp:\n  call_timeout: %s\n", finTimeout)
			}
			return "127.0.0.1"
		},
	})
	hrN, finN := m.hr.Nodes[0], m.fin.Nodes[0]

	key := m.export(t, "corp.finance/slowpoke", "slow", hopCard(up.URL))
	m.push(t, "hr>finance")
	waitListed(t, m.hr, hrN, key, "finance.slow", 60*time.Second)
	hrNode, finNode := "spiffe://hr.example.corp/mcpmesh/node/n1", "spiffe://finance.example.corp/mcpmesh/node/n1"
	logs := func() string {
		return fmt.Sprintf("\nhr log:\n%s\nfinance log:\n%s", hrN.LogTail(30), finN.LogTail(30))
	}
	// checkCarried checks what every call carries to finance's upstream:
	// the trace unchanged, at most hr's time left, and hr's node in the
	// caller chain of finance's token.
	checkCarried := func(t *testing.T, c *hopCall, tp string) {
		t.Helper()
		if c.metaTrace != tp || c.headerTrace != tp {
			t.Errorf("finance's upstream got traceparent %q in _meta and %q in its header; want the agent's %q in both", c.metaTrace, c.headerTrace, tp)
		}
		ms, err := strconv.Atoi(c.timeout)
		if err != nil || ms <= 0 || time.Duration(ms)*time.Millisecond > hrTimeout {
			t.Errorf("finance's upstream was told Mcpmesh-Timeout %q; want at most hr's %v (finance's own is %v)", c.timeout, hrTimeout, finTimeout)
		}
		if len(c.callers) != 3 || c.callers[1] != hrNode || c.callers[2] != finNode || !strings.HasPrefix(c.callers[0], "hr.example.corp/apikey:") {
			t.Errorf("finance's upstream token names callers %v; want [hr.example.corp/apikey:… %s %s]", c.callers, hrNode, finNode)
		}
	}

	for _, era := range []string{"2026-07-28", "2025-11-25"} {
		t.Run(era, func(t *testing.T) {
			s, progress := dialWithProgress(t, hrN.URL()+"/mcp", era, key)

			// 1. Progress, in order, through both nodes; 4. the trace.
			tp, traceID := newTraceparent()
			tag := "progress-" + era
			const ts = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
			params := &mcp.CallToolParams{Name: "finance.slow", Arguments: map[string]any{"tag": tag, "steps": 5}, Meta: mcp.Meta{"traceparent": tp, "tracestate": ts}}
			params.SetProgressToken(tag)
			res, err := s.CallTool(t.Context(), params)
			if err != nil || res.IsError {
				t.Fatalf("call = %+v, %v%s", res, err, logs())
			}
			var got []float64
			testcluster.Eventually(5*time.Second, func() bool { got = progress.of(tag); return len(got) >= 5 })
			if !slices.Equal(got, []float64{1, 2, 3, 4, 5}) {
				t.Errorf("the agent got progress %v; want 1..5 in order", got)
			}
			c := up.call(t, tag, time.Second)
			if c.progressToken == nil {
				t.Errorf("finance's upstream got no progress token")
			}
			checkCarried(t, c, tp)
			if c.metaState != ts || c.headerState != ts {
				t.Errorf("finance's upstream got tracestate %q in _meta and %q in its header; want the agent's %q in both", c.metaState, c.headerState, ts)
			}
			reqID, _ := res.Meta["io.mcpmesh/requestId"].(string)
			if reqID == "" || c.requestID != reqID {
				t.Errorf("request id: agent's result says %q, finance's upstream token %q", reqID, c.requestID)
			}
			hrRec := auditRecord(t, m.hr, hrN, reqID)
			finRec := auditRecord(t, m.fin, finN, reqID)
			if hrRec.TraceID != traceID || finRec.TraceID != traceID {
				t.Errorf("trace ids on the records: hr %q, finance %q; want %q", hrRec.TraceID, finRec.TraceID, traceID)
			}
			if len(finRec.Actors) != 3 || finRec.Actors[0] != finRec.Principal || finRec.Actors[1] != hrNode || finRec.Actors[2] != finNode {
				t.Errorf("finance's record has actors %v; want [%s %s %s]", finRec.Actors, finRec.Principal, hrNode, finNode)
			}

			// 2. Cancellation: the agent gives up after the first progress.
			tp, _ = newTraceparent()
			tag = "cancel-" + era
			params = &mcp.CallToolParams{Name: "finance.slow", Arguments: map[string]any{"tag": tag, "steps": 1, "hold": true}, Meta: mcp.Meta{"traceparent": tp}}
			params.SetProgressToken(tag)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			callErr := make(chan error, 1)
			go func() {
				_, err := s.CallTool(ctx, params)
				callErr <- err
			}()
			if !testcluster.Eventually(20*time.Second, func() bool { return len(progress.of(tag)) > 0 }) {
				t.Fatalf("no progress of the held call reached the agent%s", logs())
			}
			c = up.call(t, tag, time.Second)
			cancelled := time.Now()
			cancel()
			if err := <-callErr; !errors.Is(err, context.Canceled) {
				t.Errorf("the cancelled call returned %v", err)
			}
			if !c.waitEnded(20 * time.Second) {
				t.Fatalf("finance's upstream still works on a call the agent cancelled 20s ago%s", logs())
			}
			if c.endErr == nil {
				t.Errorf("finance's upstream finished the cancelled call instead of seeing it cancelled")
			}
			t.Logf("%s: cancellation reached finance's upstream %v after the agent cancelled (%v)", era, c.ended.Sub(cancelled).Round(time.Millisecond), c.endErr)
			checkCarried(t, c, tp)
			if rec := auditRecordEventually(t, m.fin, finN, c.requestID); rec.Outcome == audit.OutcomeOK {
				t.Errorf("finance recorded the cancelled call as %s", rec.Outcome)
			} else {
				t.Logf("%s: finance recorded the cancelled call as %s: %s", era, rec.Outcome, rec.Reason)
			}
		})
	}

	// 3. Deadline: hr gives up after its call timeout, and so does
	// finance, long before its own. The calls of both eras run at once
	// (a call hr timed out does not count against finance: the next one
	// is not held back).
	t.Run("deadline", func(t *testing.T) {
		for _, era := range []string{"2026-07-28", "2025-11-25"} {
			t.Run(era, func(t *testing.T) {
				t.Parallel()
				s, _ := dialWithProgress(t, hrN.URL()+"/mcp", era, key)
				tp, _ := newTraceparent()
				tag := "deadline-" + era
				start := time.Now()
				res, err := s.CallTool(t.Context(), &mcp.CallToolParams{Name: "finance.slow", Arguments: map[string]any{"tag": tag, "steps": 0, "hold": true}, Meta: mcp.Meta{"traceparent": tp}})
				agentDone := time.Now()
				if err == nil && !res.IsError {
					t.Fatalf("a call held past hr's timeout was answered: %+v", res)
				}
				t.Logf("%s: the agent got %v after %v", era, err, agentDone.Sub(start).Round(time.Millisecond))
				c := up.call(t, tag, time.Second)
				if !c.waitEnded(30 * time.Second) {
					t.Fatalf("finance's upstream still works on a call hr gave up on 30s ago (finance's own timeout is %v)%s", finTimeout, logs())
				}
				if c.endErr == nil {
					t.Errorf("finance's upstream finished a call it should have been cancelled in")
				}
				checkCarried(t, c, tp)
				t.Logf("%s: finance's upstream was told %sms, worked %v and stopped %v after the agent's error (%v)", era, c.timeout,
					c.ended.Sub(c.started).Round(time.Millisecond), c.ended.Sub(agentDone).Round(time.Millisecond), c.endErr)
				checkTimedOutLookup(t, m, err, c.requestID)
			})
		}
	})
}

// requestIDFlag finds the request id an error tells to look up.
var requestIDFlag = regexp.MustCompile("-request-id ([A-Za-z0-9_-]+)")

// checkTimedOutLookup checks the agent's error of a call of a tool that
// is not safe to repeat, which hr's call timeout ended while finance ran
// it: it says the call may have run and names the request id, and
// finance's audit, asked by that id with -all as the error says, holds
// exactly the one record of it (written once finance's call ended), as
// does hr's.
func checkTimedOutLookup(t *testing.T, m *mesh, err error, upstreamRID string) {
	t.Helper()
	// Two deadlines end together: finance's, carried from hr (it answers
	// that its upstream did not answer in time, which hr passes on for the
	// namespace), and hr's own, a few milliseconds later (hr says finance
	// did not answer). Whichever wins, the agent hears -32018, that the call
	// may have run at finance, and the request id to look up there.
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	if rpcCode(err) != gateway.CodeRemoteUnavailable || !strings.Contains(msg, "may have run") || !strings.Contains(msg, "finance's audit") || strings.Contains(msg, "retry later") {
		t.Errorf("the timed-out call: %v; want -32018 saying it may have run at finance, where to look it up, and not to retry later", err)
		return
	}
	sub := requestIDFlag.FindStringSubmatch(err.Error())
	if sub == nil || sub[1] != upstreamRID {
		t.Errorf("the timed-out call: %v; want it to name -request-id %s (the id finance's upstream got)", err, upstreamRID)
		return
	}
	rid := sub[1]
	var last string
	var fin api.AuditAllRecords
	if !testcluster.Eventually(15*time.Second, func() bool {
		out, code := m.fin.CLI(m.fin.Nodes[0], "audit", "query", "-all", "-request-id", rid, "-o", "json")
		last = out
		return code == 0 && json.Unmarshal([]byte(out), &fin) == nil && len(fin.Records) > 0
	}) {
		t.Errorf("finance: audit query -all -request-id %s found nothing within 15s; last: %s", rid, last)
		return
	}
	if len(fin.Records) != 1 || fin.Records[0].RequestID != rid || fin.Records[0].Kind != audit.KindCall || fin.Partial {
		t.Errorf("finance: audit query -all -request-id %s = %+v; want exactly the one call record", rid, fin)
	}
	hr := decode[api.AuditRecords](t, "audit query", mustCLI(t, m.hr, m.hr.Nodes[0], "audit", "query", "-request-id", rid, "-o", "json"))
	if len(hr.Records) != 1 || hr.Records[0].RequestID != rid || hr.Records[0].ErrorCode != gateway.CodeRemoteUnavailable {
		t.Errorf("hr: audit query -request-id %s = %+v; want exactly the one record, of error -32018", rid, hr.Records)
	}
	t.Logf("request %s: finance recorded it as %s (%s); hr as %s", rid, fin.Records[0].Outcome, fin.Records[0].Reason, hr.Records[0].Outcome)
}

// auditRecord returns the call record of request id on c's node n.
func auditRecord(t *testing.T, c *testcluster.Cluster, n *testcluster.Node, id string) audit.Record {
	t.Helper()
	recs := decode[api.AuditRecords](t, "audit", mustCLI(t, c, n, "audit", "query", "-kind", "call", "-o", "json"))
	for _, r := range recs.Records {
		if r.RequestID == id {
			return r
		}
	}
	t.Fatalf("%s has no call record of request %q: %+v", c.Opts.Namespace, id, recs.Records)
	return audit.Record{}
}

// auditRecordEventually is auditRecord for a record that may still be
// on its way (a cancelled call is recorded once its upstream returns).
func auditRecordEventually(t *testing.T, c *testcluster.Cluster, n *testcluster.Node, id string) audit.Record {
	t.Helper()
	var last []audit.Record
	var found *audit.Record
	testcluster.Eventually(15*time.Second, func() bool {
		out, code := c.CLI(n, "audit", "query", "-kind", "call", "-o", "json")
		if code != 0 {
			return false
		}
		var recs api.AuditRecords
		if json.Unmarshal([]byte(out), &recs) != nil {
			return false
		}
		last = recs.Records
		for i := range recs.Records {
			if recs.Records[i].RequestID == id {
				found = &recs.Records[i]
				return true
			}
		}
		return false
	})
	if found == nil {
		t.Fatalf("%s has no call record of request %q: %+v", c.Opts.Namespace, id, last)
	}
	return *found
}
