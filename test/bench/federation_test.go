package bench

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpmesh/mcpmesh/node/gateway"
	"github.com/mcpmesh/mcpmesh/registry/api"
	"github.com/mcpmesh/mcpmesh/registry/state"
	"github.com/mcpmesh/mcpmesh/test/internal/testcluster"
)

const (
	// fedServer is the upstream as finance registers and exports it;
	// hr's agents call it as fedTool.
	fedServer = "corp.finance/echo"
	fedTool   = "finance.echo"
	// fedPoll is how often the propagation benchmarks look: a call (or a
	// listing) on the agent's warm session every fedPoll.
	fedPoll = 5 * time.Millisecond
	// fedLimit bounds every wait of the federation benchmarks.
	fedLimit = 60 * time.Second
	// maxFedIters bounds their iteration count: each takes seconds.
	maxFedIters = 20
)

// fedMesh is two one-node BUs, hr and finance, federated by a manifest
// central security signs, as test/e2e's TestCrossBUCall sets them up: hr
// may call what finance exports to it, finance exports fedServer's echo
// tool to hr, and an agent of hr holds a warm session to hr's /mcp.
type fedMesh struct {
	dir               string
	hr, fin           *testcluster.Cluster
	hrPeer, finPeer   string
	centralKey        string
	hrCA, finCA       []byte
	version           int
	agent             *mcp.ClientSession
	hrAdmin, finAdmin *api.Client
}

func startFedMesh(b *testing.B) *fedMesh {
	b.Helper()
	m := &fedMesh{dir: b.TempDir(), hrPeer: testcluster.FreePort(b), finPeer: testcluster.FreePort(b)}
	central := filepath.Join(m.dir, "central")
	bin := testcluster.Bin(b)
	if out, err := runCmd(bin, "trust", "manifest", "keygen", "-out", central); err != nil {
		b.Fatalf("manifest keygen: %v: %s", err, out)
	}
	m.centralKey = filepath.Join(central, "central.key")
	key := make([]byte, 32)
	rand.Read(key)
	keyring := filepath.Join(m.dir, "gossip.keys")
	if err := os.WriteFile(keyring, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	fed := func(peer string) string {
		return fmt.Sprintf("federation:\n  mesh: bench\n  manifest_key_file: %q\n  peer:\n    listen: %q\n  gossip:\n    listen: %q\n    keyring_file: %q\n",
			filepath.Join(central, "central.pub"), peer, testcluster.FreePort(b), keyring)
	}
	// Raft with fsync, as in production: the manifest and kill switches
	// are Raft writes.
	m.hr = testcluster.New(b, testcluster.Options{Nodes: 1, Namespace: "hr", ExtraYAML: fed(m.hrPeer)})
	m.fin = testcluster.New(b, testcluster.Options{Nodes: 1, Namespace: "finance", ExtraYAML: fed(m.finPeer)})
	m.hr.Start()
	m.fin.Start()
	var err error
	if m.hrCA, err = os.ReadFile(filepath.Join(m.hr.CADir, "ca.crt")); err != nil {
		b.Fatal(err)
	}
	if m.finCA, err = os.ReadFile(filepath.Join(m.fin.CADir, "ca.crt")); err != nil {
		b.Fatal(err)
	}
	hrN, finN := m.hr.Nodes[0], m.fin.Nodes[0]
	m.hrAdmin, m.finAdmin = client(b, m.hr, hrN, 15*time.Second), client(b, m.fin, finN, 15*time.Second)

	upstream := startEchoUpstream(b)
	permitAll := filepath.Join(m.dir, "permit-all")
	catalog := filepath.Join(m.dir, "finance-catalog")
	for _, d := range []string{permitAll, catalog} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	write := func(path, text string) string {
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			b.Fatal(err)
		}
		return path
	}
	write(filepath.Join(permitAll, "permit-all.cedar"), "permit (principal, action, resource);\n")
	write(filepath.Join(catalog, "permit-all.cedar"), "permit (principal, action, resource);\n")
	write(filepath.Join(catalog, "exports.yaml"), fmt.Sprintf("- server: %s\n  tools: [echo]\n  to:\n    - trust_domain: hr.example.corp\n", fedServer))
	card := write(filepath.Join(m.dir, "card.json"), fmt.Sprintf(`{"name":%q,"description":"bench upstream","version":"1.0.0","_meta":{
"io.mcpmesh/governance":{"owner":"o@corp.example","team":"t","dataClassification":"internal","riskTier":"low","costPerCall":0,
"upstream":{"transport":"streamable-http","url":%q}},
"io.mcpmesh/tools":[%s]}}`, fedServer, upstream, echoToolDef))
	mustRun(b, m.fin, finN, "apply", "-f", catalog)
	mustRun(b, m.fin, finN, "registry", "submit", "-f", card)
	mustRun(b, m.fin, finN, "registry", "approve", fedServer+"@1.0.0")
	mustRun(b, m.hr, hrN, "tenant", "add", "payroll", "-owner", "alice@corp.example")
	mustRun(b, m.hr, hrN, "apply", "-f", permitAll)
	var created api.APIKeyCreated
	if err := json.Unmarshal([]byte(mustRun(b, m.hr, hrN, "apikey", "create", "-tenant", "payroll", "-name", "bench agent", "-o", "json")), &created); err != nil {
		b.Fatalf("apikey create: %v", err)
	}
	m.push(b, m.sign(b, true))

	c := mcp.NewClient(&mcp.Implementation{Name: "bench-agent", Version: "1"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	s, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: hrN.URL() + "/mcp",
		HTTPClient: &http.Client{Transport: bearer{created.Secret}}}, &mcp.ClientSessionOptions{ProtocolVersion: "2026-07-28"})
	if err != nil {
		b.Fatalf("connect to hr: %v", err)
	}
	b.Cleanup(func() { s.Close() })
	m.agent = s
	m.waitServed(b)
	return m
}

// echoToolDef is the upstream's one tool.
const echoToolDef = `{"name":"echo","description":"Returns its input.","inputSchema":{"type":"object","properties":{"text":{"type":"string"}},"required":["text"]}}`

// startEchoUpstream serves a go-sdk MCP server with the echo tool on
// loopback until the benchmark ends, and returns its URL.
func startEchoUpstream(b *testing.B) string {
	b.Helper()
	var def mcp.Tool
	if err := json.Unmarshal([]byte(echoToolDef), &def); err != nil {
		b.Fatal(err)
	}
	s := mcp.NewServer(&mcp.Implementation{Name: "bench-upstream", Version: "1"}, nil)
	s.AddTool(&def, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		var args struct{ Text string }
		json.Unmarshal(req.Params.Arguments, &args)
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: args.Text}}}, nil
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{Stateless: true}), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String() + "/mcp"
}

type bearer struct{ token string }

func (t bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+t.token)
	return http.DefaultTransport.RoundTrip(r)
}

func runCmd(bin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	return string(out), err
}

// mustRun runs a client command against n and fails the benchmark unless
// it exits 0.
func mustRun(b *testing.B, c *testcluster.Cluster, n *testcluster.Node, args ...string) string {
	b.Helper()
	out, code := c.CLI(n, args...)
	if code != 0 {
		b.Fatalf("on %s: mcpmesh %s: exit %d: %s", n.ID, strings.Join(args, " "), code, out)
	}
	return out
}

// sign writes and signs (`mcpmesh trust manifest sign`) the next version
// of the manifest, with hr → finance or without any relationship, and
// returns the signed file's path.
func (m *fedMesh) sign(b *testing.B, related bool) string {
	b.Helper()
	m.version++
	indent := func(pem []byte) string {
		return "      " + strings.ReplaceAll(strings.TrimSpace(string(pem)), "\n", "\n      ")
	}
	rels := "relationships: []"
	if related {
		rels = "relationships:\n  - from: hr.example.corp\n    to: finance.example.corp"
	}
	doc := fmt.Sprintf(`version: %d
expires: %s
trust_domains:
  - trust_domain: hr.example.corp
    namespace: hr
    bundle_endpoints:
      - url: https://%s
        spiffe_id: spiffe://hr.example.corp/mcpmesh/node/n1
    bootstrap_bundle: |
%s
  - trust_domain: finance.example.corp
    namespace: finance
    bundle_endpoints:
      - url: https://%s
        spiffe_id: spiffe://finance.example.corp/mcpmesh/node/n1
    bootstrap_bundle: |
%s
%s
`, m.version, time.Now().Add(24*time.Hour).UTC().Format(time.RFC3339), m.hrPeer, indent(m.hrCA), m.finPeer, indent(m.finCA), rels)
	src := filepath.Join(m.dir, fmt.Sprintf("manifest-%d.yaml", m.version))
	if err := os.WriteFile(src, []byte(doc), 0o600); err != nil {
		b.Fatal(err)
	}
	out := filepath.Join(m.dir, fmt.Sprintf("manifest-%d.jws", m.version))
	if o, err := runCmd(testcluster.Bin(b), "trust", "manifest", "sign", "-key", m.centralKey, "-f", src, "-o", out); err != nil {
		b.Fatalf("manifest sign: %v: %s", err, o)
	}
	return out
}

// push pushes a signed manifest to both BUs at once, as central security
// would (`mcpmesh trust manifest push` makes the same admin API call).
func (m *fedMesh) push(b *testing.B, path string) {
	signed, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, cl := range []*api.Client{m.hrAdmin, m.finAdmin} {
		wg.Go(func() {
			_, errs[i] = cl.PushManifest(context.Background(), signed)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		b.Fatalf("push manifest %s: %v", filepath.Base(path), err)
	}
}

// call calls fedTool on the agent's warm session: nil when it is
// answered, else the refusal.
func (m *fedMesh) call() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := m.agent.CallTool(ctx, &mcp.CallToolParams{Name: fedTool, Arguments: map[string]any{"text": "x"}})
	if err != nil {
		return err
	}
	if res.IsError {
		return fmt.Errorf("tool error: %v", res.Content)
	}
	return nil
}

// listed reports whether hr lists fedTool to the agent.
func (m *fedMesh) listed() (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := m.agent.ListTools(ctx, nil)
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(res.Tools, func(t *mcp.Tool) bool { return t.Name == fedTool }), nil
}

// waitServed waits until hr lists fedTool and a call of it is answered.
func (m *fedMesh) waitServed(b *testing.B) {
	b.Helper()
	var last string
	ok := testcluster.Eventually(fedLimit, func() bool {
		listed, err := m.listed()
		if err != nil || !listed {
			last = fmt.Sprintf("listed %v, %v", listed, err)
			return false
		}
		err = m.call()
		last = fmt.Sprint("call: ", err)
		return err == nil
	})
	if !ok {
		b.Fatalf("hr does not serve %s within %s; last seen: %s\nhr log:\n%s\nfinance log:\n%s", fedTool, fedLimit, last, m.hr.Nodes[0].LogTail(30), m.fin.Nodes[0].LogTail(30))
	}
}

// refusedHow names how hr refused a call: "killed" (-32012, by hr or
// passed on from finance), "remote unavailable" (-32018), "refused by
// exporter" (-32009) or "unknown tool" (the import is gone); "" for any
// other failure.
func refusedHow(err error) string {
	var je *jsonrpc.Error
	code := int64(0)
	if errors.As(err, &je) {
		code = je.Code
	}
	msg := fmt.Sprint(err)
	switch {
	case code == gateway.CodeKilled || strings.Contains(msg, "killed: "):
		return "killed"
	case code == gateway.CodeRemoteUnavailable || strings.Contains(msg, "did not answer the call"):
		return "remote unavailable"
	case code == gateway.CodeRefusedByExporter || strings.Contains(msg, "refused by namespace"):
		return "refused by exporter"
	case strings.Contains(msg, "unknown tool"):
		return "unknown tool"
	}
	return ""
}

// waitUntil polls cond every fedPoll from start until it holds, and
// returns when it first held, or false after fedLimit.
func waitUntil(start time.Time, cond func() bool) (time.Duration, bool) {
	for time.Since(start) < fedLimit {
		if cond() {
			return time.Since(start), true
		}
		time.Sleep(fedPoll)
	}
	return 0, false
}

// BenchmarkManifestRevocation removes hr → finance from the federation
// manifest once per iteration (the next version, pushed to both BUs at
// once) and measures from the push's start until hr refuses the agent's
// call of the imported tool (refused-ms) and until hr no longer lists it
// (unlisted-ms); then, untimed, restores the relationship and waits until
// calls are answered again. See the package documentation.
func BenchmarkManifestRevocation(b *testing.B) {
	if n, ok := fixedBenchtime(); ok && n > maxFedIters {
		b.Skipf("each iteration revokes and restores a relationship (seconds); -benchtime %dx asks for too many: run it with -benchtime 5x", n)
	}
	m := startFedMesh(b)
	var refused, unlisted []time.Duration
	codes := map[string]int{}
	iter := 0
	for b.Loop() {
		b.StopTimer()
		iter++
		revoke := m.sign(b, false)
		if err := m.call(); err != nil {
			b.Fatalf("iteration %d: the call fails before the revocation: %v", iter, err)
		}
		b.StartTimer()

		start := time.Now()
		m.push(b, revoke)
		var wg sync.WaitGroup
		var lastCall, lastList string
		var tRefused, tUnlisted time.Duration
		var okRefused, okUnlisted bool
		wg.Go(func() {
			tRefused, okRefused = waitUntil(start, func() bool {
				err := m.call()
				lastCall = fmt.Sprint(err)
				if err == nil {
					return false
				}
				how := refusedHow(err)
				if how == "" {
					how = fmt.Sprintf("other: %v", err)
				}
				codes[how]++
				return true
			})
		})
		wg.Go(func() {
			tUnlisted, okUnlisted = waitUntil(start, func() bool {
				listed, err := m.listed()
				lastList = fmt.Sprintf("listed %v, %v", listed, err)
				return err == nil && !listed
			})
		})
		wg.Wait()
		b.StopTimer()
		if !okRefused || !okUnlisted {
			b.Fatalf("iteration %d: %s after the revocation, calls: %s; listing: %s\nhr log:\n%s", iter, fedLimit, lastCall, lastList, m.hr.Nodes[0].LogTail(30))
		}
		refused, unlisted = append(refused, tRefused), append(unlisted, tUnlisted)
		b.Logf("iteration %d: manifest version %d pushed; call refused after %s (%s), tool unlisted after %s",
			iter, m.version, tRefused.Round(time.Millisecond), lastCall, tUnlisted.Round(time.Millisecond))

		restored := time.Now()
		m.push(b, m.sign(b, true))
		m.waitServed(b)
		b.Logf("iteration %d: relationship restored (version %d), calls answered again after %s", iter, m.version, time.Since(restored).Round(time.Millisecond))
		b.StartTimer()
	}
	for what, n := range codes {
		if strings.HasPrefix(what, "other") {
			b.Errorf("%d refusals were neither -32018, -32009 nor an unknown tool: %s", n, what)
		}
	}
	b.Logf("refusals: %v", codes)
	reportMillis(b, "refused", refused)
	reportMillis(b, "unlisted", unlisted)
}

// BenchmarkKillSwitchPropagation pulls a kill switch on the exported tool
// once per iteration and measures from the admin API call's start (the
// call `mcpmesh kill` makes) until hr refuses the agent's call of it:
// /exporter pulls it in finance on its own tool (kind tool,
// corp.finance/echo/echo: finance refuses the forwarded call, hr passes
// the refusal on), /consumer in hr on the imported tool (hr names it by
// the exporter's server and tool too, and refuses before forwarding).
// The switch is then released (mcpmesh revive), untimed, and calls must
// be answered again.
func BenchmarkKillSwitchPropagation(b *testing.B) {
	if n, ok := fixedBenchtime(); ok && n > maxFedIters {
		b.Skipf("-benchtime %dx asks for too many iterations: run it with -benchtime 5x", n)
	}
	m := startFedMesh(b)
	for _, side := range []struct {
		name string
		cl   *api.Client
	}{{"exporter", m.finAdmin}, {"consumer", m.hrAdmin}} {
		b.Run(side.name, func(b *testing.B) {
			var refused []time.Duration
			hows := map[string]int{}
			iter := 0
			for b.Loop() {
				b.StopTimer()
				iter++
				if err := m.call(); err != nil {
					b.Fatalf("iteration %d: the call fails before the kill: %v", iter, err)
				}
				b.StartTimer()

				start := time.Now()
				if _, err := side.cl.Kill(context.Background(), api.KillRequest{Kind: state.KillTool, Name: fedServer + "/echo", Reason: fmt.Sprintf("bench iteration %d", iter)}); err != nil {
					b.Fatalf("kill: %v", err)
				}
				var last error
				t, ok := waitUntil(start, func() bool {
					last = m.call()
					return last != nil
				})
				b.StopTimer()
				if !ok {
					b.Fatalf("iteration %d: hr's call not refused within %s of the kill switch", iter, fedLimit)
				}
				how := refusedHow(last)
				if how == "" {
					side.cl.Revive(context.Background(), state.KillTool, fedServer+"/echo")
					b.Fatalf("iteration %d: hr's call failed, but not with a refusal: %v", iter, last)
				}
				hows[how]++
				refused = append(refused, t)
				b.Logf("iteration %d: refused after %s (%s): %v", iter, t.Round(time.Millisecond), how, last)

				if _, err := side.cl.Revive(context.Background(), state.KillTool, fedServer+"/echo"); err != nil {
					b.Fatalf("revive: %v", err)
				}
				if _, ok := waitUntil(time.Now(), func() bool { last = m.call(); return last == nil }); !ok {
					b.Fatalf("iteration %d: calls not answered within %s of the revive; last: %v", iter, fedLimit, last)
				}
				b.StartTimer()
			}
			reportMillis(b, "refused", refused)
			b.Logf("refusals: %v", hows)
		})
	}
}
