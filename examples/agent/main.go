// Command agent is mcpmesh's example agent: an MCP client on the official
// Go SDK that connects to its BU's node as to one MCP server, lists the
// tools it sees, calls one tool of its own BU and one that another BU
// shares with it, and prints what it did. It exits non-zero if any step
// fails.
//
//	go run ./examples/agent -dev mcpmesh-dev/dev.json     # hr of `mcpmesh dev`
//	go run ./examples/agent -url http://127.0.0.1:7101/mcp -key-file hr-agent.key
//
// Nothing in it is specific to mcpmesh but the tool names: the node is
// an MCP server, the API key a bearer token, and a tool another BU shares
// is listed and called like any other ("finance.generate_report").
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func main() {
	url := flag.String("url", "", "the BU node's MCP endpoint, such as http://127.0.0.1:7701/mcp")
	keyFile := flag.String("key-file", "", "file holding the agent's API key (sent as a bearer token)")
	devJSON := flag.String("dev", "", "dev.json of `mcpmesh dev`: takes -url and the key from it")
	bu := flag.String("bu", "hr", "with -dev: the BU to connect to")
	local := flag.String("local", "hr.search_employees", "a tool of the agent's own BU to call")
	localArgs := flag.String("local-args", `{"query":"payroll"}`, "its arguments, a JSON object")
	shared := flag.String("shared", "finance.generate_report", "a tool another BU shares, to call")
	sharedArgs := flag.String("shared-args", `{"kind":"profit_and_loss","period":"2026-01"}`, "its arguments, a JSON object")
	asJSON := flag.Bool("json", false, "print a JSON report instead of text")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	rep, err := run(ctx, *url, *keyFile, *devJSON, *bu, []call{{*local, *localArgs}, {*shared, *sharedArgs}})
	if *asJSON {
		json.NewEncoder(os.Stdout).Encode(rep)
	} else {
		rep.print()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "agent:", err)
		os.Exit(1)
	}
}

// call is a tool to call with its arguments as JSON.
type call struct{ tool, args string }

// report is what the agent did.
type report struct {
	URL   string   `json:"url"`
	Tools []string `json:"tools"`
	Calls []result `json:"calls"`
}

// result is one tool call's outcome.
type result struct {
	Tool      string `json:"tool"`
	Arguments string `json:"arguments"`
	// Origin is the namespace of the BU that shares the tool; "" for the
	// agent's own BU.
	Origin    string `json:"origin,omitempty"`
	RequestID string `json:"requestId,omitempty"`
	Version   string `json:"version,omitempty"`
	Text      string `json:"text"`
	IsError   bool   `json:"isError"`
}

func run(ctx context.Context, url, keyFile, devJSON, bu string, calls []call) (report, error) {
	rep := report{URL: url}
	key, err := credentials(&rep.URL, keyFile, devJSON, bu)
	if err != nil {
		return rep, err
	}
	client := mcp.NewClient(&mcp.Implementation{Name: "mcpmesh-example-agent", Version: "1.0.0"}, nil)
	transport := &mcp.StreamableClientTransport{Endpoint: rep.URL, HTTPClient: &http.Client{Transport: bearer(key)}}
	session, err := client.Connect(ctx, transport, nil)
	if err != nil {
		return rep, fmt.Errorf("connect to %s: %w", rep.URL, err)
	}
	defer session.Close()

	origins := map[string]string{}
	for tool, err := range session.Tools(ctx, nil) {
		if err != nil {
			return rep, fmt.Errorf("list tools: %w", err)
		}
		rep.Tools = append(rep.Tools, tool.Name)
		// mcpmesh marks a tool another BU shares with its origin.
		if o, ok := tool.Meta["io.mcpmesh/origin"].(map[string]any); ok {
			origins[tool.Name], _ = o["namespace"].(string)
		}
	}
	for _, c := range calls {
		var args map[string]any
		if err := json.Unmarshal([]byte(c.args), &args); err != nil {
			return rep, fmt.Errorf("arguments of %s: %w", c.tool, err)
		}
		res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: c.tool, Arguments: args})
		if err != nil {
			return rep, fmt.Errorf("call %s: %w", c.tool, err)
		}
		r := result{Tool: c.tool, Arguments: c.args, Origin: origins[c.tool], IsError: res.IsError}
		r.RequestID, _ = res.Meta["io.mcpmesh/requestId"].(string)
		r.Version, _ = res.Meta["io.mcpmesh/version"].(string)
		for _, content := range res.Content {
			if t, ok := content.(*mcp.TextContent); ok {
				r.Text += t.Text
			}
		}
		rep.Calls = append(rep.Calls, r)
		if res.IsError {
			return rep, fmt.Errorf("%s answered an error: %s", c.tool, r.Text)
		}
	}
	return rep, nil
}

// credentials returns the API key, from keyFile or the BU's entry of
// dev.json (which sets *url too when it is empty).
func credentials(url *string, keyFile, devJSON, bu string) (string, error) {
	if devJSON != "" {
		raw, err := os.ReadFile(devJSON)
		if err != nil {
			return "", err
		}
		var dev struct {
			Namespaces map[string]struct {
				MCPURL   string `json:"mcpUrl"`
				AgentKey string `json:"agentKey"`
			} `json:"namespaces"`
		}
		if err := json.Unmarshal(raw, &dev); err != nil {
			return "", fmt.Errorf("%s: %w", devJSON, err)
		}
		ns, ok := dev.Namespaces[bu]
		if !ok {
			return "", fmt.Errorf("%s has no BU %q", devJSON, bu)
		}
		if *url == "" {
			*url = ns.MCPURL
		}
		return ns.AgentKey, nil
	}
	if *url == "" || keyFile == "" {
		return "", errors.New("want -dev dev.json, or -url and -key-file")
	}
	raw, err := os.ReadFile(keyFile)
	return strings.TrimSpace(string(raw)), err
}

// bearer sends the agent's API key with every request.
type bearer string

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+string(b))
	return http.DefaultTransport.RoundTrip(r)
}

func (r report) print() {
	fmt.Printf("connected to %s\n%d tools: %s\n", r.URL, len(r.Tools), strings.Join(r.Tools, ", "))
	for _, c := range r.Calls {
		where := "own BU"
		if c.Origin != "" {
			where = "shared by BU " + c.Origin
		}
		fmt.Printf("\ncalled %s %s (%s; version %s, request %s):\n%s\n", c.Tool, c.Arguments, where, c.Version, c.RequestID, c.Text)
	}
}
