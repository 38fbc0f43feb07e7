package apply

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/mcpmesh/mcpmesh/registry/state"
)

// LimitsFile is the name of the rate limits file, read only at the top of
// a catalog directory.
const LimitsFile = "limits.yaml"

// limitExample shows the shape of limits.yaml in messages.
const limitExample = `"- {tenant: payroll, rate: 100/s, burst: 200}"`

// loadLimits reads DIR/limits.yaml when present. declared is false when
// the file is absent: applying the catalog then leaves the registry's
// limits alone.
func loadLimits(dir string) (ls []state.Limit, declared bool, ps []Problem) {
	raw, path, declared, ps := readTopFile(dir, LimitsFile, "rate limits")
	if !declared || len(ps) > 0 {
		return nil, declared, ps
	}
	ls, ps = ParseLimits(path, raw)
	return ls, true, ps
}

// readTopFile reads the YAML file name (what it holds, for messages) at
// the top of dir. found is false when there is none; a file named with a
// .yml extension instead is a problem, since it would be silently
// ignored.
func readTopFile(dir, name, what string) (raw []byte, path string, found bool, ps []Problem) {
	path = filepath.Join(dir, name)
	raw, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		alt := strings.TrimSuffix(path, ".yaml") + ".yml"
		if _, err := os.Stat(alt); err == nil {
			return nil, path, false, []Problem{{File: alt, Message: "the " + what + " file must be named " + name + "; rename it"}}
		}
		return nil, path, false, nil
	case err != nil:
		return nil, path, true, []Problem{{File: path, Message: fmt.Sprintf("cannot read: %v", err)}}
	}
	return raw, path, true, nil
}

// ParseLimits decodes and checks the content of a rate limits file: a
// list of limits, each with a scope (identity; tenant; tool; or tenant and
// tool), a rate and an optional burst (default: one second's worth of the
// rate, at least 1). path names the file in problems. An empty file
// declares no limits.
func ParseLimits(path string, raw []byte) ([]state.Limit, []Problem) {
	out, ps := parseList(path, raw, listFormat[state.Limit]{
		notList: "must be a list of limits, one entry per limit such as " + limitExample,
		notMapping: func(i int) string {
			return fmt.Sprintf("limit %d must be a mapping with a scope (identity, tenant, tool), rate and burst, such as %s", i, limitExample)
		},
		decode: decodeLimit,
		key:    state.Limit.Scope,
		twice: func(l state.Limit, line int) Problem {
			return Problem{Message: fmt.Sprintf("a limit of scope %s is also declared on line %d; declare each scope once", l.Scope(), line)}
		},
	})
	if len(ps) > 0 {
		return nil, ps
	}
	return out, nil
}

// limitKeys are the keys of one limit.
var limitKeys = []string{"identity", "tenant", "tool", "rate", "burst"}

// decodeLimit decodes one entry of limits.yaml and checks it as the
// registry would.
func decodeLimit(path string, item *yaml.Node) (state.Limit, []Problem) {
	var l state.Limit
	var ps []Problem
	add := func(n *yaml.Node, field, format string, args ...any) {
		ps = append(ps, Problem{File: path, Line: n.Line, Field: field, Message: fmt.Sprintf(format, args...)})
	}
	nodes := map[string]*yaml.Node{}
	for j := 0; j+1 < len(item.Content); j += 2 {
		k, v := item.Content[j], item.Content[j+1]
		if _, dup := nodes[k.Value]; dup {
			add(k, k.Value, "duplicate key")
			continue
		}
		nodes[k.Value] = v
		str := func(example string) string {
			s, ok := scalar(v)
			if !ok {
				add(v, k.Value, "must be a string such as %s", example)
			}
			return strings.TrimSpace(s)
		}
		switch k.Value {
		case "identity":
			l.Identity = str("spiffe://hr.example.corp/agent/batch-* (a principal id, or a prefix ending in *)")
		case "tenant":
			l.Tenant = str("payroll (or * for each tenant)")
		case "tool":
			l.Tool = str("corp.finance/ledger/transfer_funds (<server>/<tool>)")
		case "rate":
			l.Rate = str("100/s or 600/m")
			if _, err := state.ParseRate(l.Rate); l.Rate != "" && err != nil {
				add(v, "rate", "%v", err)
			}
		case "burst":
			s, _ := scalar(v)
			n, err := strconv.Atoi(s)
			if v.Kind != yaml.ScalarNode || err != nil || n < 1 || n > state.MaxRateCount {
				add(v, "burst", "must be a whole number of calls from 1 to %d, such as 200", state.MaxRateCount)
			}
			l.Burst = n
		default:
			hint := "a limit has identity, tenant, tool, rate and burst"
			for _, known := range limitKeys {
				if strings.EqualFold(k.Value, known) {
					hint = fmt.Sprintf("did you mean %q? Keys are case-sensitive", known)
				}
			}
			add(k, k.Value, "unknown key: %s", hint)
		}
	}
	if len(ps) > 0 {
		return l, ps
	}
	if l.Rate == "" {
		add(item, "rate", "is required: calls per second, minute or hour, such as 100/s or 600/m")
		return l, ps
	}
	if _, ok := nodes["burst"]; !ok {
		r, _ := state.ParseRate(l.Rate)
		l.Burst = state.DefaultBurst(r)
	}
	if err := state.ValidateLimit(l); err != nil {
		// Point at the field the message is about, when it names one.
		n, field := item, ""
		for _, key := range []string{"identity", "tenant", "tool", "burst"} {
			if v, ok := nodes[key]; ok && strings.HasPrefix(err.Error(), key) {
				n, field = v, key
			}
		}
		add(n, field, "%v", err)
	}
	return l, ps
}

// planLimits adds the rate limit set's change when the catalog has a
// limits.yaml: its limits replace the registry's set whole.
func planLimits(ctx context.Context, c Client, cat *Catalog, p *Plan) error {
	if cat.LimitsFile == "" {
		return nil
	}
	cur, err := c.Limits(ctx, true)
	if err != nil {
		return fmt.Errorf("read rate limits from the registry: %w", err)
	}
	ch := Change{Kind: KindLimits, Name: "limits", File: cat.LimitsFile, Action: Update, limits: cat.Limits}
	if len(cur.Limits.Limits) == 0 {
		ch.Action = Create
	}
	have := map[string]state.Limit{}
	for _, l := range cur.Limits.Limits {
		have[l.Scope()] = l
	}
	for _, l := range cat.Limits {
		old, ok := have[l.Scope()]
		switch {
		case !ok:
			ch.Fields = append(ch.Fields, "+"+l.Scope())
		case old != l:
			ch.Fields = append(ch.Fields, "~"+l.Scope())
		}
		delete(have, l.Scope())
	}
	for _, l := range cur.Limits.Limits {
		if _, gone := have[l.Scope()]; gone {
			ch.Fields = append(ch.Fields, "-"+l.Scope())
		}
	}
	if len(ch.Fields) == 0 {
		ch.Action = Unchanged
	}
	p.Changes = append(p.Changes, ch)
	return nil
}
