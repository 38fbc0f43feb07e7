package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mcpmesh/mcpmesh/examples"
	"github.com/mcpmesh/mcpmesh/registry/api"
	"github.com/mcpmesh/mcpmesh/trust/tokens"
)

// options are the demo's flags.
type options struct {
	bin, agent, server, dir string
	base                    int
	once                    bool
}

// meshName is the demo mesh's gossip label.
const meshName = "demo"

// waitLimit bounds each wait: for leaders, for the import.
const waitLimit = 90 * time.Second

// bu is one business unit: a three-node cluster.
type bu struct {
	ns, td    string
	dir       string // <dir>/<ns>
	tokenFile string
	nodes     []*nodeProc
	upstreams []upstream
}

// nodeProc is one `mcpmesh node` process.
type nodeProc struct {
	id                       string
	http, raft, peer, gossip string
	config, log              string
	cmd                      *exec.Cmd
	done                     chan struct{}
}

func (n *nodeProc) url() string { return "http://" + n.http }

// upstream is one example server a BU's card names.
type upstream struct {
	card    string // file name in the catalog
	server  string // exampleserver -server
	version string
	addr    string
	legacy  bool // serve with legacy sessions (the directory, as mcpmesh dev does)
}

// proc is a child process; done closes when it has exited.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// mesh is the running demo.
type mesh struct {
	o       options
	dir     string
	bus     []*bu // hr, finance
	central string
	keyring string
	procs   []proc
	mu      sync.Mutex
}

// newMesh lays out the BUs, their nodes and ports.
func newMesh(o options) (*mesh, error) {
	dir := o.dir
	if dir == "" {
		d, err := os.MkdirTemp("", "mcpmesh-demo-")
		if err != nil {
			return nil, err
		}
		dir = d
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	m := &mesh{o: o, dir: dir, central: filepath.Join(dir, "central"), keyring: filepath.Join(dir, "gossip.keys")}
	// With base 0 each address is a port the kernel had free a moment
	// ago; it may hand the same one out again once its probe closed, so
	// one already given to another listener is drawn again.
	given := map[string]bool{}
	port := func(b, off int) (string, error) {
		if o.base == 0 {
			for {
				addr, err := freePort()
				if err != nil || !given[addr] {
					given[addr] = true
					return addr, err
				}
			}
		}
		return net.JoinHostPort("127.0.0.1", strconv.Itoa(o.base+100*b+off)), nil
	}
	for b, ns := range []string{"hr", "finance"} {
		u := &bu{ns: ns, td: ns + ".example.corp", dir: filepath.Join(dir, ns)}
		u.tokenFile = filepath.Join(u.dir, "admin.token")
		for k := 1; k <= 3; k++ {
			n := &nodeProc{id: fmt.Sprintf("n%d", k)}
			for _, p := range []struct {
				addr *string
				off  int
			}{{&n.http, k}, {&n.raft, 10 + k}, {&n.peer, 20 + k}, {&n.gossip, 30 + k}} {
				if *p.addr, err = port(b, p.off); err != nil {
					return nil, err
				}
			}
			n.config = filepath.Join(u.dir, n.id+".yaml")
			n.log = filepath.Join(u.dir, n.id+".log")
			u.nodes = append(u.nodes, n)
		}
		ups := map[string][]upstream{
			"hr":      {{card: "directory-1.0.0.json", server: "directory", version: "1.0.0", legacy: true}},
			"finance": {{card: "ledger-1.0.0.json", server: "ledger", version: "1.0.0"}, {card: "ledger-2.0.0.json", server: "ledger", version: "2.0.0"}},
		}[ns]
		for j := range ups {
			if ups[j].addr, err = port(b, 41+j); err != nil {
				return nil, err
			}
		}
		u.upstreams = ups
		m.bus = append(m.bus, u)
	}
	return m, nil
}

// run sets the mesh up, runs the agent, prints the tour and, unless
// -once, serves until ctx ends.
func (m *mesh) run(ctx context.Context) error {
	hr, fin := m.bus[0], m.bus[1]
	fmt.Printf("demo: two BUs × three nodes in %s\n\n", m.dir)
	steps := []struct {
		what string
		do   func(context.Context) error
	}{
		{"central security's key and the gossip keyring", m.keys},
		{"each BU's CA and node configs", m.configure},
		{"six node processes", m.startNodes},
		{"leaders elected", m.waitLeaders},
		{"the example upstream servers", m.startUpstreams},
		{"the example catalog applied and approved", m.applyCatalogs},
		{"the federation manifest signed and pushed", m.pushManifest},
		{"hr imports what finance shares", m.waitImport},
	}
	for _, s := range steps {
		t0 := time.Now()
		fmt.Printf("== %s\n", s.what)
		if err := s.do(ctx); err != nil {
			return fmt.Errorf("%s: %w", s.what, err)
		}
		fmt.Printf("   done in %s\n", time.Since(t0).Round(time.Millisecond))
	}
	keyFile := filepath.Join(hr.dir, "agent.key")
	out, err := m.mcpmesh(ctx, hr, "apikey", "create", "-tenant", "payroll", "-name", "demo agent", "-o", "json")
	if err != nil {
		return err
	}
	var key api.APIKeyCreated
	if err := json.Unmarshal(out, &key); err != nil {
		return fmt.Errorf("apikey create: %w", err)
	}
	if err := os.WriteFile(keyFile, []byte(key.Secret+"\n"), 0o600); err != nil {
		return err
	}
	// Any node serves agents; take one that may well be a follower.
	via := hr.nodes[1]
	fmt.Printf("\n== the example agent, as hr's tenant payroll, through hr's node %s\n", via.id)
	rep, err := m.runAgent(ctx, via.url()+"/mcp", keyFile)
	if err != nil {
		return err
	}
	m.tour(ctx, rep, via, fin)
	if m.o.once {
		return nil
	}
	fmt.Println("\nThe mesh keeps running; Ctrl-C stops every process.")
	<-ctx.Done()
	return nil
}

// keys generates central security's key pair and the gossip keyring.
func (m *mesh) keys(ctx context.Context) error {
	if _, err := m.mcpmesh(ctx, nil, "trust", "manifest", "keygen", "-out", m.central); err != nil {
		return err
	}
	out, err := m.mcpmesh(ctx, nil, "trust", "gossip-key")
	if err != nil {
		return err
	}
	return os.WriteFile(m.keyring, out, 0o600)
}

// configure makes each BU's CA and admin token and writes its nodes'
// configs.
func (m *mesh) configure(ctx context.Context) error {
	var gossip []string
	for _, u := range m.bus {
		for _, n := range u.nodes {
			gossip = append(gossip, n.gossip)
		}
	}
	for _, u := range m.bus {
		if err := os.MkdirAll(u.dir, 0o700); err != nil {
			return err
		}
		if _, err := m.mcpmesh(ctx, nil, "trust", "init", "-trust-domain", u.td, "-out", filepath.Join(u.dir, "ca")); err != nil {
			return err
		}
		if err := os.WriteFile(u.tokenFile, []byte(randomToken()+"\n"), 0o600); err != nil {
			return err
		}
		var peers strings.Builder
		for _, n := range u.nodes {
			fmt.Fprintf(&peers, "    - { id: %s, address: %q }\n", n.id, n.raft)
		}
		for _, n := range u.nodes {
			join := slices.DeleteFunc(slices.Clone(gossip), func(g string) bool { return g == n.gossip })
			cfg := fmt.Sprintf(`# Node %[1]s of BU %[2]s in the mcpmesh demo (examples/demo).
node_id: %[1]s
namespace: %[2]s
trust_domain: %[3]s
data_dir: %[4]q
http:
  listen: %[5]q
raft:
  listen: %[6]q
bootstrap:
  expect: 3
  peers:
%[7]strust:
  ca_dir: %[8]q
admin:
  token_file: %[9]q
log:
  level: info
federation:
  mesh: %[10]s
  manifest_key_file: %[11]q
  peer:
    listen: %[12]q
  gossip:
    listen: %[13]q
    keyring_file: %[14]q
    join: [%[15]s]
  sync_interval: 5s
`, n.id, u.ns, u.td, filepath.Join(u.dir, n.id), n.http, n.raft, peers.String(), filepath.Join(u.dir, "ca"), u.tokenFile,
				meshName, filepath.Join(m.central, "central.pub"), n.peer, n.gossip, m.keyring, quoteList(join))
			if err := os.WriteFile(n.config, []byte(cfg), 0o600); err != nil {
				return err
			}
		}
	}
	fmt.Printf("   configs: %s\n", filepath.Join(m.dir, "{hr,finance}", "n{1,2,3}.yaml"))
	return nil
}

func (m *mesh) startNodes(ctx context.Context) error {
	for _, u := range m.bus {
		for _, n := range u.nodes {
			cmd, done, err := m.start(n.log, m.o.bin, "node", "-config", n.config)
			if err != nil {
				return err
			}
			n.cmd, n.done = cmd, done
		}
	}
	return nil
}

// waitLeaders waits until every node is ready, with a leader.
func (m *mesh) waitLeaders(ctx context.Context) error {
	for _, u := range m.bus {
		var leader string
		for _, n := range u.nodes {
			var last string
			err := poll(ctx, waitLimit, func() bool {
				select {
				case <-n.done:
					last = "the process exited"
					return false
				default:
				}
				var r struct {
					Ready  bool   `json:"ready"`
					Reason string `json:"reason"`
					Leader string `json:"leader"`
				}
				if err := getJSON(ctx, n.url()+"/readyz", &r); err != nil {
					last = err.Error()
					return false
				}
				last, leader = r.Reason, r.Leader
				return r.Ready && r.Leader != ""
			})
			if err != nil {
				return fmt.Errorf("%s/%s not ready (%s; log %s):\n%s", u.ns, n.id, last, n.log, tail(n.log, 15))
			}
		}
		fmt.Printf("   %s: leader %s\n", u.ns, leader)
	}
	return nil
}

// startUpstreams runs the example servers, each verifying the node
// tokens of its BU against the key set its BU's nodes publish.
func (m *mesh) startUpstreams(ctx context.Context) error {
	for _, u := range m.bus {
		for _, up := range u.upstreams {
			log := filepath.Join(u.dir, up.server+"-"+up.version+".log")
			_, _, err := m.start(log, m.o.server, "-server", up.server, "-version", up.version, "-listen", up.addr,
				"-stateless="+strconv.FormatBool(!up.legacy), "-jwks-url", u.nodes[0].url()+tokens.JWKSPath)
			if err != nil {
				return err
			}
			if err := poll(ctx, waitLimit, func() bool {
				c, err := net.DialTimeout("tcp", up.addr, time.Second)
				if err == nil {
					c.Close()
				}
				return err == nil
			}); err != nil {
				return fmt.Errorf("example server %s@%s does not listen on %s:\n%s", up.server, up.version, up.addr, tail(log, 10))
			}
			fmt.Printf("   %s %s@%s on %s\n", u.ns, up.server, up.version, up.addr)
		}
	}
	return nil
}

// applyCatalogs copies each BU's example catalog (cards pointing at the
// demo's upstreams), applies it and approves the cards.
func (m *mesh) applyCatalogs(ctx context.Context) error {
	catalog := examples.Catalog()
	for _, u := range m.bus {
		dir := filepath.Join(m.dir, "catalog", u.ns)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		entries, err := fs.ReadDir(catalog, u.ns)
		if err != nil {
			return err
		}
		for _, e := range entries {
			raw, err := fs.ReadFile(catalog, path.Join(u.ns, e.Name()))
			if err != nil {
				return err
			}
			if i := slices.IndexFunc(u.upstreams, func(up upstream) bool { return up.card == e.Name() }); i >= 0 {
				if raw, err = withUpstream(raw, "http://"+u.upstreams[i].addr+"/mcp"); err != nil {
					return fmt.Errorf("%s: %w", e.Name(), err)
				}
			}
			if err := os.WriteFile(filepath.Join(dir, e.Name()), raw, 0o600); err != nil {
				return err
			}
		}
		if _, err := m.mcpmesh(ctx, u, "apply", "-f", dir); err != nil {
			return err
		}
		for _, up := range u.upstreams {
			name := map[string]string{"directory": "corp.hr/directory", "ledger": "corp.finance/ledger"}[up.server]
			if _, err := m.mcpmesh(ctx, u, "registry", "approve", name+"@"+up.version); err != nil {
				return err
			}
		}
	}
	return nil
}

// withUpstream sets a card's upstream URL.
func withUpstream(card []byte, url string) ([]byte, error) {
	var c map[string]any
	if err := json.Unmarshal(card, &c); err != nil {
		return nil, err
	}
	meta, _ := c["_meta"].(map[string]any)
	gov, _ := meta["io.mcpmesh/governance"].(map[string]any)
	up, _ := gov["upstream"].(map[string]any)
	if up == nil {
		return nil, errors.New("no _meta.io.mcpmesh/governance.upstream")
	}
	up["url"] = url
	return json.MarshalIndent(c, "", "  ")
}

// pushManifest writes central security's manifest (both BUs, every node
// a bundle endpoint, hr may call finance), signs it and pushes it to each
// BU.
func (m *mesh) pushManifest(ctx context.Context) error {
	var doc strings.Builder
	fmt.Fprintf(&doc, "version: 1\nexpires: %s\ntrust_domains:\n", time.Now().Add(30*24*time.Hour).UTC().Format(time.RFC3339))
	for _, u := range m.bus {
		ca, err := os.ReadFile(filepath.Join(u.dir, "ca", "ca.crt"))
		if err != nil {
			return err
		}
		fmt.Fprintf(&doc, "  - trust_domain: %s\n    namespace: %s\n    bundle_endpoints:\n", u.td, u.ns)
		for _, n := range u.nodes {
			fmt.Fprintf(&doc, "      - url: https://%s\n        spiffe_id: spiffe://%s/mcpmesh/node/%s\n", n.peer, u.td, n.id)
		}
		fmt.Fprintf(&doc, "    bootstrap_bundle: |\n      %s\n", strings.ReplaceAll(strings.TrimSpace(string(ca)), "\n", "\n      "))
	}
	fmt.Fprintf(&doc, "relationships:\n  - from: %s\n    to: %s\n", m.bus[0].td, m.bus[1].td)
	src, signed := filepath.Join(m.central, "manifest.yaml"), filepath.Join(m.central, "manifest.jws")
	if err := os.WriteFile(src, []byte(doc.String()), 0o600); err != nil {
		return err
	}
	if _, err := m.mcpmesh(ctx, nil, "trust", "manifest", "sign", "-key", filepath.Join(m.central, "central.key"), "-f", src, "-o", signed); err != nil {
		return err
	}
	for _, u := range m.bus {
		if _, err := m.mcpmesh(ctx, u, "trust", "manifest", "push", "-f", signed); err != nil {
			return err
		}
	}
	return nil
}

// waitImport waits until hr's leader has imported finance's catalog.
func (m *mesh) waitImport(ctx context.Context) error {
	hr := m.bus[0]
	c, err := api.NewClient(api.ClientConfig{Addr: hr.nodes[0].url(), Token: readToken(hr.tokenFile), Timeout: 5 * time.Second})
	if err != nil {
		return err
	}
	var last string
	err = poll(ctx, waitLimit, func() bool {
		res, err := c.Peers(ctx, true)
		if err != nil {
			last = err.Error()
			return false
		}
		for _, p := range res.Peers {
			last = fmt.Sprintf("%s: %d imported, last error %q", p.TrustDomain, p.Imported, p.LastError)
			if p.Namespace == "finance" && p.Imported > 0 {
				return true
			}
		}
		return false
	})
	if err != nil {
		return fmt.Errorf("hr imported nothing from finance (%s); see `mcpmesh peers` and %s", last, hr.nodes[0].log)
	}
	fmt.Printf("   hr: %s\n", last)
	return nil
}

// agentReport is the example agent's -json output.
type agentReport struct {
	Tools []string `json:"tools"`
	Calls []struct {
		Tool, Origin, RequestID, Version, Text string
		IsError                                bool
	} `json:"calls"`
}

func (m *mesh) runAgent(ctx context.Context, url, keyFile string) (agentReport, error) {
	var rep agentReport
	cmd := exec.CommandContext(ctx, m.o.agent, "-url", url, "-key-file", keyFile, "-json")
	dieWithParent(cmd)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if jerr := json.Unmarshal(out, &rep); jerr != nil && err == nil {
		err = jerr
	}
	if err != nil {
		return rep, fmt.Errorf("the example agent failed: %w: %s%s", err, out, stderr.Bytes())
	}
	return rep, nil
}

// tour prints what happened: the tools hr's agent saw, each call's
// result, and which finance node answered the cross-BU one (finance's
// audit log records it under the request id hr's node gave it).
func (m *mesh) tour(ctx context.Context, rep agentReport, via *nodeProc, fin *bu) {
	fmt.Printf("hr's agent sees %d tools: %s\n", len(rep.Tools), strings.Join(rep.Tools, ", "))
	c, _ := api.NewClient(api.ClientConfig{Addr: fin.nodes[0].url(), Token: readToken(fin.tokenFile), Timeout: 10 * time.Second})
	for _, call := range rep.Calls {
		fmt.Printf("\n%s (request %s, version %s), served by hr's node %s", call.Tool, call.RequestID, call.Version, via.id)
		if call.Origin != "" {
			fmt.Printf(", shared by BU %s", call.Origin)
			if recs, err := c.AuditQueryAll(ctx, api.AuditQuery{Kind: "call", Tool: "corp.finance/ledger/generate_report"}); err == nil {
				for _, r := range recs.Records {
					if r.RequestID == call.RequestID {
						fmt.Printf(", answered by finance's node %s for %s", r.Node, r.Principal)
					}
				}
			}
		}
		fmt.Printf(":\n  %s\n", strings.ReplaceAll(call.Text, "\n", "\n  "))
	}
	fmt.Printf("\nNode logs: %s/{hr,finance}/n{1,2,3}.log; admin tokens: %s/{hr,finance}/admin.token\n", m.dir, m.dir)
	fmt.Printf("Try: %s call -url %s/mcp -api-key-file %s finance.generate_report kind=balance_sheet period=2026-02\n",
		m.o.bin, via.url(), filepath.Join(m.bus[0].dir, "agent.key"))
	fmt.Printf("     %s peers -addr %s -token-file %s\n", m.o.bin, via.url(), m.bus[0].tokenFile)
}

// mcpmesh runs the mcpmesh CLI, against BU u's first node when u is set,
// prints the command, and returns its standard output.
func (m *mesh) mcpmesh(ctx context.Context, u *bu, args ...string) ([]byte, error) {
	if u != nil {
		args = append(args, "-addr", u.nodes[0].url(), "-token-file", u.tokenFile)
	}
	fmt.Printf("   $ mcpmesh %s\n", strings.Join(args, " "))
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, m.o.bin, args...)
	cmd.Env = append(os.Environ(), "MCPMESH_ADDR=", "MCPMESH_TOKEN_FILE=")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("mcpmesh %s: %w\n%s%s", args[0], err, out, stderr.Bytes())
	}
	return out, nil
}

// start starts a child process logging to logPath; it dies with the
// demo. done closes when it exits.
func (m *mesh) start(logPath, bin string, args ...string) (*exec.Cmd, chan struct{}, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, nil, fmt.Errorf("start %s: %w", bin, err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		logf.Close()
		close(done)
	}()
	m.mu.Lock()
	m.procs = append(m.procs, proc{cmd, done})
	m.mu.Unlock()
	return cmd, done, nil
}

// stop ends every child: SIGTERM, then SIGKILL after 10s.
func (m *mesh) stop() {
	m.mu.Lock()
	procs := slices.Clone(m.procs)
	m.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Go(func() {
			p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
				p.cmd.Process.Kill()
				<-p.done
			}
		})
	}
	wg.Wait()
}

// poll calls cond every 250ms until it holds, ctx ends or limit passes.
func poll(ctx context.Context, limit time.Duration, cond func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("not within %s: %w", limit, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
	return nil
}

func getJSON(ctx context.Context, url string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func randomToken() string {
	b := make([]byte, 24)
	rand.Read(b)
	return "demo-" + hex.EncodeToString(b)
}

func readToken(file string) string {
	raw, _ := os.ReadFile(file)
	return strings.TrimSpace(string(raw))
}

func quoteList(s []string) string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = strconv.Quote(v)
	}
	return strings.Join(q, ", ")
}

// tail returns the last n lines of a file.
func tail(file string, n int) string {
	raw, _ := os.ReadFile(file)
	lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
