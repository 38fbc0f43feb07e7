package apply

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/mcpmesh/mcpmesh/registry/api"
	"github.com/mcpmesh/mcpmesh/registry/card"
	"github.com/mcpmesh/mcpmesh/registry/state"
)

// Client is the part of the admin API that NewPlan and Apply use.
// *api.Client satisfies it.
type Client interface {
	// ServerVersions returns every version of a server; an *api.Error with
	// status 404 when it has none.
	ServerVersions(ctx context.Context, name string, consistent bool) ([]state.ServerVersion, error)
	// Tenants lists every tenant.
	Tenants(ctx context.Context, consistent bool) ([]state.Tenant, error)
	// Submit submits a server card.
	Submit(ctx context.Context, cardJSON []byte) (api.SubmitResponse, error)
	// PutTenant creates or updates a tenant.
	PutTenant(ctx context.Context, req api.TenantRequest) (state.Tenant, error)
	// Policies returns the policy set.
	Policies(ctx context.Context, consistent bool) (api.PoliciesResponse, error)
	// PutPolicies replaces the policy set.
	PutPolicies(ctx context.Context, files []state.PolicyFile) (api.PoliciesResponse, error)
	// Limits returns the rate limit set.
	Limits(ctx context.Context, consistent bool) (api.LimitsResponse, error)
	// PutLimits replaces the rate limit set.
	PutLimits(ctx context.Context, limits []state.Limit) (api.LimitsResponse, error)
	// Quotas returns the quota set.
	Quotas(ctx context.Context, consistent bool) (state.Quotas, error)
	// PutQuotas replaces the quota set.
	PutQuotas(ctx context.Context, quotas []state.Quota) (state.Quotas, error)
	// Exports returns the export set.
	Exports(ctx context.Context, consistent bool) (state.Exports, error)
	// PutExports replaces the export set.
	PutExports(ctx context.Context, exports []state.Export) (state.Exports, error)
}

var _ Client = (*api.Client)(nil)

// Action is what applying a plan does to one object.
type Action string

// The actions of a Change.
const (
	// Create submits a new server version or creates a tenant.
	Create Action = "create"
	// Update changes a tenant's display name or owners, or the policy set.
	Update Action = "update"
	// Unchanged means the registry already holds what the catalog declares.
	Unchanged Action = "unchanged"
	// Conflict is a card that differs from the registered card of the same
	// version; versions are immutable, so the plan cannot be applied.
	Conflict Action = "conflict"
)

// Kind is the kind of object a Change concerns.
type Kind string

// The kinds of object.
const (
	KindServer Kind = "server"
	KindTenant Kind = "tenant"
	// KindPolicies is the BU's policy set, replaced as a whole by the
	// catalog's *.cedar files.
	KindPolicies Kind = "policies"
	// KindLimits is the BU's rate limit set, replaced as a whole by the
	// catalog's limits.yaml.
	KindLimits Kind = "limits"
)

// conflictMessage explains a conflict and what to do.
const conflictMessage = "versions are immutable; bump the version"

// Change is what a plan does to one object.
type Change struct {
	Kind Kind `json:"kind"`
	// Name is the server or tenant name; Version is set for servers.
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
	Action  Action `json:"action"`
	// File (and Line, for tenants) is where the catalog declares the object.
	File string `json:"file"`
	Line int    `json:"line,omitempty"`
	// Fields names what an Update changes: "displayName", "owners"; for
	// the policy set, each file added ("+a.cedar"), changed ("~b.cedar")
	// or removed ("-c.cedar"); for the rate limit set, each limit by
	// scope ("+tenant=payroll").
	Fields []string `json:"fields,omitempty"`
	// Hash is the card's canonical hash; RegisteredHash is the registry's
	// cardHash for the same version, when registered.
	Hash           string `json:"hash,omitempty"`
	RegisteredHash string `json:"registeredHash,omitempty"`
	// State is the server version's lifecycle state in the registry, when
	// registered (after Apply: "submitted" for what it created).
	State card.State `json:"state,omitempty"`
	// Message explains a Conflict.
	Message string `json:"message,omitempty"`
	// Applied is set by Apply on each object it wrote.
	Applied bool `json:"applied"`

	raw      []byte
	tenant   api.TenantRequest
	policies []state.PolicyFile
	limits   []state.Limit
	quotas   []state.Quota
	exports  []state.Export
}

// Ref names the object: "corp.hr/directory@1.0.0" or "tenant payroll".
func (c Change) Ref() string {
	switch c.Kind {
	case KindTenant:
		return "tenant " + c.Name
	case KindPolicies:
		return "policies"
	case KindLimits:
		return "limits"
	case KindQuotas:
		return "quotas"
	case KindExports:
		return "exports"
	}
	return c.Name + "@" + c.Version
}

// String is the change's line in a plan: "create corp.hr/directory@2.0.0",
// "update tenant payroll (owners)", "conflict corp.hr/directory@1.0.0
// (hr/directory.json): versions are immutable; bump the version".
func (c Change) String() string {
	s := string(c.Action) + " " + c.Ref()
	switch {
	case len(c.Fields) > 0:
		s += " (" + strings.Join(c.Fields, ", ") + ")"
	case c.Action == Conflict:
		s += " (" + c.File + "): " + c.Message
	}
	return s
}

// Plan is what applying a catalog would do, object by object: servers by
// name and version, then tenants in file order, then the policy set. It is
// a plain value.
type Plan struct {
	// Dir is the catalog directory.
	Dir     string    `json:"dir"`
	Changes []Change  `json:"changes"`
	Skipped []Skipped `json:"skipped,omitempty"`
}

// Counts counts a plan's changes by action.
type Counts struct {
	Create    int `json:"create"`
	Update    int `json:"update"`
	Unchanged int `json:"unchanged"`
	Conflict  int `json:"conflict"`
}

// Counts counts the plan's changes by action.
func (p *Plan) Counts() Counts {
	var n Counts
	for _, c := range p.Changes {
		switch c.Action {
		case Create:
			n.Create++
		case Update:
			n.Update++
		case Unchanged:
			n.Unchanged++
		case Conflict:
			n.Conflict++
		}
	}
	return n
}

// ErrConflicts is returned by Apply for a plan with conflicts; nothing was
// written. The plan's Conflict changes say which cards.
var ErrConflicts = errors.New("versions are immutable: bump the version of each conflicting card; nothing was applied")

// NewPlan compares a catalog with the registry and returns what applying it
// would do. It only reads, with consistent reads, so a plan made through a
// follower sees every committed write. Conflicts are in the plan, not an
// error; an error means the registry could not be read.
func NewPlan(ctx context.Context, c Client, cat *Catalog) (*Plan, error) {
	p := &Plan{Dir: cat.Dir, Skipped: cat.Skipped, Changes: []Change{}}
	registered := map[string]map[string]state.ServerVersion{}
	for _, cf := range cat.Cards {
		if _, ok := registered[cf.Name]; ok {
			continue
		}
		vs, err := c.ServerVersions(ctx, cf.Name, true)
		if err != nil && !isNotFound(err) {
			return nil, fmt.Errorf("read %s from the registry: %w", cf.Name, err)
		}
		byVersion := make(map[string]state.ServerVersion, len(vs))
		for _, v := range vs {
			byVersion[v.Version] = v
		}
		registered[cf.Name] = byVersion
	}
	for _, cf := range cat.Cards {
		ch := Change{Kind: KindServer, Name: cf.Name, Version: cf.Version, File: cf.File, Hash: cf.Hash, Action: Create, raw: cf.Raw}
		if sv, ok := registered[cf.Name][cf.Version]; ok {
			ch.RegisteredHash, ch.State = sv.CardHash, sv.State
			if sv.CardHash == cf.Hash {
				ch.Action = Unchanged
			} else {
				ch.Action, ch.Message = Conflict, conflictMessage
			}
		}
		p.Changes = append(p.Changes, ch)
	}

	if err := planTenants(ctx, c, cat, p); err != nil {
		return nil, err
	}
	if err := planPolicies(ctx, c, cat, p); err != nil {
		return nil, err
	}
	if err := planLimits(ctx, c, cat, p); err != nil {
		return nil, err
	}
	if err := planQuotas(ctx, c, cat, p); err != nil {
		return nil, err
	}
	if err := planExports(ctx, c, cat, p); err != nil {
		return nil, err
	}
	return p, nil
}

// planPolicies adds the policy set's change when the catalog has *.cedar
// files: they replace the registry's set whole.
func planPolicies(ctx context.Context, c Client, cat *Catalog, p *Plan) error {
	if len(cat.Policies) == 0 {
		return nil
	}
	cur, err := c.Policies(ctx, true)
	if err != nil {
		return fmt.Errorf("read policies from the registry: %w", err)
	}
	ch := Change{Kind: KindPolicies, Name: "policies", File: cat.Dir, Action: Update, policies: cat.Policies}
	if len(cur.Files) == 0 {
		ch.Action = Create
	}
	have := map[string]string{}
	for _, f := range cur.Files {
		have[f.Name] = f.Text
	}
	for _, f := range cat.Policies {
		text, ok := have[f.Name]
		switch {
		case !ok:
			ch.Fields = append(ch.Fields, "+"+f.Name)
		case text != f.Text:
			ch.Fields = append(ch.Fields, "~"+f.Name)
		}
		delete(have, f.Name)
	}
	for _, f := range cur.Files {
		if _, gone := have[f.Name]; gone {
			ch.Fields = append(ch.Fields, "-"+f.Name)
		}
	}
	if len(ch.Fields) == 0 {
		ch.Action = Unchanged
	}
	p.Changes = append(p.Changes, ch)
	return nil
}

// planTenants adds a change per tenant of tenants.yaml.
func planTenants(ctx context.Context, c Client, cat *Catalog, p *Plan) error {
	if len(cat.Tenants) == 0 {
		return nil
	}
	ts, err := c.Tenants(ctx, true)
	if err != nil {
		return fmt.Errorf("read tenants from the registry: %w", err)
	}
	current := make(map[string]state.Tenant, len(ts))
	for _, t := range ts {
		current[t.Name] = t
	}
	for _, t := range cat.Tenants {
		ch := Change{Kind: KindTenant, Name: t.Name, File: t.File, Line: t.Line, Action: Create,
			tenant: api.TenantRequest{Name: t.Name, DisplayName: t.DisplayName, Owners: t.Owners}}
		if cur, ok := current[t.Name]; ok {
			if cur.DisplayName != t.DisplayName {
				ch.Fields = append(ch.Fields, "displayName")
			}
			if !slices.Equal(cur.Owners, t.Owners) {
				ch.Fields = append(ch.Fields, "owners")
			}
			ch.Action = Unchanged
			if len(ch.Fields) > 0 {
				ch.Action = Update
			}
		}
		p.Changes = append(p.Changes, ch)
	}
	return nil
}

// isNotFound reports whether err is the API's 404 for an unknown object.
func isNotFound(err error) bool {
	var ae *api.Error
	return errors.As(err, &ae) && ae.Status == http.StatusNotFound && ae.Code == "not_found"
}
