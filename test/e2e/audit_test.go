package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpmesh/mcpmesh/node/audit"
	"github.com/mcpmesh/mcpmesh/registry/api"
	"github.com/mcpmesh/mcpmesh/test/internal/testcluster"
)

// auditYAML checkpoints the audit chain every second, so tests need not
// wait 30s for one.
const auditYAML = "  checkpoint_interval: 1s\n"

// auditedCluster starts a cluster serving one approved upstream to every
// agent (permit-all policy) and returns it with an API key of tenant
// payroll.
func auditedCluster(t *testing.T, opts testcluster.Options) (*testcluster.Cluster, api.APIKeyCreated) {
	t.Helper()
	up := startUpstream(t, "directory")
	opts.AuditYAML += auditYAML
	c := startCluster(t, opts)
	n := c.Nodes[0]
	mustCLI(t, c, n, "tenant", "add", "payroll", "-owner", "alice@corp.example")
	mustCLI(t, c, n, "registry", "submit", "-f", writeCard(t, upstreamCard("corp.hr/directory", "1.0.0", up.URL)))
	mustCLI(t, c, n, "registry", "approve", "corp.hr/directory@1.0.0")
	mustCLI(t, c, n, "apply", "-f", permitAll(t))
	return c, createKey(t, c, n, "payroll", "auditor-test")
}

// callAll calls hr.lookup on node n as key once per query and returns the
// request id of each call, in order.
func callAll(t *testing.T, n *testcluster.Node, key string, queries ...string) []string {
	t.Helper()
	var ids []string
	// The key may not have reached n's replica yet.
	var s *mcp.ClientSession
	var err error
	if !testcluster.Eventually(15*time.Second, func() bool {
		s, err = tryConnect(t, n.URL()+"/mcp", "2026-07-28", key)
		return err == nil
	}) {
		t.Fatalf("connect to %s: %v", n.ID, err)
	}
	for _, q := range queries {
		var res *mcp.CallToolResult
		var err error
		testcluster.Eventually(15*time.Second, func() bool {
			res, err = s.CallTool(t.Context(), &mcp.CallToolParams{Name: "hr.lookup", Arguments: map[string]any{"q": q}})
			return err == nil
		})
		if err != nil {
			t.Fatalf("call hr.lookup on %s: %v", n.ID, err)
		}
		id, _ := res.Meta["io.mcpmesh/requestId"].(string)
		ids = append(ids, id)
	}
	return ids
}

// exported returns the records node n exports.
func exported(t *testing.T, c *testcluster.Cluster, n *testcluster.Node, args ...string) []audit.Record {
	t.Helper()
	out := filepath.Join(t.TempDir(), "audit.jsonl")
	mustCLI(t, c, n, append([]string{"audit", "export", "-out", out}, args...)...)
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var recs []audit.Record
	for i, line := range strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n") {
		if line == "" {
			continue
		}
		var r audit.Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("export line %d is not a record: %v: %s", i+1, err, line)
		}
		recs = append(recs, r)
	}
	return recs
}

// TestAudit: calls, denials of credentials and admin changes are on the
// record of the node that served them, queryable by principal, tenant,
// tool, outcome, kind and time, exported as JSON lines, and the chain
// verifies against the heads the node checkpointed through Raft.
func TestAudit(t *testing.T) {
	t.Parallel()
	c, key := auditedCluster(t, testcluster.Options{NoSync: true})
	n := c.Nodes[1] // not the node the admin changes went through
	start := time.Now()
	ids := callAll(t, n, key.Secret, "a", "b", "c")
	s := mcpConnectAs(t, n.URL()+"/mcp", "2026-07-28", key.Secret)
	if _, err := s.CallTool(t.Context(), &mcp.CallToolParams{Name: "hr.lookup", Arguments: map[string]any{"q": 7}}); err == nil {
		t.Fatal("a call with invalid arguments succeeded")
	}
	if resp, _ := rawPost(t, n.URL()+"/mcp", map[string]string{"Authorization": "Bearer mcpk_nosuchkey234_" + strings.Repeat("x", 43)}, legacyInit); resp.StatusCode != 401 {
		t.Fatalf("unknown key: HTTP %d", resp.StatusCode)
	}

	principal := "apikey:" + key.Key.ID
	ok := decode[api.AuditRecords](t, "audit query", mustCLI(t, c, n, "audit", "query", "-o", "json", "-principal", principal, "-tenant", "payroll", "-tool", "hr.lookup", "-outcome", "ok", "-since", "10m"))
	if len(ok.Records) != 3 || ok.Node != n.ID {
		t.Fatalf("query of %s's successful calls on %s: %d records from %q, want 3", principal, n.ID, len(ok.Records), ok.Node)
	}
	for i, r := range ok.Records {
		if r.RequestID != ids[i] || r.Tool != "corp.hr/directory/lookup" || r.Version != "1.0.0" || r.DefinitionHash == "" || r.Decision != "allow" ||
			r.PolicyVersion == "" || r.ArgumentsHMAC == "" || r.Time.Before(start.Add(-time.Second)) || len(r.Actors) != 2 {
			t.Errorf("record of call %d: %+v; want request id %s", i, r, ids[i])
		}
	}
	invalid := decode[api.AuditRecords](t, "audit query", mustCLI(t, c, n, "audit", "query", "-o", "json", "-outcome", "invalid_arguments"))
	if len(invalid.Records) != 1 || invalid.Records[0].ErrorCode != -32602 {
		t.Errorf("invalid arguments on record: %+v", invalid.Records)
	}
	// Connecting before the key reached this replica was refused too;
	// the unknown key's refusal is the last.
	refused := decode[api.AuditRecords](t, "audit query", mustCLI(t, c, n, "audit", "query", "-o", "json", "-kind", "auth"))
	if len(refused.Records) == 0 {
		t.Fatal("no refused credential on record")
	}
	if r := refused.Records[len(refused.Records)-1]; r.Outcome != audit.OutcomeRefused || r.AuthMethod != "api-key" || r.Action != "POST /mcp" ||
		!strings.Contains(r.Reason, "nosuchkey234") || strings.Contains(r.Reason, strings.Repeat("x", 43)) || r.Remote == "" {
		t.Errorf("refused credential on record: %+v", r)
	}
	admin := decode[api.AuditRecords](t, "audit query", mustCLI(t, c, c.Nodes[0], "audit", "query", "-o", "json", "-kind", "admin", "-principal", "token:bootstrap"))
	var actions []string
	for _, r := range admin.Records {
		actions = append(actions, r.Action+" "+r.Target)
	}
	for _, want := range []string{"tenant.put payroll", "registry.submit corp.hr/directory@1.0.0", "registry.approve corp.hr/directory@1.0.0", "policy.put policies", "apikey.create " + key.Key.ID} {
		if !strings.Contains(strings.Join(actions, "\n"), want) {
			t.Errorf("admin changes on record of %s: %q, want %q among them", c.Nodes[0].ID, actions, want)
		}
	}
	table := mustCLI(t, c, n, "audit", "query", "-limit", "2")
	if lines := strings.Split(strings.TrimSpace(table), "\n"); len(lines) != 3 || !strings.HasPrefix(lines[0], "SEQ") {
		t.Errorf("audit query -limit 2 as a table:\n%s", table)
	}

	all := exported(t, c, n, "-since", start.UTC().Format(time.RFC3339Nano))
	outcomes := map[audit.Outcome]int{}
	for _, r := range all {
		outcomes[r.Outcome]++
	}
	// Calls retried while the node caught up with the approval are
	// refused (unknown tool), and on record too.
	if outcomes[audit.OutcomeOK] != 3 || outcomes[audit.OutcomeInvalidArguments] != 1 || outcomes[audit.OutcomeRefused] < 1 || len(all) != 4+outcomes[audit.OutcomeRefused] {
		t.Errorf("export since the calls: %d records by outcome %v; want 3 ok, 1 invalid, the refused credential", len(all), outcomes)
	}
	for i, r := range all {
		if r.Seq == 0 || len(r.Hash) != 64 || (i > 0 && r.Prev != all[i-1].Hash) {
			t.Errorf("exported record %d does not chain: %+v", i, r)
		}
	}

	// The node checkpoints its head within a second or two; verify then
	// checks the chain against it.
	var rep api.AuditVerifyResponse
	if !testcluster.Eventually(15*time.Second, func() bool {
		rep = decode[api.AuditVerifyResponse](t, "audit verify", mustCLI(t, c, n, "audit", "verify", "-o", "json"))
		return rep.OK && rep.Checkpoints > 0 && rep.Records >= 5
	}) {
		t.Fatalf("audit verify on %s: %+v", n.ID, rep)
	}
	if out := mustCLI(t, c, n, "audit", "verify"); !strings.HasPrefix(out, "OK: node "+n.ID) || !strings.Contains(out, "checkpoints match") {
		t.Errorf("audit verify as a table: %s", out)
	}
	// The log's metrics reach /metrics.
	_, metrics := get(t, n.URL()+"/metrics", "")
	for _, want := range []string{`mcpmesh_audit_records_total{kind="call"}`, `mcpmesh_audit_records_total{kind="auth"}`, "mcpmesh_audit_commit_seconds_count",
		"mcpmesh_audit_batch_records_count", "mcpmesh_audit_failures_total 0"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics of %s lacks %s", n.ID, want)
		}
	}
	out, code := c.CLI(n, "audit", "query", "-outcome", "fine")
	wantFailure(t, "query of an unknown outcome", out, code, 1, `outcome "fine"`)
	out, code = c.CLI(n, "audit", "query", "-since", "yesterday")
	wantFailure(t, "query with a bad time", out, code, 2, "-since")
}

// TestAuditCrash: a node killed with SIGKILL during a load of calls
// restarts with a chain that verifies, holding the record of every call
// an agent saw succeed.
func TestAuditCrash(t *testing.T) {
	t.Parallel()
	c, key := auditedCluster(t, testcluster.Options{}) // fsync on: durability is the point
	n := c.Followers(c.Leader(leaderTimeout))[0]
	callAll(t, n, key.Secret, "warm-up")

	var mu sync.Mutex
	var succeeded []string
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 8 {
		wg.Go(func() {
			s, err := tryConnect(t, n.URL()+"/mcp", "2026-07-28", key.Secret)
			if err != nil {
				return
			}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				res, err := s.CallTool(t.Context(), &mcp.CallToolParams{Name: "hr.lookup", Arguments: map[string]any{"q": fmt.Sprintf("w%d-%d", w, i)}})
				if err != nil {
					return // the node is gone
				}
				id, _ := res.Meta["io.mcpmesh/requestId"].(string)
				mu.Lock()
				succeeded = append(succeeded, id)
				mu.Unlock()
			}
		})
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(succeeded)
	}
	if !testcluster.Eventually(30*time.Second, func() bool { return count() >= 300 }) {
		t.Fatalf("the load got only %d calls through", count())
	}
	n.Kill() // SIGKILL, mid-load
	close(stop)
	wg.Wait()
	seen := append([]string(nil), succeeded...)
	t.Logf("%d calls succeeded before the kill", len(seen))

	n.Start()
	n.WaitReady(readyTimeout)
	// The restarted node checkpoints its head within a second; the chain
	// must verify against that and every checkpoint from before the kill.
	var rep api.AuditVerifyResponse
	if !testcluster.Eventually(15*time.Second, func() bool {
		rep = decode[api.AuditVerifyResponse](t, "audit verify", mustCLI(t, c, n, "audit", "verify", "-o", "json"))
		return !rep.OK || rep.Checkpoints > 0
	}) || !rep.OK {
		t.Fatalf("audit verify after the crash: %+v", rep)
	}
	have := map[string]bool{}
	for _, r := range exported(t, c, n, "-tool", "hr.lookup", "-outcome", "ok") {
		have[r.RequestID] = true
	}
	missing := 0
	for _, id := range seen {
		if !have[id] {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%d of the %d calls an agent saw succeed have no record after the crash", missing, len(seen))
	}
}

// tamperAuditStore copies a node's audit store and applies tamper to the
// copy with pebble directly, as someone holding the files could.
func tamperAuditStore(t *testing.T, src string, tamper func(db *pebble.DB)) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "audit")
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	db, err := pebble.Open(dst, &pebble.Options{Logger: quietPebble{}})
	if err != nil {
		t.Fatal(err)
	}
	tamper(db)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}

type quietPebble struct{}

func (quietPebble) Infof(string, ...any)  {}
func (quietPebble) Errorf(string, ...any) {}
func (quietPebble) Fatalf(format string, args ...any) {
	slog.Error(fmt.Sprintf(format, args...))
	panic("pebble fatal error")
}

func getRecord(t *testing.T, db *pebble.DB, seq uint64) []byte {
	t.Helper()
	v, closer, err := db.Get(audit.RecordKey(seq))
	if err != nil {
		t.Fatalf("record %d: %v", seq, err)
	}
	defer closer.Close()
	return bytes.Clone(v)
}

func setRecord(t *testing.T, db *pebble.DB, key, v []byte) {
	t.Helper()
	if err := db.Set(key, v, pebble.Sync); err != nil {
		t.Fatal(err)
	}
}

// TestAuditTamper: a record edited, deleted or moved in a copy of a
// node's audit store is found by `mcpmesh audit verify -dir`, which names
// the record and what happened to it; a history rewritten consistently
// (hashes recomputed by the documented formula) passes the chain check
// and is caught by the node's checkpoints in Raft.
func TestAuditTamper(t *testing.T) {
	t.Parallel()
	c, key := auditedCluster(t, testcluster.Options{NoSync: true})
	n := c.Nodes[2]
	callAll(t, n, key.Secret, "1", "2", "3", "4", "5", "6", "7", "8", "9", "10")
	// Stop the node cleanly (it checkpoints its final head) and ask
	// another node for its checkpoints.
	n.Stop(stopTimeout)
	other := c.Nodes[0]
	var cps []struct{ Seq uint64 }
	if !testcluster.Eventually(10*time.Second, func() bool {
		cps = decode[[]struct{ Seq uint64 }](t, "checkpoints", checkpointsJSON(t, other, n.ID))
		return len(cps) > 0 && cps[len(cps)-1].Seq >= 10
	}) {
		t.Fatalf("checkpoints of %s in Raft: %+v, want one covering its 10 calls", n.ID, cps)
	}
	store := filepath.Join(n.DataDir, "audit")
	verify := func(dir string, withCheckpoints bool) (string, int) {
		args := []string{"audit", "verify", "-dir", dir}
		if withCheckpoints {
			args = append(args, "-node", n.ID)
		}
		return c.CLI(other, args...)
	}
	if out, code := verify(store, true); code != 0 || !strings.HasPrefix(out, "OK: ") {
		t.Fatalf("verify of the untouched store: exit %d: %s", code, out)
	}
	outcomeOK := []byte(`"outcome":"ok"`)
	for _, tc := range []struct {
		name   string
		tamper func(db *pebble.DB)
		chain  bool     // found without the checkpoints
		want   []string // "<record> <problem>" lines; record \d+ for any
	}{
		{"edited", func(db *pebble.DB) {
			v := getRecord(t, db, 4)
			setRecord(t, db, audit.RecordKey(4), bytes.Replace(v, outcomeOK, []byte(`"outcome":"no"`), 1))
		}, true, []string{"4 modified"}},
		{"deleted", func(db *pebble.DB) {
			if err := db.Delete(audit.RecordKey(5), pebble.Sync); err != nil {
				t.Fatal(err)
			}
		}, true, []string{"5 missing"}},
		{"reordered", func(db *pebble.DB) {
			a, b := getRecord(t, db, 3), getRecord(t, db, 4)
			setRecord(t, db, audit.RecordKey(3), b)
			setRecord(t, db, audit.RecordKey(4), a)
		}, true, []string{"3 reordered", "4 reordered"}},
		// The node checkpointed at least its final head, a record after 6.
		{"rewritten", func(db *pebble.DB) { rewriteFrom(t, db, 6) }, false, []string{`\d+ checkpoint-mismatch`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := tamperAuditStore(t, store, tc.tamper)
			out, code := verify(dir, true)
			if code != 1 || !strings.Contains(out, "FAILED") || !strings.Contains(out, "failed verification") {
				t.Fatalf("verify -node of the %s store: exit %d, want 1:\n%s", tc.name, code, out)
			}
			for _, want := range tc.want {
				f := strings.Fields(want)
				if !regexp.MustCompile(`(?m)^` + f[0] + `\s+` + f[1] + `\s`).MatchString(out) {
					t.Errorf("verify of the %s store does not report record %s as %s:\n%s", tc.name, f[0], f[1], out)
				}
			}
			out, code = verify(dir, false)
			if tc.chain != (code == 1) {
				t.Errorf("verify of the %s store without checkpoints: exit %d:\n%s", tc.name, code, out)
			}
			if !tc.chain && !strings.Contains(out, "pass -node") {
				t.Errorf("a chain-only verify does not say it is one:\n%s", out)
			}
		})
	}
}

// checkpointsJSON returns node's checkpoints as other's API lists them.
func checkpointsJSON(t *testing.T, other *testcluster.Node, node string) string {
	t.Helper()
	cps, err := other.Client().AuditCheckpoints(t.Context(), node)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(cps)
	return string(raw)
}

// rewriteFrom changes record from's outcome and re-chains it and every
// later record by the formula of node/audit's package doc:
// hash = SHA-256(prev ‖ 0x01 ‖ seq big-endian ‖ body), stored as
// 0x01 ‖ seq ‖ prev ‖ hash ‖ body; then moves the recorded head.
func rewriteFrom(t *testing.T, db *pebble.DB, from uint64) {
	t.Helper()
	prev := getRecord(t, db, from-1)[41:73]
	var seq uint64
	for seq = from; ; seq++ {
		v, closer, err := db.Get(audit.RecordKey(seq))
		if err != nil {
			break
		}
		body := bytes.Clone(v[73:])
		closer.Close()
		if seq == from {
			body = bytes.Replace(body, []byte(`"outcome":"ok"`), []byte(`"outcome":"denied"`), 1)
		}
		var hdr [9]byte
		hdr[0] = 1
		binary.BigEndian.PutUint64(hdr[1:], seq)
		h := sha256.New()
		h.Write(prev)
		h.Write(hdr[:])
		h.Write(body)
		hash := h.Sum(nil)
		setRecord(t, db, audit.RecordKey(seq), append(append(append(hdr[:], prev...), hash...), body...))
		prev = hash
	}
	head := binary.BigEndian.AppendUint64(nil, seq-1)
	setRecord(t, db, []byte("m\x00head"), append(head, prev...))
}
