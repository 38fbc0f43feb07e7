package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync/atomic"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// echoTool is the upstream's one tool, byte for byte the definition pinned
// in the registry card (serverCard), so mcpmesh advertises what the
// upstream serves.
const echoTool = `{"name":"echo","description":"Returns its input.","inputSchema":{"type":"object","properties":{"text":{"type":"string"}},"required":["text"]}}`

// mcpPath is where the upstream and the proxy serve MCP.
const mcpPath = "/mcp"

// statsPath is the upstream's request counter (not counted itself).
const statsPath = "/stats"

// upstreamStats is the body of statsPath.
type upstreamStats struct {
	// Requests is the number of HTTP requests to mcpPath so far.
	Requests int64 `json:"requests"`
	// Conns is the number of TCP connections accepted so far.
	Conns int64 `json:"conns"`
}

// upstreamCounters count what the upstream received.
type upstreamCounters struct {
	requests, conns atomic.Int64
}

// connState counts new connections (an http.Server.ConnState hook).
func (c *upstreamCounters) connState(_ net.Conn, st http.ConnState) {
	if st == http.StateNew {
		c.conns.Add(1)
	}
}

// newUpstreamHandler returns the go-sdk MCP server with the echo tool over
// Streamable HTTP, plus the counters it reports at statsPath (connections
// are counted once counters.connState hooks the server). Stateless serves
// the 2026-07-28 era (a stateful go-sdk handler refuses it); stateful is a
// legacy server, which makes mcpmesh fall back to 2025-11-25 itself.
func newUpstreamHandler(stateless bool, counters *upstreamCounters) (http.Handler, error) {
	var def mcp.Tool
	if err := json.Unmarshal([]byte(echoTool), &def); err != nil {
		return nil, fmt.Errorf("echo tool definition: %w", err)
	}
	s := mcp.NewServer(&mcp.Implementation{Name: "gatewayload-upstream", Version: "1"}, nil)
	s.AddTool(&def, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		var args struct {
			Text string `json:"text"`
		}
		if err := json.Unmarshal(req.Params.Arguments, &args); err != nil {
			return nil, fmt.Errorf("echo: arguments: %w", err)
		}
		return &mcp.CallToolResult{
			Content:           []mcp.Content{&mcp.TextContent{Text: args.Text}},
			StructuredContent: map[string]any{"text": args.Text},
		}, nil
	})
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{Stateless: stateless})
	mux := http.NewServeMux()
	mux.HandleFunc(mcpPath, func(w http.ResponseWriter, r *http.Request) {
		counters.requests.Add(1)
		h.ServeHTTP(w, r)
	})
	mux.HandleFunc("GET "+statsPath, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(upstreamStats{Requests: counters.requests.Load(), Conns: counters.conns.Load()})
	})
	return mux, nil
}

// newProxy returns the plain reverse proxy the gateway is compared with:
// httputil.ReverseProxy to target, with an idle-connection pool as large
// as mcpmesh's upstream bulkhead (64) so neither reconnects under load.
func newProxy(target string) (http.Handler, error) {
	u, err := url.Parse(target)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("proxy target %q: want a URL such as http://127.0.0.1:8080", target)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	tr.Proxy = nil
	return &httputil.ReverseProxy{
		Rewrite:   func(r *httputil.ProxyRequest) { r.SetURL(u) },
		Transport: tr,
	}, nil
}
