package testcluster

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// NodeOverrides are one node's deliberate departures from its cluster's
// config: a foreign trust domain with its own CA, an HTTPS listener, or an
// identity from a SPIRE Workload API. A zero field keeps the cluster's
// value.
type NodeOverrides struct {
	// TrustDomain and CADir replace the cluster's trust domain and CA
	// directory (make one with InitCA).
	TrustDomain, CADir string
	// HTTPTLS serves the node's HTTP listener over TLS with its SVID, so
	// clients may authenticate with an admin SVID. Its URL is then HTTPSURL.
	HTTPTLS bool
	// WorkloadAPIAddr takes the node's identity from the Workload API at
	// this address (trust.source: workload-api) instead of the CA.
	WorkloadAPIAddr string
	// AdminPathPrefix replaces admin.spiffe_path_prefix (default /admin/).
	AdminPathPrefix string
}

// WriteConfigWith (re)writes the node's config with the given bootstrap
// section and o applied.
func (n *Node) WriteConfigWith(o NodeOverrides, bootstrapYAML string) {
	c := n.c
	td, caDir := c.Opts.TrustDomain, c.CADir
	if o.TrustDomain != "" {
		td = o.TrustDomain
	}
	if o.CADir != "" {
		caDir = o.CADir
	}
	trust := fmt.Sprintf("  ca_dir: %q", caDir)
	audit := fmt.Sprintf("  no_sync: %v\n", c.Opts.NoSync)
	if o.WorkloadAPIAddr != "" {
		trust = fmt.Sprintf("  source: workload-api\n  workload_api_addr: %q", o.WorkloadAPIAddr)
		// Without a CA there is no key to derive: the BU shares a file.
		audit += fmt.Sprintf("  arguments_key_file: %q\n", c.auditKeyFile())
	}
	audit += c.Opts.AuditYAML
	admin := fmt.Sprintf("  token_file: %q", c.TokenFile)
	if o.AdminPathPrefix != "" {
		admin += fmt.Sprintf("\n  spiffe_path_prefix: %q", o.AdminPathPrefix)
	}
	cfg := fmt.Sprintf(`node_id: %s
namespace: %s
trust_domain: %s
data_dir: %q
http:
  listen: %q
  tls: %v
  shutdown_timeout: 5s
raft:
  listen: %q
  no_sync: %v
trust:
%s
admin:
%s
log:
  level: debug
audit:
%s
%s
%s`, n.ID, c.Opts.Namespace, td, n.DataDir, n.HTTPAddr, o.HTTPTLS, n.RaftAddr, c.Opts.NoSync, trust, admin, audit, bootstrapYAML, c.Opts.ExtraYAML)
	if c.Opts.NodeYAML != nil {
		cfg += c.Opts.NodeYAML(n.ID)
	}
	if err := os.WriteFile(n.ConfigPath, []byte(cfg), 0o600); err != nil {
		c.t.Fatalf("write config: %v", err)
	}
}

// auditKeyFile returns the cluster's shared audit arguments key file,
// writing it on first use.
func (c *Cluster) auditKeyFile() string {
	path := filepath.Join(c.Dir, "audit.key")
	if _, err := os.Stat(path); err == nil {
		return path
	}
	if err := os.WriteFile(path, []byte("test-audit-key-0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		c.t.Fatalf("write audit key: %v", err)
	}
	return path
}

// AddNodeWith prepares (does not start) a node that joins via the given
// node, with o applied to its config.
func (c *Cluster) AddNodeWith(id string, via *Node, o NodeOverrides) *Node {
	c.t.Helper()
	n := &Node{c: c, ID: id, HTTPAddr: c.port(), RaftAddr: c.port()}
	n.DataDir = filepath.Join(c.Dir, id)
	n.ConfigPath = filepath.Join(c.Dir, id+".yaml")
	n.LogPath = filepath.Join(c.Dir, id+".log")
	n.WriteConfigWith(o, fmt.Sprintf("bootstrap:\n  join: [%q]\n", via.RaftAddr))
	c.Nodes = append(c.Nodes, n)
	return n
}

// InitCA creates an embedded CA for trustDomain with `mcpmesh trust init`
// in a new directory under the cluster's and returns that directory.
func (c *Cluster) InitCA(trustDomain string) string {
	c.t.Helper()
	dir := filepath.Join(c.Dir, "ca-"+trustDomain)
	if out, code := c.Run("trust", "init", "-trust-domain", trustDomain, "-out", dir); code != 0 {
		c.t.Fatalf("trust init %s: exit %d: %s", trustDomain, code, out)
	}
	return dir
}

// IssueSVID issues an X.509-SVID for spiffeID from the CA in caDir with
// `mcpmesh trust issue` and returns the directory holding it (svid.crt,
// svid.key, bundle.crt), for the CLI's -svid-dir.
func (c *Cluster) IssueSVID(caDir, spiffeID string) string {
	c.t.Helper()
	dir, err := os.MkdirTemp(c.Dir, "svid-")
	if err != nil {
		c.t.Fatalf("svid dir: %v", err)
	}
	if out, code := c.Run("trust", "issue", "-ca-dir", caDir, "-spiffe-id", spiffeID, "-out", dir); code != 0 {
		c.t.Fatalf("trust issue %s: exit %d: %s", spiffeID, code, out)
	}
	return dir
}

// HTTPSURL is the node's base URL when its listener serves TLS
// (NodeOverrides.HTTPTLS).
func (n *Node) HTTPSURL() string { return "https://" + n.HTTPAddr }

// LastRunLog returns the node's log since its latest Start.
func (n *Node) LastRunLog() string {
	log := n.Log()
	if i := strings.LastIndex(log, "=== start "); i >= 0 {
		return log[i:]
	}
	return log
}
