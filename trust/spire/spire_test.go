package spire_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/mcpmesh/mcpmesh/trust/ca"
	"github.com/mcpmesh/mcpmesh/trust/spire"
	"github.com/mcpmesh/mcpmesh/trust/spire/spiretest"
)

var (
	td      = spiffeid.RequireTrustDomainFromString("hr.example.corp")
	nodeID  = spiffeid.RequireFromPath(td, "/mcpmesh/node/n1")
	agentID = spiffeid.RequireFromPath(td, "/agent/payroll/exporter")
)

const aud = "spiffe://hr.example.corp/mcpmesh/gateway"

func newServer(t *testing.T, ids ...spiffeid.ID) (*spiretest.Server, *ca.CA) {
	t.Helper()
	c, err := ca.Init(filepath.Join(t.TempDir(), "ca"), td)
	if err != nil {
		t.Fatal(err)
	}
	s, err := spiretest.New(spiretest.Config{CA: c, IDs: ids})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, c
}

// syncBuffer is a log sink safe for the Run goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestSource(t *testing.T) {
	srv, c := newServer(t, agentID, nodeID) // the node's is not the default
	var logs syncBuffer
	src, err := spire.New(t.Context(), spire.Config{Addr: srv.Addr(), ID: nodeID, JWTBundles: true}, spire.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })

	svid, err := src.GetX509SVID()
	if err != nil || svid.ID != nodeID {
		t.Fatalf("GetX509SVID = %v, %v; want the SVID of %s, picked among the workload's", svid, err, nodeID)
	}
	b, err := src.GetX509BundleForTrustDomain(td)
	if err != nil || !b.HasX509Authority(c.Bundle().X509Authorities()[0]) {
		t.Fatalf("X.509 bundle = %v, %v; want the CA's root", b, err)
	}
	tok, err := c.IssueJWTSVID(agentID, []string{aud}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jwtsvid.ParseAndValidate(tok, src, []string{aud}); err != nil {
		t.Errorf("a JWT-SVID of the trust domain does not verify with the Workload API's JWT bundle: %v", err)
	}

	// Rotation: the source serves the new SVID, and Run reports it.
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	old := svid.Certificates[0].SerialNumber
	changed := src.Changed()
	srv.Rotate()
	deadline := time.Now().Add(10 * time.Second)
	var serial string
	for time.Now().Before(deadline) {
		cur, _ := src.GetX509SVID()
		if serial = cur.Certificates[0].SerialNumber.Text(16); cur.Certificates[0].SerialNumber.Cmp(old) != 0 && strings.Contains(logs.String(), serial) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if cur, _ := src.GetX509SVID(); cur.Certificates[0].SerialNumber.Cmp(old) == 0 || cur.ID != nodeID {
		t.Fatalf("after Rotate the source still serves serial %x", old)
	}
	if !strings.Contains(logs.String(), "serial="+serial) {
		t.Errorf("Run did not log the rotated-in SVID %s:\n%s", serial, logs.String())
	}
	select {
	case <-changed:
	case <-time.After(10 * time.Second):
		t.Error("Changed was not closed after the rotation")
	}
	cancel()
	if err := <-done; err != context.Canceled {
		t.Errorf("Run = %v, want context.Canceled", err)
	}
}

func TestSourceRefusesAnotherID(t *testing.T) {
	srv, _ := newServer(t, agentID)
	_, err := spire.New(t.Context(), spire.Config{Addr: srv.Addr(), ID: nodeID})
	if err == nil || !strings.Contains(err.Error(), "issued this workload spiffe://hr.example.corp/agent/payroll/exporter, not spiffe://hr.example.corp/mcpmesh/node/n1") {
		t.Fatalf("New with the wrong identity: %v", err)
	}
}

func TestSourceStartTimeout(t *testing.T) {
	addr := "unix://" + filepath.Join(t.TempDir(), "none.sock")
	start := time.Now()
	_, err := spire.New(t.Context(), spire.Config{Addr: addr, ID: nodeID, StartTimeout: 500 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "received no X.509-SVID") || !strings.Contains(err.Error(), "SPIRE agent runs there") {
		t.Fatalf("New without a Workload API: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("New took %s with a 500ms start timeout", d)
	}
	if _, err := spire.New(t.Context(), spire.Config{Addr: "http://agent", ID: nodeID}); err == nil || !strings.Contains(err.Error(), "unix://") {
		t.Errorf("New with an http address: %v", err)
	}
}

func TestFetch(t *testing.T) {
	srv, c := newServer(t, agentID, spiffeid.RequireFromPath(td, "/agent/other"))
	svid, bundle, err := spire.FetchX509(t.Context(), srv.Addr(), spiffeid.ID{})
	if err != nil || svid.ID != agentID || !bundle.HasX509Authority(c.Bundle().X509Authorities()[0]) {
		t.Fatalf("FetchX509 (default) = %v, %v", svid, err)
	}
	other := spiffeid.RequireFromPath(td, "/agent/other")
	if svid, _, err := spire.FetchX509(t.Context(), srv.Addr(), other); err != nil || svid.ID != other {
		t.Errorf("FetchX509 (%s) = %v, %v", other, svid, err)
	}
	if _, _, err := spire.FetchX509(t.Context(), srv.Addr(), nodeID); err == nil || !strings.Contains(err.Error(), "not entitled") {
		t.Errorf("FetchX509 of an ID the workload does not have: %v", err)
	}
	tok, err := spire.FetchJWT(t.Context(), srv.Addr(), other, aud)
	if err != nil {
		t.Fatal(err)
	}
	if sv, err := jwtsvid.ParseAndValidate(tok, c.JWTBundle(), []string{aud}); err != nil || sv.ID != other {
		t.Errorf("fetched JWT-SVID: %v, %v", sv, err)
	}
	if _, err := spire.FetchJWT(t.Context(), srv.Addr(), nodeID, aud); err == nil {
		t.Error("FetchJWT of an ID the workload does not have succeeded")
	}
}

// TestSecurityHeader: like SPIRE's agent, the server refuses a call without
// the workload.spiffe.io header.
func TestSecurityHeader(t *testing.T) {
	srv, _ := newServer(t, agentID)
	conn, err := grpc.NewClient(srv.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	cl := workload.NewSpiffeWorkloadAPIClient(conn)
	req := &workload.JWTSVIDRequest{Audience: []string{aud}}
	if _, err := cl.FetchJWTSVID(t.Context(), req); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "security header") {
		t.Errorf("FetchJWTSVID without the header: %v", err)
	}
	ctx := metadata.AppendToOutgoingContext(t.Context(), "workload.spiffe.io", "true")
	resp, err := cl.FetchJWTSVID(ctx, req)
	if err != nil || len(resp.Svids) != 1 {
		t.Fatalf("FetchJWTSVID with the header: %v, %v", resp, err)
	}
	v, err := cl.ValidateJWTSVID(ctx, &workload.ValidateJWTSVIDRequest{Audience: aud, Svid: resp.Svids[0].Svid})
	if err != nil || v.SpiffeId != agentID.String() {
		t.Errorf("ValidateJWTSVID: %v, %v", v, err)
	}
	if _, err := cl.ValidateJWTSVID(ctx, &workload.ValidateJWTSVIDRequest{Audience: "other", Svid: resp.Svids[0].Svid}); err == nil {
		t.Error("ValidateJWTSVID accepted a token for another audience")
	}
}

// TestSourceCARotation: the steps of a CA rotation reach the source: the
// next CA's root joins the bundle, SVIDs come from it, the old root
// leaves; each step is signalled on Changed.
func TestSourceCARotation(t *testing.T) {
	srv, old := newServer(t, nodeID)
	next, err := ca.Init(filepath.Join(t.TempDir(), "next"), td)
	if err != nil {
		t.Fatal(err)
	}
	src, err := spire.New(t.Context(), spire.Config{Addr: srv.Addr(), ID: nodeID})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go src.Run(ctx)
	oldRoot, nextRoot := old.Bundle().X509Authorities()[0], next.Bundle().X509Authorities()[0]
	for _, step := range []struct {
		name      string
		issuer    *ca.CA
		cas       []*ca.CA
		roots     int
		nextIssue bool
	}{
		{"prepared", old, []*ca.CA{old, next}, 2, false},
		{"activated", next, []*ca.CA{old, next}, 2, true},
		{"pruned", next, []*ca.CA{next}, 1, true},
	} {
		changed := src.Changed()
		want, err := srv.SetCA(step.issuer, step.cas...)
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-changed:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no update signalled", step.name)
		}
		deadline := time.Now().Add(10 * time.Second)
		var last string
		for {
			svid, _ := src.GetX509SVID()
			b, err := src.GetX509BundleForTrustDomain(td)
			ok := err == nil && svid.Certificates[0].Equal(want.Certificates[0]) && len(b.X509Authorities()) == step.roots &&
				b.HasX509Authority(nextRoot) && b.HasX509Authority(oldRoot) == (step.roots == 2) &&
				(svid.Certificates[0].CheckSignatureFrom(nextRoot) == nil) == step.nextIssue
			if ok {
				break
			}
			if err == nil {
				last = fmt.Sprintf("serial %x, %d roots", svid.Certificates[0].SerialNumber, len(b.X509Authorities()))
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the source does not hold the step's SVID and bundle; last: %s", step.name, last)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}
