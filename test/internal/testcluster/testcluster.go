// Package testcluster runs real mcpmesh node processes on loopback for
// end-to-end tests and benchmarks: it writes their configs, starts, kills
// and restarts them, and waits (bounded) for conditions, reporting what it
// last saw when a wait fails.
//
// It owns test orchestration only; it is internal to test/.
package testcluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mcpmesh/mcpmesh/registry/api"
)

// TB is the part of testing.TB the harness needs, so tests and benchmarks
// can both use it.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	TempDir() string
	Cleanup(func())
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// Bin returns the mcpmesh binary under test: $MCPMESH_BIN (set by `make
// test`), or one built once per test process from this checkout.
func Bin(t TB) string {
	t.Helper()
	if b := os.Getenv("MCPMESH_BIN"); b != "" {
		return b
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "mcpmesh-bin-")
		if err != nil {
			buildErr = err
			return
		}
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..", "..")
		builtBin = filepath.Join(dir, "mcpmesh")
		cmd := exec.Command("go", "build", "-tags", "hashicorpmetrics", "-o", builtBin, "./cmd/mcpmesh")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatalf("build mcpmesh: %v", buildErr)
	}
	return builtBin
}

// FreePort returns a loopback address with a port that was free a moment ago.
func FreePort(t TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Options shape a test cluster.
type Options struct {
	// Nodes is the number of voters. Default 3.
	Nodes int
	// Namespace and TrustDomain default to "hr" and "hr.example.corp".
	Namespace, TrustDomain string
	// NoSync turns off Raft log fsync (faster tests; never for benchmarks
	// that claim durability).
	NoSync bool
	// ExtraYAML is appended to every node's config.
	ExtraYAML string
	// AuditYAML is added to every node's audit section, indented by two
	// spaces (e.g. "  retention: 2h\n"). With NoSync the audit log skips
	// fsync too.
	AuditYAML string
	// NodeYAML, when set, returns config appended to node id's config
	// after ExtraYAML: what differs per node, such as a federation
	// section with the node's own peer address.
	NodeYAML func(id string) string
	// Host is the address the nodes' HTTP and Raft listeners bind.
	// Default 127.0.0.1; another when the nodes run in a network
	// namespace (Exec).
	Host string
	// Exec, when set, is the command a node's binary runs under, e.g.
	// ip netns exec NAME.
	Exec []string
}

// Cluster is a set of node processes sharing one CA and admin token.
type Cluster struct {
	t         TB
	Bin       string
	Dir       string
	CADir     string
	TokenFile string
	Token     string
	Opts      Options
	Nodes     []*Node
}

// Node is one mcpmesh node process.
type Node struct {
	c          *Cluster
	ID         string
	HTTPAddr   string
	RaftAddr   string
	DataDir    string
	ConfigPath string
	LogPath    string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// New writes the CA, token and configs for a new cluster; it starts nothing.
func New(t TB, opts Options) *Cluster {
	t.Helper()
	if opts.Nodes == 0 {
		opts.Nodes = 3
	}
	if opts.Namespace == "" {
		opts.Namespace = "hr"
	}
	if opts.TrustDomain == "" {
		opts.TrustDomain = opts.Namespace + ".example.corp"
	}
	dir := t.TempDir()
	c := &Cluster{t: t, Bin: Bin(t), Dir: dir, CADir: filepath.Join(dir, "ca"), TokenFile: filepath.Join(dir, "admin.token"), Opts: opts}
	c.Token = "test-admin-token-0123456789abcdef"
	if err := os.WriteFile(c.TokenFile, []byte(c.Token+"\n"), 0o600); err != nil {
		t.Fatalf("write token: %v", err)
	}
	if out, code := c.Run("trust", "init", "-trust-domain", opts.TrustDomain, "-out", c.CADir); code != 0 {
		t.Fatalf("trust init: exit %d: %s", code, out)
	}
	for i := 1; i <= opts.Nodes; i++ {
		c.Nodes = append(c.Nodes, &Node{c: c, ID: fmt.Sprintf("n%d", i), HTTPAddr: c.port(), RaftAddr: c.port()})
	}
	var peers strings.Builder
	for _, n := range c.Nodes {
		fmt.Fprintf(&peers, "    - { id: %s, address: %q }\n", n.ID, n.RaftAddr)
	}
	for _, n := range c.Nodes {
		n.DataDir = filepath.Join(dir, n.ID)
		n.ConfigPath = filepath.Join(dir, n.ID+".yaml")
		n.LogPath = filepath.Join(dir, n.ID+".log")
		n.WriteConfig(fmt.Sprintf("bootstrap:\n  expect: %d\n  peers:\n%s", opts.Nodes, peers.String()))
	}
	t.Cleanup(c.KillAll)
	return c
}

// WriteConfig (re)writes the node's config with the given bootstrap section.
func (n *Node) WriteConfig(bootstrapYAML string) { n.WriteConfigWith(NodeOverrides{}, bootstrapYAML) }

// AddNode prepares (does not start) a node that joins via the given node.
func (c *Cluster) AddNode(id string, via *Node) *Node { return c.AddNodeWith(id, via, NodeOverrides{}) }

// Start starts every node and waits until all are ready.
func (c *Cluster) Start() {
	c.t.Helper()
	for _, n := range c.Nodes {
		n.Start()
	}
	for _, n := range c.Nodes {
		n.WaitReady(30 * time.Second)
	}
}

// KillAll SIGKILLs every running node (test cleanup).
func (c *Cluster) KillAll() {
	for _, n := range c.Nodes {
		n.Kill()
	}
}

// Run runs the mcpmesh CLI and returns its combined output and exit code.
func (c *Cluster) Run(args ...string) (string, int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Bin, args...)
	cmd.Env = append(os.Environ(), "MCPMESH_ADDR=", "MCPMESH_TOKEN_FILE=", "MCPMESH_SVID_DIR=")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		c.t.Fatalf("mcpmesh %s: timed out; output so far:\n%s", strings.Join(args, " "), out.String())
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return out.String(), ee.ExitCode()
	} else if err != nil {
		c.t.Fatalf("run mcpmesh: %v", err)
	}
	return out.String(), 0
}

// CLI runs a client subcommand against node n with the admin token.
func (c *Cluster) CLI(n *Node, args ...string) (string, int) {
	c.t.Helper()
	return c.Run(append(args, "-addr", n.URL(), "-token-file", c.TokenFile)...)
}

// URL is the node's HTTP base URL.
func (n *Node) URL() string { return "http://" + n.HTTPAddr }

// Client returns an admin API client for the node.
func (n *Node) Client() *api.Client {
	cl, err := api.NewClient(api.ClientConfig{Addr: n.URL(), Token: n.c.Token, Timeout: 15 * time.Second})
	if err != nil {
		n.c.t.Fatalf("client: %v", err)
	}
	return cl
}

// Start starts the node process (its log goes to LogPath, appended).
func (n *Node) Start() {
	t := n.c.t
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		t.Fatalf("node %s already running", n.ID)
	}
	logf, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatalf("open log: %v", err)
	}
	fmt.Fprintf(logf, "=== start %s\n", time.Now().Format(time.RFC3339Nano))
	argv := append(append([]string{}, n.c.Opts.Exec...), n.c.Bin, "node", "-config", n.ConfigPath)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start %s: %v", n.ID, err)
	}
	done := make(chan struct{})
	n.cmd, n.done = cmd, done
	go func() {
		err := cmd.Wait()
		logf.Close()
		n.mu.Lock()
		n.err = err
		n.mu.Unlock()
		close(done)
	}()
}

// Pid returns the node process's id, or 0 when it is not running.
func (n *Node) Pid() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil || n.cmd.Process == nil {
		return 0
	}
	return n.cmd.Process.Pid
}

// Running reports whether the process is alive.
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return false
	}
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

// Kill sends SIGKILL and waits for the process to go.
func (n *Node) Kill() {
	cmd, done := n.take()
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	<-done
}

// take hands the running process (nil if none) and its exit channel to a
// caller that ends it; the node no longer counts it as running.
func (n *Node) take() (*exec.Cmd, chan struct{}) {
	n.mu.Lock()
	defer n.mu.Unlock()
	cmd, done := n.cmd, n.done
	n.cmd = nil
	return cmd, done
}

// Stop sends SIGTERM and waits up to timeout for a clean exit; it fails the
// test if the node does not exit, or exits non-zero.
func (n *Node) Stop(timeout time.Duration) {
	t := n.c.t
	t.Helper()
	cmd, done := n.take()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(timeout):
		cmd.Process.Kill()
		<-done
		t.Fatalf("node %s did not stop within %s of SIGTERM; log tail:\n%s", n.ID, timeout, n.LogTail(30))
	}
	n.mu.Lock()
	err := n.err
	n.mu.Unlock()
	if err != nil {
		t.Fatalf("node %s exited badly after SIGTERM: %v; log tail:\n%s", n.ID, err, n.LogTail(30))
	}
}

// Exited waits up to timeout for the process to exit by itself and
// returns its error (nil for exit 0). It fails the test if it keeps running.
func (n *Node) Exited(timeout time.Duration) error {
	t := n.c.t
	t.Helper()
	n.mu.Lock()
	done := n.done
	n.mu.Unlock()
	select {
	case <-done:
	case <-time.After(timeout):
		t.Fatalf("node %s still running after %s; log tail:\n%s", n.ID, timeout, n.LogTail(30))
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cmd = nil
	return n.err
}

// LogTail returns the last lines of the node's log.
func (n *Node) LogTail(lines int) string {
	raw, _ := os.ReadFile(n.LogPath)
	all := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// Log returns the node's whole log.
func (n *Node) Log() string {
	raw, _ := os.ReadFile(n.LogPath)
	return string(raw)
}

// Readiness is what /readyz reports.
type Readiness struct {
	Ready   bool   `json:"ready"`
	Reason  string `json:"reason"`
	Node    string `json:"node"`
	Leader  string `json:"leader"`
	Role    string `json:"role"`
	Applied uint64 `json:"appliedIndex"`
}

// Ready fetches /readyz; err is set when the node does not answer.
func (n *Node) Ready() (Readiness, error) {
	cl := http.Client{Timeout: 2 * time.Second}
	resp, err := cl.Get(n.URL() + "/readyz")
	if err != nil {
		return Readiness{}, err
	}
	defer resp.Body.Close()
	var r Readiness
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return Readiness{}, err
	}
	return r, nil
}

// WaitReady polls /readyz until the node is ready or timeout passes.
func (n *Node) WaitReady(timeout time.Duration) {
	t := n.c.t
	t.Helper()
	var last string
	ok := Eventually(timeout, func() bool {
		if !n.Running() {
			last = "process exited"
			return false
		}
		r, err := n.Ready()
		if err != nil {
			last = err.Error()
			return false
		}
		last = fmt.Sprintf("%+v", r)
		return r.Ready
	})
	if !ok {
		t.Fatalf("node %s not ready within %s; last seen: %s; log tail:\n%s", n.ID, timeout, last, n.LogTail(30))
	}
}

// WaitAllReady waits up to timeout for every running node to be ready.
func (c *Cluster) WaitAllReady(timeout time.Duration) {
	c.t.Helper()
	for _, n := range c.Nodes {
		if n.Running() {
			n.WaitReady(timeout)
		}
	}
}

// Leader waits up to timeout for exactly one running node to report itself
// leader, with every running node agreeing, and returns it.
func (c *Cluster) Leader(timeout time.Duration) *Node {
	c.t.Helper()
	var leader *Node
	var last []string
	ok := Eventually(timeout, func() bool {
		leader, last = nil, nil
		agree := ""
		for _, n := range c.Nodes {
			if !n.Running() {
				continue
			}
			r, err := n.Ready()
			if err != nil {
				last = append(last, n.ID+": "+err.Error())
				return false
			}
			last = append(last, fmt.Sprintf("%s: %+v", n.ID, r))
			if r.Leader == "" || (agree != "" && r.Leader != agree) {
				return false
			}
			agree = r.Leader
			if r.Role == "Leader" {
				leader = n
			}
		}
		return leader != nil && leader.ID == agree
	})
	if !ok {
		c.t.Fatalf("no agreed leader within %s; last seen:\n%s", timeout, strings.Join(last, "\n"))
	}
	return leader
}

// Followers returns the running nodes other than leader.
func (c *Cluster) Followers(leader *Node) []*Node {
	var out []*Node
	for _, n := range c.Nodes {
		if n != leader && n.Running() {
			out = append(out, n)
		}
	}
	return out
}

// Eventually polls cond every 20ms until it holds or timeout passes.
func Eventually(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Card returns a valid server card JSON for name@version with one tool.
func Card(name, version string) []byte {
	return []byte(fmt.Sprintf(`{
  "$schema": "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json",
  "name": %q,
  "description": "Test server",
  "version": %q,
  "_meta": {
    "io.mcpmesh/governance": {
      "owner": "owner@corp.example", "team": "platform",
      "dataClassification": "internal", "riskTier": "low", "costPerCall": 0.001,
      "upstream": {"transport": "streamable-http", "url": "http://127.0.0.1:9999/mcp"}
    },
    "io.mcpmesh/tools": [
      {"name": "lookup", "description": "Looks a thing up.",
       "inputSchema": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}
    ]
  }
}`, name, version))
}

// SetRaftOptions adds keys to the raft section of every node's config as
// written by New or AddNode, e.g. "heartbeat_timeout: 250ms" (Options'
// ExtraYAML cannot: a second raft section is a duplicate key). Call it
// before starting the nodes; a later WriteConfig drops the keys.
func (c *Cluster) SetRaftOptions(keys ...string) {
	c.t.Helper()
	var add strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&add, "  %s\n", k)
	}
	for _, n := range c.Nodes {
		raw, err := os.ReadFile(n.ConfigPath)
		if err != nil {
			c.t.Fatalf("read config of %s: %v", n.ID, err)
		}
		head, tail, found := strings.Cut(string(raw), "\nraft:\n")
		if !found {
			c.t.Fatalf("config of %s has no raft section:\n%s", n.ID, raw)
		}
		if err := os.WriteFile(n.ConfigPath, []byte(head+"\nraft:\n"+add.String()+tail), 0o600); err != nil {
			c.t.Fatalf("write config of %s: %v", n.ID, err)
		}
	}
}

// Signal sends sig to the node's process if it is running, e.g. SIGSTOP to
// freeze it as a hung host or a network partition would (peers' connections
// stay open but nothing answers) and SIGCONT to resume it. Kill works on a
// stopped process; Stop needs a SIGCONT first.
func (n *Node) Signal(sig os.Signal) error {
	n.mu.Lock()
	cmd := n.cmd
	n.mu.Unlock()
	if cmd == nil {
		return fmt.Errorf("node %s is not running", n.ID)
	}
	return cmd.Process.Signal(sig)
}
