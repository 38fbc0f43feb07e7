package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpmesh/mcpmesh/test/internal/testcluster"
)

// TestStdioUpstreamIsRestarted: the node runs a stdio upstream itself (the
// example directory server), calls reach it with the node's token in
// _meta (the server verifies it against the node's key set and answers the
// caller's tenant's rows only), and when the process dies the node starts
// it again and calls succeed once more.
func TestStdioUpstreamIsRestarted(t *testing.T) {
	t.Parallel()
	// A copy of the example server under a name only this test uses, so
	// its process can be found and killed.
	bin := filepath.Join(t.TempDir(), "exampleserver-e2e-stdio")
	build := exec.Command("go", "build", "-o", bin, "./examples/servers/cmd/exampleserver")
	build.Dir = repoRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build exampleserver: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "examples/catalog/hr/directory-1.0.0.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	c := startCluster(t, testcluster.Options{NoSync: true, Nodes: 1})
	n := c.Nodes[0]
	gov := doc["_meta"].(map[string]any)["io.mcpmesh/governance"].(map[string]any)
	gov["upstream"] = map[string]any{"transport": "stdio", "command": bin, "args": []string{"-server", "directory", "-stdio",
		"-jwks-url", n.URL() + "/.well-known/mcpmesh/jwks.json", "-issuer", "spiffe://hr.example.corp/mcpmesh/gateway"}}
	stdioCard, _ := json.Marshal(doc)
	mustCLI(t, c, n, "apply", "-f", permitAll(t))
	mustCLI(t, c, n, "registry", "submit", "-f", writeCard(t, stdioCard))
	mustCLI(t, c, n, "registry", "approve", "corp.hr/directory@1.0.0")
	mustCLI(t, c, n, "tenant", "add", "benefits", "-owner", "bob@corp.example")
	key := createKey(t, c, n, "benefits", "stdio e2e").Secret

	call := func() error {
		s := mcpConnectAs(t, n.URL()+"/mcp", "2026-07-28", key)
		res, err := s.CallTool(t.Context(), &mcp.CallToolParams{Name: "hr.search_employees", Arguments: map[string]any{"query": "on", "limit": 100}})
		if err == nil && res.IsError {
			return fmt.Errorf("search_employees reported an error: %v", res.Content[0])
		}
		if err == nil {
			// "on" matches rows of both tenants (London, Boston); the
			// server saw the benefits tenant in the node's token.
			if text := res.Content[0].(*mcp.TextContent).Text; !strings.Contains(text, "tenant benefits") || strings.Contains(text, "tenant payroll") {
				t.Fatalf("benefits' agent got %q; want benefits' rows only", text)
			}
		}
		return err
	}
	var last error
	if !testcluster.Eventually(catchUp, func() bool { last = call(); return last == nil }) {
		t.Fatalf("no call through the stdio upstream succeeded; last error: %v", last)
	}
	pid := stdioPID(t, bin)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill the stdio server %d: %v", pid, err)
	}
	// The call right after the kill may fail (the pipe is gone); the node
	// restarts the server with backoff and calls work again.
	if !testcluster.Eventually(catchUp, func() bool { last = call(); return last == nil }) {
		t.Fatalf("calls did not recover after the stdio server was killed; last error: %v\nnode log:\n%s", last, n.LogTail(20))
	}
	if again := stdioPID(t, bin); again == pid {
		t.Errorf("the stdio server still has pid %d after being killed", pid)
	}
}

// stdioPID finds the one running process of the binary at path.
func stdioPID(t *testing.T, path string) int {
	t.Helper()
	var pids []int
	ok := testcluster.Eventually(10*time.Second, func() bool {
		pids = pids[:0]
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
			if err == nil && strings.HasPrefix(string(cmdline), path+"\x00") {
				pids = append(pids, pid)
			}
		}
		return len(pids) == 1
	})
	if !ok {
		t.Fatalf("want one process of %s, found %v", path, pids)
	}
	return pids[0]
}

// repoRoot is the repository root, two directories above this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(wd, "..", "..")
}
