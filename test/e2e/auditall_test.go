package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcpmesh/mcpmesh/node/audit"
	"github.com/mcpmesh/mcpmesh/registry/api"
	"github.com/mcpmesh/mcpmesh/test/internal/testcluster"
)

// cliSplit runs a client subcommand against node n with the admin token,
// keeping standard output and standard error apart.
func cliSplit(t *testing.T, c *testcluster.Cluster, n *testcluster.Node, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Bin, append(args, "-addr", n.URL(), "-token-file", c.TokenFile)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("mcpmesh %s: timed out; output so far:\n%s%s", strings.Join(args, " "), out.String(), errOut.String())
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return out.String(), errOut.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run mcpmesh: %v", err)
	}
	return out.String(), errOut.String(), 0
}

// recordKey names a record by its node and number.
func recordKey(r audit.Record) string { return fmt.Sprintf("%s/%d", r.Node, r.Seq) }

// exportLines parses an export: its records, and the partial trailer if
// the last line is one.
func exportLines(t *testing.T, out string) ([]audit.Record, *api.ExportTrailer) {
	t.Helper()
	var recs []audit.Record
	var trailer *api.ExportTrailer
	for i, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if line == "" {
			continue
		}
		if trailer != nil {
			t.Fatalf("export line %d follows the partial trailer: %s", i+1, line)
		}
		var r audit.Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("export line %d is not JSON: %v: %s", i+1, err, line)
		}
		if r.Seq == 0 {
			trailer = new(api.ExportTrailer)
			if err := json.Unmarshal([]byte(line), trailer); err != nil || !trailer.Partial {
				t.Fatalf("export line %d is neither a record nor a partial trailer: %s", i+1, line)
			}
			continue
		}
		recs = append(recs, r)
	}
	return recs, trailer
}

// TestAuditAll: `audit query -all` and `audit export -all` through any one
// node return the records of every replica, each exactly once, labelled
// with its node and merged by time; with a replica down the answer says
// which node is missing and the command exits non-zero, still printing
// the others' records.
func TestAuditAll(t *testing.T) {
	t.Parallel()
	c, key := auditedCluster(t, testcluster.Options{NoSync: true})
	principal := "apikey:" + key.Key.ID
	// Calls spread over the three replicas: which node served each.
	servedBy := map[string]string{}
	for i, n := range c.Nodes {
		for _, id := range callAll(t, n, key.Secret, fmt.Sprintf("q%d-a", i), fmt.Sprintf("q%d-b", i)) {
			servedBy[id] = n.ID
		}
	}
	if len(servedBy) != 6 {
		t.Fatalf("6 calls gave %d distinct request ids: %v", len(servedBy), servedBy)
	}

	// What each replica holds of the principal, asked one by one.
	var want []string
	for _, n := range c.Nodes {
		one := decode[api.AuditRecords](t, "audit query", mustCLI(t, c, n, "audit", "query", "-o", "json", "-principal", principal, "-limit", "10000"))
		for _, r := range one.Records {
			want = append(want, recordKey(r))
		}
	}
	via := c.Nodes[1]
	all := decode[api.AuditAllRecords](t, "audit query -all", mustCLI(t, c, via, "audit", "query", "-all", "-o", "json", "-principal", principal, "-limit", "10000"))
	if all.Partial || len(all.Missing) != 0 || !slices.Equal(all.Nodes, []string{"n1", "n2", "n3"}) {
		t.Fatalf("audit query -all with every node up: nodes %v, partial %v, missing %+v", all.Nodes, all.Partial, all.Missing)
	}
	var got []string
	calls := map[string]int{}
	for i, r := range all.Records {
		got = append(got, recordKey(r))
		if r.Principal != principal {
			t.Errorf("record %s of principal %q", recordKey(r), r.Principal)
		}
		if i > 0 && r.Time.Before(all.Records[i-1].Time) {
			t.Errorf("record %s (%s) after %s (%s): not ordered by time", recordKey(r), r.Time, recordKey(all.Records[i-1]), all.Records[i-1].Time)
		}
		if node, ok := servedBy[r.RequestID]; ok && r.Outcome == audit.OutcomeOK {
			calls[r.RequestID]++
			if r.Node != node {
				t.Errorf("call %s served by %s is labelled %s", r.RequestID, node, r.Node)
			}
		}
	}
	slices.Sort(want)
	sorted := slices.Sorted(slices.Values(got))
	if !slices.Equal(sorted, want) {
		t.Errorf("audit query -all: %v\nwant the union of the replicas' answers: %v", sorted, want)
	}
	for id, node := range servedBy {
		if calls[id] != 1 {
			t.Errorf("call %s (served by %s) has %d ok records in the BU-wide answer, want 1", id, node, calls[id])
		}
	}

	// -limit holds across the merged set: the newest two.
	two := decode[api.AuditAllRecords](t, "audit query -all -limit 2", mustCLI(t, c, via, "audit", "query", "-all", "-o", "json", "-principal", principal, "-limit", "2"))
	if len(two.Records) != 2 || recordKey(two.Records[0]) != got[len(got)-2] || recordKey(two.Records[1]) != got[len(got)-1] {
		t.Errorf("audit query -all -limit 2: %d records, want the newest two %v", len(two.Records), got[len(got)-2:])
	}
	table := mustCLI(t, c, via, "audit", "query", "-all", "-principal", principal, "-outcome", "ok", "-limit", "10000")
	if lines := strings.Split(strings.TrimSpace(table), "\n"); !strings.HasPrefix(lines[0], "NODE") || len(lines) != 7 {
		t.Errorf("audit query -all as a table: want a NODE column and 6 rows:\n%s", table)
	}
	t.Logf("audit query -all -outcome ok:\n%s", table)
	for _, n := range c.Nodes {
		if !strings.Contains(table, "\n"+n.ID+" ") {
			t.Errorf("audit query -all as a table: no row of %s:\n%s", n.ID, table)
		}
	}

	// The export has the same records, in the same order, in one stream.
	out, errOut, code := cliSplit(t, c, via, "audit", "export", "-all", "-principal", principal)
	if code != 0 {
		t.Fatalf("audit export -all: exit %d: %s", code, errOut)
	}
	recs, trailer := exportLines(t, out)
	var exported []string
	for _, r := range recs {
		exported = append(exported, recordKey(r))
	}
	if trailer != nil || !slices.Equal(exported, got) {
		t.Errorf("audit export -all: %v (trailer %+v)\nwant the query's records in its order: %v", exported, trailer, got)
	}

	// One replica down: the others' records, visibly partial.
	down := c.Nodes[2]
	down.Kill()
	out, errOut, code = cliSplit(t, c, c.Nodes[0], "audit", "query", "-all", "-o", "json", "-principal", principal, "-limit", "10000")
	if code != 1 || !strings.Contains(errOut, "node "+down.ID) || !strings.Contains(errOut, "partial") {
		t.Errorf("audit query -all with %s down: exit %d, stderr %q; want 1 and a line naming %s", down.ID, code, errOut, down.ID)
	}
	part := decode[api.AuditAllRecords](t, "audit query -all, one node down", out)
	if !part.Partial || len(part.Missing) != 1 || part.Missing[0].Node != down.ID || !slices.Equal(part.Nodes, []string{"n1", "n2"}) {
		t.Errorf("audit query -all with %s down: partial %v, nodes %v, missing %+v", down.ID, part.Partial, part.Nodes, part.Missing)
	}
	var left []string
	for _, k := range got {
		if !strings.HasPrefix(k, down.ID+"/") {
			left = append(left, k)
		}
	}
	var partGot []string
	for _, r := range part.Records {
		partGot = append(partGot, recordKey(r))
	}
	if !slices.Equal(partGot, left) {
		t.Errorf("audit query -all with %s down: %v, want the others' records %v", down.ID, partGot, left)
	}
	out, errOut, code = cliSplit(t, c, c.Nodes[0], "audit", "query", "-all", "-principal", principal)
	t.Logf("audit query -all with %s down: exit %d\n%s%s", down.ID, code, out, errOut)
	if code != 1 || !strings.Contains(out, "PARTIAL: no records from node "+down.ID) || !strings.Contains(out, "\nn1 ") || !strings.Contains(errOut, down.ID) {
		t.Errorf("audit query -all as a table with %s down: exit %d\nstdout:\n%s\nstderr: %s", down.ID, code, out, errOut)
	}
	out, errOut, code = cliSplit(t, c, c.Nodes[0], "audit", "export", "-all", "-principal", principal)
	recs, trailer = exportLines(t, out)
	if code != 1 || trailer == nil || len(trailer.Missing) != 1 || trailer.Missing[0].Node != down.ID || len(recs) != len(left) || !strings.Contains(errOut, down.ID) {
		t.Errorf("audit export -all with %s down: exit %d, %d records (want %d), trailer %+v, stderr %q", down.ID, code, len(recs), len(left), trailer, errOut)
	}
}
