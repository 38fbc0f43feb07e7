package policy

import (
	"cmp"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/cedar-policy/cedar-go"
	xast "github.com/cedar-policy/cedar-go/x/exp/ast"
	"github.com/cedar-policy/cedar-go/x/exp/schema"
	"github.com/cedar-policy/cedar-go/x/exp/schema/validate"

	"github.com/mcpmesh/mcpmesh/registry/state"
)

// SchemaText is the Cedar schema (human-readable format) that every policy
// is validated against.
//
//go:embed schema.cedarschema
var SchemaText string

// validator checks policies against SchemaText; built once.
var validator = func() *validate.Validator {
	var s schema.Schema
	s.SetFilename("schema.cedarschema")
	if err := s.UnmarshalCedar([]byte(SchemaText)); err != nil {
		panic("policy: embedded schema does not parse: " + err.Error())
	}
	r, err := s.Resolve()
	if err != nil {
		panic("policy: embedded schema does not resolve: " + err.Error())
	}
	return validate.New(r)
}()

// File is one policy file: its name (for positions in errors and for
// policy ids) and its Cedar text, as the registry stores it.
type File = state.PolicyFile

// maxFiles and maxFileBytes bound a policy set so that one mistaken apply
// cannot bloat the replicated state.
const (
	maxFiles      = 256
	maxFileBytes  = 256 << 10
	maxTotalBytes = 2 << 20
)

// Set is a compiled policy set whose every policy passed validation
// against the schema. It is immutable and safe for concurrent use.
type Set struct {
	policies *cedar.PolicySet
	ids      []string // in file order
	files    []File
	digest   string
	// approvals are the @approval annotations of the set (approval.go),
	// by policy id; arguments is set when a policy may read arguments.
	approvals map[string]string
	arguments bool
}

// Compile parses files, gives each policy its id and validates it against
// the schema. A policy's id is its @id("…") annotation, or "<file>#<n>"
// for the n-th policy of the file (from 0) without one. Every problem is
// reported, each with its file, line and column.
func Compile(files []File) (*Set, error) {
	if len(files) > maxFiles {
		return nil, fmt.Errorf("policy set: %d files; at most %d are accepted", len(files), maxFiles)
	}
	files = slices.Clone(files)
	slices.SortFunc(files, func(a, b File) int { return cmp.Compare(a.Name, b.Name) })
	total := 0
	for _, f := range files {
		total += len(f.Text)
	}
	if total > maxTotalBytes {
		return nil, fmt.Errorf("policy set: %d bytes of policies; at most %d are accepted", total, maxTotalBytes)
	}
	s := &Set{policies: cedar.NewPolicySet(), files: files}
	var errs []error
	seen := map[string]string{}
	h := sha256.New()
	for i, f := range files {
		switch {
		case f.Name == "" || strings.ContainsAny(f.Name, "/\\\x00") || !strings.HasSuffix(f.Name, ".cedar"):
			errs = append(errs, fmt.Errorf("policy file %q: want a base name ending in .cedar", f.Name))
			continue
		case i > 0 && files[i-1].Name == f.Name:
			errs = append(errs, fmt.Errorf("policy file %s: given twice", f.Name))
			continue
		case len(f.Text) > maxFileBytes:
			errs = append(errs, fmt.Errorf("policy file %s: %d bytes; at most %d are accepted", f.Name, len(f.Text), maxFileBytes))
			continue
		}
		fmt.Fprintf(h, "%s\x00%d\x00%s", f.Name, len(f.Text), f.Text)
		list, err := cedar.NewPolicyListFromBytes(f.Name, []byte(f.Text))
		if err != nil {
			errs = append(errs, fmt.Errorf("policy file %s: %w", f.Name, err))
			continue
		}
		for n, p := range list {
			id := fmt.Sprintf("%s#%d", f.Name, n)
			if a, ok := p.Annotations()["id"]; ok {
				id = string(a)
			}
			pos := position(p)
			if id == "" {
				errs = append(errs, fmt.Errorf("%s: @id is empty; give the policy a name or drop the annotation", pos))
				continue
			}
			if prev, dup := seen[id]; dup {
				errs = append(errs, fmt.Errorf("%s: policy id %q is already used at %s; ids must be unique across the set", pos, id, prev))
				continue
			}
			seen[id] = pos
			if err := validator.Policy(id, (*xast.Policy)(p.AST())); err != nil {
				errs = append(errs, fmt.Errorf("%s: policy %q does not match the mcpmesh schema (`mcpmesh policy schema` prints it): %w", pos, id, err))
				continue
			}
			tier, err := approvalOf(p, pos, id)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if tier != "" {
				if s.approvals == nil {
					s.approvals = map[string]string{}
				}
				s.approvals[id] = tier
			}
			s.policies.Add(cedar.PolicyID(id), p)
			s.ids = append(s.ids, id)
			s.arguments = s.arguments || usesArguments(p)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	s.digest = hex.EncodeToString(h.Sum(nil))[:16]
	return s, nil
}

func position(p *cedar.Policy) string {
	pos := p.Position()
	return fmt.Sprintf("%s:%d:%d", pos.Filename, pos.Line, pos.Column)
}

// Files returns the set's files, by name.
func (s *Set) Files() []File { return slices.Clone(s.files) }

// IDs returns the ids of the set's policies in file order.
func (s *Set) IDs() []string { return slices.Clone(s.ids) }

// Digest is a short hash of the set's files, naming this exact set in
// logs and decisions.
func (s *Set) Digest() string { return s.digest }

// Len is the number of policies.
func (s *Set) Len() int { return len(s.ids) }
