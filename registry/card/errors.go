package card

import (
	"fmt"
	"slices"
	"strings"
)

// ValidationError lists every problem found in a server card. Parse,
// Card.Validate, Card.Governance, Card.Tools and Card.ToolVersions return it
// (as *ValidationError) so that a caller can show the submitter all problems
// at once; every one of them is the submitter's to fix.
type ValidationError struct {
	// Problems holds one entry per problem, in a fixed order: top-level
	// fields, the governance section key by key, the tools one by one, then
	// other "_meta" keys. It is never empty in an error returned by this
	// package.
	Problems []Problem
}

// Problem is one thing wrong with a server card.
type Problem struct {
	// Field is the JSON path of the offending value, such as
	// "_meta.io.mcpmesh/governance.upstream.url" or
	// "_meta.io.mcpmesh/tools[2].inputSchema". It is empty when the problem
	// concerns the whole document.
	Field string `json:"field"`
	// Message says what was expected and what to do about it.
	Message string `json:"message"`
}

// Error joins the problems into one line:
// "server card invalid: name: must be …; version: …".
func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString("server card invalid: ")
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p.String())
	}
	return b.String()
}

// String formats the problem as "field: message", or just the message when
// Field is empty.
func (p Problem) String() string {
	if p.Field == "" {
		return p.Message
	}
	return p.Field + ": " + p.Message
}

// problems accumulates Problems; its err method returns nil when there are
// none, so that callers never return a typed nil inside an error.
type problems []Problem

func (ps *problems) add(field, format string, args ...any) {
	*ps = append(*ps, Problem{Field: field, Message: fmt.Sprintf(format, args...)})
}

func (ps problems) err() error {
	if len(ps) == 0 {
		return nil
	}
	return &ValidationError{Problems: ps}
}

// appendNew appends the problems of more except those about a field that
// already has a problem, or about a value inside one: a value that failed to
// decode is reported once, not again as empty or missing parts.
func (ps problems) appendNew(more problems) problems {
	seen := make(map[string]bool, len(ps))
	for _, p := range ps {
		seen[p.Field] = true
	}
	for _, p := range more {
		if !seen[p.Field] && !insideSeen(p.Field, seen) {
			ps = append(ps, p)
		}
	}
	return ps
}

// insideSeen reports whether field lies inside a non-empty field in seen.
func insideSeen(field string, seen map[string]bool) bool {
	for f := range seen {
		if f != "" && len(field) > len(f) && strings.HasPrefix(field, f) && (field[len(f)] == '.' || field[len(f)] == '[') {
			return true
		}
	}
	return false
}

// rankPath returns the position in keys of field's first key below prefix: -1
// for prefix itself (or a field outside it), len(keys) for an unknown key. It
// puts a section's problems into the order of the section's keys.
func rankPath(field, prefix string, keys []string) int {
	rest, ok := strings.CutPrefix(field, prefix+".")
	if !ok {
		return -1
	}
	if i := strings.IndexAny(rest, ".["); i >= 0 {
		rest = rest[:i]
	}
	if i := slices.Index(keys, rest); i >= 0 {
		return i
	}
	return len(keys)
}
