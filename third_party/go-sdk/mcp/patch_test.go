// mcpmesh patch test (see PATCHES.md): a tool's x-mcp-header bindings are
// found once, when the tool is added, and a tools/call's Mcp-Param headers
// are still checked against them as before the patch.

package mcp

import (
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
)

func TestPatchedParamHeadersFoundOnce(t *testing.T) {
	s := NewServer(&Implementation{Name: "patch", Version: "v0"}, nil)
	schema := json.RawMessage(`{"type":"object","properties":{"region":{"type":"string","x-mcp-header":"Region"},"n":{"type":"integer"}}}`)
	s.AddTool(&Tool{Name: "t", InputSchema: schema}, func(context.Context, *CallToolRequest) (*CallToolResult, error) {
		return &CallToolResult{}, nil
	})
	st, ok := s.getServerTool("t")
	if !ok {
		t.Fatal("tool t not found after AddTool")
	}
	want := extractParamHeaderAnnotations(st.tool)
	if len(want) != 1 || !reflect.DeepEqual(st.paramHeaders, want) {
		t.Fatalf("bindings stored at AddTool = %+v, found from the schema = %+v (want one, equal)", st.paramHeaders, want)
	}

	call := func(region string, withHeader bool) error {
		id, _ := jsonrpc.MakeID(float64(1))
		msg := &jsonrpc.Request{ID: id, Method: "tools/call",
			Params: json.RawMessage(`{"name":"t","arguments":{"region":"` + region + `","n":1}}`)}
		h := http.Header{}
		h.Set(protocolVersionHeader, protocolVersion20260728)
		h.Set(methodHeader, "tools/call")
		h.Set(nameHeader, "t")
		if withHeader {
			v, _ := encodeHeaderValue("eu")
			h.Set(paramHeaderPrefix+"Region", v)
		}
		return validateMcpHeaders(h, msg, s.getServerTool)
	}
	if err := call("eu", true); err != nil {
		t.Errorf("matching Mcp-Param-Region refused: %v", err)
	}
	if err := call("us", true); err == nil {
		t.Error("Mcp-Param-Region eu accepted for a body saying us")
	}
	if err := call("eu", false); err == nil {
		t.Error("a call without its Mcp-Param-Region header accepted")
	}
}
