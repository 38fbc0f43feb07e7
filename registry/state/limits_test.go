package state

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestLimitSet(t *testing.T) {
	a := &applier{t: t, f: newTestFSM(t)}
	if ls, err := a.f.Limits(); err != nil || len(ls.Limits) != 0 {
		t.Fatalf("fresh registry limits = %+v, %v; want none", ls, err)
	}
	set := []Limit{
		{Tool: "corp.hr/directory/search", Rate: "50/s", Burst: 50},
		{Tenant: "payroll", Rate: "100/s", Burst: 200},
		{Identity: "spiffe://hr.example.corp/agent/batch-*", Rate: "600/m", Burst: 10},
		{Tenant: "payroll", Tool: "corp.hr/directory/search", Rate: "10/s", Burst: 10},
	}
	put := a.mustOK(PutLimits{Limits: set, By: "alice", At: t0})
	ls, err := a.f.Limits()
	if err != nil {
		t.Fatal(err)
	}
	var scopes []string
	for _, l := range ls.Limits {
		scopes = append(scopes, l.Scope())
	}
	want := []string{"identity=spiffe://hr.example.corp/agent/batch-*", "tenant=payroll", "tenant=payroll,tool=corp.hr/directory/search", "tool=corp.hr/directory/search"}
	if diff := cmp.Diff(want, scopes); diff != "" {
		t.Errorf("stored scopes (-want +got):\n%s", diff)
	}
	if ls.ModifyIndex != put.Index || ls.UpdatedBy != "alice" {
		t.Errorf("set version = %d by %q, want %d by alice", ls.ModifyIndex, ls.UpdatedBy, put.Index)
	}
	// The same set in another order changes nothing.
	reordered := []Limit{set[3], set[2], set[1], set[0]}
	if r := a.mustOK(PutLimits{Limits: reordered, By: "bob", At: t0.Add(time.Minute)}); !r.Unchanged {
		t.Error("putting the same set in another order changed it")
	}
	a.mustFail(PutLimits{Limits: []Limit{set[1], set[1]}}, KindInvalid, "given twice")
	a.mustFail(PutLimits{Limits: []Limit{{Tenant: "payroll", Rate: "fast", Burst: 1}}}, KindInvalid, "rate \"fast\"")
	// An empty set removes every limit.
	a.mustOK(PutLimits{By: "bob", At: t0})
	if ls, _ := a.f.Limits(); len(ls.Limits) != 0 {
		t.Errorf("after an empty put: %+v", ls.Limits)
	}
}

func TestLiveReplicas(t *testing.T) {
	a := &applier{t: t, f: newTestFSM(t)}
	if lr, err := a.f.LiveReplicas(); err != nil || lr.Count != 1 || lr.Index != 0 {
		t.Fatalf("fresh registry live replicas = %+v, %v; want count 1, never set", lr, err)
	}
	set := a.mustOK(SetLiveReplicas{Count: 2, Voters: 3, Down: []string{"n3"}, Leader: "n1", At: t0})
	lr, _ := a.f.LiveReplicas()
	if want := (LiveReplicas{Count: 2, Voters: 3, Down: []string{"n3"}, Leader: "n1", At: t0, Index: set.Index}); !cmp.Equal(want, lr) {
		t.Errorf("live replicas = %+v, want %+v", lr, want)
	}
	if r := a.mustOK(SetLiveReplicas{Count: 2, Voters: 3, Down: []string{"n3"}, Leader: "n2", At: t0.Add(time.Second)}); !r.Unchanged {
		t.Error("the same count from another leader was a change")
	}
	a.mustFail(SetLiveReplicas{Count: 0, Voters: 3}, KindInvalid, "want 1 ≤ count ≤ voters")
	a.mustFail(SetLiveReplicas{Count: 4, Voters: 3}, KindInvalid, "want 1 ≤ count ≤ voters")
}

func TestValidateLimit(t *testing.T) {
	for _, tc := range []struct {
		name  string
		limit Limit
		want  string // "" = valid
	}{
		{"tenant", Limit{Tenant: "payroll", Rate: "100/s", Burst: 1}, ""},
		{"every tenant", Limit{Tenant: "*", Rate: "100/s", Burst: 1}, ""},
		{"identity", Limit{Identity: "apikey:aaaaaaaaaaaa", Rate: "1/h", Burst: 1}, ""},
		{"every identity", Limit{Identity: "*", Rate: "1/h", Burst: 1}, ""},
		{"tool", Limit{Tool: "corp.finance/ledger/transfer_funds", Rate: "5/m", Burst: 5}, ""},
		{"no scope", Limit{Rate: "1/s", Burst: 1}, "needs a scope"},
		{"identity with tenant", Limit{Identity: "anonymous", Tenant: "payroll", Rate: "1/s", Burst: 1}, "cannot be combined"},
		{"mcp tool name", Limit{Tool: "finance.transfer_funds", Rate: "1/s", Burst: 1}, "want <server>/<tool>"},
		{"bad identity", Limit{Identity: "bob", Rate: "1/s", Burst: 1}, "want a principal id"},
		{"inner star", Limit{Identity: "spiffe://*/agent", Rate: "1/s", Burst: 1}, "only a trailing *"},
		{"bad tenant", Limit{Tenant: "Payroll", Rate: "1/s", Burst: 1}, "tenant name"},
		{"no unit", Limit{Tenant: "payroll", Rate: "100", Burst: 1}, "want <calls>/<unit>"},
		{"bad unit", Limit{Tenant: "payroll", Rate: "100/d", Burst: 1}, "unknown unit"},
		{"zero rate", Limit{Tenant: "payroll", Rate: "0/s", Burst: 1}, "from 1 to"},
		{"zero burst", Limit{Tenant: "payroll", Rate: "1/s"}, "burst 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateLimit(tc.limit)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("ValidateLimit(%+v) = %v, want nil", tc.limit, err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("ValidateLimit(%+v) = %v, want an error containing %q", tc.limit, err, tc.want)
			}
		})
	}
}

func TestParseRate(t *testing.T) {
	for in, want := range map[string]Rate{"100/s": {100, time.Second}, "600/m": {600, time.Minute}, " 7 / h ": {7, time.Hour}} {
		got, err := ParseRate(in)
		if err != nil || got != want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if r, _ := ParseRate("600/m"); r.PerSecond() != 10 || r.String() != "600/m" || DefaultBurst(r) != 10 {
		t.Errorf("600/m: %v/s, %q, default burst %d", r.PerSecond(), r.String(), DefaultBurst(r))
	}
	if r, _ := ParseRate("1/h"); DefaultBurst(r) != 1 {
		t.Errorf("default burst of 1/h = %d, want 1", DefaultBurst(r))
	}
}

// TestScopedTenants: limits, quotas and kill switches may name a tenant
// of another BU as its forwarded calls carry it (<trust domain>/<tenant>);
// anything else with a slash is refused, naming what is wrong.
func TestScopedTenants(t *testing.T) {
	for _, ok := range []string{"payroll", "hr.example.corp/payroll", "a.b/c-1"} {
		if err := ValidateScopedTenant(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for bad, want := range map[string]string{
		"/payroll":                "not a trust domain",
		"HR.example.corp/payroll": "not a trust domain",
		"hr.example.corp/":        "after the trust domain",
		"hr.example.corp/Pay":     "after the trust domain",
		"hr.example.corp/a/b":     "after the trust domain",
		"Payroll":                 "lowercase",
	} {
		if err := ValidateScopedTenant(bad); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v; want an error saying %q", bad, err, want)
		}
	}
	if err := ValidateQuota(Quota{Tenant: "hr.example.corp/payroll", Calls: 10}); err != nil {
		t.Errorf("quota of a foreign tenant: %v", err)
	}
	if err := ValidateKillTarget(KillTenant, "hr.example.corp/payroll"); err != nil {
		t.Errorf("kill switch of a foreign tenant: %v", err)
	}
}
