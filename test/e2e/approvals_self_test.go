package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/mcpmesh/mcpmesh/registry/api"
	"github.com/mcpmesh/mcpmesh/registry/state"
	"github.com/mcpmesh/mcpmesh/test/internal/testcluster"
	"github.com/mcpmesh/mcpmesh/trust/ca"
)

// TestApprovalSelfApprovalRefused: in a BU whose people hold one SVID
// (spiffe://hr.example.corp/people/<name>) that is both their agent
// identity at /mcp and their admin identity at /v1/, alice's risky call is
// held; alice cannot approve it, through the CLI or the admin API (409,
// saying she made the call), and it stays pending; bob then approves it
// and alice's retry with the id runs once.
func TestApprovalSelfApprovalRefused(t *testing.T) {
	t.Parallel()
	up := startCountingUpstream(t)
	c := testcluster.New(t, testcluster.Options{NoSync: true, Nodes: 1,
		ExtraYAML: "mcp:\n  auth:\n    svid_path_prefix: /people/\n    svid_tenants:\n      - { path_prefix: /people/, tenant: payroll }\n" +
			"governance:\n  approval_hold: 0s\n  approval_ttl: 5m\n"})
	n := c.Nodes[0]
	n.WriteConfigWith(testcluster.NodeOverrides{HTTPTLS: true, AdminPathPrefix: "/people/"},
		"bootstrap:\n  expect: 1\n  peers:\n    - { id: n1, address: \""+n.RaftAddr+"\" }\n")
	alice := c.IssueSVID(c.CADir, "spiffe://hr.example.corp/people/alice")
	bob := c.IssueSVID(c.CADir, "spiffe://hr.example.corp/people/bob")
	n.Start()
	waitReadyTLS(t, n, alice)
	cli := func(dir string, args ...string) (string, int) {
		return c.Run(append(args, "-addr", n.HTTPSURL(), "-svid-dir", dir)...)
	}
	as := func(dir string, args ...string) string {
		t.Helper()
		out, code := cli(dir, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, out)
		}
		return out
	}
	as(alice, "tenant", "add", "payroll", "-owner", "alice@corp.example")
	dir := bankPolicyDir(t)
	as(alice, "apply", "-f", dir)
	as(alice, "registry", "submit", "-f", writeCard(t, []byte(bankCard(up.URL))))
	as(alice, "registry", "approve", "corp.bank/payments@1.0.0")

	_, bundle, err := ca.LoadSVID(alice)
	if err != nil {
		t.Fatal(err)
	}
	td := spiffeid.RequireTrustDomainFromString("hr.example.corp")
	client := func(dir string) *http.Client {
		svid, _, err := ca.LoadSVID(dir)
		if err != nil {
			t.Fatal(err)
		}
		tr := &http.Transport{TLSClientConfig: tlsconfig.MTLSClientConfig(svid, bundle, tlsconfig.AuthorizeMemberOf(td))}
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr, Timeout: 20 * time.Second}
	}
	var session *mcp.ClientSession
	var last string
	call := func(approval string) (*mcp.CallToolResult, error) {
		p := &mcp.CallToolParams{Name: "hr.transfer", Arguments: map[string]any{"amount": 5000, "to": "self"}}
		if approval != "" {
			p.Meta = mcp.Meta{"io.mcpmesh/approval": approval}
		}
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		return session.CallTool(ctx, p)
	}
	// alice's agent, with her SVID, holds a call for approval.
	var id string
	ok := testcluster.Eventually(catchUp, func() bool {
		if session == nil {
			cl := mcp.NewClient(&mcp.Implementation{Name: "alice-agent", Version: "1"}, nil)
			ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
			defer cancel()
			s, err := cl.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: n.HTTPSURL() + "/mcp", HTTPClient: client(alice)}, nil)
			if err != nil {
				last = err.Error()
				return false
			}
			t.Cleanup(func() { s.Close() })
			session = s
		}
		_, err := call("")
		var je *jsonrpc.Error
		if !errors.As(err, &je) || je.Code != codeApprovalPending {
			last = fmt.Sprint(err)
			return false
		}
		var d state.Approval
		json.Unmarshal(je.Data, &d)
		id = d.ID
		return true
	})
	if !ok {
		t.Fatalf("alice's transfer was not held for approval; last: %s", last)
	}
	pending := func() state.Approval {
		t.Helper()
		list := decode[[]state.Approval](t, "approvals list", as(bob, "approvals", "list", "-o", "json"))
		for _, ap := range list {
			if ap.ID == id {
				return ap
			}
		}
		t.Fatalf("approval %s is not listed: %+v", id, list)
		return state.Approval{}
	}
	if ap := pending(); ap.Caller != "spiffe://hr.example.corp/people/alice" || ap.State != state.ApprovalPending {
		t.Fatalf("approval %s = %+v, want pending for alice", id, ap)
	}

	// alice approves her own call: the CLI refuses, naming why.
	out, code := cli(alice, "approvals", "approve", id, "-reason", "looks fine to me")
	if code == 0 || !strings.Contains(out, "made the call and cannot decide it") || !strings.Contains(out, "people/alice") {
		t.Errorf("self-approval through the CLI: exit %d: %s", code, out)
	}
	// And the admin API answers 409.
	resp, err := client(alice).Post(n.HTTPSURL()+"/v1/approvals/"+id+"/approve", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusConflict || !strings.Contains(string(body), "cannot decide it") {
		t.Errorf("self-approval through the admin API: %s %s, want 409 saying alice made the call", resp.Status, body)
	}
	// Denying her own call is a decision too: refused as well.
	if out, code := cli(alice, "approvals", "deny", id, "-reason", "changed my mind"); code == 0 || !strings.Contains(out, "cannot decide it") {
		t.Errorf("self-denial through the CLI: exit %d: %s", code, out)
	}
	if ap := pending(); ap.State != state.ApprovalPending || ap.DecidedBy != "" {
		t.Fatalf("after alice's refused decisions approval %s = %+v, want still pending", id, ap)
	}
	var je *jsonrpc.Error
	if _, err := call(id); !errors.As(err, &je) || je.Code != codeApprovalPending {
		t.Fatalf("alice's retry before anyone approved: %v, want %d", err, codeApprovalPending)
	}
	if got := up.count("self"); got != 0 {
		t.Fatalf("the upstream saw the call %d times before it was approved", got)
	}

	// bob, another person, approves it; alice's retry runs once.
	if out := as(bob, "approvals", "approve", id, "-reason", "checked"); !strings.Contains(out, "approved "+id) {
		t.Errorf("bob's approval: %s", out)
	}
	res, err := call(id)
	if err != nil || res.IsError {
		t.Fatalf("alice's retry after bob approved: %v %+v", err, res)
	}
	if _, err := call(id); err == nil {
		t.Error("a second retry with the used approval ran")
	}
	if got := up.count("self"); got != 1 {
		t.Errorf("the upstream saw the approved call %d times, want 1", got)
	}
	// The refused self-decisions are audited with who tried.
	recs := decode[api.AuditRecords](t, "audit query", as(bob, "audit", "query", "-kind", "admin", "-principal", "spiffe://hr.example.corp/people/alice", "-o", "json"))
	refused := 0
	for _, r := range recs.Records {
		if strings.HasPrefix(r.Action, "approval.") && r.Outcome == "error" {
			refused++
		}
	}
	if refused < 3 {
		t.Errorf("audit: %d refused approval decisions by alice, want 3: %+v", refused, recs.Records)
	}
}

// TestApprovalSelfApprovalOIDC: a person who is both an agent user and an
// operator signs in to both with the BU's OIDC provider (admin.oidc), so
// both identities are "oidc:<sub>": alice's held call cannot be approved
// with alice's admin token (409 through the CLI), bob's admin token
// approves it, and alice's retry runs once.
func TestApprovalSelfApprovalOIDC(t *testing.T) {
	t.Parallel()
	idp := startIdP(t)
	up := startCountingUpstream(t)
	c := testcluster.New(t, testcluster.Options{NoSync: true, Nodes: 1})
	n := c.Nodes[0]
	mcpAud, adminAud := n.URL()+"/mcp", n.URL()+"/v1"
	c.Opts.ExtraYAML = fmt.Sprintf("mcp:\n  auth:\n    oidc:\n      issuer: %s\n      jwks_url: %s\n      audience: %s\n"+
		"governance:\n  approval_hold: 0s\n  approval_ttl: 5m\n", idpIssuer, idp.jwksURL, mcpAud)
	n.WriteConfigWith(testcluster.NodeOverrides{}, "bootstrap:\n  expect: 1\n  peers:\n    - { id: n1, address: \""+n.RaftAddr+"\" }\n")
	// admin.oidc goes into the admin section the cluster writes.
	raw, err := os.ReadFile(n.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(raw), "admin:\n", fmt.Sprintf("admin:\n  oidc: { audience: %q, subjects: [alice@corp.example, bob@corp.example] }\n", adminAud), 1)
	if err := os.WriteFile(n.ConfigPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	c.Start()
	c.Leader(leaderTimeout)
	c.WaitAllReady(leaderTimeout)

	sign := func(sub, aud string) string {
		return idp.sign(t, map[string]any{"iss": idpIssuer, "aud": aud, "sub": sub, "tenant": "payroll",
			"exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix()})
	}
	tokenFile := func(sub string) string {
		path := filepath.Join(t.TempDir(), "admin.jwt")
		if err := os.WriteFile(path, []byte(sign(sub, adminAud)), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	aliceAdmin, bobAdmin := tokenFile("alice@corp.example"), tokenFile("bob@corp.example")
	as := func(file string, args ...string) (string, int) {
		return c.Run(append(args, "-addr", n.URL(), "-token-file", file)...)
	}
	// alice, signed in with OIDC, sets the BU up.
	dir := bankPolicyDir(t)
	for _, args := range [][]string{{"tenant", "add", "payroll", "-owner", "alice@corp.example"}, {"apply", "-f", dir}, {"registry", "submit", "-f", writeCard(t, []byte(bankCard(up.URL)))}, {"registry", "approve", "corp.bank/payments@1.0.0"}} {
		if out, code := as(aliceAdmin, args...); code != 0 {
			t.Fatalf("%v as alice: exit %d: %s", args, code, out)
		}
	}

	// alice's agent, with her OIDC token for /mcp, has a transfer held.
	var s *mcp.ClientSession
	call := func(approval string) (*mcp.CallToolResult, error) {
		p := &mcp.CallToolParams{Name: "hr.transfer", Arguments: map[string]any{"amount": 5000, "to": "oidc-self"}}
		if approval != "" {
			p.Meta = mcp.Meta{"io.mcpmesh/approval": approval}
		}
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		return s.CallTool(ctx, p)
	}
	var id, last string
	if !testcluster.Eventually(catchUp, func() bool {
		if s == nil {
			var err error
			if s, err = tryConnect(t, mcpAud, "2026-07-28", sign("alice@corp.example", mcpAud)); err != nil {
				last = err.Error()
				return false
			}
		}
		_, err := call("")
		var je *jsonrpc.Error
		if !errors.As(err, &je) || je.Code != codeApprovalPending {
			last = fmt.Sprint(err)
			return false
		}
		var d state.Approval
		json.Unmarshal(je.Data, &d)
		id = d.ID
		return true
	}) {
		t.Fatalf("alice's transfer was not held for approval; last: %s", last)
	}
	// An agent token does not open the admin API.
	agentFile := filepath.Join(t.TempDir(), "agent.jwt")
	os.WriteFile(agentFile, []byte(sign("alice@corp.example", mcpAud)), 0o600)
	if out, code := as(agentFile, "approvals", "list"); code == 0 || !strings.Contains(out, "not for this resource") {
		t.Errorf("approvals list with alice's agent token: exit %d: %s", code, out)
	}
	if out, code := as(aliceAdmin, "approvals", "approve", id); code == 0 || !strings.Contains(out, "oidc:alice@corp.example made the call and cannot decide it") {
		t.Errorf("alice approving her own call: exit %d: %s", code, out)
	}
	list, _ := as(bobAdmin, "approvals", "list", "-state", "pending", "-o", "json")
	if pending := decode[[]state.Approval](t, "approvals list", list); len(pending) != 1 || pending[0].ID != id || pending[0].Caller != "oidc:alice@corp.example" {
		t.Fatalf("pending approvals after alice's refused approval: %+v", pending)
	}
	if out, code := as(bobAdmin, "approvals", "approve", id); code != 0 || !strings.Contains(out, "approved "+id) {
		t.Fatalf("bob approving: exit %d: %s", code, out)
	}
	if res, err := call(id); err != nil || res.IsError {
		t.Fatalf("alice's retry after bob approved: %v %+v", err, res)
	}
	if got := up.count("oidc-self"); got != 1 {
		t.Errorf("the upstream saw the approved transfer %d times, want 1", got)
	}
}
