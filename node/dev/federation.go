package dev

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpmesh/mcpmesh/federation/gossip"
	"github.com/mcpmesh/mcpmesh/node/config"
	"github.com/mcpmesh/mcpmesh/node/gateway"
	"github.com/mcpmesh/mcpmesh/registry/api"
	"github.com/mcpmesh/mcpmesh/registry/apply"
	"github.com/mcpmesh/mcpmesh/registry/state"
	"github.com/mcpmesh/mcpmesh/trust/manifest"
)

// Federation of the dev BUs. Dev plays central security too: it generates
// a signing key once (<data dir>/central/central.key, as `mcpmesh trust
// manifest keygen` writes it), signs a manifest naming every BU and the
// relationships their exports.yaml files call for, and pushes it to each
// BU's admin API, as `mcpmesh trust manifest push` does. Every BU joins one
// gossip pool (mesh "dev") keyed by <data dir>/gossip.keys.

const (
	// Mesh is the mesh (gossip label) of the dev BUs.
	Mesh = "dev"
	// centralDir holds central security's key pair under the data dir.
	centralDir = "central"
	// keyringFile is the gossip keyring under the data dir.
	keyringFile = "gossip.keys"
	// manifestLifetime is how long a manifest dev signs is good for, and
	// manifestRenewal how long before its expiry a resumed dev signs a new
	// one.
	manifestLifetime = 30 * 24 * time.Hour
	manifestRenewal  = 7 * 24 * time.Hour
	// importWait bounds the wait for every BU to import what others
	// export to it, before dev says it is ready.
	importWait = 60 * time.Second
)

// peerAddr and gossipAddr are BU i's peer listener (HTTP/3, and the
// bundle endpoint over TCP) and gossip address.
func peerAddr(base, i int) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(base+200+i))
}

func gossipAddr(base, i int) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(base+300+i))
}

// central is central security's key as dev keeps it.
type central struct {
	key     crypto.Signer
	keyFile string
	pubFile string
	keyring string
}

// loadOrCreateCentral reads central security's key and the gossip keyring
// from the data dir, creating them on the first run.
func loadOrCreateCentral(dataDir string) (central, error) {
	dir := filepath.Join(dataDir, centralDir)
	c := central{keyFile: filepath.Join(dir, "central.key"), pubFile: filepath.Join(dir, "central.pub"), keyring: filepath.Join(dataDir, keyringFile)}
	if _, err := os.Stat(c.keyFile); errors.Is(err, fs.ErrNotExist) {
		if err := writeCentral(dir, c); err != nil {
			return c, err
		}
	}
	k, err := manifest.LoadPrivateKeyFile(c.keyFile)
	if err != nil {
		return c, fmt.Errorf("dev: %w (delete %s to start a new mesh)", err, dir)
	}
	c.key = k
	if _, err := os.Stat(c.keyring); errors.Is(err, fs.ErrNotExist) {
		key, err := gossip.NewKey()
		if err != nil {
			return c, err
		}
		if err := os.WriteFile(c.keyring, []byte(key+"\n"), 0o600); err != nil {
			return c, fmt.Errorf("dev: write gossip keyring: %w", err)
		}
	}
	return c, nil
}

func writeCentral(dir string, c central) error {
	key, err := manifest.GenerateKey(manifest.ES256)
	if err != nil {
		return err
	}
	priv, err := manifest.MarshalPrivateKey(key)
	if err != nil {
		return err
	}
	pub, err := manifest.MarshalPublicKey(key.Public())
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	// The public half first: a key file without it would be unusable.
	if err := os.WriteFile(c.pubFile, pub, 0o644); err != nil {
		return fmt.Errorf("dev: write central security's key: %w", err)
	}
	if err := os.WriteFile(c.keyFile, priv, 0o600); err != nil {
		return fmt.Errorf("dev: write central security's key: %w", err)
	}
	return nil
}

// federationConfig is BU i's federation section: its peer and gossip
// addresses, joining the other BUs' gossip addresses.
func federationConfig(cfg Config, i, n int, c central) config.FederationConfig {
	f := config.DefaultConfig().Federation
	f.Mesh = Mesh
	f.ManifestKeyFile = c.pubFile
	f.Peer.Listen = peerAddr(cfg.BasePort, i)
	f.Gossip.Listen = gossipAddr(cfg.BasePort, i)
	f.Gossip.KeyringFile = c.keyring
	for j := range n {
		if j != i {
			f.Gossip.Join = append(f.Gossip.Join, gossipAddr(cfg.BasePort, j))
		}
	}
	// Loopback and impatient users: poll a peer BU's catalog more often
	// than production does (a long poll still answers a change at once).
	f.SyncInterval = 5 * time.Second
	return f
}

// loadExports parses every namespace's exports.yaml, if any.
func loadExports(catalog fs.FS, namespaces []string) (map[string][]state.Export, error) {
	out := map[string][]state.Export{}
	for _, ns := range namespaces {
		file := path.Join(ns, apply.ExportsFile)
		raw, err := fs.ReadFile(catalog, file)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("dev: %w", err)
		}
		specs, problems := apply.ParseExports(file, raw)
		if len(problems) > 0 {
			return nil, fmt.Errorf("dev: %s", problems[0].String())
		}
		for _, s := range specs {
			out[ns] = append(out[ns], s.Export)
		}
	}
	return out, nil
}

// seedExports replaces the BU's export set with its exports.yaml, if any.
func seedExports(ctx context.Context, c *api.Client, exports []state.Export) error {
	if exports == nil {
		return nil
	}
	if _, err := c.PutExports(ctx, exports); err != nil {
		return fmt.Errorf("exports: %w", err)
	}
	return nil
}

// plan is what the dev mesh's federation consists of.
type plan struct {
	// manifest is the wanted content, without version and expiry.
	manifest manifest.Manifest
	// imports maps a consumer namespace to the tools, as its agents see
	// them ("<origin>.<tool>"), that other BUs export to it.
	imports map[string][]string
}

// planFederation builds the manifest (every BU, and a relationship from
// each consumer trust domain an export names to the exporter) and what
// each BU should import.
func planFederation(cfg Config, namespaces []string, info map[string]Namespace, exports map[string][]state.Export) (plan, error) {
	p := plan{imports: map[string][]string{}}
	byTD := map[string]string{}
	for i, ns := range namespaces {
		n := info[ns]
		byTD[n.TrustDomain] = ns
		ca, err := os.ReadFile(filepath.Join(cfg.DataDir, ns, "ca", "ca.crt"))
		if err != nil {
			return p, fmt.Errorf("dev: %s's CA bundle: %w", ns, err)
		}
		p.manifest.TrustDomains = append(p.manifest.TrustDomains, manifest.Domain{
			TrustDomain: n.TrustDomain,
			Namespace:   ns,
			BundleEndpoints: []manifest.BundleEndpoint{{
				URL:      "https://" + peerAddr(cfg.BasePort, i),
				SPIFFEID: "spiffe://" + n.TrustDomain + "/mcpmesh/node/" + nodeID,
			}},
			BootstrapBundle: string(ca),
		})
	}
	for _, exporter := range namespaces {
		for _, e := range exports[exporter] {
			for _, to := range e.To {
				consumer, ok := byTD[to.TrustDomain]
				if !ok {
					continue // a BU outside the dev mesh
				}
				rel := manifest.Relationship{From: to.TrustDomain, To: info[exporter].TrustDomain}
				if !slices.Contains(p.manifest.Relationships, rel) {
					p.manifest.Relationships = append(p.manifest.Relationships, rel)
				}
				for _, tool := range e.Tools {
					name := exporter + "." + tool
					if !slices.Contains(p.imports[consumer], name) {
						p.imports[consumer] = append(p.imports[consumer], name)
					}
				}
			}
		}
	}
	for _, names := range p.imports {
		slices.Sort(names)
	}
	return p, nil
}

// pushManifest signs the planned manifest and pushes it to every BU. A
// resumed dev pushes the manifest the BUs already hold when its content
// is still the planned one and it is not close to expiry; otherwise it
// signs a new one under a version above every BU's (a node refuses a
// rollback). It returns the version in force.
func pushManifest(ctx context.Context, p plan, c central, clients map[string]*api.Client) (uint64, error) {
	want, err := canonicalContent(&p.manifest)
	if err != nil {
		return 0, err
	}
	var newest uint64
	var signed []byte
	for ns, cl := range clients {
		held, err := cl.Manifest(ctx, false)
		var apiErr *api.Error
		if errors.As(err, &apiErr) && apiErr.Status == http.StatusNotFound {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("dev: %s's manifest: %w", ns, err)
		}
		if held.Version < newest {
			continue
		}
		newest, signed = held.Version, nil
		m, err := manifest.Open([]byte(held.Signed), c.key.Public())
		if err != nil || time.Until(m.Expires) < manifestRenewal {
			continue // another key's, or about to expire
		}
		if got, err := canonicalContent(m); err == nil && got == want {
			signed = []byte(held.Signed)
		}
	}
	version := newest
	if signed == nil {
		m := p.manifest
		m.Version = newest + 1
		m.Expires = time.Now().Add(manifestLifetime).UTC().Truncate(time.Second)
		if signed, err = manifest.Sign(&m, c.key); err != nil {
			return 0, fmt.Errorf("dev: sign the federation manifest: %w", err)
		}
		version = m.Version
	}
	for ns, cl := range clients {
		if _, err := cl.PushManifest(ctx, signed); err != nil {
			return 0, fmt.Errorf("dev: push the federation manifest to %s: %w", ns, err)
		}
	}
	return version, nil
}

// canonicalContent is what of a manifest dev plans: its BUs and
// relationships (none and an empty list alike, as signing makes them).
func canonicalContent(m *manifest.Manifest) (string, error) {
	raw, err := json.Marshal(struct {
		D []manifest.Domain
		R []manifest.Relationship
	}{m.TrustDomains, append([]manifest.Relationship{}, m.Relationships...)})
	return string(raw), err
}

// waitImports waits, at most importWait, until the agent of each consumer
// BU lists every tool planned for it, and returns the imported tools each
// BU's agent lists. On time out it returns what it saw and an error
// naming what is missing.
func waitImports(ctx context.Context, p plan, info map[string]Namespace) (map[string][]string, error) {
	ctx, cancel := context.WithTimeout(ctx, importWait)
	defer cancel()
	seen := map[string][]string{}
	var missing []string
	for {
		missing = missing[:0]
		for ns, n := range info {
			names, err := listImported(ctx, n)
			if err != nil {
				missing = append(missing, fmt.Sprintf("%s (%v)", ns, err))
				continue
			}
			seen[ns] = names
			for _, want := range p.imports[ns] {
				if !slices.Contains(names, want) {
					missing = append(missing, ns+" lists no "+want)
				}
			}
		}
		if len(missing) == 0 {
			return seen, nil
		}
		select {
		case <-ctx.Done():
			if err := context.Cause(ctx); !errors.Is(err, context.DeadlineExceeded) {
				return seen, err
			}
			return seen, fmt.Errorf("not imported within %s: %s", importWait, strings.Join(missing, "; "))
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// listImported lists, as the BU's dev agent, the tools other BUs share
// with it.
func listImported(ctx context.Context, n Namespace) ([]string, error) {
	c := mcp.NewClient(&mcp.Implementation{Name: "mcpmesh-dev", Version: "1"}, nil)
	hc := &http.Client{Transport: bearer(n.AgentKey), Timeout: 10 * time.Second}
	s, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: n.MCPURL, HTTPClient: hc, MaxRetries: -1}, nil)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	res, err := s.ListTools(ctx, nil)
	if err != nil {
		return nil, err
	}
	names := []string{}
	for _, t := range res.Tools {
		if _, ok := t.Meta[gateway.MetaOrigin]; ok {
			names = append(names, t.Name)
		}
	}
	slices.Sort(names)
	return names, nil
}

// bearer sends an API key with every request.
type bearer string

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+string(b))
	return http.DefaultTransport.RoundTrip(r)
}

// exampleArguments are arguments that a tool of the example catalog
// accepts, for the command dev prints to try a cross-BU call.
var exampleArguments = map[string]string{
	"finance.generate_report": "kind=profit_and_loss period=2026-01",
	"finance.get_balance":     "account_id=ACC-1001",
}

// exampleCall is a command line that calls tool, imported by BU n.
func exampleCall(n Namespace, tool string) string {
	cmd := fmt.Sprintf("mcpmesh call -url %s -api-key-file %s %s", n.MCPURL, n.AgentKeyFile, tool)
	if args, ok := exampleArguments[tool]; ok {
		cmd += " " + args
	}
	return cmd
}
