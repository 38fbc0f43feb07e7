package gateway

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
)

// modernVersion is the first protocol revision served statelessly.
const modernVersion = "2026-07-28"

// useStateful routes a request by protocol era. Legacy traffic (an
// initialize, anything carrying a session, GET streams and DELETE) needs the
// stateful handler; requests of revision 2026-07-28 or later, which carry
// their version on every request, the stateless one. A POST that names no
// version is routed by its JSON-RPC method: only initialize starts a
// legacy session.
func useStateful(r *http.Request, limit int64) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodDelete || r.Header.Get("Mcp-Session-Id") != "" {
		return true
	}
	if v := r.Header.Get("MCP-Protocol-Version"); v != "" {
		return v < modernVersion
	}
	if r.Method != http.MethodPost || r.Body == nil {
		return false
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body), r.Body))
	if err != nil {
		return false
	}
	var msg struct {
		Method string `json:"method"`
	}
	if json.Unmarshal(body, &msg) != nil {
		// A batch or malformed body: the stateful handler answers legacy
		// batches; the stateless one refuses what it cannot parse.
		return bytes.HasPrefix(bytes.TrimSpace(body), []byte("["))
	}
	return msg.Method == "initialize"
}
