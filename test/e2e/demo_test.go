package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpmesh/mcpmesh/test/internal/testcluster"
)

// TestDemo runs `make demo`'s program with -once against the real binary:
// two BUs × three node processes federated by a signed manifest, the
// example servers, and the example agent calling through an hr node a tool
// of hr and the report finance shares with hr. It must exit 0 having shown
// finance's answer for hr's tenant, and leave no process behind.
func TestDemo(t *testing.T) {
	t.Parallel()
	bin := testcluster.Bin(t)
	dir := t.TempDir()
	built := map[string]string{}
	for name, pkg := range map[string]string{"demo": "./examples/demo", "agent": "./examples/agent", "exampleserver": "./examples/servers/cmd/exampleserver"} {
		built[name] = filepath.Join(dir, "bin", name)
		build := exec.Command("go", "build", "-o", built[name], pkg)
		build.Dir = repoRoot(t)
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", pkg, err, out)
		}
	}
	meshDir := filepath.Join(dir, "mesh")
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, built["demo"], "-once", "-base-port", "0", "-dir", meshDir,
		"-bin", bin, "-agent", built["agent"], "-exampleserver", built["exampleserver"])
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	t.Logf("demo -once ran for %s", time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Fatalf("demo -once: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		"hr's agent sees 3 tools: finance.generate_report, hr.get_salary_band, hr.search_employees",
		"shared by BU finance, answered by finance's node n",
		"for hr.example.corp/apikey:",
		"hr.example.corp/payroll net income",
		`4 employee(s) match "payroll"`,
		"demo: stopped every process",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
	// Every node's command line names its config in meshDir; none is left.
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		raw, err := os.ReadFile(p)
		if err == nil && bytes.Contains(raw, []byte(meshDir)) {
			t.Errorf("a process outlived the demo: %s", bytes.ReplaceAll(raw, []byte{0}, []byte{' '}))
		}
	}
}
