package conformance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"gopkg.in/yaml.v3"

	"github.com/mcpmesh/mcpmesh/test/internal/testcluster"
)

// Bounds of the waits for the fixture and the node.
const (
	fixtureStart  = 15 * time.Second
	leaderTimeout = 15 * time.Second
	servedTimeout = 30 * time.Second
)

// namespace is the test node's; the gateway serves each fixture at
// /mcp/s/<namespace>/<server name>.
const namespace = "conformance"

// leg is one requirement set, run against the fixture in the transport
// mode the go-sdk's own conformance CI uses for it.
type leg struct {
	requirements string
	stateless    bool
	server       string // the fixture's server card name in the registry
}

var legs = []leg{
	{requirements: "2026-07-28", stateless: true, server: "conformance.test/everything-stateless"},
	{requirements: "2025-11-25", stateless: false, server: "conformance.test/everything-stateful"},
}

// TestConformance runs the official MCP conformance suite's server
// scenarios of each requirement set directly against the go-sdk fixture and
// through the gateway to another instance of it, and fails for every scored
// scenario that passes directly but not through the gateway.
func TestConformance(t *testing.T) {
	baseline := loadBaseline(t)
	resultsRoot := os.Getenv("MCPMESH_CONFORMANCE_RESULTS")
	if resultsRoot == "" {
		resultsRoot = t.TempDir()
	}
	s := newSuite(t)
	fixture := buildFixture(t)

	start := time.Now()
	c := testcluster.New(t, testcluster.Options{Nodes: 1, NoSync: true, Namespace: namespace,
		ExtraYAML: "mcp:\n  anonymous_routes: [\"/mcp\", \"/mcp/s/*\"]\n"})
	c.Start()
	n := c.Leader(leaderTimeout)
	// The conformance routes are anonymous, and policy still applies: this
	// one lets the anonymous agent do everything in this namespace.
	policies := filepath.Join(t.TempDir(), "conformance.cedar")
	if err := os.WriteFile(policies, []byte(`@id("conformance-anonymous")
permit (principal == Agent::"anonymous", action, resource in Namespace::"`+namespace+`");
`), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, code := c.CLI(n, "apply", "-f", filepath.Dir(policies)); code != 0 {
		t.Fatalf("apply the conformance policy: exit %d: %s", code, out)
	}
	// Each gateway leg gets a fixture of its own, registered before any
	// scenario runs: scenarios change a fixture (list_changed triggers add
	// tools and prompts), so the card holds its tools as they start.
	served := map[string][]string{} // requirement set → the tool names its upstream lists
	for _, l := range legs {
		url := startFixture(t, fixture, l.stateless, "upstream-"+l.requirements)
		tools := liveTools(t, url)
		register(t, c, n, l.server, url, tools)
		served[l.requirements] = toolNames(t, tools)
	}
	for _, l := range legs {
		waitServed(t, gatewayURL(n, l.server), served[l.requirements])
	}
	t.Logf("node %s serves both fixtures in %s", n.ID, time.Since(start).Round(time.Millisecond))

	for _, l := range legs {
		t.Run(l.requirements, func(t *testing.T) {
			dirs := map[string]string{}
			for _, which := range []string{"direct", "gateway"} {
				dirs[which] = filepath.Join(resultsRoot, l.requirements, which)
				if err := os.RemoveAll(dirs[which]); err != nil {
					t.Fatal(err)
				}
				if err := os.MkdirAll(dirs[which], 0o755); err != nil {
					t.Fatal(err)
				}
			}
			direct := s.run(t, l.requirements, startFixture(t, fixture, l.stateless, "direct-"+l.requirements), dirs["direct"])
			gateway := s.run(t, l.requirements, gatewayURL(n, l.server), dirs["gateway"])
			rep := compare(l.requirements, direct, gateway, baseline[l.requirements])
			text := rep.String()
			if err := os.WriteFile(filepath.Join(resultsRoot, l.requirements, "report.txt"), []byte(text), 0o644); err != nil {
				t.Errorf("write report: %v", err)
			}
			t.Logf("results in %s\n%s", filepath.Join(resultsRoot, l.requirements), text)
			for _, p := range rep.problems {
				t.Error(p)
			}
		})
	}
}

// report is the comparison of one requirement set's two runs.
type report struct {
	requirements    string
	direct, gateway *result
	scored          []string
	lines           []string // one per scenario
	notScored       []string
	problems        []string // what fails the test
	passDirect      int
	passGateway     int
	gatewayFailures int
}

// compare judges every scenario of the direct run against the gateway run
// and the baseline.
func compare(requirements string, direct, gateway *result, baseline []string) *report {
	rep := &report{requirements: requirements, direct: direct, gateway: gateway, scored: direct.scored()}
	if !slices.Equal(rep.scored, gateway.scored()) {
		rep.problems = append(rep.problems, fmt.Sprintf("the two runs scored different scenarios:\n  direct:  %v\n  gateway: %v", rep.scored, gateway.scored()))
	}
	for _, b := range baseline {
		if d := direct.Scenarios[b]; d == nil || d.NotScored != "" || d.OK {
			rep.problems = append(rep.problems, fmt.Sprintf("baseline.yml lists %s under %s, but the fixture does not fail it as a scored scenario when run directly: a baseline may only excuse the fixture's own failures; remove the entry", b, requirements))
		}
	}
	var gatewayFailures []string
	for _, name := range rep.scored {
		d, g := direct.Scenarios[name], gateway.Scenarios[name]
		gOK := g != nil && g.OK
		if d.OK {
			rep.passDirect++
		}
		if gOK {
			rep.passGateway++
		}
		switch {
		case d.OK && gOK:
			line := "  pass          " + name
			if notes := hollow(d, g); len(notes) > 0 {
				line += " — but through the gateway: " + strings.Join(notes, "; ")
			}
			rep.lines = append(rep.lines, line)
		case d.OK:
			rep.gatewayFailures++
			line := fmt.Sprintf("  GATEWAY FAIL  %s — %s", name, g.describe())
			rep.lines = append(rep.lines, line)
			gatewayFailures = append(gatewayFailures, line)
		case slices.Contains(baseline, name):
			rep.lines = append(rep.lines, fmt.Sprintf("  fixture fails %s (baselined) — %s", name, d.describe()))
		default:
			line := fmt.Sprintf("  FIXTURE FAIL  %s — %s", name, d.describe())
			rep.lines = append(rep.lines, line)
			rep.problems = append(rep.problems, fmt.Sprintf("the fixture fails scored scenario %s of %s when run directly, and baseline.yml does not list it: the suite or the fixture changed; if the go-sdk's baseline knows the failure, add it to baseline.yml\n%s", name, requirements, line))
		}
	}
	for _, name := range direct.Order {
		d := direct.Scenarios[name]
		if d.NotScored == "" {
			continue
		}
		rep.notScored = append(rep.notScored, fmt.Sprintf("  %-40s %-20s direct %s, gateway %s", name, "("+d.NotScored+")", mark(d), mark(gateway.Scenarios[name])))
	}
	if len(gatewayFailures) > 0 {
		rep.problems = append(rep.problems, fmt.Sprintf("%d of %d scored scenarios of %s pass against the fixture directly but fail through the gateway:\n%s",
			len(gatewayFailures), len(rep.scored), requirements, strings.Join(gatewayFailures, "\n")))
	}
	return rep
}

// hollow lists what makes a gateway pass weaker than the direct one: a
// check that succeeds directly but is skipped or only warned about through
// the gateway, or a count (tools, resources, prompts listed) that is
// smaller. The suite scores such a scenario as passed, and so does the
// test; the report shows it so that nobody reads it as proxied.
func hollow(direct, gateway *scenario) []string {
	var notes []string
	seen := map[string]bool{}
	for _, c := range gateway.Checks {
		if seen[c.ID] {
			continue
		}
		seen[c.ID] = true
		if st := gateway.status(c.ID); (st == "SKIPPED" || st == "WARNING") && direct.status(c.ID) == "SUCCESS" {
			msg := strings.Join(strings.Fields(c.ErrorMessage), " ")
			if len(msg) > 120 {
				msg = msg[:120] + "…"
			}
			notes = append(notes, fmt.Sprintf("%s %s (%s)", c.ID, st, msg))
		}
	}
	dc, gc := direct.counts(), gateway.counts()
	keys := make([]string, 0, len(dc))
	for k := range dc {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if g, ok := gc[k]; ok && g < dc[k] {
			notes = append(notes, fmt.Sprintf("%s %v, directly %v", k, g, dc[k]))
		}
	}
	return notes
}

func mark(sc *scenario) string {
	switch {
	case sc == nil:
		return "did not run"
	case sc.OK:
		return fmt.Sprintf("pass (%d checks)", sc.Passed)
	default:
		return fmt.Sprintf("FAIL (%d/%d checks)", sc.Failed, sc.Passed+sc.Failed)
	}
}

// String is the report as the test log and report.txt show it.
func (rep *report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "requirements %s: %d scored scenarios; %d pass directly (%s, %s); %d pass through the gateway (%s, %s); %d gateway failures\n",
		rep.requirements, len(rep.scored), rep.passDirect, rep.direct.URL, rep.direct.Elapsed.Round(time.Millisecond),
		rep.passGateway, rep.gateway.URL, rep.gateway.Elapsed.Round(time.Millisecond), rep.gatewayFailures)
	b.WriteString(strings.Join(rep.lines, "\n"))
	if len(rep.notScored) > 0 {
		b.WriteString("\nrun but not scored:\n")
		b.WriteString(strings.Join(rep.notScored, "\n"))
	}
	b.WriteString("\n")
	return b.String()
}

// loadBaseline reads baseline.yml: requirement set → scenarios the fixture
// is known to fail.
func loadBaseline(t *testing.T) map[string][]string {
	t.Helper()
	raw, err := os.ReadFile("baseline.yml")
	if err != nil {
		t.Fatalf("read baseline: %v", err)
	}
	var b map[string][]string
	if err := yaml.Unmarshal(raw, &b); err != nil {
		t.Fatalf("baseline.yml: %v (want requirement set: [scenario, …])", err)
	}
	for set := range b {
		if !slices.ContainsFunc(legs, func(l leg) bool { return l.requirements == set }) {
			t.Fatalf("baseline.yml: unknown requirement set %q", set)
		}
	}
	return b
}

// buildFixture builds the go-sdk's everything-server at the version go.mod
// pins.
func buildFixture(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "everything-server")
	start := time.Now()
	cmd := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "github.com/modelcontextprotocol/go-sdk/conformance/everything-server")
	cmd.Dir = repoRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build everything-server: %v\n%s", err, out)
	}
	t.Logf("built the fixture in %s", time.Since(start).Round(time.Millisecond))
	return bin
}

// startFixture starts one fixture process on a free loopback port and
// returns its MCP URL once it answers HTTP; the test's cleanup kills it.
func startFixture(t *testing.T, bin string, stateless bool, label string) string {
	t.Helper()
	addr := testcluster.FreePort(t)
	logPath := filepath.Join(t.TempDir(), label+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-http="+addr, fmt.Sprintf("-stateless=%t", stateless))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start fixture %s: %v", label, err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		logf.Close()
		close(done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	url := "http://" + addr + "/mcp"
	var last string
	ok := testcluster.Eventually(fixtureStart, func() bool {
		select {
		case <-done:
			last = "process exited"
			return false
		default:
		}
		cl := http.Client{Timeout: 2 * time.Second}
		resp, err := cl.Get(url)
		if err != nil {
			last = err.Error()
			return false
		}
		resp.Body.Close()
		return true
	})
	if !ok {
		logs, _ := os.ReadFile(logPath)
		t.Fatalf("fixture %s does not answer at %s within %s; last: %s; log:\n%s", label, url, fixtureStart, last, logs)
	}
	return url
}

// liveTools lists url's tools with a go-sdk client, each as the JSON of
// the tool the server advertised.
func liveTools(t *testing.T, url string) []json.RawMessage {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "mcpmesh-conformance", Version: "1"}, nil).
		Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url}, nil)
	if err != nil {
		t.Fatalf("connect to fixture %s: %v", url, err)
	}
	defer cs.Close()
	var tools []json.RawMessage
	for tool, err := range cs.Tools(ctx, nil) {
		if err != nil {
			t.Fatalf("tools/list of fixture %s: %v", url, err)
		}
		raw, err := json.Marshal(tool)
		if err != nil {
			t.Fatal(err)
		}
		tools = append(tools, raw)
	}
	if len(tools) == 0 {
		t.Fatalf("fixture %s lists no tools", url)
	}
	return tools
}

// register submits a server card for the fixture at url with the given
// tools through node n, and approves it, as an operator would.
func register(t *testing.T, c *testcluster.Cluster, n *testcluster.Node, name, url string, tools []json.RawMessage) {
	t.Helper()
	card, err := json.MarshalIndent(map[string]any{
		"$schema":     "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json",
		"name":        name,
		"description": "The go-sdk's MCP conformance fixture (conformance/everything-server).",
		"version":     "1.0.0",
		"_meta": map[string]any{
			"io.mcpmesh/governance": map[string]any{
				"owner": "conformance@mcpmesh.test", "team": "conformance",
				"dataClassification": "public", "riskTier": "low", "costPerCall": 0,
				"upstream": map[string]any{"transport": "streamable-http", "url": url},
			},
			"io.mcpmesh/tools": tools,
		},
	}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "card.json")
	if err := os.WriteFile(path, card, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"registry", "submit", "-f", path}, {"registry", "approve", name + "@1.0.0"}} {
		if out, code := c.CLI(n, args...); code != 0 {
			t.Fatalf("mcpmesh %s: exit %d: %s", strings.Join(args, " "), code, out)
		}
	}
}

func gatewayURL(n *testcluster.Node, server string) string {
	return n.URL() + "/mcp/s/" + namespace + "/" + server
}

// waitServed waits until the gateway lists at url the tools named want
// (sorted).
func waitServed(t *testing.T, url string, want []string) {
	t.Helper()
	var last string
	ok := testcluster.Eventually(servedTimeout, func() bool {
		got, err := listNames(t.Context(), url)
		if err != nil {
			last = err.Error()
			return false
		}
		last = fmt.Sprintf("%v", got)
		return slices.Equal(got, want)
	})
	if !ok {
		t.Fatalf("the gateway does not serve the fixture's %d tools at %s within %s; last seen: %s", len(want), url, servedTimeout, last)
	}
}

func listNames(ctx context.Context, url string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "mcpmesh-conformance", Version: "1"}, nil).
		Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url}, nil)
	if err != nil {
		return nil, err
	}
	defer cs.Close()
	var names []string
	for tool, err := range cs.Tools(ctx, nil) {
		if err != nil {
			return nil, err
		}
		names = append(names, tool.Name)
	}
	if len(names) == 0 {
		return nil, errors.New("no tools listed")
	}
	slices.Sort(names)
	return names, nil
}

func toolNames(t *testing.T, tools []json.RawMessage) []string {
	t.Helper()
	names := make([]string, 0, len(tools))
	for _, raw := range tools {
		var tool struct{ Name string }
		if err := json.Unmarshal(raw, &tool); err != nil {
			t.Fatal(err)
		}
		names = append(names, tool.Name)
	}
	slices.Sort(names)
	return names
}
