package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpmesh/mcpmesh/registry/api"
	"github.com/mcpmesh/mcpmesh/registry/state"
	"github.com/mcpmesh/mcpmesh/test/internal/testcluster"
)

// Operator steps shared by the tests: each runs the real CLI against one
// node, as a person at a terminal would.

// Bounds of the waits. Elections take about a second with the default
// timeouts; the bounds leave room for a loaded 2-core machine.
const (
	readyTimeout  = 30 * time.Second
	leaderTimeout = 15 * time.Second
	catchUp       = 15 * time.Second
	stopTimeout   = 20 * time.Second
)

// startCluster creates and starts a cluster and waits for an agreed leader
// and for every node to be ready (with a token signing key). Its nodes use
// stable ports (testcluster.StablePort), so the tests can kill and
// restart them.
func startCluster(t *testing.T, opts testcluster.Options) *testcluster.Cluster {
	t.Helper()
	c := testcluster.New(t, opts)
	c.Start()
	c.Leader(leaderTimeout)
	c.WaitAllReady(leaderTimeout)
	return c
}

// permitAll is a catalog directory whose only file is a policy that
// permits every request, for tests of other features: a node denies
// everything until a policy permits it. Apply it with `mcpmesh apply -f`.
func permitAll(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, dir, "permit-all.cedar", []byte("permit (principal, action, resource);\n"))
	return dir
}

// mustCLI runs a client command against n and fails the test unless it
// exits 0.
func mustCLI(t *testing.T, c *testcluster.Cluster, n *testcluster.Node, args ...string) string {
	t.Helper()
	out, code := c.CLI(n, args...)
	if code != 0 {
		t.Fatalf("on %s: mcpmesh %s: exit %d: %s", n.ID, strings.Join(args, " "), code, out)
	}
	return out
}

// decode parses the -o json output of a command.
func decode[T any](t *testing.T, what, out string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("%s: output is not the expected JSON (%v):\n%s", what, err, out)
	}
	return v
}

// writeCard writes a server card to a file of its own and returns the path.
func writeCard(t *testing.T, card []byte) string {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "card-*.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(card); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

// submit submits testcluster.Card(name, version) through n and returns the
// answer.
func submit(t *testing.T, c *testcluster.Cluster, n *testcluster.Node, name, version string) api.SubmitResponse {
	t.Helper()
	out := mustCLI(t, c, n, "registry", "submit", "-f", writeCard(t, testcluster.Card(name, version)), "-o", "json")
	res := decode[api.SubmitResponse](t, "registry submit", out)
	if res.Server != name || res.Version != version {
		t.Fatalf("registry submit %s@%s on %s answered %s@%s", name, version, n.ID, res.Server, res.Version)
	}
	return res
}

// show runs `registry show REF -o json` on n; ok is false (with the output)
// when the command fails.
func show(t *testing.T, c *testcluster.Cluster, n *testcluster.Node, ref string, extra ...string) (api.VersionDetail, string, bool) {
	t.Helper()
	out, code := c.CLI(n, append([]string{"registry", "show", ref, "-o", "json"}, extra...)...)
	if code != 0 {
		return api.VersionDetail{}, out, false
	}
	return decode[api.VersionDetail](t, "registry show "+ref, out), out, true
}

// eventuallyShow polls `registry show REF -o json` (a local read) on n until
// cond holds and returns what it saw; it fails the test with the last
// answer when the bound passes.
func eventuallyShow(t *testing.T, c *testcluster.Cluster, n *testcluster.Node, ref string, cond func(api.VersionDetail) bool) api.VersionDetail {
	t.Helper()
	var got api.VersionDetail
	var last string
	ok := testcluster.Eventually(catchUp, func() bool {
		d, out, ok := show(t, c, n, ref)
		got, last = d, out
		return ok && cond(d)
	})
	if !ok {
		t.Fatalf("on %s: registry show %s did not reach the expected state within %s; last answer:\n%s", n.ID, ref, catchUp, last)
	}
	return got
}

// members runs `members -o json` on n.
func members(t *testing.T, c *testcluster.Cluster, n *testcluster.Node) (api.MembersResponse, string, bool) {
	t.Helper()
	out, code := c.CLI(n, "members", "-o", "json")
	if code != 0 {
		return api.MembersResponse{}, out, false
	}
	return decode[api.MembersResponse](t, "members", out), out, true
}

// describeMembers is a compact view of a member list for assertions and
// failure messages: "n1:Voter:Leader n2:Voter:Follower ...".
func describeMembers(m api.MembersResponse) string {
	parts := make([]string, len(m.Members))
	for i, s := range m.Members {
		parts[i] = s.ID + ":" + s.Suffrage + ":" + s.Role
	}
	return strings.Join(parts, " ")
}

// healthyVoters reports whether m lists exactly the given ids, every one a
// reachable voter, with exactly one leader.
func healthyVoters(m api.MembersResponse, ids ...string) bool {
	if len(m.Members) != len(ids) {
		return false
	}
	leaders := 0
	for _, s := range m.Members {
		found := false
		for _, id := range ids {
			found = found || id == s.ID
		}
		if !found || s.Suffrage != "Voter" {
			return false
		}
		switch s.Role {
		case "Leader":
			leaders++
		case "Follower":
		default:
			return false
		}
	}
	return leaders == 1
}

// eventuallyMembers polls `members -o json` on n until cond holds.
func eventuallyMembers(t *testing.T, c *testcluster.Cluster, n *testcluster.Node, what string, cond func(api.MembersResponse) bool) api.MembersResponse {
	t.Helper()
	var got api.MembersResponse
	var last string
	ok := testcluster.Eventually(catchUp, func() bool {
		m, out, ok := members(t, c, n)
		got, last = m, out
		if ok {
			last = describeMembers(m)
		}
		return ok && cond(m)
	})
	if !ok {
		t.Fatalf("on %s: members never showed %s within %s; last seen: %s", n.ID, what, catchUp, last)
	}
	return got
}

// tenants runs `tenant list -o json` on n.
func tenants(t *testing.T, c *testcluster.Cluster, n *testcluster.Node, extra ...string) []state.Tenant {
	t.Helper()
	out := mustCLI(t, c, n, append([]string{"tenant", "list", "-o", "json"}, extra...)...)
	return decode[[]state.Tenant](t, "tenant list", out)
}

// oneLine returns out trimmed, failing the test unless it is exactly one
// line of text.
func oneLine(t *testing.T, what, out string) string {
	t.Helper()
	s := strings.TrimSpace(out)
	if s == "" || strings.Contains(s, "\n") {
		t.Errorf("%s: want one line of output, got %d lines:\n%s", what, strings.Count(s, "\n")+1, out)
	}
	return s
}

// wantFailure checks a command failed with the given exit code and one
// line containing every want (case-insensitive), and returns the line.
func wantFailure(t *testing.T, what, out string, code, wantCode int, wants ...string) string {
	t.Helper()
	if code != wantCode {
		t.Errorf("%s: exit %d, want %d; output:\n%s", what, code, wantCode, out)
	}
	line := oneLine(t, what, out)
	for _, w := range wants {
		if !strings.Contains(strings.ToLower(line), strings.ToLower(w)) {
			t.Errorf("%s: message %q does not mention %q", what, line, w)
		}
	}
	return line
}

// writeFile writes data to name under dir and returns the path.
func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// ref formats NAME@VERSION.
func ref(name, version string) string { return fmt.Sprintf("%s@%s", name, version) }

// get fetches url, with a bearer token unless token is empty, and returns
// the status code and body.
func get(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	cl := http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err.Error()
	}
	return resp.StatusCode, string(body)
}
