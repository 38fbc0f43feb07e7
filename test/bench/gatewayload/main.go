package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpmesh/mcpmesh/node/gateway"
)

// The two protocol eras a run can use.
const (
	eraModern = "2026-07-28"
	eraLegacy = "2025-11-25"
)

// options are the command line of a measuring run.
type options struct {
	bin          string
	era          string
	calls        int
	rounds       int
	warmup       int
	concurrency  []int
	listCalls    int
	payload      int
	nodeLogLevel string
	keep         bool
	timeout      time.Duration
	profileDir   string
	federation   bool
	baseline     string
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "gatewayload:", err)
		os.Exit(1)
	}
}

func run() error {
	role := flag.String("role", "", "internal: run as the upstream, proxy or (profiling) node process, as the harness starts them")
	stateless := flag.Bool("stateless", true, "internal, -role upstream: serve the 2026-07-28 era (a stateless go-sdk handler)")
	target := flag.String("target", "", "internal, -role proxy: the upstream's base URL")
	cfgFile := flag.String("config", "", "internal, -role node: the node config file")
	cpuprofile := flag.String("cpuprofile", "", "internal, with -role: write a CPU profile of the role's process to this file")

	var o options
	defBin := os.Getenv("MCPMESH_BIN")
	if defBin == "" {
		defBin = "bin/mcpmesh"
	}
	flag.StringVar(&o.bin, "mcpmesh", defBin, "the mcpmesh binary (default $MCPMESH_BIN, else bin/mcpmesh; `make build` makes it)")
	flag.StringVar(&o.era, "era", eraModern, "protocol era of every hop: "+eraModern+" (stateless) or "+eraLegacy+" (legacy sessions; the upstream is then a stateful server)")
	legacy := flag.Bool("legacy", false, "shorthand for -era "+eraLegacy)
	flag.IntVar(&o.calls, "calls", 20000, "measured tools/call calls per target and concurrency level")
	flag.IntVar(&o.rounds, "rounds", 20, "rounds the measured calls are split into; each round runs every target once, in rotating order")
	flag.IntVar(&o.warmup, "warmup", 1000, "unmeasured tools/call calls per target before each concurrency level")
	conc := flag.String("concurrency", "1", "comma-separated concurrency levels, e.g. 1,8: calls in flight at once, on one shared session per target")
	flag.IntVar(&o.listCalls, "list-calls", 2000, "measured tools/list calls per target (sequential; 0 skips the tools/list check)")
	flag.IntVar(&o.payload, "payload", 64, "bytes of text echoed per call")
	flag.StringVar(&o.nodeLogLevel, "node-log-level", "info", "the mcpmesh node's log.level (info is the product default)")
	flag.BoolVar(&o.keep, "keep", false, "keep the run's directory (node config and data, node.log, upstream.log, proxy.log) after the run")
	flag.DurationVar(&o.timeout, "timeout", 20*time.Minute, "bound on the whole run")
	flag.StringVar(&o.profileDir, "profile", "", "write CPU profiles of the upstream, proxy and node processes into this directory; the node is then this program's\n"+
		"profiling variant (the node package run as cmd/mcpmesh runs it, plus pprof) instead of the binary. Read them with\n"+
		"`go tool pprof -top DIR/mcpmesh.pprof` (the profile holds the program's symbols)")
	flag.BoolVar(&o.federation, "federation", false, "measure a cross-BU call instead: two federated one-node BUs (hr, finance), the upstream registered in both and exported by\n"+
		"finance to hr; direct, through hr (local) and through hr then finance over HTTP/3 (crossbu), interleaved (see the package doc)")
	flag.StringVar(&o.baseline, "baseline", "", "another mcpmesh binary, run as a second node (baseline) measured interleaved with the others: compares two\n"+
		"builds in one run, e.g. before and after a change (not with -profile or -federation)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	switch *role {
	case "upstream", "proxy":
		var counters upstreamCounters
		h, err := newUpstreamHandler(*stateless, &counters)
		connState := counters.connState
		if *role == "proxy" {
			h, err = newProxy(*target)
			connState = nil
		}
		if err != nil {
			return err
		}
		stop, err := startProfile(*cpuprofile)
		if err != nil {
			return err
		}
		defer stop()
		return serveRole(ctx, h, connState)
	case "node":
		return runNodeRole(ctx, *cfgFile, *cpuprofile)
	case "":
	default:
		return fmt.Errorf("-role %q: want upstream, proxy or node (or none to measure)", *role)
	}

	if *legacy {
		o.era = eraLegacy
	}
	if o.era != eraModern && o.era != eraLegacy {
		return fmt.Errorf("-era %q: want %s or %s", o.era, eraModern, eraLegacy)
	}
	for _, f := range strings.Split(*conc, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return fmt.Errorf("-concurrency %q: want positive integers separated by commas, e.g. 1,8", *conc)
		}
		o.concurrency = append(o.concurrency, n)
	}
	if o.calls < 1 || o.rounds < 1 || o.calls < o.rounds || o.warmup < 0 || o.listCalls < 0 || o.payload < 1 {
		return errors.New("want -calls ≥ -rounds ≥ 1, -warmup ≥ 0, -list-calls ≥ 0 and -payload ≥ 1")
	}
	if o.baseline != "" {
		if o.profileDir != "" || o.federation {
			return errors.New("-baseline: not with -profile or -federation")
		}
		if _, err := os.Stat(o.baseline); err != nil {
			return fmt.Errorf("-baseline: %w", err)
		}
	}
	if _, err := os.Stat(o.bin); err != nil && o.profileDir == "" {
		return fmt.Errorf("mcpmesh binary: %w (run `make build`, or pass -mcpmesh)", err)
	}
	if o.profileDir != "" {
		if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
			return fmt.Errorf("-profile: %w", err)
		}
		o.profileDir, _ = filepath.Abs(o.profileDir)
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	return measure(ctx, o)
}

// setup is the running processes and the client sessions to each target.
type setup struct {
	upstream, proxy, node *child
	// baseline is the -baseline node, if any.
	baseline *child
	// fed is the two BUs of a -federation run (proxy and node are nil).
	fed          *federationSetup
	upstreamURL  string
	targets      []*target
	clkTck       int64
	clkTckSource string
}

func measure(ctx context.Context, o options) (err error) {
	dir, err := os.MkdirTemp("", "gatewayload-")
	if err != nil {
		return err
	}
	defer func() {
		if o.keep || err != nil {
			fmt.Fprintf(os.Stderr, "gatewayload: kept the run's directory (node.yaml, node.log, upstream.log, proxy.log) in %s\n", dir)
			return
		}
		os.RemoveAll(dir)
	}()

	s := &setup{}
	s.clkTck, s.clkTckSource = clockTicks()
	up, upAddr, err := startRole(ctx, filepath.Join(dir, "upstream.log"), "upstream", append(o.profileFlag("upstream"), "-stateless="+strconv.FormatBool(o.era == eraModern))...)
	if err != nil {
		return err
	}
	defer up.stop()
	s.upstream, s.upstreamURL = up, "http://"+upAddr
	if o.federation {
		return measureFederation(ctx, o, s, dir)
	}
	px, pxAddr, err := startRole(ctx, filepath.Join(dir, "proxy.log"), "proxy", append(o.profileFlag("proxy"), "-target", s.upstreamURL)...)
	if err != nil {
		return err
	}
	defer px.stop()
	s.proxy = px
	nodeCmd, err := o.nodeCmd()
	if err != nil {
		return err
	}
	node, nodeURL, err := startNode(ctx, nodeCmd, benchNode, dir, o.nodeLogLevel)
	if err != nil {
		return err
	}
	defer node.stop()
	s.node = node
	secret, err := registerUpstream(ctx, nodeURL, benchServer, s.upstreamURL+mcpPath)
	if err != nil {
		return err
	}

	s.targets = []*target{
		{name: "direct", url: s.upstreamURL + mcpPath, tool: "echo"},
		{name: "proxy", url: "http://" + pxAddr + mcpPath, tool: "echo"},
		{name: "mcpmesh", url: nodeURL + mcpPath, tool: benchToolName, bearer: secret},
	}
	if o.baseline != "" {
		base, baseURL, err := startNode(ctx, binaryNode(o.baseline), baselineNode, dir, o.nodeLogLevel)
		if err != nil {
			return fmt.Errorf("-baseline: %w", err)
		}
		defer base.stop()
		s.baseline = base
		baseSecret, err := registerUpstream(ctx, baseURL, benchServer, s.upstreamURL+mcpPath)
		if err != nil {
			return fmt.Errorf("-baseline: %w", err)
		}
		s.targets = append(s.targets, &target{name: baselineNode.name, url: baseURL + mcpPath, tool: benchToolName, bearer: baseSecret})
	}
	for _, t := range s.targets {
		if err := t.connect(ctx, o.era); err != nil {
			return err
		}
		defer t.session.Close()
	}
	if err := checkTools(ctx, s.targets); err != nil {
		return err
	}

	printHeader(o, s)
	for _, c := range o.concurrency {
		res, err := callPhase(ctx, o, s, c)
		if err != nil {
			return err
		}
		res.print(os.Stdout, s)
	}
	if o.listCalls > 0 {
		res, err := listPhase(ctx, o, s)
		if err != nil {
			return err
		}
		if err := res.printList(os.Stdout, s); err != nil {
			return err
		}
	}
	if node.exited() {
		return fmt.Errorf("the mcpmesh node exited during the run; log tail:\n%s", logTail(filepath.Join(dir, "node.log"), 20))
	}
	if o.profileDir != "" {
		// The profiling node writes its profile as it exits.
		node.stop()
		if err := printShares(os.Stdout, filepath.Join(o.profileDir, "mcpmesh.pprof"), stages); err != nil {
			return err
		}
	}
	for _, name := range []string{"upstream", "proxy"} {
		if n, first := logLines(filepath.Join(dir, name+".log")); n > 0 {
			fmt.Printf("the %s logged %d lines (-keep keeps them), the first: %s\n", name, n, first)
		}
	}
	return nil
}

// logLines counts the lines of a role's log and returns the first.
func logLines(path string) (int, string) {
	raw, err := os.ReadFile(path)
	if err != nil || len(raw) == 0 {
		return 0, ""
	}
	lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	return len(lines), lines[0]
}

// nodeCmd returns the command that runs a node with the config at a path:
// the binary's `mcpmesh node -config FILE`, or, when profiling, this
// program's profiling variant writing DIR/<config's base name>.pprof
// (DIR/mcpmesh.pprof for the gateway comparison's node.yaml).
func (o options) nodeCmd() (func(cfgPath string) *exec.Cmd, error) {
	if o.profileDir == "" {
		return binaryNode(o.bin), nil
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return func(cfgPath string) *exec.Cmd {
		name := strings.TrimSuffix(filepath.Base(cfgPath), ".yaml")
		if name == benchNode.name {
			name = "mcpmesh"
		}
		return exec.Command(self, append(o.profileFlag(name), "-role", "node", "-config", cfgPath)...)
	}, nil
}

// profileFlag is the -cpuprofile flag of a role's process when profiling.
func (o options) profileFlag(name string) []string {
	if o.profileDir == "" {
		return nil
	}
	return []string{"-cpuprofile", filepath.Join(o.profileDir, name+".pprof")}
}

// target is one way to reach the upstream's echo tool.
type target struct {
	name    string
	url     string
	tool    string
	listed  []string // the tools/list the target must show, in order; nil for just tool
	session *mcp.ClientSession
	era     string       // negotiated
	bearer  string       // the credential sent with every request, if any
	dials   atomic.Int64 // TCP connections the client opened to the target
}

// connect opens the target's one client session, reused for every call,
// over its own HTTP connection pool.
func (t *target) connect(ctx context.Context, era string) error {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	tr.Proxy = nil
	var d net.Dialer
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		t.dials.Add(1)
		return d.DialContext(ctx, network, addr)
	}
	c := mcp.NewClient(&mcp.Implementation{Name: "gatewayload", Version: "1"}, nil)
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	var rt http.RoundTripper = tr
	if t.bearer != "" {
		rt = bearerTransport{token: t.bearer, next: tr}
	}
	s, err := c.Connect(cctx, &mcp.StreamableClientTransport{Endpoint: t.url, HTTPClient: &http.Client{Transport: rt}}, &mcp.ClientSessionOptions{ProtocolVersion: era})
	if err != nil {
		return fmt.Errorf("connect to %s at %s (%s): %w", t.name, t.url, era, err)
	}
	t.session = s
	t.era = s.InitializeResult().ProtocolVersion
	if t.era != era {
		s.Close()
		return fmt.Errorf("%s negotiated protocol %s, want %s", t.name, t.era, era)
	}
	return nil
}

// bearerTransport sends a bearer token with every request.
type bearerTransport struct {
	token string
	next  http.RoundTripper
}

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}

// checkTools waits until mcpmesh serves the approved tool and checks that
// every target advertises the upstream's exact definition.
func checkTools(ctx context.Context, targets []*target) error {
	wantDef, err := json.Marshal(json.RawMessage(echoTool))
	if err != nil {
		return err
	}
	for _, t := range targets {
		var last string
		ok := poll(ctx, 60*time.Second, func() bool {
			res, err := t.session.ListTools(ctx, nil)
			if err != nil {
				last = err.Error()
				return false
			}
			want := listedNames(t)
			var names []string
			var def *mcp.Tool
			for _, tool := range res.Tools {
				names = append(names, tool.Name)
				if tool.Name == t.tool {
					def = tool
				}
			}
			if !slices.Equal(names, want) || def == nil {
				last = fmt.Sprintf("tools %v, want %v", names, want)
				return false
			}
			tool := *def
			tool.Name = "echo"
			// An imported tool says where it comes from; nothing else may differ.
			if _, ok := tool.Meta[gateway.MetaOrigin]; ok && len(tool.Meta) == 1 {
				tool.Meta = nil
			}
			got, _ := json.Marshal(&tool)
			last = fmt.Sprintf("definition %s, want %s", got, wantDef)
			return canonicalJSON(got) == canonicalJSON(wantDef)
		})
		if !ok {
			return fmt.Errorf("%s: tools/list does not show exactly %v with %s's definition the upstream's within 60s; last seen: %s", t.name, listedNames(t), t.tool, last)
		}
	}
	return nil
}

// listedNames is the tools/list t must show.
func listedNames(t *target) []string {
	if t.listed == nil {
		return []string{t.tool}
	}
	return t.listed
}

// canonicalJSON re-encodes JSON with sorted keys, for comparison.
func canonicalJSON(b []byte) string {
	var v any
	if json.Unmarshal(b, &v) != nil {
		return string(b)
	}
	out, _ := json.Marshal(v)
	return string(out)
}

// clockTicks returns the kernel's clock ticks per second for
// /proc/<pid>/stat, from `getconf CLK_TCK`, or 100 (assumed) when getconf
// fails; the second result says which.
func clockTicks() (int64, string) {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64); err == nil && n > 0 {
			return n, "getconf CLK_TCK"
		}
	}
	return 100, "assumed: getconf CLK_TCK failed"
}

func printHeader(o options, s *setup) {
	fmt.Printf("gatewayload: tools/call through nothing (direct), httputil.ReverseProxy (proxy) and an mcpmesh node (mcpmesh)\n")
	fmt.Printf("  machine: %d CPUs, GOMAXPROCS %d, %s %s/%s; clock ticks %d/s (%s), so CPU is read in %s steps\n",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), runtime.GOOS, runtime.GOARCH, s.clkTck, s.clkTckSource, time.Second/time.Duration(s.clkTck))
	fmt.Printf("  era %s on every hop (negotiated: %s); go-sdk client, one session per target; echo of %d bytes\n", o.era, negotiated(s.targets), o.payload)
	node := describeBinary(o.bin)
	if o.profileDir != "" {
		node = "profiling variant, CPU profiles in " + o.profileDir
	}
	fmt.Printf("  processes: upstream pid %d, proxy pid %d, mcpmesh node pid %d (%s, log.level %s), client pid %d\n",
		s.upstream.pid(), s.proxy.pid(), s.node.pid(), node, o.nodeLogLevel, os.Getpid())
	if s.baseline != nil {
		fmt.Printf("  baseline: a second mcpmesh node, pid %d (%s), configured as the first\n", s.baseline.pid(), describeBinary(o.baseline))
	}
	fmt.Printf("  load average at start: %s (other work on the machine shows up as noise: compare ratios within one run)\n", loadAvg())
	fmt.Println()
}

func negotiated(ts []*target) string {
	var parts []string
	for _, t := range ts {
		parts = append(parts, t.name+" "+t.era)
	}
	return strings.Join(parts, ", ")
}

// loadAvg is the first three fields of /proc/loadavg, or "unknown".
func loadAvg() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(raw))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// binaryNode returns the command that runs an mcpmesh binary as a node
// with the config at a path: `bin node -config FILE`.
func binaryNode(bin string) func(cfgPath string) *exec.Cmd {
	return func(cfgPath string) *exec.Cmd { return exec.Command(bin, "node", "-config", cfgPath) }
}

// describeBinary is an mcpmesh binary's path and, if it says, its version.
func describeBinary(bin string) string {
	if out, err := exec.Command(bin, "version").Output(); err == nil {
		return bin + " " + strings.TrimSpace(string(out))
	}
	return bin
}
