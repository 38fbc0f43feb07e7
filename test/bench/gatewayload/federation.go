package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/mcpmesh/mcpmesh/registry/state"
)

// The two BUs of a -federation run: hr's agents call the upstream through
// hr's node (local) and, through hr's node too, as the tool finance
// registered and exports to hr (crossbu).
var (
	hrNode      = nodeSpec{name: "hr", namespace: "hr", trustDomain: "hr.example.corp"}
	financeNode = nodeSpec{name: "finance", namespace: "finance", trustDomain: "finance.example.corp"}
)

// The registry names of the upstream in each BU, and how hr's agents see
// it at /mcp: its own, and the one imported from finance.
const (
	hrServer      = "corp.hr/echo"
	financeServer = "corp.finance/echo"
	localTool     = "hr.echo"
	crossBUTool   = "finance.echo"
)

// federationSetup is what startFederation started: the two nodes, their
// admin URLs and the API key of hr's load.
type federationSetup struct {
	hr, finance       *child
	hrURL, financeURL string
	secret            string
}

// startFederation starts two one-node BUs federated as
// test/e2e/federation_test.go does it, through the binary's CLI: a central
// security key (`mcpmesh trust manifest keygen`), a CA per BU (`trust
// init`), a gossip keyring, each node's federation: section; the upstream
// registered and approved in both BUs, with every governance control of
// the gateway comparison on in both, except in finance the limits and
// quota of the caller's tenant, which is hr's, not finance's (finance's
// policy and limits name hr's callers "hr.example.corp/…"); finance's exports.yaml exporting echo to hr
// (`apply`); and a manifest with hr → finance, signed and pushed to both
// (`trust manifest sign`, `push`). It returns once hr lists the imported
// tool.
func startFederation(ctx context.Context, o options, dir string, nodeCmd func(string) *exec.Cmd, upstreamURL string) (*federationSetup, error) {
	cli := func(args ...string) error {
		cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(cctx, o.bin, args...)
		cmd.Env = append(os.Environ(), "MCPMESH_ADDR=", "MCPMESH_TOKEN_FILE=", "MCPMESH_SVID_DIR=")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("mcpmesh %s: %w: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	central := filepath.Join(dir, "central")
	if err := cli("trust", "manifest", "keygen", "-out", central); err != nil {
		return nil, err
	}
	key := make([]byte, 32)
	rand.Read(key)
	keyring := filepath.Join(dir, "gossip.keys")
	if err := os.WriteFile(keyring, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		return nil, err
	}
	specs := []nodeSpec{hrNode, financeNode}
	peers := make([]string, len(specs))
	for i := range specs {
		ns := &specs[i]
		if err := cli("trust", "init", "-trust-domain", ns.trustDomain, "-out", ns.caDir(dir)); err != nil {
			return nil, err
		}
		peer, err := freePort()
		if err != nil {
			return nil, err
		}
		gossip, err := freePort()
		if err != nil {
			return nil, err
		}
		peers[i] = peer
		ns.extraYAML = fmt.Sprintf("federation:\n  mesh: gatewayload\n  manifest_key_file: %q\n  peer:\n    listen: %q\n  gossip:\n    listen: %q\n    keyring_file: %q\n",
			filepath.Join(central, "central.pub"), peer, gossip, keyring)
	}

	f := &federationSetup{}
	var err error
	if f.hr, f.hrURL, err = startNode(ctx, nodeCmd, specs[0], dir, o.nodeLogLevel); err != nil {
		return nil, err
	}
	if f.finance, f.financeURL, err = startNode(ctx, nodeCmd, specs[1], dir, o.nodeLogLevel); err != nil {
		f.hr.stop()
		return nil, err
	}
	fail := func(err error) (*federationSetup, error) {
		f.stop()
		return nil, err
	}
	if f.secret, err = registerUpstream(ctx, f.hrURL, hrServer, upstreamURL); err != nil {
		return fail(fmt.Errorf("hr: %w", err))
	}
	fin, err := approveUpstream(ctx, f.financeURL, financeServer, upstreamURL)
	if err != nil {
		return fail(fmt.Errorf("finance: %w", err))
	}
	// Finance's governance of hr's callers, as hr's of its own: the same
	// policy shape and controls, on the names finance knows them by.
	callerGroup, callerTenant := hrNode.trustDomain+"/"+benchGroup, hrNode.trustDomain+"/"+benchTenant
	if _, err := fin.PutPolicies(ctx, []state.PolicyFile{{Name: "gatewayload.cedar", Text: policyFor(callerGroup, callerTenant)}}); err != nil {
		return fail(fmt.Errorf("finance: put the benchmark's policy: %w", err))
	}
	if err := everyControl(ctx, fin, hrNode.trustDomain+"/apikey:*", "", financeServer); err != nil {
		return fail(fmt.Errorf("finance: %w", err))
	}
	catalog := filepath.Join(dir, "finance-catalog")
	if err := os.MkdirAll(catalog, 0o755); err != nil {
		return fail(err)
	}
	exports := fmt.Sprintf("- server: %s\n  tools: [echo]\n  to:\n    - trust_domain: %s\n", financeServer, hrNode.trustDomain)
	if err := os.WriteFile(filepath.Join(catalog, "exports.yaml"), []byte(exports), 0o600); err != nil {
		return fail(err)
	}
	tokenFile := filepath.Join(dir, "admin.token")
	if err := cli("apply", "-f", catalog, "-addr", f.financeURL, "-token-file", tokenFile); err != nil {
		return fail(err)
	}
	m := &meshManifest{dir: dir, bin: o.bin, centralKey: filepath.Join(central, "central.key")}
	for i, ns := range specs {
		ca, err := os.ReadFile(filepath.Join(ns.caDir(dir), "ca.crt"))
		if err != nil {
			return fail(fmt.Errorf("%s's CA: %w", ns.name, err))
		}
		m.domains = append(m.domains, manifestDomain{spec: ns, peer: peers[i], ca: ca})
	}
	signed, err := m.sign(ctx, hrNode.namespace+">"+financeNode.namespace)
	if err != nil {
		return fail(err)
	}
	for _, base := range []string{f.hrURL, f.financeURL} {
		if err := cli("trust", "manifest", "push", "-f", signed, "-addr", base, "-token-file", tokenFile); err != nil {
			return fail(err)
		}
	}
	return f, nil
}

// stop stops both nodes.
func (f *federationSetup) stop() {
	f.hr.stop()
	f.finance.stop()
}

// meshManifest writes and signs the federation manifests of a run.
type meshManifest struct {
	dir, bin, centralKey string
	domains              []manifestDomain
	version              int
}

// manifestDomain is one BU in the manifest: its node's peer address
// (also its bundle endpoint) and CA certificate (its bootstrap bundle).
type manifestDomain struct {
	spec nodeSpec
	peer string
	ca   []byte
}

// sign writes the next version of the manifest with the given
// relationships ("from>to" namespaces), signs it with central security's
// key (`mcpmesh trust manifest sign`) and returns the signed file's path.
func (m *meshManifest) sign(ctx context.Context, relationships ...string) (string, error) {
	m.version++
	var doc strings.Builder
	fmt.Fprintf(&doc, "version: %d\nexpires: %s\ntrust_domains:\n", m.version, time.Now().Add(24*time.Hour).UTC().Format(time.RFC3339))
	byNS := map[string]string{}
	for _, d := range m.domains {
		byNS[d.spec.namespace] = d.spec.trustDomain
		fmt.Fprintf(&doc, "  - trust_domain: %s\n    namespace: %s\n    bundle_endpoints:\n      - url: https://%s\n        spiffe_id: spiffe://%s/mcpmesh/node/n1\n    bootstrap_bundle: |\n      %s\n",
			d.spec.trustDomain, d.spec.namespace, d.peer, d.spec.trustDomain, strings.ReplaceAll(strings.TrimSpace(string(d.ca)), "\n", "\n      "))
	}
	if len(relationships) == 0 {
		doc.WriteString("relationships: []\n")
	} else {
		doc.WriteString("relationships:\n")
	}
	for _, r := range relationships {
		from, to, _ := strings.Cut(r, ">")
		fmt.Fprintf(&doc, "  - from: %s\n    to: %s\n", byNS[from], byNS[to])
	}
	src := filepath.Join(m.dir, fmt.Sprintf("manifest-%d.yaml", m.version))
	if err := os.WriteFile(src, []byte(doc.String()), 0o600); err != nil {
		return "", err
	}
	out := filepath.Join(m.dir, fmt.Sprintf("manifest-%d.jws", m.version))
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if b, err := exec.CommandContext(cctx, m.bin, "trust", "manifest", "sign", "-key", m.centralKey, "-f", src, "-o", out).CombinedOutput(); err != nil {
		return "", fmt.Errorf("mcpmesh trust manifest sign: %w: %s\n%s", err, b, doc.String())
	}
	return out, nil
}

// measureFederation is the -federation run: it starts the two BUs next to
// the upstream s already runs, and measures direct, local and crossbu.
func measureFederation(ctx context.Context, o options, s *setup, dir string) error {
	nodeCmd, err := o.nodeCmd()
	if err != nil {
		return err
	}
	f, err := startFederation(ctx, o, dir, nodeCmd, s.upstreamURL+mcpPath)
	if err != nil {
		return err
	}
	defer f.stop()
	s.fed = f
	// hr's agents see both tools at /mcp, in name order.
	both := []string{crossBUTool, localTool}
	s.targets = []*target{
		{name: "direct", url: s.upstreamURL + mcpPath, tool: "echo"},
		{name: "local", url: f.hrURL + mcpPath, tool: localTool, listed: both, bearer: f.secret},
		{name: "crossbu", url: f.hrURL + mcpPath, tool: crossBUTool, listed: both, bearer: f.secret},
	}
	for _, t := range s.targets {
		if err := t.connect(ctx, o.era); err != nil {
			return err
		}
		defer t.session.Close()
	}
	if err := checkTools(ctx, s.targets); err != nil {
		return fmt.Errorf("%w\nhr log tail:\n%s\nfinance log tail:\n%s", err, logTail(filepath.Join(dir, "hr.log"), 20), logTail(filepath.Join(dir, "finance.log"), 20))
	}

	printFederationHeader(o, s)
	for _, c := range o.concurrency {
		res, err := callPhase(ctx, o, s, c)
		if err != nil {
			return fmt.Errorf("%w\nhr log tail:\n%s\nfinance log tail:\n%s", err, logTail(filepath.Join(dir, "hr.log"), 20), logTail(filepath.Join(dir, "finance.log"), 20))
		}
		res.printFederation(os.Stdout, s)
	}
	for _, n := range []struct {
		name string
		c    *child
	}{{"hr", f.hr}, {"finance", f.finance}} {
		if n.c.exited() {
			return fmt.Errorf("the %s node exited during the run; log tail:\n%s", n.name, logTail(filepath.Join(dir, n.name+".log"), 20))
		}
	}
	if o.profileDir != "" {
		// The profiling nodes write their profiles as they exit.
		f.stop()
		for _, name := range []string{"hr", "finance"} {
			if err := printShares(os.Stdout, filepath.Join(o.profileDir, name+".pprof"), append(stages, federationStages...)); err != nil {
				return err
			}
		}
	}
	if n, first := logLines(filepath.Join(dir, "upstream.log")); n > 0 {
		fmt.Printf("the upstream logged %d lines (-keep keeps them), the first: %s\n", n, first)
	}
	return nil
}
