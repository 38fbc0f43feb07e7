package manifest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Parse decodes a manifest written in YAML and validates it. Decoding is
// strict: an unknown key, a value of the wrong type or a second document
// is an error naming the field path and its line.
func Parse(data []byte) (*Manifest, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("federation manifest: %d bytes; at most %d", len(data), MaxSize)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("federation manifest: invalid YAML: %s", oneLine(err.Error()))
	}
	if err := checkExpires(&root); err != nil {
		return nil, err
	}
	var m Manifest
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&m); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("federation manifest: empty; want version, expires, trust_domains and relationships")
		}
		return nil, yamlError(err, &root)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("federation manifest: more than one YAML document; want exactly one")
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// checkExpires checks the expires value before decoding: yaml.v3 reports
// a bad time without its line or key.
func checkExpires(root *yaml.Node) error {
	if root.Kind != yaml.DocumentNode || len(root.Content) != 1 || root.Content[0].Kind != yaml.MappingNode {
		return nil
	}
	top := root.Content[0].Content
	for i := 0; i+1 < len(top); i += 2 {
		if k, v := top[i], top[i+1]; k.Value == "expires" && v.Kind == yaml.ScalarNode {
			if _, err := time.Parse(time.RFC3339, v.Value); err != nil {
				return fmt.Errorf("federation manifest: expires: %q is not an RFC 3339 time such as 2027-01-01T00:00:00Z (line %d)", v.Value, v.Line)
			}
		}
	}
	return nil
}

var (
	notFoundRE  = regexp.MustCompile(`^line (\d+): field (\S+) not found in type \S+$`)
	cannotDecRE = regexp.MustCompile("(?s)^line (\\d+): cannot unmarshal !!(\\w+) `(.*)` into (\\S+)$")
)

// yamlError turns yaml.v3's errors into one line whose parts name the
// field path (found in the document tree by line).
func yamlError(err error, root *yaml.Node) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return fmt.Errorf("federation manifest: invalid YAML: %s", oneLine(err.Error()))
	}
	msgs := make([]string, 0, len(te.Errors))
	for _, e := range te.Errors {
		e = strings.TrimSpace(e)
		if m := notFoundRE.FindStringSubmatch(e); m != nil {
			line, _ := strconv.Atoi(m[1])
			msgs = append(msgs, fmt.Sprintf("%s: unknown key (line %s); see the README's manifest example for the keys", pathAt(root, line, m[2]), m[1]))
			continue
		}
		if m := cannotDecRE.FindStringSubmatch(e); m != nil {
			line, _ := strconv.Atoi(m[1])
			msgs = append(msgs, fmt.Sprintf("%s: %q is not %s (line %s)", pathAt(root, line, ""), m[3], want(m[4]), m[1]))
			continue
		}
		msgs = append(msgs, e)
	}
	return fmt.Errorf("federation manifest: %s", oneLine(strings.Join(msgs, "; ")))
}

func want(goType string) string {
	switch goType {
	case "uint64":
		return "a positive integer"
	case "time.Time":
		return "an RFC 3339 time such as 2027-01-01T00:00:00Z"
	case "string":
		return "a string"
	case "[]manifest.Domain", "[]manifest.BundleEndpoint", "[]manifest.Relationship":
		return "a list"
	case "manifest.Manifest", "manifest.Domain", "manifest.BundleEndpoint", "manifest.Relationship":
		return "a mapping of keys"
	}
	return "a " + goType
}

// pathAt returns the path of the node on line (the key named key, when
// given, among several on that line), e.g. trust_domains[1].namespace.
func pathAt(root *yaml.Node, line int, key string) string {
	best := ""
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := k.Value
				if path != "" {
					p = path + "." + k.Value
				}
				if k.Line == line && (key == "" || k.Value == key) {
					best = p
				}
				walk(v, p)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				p := fmt.Sprintf("%s[%d]", path, i)
				if c.Line == line && c.Kind == yaml.ScalarNode && best == "" {
					best = p
				}
				walk(c, p)
			}
		case yaml.ScalarNode:
			if n.Line == line && best == "" && path != "" {
				best = path
			}
		}
	}
	walk(root, "")
	if best == "" {
		if key != "" {
			return key
		}
		return "document"
	}
	return best
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
