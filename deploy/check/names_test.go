package check

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"
)

const dashboardFile = "../grafana/mcpmesh-dashboard.json"

// sourceRoot is mcpmesh's module, two levels up.
const sourceRoot = "../.."

// metricLiteral is a metric name as mcpmesh's Go source declares it.
var metricLiteral = regexp.MustCompile(`"(mcpmesh_[a-z0-9_]+)"`)

// declaredMetrics returns the metric names that mcpmesh's non-test Go
// source spells out. Every metric of the node is declared with its full
// name in one string literal (prometheus.CounterOpts.Name, NewDesc), so
// this is the set a scrape can hold.
func declaredMetrics(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	err := filepath.WalkDir(sourceRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", ".cache", "node_modules", "check":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") || strings.Contains(path, string(filepath.Separator)+"test"+string(filepath.Separator)) {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range metricLiteral.FindAllSubmatch(src, -1) {
			names[string(m[1])] = true
		}
		return nil
	})
	if err != nil {
		t.Fatalf("scan %s: %v", sourceRoot, err)
	}
	if !names["mcpmesh_gateway_tool_calls_total"] {
		t.Fatalf("the scan of %s found no mcpmesh_gateway_tool_calls_total; it is not reading mcpmesh's source (found %d names)", sourceRoot, len(names))
	}
	return names
}

// metricsOf returns the metric names an expression selects.
func metricsOf(t *testing.T, where, expr string) []string {
	t.Helper()
	e, err := parser.ParseExpr(expr)
	if err != nil {
		t.Errorf("%s: %q does not parse: %v", where, expr, err)
		return nil
	}
	var names []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			names = append(names, vs.Name)
		}
		return nil
	})
	return names
}

// known reports whether name is a declared metric or a series Prometheus
// derives from one (a histogram's _bucket, _sum and _count, and up).
func known(declared map[string]bool, name string) bool {
	if declared[name] || name == "up" {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && declared[base] {
			return true
		}
	}
	return false
}

func TestRulesNameDeclaredMetrics(t *testing.T) {
	declared := declaredMetrics(t)
	for _, g := range loadRules(t).Groups {
		for _, r := range g.Rules {
			name := r.Alert + r.Record
			for _, m := range metricsOf(t, name, r.Expr) {
				if !known(declared, m) {
					t.Errorf("rule %s uses %s, which mcpmesh does not export", name, m)
				}
			}
		}
	}
}

// grafanaVars are the dashboard's variables, replaced by values the PromQL
// parser accepts.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$namespace", ".*", "$tenant", ".*")

func TestDashboard(t *testing.T) {
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			ID      int    `json:"id"`
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
			GridPos struct{ X, Y, W, H int } `json:"gridPos"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if dash.UID == "" {
		t.Errorf("the dashboard has no uid, so an import would duplicate it")
	}
	declared := declaredMetrics(t)
	ids := map[int]bool{}
	used := map[string]bool{}
	queries := 0
	for _, p := range dash.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d is used twice", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q is wider than the grid: x=%d w=%d", p.Title, p.GridPos.X, p.GridPos.W)
		}
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			queries++
			for _, m := range metricsOf(t, "panel "+p.Title, grafanaVars.Replace(tg.Expr)) {
				used[m] = true
				if !known(declared, m) {
					t.Errorf("panel %q uses %s, which mcpmesh does not export", p.Title, m)
				}
			}
		}
	}
	for _, v := range dash.Templating.List {
		if v.Definition == "" {
			continue
		}
		for _, m := range regexp.MustCompile(`mcpmesh_[a-z0-9_]+`).FindAllString(v.Definition, -1) {
			if !known(declared, m) {
				t.Errorf("variable %s uses %s, which mcpmesh does not export", v.Name, m)
			}
		}
	}
	if queries == 0 {
		t.Fatal("the dashboard has no queries")
	}
	// A governance metric nobody can see is as good as none: every
	// node metric should be on the dashboard. The Go runtime and Raft
	// metrics (mcpmesh_gometrics_*) are left to their own dashboards.
	var unseen []string
	for name := range declared {
		if strings.HasPrefix(name, "mcpmesh_gometrics") || used[name] || used[name+"_bucket"] || used[name+"_sum"] {
			continue
		}
		unseen = append(unseen, name)
	}
	sort.Strings(unseen)
	for _, name := range unseen {
		t.Errorf("metric %s is on no panel of the dashboard", name)
	}
}
