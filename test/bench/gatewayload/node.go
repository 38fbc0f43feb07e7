package main

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
	"strings"
	"time"

	"github.com/mcpmesh/mcpmesh/registry/api"
	"github.com/mcpmesh/mcpmesh/registry/state"
)

// The registry identity of the benchmark's node and upstream. Aggregated
// tool names are "<namespace>.<tool>", so mcpmesh serves echo as
// bench.echo at /mcp.
const (
	benchNamespace   = "bench"
	benchTrustDomain = "bench.example.corp"
	benchServer      = "corp.bench/echo"
	benchVersion     = "1.0.0"
	benchToolName    = benchNamespace + ".echo"
	adminToken       = "gatewayload-admin-token-0123456789"
)

// serverCard is the registry card of the upstream at url, pinning echoTool,
// as server (benchServer, or a federation BU's own name).
func serverCard(server, url string) []byte {
	return fmt.Appendf(nil, `{"name":%q,"description":"gatewayload upstream","version":%q,"_meta":{
"io.mcpmesh/governance":{"owner":"bench@corp.example","team":"bench","dataClassification":"internal","riskTier":"low","costPerCall":0.0001,
"upstream":{"transport":"streamable-http","url":%q}},
"io.mcpmesh/tools":[%s]}}`, server, benchVersion, url, echoTool)
}

// nodeSpec names one node the harness runs: its files under the run's
// directory (<name>.yaml, <name>.log, <name>-data, <name>-ca), its BU, and
// YAML appended to its config (the federation section).
type nodeSpec struct {
	name, namespace, trustDomain string
	extraYAML                    string
}

// benchNode is the node of the gateway comparison.
var benchNode = nodeSpec{name: "node", namespace: benchNamespace, trustDomain: benchTrustDomain}

// baselineNode is the -baseline node: benchNode's BU, its own files.
var baselineNode = nodeSpec{name: "baseline", namespace: benchNamespace, trustDomain: benchTrustDomain}

// caDir is where the node's CA lives.
func (ns nodeSpec) caDir(dir string) string {
	if ns.name == benchNode.name {
		return filepath.Join(dir, "ca")
	}
	return filepath.Join(dir, ns.name+"-ca")
}

// nodeConfig is a one-node config: Raft without fsync (no write happens
// during the measurement anyway), agents authenticating with API keys as a
// BU's would, the product's default log level unless logLevel says
// otherwise.
func nodeConfig(ns nodeSpec, dir, httpAddr, raftAddr, logLevel string) string {
	data := filepath.Join(dir, "data")
	if ns.name != benchNode.name {
		data = filepath.Join(dir, ns.name+"-data")
	}
	return fmt.Sprintf(`node_id: n1
namespace: %s
trust_domain: %s
data_dir: %q
http:
  listen: %q
raft:
  listen: %q
  no_sync: true
bootstrap:
  expect: 1
  peers:
    - { id: n1, address: %q }
trust:
  ca_dir: %q
  auto_init: true
admin:
  token_file: %q
mcp:
  auth:
    methods: [api-key]
log:
  level: %s
%s`, ns.namespace, ns.trustDomain, data, httpAddr, raftAddr, raftAddr,
		ns.caDir(dir), filepath.Join(dir, "admin.token"), logLevel, ns.extraYAML)
}

// startNode writes ns's config under dir and starts the node with it: the
// command nodeCmd returns for the config's path (`mcpmesh node -config
// FILE`, or this program's profiling variant). The node's log goes to
// dir/<ns.name>.log. It returns once /readyz says ready.
func startNode(ctx context.Context, nodeCmd func(cfgPath string) *exec.Cmd, ns nodeSpec, dir, logLevel string) (*child, string, error) {
	httpAddr, err := freePort()
	if err != nil {
		return nil, "", err
	}
	raftAddr, err := freePort()
	if err != nil {
		return nil, "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "admin.token"), []byte(adminToken+"\n"), 0o600); err != nil {
		return nil, "", fmt.Errorf("write admin token: %w", err)
	}
	cfgPath := filepath.Join(dir, ns.name+".yaml")
	if err := os.WriteFile(cfgPath, []byte(nodeConfig(ns, dir, httpAddr, raftAddr, logLevel)), 0o600); err != nil {
		return nil, "", fmt.Errorf("write %s config: %w", ns.name, err)
	}
	logPath := filepath.Join(dir, ns.name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, "", fmt.Errorf("node log: %w", err)
	}
	cmd := nodeCmd(cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "MCPMESH_ADDR=", "MCPMESH_TOKEN_FILE=", "MCPMESH_SVID_DIR=")
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, "", fmt.Errorf("start the mcpmesh node (%s): %w", cmd, err)
	}
	c := newChild("mcpmesh "+ns.name, cmd, logf.Close)
	base := "http://" + httpAddr
	var last string
	ready := poll(ctx, 30*time.Second, func() bool {
		if c.exited() {
			last = "process exited"
			return false
		}
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			last = err.Error()
			return false
		}
		defer resp.Body.Close()
		var r struct {
			Ready  bool   `json:"ready"`
			Reason string `json:"reason"`
		}
		json.NewDecoder(resp.Body).Decode(&r)
		last = fmt.Sprintf("ready=%v reason=%q", r.Ready, r.Reason)
		return r.Ready
	})
	if !ready {
		c.stop()
		return nil, "", fmt.Errorf("mcpmesh %s not ready within 30s (last seen: %s); log tail:\n%s", ns.name, last, logTail(logPath, 20))
	}
	return c, base, nil
}

// registerUpstream submits the upstream's card to the node at base and
// approves it through the admin API, as `mcpmesh registry submit` and
// `approve` do, puts the benchmark's policies, and creates the tenant and
// API key the load authenticates with; it returns the key's secret.
func registerUpstream(ctx context.Context, base, server, upstreamURL string) (string, error) {
	cl, err := approveUpstream(ctx, base, server, upstreamURL)
	if err != nil {
		return "", err
	}
	// Every call is authenticated and decided by policy, so the measured
	// overhead includes both, as in production.
	if _, err := cl.PutPolicies(ctx, []state.PolicyFile{{Name: "gatewayload.cedar", Text: policyFor(benchGroup, benchTenant)}}); err != nil {
		return "", fmt.Errorf("put the benchmark's policy: %w", err)
	}
	if _, err := cl.PutTenant(ctx, api.TenantRequest{Name: benchTenant, Owners: []string{"bench@corp.example"}}); err != nil {
		return "", fmt.Errorf("create tenant %s: %w", benchTenant, err)
	}
	key, err := cl.CreateAPIKey(ctx, api.APIKeyRequest{Tenant: benchTenant, Name: "gatewayload", Groups: []string{benchGroup}})
	if err != nil {
		return "", fmt.Errorf("create the load's API key: %w", err)
	}
	if err := everyControl(ctx, cl, "apikey:*", benchTenant, server); err != nil {
		return "", err
	}
	return key.Secret, nil
}

// approveUpstream submits and approves the upstream's card as server on
// the node at base, and returns the admin client it used.
func approveUpstream(ctx context.Context, base, server, upstreamURL string) (*api.Client, error) {
	cl, err := api.NewClient(api.ClientConfig{Addr: base, Token: adminToken, Timeout: 15 * time.Second})
	if err != nil {
		return nil, err
	}
	if _, err := cl.Submit(ctx, serverCard(server, upstreamURL)); err != nil {
		return nil, fmt.Errorf("submit the upstream's card: %w", err)
	}
	if _, err := cl.Transition(ctx, server, benchVersion, "approve", api.TransitionRequest{Reason: "gatewayload"}); err != nil {
		return nil, fmt.Errorf("approve %s@%s: %w", server, benchVersion, err)
	}
	return cl, nil
}

// everyControl turns on every governance control a call goes through, set
// so that none refuses the load: rate limits on the caller, its tenant,
// the tool and the pair; a monthly call quota and cost budget (each call
// costs the card's 0.0001 USD, metered and flushed through Raft); a kill
// switch in force on another agent, so the check has a switch to look at;
// and the policy's approval rule for large transfers, which reads every
// call's arguments. The audit log is on as in every node. identity (a
// principal pattern), tenant and server name the caller, its tenant and
// the upstream as this node knows them; with tenant "" (a caller from
// another BU, whose tenant is not one of this BU's) the tenant's limits
// and quota are left out.
func everyControl(ctx context.Context, cl *api.Client, identity, tenant, server string) error {
	lots := "1000000/s"
	limits := []state.Limit{
		{Identity: identity, Rate: lots, Burst: 1000000},
		{Tool: server + "/echo", Rate: lots, Burst: 1000000},
	}
	if tenant != "" {
		limits = append(limits, state.Limit{Tenant: tenant, Rate: lots, Burst: 1000000}, state.Limit{Tenant: tenant, Tool: server + "/echo", Rate: lots, Burst: 1000000})
	}
	if _, err := cl.PutLimits(ctx, limits); err != nil {
		return fmt.Errorf("put the rate limits: %w", err)
	}
	if tenant != "" {
		if _, err := cl.PutQuotas(ctx, []state.Quota{{Tenant: tenant, Calls: 1_000_000_000, Budget: 1_000_000, Currency: "USD"}}); err != nil {
			return fmt.Errorf("put the quotas: %w", err)
		}
	}
	if _, err := cl.Kill(ctx, api.KillRequest{Kind: state.KillAgent, Name: "apikey:revokedagent", Reason: "gatewayload: a switch in force on someone else"}); err != nil {
		return fmt.Errorf("pull a kill switch: %w", err)
	}
	return nil
}

// benchTenant owns the load's API key, whose group is benchGroup.
const (
	benchTenant = "loadgen"
	benchGroup  = "bench-agents"
)

// policyFor is a small policy set of the shape a BU writes, for callers
// of group and tenant (as the node names them: a caller from another BU
// has them qualified by its trust domain): members of the group list and
// call low-risk tools of their own tenant, and a forbid that is evaluated
// on every call without matching.
func policyFor(group, tenant string) string {
	return fmt.Sprintf(`@id("agents-list")
permit (principal in Group::%[1]q, action == Action::"list", resource);

@id("agents-call-low-risk")
permit (principal in Group::%[1]q, action == Action::"call", resource)
when { principal.tenant == %[2]q && context.riskLevel <= 1 };

@id("no-destructive-tools-for-contractors")
forbid (principal in Group::"contractors", action == Action::"call", resource)
when { context.annotations.destructive };

@id("large-transfers-need-approval")
@approval("required")
permit (principal in Group::%[1]q, action == Action::"call", resource)
when { context.arguments.hasTag("amount_cents") && context.arguments.getTag("amount_cents") > 1000000 };
`, group, tenant)
}

// freePort returns a loopback address whose port was free a moment ago.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// poll checks cond every 20ms until it holds, timeout passes or ctx ends.
func poll(ctx context.Context, timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func logTail(path string, lines int) string {
	raw, _ := os.ReadFile(path)
	all := strings.Split(string(bytes.TrimRight(raw, "\n")), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}
