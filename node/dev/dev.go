// Package dev runs `mcpmesh dev`: a self-contained mesh on loopback for
// trying mcpmesh and driving it from scripts and tests. Each example BU
// (hr, finance) gets its own trust domain with an embedded CA, a node
// (a single-voter Raft cluster, so one process holds everything), a dev
// admin token, and the example catalog submitted and approved, older
// versions deprecated in favour of the newest. The BUs are federated:
// dev generates a central-security key, signs a manifest naming both BUs
// and the relationships their exports.yaml call for, pushes it to both,
// and waits until every BU lists what the others share with it (hr:
// finance.generate_report), so the first cross-BU call works. The example upstream
// servers (examples/servers) run in the same process, on ports derived
// from the base port (ports.go: the cards' own addresses are moved there),
// and each BU's MCP endpoint is open without
// authentication — dev is the one place a config grants that.
//
// It writes what clients need to <data dir>/dev.json. State lives in the
// data dir, so a second run resumes where the first stopped.
//
// It owns the development setup only; every part it runs is the production
// code path (package node).
package dev

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/mcpmesh/mcpmesh/examples"
	"github.com/mcpmesh/mcpmesh/node"
	"github.com/mcpmesh/mcpmesh/node/config"
	"github.com/mcpmesh/mcpmesh/registry/api"
	"github.com/mcpmesh/mcpmesh/registry/apply"
	"github.com/mcpmesh/mcpmesh/registry/card"
	"github.com/mcpmesh/mcpmesh/registry/state"
	"github.com/mcpmesh/mcpmesh/trust/apikey"
)

// Config configures a dev mesh.
type Config struct {
	// DataDir holds every BU's state, CA and token, and dev.json. Required.
	DataDir string
	// BasePort is the first of the ports used: BU i (0-based, in name
	// order) serves HTTP on BasePort+i, Raft on BasePort+100+i, its peer
	// listener (UDP and TCP) on BasePort+200+i and gossip on
	// BasePort+300+i. The example servers listen from BasePort+400 (one
	// port per card, in catalog order). Default 7700.
	BasePort int
	// Catalog holds the server cards to seed, one directory per namespace.
	// Default: the embedded examples (hr, finance).
	Catalog fs.FS
}

// Info is the content of dev.json.
type Info struct {
	DataDir    string               `json:"dataDir"`
	Namespaces map[string]Namespace `json:"namespaces"`
	// Mesh is the gossip label of the BUs; CentralKeyFile and
	// CentralPubFile hold central security's key pair, and
	// ManifestVersion is the version of the manifest in force.
	Mesh            string `json:"mesh"`
	CentralKeyFile  string `json:"centralKeyFile"`
	CentralPubFile  string `json:"centralPubFile"`
	ManifestVersion uint64 `json:"manifestVersion"`
}

// Namespace is what a client needs to reach one BU.
type Namespace struct {
	TrustDomain string `json:"trustDomain"`
	// MCPURL is the BU's aggregated MCP endpoint. Dev serves it
	// anonymously too; an agent that sends AgentKey calls as its tenant.
	MCPURL string `json:"mcpUrl"`
	// AgentKey is a dev API key of tenant AgentTenant, sent as
	// "Authorization: Bearer <key>"; AgentKeyFile holds it.
	AgentKey     string `json:"agentKey"`
	AgentKeyFile string `json:"agentKeyFile"`
	AgentTenant  string `json:"agentTenant"`
	// AdminURL is the base URL of the node's admin API (/v1/) and health
	// endpoints.
	AdminURL string `json:"adminUrl"`
	// TokenFile holds the dev admin token; Token repeats it.
	TokenFile string `json:"tokenFile"`
	Token     string `json:"token"`
	// Servers lists the seeded server versions, NAME@VERSION.
	Servers []string `json:"servers"`
	// PeerAddr is the BU's peer listener: HTTP/3 for other BUs, and its
	// SPIFFE bundle endpoint over TCP.
	PeerAddr string `json:"peerAddr"`
	// Imported lists the tools other BUs share with this one, as its agent
	// lists them ("<namespace>.<tool>").
	Imported []string `json:"imported"`
	// CrossBUCall, when the BU imports a tool, is a command line calling
	// one as the BU's dev agent.
	CrossBUCall string `json:"crossBUCall,omitempty"`
}

// Run starts the dev mesh, seeds it, writes dev.json, prints a summary to
// out, and serves until ctx ends.
func Run(ctx context.Context, cfg Config, out io.Writer, logger *slog.Logger) error {
	if cfg.DataDir == "" {
		return errors.New("dev: a data dir is required")
	}
	if cfg.BasePort == 0 {
		cfg.BasePort = 7700
	}
	if cfg.BasePort < 1024 || cfg.BasePort > maxBasePort {
		return fmt.Errorf("dev: base port %d out of range 1024-%d", cfg.BasePort, maxBasePort)
	}
	if cfg.Catalog == nil {
		cfg.Catalog = examples.Catalog()
	}
	namespaces, err := namespacesIn(cfg.Catalog)
	if err != nil {
		return err
	}
	exports, err := loadExports(cfg.Catalog, namespaces)
	if err != nil {
		return err
	}
	cards, err := catalogCards(cfg.Catalog, cfg.BasePort)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	cen, err := loadOrCreateCentral(cfg.DataDir)
	if err != nil {
		return err
	}
	info := Info{DataDir: cfg.DataDir, Namespaces: map[string]Namespace{}, Mesh: Mesh, CentralKeyFile: cen.keyFile, CentralPubFile: cen.pubFile}
	var nodes []*node.Node
	byNS := map[string]*node.Node{}
	for i, ns := range namespaces {
		n, nsInfo, err := startBU(cfg, i, len(namespaces), ns, cen, logger)
		if err != nil {
			for _, n := range nodes {
				n.Close()
			}
			return err
		}
		nodes = append(nodes, n)
		byNS[ns] = n
		info.Namespaces[ns] = nsInfo
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	if err := startUpstreams(gctx, g, cards, info.Namespaces, logger); err != nil {
		cancel()
		g.Wait() // the servers already started
		for _, n := range nodes {
			n.Close()
		}
		return err
	}
	for _, n := range nodes {
		g.Go(func() error { return n.Run(gctx) })
	}
	g.Go(func() error {
		clients := map[string]*api.Client{}
		for ns, nsInfo := range info.Namespaces {
			c, err := api.NewClient(api.ClientConfig{Addr: nsInfo.AdminURL, Token: nsInfo.Token, Timeout: 10 * time.Second})
			if err != nil {
				return err
			}
			clients[ns] = c
			servers, err := seed(gctx, c, cards, ns, cfg.BasePort)
			if err != nil {
				return fmt.Errorf("dev: seed %s: %w", ns, err)
			}
			nsInfo.Servers = servers
			if err := seedPolicies(gctx, c, cfg.Catalog, ns); err != nil {
				return fmt.Errorf("dev: seed %s: %w", ns, err)
			}
			if nsInfo, err = seedAgent(gctx, c, cfg.Catalog, ns, nsInfo); err != nil {
				return fmt.Errorf("dev: seed %s: %w", ns, err)
			}
			if err := seedExports(gctx, c, exports[ns]); err != nil {
				return fmt.Errorf("dev: seed %s: %w", ns, err)
			}
			info.Namespaces[ns] = nsInfo
			// dev.json promises endpoints that serve the catalog as seeded.
			wctx, cancel := context.WithTimeout(gctx, 30*time.Second)
			err = byNS[ns].WaitServing(wctx)
			cancel()
			if err != nil {
				return fmt.Errorf("dev: %s: %w", ns, err)
			}
		}
		p, err := planFederation(cfg, namespaces, info.Namespaces, exports)
		if err != nil {
			return err
		}
		if info.ManifestVersion, err = pushManifest(gctx, p, cen, clients); err != nil {
			return err
		}
		// dev.json promises a first cross-BU call that works.
		imported, err := waitImports(gctx, p, info.Namespaces)
		if err != nil {
			if gctx.Err() != nil {
				return nil // stopped meanwhile
			}
			logger.Warn("dev: the BUs have not imported each other's tools yet; see `mcpmesh peers`", "error", err)
		}
		for ns, nsInfo := range info.Namespaces {
			nsInfo.Imported = imported[ns]
			if len(p.imports[ns]) > 0 {
				nsInfo.CrossBUCall = exampleCall(nsInfo, p.imports[ns][0])
			}
			info.Namespaces[ns] = nsInfo
		}
		if err := writeInfo(filepath.Join(cfg.DataDir, "dev.json"), info); err != nil {
			return err
		}
		printSummary(out, info)
		return nil
	})
	return g.Wait()
}

func namespacesIn(catalog fs.FS) ([]string, error) {
	entries, err := fs.ReadDir(catalog, ".")
	if err != nil {
		return nil, fmt.Errorf("dev: read catalog: %w", err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	if len(out) == 0 {
		return nil, errors.New("dev: the catalog has no namespace directories")
	}
	sort.Strings(out)
	return out, nil
}

// startBU prepares one BU's data dir, token and config, and opens its node.
func startBU(cfg Config, i, n int, ns string, cen central, logger *slog.Logger) (*node.Node, Namespace, error) {
	c, info, err := buConfig(cfg, i, n, ns, cen)
	if err != nil {
		return nil, Namespace{}, err
	}
	nd, err := node.New(c, node.WithLogger(logger.With("bu", ns)))
	if err != nil {
		return nil, Namespace{}, fmt.Errorf("dev: start %s: %w", ns, err)
	}
	return nd, info, nil
}

// nodeID is the node id of every dev BU's node.
const nodeID = "dev1"

func buConfig(cfg Config, i, n int, ns string, cen central) (config.Config, Namespace, error) {
	dir := filepath.Join(cfg.DataDir, ns)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return config.Config{}, Namespace{}, fmt.Errorf("dev: %w", err)
	}
	tokenFile := filepath.Join(dir, "admin.token")
	token, err := readOrCreateToken(tokenFile)
	if err != nil {
		return config.Config{}, Namespace{}, err
	}
	td := ns + ".example.corp"
	httpAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.BasePort+i))
	raftAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.BasePort+100+i))
	c := config.DefaultConfig()
	c.NodeID = nodeID
	c.Namespace = ns
	c.TrustDomain = td
	c.DataDir = filepath.Join(dir, "node")
	c.HTTP.Listen = httpAddr
	c.Raft.Listen = raftAddr
	c.Bootstrap = config.BootstrapConfig{Expect: 1, Peers: []config.Peer{{ID: nodeID, Address: raftAddr}}}
	c.Trust.CADir = filepath.Join(dir, "ca")
	c.Trust.AutoInit = true
	c.Admin.TokenFile = tokenFile
	c.MCP.AnonymousRoutes = []string{"/mcp", "/mcp/s/*"}
	c.MCP.ExplainDenials = true
	c.Log.Level = "warn"
	c.Federation = federationConfig(cfg, i, n, cen)
	if err := c.Validate(); err != nil {
		return config.Config{}, Namespace{}, fmt.Errorf("dev: %s config: %w", ns, err)
	}
	return c, Namespace{TrustDomain: td, MCPURL: "http://" + httpAddr + "/mcp", AdminURL: "http://" + httpAddr,
		TokenFile: tokenFile, Token: token, AgentKeyFile: filepath.Join(dir, "agent.key"), PeerAddr: c.Federation.Peer.Listen}, nil
}

func readOrCreateToken(path string) (string, error) {
	if raw, err := os.ReadFile(path); err == nil {
		return strings.TrimSpace(string(raw)), nil
	}
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	tok := "dev-" + hex.EncodeToString(b)
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("dev: write token: %w", err)
	}
	return tok, nil
}

// seed submits every card of the namespace and approves what is submitted.
func seed(ctx context.Context, c *api.Client, cards []catalogCard, ns string, base int) ([]string, error) {
	var servers []string
	for _, cc := range cards {
		if path.Dir(cc.file) != ns {
			continue
		}
		f, raw := cc.file, cc.raw
		res, err := submitWhenReady(ctx, c, raw)
		if apiErr := (*api.Error)(nil); errors.As(err, &apiErr) && apiErr.Status == http.StatusConflict {
			return nil, fmt.Errorf("%s: %w; this data dir was seeded with other example server addresses (another -base-port, or an older mcpmesh dev): start with the base port it was created with (%d now), or with a new -data dir", f, err, base)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		if res.State == card.StateSubmitted {
			if _, err := c.Transition(ctx, res.Server, res.Version, "approve", api.TransitionRequest{Reason: "approved by mcpmesh dev"}); err != nil {
				return nil, fmt.Errorf("approve %s@%s: %w", res.Server, res.Version, err)
			}
		}
		servers = append(servers, res.Server+"@"+res.Version)
	}
	if err := deprecateOlder(ctx, c, servers); err != nil {
		return nil, err
	}
	return servers, nil
}

// DevPolicy is the policy file dev adds to a BU's example policies. A dev
// node serves /mcp anonymously on loopback; the file lets an anonymous
// agent do what the example policies let a tenant's agent do. The dev API
// key, of a tenant, goes through the example policies alone.
const DevPolicy = `// Written by mcpmesh dev, for dev nodes only.

@id("dev-anonymous-list")
permit (principal == Agent::"anonymous", action == Action::"list", resource);

@id("dev-anonymous-read-only")
permit (principal == Agent::"anonymous", action == Action::"call", resource)
when { context.annotations.readOnly };

@id("dev-anonymous-resources-and-prompts")
permit (
  principal == Agent::"anonymous",
  action in [Action::"readResource", Action::"getPrompt"],
  resource
);
`

// seedPolicies installs the BU's example policies (its catalog's *.cedar
// files) and DevPolicy as dev.cedar.
func seedPolicies(ctx context.Context, c *api.Client, catalog fs.FS, ns string) error {
	files, err := fs.Glob(catalog, path.Join(ns, "*"+apply.PolicyExt))
	if err != nil {
		return err
	}
	set := []state.PolicyFile{{Name: "dev.cedar", Text: DevPolicy}}
	for _, f := range files {
		raw, err := fs.ReadFile(catalog, f)
		if err != nil {
			return err
		}
		set = append(set, state.PolicyFile{Name: path.Base(f), Text: string(raw)})
	}
	if _, err := c.PutPolicies(ctx, set); err != nil {
		return fmt.Errorf("policies: %w", err)
	}
	return nil
}

// devTenant is the tenant dev creates for a BU whose catalog has no
// tenants.yaml.
const devTenant = "dev"

// seedAgent creates the BU's tenants (its catalog's tenants.yaml, else one
// tenant "dev") and a dev API key for the first of them, or keeps the key
// a previous run left in the data dir if the registry still accepts it.
func seedAgent(ctx context.Context, c *api.Client, catalog fs.FS, ns string, info Namespace) (Namespace, error) {
	tenants := []api.TenantRequest{{Name: devTenant, DisplayName: "mcpmesh dev", Owners: []string{"mcpmesh dev"}}}
	file := path.Join(ns, apply.TenantsFile)
	if raw, err := fs.ReadFile(catalog, file); err == nil {
		specs, problems := apply.ParseTenants(file, raw)
		if len(problems) > 0 {
			return info, errors.New(problems[0].String())
		}
		if len(specs) == 0 {
			return info, fmt.Errorf("%s declares no tenant", file)
		}
		tenants = tenants[:0]
		for _, t := range specs {
			tenants = append(tenants, api.TenantRequest{Name: t.Name, DisplayName: t.DisplayName, Owners: t.Owners})
		}
	}
	for _, t := range tenants {
		if _, err := c.PutTenant(ctx, t); err != nil {
			return info, fmt.Errorf("tenant %s: %w", t.Name, err)
		}
	}
	info.AgentTenant = tenants[0].Name
	if raw, err := os.ReadFile(info.AgentKeyFile); err == nil {
		key := strings.TrimSpace(string(raw))
		if id, err := apikey.Parse(key); err == nil {
			keys, err := c.APIKeys(ctx, info.AgentTenant, true)
			if err != nil {
				return info, err
			}
			for _, k := range keys {
				if k.ID == id && k.RevokedAt == nil {
					info.AgentKey = key
					return info, nil
				}
			}
		}
	}
	k, err := c.CreateAPIKey(ctx, api.APIKeyRequest{Tenant: info.AgentTenant, Name: "mcpmesh dev agent"})
	if err != nil {
		return info, fmt.Errorf("dev API key: %w", err)
	}
	if err := os.WriteFile(info.AgentKeyFile, []byte(k.Secret+"\n"), 0o600); err != nil {
		return info, fmt.Errorf("write %s: %w", info.AgentKeyFile, err)
	}
	info.AgentKey = k.Secret
	return info, nil
}

// deprecateOlder deprecates every approved version of a server but its
// newest, in favour of the newest, with a sunset 90 days out, so the dev
// mesh shows a deprecation (the ledger's 1.0.0) from the start.
func deprecateOlder(ctx context.Context, c *api.Client, refs []string) error {
	newest := map[string]string{}
	for _, ref := range refs {
		name, version, _ := strings.Cut(ref, "@")
		if cur, ok := newest[name]; !ok || card.CompareVersions(version, cur) > 0 {
			newest[name] = version
		}
	}
	for _, ref := range refs {
		name, version, _ := strings.Cut(ref, "@")
		if version == newest[name] {
			continue
		}
		d, err := c.Version(ctx, name, version, true)
		if err != nil {
			return err
		}
		if d.State != card.StateApproved {
			continue
		}
		req := api.TransitionRequest{
			Sunset:      time.Now().UTC().AddDate(0, 0, 90).Format(time.DateOnly),
			Replacement: newest[name],
			Note:        "deprecated by mcpmesh dev to show deprecation warnings; pin " + newest[name],
		}
		if _, err := c.Transition(ctx, name, version, "deprecate", req); err != nil {
			return fmt.Errorf("deprecate %s: %w", ref, err)
		}
	}
	return nil
}

// submitWhenReady retries while the node is still electing itself.
func submitWhenReady(ctx context.Context, c *api.Client, raw []byte) (api.SubmitResponse, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := c.Submit(ctx, raw)
		var apiErr *api.Error
		if err == nil || (errors.As(err, &apiErr) && apiErr.Status < 500) || time.Now().After(deadline) {
			return res, err
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func writeInfo(path string, info Info) error {
	raw, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(raw, '\n'), 0o600); err != nil {
		return fmt.Errorf("dev: write %s: %w", path, err)
	}
	return os.Rename(tmp, path)
}

func printSummary(w io.Writer, info Info) {
	fmt.Fprintf(w, "mcpmesh dev is running (data in %s; Ctrl-C stops it).\n\n", info.DataDir)
	var names []string
	for ns := range info.Namespaces {
		names = append(names, ns)
	}
	sort.Strings(names)
	for _, ns := range names {
		n := info.Namespaces[ns]
		fmt.Fprintf(w, "BU %-8s trust domain %s\n", ns, n.TrustDomain)
		fmt.Fprintf(w, "  MCP        %s   (anonymous in dev; or as tenant %s: Authorization: Bearer $(cat %s))\n", n.MCPURL, n.AgentTenant, n.AgentKeyFile)
		fmt.Fprintf(w, "  admin API  %s   (token file %s)\n", n.AdminURL, n.TokenFile)
		fmt.Fprintf(w, "  servers    %s\n", strings.Join(n.Servers, ", "))
		if len(n.Imported) > 0 {
			fmt.Fprintf(w, "  imported   %s   (shared by other BUs)\n", strings.Join(n.Imported, ", "))
		}
		fmt.Fprintf(w, "  try        mcpmesh registry list -addr %s -token-file %s\n", n.AdminURL, n.TokenFile)
		if n.CrossBUCall != "" {
			fmt.Fprintf(w, "  cross-BU   %s\n", n.CrossBUCall)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "Federated as mesh %q by manifest version %d, signed with %s.\n", info.Mesh, info.ManifestVersion, info.CentralKeyFile)
	fmt.Fprintf(w, "Everything above is in %s.\n", filepath.Join(info.DataDir, "dev.json"))
}
