package e2e

import (
	"errors"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mcpmesh/mcpmesh/registry/api"
	"github.com/mcpmesh/mcpmesh/registry/card"
	"github.com/mcpmesh/mcpmesh/registry/state"
	"github.com/mcpmesh/mcpmesh/test/internal/testcluster"
)

// TestConfigErrors: `mcpmesh node` with a broken config exits 1 with one
// line naming the offending key, and starts nothing.
func TestConfigErrors(t *testing.T) {
	t.Parallel()
	c := testcluster.New(t, testcluster.Options{NoSync: true, Nodes: 1})
	n := c.Nodes[0]
	raw, err := os.ReadFile(n.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	good := string(raw)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	replace := func(old, new string) func(string) string {
		return func(s string) string {
			if !strings.Contains(s, old) {
				t.Fatalf("config has no %q to replace:\n%s", old, s)
			}
			return strings.Replace(s, old, new, 1)
		}
	}
	tests := []struct {
		name   string
		mutate func(string) string
		wants  []string
	}{
		{"unknown key", replace("raft:\n", "raft:\n  no_snyc: true\n"), []string{`unknown key "no_snyc"`, "line"}},
		{"unknown top-level key", func(s string) string { return "nodeid: n1\n" + s }, []string{`unknown key "nodeid"`}},
		{"missing node_id", replace("node_id: n1\n", ""), []string{"node_id", "missing"}},
		{"invalid node_id", replace("node_id: n1\n", "node_id: N_1\n"), []string{"node_id", "N_1"}},
		{"address without port", replace(`listen: "`+n.HTTPAddr+`"`, `listen: "127.0.0.1"`), []string{"http.listen", "127.0.0.1"}},
		{"port out of range", replace(`listen: "`+n.RaftAddr+`"`, `listen: "127.0.0.1:70000"`), []string{"raft.listen", "70000"}},
		{"trust domain as a URL", replace("trust_domain: hr.example.corp", "trust_domain: spiffe://hr.example.corp"), []string{"trust_domain"}},
		{"no bootstrap", func(s string) string { return s[:strings.Index(s, "bootstrap:")] }, []string{"bootstrap"}},
		{"expect without self in peers", replace("id: n1,", "id: n9,"), []string{"bootstrap.peers", "n1"}},
		{"duration without unit", replace("shutdown_timeout: 5s", "shutdown_timeout: 5"), []string{"line"}},
		{"missing CA", replace(c.CADir, c.CADir+"-missing"), []string{"trust.ca_dir", "trust init"}},
		{"CA of another trust domain", replace("trust_domain: hr.example.corp", "trust_domain: finance.example.corp"), []string{"trust.ca_dir", "hr.example.corp", "finance.example.corp"}},
		{"HTTP port in use", replace(`listen: "`+n.HTTPAddr+`"`, `listen: "`+busy.Addr().String()+`"`), []string{"http.listen", "address already in use"}},
		{"not YAML", func(string) string { return "node_id: [n1\n" }, []string{"YAML"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, t.TempDir(), "node.yaml", []byte(tt.mutate(good)))
			out, code := c.Run("node", "-config", path)
			line := wantFailure(t, "mcpmesh node with "+tt.name, out, code, 1, tt.wants...)
			t.Logf("%s", line)
			if !strings.HasPrefix(line, "mcpmesh node: ") {
				t.Errorf("message %q does not start with %q", line, "mcpmesh node: ")
			}
		})
	}
}

// TestRegistryErrors: refusals of bad cards, bad versions and bad
// lifecycle moves are one line that says what is wrong, with the right
// HTTP status on the API.
func TestRegistryErrors(t *testing.T) {
	t.Parallel()
	c := startCluster(t, testcluster.Options{NoSync: true, Nodes: 1})
	n := c.Nodes[0]
	cl := n.Client()
	ctx := t.Context()
	const name = "corp.hr/directory"
	good := testcluster.Card(name, "1.0.0")

	t.Run("invalid card", func(t *testing.T) {
		bad := strings.Replace(string(good), `"riskTier": "low"`, `"riskTier": "extreme"`, 1)
		bad = strings.Replace(bad, `"description": "Test server",`, "", 1)
		out, code := c.CLI(n, "registry", "submit", "-f", writeCard(t, []byte(bad)))
		wantFailure(t, "submit of an invalid card", out, code, 1, "_meta.io.mcpmesh/governance.riskTier", "extreme", "description")
		// The node checks too, whatever the client: 400 naming the fields.
		_, err := cl.Submit(ctx, []byte(bad))
		var ae *api.Error
		if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || !hasProblem(ae.Problems, "_meta.io.mcpmesh/governance.riskTier") || !hasProblem(ae.Problems, "description") {
			t.Errorf("POST of an invalid card: %#v; want 400 with problems naming riskTier and description", err)
		}
	})

	submit(t, c, n, name, "1.0.0")

	t.Run("version latest", func(t *testing.T) {
		out, code := c.CLI(n, "registry", "show", name+"@latest")
		wantFailure(t, "show @latest", out, code, 1, `"latest" is not a version`, "exact semantic version")
		_, err := cl.Version(ctx, name, "latest", false)
		var ae *api.Error
		if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest {
			t.Errorf("GET version latest: %v; want 400", err)
		}
	})

	t.Run("identical resubmission", func(t *testing.T) {
		out := mustCLI(t, c, n, "registry", "submit", "-f", writeCard(t, good))
		if !strings.Contains(out, "unchanged") {
			t.Errorf("identical resubmission said %q; want it to say unchanged", out)
		}
	})

	t.Run("different card, same version", func(t *testing.T) {
		changed := strings.Replace(string(good), "Looks a thing up.", "Looks a thing up, differently.", 1)
		out, code := c.CLI(n, "registry", "submit", "-f", writeCard(t, []byte(changed)))
		wantFailure(t, "resubmission with a different card", out, code, 1, "already submitted with a different card", "immutable")
		d, raw, ok := show(t, c, n, ref(name, "1.0.0"))
		if !ok || len(d.ToolVersions) != 1 || strings.Contains(raw, "differently") {
			t.Errorf("the refused resubmission changed the version: %s", raw)
		}
	})

	t.Run("submitted to deprecated", func(t *testing.T) {
		out, code := c.CLI(n, "registry", "deprecate", ref(name, "1.0.0"), "-sunset", "2031-01-31", "-replacement", "2.0.0")
		wantFailure(t, "deprecate a submitted version", out, code, 1, "submitted → deprecated", "may only become approved, rejected")
	})

	t.Run("deprecate needs an approved replacement", func(t *testing.T) {
		mustCLI(t, c, n, "registry", "approve", ref(name, "1.0.0"))
		out, code := c.CLI(n, "registry", "deprecate", ref(name, "1.0.0"), "-sunset", "2031-01-31", "-replacement", "2.0.0")
		wantFailure(t, "deprecate with an unknown replacement", out, code, 1, "replacement 2.0.0 must be an approved version")
		submit(t, c, n, name, "2.0.0")
		out, code = c.CLI(n, "registry", "deprecate", ref(name, "1.0.0"), "-sunset", "2031-01-31", "-replacement", "2.0.0")
		wantFailure(t, "deprecate with a submitted replacement", out, code, 1, "approve it first")
		out, code = c.CLI(n, "registry", "deprecate", ref(name, "1.0.0"), "-replacement", "2.0.0")
		wantFailure(t, "deprecate without -sunset", out, code, 2, "-sunset")

		mustCLI(t, c, n, "registry", "approve", ref(name, "2.0.0"))
		out = mustCLI(t, c, n, "registry", "deprecate", ref(name, "1.0.0"), "-sunset", "2031-01-31", "-replacement", "2.0.0", "-note", "use 2.0.0", "-o", "json")
		sv := decode[state.ServerVersion](t, "registry deprecate", out)
		if sv.State != card.StateDeprecated || sv.Deprecation == nil || sv.Deprecation.Replacement != "2.0.0" || sv.Deprecation.Note != "use 2.0.0" ||
			!sv.Deprecation.Sunset.Equal(time.Date(2031, 1, 31, 0, 0, 0, 0, time.UTC)) {
			t.Errorf("deprecate answered %+v (deprecation %+v); want deprecated, replacement 2.0.0, sunset 2031-01-31", sv.State, sv.Deprecation)
		}
	})

	t.Run("approve a retired version", func(t *testing.T) {
		mustCLI(t, c, n, "registry", "retire", ref(name, "1.0.0"))
		out, code := c.CLI(n, "registry", "approve", ref(name, "1.0.0"))
		wantFailure(t, "approve a retired version", out, code, 1, "retired → approved", "retired is final", "submit a new version")
		_, err := cl.Transition(ctx, name, "1.0.0", "approve", api.TransitionRequest{})
		var ae *api.Error
		if !errors.As(err, &ae) || ae.Status != http.StatusConflict {
			t.Errorf("POST approve of a retired version: %v; want 409", err)
		}
		// From approved, the message lists where a version may go.
		_, err = cl.Transition(ctx, name, "2.0.0", "reject", api.TransitionRequest{Reason: "too late"})
		if !errors.As(err, &ae) || ae.Status != http.StatusConflict || !strings.Contains(ae.Message, "from approved a version may only become deprecated, retired, quarantined") {
			t.Errorf("POST reject of an approved version: %v; want 409 naming the allowed transitions", err)
		}
	})

	t.Run("unknown version", func(t *testing.T) {
		out, code := c.CLI(n, "registry", "approve", ref(name, "9.9.9"))
		wantFailure(t, "approve an unknown version", out, code, 1, name+"@9.9.9 is not registered")
	})
}

// TestHelp: every command and subcommand answers -h with its usage and
// exit 0.
func TestHelp(t *testing.T) {
	t.Parallel()
	c := testcluster.New(t, testcluster.Options{Nodes: 1})
	for _, cmd := range [][]string{
		{}, {"node"}, {"trust"}, {"trust", "init"}, {"trust", "issue"},
		{"registry"}, {"registry", "submit"}, {"registry", "list"}, {"registry", "show"},
		{"registry", "approve"}, {"registry", "reject"}, {"registry", "deprecate"},
		{"registry", "retire"}, {"registry", "quarantine"},
		{"tenant"}, {"tenant", "add"}, {"tenant", "list"}, {"members"},
		{"apikey"}, {"apikey", "create"}, {"apikey", "list"}, {"apikey", "revoke"},
		{"profile"}, {"profile", "set"}, {"profile", "show"}, {"profile", "list"}, {"profile", "delete"},
		{"kill"}, {"revive"}, {"call"}, {"apply"}, {"dev"},
		{"audit"}, {"audit", "verify"}, {"audit", "query"}, {"audit", "export"},
		{"operator"}, {"operator", "snapshot"}, {"operator", "snapshot", "save"},
		{"operator", "snapshot", "restore"}, {"operator", "join"}, {"operator", "remove"},
	} {
		args := append(cmd, "-h")
		out, code := c.Run(args...)
		if code != 0 || !strings.Contains(out, "Usage") {
			t.Errorf("mcpmesh %s: exit %d, want 0 with a usage text; output:\n%s", strings.Join(args, " "), code, out)
		}
	}
	if out, code := c.Run("version"); code != 0 || !strings.HasPrefix(out, "mcpmesh ") {
		t.Errorf("mcpmesh version: exit %d: %s", code, out)
	}
	out, code := c.Run("registry", "frobnicate")
	wantFailure(t, "unknown subcommand", out, code, 2, `unknown subcommand "frobnicate"`)
}

// hasProblem reports whether ps names field.
func hasProblem(ps []card.Problem, field string) bool {
	for _, p := range ps {
		if p.Field == field {
			return true
		}
	}
	return false
}
