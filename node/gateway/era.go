package gateway

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// modernVersion is the first protocol revision served statelessly.
const modernVersion = "2026-07-28"

// rpcCall is the part of a JSON-RPC request the front door looks at before
// go-sdk handles it.
type rpcCall struct {
	Method string `json:"method"`
	Params struct {
		Name string   `json:"name"`
		Meta mcp.Meta `json:"_meta"`
	} `json:"params"`
}

// peekCall reads the request body (bounded), puts it back for go-sdk, and
// decodes its JSON-RPC method and tool name. batch is true for a JSON
// array (legacy batching); call is nil when the body is not one request.
func peekCall(r *http.Request, limit int64) (call *rpcCall, batch bool) {
	if r.Body == nil {
		return nil, false
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body), r.Body))
	if err != nil {
		return nil, false
	}
	if trimmed := bytes.TrimSpace(body); len(trimmed) > 0 && trimmed[0] == '[' {
		return nil, true
	}
	var c rpcCall
	if json.Unmarshal(body, &c) != nil {
		return nil, false
	}
	return &c, false
}

// useStateful routes a request by protocol era. Legacy traffic (an
// initialize, anything carrying a session, GET streams and DELETE,
// batches) needs the stateful handler; requests of revision 2026-07-28 or
// later, which carry their version on every request, the stateless one. A
// POST that names no version is routed by its JSON-RPC method: only
// initialize starts a legacy session.
// PeekCall reads r's body (at most limit bytes decoded; the body is put
// back whole for the handler), and returns its JSON-RPC method and, for a
// tools/call, the tool it names; batch is true for a JSON array. method is
// "" when the body is not one request.
func PeekCall(r *http.Request, limit int64) (method, tool string, batch bool) {
	call, batch := peekCall(r, limit)
	if call == nil {
		return "", "", batch
	}
	return call.Method, call.Params.Name, false
}

func useStateful(r *http.Request, call *rpcCall, batch bool) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodDelete || r.Header.Get("Mcp-Session-Id") != "" || batch {
		return true
	}
	if v := r.Header.Get("MCP-Protocol-Version"); v != "" {
		return v < modernVersion
	}
	return call != nil && call.Method == "initialize"
}
