package e2e

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpmesh/mcpmesh/test/internal/testcluster"
)

// TestRelayedLogsOfAModernCall: through the real binary, a 2026-07-28
// agent that asks for log messages in a tools/call's _meta gets the one
// its upstream logged while serving the call; without asking it gets none.
func TestRelayedLogsOfAModernCall(t *testing.T) {
	t.Parallel()
	directory := startUpstream(t, "directory")
	c := startCluster(t, testcluster.Options{NoSync: true})
	leader := c.Leader(leaderTimeout)
	mustCLI(t, c, leader, "tenant", "add", "payroll", "-owner", "alice@corp.example")
	mustCLI(t, c, leader, "apply", "-f", permitAll(t))
	key := createKey(t, c, leader, "payroll", "e2e agent").Secret
	mustCLI(t, c, leader, "registry", "submit", "-f", writeCard(t, upstreamCard("corp.hr/directory", "1.0.0", directory.URL)))
	mustCLI(t, c, leader, "registry", "approve", "corp.hr/directory@1.0.0")

	var mu sync.Mutex
	var got []string
	cl := mcp.NewClient(&mcp.Implementation{Name: "e2e-agent", Version: "1"}, &mcp.ClientOptions{
		LoggingMessageHandler: func(_ context.Context, req *mcp.LoggingMessageRequest) {
			mu.Lock()
			got = append(got, fmt.Sprint(req.Params.Data))
			mu.Unlock()
		},
	})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	s, err := cl.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: "http://" + leader.HTTPAddr + "/mcp", HTTPClient: &http.Client{Transport: credentialTransport{key}}},
		&mcp.ClientSessionOptions{ProtocolVersion: "2026-07-28"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var last error
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if _, last = s.CallTool(ctx, &mcp.CallToolParams{Name: "hr.lookup", Arguments: map[string]any{"q": "quiet"}}); last == nil {
			break
		}
	}
	if last != nil {
		t.Fatalf("the tool never became callable: %v", last)
	}
	if _, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "hr.lookup", Arguments: map[string]any{"q": "bob"}, Meta: mcp.Meta{mcp.MetaKeyLogLevel: "info"}}); err != nil {
		t.Fatal(err)
	}
	var seen []string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		mu.Lock()
		seen = append([]string(nil), got...)
		mu.Unlock()
		if len(seen) > 0 {
			break
		}
	}
	if len(seen) != 1 || seen[0] != "looked up bob" {
		t.Fatalf("log messages = %q; want only %q (from the call that asked)", seen, "looked up bob")
	}
}
