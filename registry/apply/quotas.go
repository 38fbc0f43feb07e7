package apply

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/mcpmesh/mcpmesh/registry/state"
)

// QuotasFile is the name of the quotas file, read only at the top of a
// catalog directory. It lists each tenant's monthly call quota and cost
// budget:
//
//   - tenant: payroll
//     calls: 100000      # calls per UTC month (optional)
//     budget: 250.00     # cost per UTC month (optional) ...
//     currency: EUR      # ... in the server cards' currency (required with budget)
//     warnAt: 0.8        # share of a limit from which results warn (default 0.8)
//
// The file replaces the BU's quota set whole: a tenant left out has no
// limits. An absent file leaves the registry's quotas alone; an empty one
// removes them all.
const QuotasFile = "quotas.yaml"

// quotaExample shows the shape of quotas.yaml in messages.
const quotaExample = `"- {tenant: payroll, calls: 100000, budget: 250, currency: EUR}"`

// QuotaSpec is one entry of quotas.yaml.
type QuotaSpec struct {
	// File and Line locate the entry.
	File string
	Line int
	state.Quota
}

// KindQuotas is the BU's quota set, replaced as a whole by the catalog's
// quotas.yaml.
const KindQuotas Kind = "quotas"

// loadQuotasFile reads DIR/quotas.yaml if present; found is false when
// there is none.
func loadQuotasFile(dir string) (qs []QuotaSpec, found bool, ps []Problem) {
	raw, path, found, ps := readTopFile(dir, QuotasFile, "quotas")
	if !found || len(ps) > 0 {
		return nil, found, ps
	}
	qs, ps = ParseQuotas(path, raw)
	return qs, true, ps
}

// ParseQuotas decodes and checks the content of a quotas file; path names
// it in problems. It never panics.
func ParseQuotas(path string, raw []byte) ([]QuotaSpec, []Problem) {
	return parseList(path, raw, listFormat[QuotaSpec]{
		notList: "must be a list of quotas, one entry per tenant such as " + quotaExample,
		notMapping: func(i int) string {
			return fmt.Sprintf("entry %d must be a mapping with tenant and calls and/or budget, such as %s", i, quotaExample)
		},
		decode: decodeQuota,
		key:    func(q QuotaSpec) string { return q.Tenant },
		twice: func(q QuotaSpec, line int) Problem {
			return Problem{Field: "tenant", Message: fmt.Sprintf("tenant %s also has a quota on line %d; give each tenant one entry", q.Tenant, line)}
		},
	})
}

// decodeQuota decodes one entry of quotas.yaml and checks it as the
// registry would.
func decodeQuota(path string, item *yaml.Node) (QuotaSpec, []Problem) {
	q := QuotaSpec{File: path, Line: item.Line}
	var ps []Problem
	add := func(n *yaml.Node, field, format string, args ...any) {
		ps = append(ps, Problem{File: path, Line: n.Line, Field: field, Message: fmt.Sprintf(format, args...)})
	}
	keys := map[string]bool{}
	nodes := map[string]*yaml.Node{}
	known := []string{"tenant", "calls", "budget", "currency", "warnAt"}
	for j := 0; j+1 < len(item.Content); j += 2 {
		k, v := item.Content[j], item.Content[j+1]
		if keys[k.Value] {
			add(k, k.Value, "duplicate key")
			continue
		}
		keys[k.Value] = true
		nodes[k.Value] = v
		switch k.Value {
		case "tenant":
			s, ok := scalar(v)
			if !ok {
				add(v, "tenant", "must be a tenant name such as payroll")
			}
			q.Tenant = s
		case "calls":
			n, err := strconv.ParseInt(v.Value, 10, 64)
			if v.Kind != yaml.ScalarNode || err != nil || n <= 0 {
				add(v, "calls", "must be a whole number of calls per month above 0, such as 100000 (leave it out for no call quota)")
			}
			q.Calls = n
		case "budget":
			f, err := strconv.ParseFloat(v.Value, 64)
			if v.Kind != yaml.ScalarNode || err != nil || f <= 0 || math.IsInf(f, 0) || math.IsNaN(f) || f > 1e12 {
				add(v, "budget", "must be an amount per month above 0, such as 250.00, in the currency of the server cards (leave it out for no budget)")
			}
			q.Budget = f
		case "currency":
			s, ok := scalar(v)
			if !ok || !state.ValidCurrency(s) {
				add(v, "currency", "must be an ISO 4217 code in capitals, such as EUR: the currency of the server cards' costPerCall")
			}
			q.Currency = s
		case "warnAt":
			f, err := strconv.ParseFloat(v.Value, 64)
			if v.Kind != yaml.ScalarNode || err != nil || !(f > 0 && f <= 1) {
				add(v, "warnAt", "must be a share of the limit above 0 and at most 1, such as 0.8 (the default)")
			}
			q.WarnAt = f
		default:
			hint := "a quota has tenant, calls, budget, currency and warnAt"
			for _, kn := range known {
				if strings.EqualFold(k.Value, kn) {
					hint = fmt.Sprintf("did you mean %q? Keys are case-sensitive", kn)
				}
			}
			add(k, k.Value, "unknown key: %s", hint)
		}
	}
	if len(ps) > 0 {
		return q, ps
	}
	at := func(key string) *yaml.Node {
		if n := nodes[key]; n != nil {
			return n
		}
		return item
	}
	switch {
	case nodes["tenant"] == nil:
		add(item, "tenant", "is required: the tenant's name, such as payroll")
	case q.Budget > 0 && q.Currency == "":
		add(at("budget"), "currency", "is required with a budget: the currency of the server cards' costPerCall, such as EUR")
	case q.Budget == 0 && q.Currency != "":
		add(at("currency"), "budget", "currency without a budget: set budget, or drop currency")
	case q.Calls == 0 && q.Budget == 0:
		add(item, "calls", "tenant %s: set calls, budget or both (or remove the entry: a tenant without one has no limits)", q.Tenant)
	default:
		if err := state.ValidateQuota(q.Quota); err != nil {
			var se *state.Error
			if errors.As(err, &se) {
				err = errors.New(se.Message)
			}
			add(at("tenant"), "tenant", "%v", err)
		}
	}
	return q, ps
}

// planQuotas adds the quota set's change when the catalog has a
// quotas.yaml: it replaces the registry's set whole.
func planQuotas(ctx context.Context, c Client, cat *Catalog, p *Plan) error {
	if cat.Quotas == nil {
		return nil
	}
	cur, err := c.Quotas(ctx, true)
	if err != nil {
		return fmt.Errorf("read quotas from the registry: %w", err)
	}
	want := make([]state.Quota, len(cat.Quotas))
	for i, q := range cat.Quotas {
		want[i] = q.Quota
	}
	ch := Change{Kind: KindQuotas, Name: "quotas", File: filepath.Join(cat.Dir, QuotasFile), Action: Update, quotas: want}
	if cur.ModifyIndex == 0 {
		ch.Action = Create
	}
	have := map[string]state.Quota{}
	for _, q := range cur.Quotas {
		have[q.Tenant] = q
	}
	for _, q := range want {
		old, ok := have[q.Tenant]
		switch {
		case !ok:
			ch.Fields = append(ch.Fields, "+"+q.Tenant)
		case old != q:
			ch.Fields = append(ch.Fields, "~"+q.Tenant)
		}
		delete(have, q.Tenant)
	}
	for _, q := range cur.Quotas {
		if _, gone := have[q.Tenant]; gone {
			ch.Fields = append(ch.Fields, "-"+q.Tenant)
		}
	}
	if len(ch.Fields) == 0 {
		ch.Action = Unchanged
	}
	p.Changes = append(p.Changes, ch)
	return nil
}
