package apply

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/mcpmesh/mcpmesh/registry/state"
)

// ExportsFile is the name of the exports file, read only at the top of a
// catalog directory. It lists what this namespace shares with other BUs,
// deny by default:
//
//   - server: corp.finance/ledger       # a server of this namespace
//     tools: [generate_report]          # each tool by name; no wildcard
//     versions: ["2.x"]                 # optional: exact, major (2.x) or minor (2.1.x); omitted = every version
//     to:
//   - trust_domain: hr.example.corp
//     principals: ["oidc:"]           # optional principal id prefixes
//     scopes: ["reports:read"]        # optional scopes every call must carry
//
// Only live versions (approved or deprecated, not killed) are ever
// exported. The file replaces the BU's export set whole; an absent file
// leaves the registry's exports alone, an empty one stops all sharing.
const ExportsFile = "exports.yaml"

// KindExports is the BU's export set, replaced as a whole by the
// catalog's exports.yaml.
const KindExports Kind = "exports"

// exportExample shows the shape of exports.yaml in messages.
const exportExample = `"- {server: corp.finance/ledger, tools: [generate_report], to: [{trust_domain: hr.example.corp}]}"`

// ExportSpec is one entry of exports.yaml.
type ExportSpec struct {
	// File and Line locate the entry.
	File string
	Line int
	state.Export
}

// loadExportsFile reads DIR/exports.yaml if present; found is false when
// there is none.
func loadExportsFile(dir string) (es []ExportSpec, found bool, ps []Problem) {
	raw, path, found, ps := readTopFile(dir, ExportsFile, "exports")
	if !found || len(ps) > 0 {
		return nil, found, ps
	}
	es, ps = ParseExports(path, raw)
	if es == nil && len(ps) == 0 {
		es = []ExportSpec{}
	}
	return es, true, ps
}

// exportRef matches the entry number in the state machine's messages.
var exportRef = regexp.MustCompile(`^export (\d+): `)

// ParseExports decodes and checks the content of an exports file; path
// names it in problems, each with its line. It never panics.
func ParseExports(path string, raw []byte) ([]ExportSpec, []Problem) {
	n := 0
	out, ps := parseList(path, raw, listFormat[ExportSpec]{
		notList: "must be a list of exports, one entry per server and consumers, such as " + exportExample,
		notMapping: func(i int) string {
			return fmt.Sprintf("export %d must be a mapping with server, tools, versions and to, such as %s", i, exportExample)
		},
		decode: decodeExport,
		key:    func(ExportSpec) string { n++; return strconv.Itoa(n) }, // several entries may name one server
		twice:  func(ExportSpec, int) Problem { return Problem{} },
	})
	if len(ps) > 0 {
		return nil, ps
	}
	// Across entries: one export per tool, consumer and version.
	set := make([]state.Export, len(out))
	for i, e := range out {
		set[i] = e.Export
	}
	if err := state.ValidateExports(set); err != nil {
		msg, line := stateMessage(err), 0
		if m := exportRef.FindStringSubmatch(msg); m != nil {
			if i, _ := strconv.Atoi(m[1]); i >= 1 && i <= len(out) {
				line = out[i-1].Line
				msg = strings.TrimPrefix(msg, m[0])
			}
		}
		return nil, []Problem{{File: path, Line: line, Field: "tools", Message: msg}}
	}
	return out, nil
}

func stateMessage(err error) string {
	var se *state.Error
	if errors.As(err, &se) {
		return se.Message
	}
	return err.Error()
}

// decodeExport decodes one entry of exports.yaml and checks it as the
// registry would.
func decodeExport(path string, item *yaml.Node) (ExportSpec, []Problem) {
	e := ExportSpec{File: path, Line: item.Line}
	var ps []Problem
	add := func(n *yaml.Node, field, format string, args ...any) {
		ps = append(ps, Problem{File: path, Line: n.Line, Field: field, Message: fmt.Sprintf(format, args...)})
	}
	strList := func(v *yaml.Node, field, example string) []string {
		if v.Kind != yaml.SequenceNode {
			add(v, field, "must be a list such as %s", example)
			return nil
		}
		out := []string{}
		for _, it := range v.Content {
			s, ok := scalar(it)
			if !ok || s == "" {
				add(it, field, "each entry must be a non-empty string, such as %s", example)
				continue
			}
			out = append(out, s)
		}
		return out
	}
	seen := map[string]bool{}
	var serverNode, toolsNode, toNode *yaml.Node
	for j := 0; j+1 < len(item.Content); j += 2 {
		k, v := item.Content[j], item.Content[j+1]
		if seen[k.Value] {
			add(k, k.Value, "duplicate key")
			continue
		}
		seen[k.Value] = true
		switch k.Value {
		case "server":
			serverNode = v
			s, ok := scalar(v)
			if !ok {
				add(v, "server", "must be a server name such as corp.finance/ledger")
			}
			e.Server = s
		case "tools":
			toolsNode = v
			e.Tools = strList(v, "tools", "[generate_report]")
		case "versions":
			e.Versions = strList(v, "versions", `["2.x"]`)
			if len(e.Versions) == 0 {
				e.Versions = nil
			}
		case "to":
			toNode = v
			if v.Kind != yaml.SequenceNode {
				add(v, "to", "must be a list of consumers such as [{trust_domain: hr.example.corp}]")
				continue
			}
			for _, cn := range v.Content {
				c, cps := decodeConsumer(path, cn, strList)
				ps = append(ps, cps...)
				e.To = append(e.To, c)
			}
		default:
			add(k, k.Value, "unknown key: %s", hintKey(k.Value, []string{"server", "tools", "versions", "to"}, "an export has server, tools, versions and to"))
		}
	}
	if len(ps) > 0 {
		return e, ps
	}
	at := func(n *yaml.Node) *yaml.Node {
		if n != nil {
			return n
		}
		return item
	}
	if serverNode == nil {
		add(item, "server", "is required: the server of this namespace to export, such as corp.finance/ledger")
		return e, ps
	}
	if err := state.ValidateExport(e.Export); err != nil {
		msg := stateMessage(err)
		field, node := "", item
		switch {
		case strings.Contains(msg, "server "):
			field, node = "server", serverNode
		case strings.Contains(msg, "tool"):
			field, node = "tools", at(toolsNode)
		case strings.Contains(msg, "version"):
			field = "versions"
		case strings.Contains(msg, "to is required"), strings.Contains(msg, "trust domain"), strings.Contains(msg, "scope"), strings.Contains(msg, "principal"), strings.Contains(msg, "consumers"):
			field, node = "to", at(toNode)
		}
		add(node, field, "%s", msg)
	}
	return e, ps
}

// decodeConsumer decodes one entry of an export's to list.
func decodeConsumer(path string, n *yaml.Node, strList func(*yaml.Node, string, string) []string) (state.Consumer, []Problem) {
	var c state.Consumer
	var ps []Problem
	add := func(at *yaml.Node, field, format string, args ...any) {
		ps = append(ps, Problem{File: path, Line: at.Line, Field: field, Message: fmt.Sprintf(format, args...)})
	}
	if n.Kind != yaml.MappingNode {
		add(n, "to", "each consumer must be a mapping such as {trust_domain: hr.example.corp, scopes: [reports:read]}")
		return c, ps
	}
	seen := map[string]bool{}
	for j := 0; j+1 < len(n.Content); j += 2 {
		k, v := n.Content[j], n.Content[j+1]
		if seen[k.Value] {
			add(k, "to."+k.Value, "duplicate key")
			continue
		}
		seen[k.Value] = true
		switch k.Value {
		case "trust_domain":
			s, ok := scalar(v)
			if !ok || state.ValidateTrustDomain(s) != nil {
				add(v, "to.trust_domain", "must be a trust domain name such as hr.example.corp (no spiffe://)")
			}
			c.TrustDomain = s
		case "principals":
			c.Principals = strList(v, "to.principals", `["oidc:", "spiffe://hr.example.corp/agent/"]`)
		case "scopes":
			c.Scopes = strList(v, "to.scopes", "[reports:read]")
		default:
			add(k, "to."+k.Value, "unknown key: %s", hintKey(k.Value, []string{"trust_domain", "principals", "scopes"}, "a consumer has trust_domain, principals and scopes"))
		}
	}
	if !seen["trust_domain"] {
		add(n, "to.trust_domain", "is required: the consumer BU's trust domain, such as hr.example.corp")
	}
	if len(c.Principals) == 0 {
		c.Principals = nil
	}
	if len(c.Scopes) == 0 {
		c.Scopes = nil
	}
	return c, ps
}

// hintKey suggests the known key an unknown one differs from in case only.
func hintKey(k string, known []string, otherwise string) string {
	for _, kn := range known {
		if strings.EqualFold(k, kn) || strings.EqualFold(strings.ReplaceAll(k, "_", ""), strings.ReplaceAll(kn, "_", "")) {
			return fmt.Sprintf("did you mean %q? Keys are case-sensitive", kn)
		}
	}
	return otherwise
}

// planExports adds the export set's change when the catalog has an
// exports.yaml: it replaces the registry's set whole. Fields name each
// server whose exports are added ("+"), changed ("~") or removed ("-").
func planExports(ctx context.Context, c Client, cat *Catalog, p *Plan) error {
	if cat.Exports == nil {
		return nil
	}
	cur, err := c.Exports(ctx, true)
	if err != nil {
		return fmt.Errorf("read exports from the registry: %w", err)
	}
	want := make([]state.Export, len(cat.Exports))
	for i, e := range cat.Exports {
		want[i] = e.Export
	}
	state.SortExports(want)
	ch := Change{Kind: KindExports, Name: "exports", File: filepath.Join(cat.Dir, ExportsFile), Action: Update, exports: want}
	if cur.ModifyIndex == 0 {
		ch.Action = Create
	}
	byServer := func(es []state.Export) map[string]string {
		m := map[string]string{}
		for _, e := range es {
			raw, _ := json.Marshal(e)
			m[e.Server] += string(raw)
		}
		return m
	}
	have, next := byServer(cur.Exports), byServer(want)
	for _, e := range want {
		s := e.Server
		if _, done := next[s]; !done {
			continue
		}
		old, ok := have[s]
		switch {
		case !ok:
			ch.Fields = append(ch.Fields, "+"+s)
		case old != next[s]:
			ch.Fields = append(ch.Fields, "~"+s)
		}
		delete(next, s)
		delete(have, s)
	}
	for _, e := range cur.Exports {
		if _, gone := have[e.Server]; gone {
			ch.Fields = append(ch.Fields, "-"+e.Server)
			delete(have, e.Server)
		}
	}
	if len(ch.Fields) == 0 {
		ch.Action = Unchanged
	}
	p.Changes = append(p.Changes, ch)
	return nil
}
