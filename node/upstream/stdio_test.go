package upstream

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func stdioTarget(t *testing.T, env map[string]string) Target {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	env["MCPMESH_TEST_STDIO_SERVER"] = "1"
	return Target{Server: "corp.test/stdio", Version: "1.0.0", Transport: TransportStdio, Command: exe, Env: env}
}

// callWithin calls tool, failing the test if the call is still waiting
// after 20s (far beyond any deadline the tests set).
func callWithin(t *testing.T, ctx context.Context, p *Pool, target Target, tool string) (*mcp.CallToolResult, error) {
	t.Helper()
	type answer struct {
		res *mcp.CallToolResult
		err error
	}
	done := make(chan answer, 1)
	start := time.Now()
	go func() {
		res, err := p.CallTool(ctx, target, &mcp.CallToolParams{Name: tool}, nil)
		done <- answer{res, err}
	}()
	select {
	case a := <-done:
		t.Logf("%s ended after %v: %v", tool, time.Since(start).Round(time.Millisecond), a.err)
		return a.res, a.err
	case <-time.After(20 * time.Second):
		t.Fatalf("a call of %s was still waiting after 20s", tool)
		return nil, nil
	}
}

// TestStdioCallHasADeadline: a stdio upstream that does not answer a
// tools/call in time is bounded like an HTTP one: the call fails with the
// deadline exceeded (the pool's call timeout, or the caller's earlier
// one), the server is told the request is cancelled
// (notifications/cancelled), and the server process, which other calls
// share, keeps running.
func TestStdioCallHasADeadline(t *testing.T) {
	for _, tc := range []struct {
		name     string
		timeout  time.Duration
		deadline time.Duration // the caller's, 0 for none
	}{
		{"call timeout", 300 * time.Millisecond, 0},
		{"caller's deadline", time.Minute, 300 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cancelled := filepath.Join(t.TempDir(), "cancelled")
			p := NewPool(Config{CallTimeout: tc.timeout, BreakerThreshold: 5})
			defer p.Close()
			target := stdioTarget(t, map[string]string{"MCPMESH_TEST_CANCELLED": cancelled})
			before, err := p.CallTool(t.Context(), target, &mcp.CallToolParams{Name: "pid"}, nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx := t.Context()
			if tc.deadline > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.deadline)
				defer cancel()
			}
			if _, err := callWithin(t, ctx, p, target, "hang"); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("a call the stdio server does not answer in time: %v; want the deadline exceeded", err)
			}
			var seen []byte
			for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
				if seen, _ = os.ReadFile(cancelled); len(seen) > 0 {
					break
				}
			}
			if string(seen) != "cancelled" {
				t.Errorf("the stdio server was not told the call was cancelled (read %q)", seen)
			}
			after, err := callWithin(t, t.Context(), p, target, "pid")
			if err != nil || text(after) != text(before) {
				t.Errorf("after a timed-out call: pid %v, %v; want the same server (pid %s) answering", after, err, text(before))
			}
		})
	}
}

// TestStuckStdioServerIsRestarted: a stdio server that answers none of
// BreakerThreshold calls in a row is restarted.
func TestStuckStdioServerIsRestarted(t *testing.T) {
	p := NewPool(Config{CallTimeout: time.Second, BreakerThreshold: 2, BreakerCooldown: 100 * time.Millisecond})
	defer p.Close()
	target := stdioTarget(t, map[string]string{})
	before, err := p.CallTool(t.Context(), target, &mcp.CallToolParams{Name: "pid"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := callWithin(t, t.Context(), p, target, "stuck"); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("a call of a stuck stdio server: %v; want the deadline exceeded", err)
		}
	}
	var after *mcp.CallToolResult
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if after, err = callWithin(t, t.Context(), p, target, "pid"); err == nil {
			break
		}
	}
	if err != nil || text(after) == text(before) {
		t.Errorf("after %d calls without an answer: pid %v, %v; want a new server (not pid %s)", 2, after, err, text(before))
	}
}
