package apply

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mcpmesh/mcpmesh/registry/state"
)

func (f *fakeRegistry) Quotas(context.Context, bool) (state.Quotas, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	q := f.quotas
	q.Quotas = slices.Clone(q.Quotas)
	return q, nil
}

func (f *fakeRegistry) PutQuotas(_ context.Context, qs []state.Quota) (state.Quotas, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.quotas = state.Quotas{Quotas: slices.Clone(qs), ModifyIndex: f.quotas.ModifyIndex + 1}
	f.writes = append(f.writes, fmt.Sprintf("put quotas (%d tenants)", len(qs)))
	return f.quotas, nil
}

const twoQuotas = `# monthly limits per tenant
- tenant: payroll
  calls: 100000
  budget: 250.50
  currency: EUR
  warnAt: 0.9
- {tenant: benefits, calls: 500}
`

func TestParseQuotas(t *testing.T) {
	qs, ps := ParseQuotas("quotas.yaml", []byte(twoQuotas))
	if len(ps) > 0 {
		t.Fatalf("problems: %v", ps)
	}
	want := []QuotaSpec{
		{File: "quotas.yaml", Line: 2, Quota: state.Quota{Tenant: "payroll", Calls: 100000, Budget: 250.5, Currency: "EUR", WarnAt: 0.9}},
		{File: "quotas.yaml", Line: 7, Quota: state.Quota{Tenant: "benefits", Calls: 500}},
	}
	if diff := cmp.Diff(want, qs); diff != "" {
		t.Errorf("quotas (-want +got):\n%s", diff)
	}

	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"not a list", "payroll: {calls: 5}\n", "quotas.yaml:1: must be a list of quotas"},
		{"entry not a mapping", "- payroll\n", "quotas.yaml:1: entry 1 must be a mapping"},
		{"no tenant", "- calls: 5\n", "quotas.yaml:1: tenant: is required"},
		{"bad tenant", "- {tenant: Payroll, calls: 5}\n", "quotas.yaml:1: tenant: tenant name \"Payroll\""},
		{"no limit", "- tenant: payroll\n", "quotas.yaml:1: calls: tenant payroll: set calls, budget or both"},
		{"calls not a number", "- tenant: payroll\n  calls: lots\n", "quotas.yaml:2: calls: must be a whole number"},
		{"calls fractional", "- tenant: payroll\n  calls: 1.5\n", "quotas.yaml:2: calls: must be a whole number"},
		{"calls zero", "- tenant: payroll\n  calls: 0\n", "quotas.yaml:2: calls: must be a whole number of calls per month above 0"},
		{"budget negative", "- tenant: payroll\n  budget: -5\n  currency: EUR\n", "quotas.yaml:2: budget: must be an amount"},
		{"budget without currency", "- tenant: payroll\n  budget: 5\n", "quotas.yaml:2: currency: is required with a budget"},
		{"currency lowercase", "- tenant: payroll\n  budget: 5\n  currency: eur\n", "quotas.yaml:3: currency: must be an ISO 4217 code"},
		{"currency without budget", "- tenant: payroll\n  calls: 5\n  currency: EUR\n", "quotas.yaml:3: budget: currency without a budget"},
		{"warnAt too big", "- tenant: payroll\n  calls: 5\n  warnAt: 80\n", "quotas.yaml:3: warnAt: must be a share"},
		{"unknown key", "- tenant: payroll\n  calls: 5\n  warn_at: 0.5\n", "quotas.yaml:3: warn_at: unknown key"},
		{"wrong case", "- tenant: payroll\n  Calls: 5\n", `did you mean "calls"?`},
		{"duplicate key", "- tenant: payroll\n  calls: 5\n  calls: 6\n", "quotas.yaml:3: calls: duplicate key"},
		{"tenant twice", "- {tenant: payroll, calls: 5}\n- {tenant: payroll, calls: 6}\n", "quotas.yaml:2: tenant: tenant payroll also has a quota on line 1"},
		{"not YAML", "- tenant: [payroll\n", "quotas.yaml: not valid YAML"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, ps := ParseQuotas("quotas.yaml", []byte(tc.yaml))
			if len(ps) == 0 {
				t.Fatalf("no problem; want %q", tc.want)
			}
			if got := ps[0].String(); !strings.Contains(got, tc.want) {
				t.Errorf("problem %q does not contain %q", got, tc.want)
			}
		})
	}
	for _, empty := range []string{"", "# none\n", "[]\n"} {
		qs, ps := ParseQuotas("quotas.yaml", []byte(empty))
		if len(ps) > 0 || qs == nil || len(qs) != 0 {
			t.Errorf("quotas.yaml %q: %v, %v; want an empty set", empty, qs, ps)
		}
	}
}

func TestPlanQuotas(t *testing.T) {
	f := newFake()
	ctx := t.Context()
	// No quotas.yaml: the registry's quotas are left alone.
	cat, err := Load(writeCatalog(t, map[string]string{"tenants.yaml": twoTenants}))
	if err != nil {
		t.Fatal(err)
	}
	if cat.Quotas != nil {
		t.Fatalf("a catalog without quotas.yaml has quotas %v", cat.Quotas)
	}
	p, err := NewPlan(ctx, f, cat)
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range p.Changes {
		if ch.Kind == KindQuotas {
			t.Fatalf("plan without quotas.yaml touches the quotas: %v", ch)
		}
	}

	dir := writeCatalog(t, map[string]string{"quotas.yaml": twoQuotas})
	cat, err = Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	p, err = NewPlan(ctx, f, cat)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Changes[len(p.Changes)-1].String(); got != "create quotas (+payroll, +benefits)" {
		t.Errorf("plan line %q", got)
	}
	if _, err := Apply(ctx, f, p); err != nil {
		t.Fatal(err)
	}
	if q, _ := f.Quotas(ctx, true); len(q.Quotas) != 2 || q.Quotas[0].Budget != 250.5 {
		t.Errorf("registry quotas after apply: %+v", q)
	}
	p, _ = NewPlan(ctx, f, cat)
	if got := p.Changes[len(p.Changes)-1]; got.Action != Unchanged {
		t.Errorf("second plan: %v; want unchanged", got)
	}
	// A changed, an added and a removed tenant.
	cat, _ = Load(writeCatalog(t, map[string]string{"quotas.yaml": "- {tenant: payroll, calls: 5}\n- {tenant: sales, calls: 7}\n"}))
	p, _ = NewPlan(ctx, f, cat)
	if got := p.Changes[len(p.Changes)-1].String(); got != "update quotas (~payroll, +sales, -benefits)" {
		t.Errorf("plan line %q", got)
	}
	// A bad quotas.yaml aborts Load, naming file and line.
	_, err = Load(writeCatalog(t, map[string]string{"quotas.yaml": "- {tenant: payroll, budget: 5}\n"}))
	var ie *InvalidError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "quotas.yaml:1: currency: is required with a budget") {
		t.Errorf("Load of a bad quotas.yaml: %v", err)
	}
	if _, err := Load(writeCatalog(t, map[string]string{"quotas.yml": twoQuotas})); err == nil || !strings.Contains(err.Error(), "must be named quotas.yaml") {
		t.Errorf("quotas.yml: %v; want a hint to rename it", err)
	}
	if _, err := Load(writeCatalog(t, map[string]string{"limits.yml": "- {tenant: payroll, rate: 10/s}\n"})); err == nil || !strings.Contains(err.Error(), "rate limits file must be named limits.yaml") {
		t.Errorf("limits.yml: %v; want a hint to rename it", err)
	}
}

func FuzzParseQuotas(f *testing.F) {
	f.Add([]byte(twoQuotas))
	f.Add([]byte("- {tenant: a, budget: 1e400, currency: EUR}\n"))
	f.Add([]byte("- tenant: payroll\n  calls: 9223372036854775808\n"))
	f.Add([]byte("&a [*a]"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		qs, ps := ParseQuotas("quotas.yaml", raw)
		if len(ps) > 0 {
			return
		}
		// What the parser accepts, the registry accepts.
		for _, q := range qs {
			if err := state.ValidateQuota(q.Quota); err != nil {
				t.Fatalf("parsed %+v, which the registry refuses: %v", q.Quota, err)
			}
		}
	})
}
