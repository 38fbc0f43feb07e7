package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// agentClient is the HTTP client of an agent: it sends the API key (from
// keyFile, else $MCPMESH_API_KEY) as a bearer token, and presents the SVID
// in svidDir over TLS. With neither it is anonymous.
func agentClient(keyFile, svidDir string) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if svidDir != "" {
		tc, err := svidTLS(svidDir)
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig = tc
	}
	key := os.Getenv("MCPMESH_API_KEY")
	if keyFile != "" {
		raw, err := os.ReadFile(keyFile)
		if err != nil {
			return nil, fmt.Errorf("-api-key-file: %w", err)
		}
		key = strings.TrimSpace(string(raw))
	}
	if key == "" {
		return &http.Client{Transport: tr}, nil
	}
	return &http.Client{Transport: bearerTransport{key: key, base: tr}}, nil
}

// bearerTransport adds the agent's API key to every request.
type bearerTransport struct {
	key  string
	base http.RoundTripper
}

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.key)
	return b.base.RoundTrip(r)
}

// runCall is a small MCP client for trying a node: list the tools an
// agent sees, or call one, as an agent would (official go-sdk client).
func runCall(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("call", "call [-url URL] [-api-key-file F | -svid-dir D] [-list | TOOL [JSON | key=value ...]] [-version V] [-era REV]")
	url := fs.String("url", envOr("MCPMESH_MCP_URL", "http://127.0.0.1:7701/mcp"), "the node's MCP endpoint (env MCPMESH_MCP_URL)")
	keyFile := fs.String("api-key-file", os.Getenv("MCPMESH_API_KEY_FILE"), "file holding the agent's API key (env MCPMESH_API_KEY_FILE, or the key itself in MCPMESH_API_KEY)")
	svidDir := fs.String("svid-dir", "", "directory with the agent's SVID (svid.crt, svid.key, bundle.crt) for an https node")
	list := fs.Bool("list", false, "list the tools instead of calling one")
	pin := fs.String("version", "", "pin the call to this server version (_meta io.mcpmesh/version)")
	era := fs.String("era", "", "protocol revision to speak, e.g. 2025-11-25 (default: the newest)")
	output := fs.String("o", "table", "output format: table or json")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if *list == (len(pos) > 0) {
		return usagef("want -list, or a TOOL with its arguments")
	}
	c := mcp.NewClient(&mcp.Implementation{Name: "mcpmesh-call", Version: version}, &mcp.ClientOptions{
		LoggingMessageHandler: func(_ context.Context, req *mcp.LoggingMessageRequest) {
			fmt.Fprintf(os.Stderr, "%s: %v\n", req.Params.Level, req.Params.Data)
		},
	})
	hc, err := agentClient(*keyFile, *svidDir)
	if err != nil {
		return err
	}
	sess, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: *url, HTTPClient: hc}, &mcp.ClientSessionOptions{ProtocolVersion: *era})
	if err != nil {
		return fmt.Errorf("connect to %s: %w", *url, err)
	}
	defer sess.Close()
	if *list {
		res, err := sess.ListTools(ctx, nil)
		if err != nil {
			return err
		}
		if *output == "json" {
			return printJSON(stdout, res.Tools)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TOOL\tDESCRIPTION")
		for _, t := range res.Tools {
			fmt.Fprintf(tw, "%s\t%s\n", t.Name, firstLine(t.Description))
		}
		return tw.Flush()
	}
	arguments, err := callArguments(pos[1:])
	if err != nil {
		return err
	}
	params := &mcp.CallToolParams{Name: pos[0], Arguments: arguments}
	if *pin != "" {
		params.Meta = mcp.Meta{"io.mcpmesh/version": *pin}
	}
	res, err := sess.CallTool(ctx, params)
	if je := (*jsonrpc.Error)(nil); errors.As(err, &je) {
		// go-sdk appends the HTTP status of a refused request ("rejected
		// by transport: Bad Request"); the JSON-RPC error is the answer.
		return fmt.Errorf("%s: error %d: %s", pos[0], je.Code, je.Message)
	}
	if err != nil {
		return err
	}
	if *output == "json" {
		return printJSON(stdout, res)
	}
	for _, c := range res.Content {
		if t, ok := c.(*mcp.TextContent); ok {
			fmt.Fprintln(stdout, t.Text)
		}
	}
	if res.StructuredContent != nil && len(res.Content) == 0 {
		printJSON(stdout, res.StructuredContent)
	}
	if v, ok := res.Meta["io.mcpmesh/version"]; ok {
		by := ""
		if p, ok := res.Meta["io.mcpmesh/pinnedBy"]; ok {
			by = fmt.Sprintf(", pinned by the %v", p)
		}
		fmt.Fprintf(os.Stderr, "(answered by version %v%s)\n", v, by)
	}
	if d, ok := res.Meta["io.mcpmesh/deprecation"].(map[string]any); ok {
		fmt.Fprintf(os.Stderr, "warning: %v\n", d["message"])
	}
	if res.IsError {
		return fmt.Errorf("the tool reported an error (see above)")
	}
	return nil
}

// callArguments takes one JSON object, or key=value pairs (values that
// parse as JSON numbers, booleans or null are taken as such).
func callArguments(args []string) (map[string]any, error) {
	out := map[string]any{}
	if len(args) == 1 && strings.HasPrefix(strings.TrimSpace(args[0]), "{") {
		if err := json.Unmarshal([]byte(args[0]), &out); err != nil {
			return nil, usagef("arguments: not a JSON object: %v", err)
		}
		return out, nil
	}
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok || k == "" {
			return nil, usagef("argument %q: want key=value or one JSON object", a)
		}
		if n, err := strconv.ParseFloat(v, 64); err == nil {
			out[k] = n
			continue
		}
		switch v {
		case "true", "false":
			out[k] = v == "true"
		case "null":
			out[k] = nil
		default:
			out[k] = v
		}
	}
	return out, nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
