package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mcpmesh/mcpmesh/registry/apply"
	"github.com/mcpmesh/mcpmesh/registry/card"
	"github.com/mcpmesh/mcpmesh/registry/state"
	"github.com/mcpmesh/mcpmesh/test/internal/testcluster"
)

// applyJSON is the -o json output of `mcpmesh apply`.
type applyJSON struct {
	Dir      string          `json:"dir"`
	DryRun   bool            `json:"dryRun"`
	Changes  []apply.Change  `json:"changes"`
	Problems []apply.Problem `json:"problems"`
	Counts   apply.Counts    `json:"counts"`
}

// wantLines fails the test unless out holds every want as a whole line.
func wantLines(t *testing.T, what, out string, wants ...string) {
	t.Helper()
	got := map[string]bool{}
	for _, l := range strings.Split(out, "\n") {
		got[strings.TrimSpace(l)] = true
	}
	for _, w := range wants {
		if !got[w] {
			t.Errorf("%s: no line %q in output:\n%s", what, w, out)
		}
	}
}

// tenantsByName indexes `tenant list` output.
func tenantsByName(ts []state.Tenant) map[string]state.Tenant {
	m := map[string]state.Tenant{}
	for _, t := range ts {
		m[t.Name] = t
	}
	return m
}

// TestApply: `mcpmesh apply -f examples/catalog/hr` submits the example card
// and creates the tenants; applying it again changes nothing and says so; a
// dry run of a catalog with a changed card shows the conflict and writes
// nothing, and so does the real apply of it; an invalid card fails naming
// the file and the field.
func TestApply(t *testing.T) {
	t.Parallel()
	c := startCluster(t, testcluster.Options{Nodes: 1, NoSync: true})
	n := c.Nodes[0]
	hr := filepath.Join("..", "..", "examples", "catalog", "hr")
	const dir = "corp.hr/directory"
	dirRef := ref(dir, "1.0.0")
	rawDirectory, err := os.ReadFile(filepath.Join(hr, "directory-1.0.0.json"))
	if err != nil {
		t.Fatal(err)
	}
	wantHash, err := card.CanonicalHash(rawDirectory)
	if err != nil {
		t.Fatal(err)
	}

	// A dry run against the empty registry plans everything and writes nothing.
	out := mustCLI(t, c, n, "apply", "-f", hr, "-dry-run", "-o", "json")
	plan := decode[applyJSON](t, "apply -dry-run -o json", out)
	if !plan.DryRun || plan.Counts != (apply.Counts{Create: 4}) {
		t.Errorf("dry run on an empty registry: dryRun %v, counts %+v; want 4 to create (a card, two tenants, the policies):\n%s", plan.DryRun, plan.Counts, out)
	}
	if _, out, ok := show(t, c, n, dirRef); ok {
		t.Fatalf("the dry run submitted %s:\n%s", dirRef, out)
	}
	if ts := tenants(t, c, n, "-consistent"); len(ts) != 0 {
		t.Fatalf("the dry run created tenants: %+v", ts)
	}

	// First apply: the card is submitted (not approved) and the tenants exist.
	out = mustCLI(t, c, n, "apply", "-f", hr)
	wantLines(t, "first apply", out,
		"create "+dirRef, "create tenant payroll", "create tenant benefits", "create policies (+policies.cedar)",
		"applied: 4 created, 0 updated, 0 unchanged; new versions await review (mcpmesh registry approve)")
	d, out, ok := show(t, c, n, dirRef, "-consistent")
	if !ok {
		t.Fatalf("after apply, registry show %s failed:\n%s", dirRef, out)
	}
	if d.State != card.StateSubmitted || d.CardHash != wantHash {
		t.Errorf("%s after apply: state %s, card hash %s; want submitted (apply never approves) and %s", dirRef, d.State, d.CardHash, wantHash)
	}
	before := tenantsByName(tenants(t, c, n, "-consistent"))
	wantOwners := map[string][]string{
		"payroll":  {"alice@corp.example", "payroll-leads@corp.example"},
		"benefits": {"bob@corp.example"},
	}
	for name, owners := range wantOwners {
		if diff := cmp.Diff(owners, before[name].Owners); diff != "" {
			t.Errorf("tenant %s owners (-want +got):\n%s", name, diff)
		}
	}

	// Second apply: every object unchanged, exit 0, and nothing written.
	out = mustCLI(t, c, n, "apply", "-f", hr)
	wantLines(t, "second apply", out, "unchanged "+dirRef, "unchanged tenant payroll", "unchanged tenant benefits", "unchanged policies", "nothing to change: 4 unchanged")
	res := decode[applyJSON](t, "apply -o json", mustCLI(t, c, n, "apply", "-f", hr, "-o", "json"))
	if res.Counts != (apply.Counts{Unchanged: 4}) {
		t.Errorf("third apply -o json: counts %+v, want 4 unchanged", res.Counts)
	}
	for _, ch := range res.Changes {
		if ch.Applied {
			t.Errorf("third apply wrote %s", ch.Ref())
		}
	}
	d2, _, _ := show(t, c, n, dirRef, "-consistent")
	after := tenantsByName(tenants(t, c, n, "-consistent"))
	if d2.ModifyIndex != d.ModifyIndex || after["payroll"].ModifyIndex != before["payroll"].ModifyIndex || after["benefits"].ModifyIndex != before["benefits"].ModifyIndex {
		t.Errorf("reapplying changed the registry: version index %d → %d, payroll %d → %d, benefits %d → %d",
			d.ModifyIndex, d2.ModifyIndex, before["payroll"].ModifyIndex, after["payroll"].ModifyIndex, before["benefits"].ModifyIndex, after["benefits"].ModifyIndex)
	}

	// A catalog whose 1.0.0 card was edited without a version bump, next to
	// a new card and a tenant change.
	changed := t.TempDir()
	edited := strings.Replace(string(rawDirectory), "Employee directory of the HR BU", "Employee directory of HR", 1)
	if edited == string(rawDirectory) {
		t.Fatal("the example card's description changed; update the test's edit")
	}
	editedPath := writeFile(t, changed, "directory-1.0.0.json", []byte(edited))
	if err := os.MkdirAll(filepath.Join(changed, "new"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(changed, "new"), "search.json", testcluster.Card("corp.hr/search", "1.0.0"))
	writeFile(t, changed, "tenants.yaml", []byte("- {name: payroll, displayName: Payroll, owners: [carol@corp.example]}\n"))
	conflictLine := "conflict " + dirRef + " (" + editedPath + "): versions are immutable; bump the version"
	for _, dry := range []bool{true, false} {
		args := []string{"apply", "-f", changed}
		what := "apply of a changed card"
		if dry {
			args = append(args, "-dry-run")
			what = "apply -dry-run of a changed card"
		}
		out, code := c.CLI(n, args...)
		if code != 1 {
			t.Errorf("%s: exit %d, want 1:\n%s", what, code, out)
		}
		wantLines(t, what, out, conflictLine, "create corp.hr/search@1.0.0", "update tenant payroll (owners)")
		if !strings.Contains(out, "nothing was changed") {
			t.Errorf("%s does not say nothing was changed:\n%s", what, out)
		}
		if _, out, ok := show(t, c, n, "corp.hr/search@1.0.0", "-consistent"); ok {
			t.Errorf("%s submitted corp.hr/search@1.0.0:\n%s", what, out)
		}
		if got := tenantsByName(tenants(t, c, n, "-consistent"))["payroll"]; got.ModifyIndex != before["payroll"].ModifyIndex {
			t.Errorf("%s changed tenant payroll: %+v", what, got)
		}
		if d3, _, _ := show(t, c, n, dirRef, "-consistent"); d3.CardHash != wantHash {
			t.Errorf("%s changed the card of %s: hash %s", what, dirRef, d3.CardHash)
		}
	}

	// An invalid card, next to a valid one: exit 1 naming the file and the
	// field, and nothing submitted.
	invalid := t.TempDir()
	bad := strings.Replace(string(testcluster.Card("corp.hr/bad", "1.0.0")), `"riskTier": "low"`, `"riskTier": "extreme"`, 1)
	badPath := writeFile(t, invalid, "bad.json", []byte(bad))
	writeFile(t, invalid, "good.json", testcluster.Card("corp.hr/good", "1.0.0"))
	out, code := c.CLI(n, "apply", "-f", invalid)
	if code != 1 {
		t.Errorf("apply of an invalid card: exit %d, want 1:\n%s", code, out)
	}
	wantLines(t, "apply of an invalid card", out, "mcpmesh apply: 1 problem in 1 file; nothing was applied")
	if !strings.Contains(out, badPath+": _meta.io.mcpmesh/governance.riskTier: ") || !strings.Contains(out, "extreme") {
		t.Errorf("apply of an invalid card does not name the file, the field and the value:\n%s", out)
	}
	if _, out, ok := show(t, c, n, "corp.hr/good@1.0.0", "-consistent"); ok {
		t.Errorf("apply of a catalog with an invalid card submitted the valid one:\n%s", out)
	}
}
