// Package spiretest serves the SPIFFE Workload API in-process, over a unix
// socket, for tests of code that takes identities from SPIRE: the real
// gRPC service of go-spiffe's generated protos (FetchX509SVID,
// FetchX509Bundles, FetchJWTSVID, FetchJWTBundles, ValidateJWTSVID), with
// SVIDs issued by an embedded CA of trust/ca standing in for the SPIRE
// server. Like a SPIRE agent it refuses calls without the
// "workload.spiffe.io: true" metadata header.
//
// Every caller is the same workload: it is entitled to the IDs the Server
// was made with, the first being its default. Rotate issues new X.509-SVIDs
// and pushes them to open streams, as SPIRE does at rotation; SetCA plays
// the steps of a CA rotation. It is meant for tests only: it authenticates
// no caller.
package spiretest

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/mcpmesh/mcpmesh/trust/ca"
)

// Config is what a Server hands out.
type Config struct {
	// CA issues the SVIDs and provides the X.509 and JWT bundles. Required.
	CA *ca.CA
	// IDs are the SPIFFE IDs the workload is entitled to; the first is its
	// default. At least one is required.
	IDs []spiffeid.ID
	// SVIDTTL is the lifetime of each X.509-SVID. Default 1h.
	SVIDTTL time.Duration
	// JWTTTL is the lifetime of each JWT-SVID. Default 5m.
	JWTTTL time.Duration
}

// Server is a running Workload API. It is safe for concurrent use.
type Server struct {
	cfg  Config
	dir  string
	addr string
	grpc *grpc.Server
	done chan struct{}

	mu    sync.Mutex
	svids []*x509svid.SVID
	subs  map[chan struct{}]struct{}
	// issuer issues the X.509-SVIDs and authorities are the X.509
	// bundle's roots: Config.CA's until SetCA.
	issuer      *ca.CA
	authorities []*x509.Certificate
}

// New issues the first X.509-SVIDs and starts serving on a socket in a new
// temporary directory (short, for the length limit of socket paths).
func New(cfg Config) (*Server, error) {
	if cfg.CA == nil || len(cfg.IDs) == 0 {
		return nil, errors.New("spiretest: a CA and at least one SPIFFE ID are required")
	}
	if cfg.SVIDTTL <= 0 {
		cfg.SVIDTTL = time.Hour
	}
	if cfg.JWTTTL <= 0 {
		cfg.JWTTTL = 5 * time.Minute
	}
	dir, err := os.MkdirTemp("", "spire-")
	if err != nil {
		return nil, fmt.Errorf("spiretest: %w", err)
	}
	s := &Server{cfg: cfg, dir: dir, subs: map[chan struct{}]struct{}{}, done: make(chan struct{}),
		issuer: cfg.CA, authorities: cfg.CA.Bundle().X509Authorities()}
	if _, err := s.Rotate(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	sock := filepath.Join(dir, "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("spiretest: listen: %w", err)
	}
	s.addr = "unix://" + sock
	s.grpc = grpc.NewServer()
	workload.RegisterSpiffeWorkloadAPIServer(s.grpc, &service{s: s})
	go func() {
		defer close(s.done)
		s.grpc.Serve(ln)
	}()
	return s, nil
}

// Addr is the server's address, e.g. unix:///tmp/spire-123/agent.sock,
// for workloadapi.WithAddr and the node's trust.workload_api_addr.
func (s *Server) Addr() string { return s.addr }

// Close stops the server, ending open streams, and removes its socket.
func (s *Server) Close() {
	s.grpc.Stop()
	<-s.done
	os.RemoveAll(s.dir)
}

// Rotate issues new X.509-SVIDs for every ID and sends them to every open
// FetchX509SVID stream. It returns the new default SVID.
func (s *Server) Rotate() (*x509svid.SVID, error) {
	s.mu.Lock()
	issuer := s.issuer
	s.mu.Unlock()
	var svids []*x509svid.SVID
	for _, id := range s.cfg.IDs {
		sv, err := issuer.IssueX509SVID(id, s.cfg.SVIDTTL)
		if err != nil {
			return nil, fmt.Errorf("spiretest: %w", err)
		}
		svids = append(svids, sv)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.svids = svids
	s.notify()
	return svids[0], nil
}

// SetCA plays one step of a SPIRE CA rotation on the X.509 side: from now
// on the X.509 bundle holds the roots of authorities, and X.509-SVIDs
// are issued by issuer, which are reissued at once and sent to every open
// FetchX509SVID stream. A rotation is three calls: SetCA(old, old, next)
// prepares the next CA, SetCA(next, old, next) activates it, and
// SetCA(next, next) prunes the old one. JWT-SVIDs and the JWT bundle stay
// Config.CA's. It returns the new default SVID.
func (s *Server) SetCA(issuer *ca.CA, authorities ...*ca.CA) (*x509svid.SVID, error) {
	var roots []*x509.Certificate
	for _, c := range authorities {
		roots = append(roots, c.Bundle().X509Authorities()...)
	}
	s.mu.Lock()
	s.issuer, s.authorities = issuer, roots
	s.mu.Unlock()
	return s.Rotate()
}

// notify wakes every open FetchX509SVID stream; s.mu is held.
func (s *Server) notify() {
	for ch := range s.subs {
		select {
		case ch <- struct{}{}:
		default: // an update is already pending
		}
	}
}

// Current returns the default X.509-SVID being served.
func (s *Server) Current() *x509svid.SVID {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.svids[0]
}

func (s *Server) subscribe() (chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	s.subs[ch] = struct{}{}
	s.mu.Unlock()
	return ch, func() {
		s.mu.Lock()
		delete(s.subs, ch)
		s.mu.Unlock()
	}
}

// service implements the Workload API.
type service struct {
	workload.UnimplementedSpiffeWorkloadAPIServer
	s *Server
}

var _ workload.SpiffeWorkloadAPIServer = (*service)(nil)

// checkHeader refuses a call without the security header, as SPIRE's agent
// does: it stops a browser or SSRF-ed client from reaching the API.
func checkHeader(ctx context.Context) error {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok || len(md.Get("workload.spiffe.io")) != 1 || md.Get("workload.spiffe.io")[0] != "true" {
		return status.Error(codes.InvalidArgument, "security header missing from request")
	}
	return nil
}

func concat(certs []*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, c.Raw...)
	}
	return out
}

func (v *service) x509Response() (*workload.X509SVIDResponse, error) {
	v.s.mu.Lock()
	svids := v.s.svids
	bundle := concat(v.s.authorities)
	v.s.mu.Unlock()
	resp := &workload.X509SVIDResponse{}
	for _, sv := range svids {
		key, err := x509.MarshalPKCS8PrivateKey(sv.PrivateKey)
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		resp.Svids = append(resp.Svids, &workload.X509SVID{SpiffeId: sv.ID.String(), X509Svid: concat(sv.Certificates), X509SvidKey: key, Bundle: bundle})
	}
	return resp, nil
}

// FetchX509SVID streams the workload's X.509-SVIDs: now, and after each
// Rotate, until the caller goes away.
func (v *service) FetchX509SVID(_ *workload.X509SVIDRequest, stream workload.SpiffeWorkloadAPI_FetchX509SVIDServer) error {
	if err := checkHeader(stream.Context()); err != nil {
		return err
	}
	ch, unsubscribe := v.s.subscribe()
	defer unsubscribe()
	for {
		resp, err := v.x509Response()
		if err != nil {
			return err
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
		select {
		case <-ch:
		case <-stream.Context().Done():
			return stream.Context().Err()
		}
	}
}

// FetchX509Bundles streams the trust domain's X.509 bundle: now, and
// after each Rotate or SetCA.
func (v *service) FetchX509Bundles(_ *workload.X509BundlesRequest, stream workload.SpiffeWorkloadAPI_FetchX509BundlesServer) error {
	if err := checkHeader(stream.Context()); err != nil {
		return err
	}
	ch, unsubscribe := v.s.subscribe()
	defer unsubscribe()
	td := v.s.cfg.CA.TrustDomain().IDString()
	for {
		v.s.mu.Lock()
		bundle := concat(v.s.authorities)
		v.s.mu.Unlock()
		if err := stream.Send(&workload.X509BundlesResponse{Bundles: map[string][]byte{td: bundle}}); err != nil {
			return err
		}
		select {
		case <-ch:
		case <-stream.Context().Done():
			return stream.Context().Err()
		}
	}
}

// FetchJWTSVID issues a JWT-SVID for the requested audience: for the
// requested SPIFFE ID if the workload is entitled to it, else for each of
// its IDs.
func (v *service) FetchJWTSVID(ctx context.Context, req *workload.JWTSVIDRequest) (*workload.JWTSVIDResponse, error) {
	if err := checkHeader(ctx); err != nil {
		return nil, err
	}
	if len(req.Audience) == 0 {
		return nil, status.Error(codes.InvalidArgument, "audience must be specified")
	}
	ids := v.s.cfg.IDs
	if req.SpiffeId != "" {
		id, err := spiffeid.FromString(req.SpiffeId)
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "invalid requested SPIFFE ID: %v", err)
		}
		if !slices.Contains(ids, id) {
			return nil, status.Errorf(codes.PermissionDenied, "no identity issued for %s", id)
		}
		ids = []spiffeid.ID{id}
	}
	resp := &workload.JWTSVIDResponse{}
	for _, id := range ids {
		tok, err := v.s.cfg.CA.IssueJWTSVID(id, req.Audience, v.s.cfg.JWTTTL)
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		resp.Svids = append(resp.Svids, &workload.JWTSVID{SpiffeId: id.String(), Svid: tok})
	}
	return resp, nil
}

// FetchJWTBundles streams the trust domain's JWT bundle (a JWKS).
func (v *service) FetchJWTBundles(_ *workload.JWTBundlesRequest, stream workload.SpiffeWorkloadAPI_FetchJWTBundlesServer) error {
	if err := checkHeader(stream.Context()); err != nil {
		return err
	}
	c := v.s.cfg.CA
	jwks, err := c.JWTBundle().Marshal()
	if err != nil {
		return status.Error(codes.Internal, err.Error())
	}
	if err := stream.Send(&workload.JWTBundlesResponse{Bundles: map[string][]byte{c.TrustDomain().IDString(): jwks}}); err != nil {
		return err
	}
	<-stream.Context().Done()
	return stream.Context().Err()
}

// ValidateJWTSVID validates a JWT-SVID for an audience against the trust
// domain's JWT bundle.
func (v *service) ValidateJWTSVID(ctx context.Context, req *workload.ValidateJWTSVIDRequest) (*workload.ValidateJWTSVIDResponse, error) {
	if err := checkHeader(ctx); err != nil {
		return nil, err
	}
	if req.Audience == "" || req.Svid == "" {
		return nil, status.Error(codes.InvalidArgument, "audience and svid must be specified")
	}
	sv, err := jwtsvid.ParseAndValidate(req.Svid, v.s.cfg.CA.JWTBundle(), []string{req.Audience})
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	claims, err := structpb.NewStruct(sv.Claims)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &workload.ValidateJWTSVIDResponse{SpiffeId: sv.ID.String(), Claims: claims}, nil
}
