package apply

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/mcpmesh/mcpmesh/node/policy"
	"github.com/mcpmesh/mcpmesh/node/validate"
	"github.com/mcpmesh/mcpmesh/registry/card"
	"github.com/mcpmesh/mcpmesh/registry/state"
)

// TenantsFile is the name of the tenants file, read only at the top of a
// catalog directory.
const TenantsFile = "tenants.yaml"

// PolicyExt is the extension of Cedar policy files, read only at the top of
// a catalog directory.
const PolicyExt = ".cedar"

// maxCardBytes is the admin API's limit on a request body: a larger card
// would be refused on submission, so it is refused here first.
const maxCardBytes = 4 << 20

// Catalog is what a directory declares, read and checked locally. It is a
// plain value.
type Catalog struct {
	// Dir is the directory as given to Load.
	Dir string
	// Cards are the server cards, by name and then version precedence.
	Cards []CardFile
	// Tenants are the tenants of tenants.yaml, in file order.
	Tenants []TenantSpec
	// Skipped lists the *.json files that are not server cards.
	Skipped []Skipped
	// Policies are the *.cedar files at the top of Dir, by name, each
	// validated against the mcpmesh schema; nil when there are none, and
	// then applying the catalog leaves the registry's policies alone.
	Policies []state.PolicyFile
	// Limits are the rate limits of DIR/limits.yaml, in file order;
	// LimitsFile is that file's path, empty when there is none, and then
	// applying the catalog leaves the registry's limits alone.
	Limits     []state.Limit
	LimitsFile string
	// Quotas are the entries of quotas.yaml, in file order; nil when there
	// is no such file, and then applying the catalog leaves the registry's
	// quotas alone (an empty file gives an empty, non-nil list).
	Quotas []QuotaSpec
	// Exports are the entries of exports.yaml, in file order; nil when
	// there is no such file, and then applying the catalog leaves the
	// registry's exports alone (an empty file gives an empty, non-nil
	// list, which stops all sharing).
	Exports []ExportSpec
}

// CardFile is one server card of a catalog.
type CardFile struct {
	// File is the card's path: Dir joined with its path inside Dir.
	File string
	// Name and Version are the card's NAME@VERSION.
	Name, Version string
	// Hash is card.CanonicalHash of Raw, comparable with the registry's
	// cardHash.
	Hash string
	// Raw is the file's content, submitted as is.
	Raw []byte
}

// TenantSpec is one tenant of tenants.yaml. Owners are trimmed and empty
// ones dropped, as the registry does.
type TenantSpec struct {
	// File and Line locate the tenant's entry.
	File string
	Line int
	// Name, DisplayName and Owners are what the registry should hold.
	Name        string
	DisplayName string
	Owners      []string
}

// Skipped is a *.json file that Load did not take for a server card.
type Skipped struct {
	File   string `json:"file"`
	Reason string `json:"reason"`
}

// Problem is one thing wrong with a file of the catalog.
type Problem struct {
	// File is the file's path (Dir joined with its path inside Dir).
	File string `json:"file"`
	// Line is the 1-based line in File, when known (tenants.yaml); 0 otherwise.
	Line int `json:"line,omitempty"`
	// Field is the offending field, such as "description" or
	// "_meta.io.mcpmesh/governance.riskTier"; empty for the whole file.
	Field string `json:"field,omitempty"`
	// Message says what is wrong and what to do.
	Message string `json:"message"`
}

// String formats the problem as "file[:line]: [field: ]message".
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
	}
	b.WriteString(": ")
	if p.Field != "" {
		b.WriteString(p.Field + ": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// InvalidError lists every problem Load found. Nothing was sent to the
// registry.
type InvalidError struct {
	// Problems holds one entry per problem: the cards' file by file in
	// walk order, then cards declared twice, then tenants.yaml. It is never
	// empty.
	Problems []Problem
}

// Error names the count of problems and files, then every problem on one
// line.
func (e *InvalidError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.String()
	}
	return e.Summary() + ": " + strings.Join(parts, "; ")
}

// Summary is a short line such as "3 problems in 2 files; nothing was
// applied".
func (e *InvalidError) Summary() string {
	files := map[string]bool{}
	for _, p := range e.Problems {
		files[p.File] = true
	}
	return fmt.Sprintf("%s in %s; nothing was applied", plural(len(e.Problems), "problem"), plural(len(files), "file"))
}

func plural(n int, what string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", what)
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// Load reads a catalog directory: every server card under it (recursively,
// *.json, skipping hidden files and directories) and DIR/tenants.yaml if
// present. It touches no network. It returns *InvalidError listing every
// problem of every file when any card or tenant is invalid or declared
// twice; other errors mean the directory could not be read at all.
func Load(dir string) (*Catalog, error) {
	info, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("catalog directory %s does not exist", dir)
	}
	if err != nil {
		return nil, fmt.Errorf("read catalog: %w", err)
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("catalog %s is not a directory: pass the directory that holds the server cards", dir)
	}
	cat := &Catalog{Dir: dir}
	var ps []Problem
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			ps = append(ps, Problem{File: path, Message: fmt.Sprintf("cannot read: %v", err)})
			if d != nil && d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		hidden := path != dir && strings.HasPrefix(d.Name(), ".")
		if d.IsDir() {
			if hidden {
				return filepath.SkipDir
			}
			return nil
		}
		if hidden || filepath.Ext(path) != ".json" {
			return nil
		}
		cf, skip, fps := loadCard(path)
		switch {
		case len(fps) > 0:
			ps = append(ps, fps...)
		case skip != "":
			cat.Skipped = append(cat.Skipped, Skipped{File: path, Reason: skip})
		default:
			cat.Cards = append(cat.Cards, cf)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("catalog: walk %s: %w", dir, err)
	}
	ps = append(ps, duplicateCards(cat.Cards)...)
	sort.SliceStable(cat.Cards, func(i, j int) bool {
		a, b := cat.Cards[i], cat.Cards[j]
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return card.CompareVersions(a.Version, b.Version) < 0
	})

	tenantsPath := filepath.Join(dir, TenantsFile)
	if _, err := os.Stat(tenantsPath); err == nil {
		ts, tps := loadTenants(tenantsPath)
		cat.Tenants = ts
		ps = append(ps, tps...)
	} else if !errors.Is(err, fs.ErrNotExist) {
		ps = append(ps, Problem{File: tenantsPath, Message: fmt.Sprintf("cannot read: %v", err)})
	} else if _, err := os.Stat(filepath.Join(dir, "tenants.yml")); err == nil {
		ps = append(ps, Problem{File: filepath.Join(dir, "tenants.yml"), Message: "the tenants file must be named " + TenantsFile + "; rename it"})
	}
	pfs, pps := loadPolicies(dir)
	cat.Policies = pfs
	ps = append(ps, pps...)
	ls, declared, lps := loadLimits(dir)
	if declared {
		cat.Limits, cat.LimitsFile = ls, filepath.Join(dir, LimitsFile)
	}
	ps = append(ps, lps...)
	qs, _, qps := loadQuotasFile(dir)
	cat.Quotas = qs
	ps = append(ps, qps...)
	es, _, eps := loadExportsFile(dir)
	cat.Exports = es
	ps = append(ps, eps...)
	if len(ps) > 0 {
		return nil, &InvalidError{Problems: ps}
	}
	return cat, nil
}

// loadPolicies reads the *.cedar files at the top of dir and validates
// them against the mcpmesh schema: each file alone, so that problems name
// their file, then all together (policy ids are unique across the set).
func loadPolicies(dir string) ([]state.PolicyFile, []Problem) {
	paths, err := filepath.Glob(filepath.Join(dir, "*"+PolicyExt))
	if err != nil {
		return nil, []Problem{{File: dir, Message: err.Error()}}
	}
	var files []state.PolicyFile
	var ps []Problem
	for _, path := range paths {
		if strings.HasPrefix(filepath.Base(path), ".") {
			continue
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			ps = append(ps, Problem{File: path, Message: fmt.Sprintf("cannot read: %v", err)})
			continue
		}
		f := state.PolicyFile{Name: filepath.Base(path), Text: string(raw)}
		if _, err := policy.Compile([]policy.File{f}); err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				ps = append(ps, Problem{File: path, Message: line})
			}
			continue
		}
		files = append(files, f)
	}
	if len(ps) == 0 && len(files) > 1 {
		if _, err := policy.Compile(files); err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				ps = append(ps, Problem{File: dir, Message: line})
			}
		}
	}
	return files, ps
}

// loadCard reads one *.json file. It returns the card, or a reason to skip
// the file (it is JSON but not a server card), or the file's problems.
func loadCard(path string) (CardFile, string, []Problem) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return CardFile{}, "", []Problem{{File: path, Message: fmt.Sprintf("cannot read: %v", err)}}
	}
	if len(raw) > maxCardBytes {
		return CardFile{}, "", []Problem{{File: path, Message: fmt.Sprintf("is %d bytes; the registry accepts server cards of at most %d bytes", len(raw), maxCardBytes)}}
	}
	// Not JSON at all: card.Parse says why. JSON that is not a card: skip.
	if json.Valid(raw) {
		if reason := notACard(raw); reason != "" {
			return CardFile{}, reason, nil
		}
	}
	c, err := card.Parse(raw)
	if err == nil {
		// The node refuses schemas that do not compile; say so now.
		err = validate.CheckCard(c)
	}
	if err != nil {
		var ve *card.ValidationError
		if !errors.As(err, &ve) {
			return CardFile{}, "", []Problem{{File: path, Message: err.Error()}}
		}
		ps := make([]Problem, len(ve.Problems))
		for i, p := range ve.Problems {
			ps[i] = Problem{File: path, Field: p.Field, Message: p.Message}
		}
		return CardFile{}, "", ps
	}
	hash, err := card.CanonicalHash(raw)
	if err != nil {
		return CardFile{}, "", []Problem{{File: path, Message: err.Error()}}
	}
	return CardFile{File: path, Name: c.Name, Version: c.Version, Hash: hash, Raw: raw}, "", nil
}

// notACard returns why a JSON document is not a server card, or "" when it
// declares itself one: its "$schema" names server.schema.json, or its
// "_meta" holds an io.mcpmesh/ section.
func notACard(raw []byte) string {
	var top map[string]json.RawMessage
	if json.Unmarshal(raw, &top) != nil {
		return "not a JSON object"
	}
	var schema string
	if json.Unmarshal(top["$schema"], &schema) == nil && strings.Contains(schema, "server.schema.json") {
		return ""
	}
	var meta map[string]json.RawMessage
	if json.Unmarshal(top["_meta"], &meta) == nil {
		for k := range meta {
			if len(k) >= len("io.mcpmesh/") && strings.EqualFold(k[:len("io.mcpmesh/")], "io.mcpmesh/") {
				return ""
			}
		}
	}
	return `not a server card: no "$schema" naming server.schema.json and no io.mcpmesh/ section in "_meta"`
}

// duplicateCards reports every card whose NAME@VERSION an earlier file
// already declares.
func duplicateCards(cards []CardFile) []Problem {
	first := map[string]string{}
	var ps []Problem
	for _, c := range cards {
		ref := c.Name + "@" + c.Version
		if f, ok := first[ref]; ok {
			ps = append(ps, Problem{File: c.File, Field: "version", Message: fmt.Sprintf("%s is also declared in %s; declare each version in one file", ref, f)})
			continue
		}
		first[ref] = c.File
	}
	return ps
}

// tenantExample shows the shape of tenants.yaml in messages.
const tenantExample = `"- {name: payroll, displayName: Payroll, owners: [alice@corp.example]}"`

// loadTenants reads tenants.yaml: a list of {name, displayName, owners}.
func loadTenants(path string) ([]TenantSpec, []Problem) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, []Problem{{File: path, Message: fmt.Sprintf("cannot read: %v", err)}}
	}
	return ParseTenants(path, raw)
}

// ParseTenants decodes and checks the content of a tenants file; path
// names it in problems.
func ParseTenants(path string, raw []byte) ([]TenantSpec, []Problem) {
	out, ps := parseList(path, raw, listFormat[TenantSpec]{
		notList: "must be a list of tenants, one entry per tenant such as " + tenantExample,
		notMapping: func(i int) string {
			return fmt.Sprintf("tenant %d must be a mapping with name, displayName and owners, such as %s", i, tenantExample)
		},
		decode: decodeTenant,
		key:    func(t TenantSpec) string { return t.Name },
		twice: func(t TenantSpec, line int) Problem {
			return Problem{Field: "name", Message: fmt.Sprintf("tenant %s is also declared on line %d; declare each tenant once", t.Name, line)}
		},
	})
	if len(out) == 0 {
		out = nil // an empty file declares no tenant
	}
	return out, ps
}

// listFormat describes a catalog file that is a YAML list of mappings,
// one entry per object (tenants.yaml, limits.yaml, quotas.yaml).
type listFormat[T any] struct {
	// notList is the problem when the document is not a list.
	notList string
	// notMapping is the problem when entry i (from 1) is not a mapping.
	notMapping func(i int) string
	// decode decodes and checks one entry.
	decode func(path string, item *yaml.Node) (T, []Problem)
	// key names the object an entry declares; twice is the problem of an
	// entry whose key an earlier one, on line, declared (File and Line
	// are filled in).
	key   func(T) string
	twice func(t T, line int) Problem
}

// parseList decodes a list file of format f: an empty document is an
// empty, non-nil list. It returns the entries that decoded cleanly, in
// file order, and every problem of the others.
func parseList[T any](path string, raw []byte, f listFormat[T]) ([]T, []Problem) {
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, []Problem{{File: path, Message: "not valid YAML: " + strings.Join(strings.Fields(strings.TrimPrefix(err.Error(), "yaml: ")), " ")}}
	}
	out := []T{}
	if len(doc.Content) == 0 {
		return out, nil
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return out, nil
	}
	if root.Kind != yaml.SequenceNode {
		return nil, []Problem{{File: path, Line: root.Line, Message: f.notList}}
	}
	var ps []Problem
	seen := map[string]int{}
	for i, item := range root.Content {
		if item.Kind != yaml.MappingNode {
			ps = append(ps, Problem{File: path, Line: item.Line, Message: f.notMapping(i + 1)})
			continue
		}
		v, vps := f.decode(path, item)
		if len(vps) > 0 {
			ps = append(ps, vps...)
			continue
		}
		if line, ok := seen[f.key(v)]; ok {
			p := f.twice(v, line)
			p.File, p.Line = path, item.Line
			ps = append(ps, p)
			continue
		}
		seen[f.key(v)] = item.Line
		out = append(out, v)
	}
	return out, ps
}

// decodeTenant decodes one entry of tenants.yaml and checks it as the
// registry would.
func decodeTenant(path string, item *yaml.Node) (TenantSpec, []Problem) {
	t := TenantSpec{File: path, Line: item.Line}
	var ps []Problem
	add := func(n *yaml.Node, field, format string, args ...any) {
		ps = append(ps, Problem{File: path, Line: n.Line, Field: field, Message: fmt.Sprintf(format, args...)})
	}
	keys := map[string]bool{}
	var nameNode, ownersNode *yaml.Node
	for j := 0; j+1 < len(item.Content); j += 2 {
		k, v := item.Content[j], item.Content[j+1]
		if keys[k.Value] {
			add(k, k.Value, "duplicate key")
			continue
		}
		keys[k.Value] = true
		switch k.Value {
		case "name":
			nameNode = v
			s, ok := scalar(v)
			if !ok {
				add(v, "name", "must be a string such as payroll")
			}
			t.Name = s
		case "displayName":
			s, ok := scalar(v)
			if !ok {
				add(v, "displayName", "must be a string such as Payroll")
			}
			t.DisplayName = s
		case "owners":
			ownersNode = v
			if v.Kind != yaml.SequenceNode {
				add(v, "owners", "must be a list of people or groups, such as [alice@corp.example]")
				continue
			}
			for _, o := range v.Content {
				s, ok := scalar(o)
				if !ok {
					add(o, "owners", "each owner must be a string such as alice@corp.example")
					continue
				}
				if s = strings.TrimSpace(s); s != "" {
					t.Owners = append(t.Owners, s)
				}
			}
		default:
			hint := "a tenant has name, displayName and owners"
			for _, known := range []string{"name", "displayName", "owners"} {
				if strings.EqualFold(k.Value, known) {
					hint = fmt.Sprintf("did you mean %q? Keys are case-sensitive", known)
				}
			}
			add(k, k.Value, "unknown key: %s", hint)
		}
	}
	if len(ps) > 0 {
		return t, ps
	}
	switch {
	case nameNode == nil:
		add(item, "name", "is required: the tenant's name, such as payroll")
	default:
		if err := state.ValidateTenantName(t.Name); err != nil {
			add(nameNode, "name", "%v", err)
		}
	}
	if len(t.Owners) == 0 {
		n := item
		if ownersNode != nil {
			n = ownersNode
		}
		who := "the tenant"
		if t.Name != "" {
			who = "tenant " + t.Name
		}
		add(n, "owners", "%s needs at least one owner (a person or group accountable for it)", who)
	}
	return t, ps
}

// scalar returns a scalar node's value ("" for null).
func scalar(n *yaml.Node) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		return "", false
	}
	if n.Tag == "!!null" {
		return "", true
	}
	return n.Value, true
}
