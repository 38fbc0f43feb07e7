package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpmesh/mcpmesh/node/audit"
	"github.com/mcpmesh/mcpmesh/registry/api"
)

// auditServer answers GET /v1/audit with one record, and remembers the
// query strings it was asked.
type auditServer struct {
	*httptest.Server
	mu      sync.Mutex
	queries []string
}

func startAuditServer(t *testing.T) *auditServer {
	t.Helper()
	s := &auditServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.queries = append(s.queries, r.URL.RawQuery)
		s.mu.Unlock()
		rec := audit.Record{Seq: 7, Time: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC), Kind: audit.KindCall, Node: "n1", Principal: "apikey:a",
			Tool: "corp.finance/payments/transfer", Version: "1.0.0", RequestID: r.URL.Query().Get("request_id"), Outcome: audit.OutcomeUpstreamError, ErrorCode: -32019}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(api.AuditRecords{Node: "n1", Records: []audit.Record{rec}})
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *auditServer) asked() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.queries...)
}

// TestAuditQueryRequestID: -request-id reaches the admin API as its
// request_id filter, the table shows the request id whole, and a request
// id no record can have is refused before any node is asked.
func TestAuditQueryRequestID(t *testing.T) {
	srv := startAuditServer(t)
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := runAudit(t.Context(), append([]string{"query", "-addr", srv.URL, "-token-file", tok}, args...), &out)
		return out.String(), err
	}
	const rid = "Zx3_9-kQvT0aBcDeFgHiJk"

	out, err := run("-request-id", rid)
	if err != nil {
		t.Fatal(err)
	}
	if q := srv.asked(); len(q) != 1 || !strings.Contains(q[0], "request_id="+rid) {
		t.Fatalf("audit query -request-id %s asked the node %q; want request_id=%s", rid, q, rid)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasSuffix(strings.TrimSpace(lines[0]), "REQUEST") || !strings.HasSuffix(strings.TrimSpace(lines[1]), rid) {
		t.Errorf("audit query as a table: want a REQUEST column ending each row with the id:\n%s", out)
	}
	out, err = run("-request-id", rid, "-o", "json")
	if err != nil || !strings.Contains(out, `"requestId": "`+rid+`"`) {
		t.Errorf("audit query -o json: %v\n%s\nwant the record's requestId", err, out)
	}
	// Without the flag, no filter is sent.
	if _, err := run("-tenant", "payroll"); err != nil {
		t.Fatal(err)
	}
	if q := srv.asked(); strings.Contains(q[len(q)-1], "request_id") {
		t.Errorf("audit query without -request-id asked %q", q[len(q)-1])
	}

	asked := len(srv.asked())
	for _, bad := range []struct{ value, want string }{
		{"", "empty"},
		{strings.Repeat("a", api.MaxRequestIDBytes+1), "longer than any request id"},
		{"a\nb", "control character"},
		{"\xff", "UTF-8"},
	} {
		_, err := run("-request-id", bad.value)
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), "-request-id") || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("audit query -request-id %.20q: %v; want a usage error naming -request-id: %s", bad.value, err, bad.want)
		}
	}
	if got := len(srv.asked()); got != asked {
		t.Errorf("invalid request ids reached the node (%d requests)", got-asked)
	}
}
