package e2e

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/mcpmesh/mcpmesh/registry/api"
	"github.com/mcpmesh/mcpmesh/test/internal/testcluster"
)

// TestSchemaRefusedAtSubmission: a card whose tool schema is not valid JSON
// Schema is refused at submission, exit 1 with one line naming the field
// and the reason, 400 on the API, and nothing is registered.
func TestSchemaRefusedAtSubmission(t *testing.T) {
	t.Parallel()
	c := startCluster(t, testcluster.Options{NoSync: true, Nodes: 1})
	n := c.Nodes[0]
	cl := n.Client()
	const name = "corp.hr/directory"
	good := string(testcluster.Card(name, "1.0.0"))
	const input = `"inputSchema": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}`
	if !strings.Contains(good, input) {
		t.Fatalf("testcluster.Card has no %s to replace:\n%s", input, good)
	}
	tests := []struct {
		name, replacement, field string
		wants                    []string
	}{
		{"unknown type", `"inputSchema": {"type": "object", "properties": {"a": {"type": "nope"}}}`,
			"_meta.io.mcpmesh/tools[0].inputSchema", []string{"not a valid JSON Schema", "at /properties/a/type", `"string"`}},
		{"remote $ref", `"inputSchema": {"type": "object", "properties": {"a": {"$ref": "https://schemas.example.com/a.json"}}}`,
			"_meta.io.mcpmesh/tools[0].inputSchema", []string{"refers to https://schemas.example.com/a.json", "outside the schema", "#/$defs/NAME"}},
		{"invalid outputSchema", input + `, "outputSchema": {"type": "object", "required": "a"}`,
			"_meta.io.mcpmesh/tools[0].outputSchema", []string{"not a valid JSON Schema", "at /required: must be array"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad := []byte(strings.Replace(good, input, tt.replacement, 1))
			out, code := c.CLI(n, "registry", "submit", "-f", writeCard(t, bad))
			line := wantFailure(t, "submit of a card with an invalid schema", out, code, 1, append([]string{tt.field}, tt.wants...)...)
			t.Logf("%s", line)

			_, err := cl.Submit(t.Context(), bad)
			var ae *api.Error
			if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || !hasProblem(ae.Problems, tt.field) {
				t.Errorf("POST of the card: %#v; want 400 with a problem naming %s", err, tt.field)
			}
		})
	}
	if _, out, ok := show(t, c, n, ref(name, "1.0.0")); ok {
		t.Errorf("a refused card was registered:\n%s", out)
	}
	submit(t, c, n, name, "1.0.0")
}
