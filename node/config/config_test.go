package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const validYAML = `
node_id: n1
namespace: hr
trust_domain: hr.example.corp
data_dir: /var/lib/mcpmesh
http:
  listen: 127.0.0.1:7101
raft:
  listen: 127.0.0.1:7201
  heartbeat_timeout: 1s
  election_timeout: 1s
bootstrap:
  expect: 3
  peers:
    - { id: n1, address: 127.0.0.1:7201 }
    - { id: n2, address: 127.0.0.1:7202 }
    - { id: n3, address: 127.0.0.1:7203 }
trust:
  ca_dir: /etc/mcpmesh/ca
admin:
  token_file: /etc/mcpmesh/admin.token
`

func TestParseValid(t *testing.T) {
	cfg, err := Parse(strings.NewReader(validYAML))
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultConfig()
	want.NodeID, want.Namespace, want.TrustDomain, want.DataDir = "n1", "hr", "hr.example.corp", "/var/lib/mcpmesh"
	want.HTTP.Listen = "127.0.0.1:7101"
	want.Raft.Listen = "127.0.0.1:7201"
	want.Raft.HeartbeatTimeout, want.Raft.ElectionTimeout = time.Second, time.Second
	want.Bootstrap = BootstrapConfig{Expect: 3, Peers: []Peer{{"n1", "127.0.0.1:7201"}, {"n2", "127.0.0.1:7202"}, {"n3", "127.0.0.1:7203"}}}
	want.Trust.CADir = "/etc/mcpmesh/ca"
	want.Admin.TokenFile = "/etc/mcpmesh/admin.token"
	if diff := cmp.Diff(want, cfg); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
	if cfg.RaftAdvertise() != "127.0.0.1:7201" {
		t.Errorf("RaftAdvertise = %s", cfg.RaftAdvertise())
	}
}

func TestParseErrorsNameTheKey(t *testing.T) {
	cases := []struct {
		name, from, to, want string
	}{
		{"unknown top-level key", "node_id: n1", "node_id: n1\nnode_name: x", `unknown key "node_name"`},
		{"unknown nested key", "  listen: 127.0.0.1:7101", "  listen: 127.0.0.1:7101\n  tls_cert: x", `unknown key "tls_cert"`},
		{"missing node_id", "node_id: n1", "", "node_id: missing"},
		{"bad node_id", "node_id: n1", "node_id: N_1", "node_id:"},
		{"missing namespace", "namespace: hr", "", "namespace: missing"},
		{"trust domain with scheme", "trust_domain: hr.example.corp", "trust_domain: spiffe://hr.example.corp", "trust_domain:"},
		{"missing data_dir", "data_dir: /var/lib/mcpmesh", "", "data_dir: missing"},
		{"bad http address", "listen: 127.0.0.1:7101", "listen: localhost", "http.listen:"},
		{"port out of range", "listen: 127.0.0.1:7101", "listen: 127.0.0.1:99999", "http.listen: port 99999"},
		{"bad raft address", "listen: 127.0.0.1:7201\n  heartbeat", "listen: :x\n  heartbeat", "raft.listen:"},
		{"wildcard raft without advertise", "listen: 127.0.0.1:7201\n  heartbeat", "listen: 0.0.0.0:7201\n  heartbeat", "raft.advertise: missing"},
		{"bad duration", "heartbeat_timeout: 1s", "heartbeat_timeout: soon", "heartbeat_timeout"},
		{"tiny timeout", "heartbeat_timeout: 1s", "heartbeat_timeout: 1ms", "raft.heartbeat_timeout: 1ms is too short"},
		{"expect mismatch", "expect: 3", "expect: 5", "bootstrap.peers: lists 3 servers but bootstrap.expect is 5"},
		{"self not listed", "{ id: n1, address: 127.0.0.1:7201 }", "{ id: n9, address: 127.0.0.1:7209 }", "this node (\"n1\") is not listed"},
		{"self address differs", "{ id: n1, address: 127.0.0.1:7201 }", "{ id: n1, address: 127.0.0.1:7299 }", "bootstrap.peers[0].address"},
		{"duplicate peer", "{ id: n3, address: 127.0.0.1:7203 }", "{ id: n2, address: 127.0.0.1:7203 }", "bootstrap.peers[2]: duplicate"},
		{"missing ca_dir", "ca_dir: /etc/mcpmesh/ca", "ca_dir: \"\"", "trust.ca_dir: missing"},
		{"bad log level", "admin:", "log:\n  level: loud\nadmin:", `log.level: "loud"`},
		{"not YAML", "node_id: n1", "node_id: [n1", "invalid YAML"},
		{"unknown trust source", "  ca_dir: /etc/mcpmesh/ca", "  ca_dir: /etc/mcpmesh/ca\n  source: vault", `trust.source: "vault" is not one of embedded, workload-api`},
		{"workload-api without address", "trust:\n  ca_dir: /etc/mcpmesh/ca", "trust:\n  source: workload-api", "trust.workload_api_addr: missing"},
		{"workload-api with ca_dir", "trust:\n", "trust:\n  source: workload-api\n  workload_api_addr: unix:///run/spire/sockets/agent.sock\n", "trust.ca_dir: not used with trust.source: workload-api"},
		{"workload-api relative socket", "trust:\n  ca_dir: /etc/mcpmesh/ca", "trust:\n  source: workload-api\n  workload_api_addr: unix://agent.sock", "trust.workload_api_addr:"},
		{"workload-api http address", "trust:\n  ca_dir: /etc/mcpmesh/ca", "trust:\n  source: workload-api\n  workload_api_addr: http://127.0.0.1:8081", "must start with unix:// (a socket path) or tcp://"},
		{"workload-api tcp hostname", "trust:\n  ca_dir: /etc/mcpmesh/ca", "trust:\n  source: workload-api\n  workload_api_addr: tcp://spire:8081", "is not tcp://IP:PORT"},
		{"embedded with workload address", "  ca_dir: /etc/mcpmesh/ca", "  ca_dir: /etc/mcpmesh/ca\n  workload_api_addr: unix:///run/spire/sockets/agent.sock", "trust.workload_api_addr: only used with trust.source: workload-api"},
		{"unknown auth method", "admin:", "mcp:\n  auth:\n    methods: [kerberos]\nadmin:", `mcp.auth.methods[0]: "kerberos" is not one of api-key, x509-svid, oidc, jwt-svid`},
		{"jwt-svid audience with a space", "admin:", "mcp:\n  auth:\n    methods: [jwt-svid]\n    jwt_svid: { audience: \"my gateway\" }\nadmin:", "mcp.auth.jwt_svid.audience:"},
		{"oidc method without provider", "admin:", "mcp:\n  auth:\n    methods: [oidc]\nadmin:", "mcp.auth.methods[0]: oidc needs mcp.auth.oidc"},
		{"oidc without issuer", "admin:", "mcp:\n  auth:\n    oidc: { jwks_url: https://idp.example/keys, audience: https://mcp.example/mcp }\nadmin:", "mcp.auth.oidc.issuer: missing"},
		{"oidc jwks over http", "admin:", "mcp:\n  auth:\n    oidc: { issuer: https://idp.example, jwks_url: http://idp.example/keys, audience: https://mcp.example/mcp }\nadmin:", "mcp.auth.oidc.jwks_url: \"http://idp.example/keys\" must be https"},
		{"oidc relative audience", "admin:", "mcp:\n  auth:\n    oidc: { issuer: https://idp.example, jwks_url: https://idp.example/keys, audience: /mcp }\nadmin:", "mcp.auth.oidc.audience:"},
		{"token ttl too long", "admin:", "upstream_tokens:\n  ttl: 2h\nadmin:", "upstream_tokens.ttl: 2h0m0s is out of range"},
		{"rotation too fast", "admin:", "upstream_tokens:\n  rotate_every: 10ms\nadmin:", "upstream_tokens.rotate_every: 10ms is too short"},
		{"publish ahead of the rotation", "admin:", "upstream_tokens:\n  rotate_every: 1h\n  publish_ahead: 1h\nadmin:", "upstream_tokens.publish_ahead: 1h0m0s must be at least 0 and below rotate_every"},
		{"unknown token key", "admin:", "upstream_tokens:\n  rotate: 1h\nadmin:", `unknown key "rotate"`},
		{"audit raw arguments not a tool", "admin:", "audit:\n  raw_arguments: [transfer_funds]\nadmin:", `audit.raw_arguments[0]: "transfer_funds" is not <server>/<tool>`},
		{"audit retention too short", "admin:", "audit:\n  retention: 10m\nadmin:", "audit.retention: 10m0s is too short"},
		{"audit checkpoint interval too short", "admin:", "audit:\n  checkpoint_interval: 1ms\nadmin:", "audit.checkpoint_interval: 1ms is too short"},
		{"audit key missing with workload-api", "trust:\n  ca_dir: /etc/mcpmesh/ca", "trust:\n  source: workload-api\n  workload_api_addr: unix:///run/spire/sockets/agent.sock", "audit.arguments_key_file: missing"},
		{"unknown audit key", "admin:", "audit:\n  enabled: false\nadmin:", `unknown key "enabled"`},
		{"approval max held negative", "admin:", "governance:\n  approval_max_held: -1\nadmin:", "governance.approval_max_held: -1"},
		{"admin oidc without provider", "admin:\n", "admin:\n  oidc: { audience: https://mcp.example/v1, subjects: [alice] }\n", "admin.oidc: needs the BU's provider in mcp.auth.oidc"},
		{"admin oidc without audience", "admin:\n", "mcp:\n  auth:\n    oidc: { issuer: https://idp.example, jwks_url: https://idp.example/keys, audience: https://mcp.example/mcp }\nadmin:\n  oidc: { groups: [ops] }\n", "admin.oidc.audience: missing"},
		{"admin oidc with the agents' audience", "admin:\n", "mcp:\n  auth:\n    oidc: { issuer: https://idp.example, jwks_url: https://idp.example/keys, audience: https://mcp.example/mcp }\nadmin:\n  oidc: { audience: https://mcp.example/mcp, groups: [ops] }\n", "is mcp.auth.oidc.audience too"},
		{"svid tenant outside prefix", "admin:", "mcp:\n  auth:\n    svid_tenants: [{ path_prefix: /robots/, tenant: payroll }]\nadmin:", "mcp.auth.svid_tenants[0].path_prefix"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(validYAML, tc.from) {
				t.Fatalf("test bug: %q not in the valid config", tc.from)
			}
			_, err := Parse(strings.NewReader(strings.Replace(validYAML, tc.from, tc.to, 1)))
			if err == nil {
				t.Fatalf("no error; want one containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

// TestPublishAhead: 10m by default, a quarter of a shorter rotate_every,
// and what the file says, 0 included.
func TestPublishAhead(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want time.Duration
	}{
		{"", 10 * time.Minute},
		{"upstream_tokens:\n  rotate_every: 8s\n", 2 * time.Second},
		{"upstream_tokens:\n  publish_ahead: 0s\n", 0},
		{"upstream_tokens:\n  publish_ahead: 90s\n", 90 * time.Second},
	} {
		cfg, err := Parse(strings.NewReader(validYAML + tc.yaml))
		if err != nil {
			t.Fatalf("%q: %v", tc.yaml, err)
		}
		if got := cfg.UpstreamTokens.EffectivePublishAhead(); got != tc.want {
			t.Errorf("%q: publish ahead %s, want %s", tc.yaml, got, tc.want)
		}
	}
}

func TestAudit(t *testing.T) {
	cfg, err := Parse(strings.NewReader(strings.Replace(validYAML, "admin:", `audit:
  raw_arguments: [corp.finance/ledger/transfer_funds]
  retention: 2160h
  checkpoint_interval: 1m
admin:`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	want := AuditConfig{RawArguments: []string{"corp.finance/ledger/transfer_funds"}, Retention: 2160 * time.Hour, CheckpointInterval: time.Minute}
	if diff := cmp.Diff(want, cfg.Audit); diff != "" {
		t.Errorf("audit (-want +got):\n%s", diff)
	}
	if d := DefaultConfig().Audit; d.Retention != 0 || d.CheckpointInterval != 30*time.Second {
		t.Errorf("audit defaults = %+v; want records kept forever, checkpoints every 30s", d)
	}
}

func TestBootstrapJoin(t *testing.T) {
	join := strings.Replace(validYAML, `  expect: 3
  peers:
    - { id: n1, address: 127.0.0.1:7201 }
    - { id: n2, address: 127.0.0.1:7202 }
    - { id: n3, address: 127.0.0.1:7203 }`, "  join: [127.0.0.1:7202]", 1)
	cfg, err := Parse(strings.NewReader(join))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"127.0.0.1:7202"}, cfg.Bootstrap.Join); diff != "" {
		t.Error(diff)
	}
	both := strings.Replace(validYAML, "  expect: 3", "  join: [127.0.0.1:7202]\n  expect: 3", 1)
	if _, err := Parse(strings.NewReader(both)); err == nil || !strings.Contains(err.Error(), "not both") {
		t.Errorf("expect and join together: err = %v", err)
	}
	none := strings.Replace(join, "  join: [127.0.0.1:7202]", "", 1)
	if _, err := Parse(strings.NewReader(none)); err == nil || !strings.Contains(err.Error(), "bootstrap: missing") {
		t.Errorf("no bootstrap: err = %v", err)
	}
}

func TestLoadNamesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "node.yaml")
	os.WriteFile(path, []byte("bogus: 1\n"), 0o600)
	_, err := Load(path)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), `unknown key "bogus"`) {
		t.Errorf("Load error = %v", err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Error("missing file: no error")
	}
}

// The example configs in the repository must stay valid.
func TestExampleConfigsAreValid(t *testing.T) {
	paths, _ := filepath.Glob("../../examples/cluster/node*.yaml")
	if len(paths) != 3 {
		t.Fatalf("found %d example node configs, want 3", len(paths))
	}
	for _, p := range paths {
		if _, err := Load(p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(validYAML))
	f.Add([]byte("node_id: n1\nhttp: {listen: ':1'}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(strings.NewReader(string(data)))
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("multi-line error: %q", err)
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Errorf("Parse accepted a config that fails Validate: %v", err)
		}
	})
}

func TestJWTSVIDAudience(t *testing.T) {
	cfg, err := Parse(strings.NewReader(validYAML + "mcp:\n  auth:\n    methods: [api-key, jwt-svid]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.MCP.Auth.JWTSVIDAudience(cfg.TrustDomain); got != "spiffe://hr.example.corp/mcpmesh/gateway" {
		t.Errorf("default audience = %q", got)
	}
	cfg, err = Parse(strings.NewReader(validYAML + "mcp:\n  auth:\n    methods: [jwt-svid]\n    jwt_svid: { audience: https://hr-mcp.corp.example/mcp }\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.MCP.Auth.JWTSVIDAudience(cfg.TrustDomain); got != "https://hr-mcp.corp.example/mcp" {
		t.Errorf("configured audience = %q", got)
	}
}

func TestTrustWorkloadAPI(t *testing.T) {
	for _, addr := range []string{"unix:///run/spire/sockets/agent.sock", "tcp://127.0.0.1:8081"} {
		cfg, err := Parse(strings.NewReader(strings.Replace(validYAML, "trust:\n  ca_dir: /etc/mcpmesh/ca", "audit:\n  arguments_key_file: /etc/mcpmesh/audit.key\ntrust:\n  source: workload-api\n  workload_api_addr: "+addr, 1)))
		if err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
		if cfg.Trust.Source != TrustWorkloadAPI || cfg.Trust.WorkloadAPIAddr != addr || cfg.Trust.WorkloadAPITimeout != 30*time.Second {
			t.Errorf("trust = %+v", cfg.Trust)
		}
	}
}

func TestAPIURL(t *testing.T) {
	for _, tc := range []struct {
		name            string
		advertise, raft string
		tls             bool
		bound, want     string
	}{
		{"bound address", "", "", false, "127.0.0.1:7101", "http://127.0.0.1:7101"},
		{"https", "", "", true, "127.0.0.1:7101", "https://127.0.0.1:7101"},
		{"wildcard takes raft's host", "", "hr-0.hr.svc:7201", false, "[::]:7101", "http://hr-0.hr.svc:7101"},
		{"advertise wins", "api.hr-0.corp:443", "hr-0.hr.svc:7201", true, "0.0.0.0:7101", "https://api.hr-0.corp:443"},
	} {
		cfg, err := Parse(strings.NewReader(validYAML))
		if err != nil {
			t.Fatal(err)
		}
		cfg.HTTP.Advertise, cfg.HTTP.TLS = tc.advertise, tc.tls
		if tc.raft != "" {
			cfg.Raft.Advertise = tc.raft
		}
		if got := cfg.APIURL(tc.bound); got != tc.want {
			t.Errorf("%s: APIURL(%s) = %s, want %s", tc.name, tc.bound, got, tc.want)
		}
	}
	cfg, err := Parse(strings.NewReader(strings.Replace(validYAML, "  listen: 127.0.0.1:7101", "  listen: 127.0.0.1:7101\n  advertise: 0.0.0.0:7101", 1)))
	if err == nil || !strings.Contains(err.Error(), "http.advertise") {
		t.Errorf("wildcard http.advertise: %v, %+v", err, cfg.HTTP)
	}
}
