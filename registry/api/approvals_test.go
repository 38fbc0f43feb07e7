package api

import (
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/mcpmesh/mcpmesh/registry/cluster"
	"github.com/mcpmesh/mcpmesh/registry/state"
	"github.com/mcpmesh/mcpmesh/trust/ca"
	"github.com/mcpmesh/mcpmesh/trust/mtls"
	"github.com/mcpmesh/mcpmesh/trust/svid"
)

// newApprovalsTestAPI is newTestAPI that also returns the cluster, so a
// test can propose what a gateway would.
func newApprovalsTestAPI(t *testing.T) (*Client, *cluster.Cluster) {
	t.Helper()
	authority, err := ca.Init(t.TempDir()+"/ca", spiffeid.RequireTrustDomainFromString("hr.example.corp"))
	if err != nil {
		t.Fatal(err)
	}
	rot, err := svid.NewRotator(authority, spiffeid.RequireFromSegments(authority.TrustDomain(), "mcpmesh", "node", "n1"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	authz := mtls.NodeAuthorizer(authority.TrustDomain(), slog.New(slog.DiscardHandler))
	cl, err := cluster.New(cluster.Config{
		NodeID: "n1", Listener: ln, Dir: t.TempDir(),
		ServerTLS:        mtls.ServerConfig(rot, authority.Bundle(), authz, "mcpmesh-node/1"),
		ClientTLS:        mtls.ClientConfig(rot, authority.Bundle(), authz, "mcpmesh-node/1"),
		Peers:            []cluster.Peer{{ID: "n1", Address: ln.Addr().String()}},
		HeartbeatTimeout: 100 * time.Millisecond, ElectionTimeout: 100 * time.Millisecond, LeaderLeaseTimeout: 50 * time.Millisecond,
		NoSync: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Shutdown() })
	h := New(cl)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), Principal{ID: "spiffe://hr.example.corp/admin/alice", Method: "svid"})))
	}))
	t.Cleanup(srv.Close)
	c, err := NewClient(ClientConfig{Addr: srv.URL, Token: "unused", Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c, cl
}

// TestSelfApprovalRefusedByAPI: an administrator whose identity is the
// held call's caller cannot approve or deny it; the decision of another is
// taken, and listing filters by state.
func TestSelfApprovalRefusedByAPI(t *testing.T) {
	c, cl := newApprovalsTestAPI(t)
	ctx := t.Context()
	waitLeader := func() {
		deadline := time.Now().Add(10 * time.Second)
		for !cl.IsLeader() {
			if time.Now().After(deadline) {
				t.Fatal("no leader within 10s")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitLeader()
	now := time.Now().UTC()
	request := func(id, caller string) {
		cmd, err := state.Encode(state.RequestApproval{ID: id, ApprovalBinding: state.ApprovalBinding{
			Caller: caller, Server: "corp.finance/ledger", Tool: "transfer_funds", Version: "1.0.0", DefinitionHash: "h",
			ArgumentsDigest: "d", PolicyVersion: "p"}, At: now, ExpiresAt: now.Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cl.Apply(ctx, cmd); err != nil {
			t.Fatal(err)
		}
	}
	// The admin of newTestAPI holds this identity; so does the caller.
	request("apr-self0000", "spiffe://hr.example.corp/admin/alice")
	request("apr-other000", "spiffe://hr.example.corp/agent/bot")
	for _, approve := range []bool{true, false} {
		_, err := c.DecideApproval(ctx, "apr-self0000", approve, "mine")
		if err == nil || !strings.Contains(err.Error(), "made the call and cannot decide it") {
			t.Errorf("self-decision (approve %v): err = %v", approve, err)
		}
	}
	res, err := c.DecideApproval(ctx, "apr-other000", true, "")
	if err != nil || res.State != state.ApprovalApproved || res.DecidedBy != "spiffe://hr.example.corp/admin/alice" {
		t.Fatalf("decision of another's call: %+v, %v", res, err)
	}
	pending, err := c.Approvals(ctx, state.ApprovalPending, false)
	if err != nil || len(pending) != 1 || pending[0].ID != "apr-self0000" {
		t.Errorf("pending approvals: %+v, %v", pending, err)
	}
	if _, err := c.DecideApproval(ctx, "apr-other000", false, ""); err == nil || !strings.Contains(err.Error(), "reason is required") {
		t.Errorf("deny without reason: %v", err)
	}
}
