package node

import (
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"

	"github.com/mcpmesh/mcpmesh/node/config"
	"github.com/mcpmesh/mcpmesh/trust/ca"
	"github.com/mcpmesh/mcpmesh/trust/spire/spiretest"
)

var testTD = spiffeid.RequireTrustDomainFromString("hr.example.corp")

func identityConfig(source, addr, caDir string, methods ...string) config.Config {
	cfg := config.DefaultConfig()
	cfg.NodeID, cfg.TrustDomain = "n1", testTD.Name()
	cfg.Trust.Source, cfg.Trust.WorkloadAPIAddr, cfg.Trust.CADir = source, addr, caDir
	cfg.Trust.WorkloadAPITimeout = 2 * time.Second
	cfg.MCP.Auth.Methods = methods
	return cfg
}

// TestIdentityFromWorkloadAPI: with trust.source workload-api the node's
// SVID, X.509 bundle and (with jwt-svid on) JWT bundle come from the
// Workload API, and an SVID for another SPIFFE ID is refused.
func TestIdentityFromWorkloadAPI(t *testing.T) {
	c, err := ca.Init(filepath.Join(t.TempDir(), "ca"), testTD)
	if err != nil {
		t.Fatal(err)
	}
	nodeID := spiffeid.RequireFromPath(testTD, "/mcpmesh/node/n1")
	srv, err := spiretest.New(spiretest.Config{CA: c, IDs: []spiffeid.ID{nodeID}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)

	id, err := newIdentity(identityConfig(config.TrustWorkloadAPI, srv.Addr(), "", "api-key", "jwt-svid"), testTD, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { id.close() })
	s, err := id.svid.GetX509SVID()
	if err != nil || s.ID != nodeID || !s.Certificates[0].Equal(srv.Current().Certificates[0]) {
		t.Fatalf("node SVID = %v, %v; want the one the Workload API serves", s, err)
	}
	b, err := id.bundle.GetX509BundleForTrustDomain(testTD)
	if err != nil || !b.HasX509Authority(c.Bundle().X509Authorities()[0]) {
		t.Errorf("X.509 bundle = %v, %v", b, err)
	}
	if id.ca != nil {
		t.Error("an embedded CA is set with the Workload API")
	}
	tok, err := c.IssueJWTSVID(spiffeid.RequireFromPath(testTD, "/agent/x"), []string{"spiffe://hr.example.corp/mcpmesh/gateway"}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if id.jwt == nil {
		t.Fatal("no JWT bundle source with jwt-svid on")
	}
	if _, err := jwtsvid.ParseAndValidate(tok, id.jwt, []string{"spiffe://hr.example.corp/mcpmesh/gateway"}); err != nil {
		t.Errorf("JWT-SVID against the Workload API's bundle: %v", err)
	}

	noJWT, err := newIdentity(identityConfig(config.TrustWorkloadAPI, srv.Addr(), ""), testTD, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	noJWT.close()
	if noJWT.jwt != nil {
		t.Error("JWT bundles watched although jwt-svid is off")
	}

	other := identityConfig(config.TrustWorkloadAPI, srv.Addr(), "")
	other.NodeID = "n2"
	if _, err := newIdentity(other, testTD, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "trust.workload_api_addr") || !strings.Contains(err.Error(), "spiffe://hr.example.corp/mcpmesh/node/n2") {
		t.Errorf("node n2 given n1's SVID: %v", err)
	}
}

func TestIdentityEmbedded(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	c, err := ca.Init(dir, testTD)
	if err != nil {
		t.Fatal(err)
	}
	id, err := newIdentity(identityConfig(config.TrustEmbedded, "", dir), testTD, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	s, _ := id.svid.GetX509SVID()
	if s.ID.String() != "spiffe://hr.example.corp/mcpmesh/node/n1" || id.ca == nil || id.jwt == nil {
		t.Errorf("embedded identity: svid %v ca %v jwt %v", s.ID, id.ca, id.jwt)
	}
	tok, _ := c.IssueJWTSVID(spiffeid.RequireFromPath(testTD, "/agent/x"), []string{"a"}, time.Minute)
	if _, err := jwtsvid.ParseAndValidate(tok, id.jwt, []string{"a"}); err != nil {
		t.Errorf("JWT-SVID against the embedded CA's bundle: %v", err)
	}
}
