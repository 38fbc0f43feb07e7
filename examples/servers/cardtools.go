package servers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"

	"github.com/mcpmesh/mcpmesh/examples"
	"github.com/mcpmesh/mcpmesh/registry/card"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Names of the example servers, as in their cards.
const (
	// DirectoryName is the HR directory's server name.
	DirectoryName = "corp.hr/directory"
	// LedgerName is the finance ledger's server name.
	LedgerName = "corp.finance/ledger"
)

// ErrUnknownServer is returned by New and Card for a server name or version
// that has no example server.
var ErrUnknownServer = errors.New("no example server")

// cardPaths maps "name@version" to the card's path in examples.Catalog().
var cardPaths = map[string]string{
	DirectoryName + "@1.0.0": "hr/directory-1.0.0.json",
	LedgerName + "@1.0.0":    "finance/ledger-1.0.0.json",
	LedgerName + "@2.0.0":    "finance/ledger-2.0.0.json",
}

// knownServers lists the example servers for error messages.
func knownServers() string {
	keys := make([]string, 0, len(cardPaths))
	for k := range cardPaths {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return strings.Join(keys, ", ")
}

// Card returns the embedded server card of an example server, such as
// Card(LedgerName, "2.0.0"). The error wraps ErrUnknownServer when there is
// no such example.
func Card(name, version string) (*card.Card, error) {
	path, ok := cardPaths[name+"@"+version]
	if !ok {
		return nil, fmt.Errorf("%w %s@%s; the examples are %s", ErrUnknownServer, name, version, knownServers())
	}
	data, err := fs.ReadFile(examples.Catalog(), path)
	if err != nil {
		return nil, fmt.Errorf("read example card %s: %w", path, err)
	}
	c, err := card.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("parse example card %s: %w", path, err)
	}
	return c, nil
}

// toolFunc handles one tools/call whose arguments already passed the card's
// inputSchema. A returned error is a JSON-RPC error; business failures are
// results with IsError set (see toolError).
type toolFunc func(ctx context.Context, req *mcp.CallToolRequest, args json.RawMessage) (*mcp.CallToolResult, error)

// newCardServer returns an MCP server advertising exactly the tools of the
// card name@version, each served by handlers[tool name]. The card and the
// handlers must name the same tools.
func newCardServer(name, version string, handlers map[string]toolFunc, set settings) (*mcp.Server, error) {
	c, err := Card(name, version)
	if err != nil {
		return nil, err
	}
	tvs, err := c.ToolVersions()
	if err != nil {
		return nil, fmt.Errorf("tools of example card %s@%s: %w", name, version, err)
	}
	s := mcp.NewServer(&mcp.Implementation{
		Name:    c.Name,
		Title:   c.Title,
		Version: c.Version,
	}, &mcp.ServerOptions{Instructions: c.Description})
	seen := map[string]bool{}
	for _, tv := range tvs {
		h, ok := handlers[tv.Name]
		if !ok {
			return nil, fmt.Errorf("example server %s@%s: card tool %q has no handler", name, version, tv.Name)
		}
		seen[tv.Name] = true
		tool, err := mcpTool(tv)
		if err != nil {
			return nil, fmt.Errorf("example server %s@%s: %w", name, version, err)
		}
		input, err := compileSchema(tv, tool.InputSchema.(json.RawMessage))
		if err != nil {
			return nil, fmt.Errorf("example server %s@%s: %w", name, version, err)
		}
		s.AddTool(tool, validated(name, tv.Name, input, set, h))
	}
	for tool := range handlers {
		if !seen[tool] {
			return nil, fmt.Errorf("example server %s@%s: handler %q has no tool in the card", name, version, tool)
		}
	}
	return s, nil
}

// mcpTool converts a card tool to the go-sdk's Tool, keeping the schemas as
// raw JSON, and checks that the go-sdk's encoding of it hashes like the card's
// definition: otherwise the gateway would quarantine the tool.
func mcpTool(tv card.ToolVersion) (*mcp.Tool, error) {
	var ct card.Tool
	if err := json.Unmarshal(tv.Definition, &ct); err != nil {
		return nil, fmt.Errorf("decode tool %q: %w", tv.Name, err)
	}
	t := &mcp.Tool{
		Name:        ct.Name,
		Title:       ct.Title,
		Description: ct.Description,
		InputSchema: ct.InputSchema,
	}
	if len(ct.OutputSchema) > 0 {
		t.OutputSchema = ct.OutputSchema
	}
	if len(ct.Annotations) > 0 {
		t.Annotations = new(mcp.ToolAnnotations)
		if err := json.Unmarshal(ct.Annotations, t.Annotations); err != nil {
			return nil, fmt.Errorf("decode annotations of tool %q: %w", tv.Name, err)
		}
	}
	wire, err := json.Marshal(t)
	if err != nil {
		return nil, fmt.Errorf("encode tool %q: %w", tv.Name, err)
	}
	hash, err := card.CanonicalHash(wire)
	if err != nil {
		return nil, fmt.Errorf("hash tool %q: %w", tv.Name, err)
	}
	if hash != tv.Hash {
		return nil, fmt.Errorf("tool %q would be advertised as %s, not the card's definition (%s has %s, the wire %s): "+
			"the gateway would quarantine it; is MCPGODEBUG=hintomitempty=1 set?", tv.Name, wire, tv.Definition, tv.Hash, hash)
	}
	return t, nil
}

// compileSchema compiles a tool's input schema as JSON Schema 2020-12 with
// format assertions on, so "format": "date" is checked.
func compileSchema(tv card.ToolVersion, raw json.RawMessage) (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("decode input schema of tool %q: %w", tv.Name, err)
	}
	loc := "https://examples.mcpmesh.invalid/" + tv.Server + "/" + tv.Version + "/" + tv.Name + "/input.json"
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	if err := c.AddResource(loc, doc); err != nil {
		return nil, fmt.Errorf("load input schema of tool %q: %w", tv.Name, err)
	}
	s, err := c.Compile(loc)
	if err != nil {
		return nil, fmt.Errorf("compile input schema of tool %q: %w", tv.Name, err)
	}
	return s, nil
}

// validated returns the go-sdk handler of a tool of server: it checks the
// call's node token (authorize) and answers the refusal without calling h
// when it does not pass, then checks the arguments against the tool's
// input schema and answers a JSON-RPC invalid-params error (-32602)
// without calling h when they do not match.
func validated(server, name string, input *jsonschema.Schema, set settings, h toolFunc) mcp.ToolHandler {
	return func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		ctx, release := withCarrier(ctx)
		defer release()
		ctx, refused := set.authorize(ctx, server, req)
		if refused != nil {
			return refused, nil
		}
		args := req.Params.Arguments
		if t := bytes.TrimSpace(args); len(t) == 0 || bytes.Equal(t, []byte("null")) {
			args = json.RawMessage("{}")
		}
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(args))
		if err != nil {
			return nil, invalidParams("the arguments of tool %q are not JSON: %v", name, err)
		}
		if err := input.Validate(inst); err != nil {
			return nil, invalidParams("the arguments of tool %q do not match its inputSchema: %v", name, err)
		}
		return h(ctx, req, args)
	}
}

// invalidParams is the JSON-RPC error for arguments a tool cannot take.
func invalidParams(format string, args ...any) *jsonrpc.Error {
	return &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: fmt.Sprintf(format, args...)}
}

// decodeArgs decodes validated arguments into v. The schema has already
// accepted them, so a failure here is a mismatch between schema and Go type,
// reported as invalid params all the same.
func decodeArgs(name string, args json.RawMessage, v any) error {
	if err := json.Unmarshal(args, v); err != nil {
		return invalidParams("decode the arguments of tool %q: %v", name, err)
	}
	return nil
}

// toolError is a business failure: a result with IsError set and the reason
// as text, which a model can read and act on.
func toolError(format string, args ...any) *mcp.CallToolResult {
	return &mcp.CallToolResult{
		IsError: true,
		Content: []mcp.Content{&mcp.TextContent{Text: fmt.Sprintf(format, args...)}},
	}
}

// structured is a successful result carrying v as structuredContent and one
// text block: text, or when text is empty the JSON of v, as the MCP spec
// advises for clients that do not read structured output.
func structured(v any, text string) (*mcp.CallToolResult, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode structured result: %w", err)
	}
	if text == "" {
		text = string(data)
	}
	return &mcp.CallToolResult{
		Content:           []mcp.Content{&mcp.TextContent{Text: text}},
		StructuredContent: json.RawMessage(data),
	}, nil
}
