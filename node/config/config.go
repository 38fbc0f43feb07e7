// Package config defines a node's configuration file: its YAML form, the
// defaults, and validation. It owns parsing and checking only; wiring the
// node from a Config is package node's job.
//
// Unknown keys are errors, so a typo never silently falls back to a default.
// Every error is one line naming the offending key.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"gopkg.in/yaml.v3"
)

// Config is one node's configuration. The zero value is not valid; start
// from DefaultConfig and override, or Load a file.
type Config struct {
	// NodeID names this node inside its namespace. It is the Raft server ID
	// and the last segment of the node's SPIFFE ID. Required.
	NodeID string `yaml:"node_id"`
	// Namespace is the BU's registry namespace, e.g. "hr". Required.
	Namespace string `yaml:"namespace"`
	// TrustDomain is the BU's SPIFFE trust domain, e.g. "hr.example.corp". Required.
	TrustDomain string `yaml:"trust_domain"`
	// DataDir holds the Raft log, snapshots and state. Required. Relative
	// paths are relative to the working directory.
	DataDir string `yaml:"data_dir"`

	HTTP      HTTPConfig      `yaml:"http"`
	Raft      RaftConfig      `yaml:"raft"`
	Bootstrap BootstrapConfig `yaml:"bootstrap"`
	Trust     TrustConfig     `yaml:"trust"`
	Admin     AdminConfig     `yaml:"admin"`
	MCP       MCPConfig       `yaml:"mcp"`
	Log       LogConfig       `yaml:"log"`
	// UpstreamTokens controls the tokens the node mints toward upstreams.
	UpstreamTokens UpstreamTokensConfig `yaml:"upstream_tokens"`
	// Audit controls the node's audit log (<data dir>/audit).
	Audit AuditConfig `yaml:"audit"`
	// Governance holds the per-call controls: approval hold and TTL, usage flush.
	Governance GovernanceConfig `yaml:"governance"`
	// Federation joins the node to the mesh of all BUs. Off by default.
	Federation FederationConfig `yaml:"federation"`
}

// AuditConfig controls the node's audit log: a hash chain of one record
// per tool call, denial, refused credential and admin change, in
// <data dir>/audit (package node/audit). It cannot be turned off.
type AuditConfig struct {
	// RawArguments lists the tools whose raw arguments are recorded, each
	// as "<server>/<tool>", e.g. "corp.finance/ledger/transfer_funds".
	// Every other call's arguments are recorded only as their keyed hash.
	// Default none. Give every replica of the BU the same list.
	RawArguments []string `yaml:"raw_arguments"`
	// ArgumentsKeyFile names a file holding the key (at least 32 bytes,
	// surrounding white space ignored) that arguments are hashed with
	// (HMAC-SHA256). Every replica of the BU needs the same key. Default:
	// derived from the embedded CA's key; required with trust.source
	// workload-api, where the node holds no CA.
	ArgumentsKeyFile string `yaml:"arguments_key_file"`
	// Retention is how long records are kept; older ones are removed
	// (hourly) from the start of the chain, which stays verifiable. Default
	// 0: keep every record.
	Retention time.Duration `yaml:"retention"`
	// CheckpointInterval is how often the node commits its chain head to
	// the BU's Raft log, so that a rewritten history is detected. It also
	// does so when it stops. Default 30s.
	CheckpointInterval time.Duration `yaml:"checkpoint_interval"`
	// NoSync commits records without fsync. For tests only: a crash may
	// lose the records of calls that were answered. Default false.
	NoSync bool `yaml:"no_sync"`
}

// UpstreamTokensConfig controls the tokens the node sends upstream servers
// instead of any agent credential (package trust/tokens), and the rotation
// of the namespace's signing key. Give every replica of a namespace the
// same values: the leader's rotate, the others' are used once they lead.
type UpstreamTokensConfig struct {
	// TTL is a token's lifetime. Default 60s; between 1s and 1h.
	TTL time.Duration `yaml:"ttl"`
	// RotateEvery is the age at which the leader replaces the signing key.
	// Default 24h; at least 1s.
	RotateEvery time.Duration `yaml:"rotate_every"`
	// Leeway keeps a retired key published this long after its last token
	// expired (clock skew, replicas that applied the rotation late).
	// Default 30s; at least 1s.
	Leeway time.Duration `yaml:"leeway"`
	// PublishAhead is how long a new signing key is published before it
	// signs, so that upstreams which cache the key set know it by its
	// first token. Default 10m, or a quarter of rotate_every when that is
	// shorter; 0 makes a new key sign at once. Below rotate_every.
	PublishAhead *time.Duration `yaml:"publish_ahead"`
}

// EffectivePublishAhead is PublishAhead, or its default.
func (u UpstreamTokensConfig) EffectivePublishAhead() time.Duration {
	if u.PublishAhead != nil {
		return *u.PublishAhead
	}
	return min(10*time.Minute, u.RotateEvery/4)
}

// MCPConfig controls the MCP front door (/mcp).
type MCPConfig struct {
	// AnonymousRoutes are the /mcp paths served without a credential,
	// e.g. "/mcp" or "/mcp/s/hr/corp.hr/directory"; a trailing "/*"
	// matches a prefix. Default none. A credential that is presented is
	// still checked on these routes.
	AnonymousRoutes []string `yaml:"anonymous_routes"`
	// Auth says how agents authenticate.
	Auth AgentAuthConfig `yaml:"auth"`
	// CallTimeout bounds one tool call to an upstream. Default 30s.
	CallTimeout time.Duration `yaml:"call_timeout"`
	// MaxConcurrentPerUpstream is each upstream's bulkhead. Default 64.
	MaxConcurrentPerUpstream int `yaml:"max_concurrent_per_upstream"`
	// ExplainDenials names the deciding Cedar policies in the error an
	// agent gets when policy denies its request. Default false: the agent
	// is told only that policy denied it; the node's log always names them.
	ExplainDenials bool `yaml:"explain_denials"`
}

// AgentAuthConfig says how agents authenticate at /mcp.
type AgentAuthConfig struct {
	// Methods are the accepted credentials: "api-key" (per-tenant keys,
	// `mcpmesh apikey create`), "x509-svid" (agent SVIDs over mTLS; needs
	// http.tls), "oidc" (access tokens of the provider in oidc) and
	// "jwt-svid" (JWT-SVIDs of the trust domain as bearer tokens, see
	// jwt_svid). Default api-key and x509-svid, and oidc when oidc.issuer
	// is set; jwt-svid only when listed.
	Methods []string `yaml:"methods"`
	// OIDC is the BU's OAuth 2.1 / OIDC provider.
	OIDC OIDCConfig `yaml:"oidc"`
	// JWTSVID says which JWT-SVIDs are accepted (method jwt-svid).
	JWTSVID JWTSVIDConfig `yaml:"jwt_svid"`
	// SVIDPathPrefix is the SPIFFE ID path prefix of agents, for X.509-
	// and JWT-SVIDs alike. Default "/agent/".
	SVIDPathPrefix string `yaml:"svid_path_prefix"`
	// SVIDTenants give agents whose SVID path starts with path_prefix a
	// tenant; the longest matching prefix wins. An SVID no rule matches
	// calls with no tenant.
	SVIDTenants []SVIDTenant `yaml:"svid_tenants"`
}

// JWTSVIDConfig says which JWT-SVIDs agents may present as bearer tokens.
// They are verified against the trust domain's JWT bundle: the embedded
// CA's, or the SPIRE Workload API's (trust.source).
type JWTSVIDConfig struct {
	// Audience must be in a token's aud: the name agents fetch their
	// JWT-SVIDs for. Default spiffe://<trust_domain>/mcpmesh/gateway, the
	// same for every node of the BU.
	Audience string `yaml:"audience"`
}

// OIDCConfig names the provider whose access tokens agents may present.
type OIDCConfig struct {
	// Issuer must equal the tokens' iss.
	Issuer string `yaml:"issuer"`
	// JWKSURL is the provider's key set (https; http only on loopback).
	JWKSURL string `yaml:"jwks_url"`
	// Audience is this node's resource URI (RFC 8707), e.g.
	// https://hr-mcp.corp.example/mcp; tokens must name it in aud. The
	// Protected Resource Metadata is served under its path.
	Audience string `yaml:"audience"`
	// TenantClaim and GroupsClaim name the claims mapped to the
	// principal's tenant and groups. Defaults "tenant" and "groups".
	TenantClaim string `yaml:"tenant_claim"`
	GroupsClaim string `yaml:"groups_claim"`
	// RequiredScopes must all be in a token (403 insufficient_scope else).
	RequiredScopes []string `yaml:"required_scopes"`
}

// SVIDTenant maps agent SVID paths to a tenant.
type SVIDTenant struct {
	PathPrefix string `yaml:"path_prefix"`
	Tenant     string `yaml:"tenant"`
}

// HTTPConfig is the listener that agents and administrators use.
type HTTPConfig struct {
	// Listen is the host:port of the HTTP listener. Required.
	Listen string `yaml:"listen"`
	// Advertise is the host:port at which clients reach the listener,
	// reported to them by `mcpmesh members` (and used by `audit query
	// -all`). Default: Listen, or with a wildcard Listen the host of
	// raft.advertise with Listen's port.
	Advertise string `yaml:"advertise"`
	// TLS serves HTTPS with the node's SVID; clients may then present an
	// SVID of the trust domain to authenticate. Default false (plain HTTP).
	TLS bool `yaml:"tls"`
	// ShutdownTimeout bounds how long a draining node waits for in-flight
	// requests. Default 10s.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
}

// RaftConfig tunes replication of the namespace.
type RaftConfig struct {
	// Listen is the host:port for Raft and node-to-node RPC, served over
	// SPIFFE mTLS. Required.
	Listen string `yaml:"listen"`
	// Advertise is the address other nodes dial; default Listen. It must not
	// be an unspecified address (0.0.0.0).
	Advertise string `yaml:"advertise"`
	// HeartbeatTimeout, ElectionTimeout and LeaderLeaseTimeout are passed to
	// hashicorp/raft. Defaults 500ms, 500ms, 250ms: tuned for one site,
	// failover in about a second.
	HeartbeatTimeout   time.Duration `yaml:"heartbeat_timeout"`
	ElectionTimeout    time.Duration `yaml:"election_timeout"`
	LeaderLeaseTimeout time.Duration `yaml:"leader_lease_timeout"`
	// SnapshotThreshold is how many log entries trigger a snapshot. Default 8192.
	SnapshotThreshold uint64 `yaml:"snapshot_threshold"`
	// SnapshotRetain is how many snapshots are kept on disk. Default 3.
	SnapshotRetain int `yaml:"snapshot_retain"`
	// NoSync skips fsync of the Raft log. For tests only; default false.
	NoSync bool `yaml:"no_sync"`
}

// BootstrapConfig says how a node first becomes part of a cluster. It is
// ignored once the data dir holds Raft state.
type BootstrapConfig struct {
	// Expect is the number of voters of a new cluster; when set, Peers must
	// list exactly that many servers, this node among them. Every node of the
	// new cluster is configured with the same list.
	Expect int `yaml:"expect"`
	// Peers are the initial voters (id and Raft address).
	Peers []Peer `yaml:"peers"`
	// Join lists Raft addresses of members of an existing cluster; the node
	// asks them (over mTLS) to add it as a voter.
	Join []string `yaml:"join"`
}

// Peer is one voter of the initial cluster.
type Peer struct {
	ID      string `yaml:"id"`
	Address string `yaml:"address"`
}

// The identity sources of TrustConfig.Source.
const (
	// TrustEmbedded takes the node's SVID from the embedded CA in ca_dir.
	TrustEmbedded = "embedded"
	// TrustWorkloadAPI takes the node's SVID and the bundles from a SPIRE
	// agent's Workload API at workload_api_addr.
	TrustWorkloadAPI = "workload-api"
)

// TrustConfig says where the node's identity comes from.
type TrustConfig struct {
	// Source is "embedded" (the CA in CADir issues and renews the node's
	// SVID) or "workload-api" (a SPIRE agent does, at WorkloadAPIAddr).
	// Default embedded.
	Source string `yaml:"source"`
	// CADir holds the trust domain's embedded CA (ca.crt, ca.key), made by
	// `mcpmesh trust init`. Required with source embedded; not allowed
	// with workload-api.
	CADir string `yaml:"ca_dir"`
	// AutoInit creates the CA in CADir when it is missing. Meant for
	// examples and development; default false, so a production node never
	// invents a trust domain by accident. Embedded only.
	AutoInit bool `yaml:"auto_init"`
	// SVIDTTL is the lifetime of the node's X.509-SVID from the embedded
	// CA; it is renewed at half-life. Default 1h. With workload-api, SPIRE
	// decides lifetimes and rotation.
	SVIDTTL time.Duration `yaml:"svid_ttl"`
	// WorkloadAPIAddr is the SPIRE agent's Workload API, e.g.
	// unix:///run/spire/sockets/agent.sock (or tcp://IP:PORT). Required
	// with source workload-api. SPIRE must issue the node the SPIFFE ID
	// spiffe://<trust_domain>/mcpmesh/node/<node_id>.
	WorkloadAPIAddr string `yaml:"workload_api_addr"`
	// WorkloadAPITimeout bounds how long a starting node waits for its
	// first SVID from the Workload API before it gives up. Default 30s.
	WorkloadAPITimeout time.Duration `yaml:"workload_api_timeout"`
}

// AdminConfig controls access to the admin API under /v1/.
type AdminConfig struct {
	// TokenFile names a file whose content (trimmed) is the bootstrap admin
	// token. Optional; without it only admin SVIDs authenticate.
	TokenFile string `yaml:"token_file"`
	// SPIFFEPathPrefix is the path prefix of SPIFFE IDs of this trust domain
	// that count as administrators when presented over mTLS. Default "/admin/".
	SPIFFEPathPrefix string `yaml:"spiffe_path_prefix"`
	// OIDC signs administrators in with access tokens of the BU's OIDC
	// provider (mcp.auth.oidc's issuer and key set). Optional.
	OIDC AdminOIDCConfig `yaml:"oidc"`
}

// LogConfig controls the node's logging.
type LogConfig struct {
	// Level is debug, info, warn or error. Default info.
	Level string `yaml:"level"`
	// Format is text or json. Default text.
	Format string `yaml:"format"`
}

// DefaultConfig returns a Config with every optional field at its default.
func DefaultConfig() Config {
	return Config{
		HTTP: HTTPConfig{ShutdownTimeout: 10 * time.Second},
		Raft: RaftConfig{
			HeartbeatTimeout:   500 * time.Millisecond,
			ElectionTimeout:    500 * time.Millisecond,
			LeaderLeaseTimeout: 250 * time.Millisecond,
			SnapshotThreshold:  8192,
			SnapshotRetain:     3,
		},
		Trust: TrustConfig{Source: TrustEmbedded, SVIDTTL: time.Hour, WorkloadAPITimeout: 30 * time.Second},
		Admin: AdminConfig{SPIFFEPathPrefix: "/admin/"},
		MCP: MCPConfig{CallTimeout: 30 * time.Second, MaxConcurrentPerUpstream: 64,
			Auth: AgentAuthConfig{SVIDPathPrefix: "/agent/"}},
		Log:            LogConfig{Level: "info", Format: "text"},
		UpstreamTokens: UpstreamTokensConfig{TTL: 60 * time.Second, RotateEvery: 24 * time.Hour, Leeway: 30 * time.Second},
		Audit:          AuditConfig{CheckpointInterval: 30 * time.Second},
		Governance:     GovernanceConfig{ApprovalHold: DefaultApprovalHold, ApprovalTTL: DefaultApprovalTTL, ApprovalMaxHeld: DefaultApprovalMaxHeld},
		Federation: FederationConfig{Mesh: DefaultMesh, AssertionTTL: DefaultAssertionTTL,
			CallTimeout: DefaultFederationCallTimeout, SyncInterval: DefaultFederationSyncInterval},
	}
}

// Load reads and validates a config file on top of DefaultConfig.
func Load(path string) (Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	cfg, err := Parse(f)
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Parse decodes YAML on top of DefaultConfig and validates the result.
func Parse(r io.Reader) (Config, error) {
	data, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	cfg := DefaultConfig()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, yamlError(err, data)
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

var (
	notFound   = regexp.MustCompile(`line (\d+): field (\S+) not found in type (\S+)`)
	cannotDec  = regexp.MustCompile("(?s)^line (\\d+): cannot unmarshal !!\\w+ `(.*)` into (\\S+)$")
	durationTy = "time.Duration"
)

// yamlError turns yaml.v3's multi-line errors into one line that names the
// key (read back from the source line yaml reports).
func yamlError(err error, data []byte) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return fmt.Errorf("invalid YAML: %s", strings.ReplaceAll(err.Error(), "\n", " "))
	}
	msgs := make([]string, 0, len(te.Errors))
	for _, e := range te.Errors {
		if m := notFound.FindStringSubmatch(e); m != nil {
			msgs = append(msgs, fmt.Sprintf("line %s: unknown key %q (check the spelling against the README's config reference)", m[1], m[2]))
			continue
		}
		if m := cannotDec.FindStringSubmatch(strings.TrimSpace(e)); m != nil {
			key := keyAtLine(data, m[1])
			want := "a " + m[3]
			switch m[3] {
			case durationTy:
				want = "a duration such as 500ms or 10s"
			case "config.Config":
				key, want = "document", "a mapping of keys (see examples/cluster/node1.yaml)"
			}
			msgs = append(msgs, fmt.Sprintf("line %s: %s: %q is not %s", m[1], key, m[2], want))
			continue
		}
		msgs = append(msgs, strings.TrimSpace(e))
	}
	// Values quoted in yaml's messages may span lines; the error must not.
	return fmt.Errorf("%s", strings.Join(strings.Fields(strings.Join(msgs, "; ")), " "))
}

// keyAtLine returns the YAML key written on a 1-based line, or "value".
func keyAtLine(data []byte, line string) string {
	var n int
	fmt.Sscanf(line, "%d", &n)
	lines := strings.Split(string(data), "\n")
	if n < 1 || n > len(lines) {
		return "value"
	}
	k, _, found := strings.Cut(strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(lines[n-1]), "- ")), ":")
	if !found || k == "" {
		return "value"
	}
	return k
}

var nodeIDPattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?$`)
var namespacePattern = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

// Validate reports the first problem with c as one line naming the key.
func (c *Config) Validate() error {
	if err := c.Governance.validate(); err != nil {
		return err
	}
	if err := c.Federation.validate(); err != nil {
		return err
	}
	if c.NodeID == "" {
		return errors.New("node_id: missing; set a short name such as n1")
	}
	if !nodeIDPattern.MatchString(c.NodeID) {
		return fmt.Errorf("node_id: %q is not valid; use lowercase letters, digits and dashes (at most 64)", c.NodeID)
	}
	if c.Namespace == "" {
		return errors.New("namespace: missing; set the BU's namespace such as hr")
	}
	if !namespacePattern.MatchString(c.Namespace) {
		return fmt.Errorf("namespace: %q is not valid; use a lowercase letter then letters, digits or dashes", c.Namespace)
	}
	if c.TrustDomain == "" {
		return errors.New("trust_domain: missing; set the BU's SPIFFE trust domain such as hr.example.corp")
	}
	if _, err := spiffeid.TrustDomainFromString(c.TrustDomain); err != nil || strings.Contains(c.TrustDomain, "://") {
		return fmt.Errorf("trust_domain: %q is not a SPIFFE trust domain name; write it without spiffe:// (e.g. hr.example.corp)", c.TrustDomain)
	}
	if c.DataDir == "" {
		return errors.New("data_dir: missing; set a directory for the node's Raft log and state")
	}
	if err := checkHostPort("http.listen", c.HTTP.Listen, false); err != nil {
		return err
	}
	if c.HTTP.Advertise != "" {
		if err := checkHostPort("http.advertise", c.HTTP.Advertise, true); err != nil {
			return err
		}
	}
	if c.HTTP.ShutdownTimeout <= 0 {
		return errors.New("http.shutdown_timeout: must be a positive duration such as 10s")
	}
	if err := checkHostPort("raft.listen", c.Raft.Listen, false); err != nil {
		return err
	}
	if c.Raft.Advertise != "" {
		if err := checkHostPort("raft.advertise", c.Raft.Advertise, true); err != nil {
			return err
		}
	} else if host, _, _ := net.SplitHostPort(c.Raft.Listen); isUnspecified(host) {
		return fmt.Errorf("raft.advertise: missing; raft.listen %q is a wildcard address, so set the address other nodes dial", c.Raft.Listen)
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"raft.heartbeat_timeout", c.Raft.HeartbeatTimeout},
		{"raft.election_timeout", c.Raft.ElectionTimeout},
		{"raft.leader_lease_timeout", c.Raft.LeaderLeaseTimeout},
	} {
		if d.v < 5*time.Millisecond {
			return fmt.Errorf("%s: %s is too short; use at least 5ms (500ms suits one site)", d.key, d.v)
		}
	}
	if c.Raft.LeaderLeaseTimeout > c.Raft.HeartbeatTimeout {
		return fmt.Errorf("raft.leader_lease_timeout: %s must not exceed raft.heartbeat_timeout %s", c.Raft.LeaderLeaseTimeout, c.Raft.HeartbeatTimeout)
	}
	if c.Raft.SnapshotThreshold == 0 {
		return errors.New("raft.snapshot_threshold: must be at least 1")
	}
	if c.Raft.SnapshotRetain < 1 {
		return errors.New("raft.snapshot_retain: must be at least 1")
	}
	if err := c.Bootstrap.validate(c.NodeID, c.RaftAdvertise()); err != nil {
		return err
	}
	if err := c.Trust.validate(); err != nil {
		return err
	}
	if !strings.HasPrefix(c.Admin.SPIFFEPathPrefix, "/") {
		return fmt.Errorf("admin.spiffe_path_prefix: %q must start with /", c.Admin.SPIFFEPathPrefix)
	}
	if err := c.Admin.OIDC.validate(c.MCP.Auth.OIDC); err != nil {
		return err
	}
	for i, r := range c.MCP.AnonymousRoutes {
		if r != "/mcp" && !strings.HasPrefix(r, "/mcp/") {
			return fmt.Errorf("mcp.anonymous_routes[%d]: %q is not an /mcp route (e.g. /mcp or /mcp/s/<namespace>/<server>)", i, r)
		}
	}
	if err := c.MCP.Auth.validate(); err != nil {
		return err
	}
	if c.MCP.CallTimeout <= 0 {
		return errors.New("mcp.call_timeout: must be a positive duration such as 30s")
	}
	if c.MCP.MaxConcurrentPerUpstream < 1 {
		return errors.New("mcp.max_concurrent_per_upstream: must be at least 1")
	}
	if t := c.UpstreamTokens.TTL; t < time.Second || t > time.Hour {
		return fmt.Errorf("upstream_tokens.ttl: %s is out of range; use 1s to 1h (default 60s)", t)
	}
	if c.UpstreamTokens.RotateEvery < time.Second {
		return fmt.Errorf("upstream_tokens.rotate_every: %s is too short; use at least 1s (default 24h)", c.UpstreamTokens.RotateEvery)
	}
	if c.UpstreamTokens.Leeway < time.Second {
		return fmt.Errorf("upstream_tokens.leeway: %s is too short; use at least 1s (default 30s)", c.UpstreamTokens.Leeway)
	}
	if p := c.UpstreamTokens.EffectivePublishAhead(); p < 0 || p >= c.UpstreamTokens.RotateEvery {
		return fmt.Errorf("upstream_tokens.publish_ahead: %s must be at least 0 and below rotate_every (%s)", p, c.UpstreamTokens.RotateEvery)
	}
	if err := c.Governance.validate(); err != nil {
		return err
	}
	if err := c.Audit.validate(c.Trust.Source); err != nil {
		return err
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log.level: %q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return fmt.Errorf("log.format: %q is not one of text, json", c.Log.Format)
	}
	return nil
}

// auditToolPattern is "<server>/<tool>": a server name (which has a
// slash) and a tool name.
var auditToolPattern = regexp.MustCompile(`^[A-Za-z0-9.-]+/[A-Za-z0-9._-]+/[A-Za-z0-9_.-]{1,128}$`)

func (a *AuditConfig) validate(source string) error {
	for i, t := range a.RawArguments {
		if !auditToolPattern.MatchString(t) {
			return fmt.Errorf("audit.raw_arguments[%d]: %q is not <server>/<tool>, e.g. corp.finance/ledger/transfer_funds", i, t)
		}
	}
	if source == TrustWorkloadAPI && a.ArgumentsKeyFile == "" {
		return errors.New("audit.arguments_key_file: missing; with trust.source: workload-api the node holds no CA to derive the audit key from, so give every replica of the BU the same key file (e.g. `openssl rand -hex 32`)")
	}
	if a.Retention < 0 {
		return fmt.Errorf("audit.retention: %s is negative; use a duration such as 2160h, or 0 to keep every record", a.Retention)
	}
	if a.Retention > 0 && a.Retention < time.Hour {
		return fmt.Errorf("audit.retention: %s is too short; use at least 1h (or 0 to keep every record)", a.Retention)
	}
	if a.CheckpointInterval < time.Second {
		return fmt.Errorf("audit.checkpoint_interval: %s is too short; use at least 1s (default 30s)", a.CheckpointInterval)
	}
	return nil
}

// RaftAdvertise is the Raft address other nodes dial.
func (c *Config) RaftAdvertise() string {
	if c.Raft.Advertise != "" {
		return c.Raft.Advertise
	}
	return c.Raft.Listen
}

// APIURL is the base URL at which clients reach the HTTP listener, bound
// at bound: http.advertise if set, else bound with a wildcard host
// replaced by the host of raft.advertise.
func (c *Config) APIURL(bound string) string {
	scheme := "http"
	if c.HTTP.TLS {
		scheme = "https"
	}
	if c.HTTP.Advertise != "" {
		return scheme + "://" + c.HTTP.Advertise
	}
	host, port, err := net.SplitHostPort(bound)
	if err != nil {
		return scheme + "://" + bound
	}
	if isUnspecified(host) {
		host, _, _ = net.SplitHostPort(c.RaftAdvertise())
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

func (t *TrustConfig) validate() error {
	switch t.Source {
	case TrustEmbedded:
		if t.CADir == "" {
			return errors.New("trust.ca_dir: missing; create a CA with `mcpmesh trust init -trust-domain TD -out DIR` and name DIR here, or set trust.source: workload-api to take identities from SPIRE")
		}
		if t.WorkloadAPIAddr != "" {
			return errors.New("trust.workload_api_addr: only used with trust.source: workload-api; set that, or remove the address")
		}
		if t.SVIDTTL < time.Minute {
			return fmt.Errorf("trust.svid_ttl: %s is too short; use at least 1m", t.SVIDTTL)
		}
	case TrustWorkloadAPI:
		if t.CADir != "" || t.AutoInit {
			return errors.New("trust.ca_dir: not used with trust.source: workload-api (SPIRE issues the node's SVID); remove ca_dir and auto_init")
		}
		if err := checkWorkloadAPIAddr(t.WorkloadAPIAddr); err != nil {
			return err
		}
		if t.WorkloadAPITimeout <= 0 {
			return errors.New("trust.workload_api_timeout: must be a positive duration such as 30s")
		}
	default:
		return fmt.Errorf("trust.source: %q is not one of embedded, workload-api", t.Source)
	}
	return nil
}

// checkWorkloadAPIAddr checks an address as go-spiffe's workloadapi takes
// it: unix:///absolute/path or tcp://IP:PORT.
func checkWorkloadAPIAddr(addr string) error {
	const key = "trust.workload_api_addr"
	if addr == "" {
		return fmt.Errorf("%s: missing; set the SPIRE agent's socket such as unix:///run/spire/sockets/agent.sock", key)
	}
	u, err := url.Parse(addr)
	if err != nil {
		return fmt.Errorf("%s: %q is not a URL such as unix:///run/spire/sockets/agent.sock", key, addr)
	}
	switch u.Scheme {
	case "unix":
		if u.Opaque != "" || u.Host != "" || !strings.HasPrefix(u.Path, "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return fmt.Errorf("%s: %q is not unix:///absolute/path/to/agent.sock", key, addr)
		}
	case "tcp":
		host, _, err := net.SplitHostPort(u.Host)
		if err != nil || net.ParseIP(host) == nil || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return fmt.Errorf("%s: %q is not tcp://IP:PORT", key, addr)
		}
	default:
		return fmt.Errorf("%s: %q must start with unix:// (a socket path) or tcp:// (IP:PORT)", key, addr)
	}
	return nil
}

func (b *BootstrapConfig) validate(self, selfAddr string) error {
	switch {
	case b.Expect == 0 && len(b.Peers) == 0 && len(b.Join) == 0:
		return errors.New("bootstrap: missing; set bootstrap.expect with bootstrap.peers for a new cluster, or bootstrap.join to join one")
	case b.Expect != 0 && len(b.Join) != 0:
		return errors.New("bootstrap: set either bootstrap.expect (new cluster) or bootstrap.join (existing cluster), not both")
	case len(b.Join) != 0:
		if len(b.Peers) != 0 {
			return errors.New("bootstrap.peers: only used with bootstrap.expect; remove it when joining")
		}
		for i, a := range b.Join {
			if err := checkHostPort(fmt.Sprintf("bootstrap.join[%d]", i), a, true); err != nil {
				return err
			}
		}
		return nil
	}
	if b.Expect < 1 {
		return fmt.Errorf("bootstrap.expect: %d is not valid; use the number of voters, normally 3", b.Expect)
	}
	if len(b.Peers) != b.Expect {
		return fmt.Errorf("bootstrap.peers: lists %d servers but bootstrap.expect is %d; list every initial voter, this node included", len(b.Peers), b.Expect)
	}
	ids, addrs := map[string]bool{}, map[string]bool{}
	foundSelf := false
	for i, p := range b.Peers {
		key := fmt.Sprintf("bootstrap.peers[%d]", i)
		if !nodeIDPattern.MatchString(p.ID) {
			return fmt.Errorf("%s.id: %q is not a valid node id", key, p.ID)
		}
		if err := checkHostPort(key+".address", p.Address, true); err != nil {
			return err
		}
		if ids[p.ID] || addrs[p.Address] {
			return fmt.Errorf("%s: duplicate id %q or address %q", key, p.ID, p.Address)
		}
		ids[p.ID], addrs[p.Address] = true, true
		if p.ID == self {
			if p.Address != selfAddr {
				return fmt.Errorf("%s.address: %q differs from this node's Raft address %q", key, p.Address, selfAddr)
			}
			foundSelf = true
		}
	}
	if !foundSelf {
		return fmt.Errorf("bootstrap.peers: this node (%q) is not listed; every initial voter lists all of them, itself included", self)
	}
	return nil
}

func checkHostPort(key, addr string, dialable bool) error {
	if addr == "" {
		return fmt.Errorf("%s: missing; set a host:port such as 127.0.0.1:7101", key)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s: %q is not a host:port address (%v)", key, addr, unwrapAddrErr(err))
	}
	if port == "" || strings.TrimLeft(port, "0123456789") != "" {
		return fmt.Errorf("%s: %q has no numeric port", key, addr)
	}
	var n int
	fmt.Sscanf(port, "%d", &n)
	if n < 1 || n > 65535 {
		return fmt.Errorf("%s: port %s out of range 1-65535", key, port)
	}
	if dialable && (host == "" || isUnspecified(host)) {
		return fmt.Errorf("%s: %q is a wildcard address; give one other nodes can dial", key, addr)
	}
	return nil
}

func isUnspecified(host string) bool {
	if host == "" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsUnspecified()
}

func unwrapAddrErr(err error) string {
	var ae *net.AddrError
	if errors.As(err, &ae) {
		return ae.Err
	}
	return err.Error()
}

// EffectiveMethods are the accepted agent credentials: Methods, or the
// default when it is empty.
func (a AgentAuthConfig) EffectiveMethods() []string {
	if len(a.Methods) > 0 {
		return a.Methods
	}
	m := []string{"api-key", "x509-svid"}
	if a.OIDC.Issuer != "" {
		m = append(m, "oidc")
	}
	return m
}

// JWTSVIDAudience is the audience JWT-SVIDs must name: jwt_svid.audience,
// or spiffe://<trustDomain>/mcpmesh/gateway when it is empty.
func (a AgentAuthConfig) JWTSVIDAudience(trustDomain string) string {
	if a.JWTSVID.Audience != "" {
		return a.JWTSVID.Audience
	}
	return "spiffe://" + trustDomain + "/mcpmesh/gateway"
}

func (a AgentAuthConfig) validate() error {
	for i, m := range a.Methods {
		switch m {
		case "api-key", "x509-svid", "jwt-svid":
		case "oidc":
			if a.OIDC.Issuer == "" {
				return fmt.Errorf("mcp.auth.methods[%d]: oidc needs mcp.auth.oidc (issuer, jwks_url, audience)", i)
			}
		default:
			return fmt.Errorf("mcp.auth.methods[%d]: %q is not one of api-key, x509-svid, oidc, jwt-svid", i, m)
		}
	}
	if o := a.OIDC; o.Issuer != "" || o.JWKSURL != "" || o.Audience != "" {
		if o.Issuer == "" {
			return errors.New("mcp.auth.oidc.issuer: missing; the provider's issuer identifier, as in its tokens' iss")
		}
		if err := oidcURL("mcp.auth.oidc.jwks_url", o.JWKSURL); err != nil {
			return err
		}
		if err := oidcURL("mcp.auth.oidc.audience", o.Audience); err != nil {
			return err
		}
	}
	if aud := a.JWTSVID.Audience; aud != "" && (strings.ContainsFunc(aud, unicode.IsSpace) || !utf8.ValidString(aud)) {
		return fmt.Errorf("mcp.auth.jwt_svid.audience: %q has white space; use a name such as spiffe://hr.example.corp/mcpmesh/gateway", aud)
	}
	if !strings.HasPrefix(a.SVIDPathPrefix, "/") || len(a.SVIDPathPrefix) < 2 {
		return fmt.Errorf("mcp.auth.svid_path_prefix: %q must be a path such as /agent/", a.SVIDPathPrefix)
	}
	for i, t := range a.SVIDTenants {
		if !strings.HasPrefix(t.PathPrefix, a.SVIDPathPrefix) {
			return fmt.Errorf("mcp.auth.svid_tenants[%d].path_prefix: %q is not under svid_path_prefix %q", i, t.PathPrefix, a.SVIDPathPrefix)
		}
		if t.Tenant == "" {
			return fmt.Errorf("mcp.auth.svid_tenants[%d].tenant: missing", i)
		}
	}
	return nil
}

// oidcURL checks an absolute URL that must be https, except on loopback.
func oidcURL(key, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("%s: %q is not an absolute URL such as https://idp.corp.example/keys", key, raw)
	}
	if u.Scheme == "http" {
		if ip := net.ParseIP(u.Hostname()); u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return fmt.Errorf("%s: %q must be https (plain http only on loopback)", key, raw)
		}
	}
	return nil
}
