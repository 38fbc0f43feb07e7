package card

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// readLedger returns the sample card in testdata.
func readLedger(t testing.TB) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "ledger.json"))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// mutate decodes the sample card into generic JSON, applies f and encodes it
// again.
func mutate(t *testing.T, f func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(readLedger(t), &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func meta(m map[string]any) map[string]any { return m["_meta"].(map[string]any) }
func gov(m map[string]any) map[string]any  { return meta(m)[GovernanceKey].(map[string]any) }
func up(m map[string]any) map[string]any   { return gov(m)["upstream"].(map[string]any) }
func tool(m map[string]any, i int) map[string]any {
	return meta(m)[ToolsKey].([]any)[i].(map[string]any)
}

// problemFields returns the Field of every problem in err, which must be a
// *ValidationError.
func problemFields(t *testing.T, err error) []string {
	t.Helper()
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error %v (%T) is not a *ValidationError", err, err)
	}
	if len(ve.Problems) == 0 {
		t.Fatalf("ValidationError without problems")
	}
	fields := make([]string, len(ve.Problems))
	for i, p := range ve.Problems {
		fields[i] = p.Field
	}
	return fields
}

func TestParseLedger(t *testing.T) {
	c, err := Parse(readLedger(t))
	if err != nil {
		t.Fatalf("Parse(ledger.json): %v", err)
	}
	if c.Name != "corp.finance/ledger" || c.Version != "1.0.0" {
		t.Errorf("name, version = %q, %q; want corp.finance/ledger, 1.0.0", c.Name, c.Version)
	}
	g, err := c.Governance()
	if err != nil {
		t.Fatalf("Governance: %v", err)
	}
	want := Governance{
		Owner:              "finance-platform@corp.example",
		Team:               "finance-platform",
		DataClassification: "confidential",
		RiskTier:           "high",
		CostPerCall:        0.002,
		Currency:           "USD",
		Upstream:           Upstream{Transport: "streamable-http", URL: "http://127.0.0.1:9301/mcp"},
	}
	if diff := cmp.Diff(want, g); diff != "" {
		t.Errorf("Governance mismatch (-want +got):\n%s", diff)
	}
	tools, err := c.Tools()
	if err != nil {
		t.Fatalf("Tools: %v", err)
	}
	var names []string
	for _, tl := range tools {
		names = append(names, tl.Name)
		if jsonKind(tl.InputSchema) != "object" || jsonKind(tl.OutputSchema) != "object" || jsonKind(tl.Annotations) != "object" {
			t.Errorf("tool %s: schemas or annotations not decoded as objects", tl.Name)
		}
	}
	if diff := cmp.Diff([]string{"get_balance", "transfer_funds"}, names); diff != "" {
		t.Errorf("tool names (-want +got):\n%s", diff)
	}
	tvs, err := c.ToolVersions()
	if err != nil {
		t.Fatalf("ToolVersions: %v", err)
	}
	for i, tv := range tvs {
		if tv.Server != c.Name || tv.Version != c.Version || tv.Name != names[i] {
			t.Errorf("ToolVersion %d = %s %s %s; want %s %s %s", i, tv.Server, tv.Version, tv.Name, c.Name, c.Version, names[i])
		}
		if !strings.HasPrefix(tv.Hash, "sha256:") || len(tv.Hash) != len("sha256:")+64 {
			t.Errorf("ToolVersion %d hash %q is not sha256:<64 hex>", i, tv.Hash)
		}
		if !bytes.Contains(readLedger(t), tv.Definition) {
			t.Errorf("ToolVersion %d definition is not a verbatim slice of the card", i)
		}
	}
}

func TestParseValid(t *testing.T) {
	tests := []struct {
		name  string
		data  []byte
		check func(t *testing.T, c *Card)
	}{
		{
			name: "unknown top-level key is accepted",
			data: mutate(t, func(m map[string]any) { m["futureField"] = map[string]any{"x": 1} }),
		},
		{
			name: "no tools section",
			data: mutate(t, func(m map[string]any) { delete(meta(m), ToolsKey) }),
			check: func(t *testing.T, c *Card) {
				tools, err := c.Tools()
				if err != nil || tools != nil {
					t.Errorf("Tools() = %v, %v; want nil, nil", tools, err)
				}
				tvs, err := c.ToolVersions()
				if err != nil || len(tvs) != 0 {
					t.Errorf("ToolVersions() = %v, %v; want none", tvs, err)
				}
			},
		},
		{
			name: "null tools section",
			data: mutate(t, func(m map[string]any) { meta(m)[ToolsKey] = nil }),
		},
		{
			name: "currency defaults to USD, cost defaults to zero",
			data: mutate(t, func(m map[string]any) { delete(gov(m), "currency"); delete(gov(m), "costPerCall") }),
			check: func(t *testing.T, c *Card) {
				g, err := c.Governance()
				if err != nil || g.Currency != "USD" || g.CostPerCall != 0 {
					t.Errorf("Governance() = %+v, %v; want currency USD, cost 0", g, err)
				}
			},
		},
		{
			name: "stdio upstream with args and env",
			data: mutate(t, func(m map[string]any) {
				gov(m)["upstream"] = map[string]any{
					"transport": "stdio", "command": "/usr/local/bin/ledger-mcp",
					"args": []any{"--tenant-header", "X-Tenant"},
					"env":  map[string]any{"LEDGER_DB": "/var/lib/ledger", "MAX_TOKENS": "4096"},
				}
			}),
			check: func(t *testing.T, c *Card) {
				g, err := c.Governance()
				if err != nil {
					t.Fatal(err)
				}
				want := Upstream{
					Transport: "stdio", Command: "/usr/local/bin/ledger-mcp",
					Args: []string{"--tenant-header", "X-Tenant"},
					Env:  map[string]string{"LEDGER_DB": "/var/lib/ledger", "MAX_TOKENS": "4096"},
				}
				if diff := cmp.Diff(want, g.Upstream); diff != "" {
					t.Errorf("upstream (-want +got):\n%s", diff)
				}
			},
		},
		{
			name: "sse upstream over https",
			data: mutate(t, func(m map[string]any) {
				gov(m)["upstream"] = map[string]any{"transport": "sse", "url": "https://ledger.corp.example:8443/sse?v=1"}
			}),
		},
		{
			name: "prerelease version",
			data: mutate(t, func(m map[string]any) { m["version"] = "2.0.0-rc.1" }),
		},
		{
			name: "publisher-provided and other _meta keys are kept",
			data: mutate(t, func(m map[string]any) {
				meta(m)["io.modelcontextprotocol.registry/publisher-provided"] = map[string]any{"build": "abc"}
				meta(m)["com.example/custom"] = []any{1, 2}
			}),
			check: func(t *testing.T, c *Card) {
				if got := string(c.Meta["io.modelcontextprotocol.registry/publisher-provided"]); got != `{"build":"abc"}` {
					t.Errorf("publisher-provided = %s", got)
				}
				if got := string(c.Meta["com.example/custom"]); got != `[1,2]` {
					t.Errorf("com.example/custom = %s", got)
				}
			},
		},
		{
			name: "tool with extra keys and no output schema",
			data: mutate(t, func(m map[string]any) {
				delete(tool(m, 0), "outputSchema")
				tool(m, 0)["icons"] = []any{map[string]any{"src": "https://corp.example/i.png"}}
				tool(m, 0)["_meta"] = map[string]any{"x": true}
			}),
		},
		{
			name: "description of exactly 100 characters (multi-byte)",
			data: mutate(t, func(m map[string]any) { m["description"] = strings.Repeat("é", 100) }),
		},
		{
			name: "tool name of 128 characters",
			data: mutate(t, func(m map[string]any) { tool(m, 0)["name"] = strings.Repeat("a", 128) }),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(tt.data)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

func TestParseInvalid(t *testing.T) {
	const (
		g     = "_meta.io.mcpmesh/governance"
		u     = g + ".upstream"
		tools = "_meta.io.mcpmesh/tools"
	)
	tests := []struct {
		name       string
		mutate     func(m map[string]any)
		wantFields []string
		wantMsg    string // the first problem's message contains this
	}{
		{"name missing", func(m map[string]any) { delete(m, "name") }, []string{"name"}, `must be "<namespace>/<server>"`},
		{"name without namespace", func(m map[string]any) { m["name"] = "ledger" }, []string{"name"}, `got "ledger"`},
		{"name with two slashes", func(m map[string]any) { m["name"] = "corp/finance/ledger" }, []string{"name"}, ""},
		{"name with space", func(m map[string]any) { m["name"] = "corp.finance/general ledger" }, []string{"name"}, ""},
		{"name too long", func(m map[string]any) { m["name"] = "corp/" + strings.Repeat("l", 196) }, []string{"name"}, ""},
		{"description missing", func(m map[string]any) { delete(m, "description") }, []string{"description"}, "is required"},
		{"description blank", func(m map[string]any) { m["description"] = "  " }, []string{"description"}, "is required"},
		{"description too long", func(m map[string]any) { m["description"] = strings.Repeat("x", 101) }, []string{"description"}, "at most 100"},
		{"title too long", func(m map[string]any) { m["title"] = strings.Repeat("x", 101) }, []string{"title"}, "at most 100"},
		{"version missing", func(m map[string]any) { delete(m, "version") }, []string{"version"}, "required"},
		{"version latest", func(m map[string]any) { m["version"] = "latest" }, []string{"version"}, "not a version"},
		{"version with v", func(m map[string]any) { m["version"] = "v1.0.0" }, []string{"version"}, `drop it and write "1.0.0"`},
		{"version range", func(m map[string]any) { m["version"] = "^1.0.0" }, []string{"version"}, "range"},
		{"no _meta", func(m map[string]any) { delete(m, "_meta") }, []string{g}, "is required"},
		{"governance missing", func(m map[string]any) { delete(meta(m), GovernanceKey) }, []string{g}, "is required"},
		{"governance not an object", func(m map[string]any) { meta(m)[GovernanceKey] = "finance" }, []string{g}, "must be a JSON object, got a string"},
		{"owner missing", func(m map[string]any) { delete(gov(m), "owner") }, []string{g + ".owner"}, "accountable"},
		{"owner blank", func(m map[string]any) { gov(m)["owner"] = " " }, []string{g + ".owner"}, ""},
		{"owner wrong type", func(m map[string]any) { gov(m)["owner"] = 7 }, []string{g + ".owner"}, "must be a string, got a number"},
		{"team missing", func(m map[string]any) { delete(gov(m), "team") }, []string{g + ".team"}, ""},
		{"data classification unknown", func(m map[string]any) { gov(m)["dataClassification"] = "secret" }, []string{g + ".dataClassification"}, "public, internal, confidential, restricted"},
		{"risk tier unknown", func(m map[string]any) { gov(m)["riskTier"] = "extreme" }, []string{g + ".riskTier"}, "must be one of low, medium, high, critical"},
		{"risk tier wrong case", func(m map[string]any) { gov(m)["riskTier"] = "High" }, []string{g + ".riskTier"}, ""},
		{"negative cost", func(m map[string]any) { gov(m)["costPerCall"] = -0.5 }, []string{g + ".costPerCall"}, ">= 0"},
		{"cost as string", func(m map[string]any) { gov(m)["costPerCall"] = "0.1" }, []string{g + ".costPerCall"}, "must be a number"},
		{"currency lower case", func(m map[string]any) { gov(m)["currency"] = "usd" }, []string{g + ".currency"}, "ISO 4217"},
		{"governance unknown key", func(m map[string]any) { gov(m)["costPerCal"] = 1 }, []string{g + ".costPerCal"}, "known fields are owner, team"},
		{"governance key in wrong case", func(m map[string]any) {
			gov(m)["RiskTier"] = gov(m)["riskTier"]
			delete(gov(m), "riskTier")
		}, []string{g + ".riskTier", g + ".RiskTier"}, "must be one of"},
		{"upstream missing", func(m map[string]any) { delete(gov(m), "upstream") }, []string{u}, "is required"},
		{"upstream not an object", func(m map[string]any) { gov(m)["upstream"] = "http://127.0.0.1:9301/mcp" }, []string{u}, "must be a JSON object, got a string"},
		{"transport unknown", func(m map[string]any) { up(m)["transport"] = "grpc" }, []string{u + ".transport"}, "streamable-http, sse, stdio"},
		{"url missing", func(m map[string]any) { delete(up(m), "url") }, []string{u + ".url"}, "is required"},
		{"url relative", func(m map[string]any) { up(m)["url"] = "/mcp" }, []string{u + ".url"}, "absolute http or https"},
		{"url ftp", func(m map[string]any) { up(m)["url"] = "ftp://127.0.0.1/mcp" }, []string{u + ".url"}, ""},
		{"url without host", func(m map[string]any) { up(m)["url"] = "http:///mcp" }, []string{u + ".url"}, "no host"},
		{"url with userinfo", func(m map[string]any) { up(m)["url"] = "http://svc:hunter2@127.0.0.1:9301/mcp" }, []string{u + ".url"}, "user information"},
		{"url with fragment", func(m map[string]any) { up(m)["url"] = "http://127.0.0.1:9301/mcp#x" }, []string{u + ".url"}, "fragment"},
		{"url unparsable", func(m map[string]any) { up(m)["url"] = "http://127.0.0.1:port/mcp" }, []string{u + ".url"}, "not a valid URL"},
		{"http with stdio fields", func(m map[string]any) {
			up(m)["command"] = "/bin/ledger"
			up(m)["args"] = []any{"-v"}
			up(m)["env"] = map[string]any{"A": "b"}
		}, []string{u + ".command", u + ".args", u + ".env"}, "stdio only"},
		{"stdio without command", func(m map[string]any) { gov(m)["upstream"] = map[string]any{"transport": "stdio"} }, []string{u + ".command"}, "is required for stdio"},
		{"stdio with url", func(m map[string]any) { up(m)["transport"] = "stdio"; up(m)["command"] = "/bin/ledger" }, []string{u + ".url"}, ""},
		{"stdio env secret", func(m map[string]any) {
			gov(m)["upstream"] = map[string]any{"transport": "stdio", "command": "/bin/ledger", "env": map[string]any{"LEDGER_API_KEY": "x", "GITHUB_TOKEN": "y", "DB_PASSWORD": "z"}}
		}, []string{u + ".env.DB_PASSWORD", u + ".env.GITHUB_TOKEN", u + ".env.LEDGER_API_KEY"}, "looks like a secret"},
		{"stdio env bad name", func(m map[string]any) {
			gov(m)["upstream"] = map[string]any{"transport": "stdio", "command": "/bin/ledger", "env": map[string]any{"1X": "x"}}
		}, []string{u + ".env.1X"}, "environment variable name"},
		{"args wrong type", func(m map[string]any) {
			gov(m)["upstream"] = map[string]any{"transport": "stdio", "command": "/bin/ledger", "args": []any{"-v", 3}}
		}, []string{u + ".args"}, "must be an array of strings; it contains a number"},
		{"env value wrong type", func(m map[string]any) {
			gov(m)["upstream"] = map[string]any{"transport": "stdio", "command": "/bin/ledger", "env": map[string]any{"A": true}}
		}, []string{u + ".env"}, "it contains a boolean"},
		{"upstream unknown key", func(m map[string]any) { up(m)["headers"] = map[string]any{} }, []string{u + ".headers"}, "unknown field"},
		{"tools not an array", func(m map[string]any) { meta(m)[ToolsKey] = map[string]any{} }, []string{tools}, "must be a JSON array"},
		{"tool not an object", func(m map[string]any) { meta(m)[ToolsKey] = []any{"get_balance"} }, []string{tools + "[0]"}, "must be a JSON object"},
		{"tool name missing", func(m map[string]any) { delete(tool(m, 0), "name") }, []string{tools + "[0].name"}, "is required"},
		{"tool name with space", func(m map[string]any) { tool(m, 1)["name"] = "transfer funds" }, []string{tools + "[1].name"}, "letters, digits"},
		{"tool name too long", func(m map[string]any) { tool(m, 1)["name"] = strings.Repeat("a", 129) }, []string{tools + "[1].name"}, ""},
		{"tool name wrong type", func(m map[string]any) { tool(m, 1)["name"] = 1 }, []string{tools + "[1].name"}, "must be a string"},
		{"tool names duplicate", func(m map[string]any) { tool(m, 1)["name"] = "get_balance" }, []string{tools + "[1].name"}, "duplicates the name of _meta.io.mcpmesh/tools[0]"},
		{"tool name in wrong case", func(m map[string]any) {
			tool(m, 0)["Name"] = tool(m, 0)["name"]
			delete(tool(m, 0), "name")
		}, []string{tools + "[0].name", tools + "[0].Name"}, "is required"},
		{"input schema missing", func(m map[string]any) { delete(tool(m, 0), "inputSchema") }, []string{tools + "[0].inputSchema"}, "is required"},
		{"input schema null", func(m map[string]any) { tool(m, 0)["inputSchema"] = nil }, []string{tools + "[0].inputSchema"}, "is required"},
		{"input schema not an object", func(m map[string]any) { tool(m, 0)["inputSchema"] = []any{} }, []string{tools + "[0].inputSchema"}, "got an array"},
		{"input schema boolean", func(m map[string]any) { tool(m, 1)["inputSchema"] = true }, []string{tools + "[1].inputSchema"}, "got a boolean"},
		{"input schema of a string", func(m map[string]any) { tool(m, 0)["inputSchema"] = map[string]any{"type": "string"} }, []string{tools + "[0].inputSchema"}, `"type": "string"`},
		{"input schema type list", func(m map[string]any) { tool(m, 0)["inputSchema"] = map[string]any{"type": []any{"object"}} }, []string{tools + "[0].inputSchema"}, ""},
		{"input schema without type", func(m map[string]any) { tool(m, 0)["inputSchema"] = map[string]any{"properties": map[string]any{}} }, []string{tools + "[0].inputSchema"}, `no "type"`},
		{"output schema of an array", func(m map[string]any) { tool(m, 0)["outputSchema"] = map[string]any{"type": "array"} }, []string{tools + "[0].outputSchema"}, "structured results"},
		{"output schema a string", func(m map[string]any) { tool(m, 0)["outputSchema"] = "object" }, []string{tools + "[0].outputSchema"}, ""},
		{"annotations not an object", func(m map[string]any) { tool(m, 0)["annotations"] = "read-only" }, []string{tools + "[0].annotations"}, "behaviour hints"},
		{"unknown mcpmesh section", func(m map[string]any) { meta(m)["io.mcpmesh/tool"] = []any{} }, []string{"_meta.io.mcpmesh/tool"}, "reserved"},
		{"mcpmesh section in wrong case", func(m map[string]any) { meta(m)["io.mcpmesh/Tools"] = []any{} }, []string{"_meta.io.mcpmesh/Tools"}, `did you mean "io.mcpmesh/tools"`},
		{"several problems at once", func(m map[string]any) {
			m["name"] = "ledger"
			m["version"] = "1.2"
			gov(m)["riskTier"] = "extreme"
			up(m)["url"] = ""
			tool(m, 1)["inputSchema"] = map[string]any{"type": "string"}
		}, []string{"name", "version", g + ".riskTier", u + ".url", tools + "[1].inputSchema"}, ""},
		{"problems in key order, decode problems included", func(m map[string]any) {
			delete(gov(m), "owner")
			up(m)["transport"] = "stdio"
			up(m)["command"] = "/bin/ledger"
			up(m)["args"] = "-v"
			gov(m)["zzz"] = true
			tool(m, 1)["name"] = 7
			tool(m, 0)["annotations"] = 1
			delete(tool(m, 0), "inputSchema")
		}, []string{g + ".owner", u + ".url", u + ".args", g + ".zzz", tools + "[0].inputSchema", tools + "[0].annotations", tools + "[1].name"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(mutate(t, tt.mutate))
			if err == nil {
				t.Fatalf("Parse succeeded (%s); want problems at %v", c.Name, tt.wantFields)
			}
			if diff := cmp.Diff(tt.wantFields, problemFields(t, err)); diff != "" {
				t.Errorf("problem fields (-want +got):\n%s\nerror: %v", diff, err)
			}
			var ve *ValidationError
			errors.As(err, &ve)
			if !strings.Contains(ve.Problems[0].Message, tt.wantMsg) {
				t.Errorf("first problem %q does not contain %q", ve.Problems[0].Message, tt.wantMsg)
			}
		})
	}
}

func TestParseDocument(t *testing.T) {
	valid := readLedger(t)
	tests := []struct {
		name       string
		data       []byte
		wantFields []string
		wantMsg    string
	}{
		{"empty", nil, []string{""}, "empty"},
		{"whitespace", []byte(" \n\t"), []string{""}, "empty"},
		{"null", []byte("null"), []string{""}, "must be a JSON object"},
		{"array", []byte(`[{"name":"a/b"}]`), []string{""}, "got an array"},
		{"string", []byte(`"corp.finance/ledger"`), []string{""}, "got a string"},
		{"garbage", []byte(`<server/>`), []string{""}, "must be a JSON object"},
		{"truncated", valid[:len(valid)/2], []string{""}, "not valid JSON"},
		{"trailing object", append(append([]byte{}, valid...), []byte(`{}`)...), []string{""}, "nothing after it"},
		{"trailing garbage", append(append([]byte{}, valid...), 'x'), []string{""}, "not valid JSON"},
		{"duplicate top-level key", bytes.Replace(valid, []byte(`"version": "1.0.0",`), []byte(`"version": "1.0.0", "version": "9.9.9",`), 1), []string{""}, "Duplicate key"},
		{"duplicate key in governance", bytes.Replace(valid, []byte(`"riskTier": "high",`), []byte(`"riskTier": "high", "riskTier": "low",`), 1), []string{""}, "Duplicate key"},
		{"invalid UTF-8", bytes.Replace(valid, []byte("General ledger"), []byte("General \xff ledger"), 1), []string{""}, "I-JSON"},
		{"number out of range", bytes.Replace(valid, []byte(`"costPerCall": 0.002`), []byte(`"costPerCall": 1e400`), 1), []string{""}, "I-JSON"},
		{"name wrong type", []byte(`{"name":5,"description":"d","version":"1.0.0"}`), []string{"name"}, "must be a string, got a number"},
		{"_meta wrong type", []byte(`{"name":"a/b","_meta":[]}`), []string{"_meta"}, "must be an object, got an array"},
		{"nested wrong type", []byte(`{"name":"a/b","packages":[{"transport":{"type":4}}]}`), []string{"packages.transport.type"}, "must be a string"},
		{"top-level key in wrong case", bytes.Replace(valid, []byte(`"name":`), []byte(`"Name":`), 1), []string{"Name"}, `did you mean "name"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(tt.data)
			if err == nil {
				t.Fatalf("Parse succeeded (%+v)", c.Name)
			}
			if diff := cmp.Diff(tt.wantFields, problemFields(t, err)); diff != "" {
				t.Errorf("problem fields (-want +got):\n%s\nerror: %v", diff, err)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not contain %q", err, tt.wantMsg)
			}
		})
	}
}

func TestValidationErrorMessage(t *testing.T) {
	err := &ValidationError{Problems: []Problem{
		{Field: "name", Message: `must be "<namespace>/<server>"`},
		{Field: "", Message: "whole document"},
		{Field: "_meta.io.mcpmesh/governance.riskTier", Message: "must be one of low, medium, high, critical"},
	}}
	want := `server card invalid: name: must be "<namespace>/<server>"; whole document; _meta.io.mcpmesh/governance.riskTier: must be one of low, medium, high, critical`
	if got := err.Error(); got != want {
		t.Errorf("Error() =\n%s\nwant\n%s", got, want)
	}
}

func TestValidateProgrammaticCard(t *testing.T) {
	var nilCard *Card
	if err := nilCard.Validate(); err == nil {
		t.Error("nil card validated")
	}
	c := &Card{}
	c.Name = "corp.hr/directory"
	c.Description = "Employee directory"
	c.Version = "0.1.0"
	c.Meta = map[string]json.RawMessage{
		GovernanceKey: json.RawMessage(`{"owner":"hr-platform","team":"hr","dataClassification":"internal","riskTier":"low","upstream":{"transport":"stdio","command":"hr-mcp"}}`),
		// Not I-JSON: the section cannot be pinned.
		ToolsKey: json.RawMessage(`[{"name":"find","name":"lookup","inputSchema":{"type":"object"}}]`),
	}
	if diff := cmp.Diff([]string{"_meta.io.mcpmesh/tools[0]"}, problemFields(t, c.Validate())); diff != "" {
		t.Errorf("problem fields (-want +got):\n%s", diff)
	}
	if _, err := c.ToolVersions(); err == nil {
		t.Error("ToolVersions succeeded on a definition with duplicate keys")
	}
	c.Meta[ToolsKey] = json.RawMessage(`[{"name":"find","inputSchema":{"type":"object"}}]`)
	if err := c.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

func TestGovernanceAndToolsErrors(t *testing.T) {
	var nilCard *Card
	if tools, err := nilCard.Tools(); tools != nil || err != nil {
		t.Errorf("nil card Tools() = %v, %v", tools, err)
	}
	if _, err := nilCard.Governance(); err == nil {
		t.Error("nil card has governance")
	}
	c := &Card{Meta: map[string]json.RawMessage{ToolsKey: json.RawMessage(`{"get_balance":{}}`)}}
	if diff := cmp.Diff([]string{"_meta.io.mcpmesh/governance"}, problemFields(t, func() error { _, err := c.Governance(); return err }())); diff != "" {
		t.Errorf("Governance problems (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"_meta.io.mcpmesh/tools"}, problemFields(t, func() error { _, err := c.Tools(); return err }())); diff != "" {
		t.Errorf("Tools problems (-want +got):\n%s", diff)
	}
	// Tools decodes without applying Validate's rules.
	c.Meta[ToolsKey] = json.RawMessage(`[{"name":"bad name"}]`)
	tools, err := c.Tools()
	if err != nil || len(tools) != 1 || tools[0].Name != "bad name" || tools[0].InputSchema != nil {
		t.Errorf("Tools() = %+v, %v", tools, err)
	}
	if _, err := c.ToolVersions(); err == nil {
		t.Error("ToolVersions accepted an invalid tool and a card without name and version")
	}
}

func TestCardJSONRoundTrip(t *testing.T) {
	data := mutate(t, func(m map[string]any) {
		meta(m)["io.modelcontextprotocol.registry/publisher-provided"] = map[string]any{"tool": "ci", "build": 42}
	})
	c, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(out, []byte(`"_meta"`)); n != 1 {
		t.Errorf("encoded card has %d _meta keys; want 1: %s", n, out)
	}
	c2, err := Parse(out)
	if err != nil {
		t.Fatalf("re-parse: %v", err)
	}
	if diff := cmp.Diff(c.ServerJSON, c2.ServerJSON); diff != "" {
		t.Errorf("ServerJSON changed (-before +after):\n%s", diff)
	}
	for k, v := range c.Meta {
		var a, b any
		if err := json.Unmarshal(v, &a); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(c2.Meta[k], &b); err != nil {
			t.Fatalf("_meta key %q lost: %v", k, err)
		}
		if diff := cmp.Diff(a, b); diff != "" {
			t.Errorf("_meta[%q] changed (-before +after):\n%s", k, diff)
		}
	}
	tv1, _ := c.ToolVersions()
	tv2, _ := c2.ToolVersions()
	for i := range tv1 {
		if tv1[i].Hash != tv2[i].Hash {
			t.Errorf("tool %s: hash changed over a JSON round trip: %s → %s", tv1[i].Name, tv1[i].Hash, tv2[i].Hash)
		}
	}
}
