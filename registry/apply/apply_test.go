package apply

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mcpmesh/mcpmesh/registry/api"
	"github.com/mcpmesh/mcpmesh/registry/card"
	"github.com/mcpmesh/mcpmesh/registry/state"
)

// fakeRegistry is an in-memory admin API with the registry's rules for
// submissions (identical → unchanged, different → 409) and tenants (upsert).
// It records every write.
type fakeRegistry struct {
	mu         sync.Mutex
	versions   map[string]map[string]state.ServerVersion
	tenants    map[string]state.Tenant
	writes     []string
	failSubmit map[string]error // by NAME@VERSION
	policies   []state.PolicyFile
	limits     []state.Limit
	quotas     state.Quotas  // quotas_test.go
	exports    state.Exports // exports_test.go
}

func newFake() *fakeRegistry {
	return &fakeRegistry{versions: map[string]map[string]state.ServerVersion{}, tenants: map[string]state.Tenant{}, failSubmit: map[string]error{}}
}

var _ Client = (*fakeRegistry)(nil)

func (f *fakeRegistry) ServerVersions(_ context.Context, name string, _ bool) ([]state.ServerVersion, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.versions[name]) == 0 {
		return nil, &api.Error{Status: http.StatusNotFound, Code: "not_found", Message: "server " + name + " is not registered"}
	}
	var out []state.ServerVersion
	for _, v := range f.versions[name] {
		out = append(out, v)
	}
	return out, nil
}

func (f *fakeRegistry) Tenants(context.Context, bool) ([]state.Tenant, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []state.Tenant
	for _, t := range f.tenants {
		out = append(out, t)
	}
	return out, nil
}

func (f *fakeRegistry) Submit(_ context.Context, raw []byte) (api.SubmitResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := card.Parse(raw)
	if err != nil {
		return api.SubmitResponse{}, &api.Error{Status: http.StatusBadRequest, Code: "invalid", Message: err.Error()}
	}
	ref := c.Name + "@" + c.Version
	if err := f.failSubmit[ref]; err != nil {
		return api.SubmitResponse{}, err
	}
	hash, _ := card.CanonicalHash(raw)
	if sv, ok := f.versions[c.Name][c.Version]; ok {
		if sv.CardHash == hash {
			return api.SubmitResponse{Server: c.Name, Version: c.Version, State: sv.State, Unchanged: true}, nil
		}
		return api.SubmitResponse{}, &api.Error{Status: http.StatusConflict, Code: "conflict", Message: ref + " was already submitted with a different card"}
	}
	if f.versions[c.Name] == nil {
		f.versions[c.Name] = map[string]state.ServerVersion{}
	}
	f.versions[c.Name][c.Version] = state.ServerVersion{Server: c.Name, Version: c.Version, CardHash: hash, State: card.StateSubmitted}
	f.writes = append(f.writes, "submit "+ref)
	return api.SubmitResponse{Server: c.Name, Version: c.Version, State: card.StateSubmitted}, nil
}

func (f *fakeRegistry) PutTenant(_ context.Context, req api.TenantRequest) (state.Tenant, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := state.Tenant{Name: req.Name, DisplayName: req.DisplayName, Owners: slices.Clone(req.Owners)}
	f.tenants[req.Name] = t
	f.writes = append(f.writes, "put tenant "+req.Name)
	return t, nil
}

func (f *fakeRegistry) Policies(context.Context, bool) (api.PoliciesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return api.PoliciesResponse{Policies: state.Policies{Files: slices.Clone(f.policies)}}, nil
}

func (f *fakeRegistry) PutPolicies(_ context.Context, files []state.PolicyFile) (api.PoliciesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.policies = slices.Clone(files)
	f.writes = append(f.writes, fmt.Sprintf("put policies (%d files)", len(files)))
	return api.PoliciesResponse{Policies: state.Policies{Files: files}}, nil
}

func (f *fakeRegistry) writeCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.writes)
}

// cardJSON returns a valid server card; desc varies its content.
func cardJSON(name, version, desc string) string {
	return fmt.Sprintf(`{
  "$schema": "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json",
  "name": %q,
  "description": %q,
  "version": %q,
  "_meta": {
    "io.mcpmesh/governance": {
      "owner": "owner@corp.example", "team": "platform",
      "dataClassification": "internal", "riskTier": "low", "costPerCall": 0.001,
      "upstream": {"transport": "streamable-http", "url": "http://127.0.0.1:9999/mcp"}
    },
    "io.mcpmesh/tools": [
      {"name": "lookup", "description": "Looks a thing up.",
       "inputSchema": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}
    ]
  }
}`, name, desc, version)
}

const twoTenants = `
- name: payroll
  displayName: Payroll
  owners: [alice@corp.example]
- name: benefits
  owners:
    - bob@corp.example
    - "  "
`

// writeCatalog writes files (path inside the dir → content) to a new
// directory and returns it.
func writeCatalog(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func mustLoad(t *testing.T, dir string) *Catalog {
	t.Helper()
	cat, err := Load(dir)
	if err != nil {
		t.Fatalf("Load(%s): %v", dir, err)
	}
	return cat
}

func mustPlan(t *testing.T, f *fakeRegistry, dir string) *Plan {
	t.Helper()
	p, err := NewPlan(t.Context(), f, mustLoad(t, dir))
	if err != nil {
		t.Fatalf("NewPlan: %v", err)
	}
	return p
}

// lines returns the plan's lines, as the CLI prints them.
func lines(p *Plan) []string {
	out := make([]string, len(p.Changes))
	for i, c := range p.Changes {
		out[i] = c.String()
	}
	return out
}

func TestPlanCreateThenUnchanged(t *testing.T) {
	dir := writeCatalog(t, map[string]string{
		"hr/directory-1.10.0.json": cardJSON("corp.hr/directory", "1.10.0", "Directory"),
		"hr/directory-1.9.0.json":  cardJSON("corp.hr/directory", "1.9.0", "Directory"),
		"hr/deep/x/search.json":    cardJSON("corp.hr/search", "0.1.0", "Search"),
		"hr/README.json":           `{"note": "not a card"}`,
		".git/objects/card.json":   `{broken`,
		"tenants.yaml":             twoTenants,
	})
	f := newFake()
	f.versions["corp.hr/search"] = map[string]state.ServerVersion{"0.0.1": {Server: "corp.hr/search", Version: "0.0.1", CardHash: "sha256:other"}}

	p := mustPlan(t, f, dir)
	want := []string{
		"create corp.hr/directory@1.9.0", // semver order, not lexical
		"create corp.hr/directory@1.10.0",
		"create corp.hr/search@0.1.0",
		"create tenant payroll",
		"create tenant benefits",
	}
	if diff := cmp.Diff(want, lines(p)); diff != "" {
		t.Errorf("first plan (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]Skipped{{File: filepath.Join(dir, "hr", "README.json"), Reason: `not a server card: no "$schema" naming server.schema.json and no io.mcpmesh/ section in "_meta"`}}, p.Skipped); diff != "" {
		t.Errorf("skipped (-want +got):\n%s", diff)
	}
	if n := f.writeCount(); n != 0 {
		t.Fatalf("NewPlan wrote %d times: %v", n, f.writes)
	}

	res, err := Apply(t.Context(), f, p)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if got, want := res.Counts(), (Counts{Create: 5}); got != want {
		t.Errorf("result counts %+v, want %+v", got, want)
	}
	for _, c := range res.Changes {
		if !c.Applied {
			t.Errorf("%s not marked applied", c.Ref())
		}
	}
	if p.Changes[0].Applied {
		t.Error("Apply modified the plan it was given")
	}
	if got := f.tenants["benefits"].Owners; !slices.Equal(got, []string{"bob@corp.example"}) {
		t.Errorf("benefits owners %q; want blank owners dropped", got)
	}

	// The same directory again: nothing to do, nothing written.
	writes := f.writeCount()
	p2 := mustPlan(t, f, dir)
	if got, want := p2.Counts(), (Counts{Unchanged: 5}); got != want {
		t.Errorf("second plan counts %+v, want %+v: %v", got, want, lines(p2))
	}
	res2, err := Apply(t.Context(), f, p2)
	if err != nil {
		t.Fatalf("second Apply: %v", err)
	}
	for _, c := range res2.Changes {
		if c.Applied {
			t.Errorf("second apply wrote %s", c.Ref())
		}
	}
	if n := f.writeCount(); n != writes {
		t.Errorf("second apply wrote %v", f.writes[writes:])
	}
}

func TestPlanConflictRefusesEverything(t *testing.T) {
	f := newFake()
	old := writeCatalog(t, map[string]string{"a.json": cardJSON("corp.hr/directory", "1.0.0", "Directory")})
	if _, err := Apply(t.Context(), f, mustPlan(t, f, old)); err != nil {
		t.Fatal(err)
	}
	// The card changed in git without a version bump; a new card and a
	// tenant are in the same directory.
	dir := writeCatalog(t, map[string]string{
		"a.json":       cardJSON("corp.hr/directory", "1.0.0", "Directory, edited"),
		"b.json":       cardJSON("corp.hr/other", "1.0.0", "Other"),
		"tenants.yaml": twoTenants,
	})
	p := mustPlan(t, f, dir)
	want := []string{
		"conflict corp.hr/directory@1.0.0 (" + filepath.Join(dir, "a.json") + "): versions are immutable; bump the version",
		"create corp.hr/other@1.0.0",
		"create tenant payroll",
		"create tenant benefits",
	}
	if diff := cmp.Diff(want, lines(p)); diff != "" {
		t.Errorf("plan (-want +got):\n%s", diff)
	}
	c := p.Changes[0]
	if c.Hash == c.RegisteredHash || c.RegisteredHash == "" || c.State != card.StateSubmitted {
		t.Errorf("conflict change: hash %q, registered %q, state %q; want both hashes, differing, and the registered state", c.Hash, c.RegisteredHash, c.State)
	}
	writes := f.writeCount()
	res, err := Apply(t.Context(), f, p)
	if !errors.Is(err, ErrConflicts) || res != nil {
		t.Fatalf("Apply of a plan with a conflict: %v, %v; want ErrConflicts and no result", res, err)
	}
	if !strings.Contains(err.Error(), "1 conflict") {
		t.Errorf("error %q does not count the conflicts", err)
	}
	if n := f.writeCount(); n != writes {
		t.Errorf("Apply wrote despite a conflict: %v", f.writes[writes:])
	}
}

func TestPlanTenants(t *testing.T) {
	f := newFake()
	f.tenants["payroll"] = state.Tenant{Name: "payroll", DisplayName: "Payroll", Owners: []string{"alice@corp.example"}}
	f.tenants["benefits"] = state.Tenant{Name: "benefits", DisplayName: "Benefits", Owners: []string{"carol@corp.example"}}
	f.tenants["legal"] = state.Tenant{Name: "legal", Owners: []string{"dan@corp.example"}}
	f.tenants["travel"] = state.Tenant{Name: "travel", Owners: []string{"a@corp.example", "b@corp.example"}}
	dir := writeCatalog(t, map[string]string{"tenants.yaml": `
- {name: payroll, displayName: Payroll, owners: [alice@corp.example]}
- {name: benefits, owners: [bob@corp.example]}
- {name: legal, displayName: Legal, owners: [dan@corp.example]}
- {name: travel, owners: [b@corp.example, a@corp.example]}
- {name: pensions, owners: [erin@corp.example]}
`})
	p := mustPlan(t, f, dir)
	want := []string{
		"unchanged tenant payroll",
		"update tenant benefits (displayName, owners)",
		"update tenant legal (displayName)",
		"update tenant travel (owners)", // order is significant, as in the registry
		"create tenant pensions",
	}
	if diff := cmp.Diff(want, lines(p)); diff != "" {
		t.Errorf("plan (-want +got):\n%s", diff)
	}
	if n := f.writeCount(); n != 0 {
		t.Fatalf("NewPlan wrote: %v", f.writes)
	}
	if _, err := Apply(t.Context(), f, p); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"put tenant benefits", "put tenant legal", "put tenant travel", "put tenant pensions"}, f.writes); diff != "" {
		t.Errorf("writes (-want +got):\n%s", diff)
	}
	if got := f.tenants["benefits"]; got.DisplayName != "" || !slices.Equal(got.Owners, []string{"bob@corp.example"}) {
		t.Errorf("benefits after apply: %+v", got)
	}
	if got := mustPlan(t, f, dir).Counts(); got != (Counts{Unchanged: 5}) {
		t.Errorf("plan after apply: %+v, want all 5 unchanged", got)
	}
}

func TestApplyStopsAtFirstFailureAndResumes(t *testing.T) {
	f := newFake()
	dir := writeCatalog(t, map[string]string{
		"a.json": cardJSON("corp.hr/a", "1.0.0", "A"),
		"b.json": cardJSON("corp.hr/b", "1.0.0", "B"),
		"c.json": cardJSON("corp.hr/c", "1.0.0", "C"),
	})
	f.failSubmit["corp.hr/b@1.0.0"] = &api.Error{Status: http.StatusServiceUnavailable, Code: "no_leader", Message: "no leader; the write was not applied, retry shortly"}
	res, err := Apply(t.Context(), f, mustPlan(t, f, dir))
	if err == nil || !strings.Contains(err.Error(), "corp.hr/b@1.0.0") || !strings.Contains(err.Error(), "b.json") || !strings.Contains(err.Error(), "no leader") {
		t.Fatalf("Apply error %v; want one naming corp.hr/b@1.0.0, its file and the cause", err)
	}
	var applied []string
	for _, c := range res.Changes {
		if c.Applied {
			applied = append(applied, c.Ref())
		}
	}
	if diff := cmp.Diff([]string{"corp.hr/a@1.0.0"}, applied); diff != "" {
		t.Errorf("applied before the failure (-want +got):\n%s", diff)
	}
	delete(f.failSubmit, "corp.hr/b@1.0.0")
	p := mustPlan(t, f, dir)
	if diff := cmp.Diff([]string{"unchanged corp.hr/a@1.0.0", "create corp.hr/b@1.0.0", "create corp.hr/c@1.0.0"}, lines(p)); diff != "" {
		t.Errorf("plan after the failure (-want +got):\n%s", diff)
	}
	if _, err := Apply(t.Context(), f, p); err != nil {
		t.Fatal(err)
	}
}

func TestApplySubmittedMeanwhileIsUnchanged(t *testing.T) {
	f := newFake()
	raw := cardJSON("corp.hr/a", "1.0.0", "A")
	dir := writeCatalog(t, map[string]string{"a.json": raw})
	p := mustPlan(t, f, dir)
	if _, err := f.Submit(t.Context(), []byte(raw)); err != nil { // another CI run wins the race
		t.Fatal(err)
	}
	res, err := Apply(t.Context(), f, p)
	if err != nil {
		t.Fatal(err)
	}
	if c := res.Changes[0]; c.Action != Unchanged || c.Applied {
		t.Errorf("change after a concurrent identical submission: %s, applied %v; want unchanged, not applied", c.Action, c.Applied)
	}
}

func TestLoadInvalid(t *testing.T) {
	good := cardJSON("corp.hr/directory", "1.0.0", "Directory")
	bad := strings.Replace(cardJSON("corp.hr/bad", "1.0.0", ""), `"riskTier": "low"`, `"riskTier": "extreme"`, 1)
	dir := writeCatalog(t, map[string]string{
		"hr/good.json":   good,
		"hr/bad.json":    bad,
		"hr/copy.json":   good,
		"hr/empty.json":  "",
		"hr/syntax.json": `{"name": "corp.hr/x",}`,
		"tenants.yaml": `- name: payroll
  owners: [alice@corp.example]
- name: Payroll_2
  owners: []
- name: payroll
  owners: [bob@corp.example]
- name: legal
  Owners: [x@corp.example]
`,
	})
	_, err := Load(dir)
	var ie *InvalidError
	if !errors.As(err, &ie) {
		t.Fatalf("Load of an invalid catalog: %v; want *InvalidError", err)
	}
	var got []string
	for _, p := range ie.Problems {
		rel, _ := filepath.Rel(dir, p.File)
		got = append(got, fmt.Sprintf("%s:%d %s", filepath.ToSlash(rel), p.Line, p.Field))
	}
	want := []string{
		"hr/bad.json:0 description",
		"hr/bad.json:0 _meta.io.mcpmesh/governance.riskTier",
		"hr/empty.json:0 ",
		"hr/syntax.json:0 ",
		"hr/good.json:0 version", // copy.json comes first in walk order
		"tenants.yaml:3 name",
		"tenants.yaml:4 owners",
		"tenants.yaml:5 name",
		"tenants.yaml:8 Owners",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("problems (-want +got):\n%s\nall: %v", diff, err)
	}
	for _, w := range []string{"extreme", "also declared in", "also declared on line 1", `did you mean "owners"`, "at least one owner", "lowercase"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not say %q: %v", w, err)
		}
	}
	if s := ie.Summary(); s != "9 problems in 5 files; nothing was applied" {
		t.Errorf("summary %q", s)
	}
	if s := ie.Problems[0].String(); !strings.HasPrefix(s, filepath.Join(dir, "hr", "bad.json")+": description: ") {
		t.Errorf("problem line %q; want FILE: FIELD: MESSAGE", s)
	}
}

func TestLoadTenantsShape(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"not a list", "name: payroll\nowners: [a]\n", "tenants.yaml:1: must be a list of tenants"},
		{"entry not a mapping", "- payroll\n", "tenants.yaml:1: tenant 1 must be a mapping"},
		{"owners not a list", "- name: payroll\n  owners: alice\n", "tenants.yaml:2: owners: must be a list"},
		{"no name", "- owners: [alice]\n", "tenants.yaml:1: name: is required"},
		{"not YAML", "- name: [payroll\n", "tenants.yaml: not valid YAML"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeCatalog(t, map[string]string{"tenants.yaml": tt.yaml})
			_, err := Load(dir)
			var ie *InvalidError
			if !errors.As(err, &ie) {
				t.Fatalf("Load: %v; want *InvalidError", err)
			}
			if got := ie.Problems[0].String(); !strings.Contains(got, tt.want) {
				t.Errorf("problem %q does not contain %q", got, tt.want)
			}
		})
	}
	for _, empty := range []string{"", "# no tenants yet\n", "[]\n"} {
		cat, err := Load(writeCatalog(t, map[string]string{"tenants.yaml": empty}))
		if err != nil || len(cat.Tenants) != 0 {
			t.Errorf("tenants.yaml %q: %v, %d tenants; want none and no error", empty, err, len(cat.Tenants))
		}
	}
	if _, err := Load(writeCatalog(t, map[string]string{"tenants.yml": twoTenants})); err == nil || !strings.Contains(err.Error(), "must be named tenants.yaml") {
		t.Errorf("tenants.yml: %v; want a hint to rename it", err)
	}
}

func TestLoadNotADirectory(t *testing.T) {
	dir := writeCatalog(t, map[string]string{"a.json": cardJSON("corp.hr/a", "1.0.0", "A")})
	for _, p := range []string{filepath.Join(dir, "missing"), filepath.Join(dir, "a.json")} {
		if _, err := Load(p); err == nil {
			t.Errorf("Load(%s) succeeded", p)
		}
	}
}

// TestExampleCatalogs: the shipped catalogs load, with the hr tenants.
func TestExampleCatalogs(t *testing.T) {
	hr := mustLoad(t, filepath.Join("..", "..", "examples", "catalog", "hr"))
	if len(hr.Cards) == 0 || len(hr.Skipped) != 0 {
		t.Errorf("hr catalog: %d cards, skipped %v", len(hr.Cards), hr.Skipped)
	}
	var names []string
	for _, tn := range hr.Tenants {
		names = append(names, tn.Name)
	}
	if diff := cmp.Diff([]string{"payroll", "benefits"}, names); diff != "" {
		t.Errorf("hr tenants (-want +got):\n%s", diff)
	}
	if len(hr.Policies) != 1 || hr.Policies[0].Name != "policies.cedar" {
		t.Errorf("hr policies: %+v", hr.Policies)
	}
	all := mustLoad(t, filepath.Join("..", "..", "examples", "catalog"))
	if len(all.Cards) <= len(hr.Cards) || len(all.Tenants) != 0 || len(all.Policies) != 0 {
		t.Errorf("whole catalog: %d cards, %d tenants, %d policy files; want every BU's cards and no tenants or policies (read at the top only)", len(all.Cards), len(all.Tenants), len(all.Policies))
	}
}

// TestPlanUnreachable: a registry that cannot be read is an error naming
// what was being read, not an empty registry (which would plan "create").
func TestPlanUnreachable(t *testing.T) {
	c, err := api.NewClient(api.ClientConfig{Addr: "http://127.0.0.1:1", Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewPlan(t.Context(), c, &Catalog{Cards: []CardFile{{Name: "corp.hr/a", Version: "1.0.0"}}})
	if err == nil || !strings.Contains(err.Error(), "corp.hr/a") {
		t.Errorf("NewPlan against an unreachable node: %v; want an error naming the server", err)
	}
}

func TestPlanPolicies(t *testing.T) {
	f := newFake()
	dir := writeCatalog(t, map[string]string{
		"a.cedar": `permit (principal, action == Action::"list", resource);`,
		"b.cedar": `forbid (principal in Group::"contractors", action, resource);`,
	})
	if diff := cmp.Diff([]string{"create policies (+a.cedar, +b.cedar)"}, lines(mustPlan(t, f, dir))); diff != "" {
		t.Errorf("first plan (-want +got):\n%s", diff)
	}
	if _, err := Apply(t.Context(), f, mustPlan(t, f, dir)); err != nil {
		t.Fatal(err)
	}
	if got := lines(mustPlan(t, f, dir)); !slices.Equal(got, []string{"unchanged policies"}) {
		t.Errorf("plan after apply = %v", got)
	}
	// The directory's files replace the set: b changed, a removed, c added.
	dir2 := writeCatalog(t, map[string]string{
		"b.cedar": `forbid (principal in Group::"interns", action, resource);`,
		"c.cedar": `permit (principal, action == Action::"call", resource) when { context.annotations.readOnly };`,
	})
	if diff := cmp.Diff([]string{"update policies (~b.cedar, +c.cedar, -a.cedar)"}, lines(mustPlan(t, f, dir2))); diff != "" {
		t.Errorf("second plan (-want +got):\n%s", diff)
	}
	if _, err := Apply(t.Context(), f, mustPlan(t, f, dir2)); err != nil {
		t.Fatal(err)
	}
	if len(f.policies) != 2 || f.policies[0].Name != "b.cedar" || f.policies[1].Name != "c.cedar" {
		t.Errorf("registry policies = %+v", f.policies)
	}
	// A catalog without policy files leaves the set alone.
	if got := lines(mustPlan(t, f, writeCatalog(t, map[string]string{"x.txt": ""}))); len(got) != 0 {
		t.Errorf("plan without policies = %v", got)
	}
}

func TestLoadRefusesPoliciesThatFailTheSchema(t *testing.T) {
	dir := writeCatalog(t, map[string]string{
		"ok.cedar":  `@id("dup") permit (principal, action == Action::"list", resource);`,
		"bad.cedar": `permit (principal, action == Action::"call", resource) when { principal.tenat == "x" };`,
	})
	_, err := Load(dir)
	var ie *InvalidError
	if !errors.As(err, &ie) || len(ie.Problems) != 1 || ie.Problems[0].File != filepath.Join(dir, "bad.cedar") || !strings.Contains(ie.Problems[0].Message, "tenat") {
		t.Fatalf("Load = %v", err)
	}
	dup := writeCatalog(t, map[string]string{
		"a.cedar": `@id("dup") permit (principal, action == Action::"list", resource);`,
		"b.cedar": `@id("dup") permit (principal, action == Action::"list", resource);`,
	})
	if _, err := Load(dup); !errors.As(err, &ie) || !strings.Contains(err.Error(), `policy id "dup" is already used at a.cedar:1:1`) {
		t.Fatalf("Load with a duplicate id = %v", err)
	}
}
