package apply

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mcpmesh/mcpmesh/registry/api"
	"github.com/mcpmesh/mcpmesh/registry/state"
)

func (f *fakeRegistry) Limits(context.Context, bool) (api.LimitsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return api.LimitsResponse{Limits: state.Limits{Limits: slices.Clone(f.limits)}}, nil
}

func (f *fakeRegistry) PutLimits(_ context.Context, ls []state.Limit) (api.LimitsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := state.ValidateLimits(ls); err != nil {
		return api.LimitsResponse{}, err
	}
	f.limits = slices.Clone(ls)
	state.SortLimits(f.limits)
	f.writes = append(f.writes, fmt.Sprintf("put limits (%d)", len(ls)))
	return api.LimitsResponse{Limits: state.Limits{Limits: f.limits}}, nil
}

func TestParseLimits(t *testing.T) {
	ls, ps := ParseLimits("limits.yaml", []byte(`
# the BU's rate limits
- tenant: payroll
  rate: 100/s
  burst: 200
- identity: "spiffe://hr.example.corp/agent/batch-*"
  rate: 600/m
- tool: corp.hr/directory/search
  rate: 50/s
  burst: 50
- {tenant: payroll, tool: corp.hr/directory/search, rate: 10/s, burst: 5}
`))
	if len(ps) > 0 {
		t.Fatalf("problems: %v", ps)
	}
	want := []state.Limit{
		{Tenant: "payroll", Rate: "100/s", Burst: 200},
		{Identity: "spiffe://hr.example.corp/agent/batch-*", Rate: "600/m", Burst: 10},
		{Tool: "corp.hr/directory/search", Rate: "50/s", Burst: 50},
		{Tenant: "payroll", Tool: "corp.hr/directory/search", Rate: "10/s", Burst: 5},
	}
	if diff := cmp.Diff(want, ls); diff != "" {
		t.Errorf("limits (-want +got):\n%s", diff)
	}
	for _, empty := range []string{"", "# nothing yet\n", "~\n"} {
		if ls, ps := ParseLimits("limits.yaml", []byte(empty)); len(ps) > 0 || ls == nil || len(ls) != 0 {
			t.Errorf("ParseLimits(%q) = %v, %v; want an empty set", empty, ls, ps)
		}
	}
}

func TestParseLimitsProblems(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string // each problem's String, in order
	}{
		{"not a list", "tenant: payroll\n", []string{"f:1: must be a list of limits"}},
		{"not yaml", "- [\n", []string{"f: not valid YAML"}},
		{"entry not a mapping", "- payroll\n", []string{"f:1: limit 1 must be a mapping"}},
		{"bad rate", "- tenant: payroll\n  rate: fast\n", []string{`f:2: rate: rate "fast": want <calls>/<unit>`}},
		{"bad unit", "- tenant: payroll\n  rate: 5/d\n", []string{`f:2: rate: rate "5/d": unknown unit "d"`}},
		{"missing rate", "- tenant: payroll\n  burst: 3\n", []string{"f:1: rate: is required"}},
		{"bad burst", "- tenant: payroll\n  rate: 1/s\n  burst: lots\n", []string{"f:3: burst: must be a whole number"}},
		{"zero burst", "- tenant: payroll\n  rate: 1/s\n  burst: 0\n", []string{"f:3: burst: must be a whole number"}},
		{"unknown key", "- tenant: payroll\n  rate: 1/s\n  Burst: 3\n", []string{`f:3: Burst: unknown key: did you mean "burst"?`}},
		{"other key", "- tenant: payroll\n  rate: 1/s\n  per: user\n", []string{"f:3: per: unknown key: a limit has identity, tenant, tool, rate and burst"}},
		{"duplicate key", "- tenant: payroll\n  tenant: benefits\n  rate: 1/s\n", []string{"f:2: tenant: duplicate key"}},
		{"no scope", "- rate: 1/s\n", []string{"f:1: a limit needs a scope"}},
		{"mcp tool name", "- tool: hr.search\n  rate: 1/s\n", []string{`f:1: tool: tool "hr.search": want <server>/<tool>`}},
		{"bad tenant", "- tenant: Payroll\n  rate: 1/s\n", []string{`f:1: tenant: tenant name "Payroll"`}},
		{"identity and tool", "- identity: anonymous\n  tool: corp.hr/d/search\n  rate: 1/s\n", []string{"f:1: limit identity=anonymous,tool=corp.hr/d/search: identity cannot be combined"}},
		{"duplicate scope", "- tenant: payroll\n  rate: 1/s\n- tenant: payroll\n  rate: 2/s\n", []string{"f:3: a limit of scope tenant=payroll is also declared on line 1"}},
		{"two bad entries", "- tenant: payroll\n  rate: 1/x\n- tool: x\n  rate: 1/s\n", []string{`f:2: rate: rate "1/x"`, `f:3: tool: tool "x"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ls, ps := ParseLimits("f", []byte(tc.yaml))
			if ls != nil {
				t.Errorf("limits = %v, want nil with problems", ls)
			}
			if len(ps) != len(tc.want) {
				t.Fatalf("problems = %v, want %d starting %q", ps, len(tc.want), tc.want)
			}
			for i, p := range ps {
				if !strings.HasPrefix(p.String(), tc.want[i]) {
					t.Errorf("problem %d = %q, want it to start %q", i, p.String(), tc.want[i])
				}
			}
		})
	}
}

func TestPlanLimits(t *testing.T) {
	f := newFake()
	dir := writeCatalog(t, map[string]string{LimitsFile: "- {tenant: payroll, rate: 10/s, burst: 10}\n- {tool: corp.hr/directory/search, rate: 5/s}\n"})
	if diff := cmp.Diff([]string{"create limits (+tenant=payroll, +tool=corp.hr/directory/search)"}, lines(mustPlan(t, f, dir))); diff != "" {
		t.Errorf("first plan (-want +got):\n%s", diff)
	}
	if _, err := Apply(t.Context(), f, mustPlan(t, f, dir)); err != nil {
		t.Fatal(err)
	}
	if got := lines(mustPlan(t, f, dir)); !slices.Equal(got, []string{"unchanged limits"}) {
		t.Errorf("plan after apply = %v", got)
	}
	dir2 := writeCatalog(t, map[string]string{LimitsFile: "- {tenant: payroll, rate: 20/s, burst: 10}\n- {identity: anonymous, rate: 1/s}\n"})
	if diff := cmp.Diff([]string{"update limits (~tenant=payroll, +identity=anonymous, -tool=corp.hr/directory/search)"}, lines(mustPlan(t, f, dir2))); diff != "" {
		t.Errorf("second plan (-want +got):\n%s", diff)
	}
	if _, err := Apply(t.Context(), f, mustPlan(t, f, dir2)); err != nil {
		t.Fatal(err)
	}
	if len(f.limits) != 2 || f.limits[1].Rate != "20/s" {
		t.Errorf("registry limits = %+v", f.limits)
	}
	// A catalog without limits.yaml leaves the set alone; an empty one
	// removes every limit.
	if got := lines(mustPlan(t, f, writeCatalog(t, map[string]string{"x.txt": ""}))); len(got) != 0 {
		t.Errorf("plan without limits.yaml = %v", got)
	}
	if got := lines(mustPlan(t, f, writeCatalog(t, map[string]string{LimitsFile: "# none\n"}))); !slices.Equal(got, []string{"update limits (-identity=anonymous, -tenant=payroll)"}) {
		t.Errorf("plan with an empty limits.yaml = %v", got)
	}
	// A bad limits.yaml fails the whole load, naming the file and line.
	_, err := Load(writeCatalog(t, map[string]string{LimitsFile: "- {tenant: payroll, rate: 1/d}\n"}))
	if err == nil || !strings.Contains(err.Error(), LimitsFile+":1: rate:") {
		t.Errorf("Load with a bad limits.yaml: %v", err)
	}
}

// FuzzParseLimits: any input gives limits or problems, never a panic, and
// the limits it accepts the registry accepts too.
func FuzzParseLimits(f *testing.F) {
	f.Add([]byte("- {tenant: payroll, rate: 100/s, burst: 200}\n"))
	f.Add([]byte("- identity: \"spiffe://hr.example.corp/agent/*\"\n  rate: 600/m\n- tool: corp.hr/directory/search\n  tenant: \"*\"\n  rate: 1/h\n"))
	f.Add([]byte("- tenant: payroll\n  rate: 1/s\n  burst: 0\n"))
	f.Add([]byte("tenant: x\n"))
	f.Add([]byte("- [1, 2]\n- &a {rate: *a}\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		ls, ps := ParseLimits("f", raw)
		if len(ps) > 0 {
			if ls != nil {
				t.Fatalf("limits %v with problems %v", ls, ps)
			}
			for _, p := range ps {
				if p.Message == "" {
					t.Fatalf("problem without a message: %+v", p)
				}
			}
			return
		}
		if err := state.ValidateLimits(ls); err != nil {
			t.Fatalf("ParseLimits accepted %v, which the registry refuses: %v", ls, err)
		}
	})
}
