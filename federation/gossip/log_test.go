package gossip

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// TestStdLoggerLevels: memberlist's bracketed levels become slog levels and
// leave the message, and debug lines stay out of an info logger.
func TestStdLoggerLevels(t *testing.T) {
	var buf bytes.Buffer
	l := newStdLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})))
	l.Printf("[WARN] memberlist: Was able to connect to n1 over TCP but UDP probes failed")
	l.Printf("[ERR] memberlist: Failed to send ping")
	l.Printf("[DEBUG] memberlist: Stream connection from=127.0.0.1:1")
	l.Printf("[INFO] memberlist: Marking n2 as failed")
	got := buf.String()
	for _, want := range []string{
		`level=WARN msg="Was able to connect to n1 over TCP but UDP probes failed" component=memberlist`,
		`level=ERROR msg="Failed to send ping"`,
		`level=INFO msg="Marking n2 as failed"`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("log lacks %q; got:\n%s", want, got)
		}
	}
	if strings.Contains(got, "Stream connection") {
		t.Errorf("a debug line reached an info logger:\n%s", got)
	}
}
