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

func (f *fakeRegistry) Exports(context.Context, bool) (state.Exports, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	es := f.exports
	es.Exports = slices.Clone(es.Exports)
	return es, nil
}

func (f *fakeRegistry) PutExports(_ context.Context, es []state.Export) (state.Exports, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := state.ValidateExports(es); err != nil {
		return state.Exports{}, err
	}
	f.exports = state.Exports{Exports: slices.Clone(es), ModifyIndex: f.exports.ModifyIndex + 1}
	f.writes = append(f.writes, fmt.Sprintf("put exports (%d)", len(es)))
	return f.exports, nil
}

const twoExports = `# what finance shares
- server: corp.finance/ledger
  tools: [generate_report]
  versions: ["2.x"]
  to:
    - trust_domain: hr.example.corp
      principals: ["oidc:", "spiffe://hr.example.corp/agent/"]
      scopes: ["reports:read"]
- server: corp.finance/fx
  tools: [rate]
  to: [{trust_domain: sales.example.corp}]
`

func TestParseExports(t *testing.T) {
	es, ps := ParseExports("exports.yaml", []byte(twoExports))
	if len(ps) > 0 {
		t.Fatalf("problems: %v", ps)
	}
	want := []ExportSpec{
		{File: "exports.yaml", Line: 2, Export: state.Export{Server: "corp.finance/ledger", Tools: []string{"generate_report"}, Versions: []string{"2.x"},
			To: []state.Consumer{{TrustDomain: "hr.example.corp", Principals: []string{"oidc:", "spiffe://hr.example.corp/agent/"}, Scopes: []string{"reports:read"}}}}},
		{File: "exports.yaml", Line: 9, Export: state.Export{Server: "corp.finance/fx", Tools: []string{"rate"}, To: []state.Consumer{{TrustDomain: "sales.example.corp"}}}},
	}
	if diff := cmp.Diff(want, es); diff != "" {
		t.Errorf("exports (-want +got):\n%s", diff)
	}
	hr := "  to: [{trust_domain: hr.example.corp}]\n"
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"not a list", "server: x\n", "exports.yaml:1: must be a list of exports"},
		{"entry not a mapping", "- corp.finance/ledger\n", "exports.yaml:1: export 1 must be a mapping"},
		{"no server", "- tools: [a]\n" + hr, "exports.yaml:1: server: is required"},
		{"bad server", "- server: ledger\n  tools: [a]\n" + hr, "exports.yaml:1: server: server \"ledger\""},
		{"no tools", "- server: corp.finance/ledger\n" + hr, "exports.yaml:1: tools: export of corp.finance/ledger: tools is required"},
		{"wildcard", "- server: corp.finance/ledger\n  tools: ['*']\n" + hr, "exports.yaml:2: tools: export of corp.finance/ledger: tool \"*\""},
		{"tools not a list", "- server: corp.finance/ledger\n  tools: a\n" + hr, "exports.yaml:2: tools: must be a list"},
		{"bad version", "- server: corp.finance/ledger\n  tools: [a]\n  versions: ['^2']\n" + hr, "versions: export of corp.finance/ledger: version \"^2\""},
		{"no to", "- server: corp.finance/ledger\n  tools: [a]\n", "exports.yaml:1: to: export of corp.finance/ledger: to is required"},
		{"bad trust domain", "- server: corp.finance/ledger\n  tools: [a]\n  to:\n    - trust_domain: spiffe://hr.example.corp\n", "exports.yaml:4: to.trust_domain: must be a trust domain name"},
		{"consumer without trust domain", "- server: corp.finance/ledger\n  tools: [a]\n  to:\n    - scopes: [x]\n", "exports.yaml:4: to.trust_domain: is required"},
		{"bad scope", "- server: corp.finance/ledger\n  tools: [a]\n  to:\n    - trust_domain: hr.example.corp\n      scopes: ['a\"b']\n", "exports.yaml:4: to: export of corp.finance/ledger to hr.example.corp: scope"},
		{"unknown key", "- server: corp.finance/ledger\n  tool: [a]\n" + hr, `exports.yaml:2: tool: unknown key`},
		{"consumer key case", "- server: corp.finance/ledger\n  tools: [a]\n  to:\n    - trustDomain: hr.example.corp\n", `did you mean "trust_domain"?`},
		{"duplicate key", "- server: corp.finance/ledger\n  tools: [a]\n  tools: [b]\n" + hr, "exports.yaml:3: tools: duplicate key"},
		{"overlapping grants", "- server: corp.finance/ledger\n  tools: [a]\n" + hr + "- server: corp.finance/ledger\n  tools: [a, b]\n  versions: ['1.x']\n" + hr,
			"exports.yaml:4: tools: tool a of corp.finance/ledger is also exported to hr.example.corp by export 1"},
		{"not YAML", "- server: [x\n", "exports.yaml: not valid YAML"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, ps := ParseExports("exports.yaml", []byte(tc.yaml))
			if len(ps) == 0 {
				t.Fatalf("no problem; want %q", tc.want)
			}
			if got := ps[0].String(); !strings.Contains(got, tc.want) {
				t.Errorf("problem %q does not contain %q", got, tc.want)
			}
		})
	}
}

func TestPlanExports(t *testing.T) {
	f := newFake()
	ctx := t.Context()
	cat, err := Load(writeCatalog(t, map[string]string{"tenants.yaml": twoTenants}))
	if err != nil {
		t.Fatal(err)
	}
	if cat.Exports != nil {
		t.Fatalf("a catalog without exports.yaml has exports %v", cat.Exports)
	}
	p, _ := NewPlan(ctx, f, cat)
	for _, ch := range p.Changes {
		if ch.Kind == KindExports {
			t.Fatalf("plan without exports.yaml touches the exports: %v", ch)
		}
	}
	cat, err = Load(writeCatalog(t, map[string]string{"exports.yaml": twoExports}))
	if err != nil {
		t.Fatal(err)
	}
	p, err = NewPlan(ctx, f, cat)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Changes[len(p.Changes)-1].String(); got != "create exports (+corp.finance/fx, +corp.finance/ledger)" {
		t.Errorf("plan line %q", got)
	}
	if _, err := Apply(ctx, f, p); err != nil {
		t.Fatal(err)
	}
	p, _ = NewPlan(ctx, f, cat)
	if got := p.Changes[len(p.Changes)-1]; got.Action != Unchanged {
		t.Errorf("second plan: %v; want unchanged", got)
	}
	cat, _ = Load(writeCatalog(t, map[string]string{"exports.yaml": "- {server: corp.finance/ledger, tools: [generate_report, x], to: [{trust_domain: hr.example.corp}]}\n"}))
	p, _ = NewPlan(ctx, f, cat)
	if got := p.Changes[len(p.Changes)-1].String(); got != "update exports (~corp.finance/ledger, -corp.finance/fx)" {
		t.Errorf("plan line %q", got)
	}
	// An empty file stops all sharing.
	cat, _ = Load(writeCatalog(t, map[string]string{"exports.yaml": "# nothing shared\n"}))
	if cat.Exports == nil {
		t.Fatal("an empty exports.yaml declares nothing instead of an empty set")
	}
	p, _ = NewPlan(ctx, f, cat)
	if got := p.Changes[len(p.Changes)-1].String(); got != "update exports (-corp.finance/fx, -corp.finance/ledger)" {
		t.Errorf("plan line %q", got)
	}
	_, err = Load(writeCatalog(t, map[string]string{"exports.yaml": "- {server: corp.finance/ledger, to: [{trust_domain: hr.example.corp}]}\n"}))
	var ie *InvalidError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "exports.yaml:1: tools") {
		t.Errorf("Load of a bad exports.yaml: %v", err)
	}
}

func FuzzParseExports(f *testing.F) {
	f.Add([]byte(twoExports))
	f.Add([]byte("- {server: a/b, tools: [x], versions: ['1.x', '1.2.x'], to: [{trust_domain: a.b}]}\n"))
	f.Add([]byte("&a [*a]"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		es, ps := ParseExports("exports.yaml", raw)
		if len(ps) > 0 {
			return
		}
		// What the parser accepts, the registry accepts.
		set := make([]state.Export, len(es))
		for i, e := range es {
			set[i] = e.Export
		}
		if err := state.ValidateExports(set); err != nil {
			t.Fatalf("parsed %+v, which the registry refuses: %v", set, err)
		}
	})
}
