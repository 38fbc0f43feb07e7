package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpmesh/mcpmesh/registry/api"
	"github.com/mcpmesh/mcpmesh/test/internal/testcluster"
)

// TestApprovalConfirm: a permit annotated @approval("confirm") has the
// calling user confirm each call it allows through elicitation, through
// the real binary, in the stateless era (MRTR input_required) and a
// legacy one (elicitation/create on the session): accepted, the call runs
// once; declined, it is refused with -32017 and audited; a client without
// elicitation gets the administrator's flow, told why. An unknown
// @approval value is refused by `mcpmesh apply`, naming the policy and the
// allowed values.
func TestApprovalConfirm(t *testing.T) {
	t.Parallel()
	up := startCountingUpstream(t)
	c := startCluster(t, testcluster.Options{NoSync: true, Nodes: 1,
		ExtraYAML: "governance:\n  approval_hold: 0s\n  approval_ttl: 5m\n"})
	n := c.Nodes[0]
	mustCLI(t, c, n, "tenant", "add", "payroll", "-owner", "alice@corp.example")
	bad := t.TempDir()
	writeFile(t, bad, "policies.cedar", []byte(`@id("ask-first") @approval("ask") permit (principal, action, resource);`))
	if out, code := c.CLI(n, "apply", "-f", bad); code == 0 || !strings.Contains(out, `policy "ask-first": @approval("ask")`) ||
		!strings.Contains(out, `@approval("required")`) || !strings.Contains(out, `@approval("confirm")`) {
		t.Errorf("apply with @approval(\"ask\"): exit %d: %s", code, out)
	}
	dir := t.TempDir()
	writeFile(t, dir, "policies.cedar", []byte(`
@id("call-all")
permit (principal, action, resource);

@id("confirm-transfers")
@approval("confirm")
permit (principal, action == Action::"call", resource)
when { resource in Tool::"corp.bank/payments/transfer" };
`))
	mustCLI(t, c, n, "apply", "-f", dir)
	mustCLI(t, c, n, "registry", "submit", "-f", writeCard(t, []byte(bankCard(up.URL))))
	mustCLI(t, c, n, "registry", "approve", "corp.bank/payments@1.0.0")
	alice := createKey(t, c, n, "payroll", "alice")

	// connect returns a session of era whose user answers action, or one
	// without elicitation when action is "".
	connect := func(era, action string, asked *[]string) (*mcp.ClientSession, error) {
		var opts *mcp.ClientOptions
		if action != "" {
			opts = &mcp.ClientOptions{ElicitationHandler: func(_ context.Context, req *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
				*asked = append(*asked, req.Params.Message)
				return &mcp.ElicitResult{Action: action}, nil
			}}
		}
		cl := mcp.NewClient(&mcp.Implementation{Name: "confirming-agent", Version: "1"}, opts)
		ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
		defer cancel()
		s, err := cl.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: n.URL() + "/mcp",
			HTTPClient: &http.Client{Transport: credentialTransport{alice.Secret}}}, &mcp.ClientSessionOptions{ProtocolVersion: era})
		if err == nil {
			t.Cleanup(func() { s.Close() })
		}
		return s, err
	}
	transfer := func(s *mcp.ClientSession, to string) (*mcp.CallToolResult, error) {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		return s.CallTool(ctx, &mcp.CallToolParams{Name: "hr.transfer", Arguments: map[string]any{"amount": 250, "to": to}})
	}
	// The node serves the tool once it applied the catalog.
	var last string
	if !testcluster.Eventually(catchUp, func() bool {
		var asked []string
		s, err := connect("2026-07-28", "accept", &asked)
		if err != nil {
			last = err.Error()
			return false
		}
		res, err := transfer(s, "warmup")
		last = fmt.Sprint(res, err)
		return err == nil && !res.IsError
	}) {
		t.Fatalf("hr.transfer is not served: %s", last)
	}

	for _, era := range []string{"2026-07-28", "2025-11-25"} {
		t.Run(era, func(t *testing.T) {
			var asked []string
			s, err := connect(era, "accept", &asked)
			if err != nil {
				t.Fatal(err)
			}
			to := "accepted-" + era
			res, err := transfer(s, to)
			if err != nil || res.IsError || res.Content[0].(*mcp.TextContent).Text != "moved 250 to "+to {
				t.Fatalf("confirmed transfer: %v %+v", err, res)
			}
			if len(asked) != 1 || !strings.Contains(asked[0], "hr.transfer (corp.bank/payments/transfer, version 1.0.0)") ||
				!strings.Contains(asked[0], "amount=250") || !strings.Contains(asked[0], "confirm-transfers") {
				t.Errorf("the user was asked %q; want one question naming the tool, version, arguments and policy", asked)
			}
			if got := up.count(to); got != 1 {
				t.Errorf("the upstream saw the confirmed transfer %d times, want 1", got)
			}

			asked = nil
			s, err = connect(era, "decline", &asked)
			if err != nil {
				t.Fatal(err)
			}
			to = "declined-" + era
			_, err = transfer(s, to)
			var je *jsonrpc.Error
			if !errors.As(err, &je) || je.Code != codeApprovalRefused || !strings.Contains(je.Message, "declined by the user") || len(asked) != 1 {
				t.Errorf("declined transfer: %v (asked %d times), want %d saying declined by the user", err, len(asked), codeApprovalRefused)
			}
			if got := up.count(to); got != 0 {
				t.Errorf("the upstream saw a declined transfer %d times", got)
			}

			s, err = connect(era, "", nil)
			if err != nil {
				t.Fatal(err)
			}
			to = "no-elicitation-" + era
			_, err = transfer(s, to)
			if !errors.As(err, &je) || je.Code != codeApprovalPending || !strings.Contains(string(je.Data), "elicitation capability") ||
				!strings.Contains(je.Message, "an administrator approves it instead") {
				t.Errorf("transfer by a client without elicitation: %v, want %d saying an administrator approves it instead", err, codeApprovalPending)
			}
			if got := up.count(to); got != 0 {
				t.Errorf("the upstream saw an unapproved transfer %d times", got)
			}
		})
	}
	recs := decode[api.AuditRecords](t, "audit query", mustCLI(t, c, n, "audit", "query", "-outcome", "approval_declined", "-o", "json"))
	if len(recs.Records) != 2 || !strings.Contains(recs.Records[0].Reason, "declined by the user") {
		t.Errorf("audit: %d approval_declined records, want 2 saying declined by the user: %+v", len(recs.Records), recs.Records)
	}
}
