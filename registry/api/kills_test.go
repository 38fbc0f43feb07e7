package api

import (
	"errors"
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

// newTestAPI serves the admin API of a one-replica cluster, as admin
// "spiffe://hr.example.corp/admin/alice", and returns a client of it.
func newTestAPI(t *testing.T) *Client {
	t.Helper()
	c, _ := newTestAPICluster(t)
	return c
}

// newTestAPICluster is newTestAPI that also returns the cluster, so a test
// can propose what a gateway would.
func newTestAPICluster(t *testing.T) (*Client, *cluster.Cluster) {
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

// wantAPIError checks err is an API error of status whose message says want.
func wantAPIError(t *testing.T, what string, err error, status int, want string) {
	t.Helper()
	var ae *Error
	if !errors.As(err, &ae) || ae.Status != status || !strings.Contains(ae.Message, want) {
		t.Errorf("%s: err = %v; want HTTP %d saying %q", what, err, status, want)
	}
}

func TestKillAPI(t *testing.T) {
	c := newTestAPI(t)
	ctx := t.Context()
	const reason = "incident 4411: wrong balances"

	out, err := c.Kill(ctx, KillRequest{Kind: state.KillServer, Name: "corp.finance/ledger", Reason: reason})
	if err != nil {
		t.Fatal(err)
	}
	if out.By != "spiffe://hr.example.corp/admin/alice" || out.Reason != reason || out.At.IsZero() || out.Unchanged {
		t.Errorf("kill answer = %+v; want it stamped with the admin's identity and time", out)
	}
	if !strings.Contains(out.Warning, "no server corp.finance/ledger is registered") {
		t.Errorf("kill of an unregistered server: warning = %q", out.Warning)
	}
	if again, err := c.Kill(ctx, KillRequest{Kind: state.KillServer, Name: "corp.finance/ledger", Reason: reason}); err != nil || !again.Unchanged {
		t.Errorf("second identical kill = %+v, %v; want unchanged", again, err)
	}
	// Names with slashes and colons travel in the path of a revive.
	agent := "spiffe://hr.example.corp/agent/payroll/exporter"
	if _, err := c.Kill(ctx, KillRequest{Kind: state.KillAgent, Name: agent, Reason: "compromised host"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Kill(ctx, KillRequest{Kind: state.KillTool, Name: "corp.finance/ledger/transfer_funds", Reason: reason}); err != nil {
		t.Fatal(err)
	}
	ks, err := c.Kills(ctx, true)
	if err != nil || len(ks) != 3 {
		t.Fatalf("Kills = %+v, %v; want 3", ks, err)
	}

	_, err = c.Kill(ctx, KillRequest{Kind: state.KillTool, Name: "finance.transfer_funds", Reason: reason})
	wantAPIError(t, "kill by the /mcp name", err, http.StatusBadRequest, "<server>/<tool>")
	_, err = c.Kill(ctx, KillRequest{Kind: state.KillTenant, Name: "payroll"})
	wantAPIError(t, "kill without a reason", err, http.StatusBadRequest, "reason is required")
	_, err = c.Kill(ctx, KillRequest{Kind: "process", Name: "x", Reason: reason})
	wantAPIError(t, "kill of an unknown kind", err, http.StatusBadRequest, "want tool, server, tenant or agent")

	rv, err := c.Revive(ctx, state.KillAgent, agent)
	if err != nil {
		t.Fatal(err)
	}
	if rv.Revived.Name != agent || rv.Revived.Reason != "compromised host" {
		t.Errorf("revive answer = %+v", rv)
	}
	if _, err := c.Revive(ctx, state.KillTool, "corp.finance/ledger/transfer_funds"); err != nil {
		t.Fatal(err)
	}
	_, err = c.Revive(ctx, state.KillAgent, agent)
	wantAPIError(t, "revive of what is not killed", err, http.StatusNotFound, "is not killed")
	_, err = c.Revive(ctx, "process", "x")
	wantAPIError(t, "revive of an unknown kind", err, http.StatusBadRequest, "want tool, server, tenant or agent")
	if ks, err := c.Kills(ctx, true); err != nil || len(ks) != 1 || ks[0].Kind != state.KillServer {
		t.Errorf("Kills after revives = %+v, %v; want the server's only", ks, err)
	}
}
