package adminauth

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/mcpmesh/mcpmesh/registry/api"
	"github.com/mcpmesh/mcpmesh/trust/ca"
)

const token = "0123456789abcdef-admin"

func newAuth(t *testing.T, logs *bytes.Buffer) (*Authenticator, *ca.CA) {
	t.Helper()
	td := spiffeid.RequireTrustDomainFromString("hr.example.corp")
	authority, err := ca.Init(filepath.Join(t.TempDir(), "ca"), td)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "token")
	os.WriteFile(path, []byte(token+"\n"), 0o600)
	a, err := New(Config{TokenFile: path, TrustDomain: td, PathPrefix: "/admin/"}, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return a, authority
}

// withSVID fakes a verified mTLS request from the holder of id.
func withSVID(t *testing.T, r *http.Request, issuer *ca.CA, id string) *http.Request {
	t.Helper()
	s, err := issuer.IssueX509SVID(spiffeid.RequireFromString(id), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	r.TLS = &tls.ConnectionState{HandshakeComplete: true, PeerCertificates: []*x509.Certificate{s.Certificates[0]}}
	return r
}

func TestAuthenticate(t *testing.T) {
	var logs bytes.Buffer
	a, authority := newAuth(t, &logs)
	foreign, err := ca.Init(filepath.Join(t.TempDir(), "other"), spiffeid.RequireTrustDomainFromString("other.example.corp"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		req     func() *http.Request
		wantID  string
		wantErr string
	}{
		{"token", func() *http.Request {
			r := httptest.NewRequest("GET", "/v1/tenants", nil)
			r.Header.Set("Authorization", "Bearer "+token)
			return r
		}, "token:bootstrap", ""},
		{"wrong token", func() *http.Request {
			r := httptest.NewRequest("GET", "/v1/tenants", nil)
			r.Header.Set("Authorization", "Bearer "+token+"x")
			return r
		}, "", "not accepted"},
		{"no credential", func() *http.Request { return httptest.NewRequest("GET", "/v1/tenants", nil) }, "", "no credential"},
		{"basic auth", func() *http.Request {
			r := httptest.NewRequest("GET", "/v1/tenants", nil)
			r.SetBasicAuth("admin", token)
			return r
		}, "", "Bearer"},
		{"admin SVID", func() *http.Request {
			return withSVID(t, httptest.NewRequest("GET", "/v1/tenants", nil), authority, "spiffe://hr.example.corp/admin/alice")
		}, "spiffe://hr.example.corp/admin/alice", ""},
		{"agent SVID", func() *http.Request {
			return withSVID(t, httptest.NewRequest("GET", "/v1/tenants", nil), authority, "spiffe://hr.example.corp/agent/bob")
		}, "", "is not an administrator"},
		{"foreign admin SVID", func() *http.Request {
			return withSVID(t, httptest.NewRequest("GET", "/v1/tenants", nil), foreign, "spiffe://other.example.corp/admin/eve")
		}, "", "is not an administrator"},
		{"agent SVID with a valid token still refused", func() *http.Request {
			r := withSVID(t, httptest.NewRequest("GET", "/v1/tenants", nil), authority, "spiffe://hr.example.corp/agent/bob")
			r.Header.Set("Authorization", "Bearer "+token)
			return r
		}, "", "is not an administrator"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := a.Authenticate(tc.req())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || p.ID != tc.wantID {
				t.Fatalf("got %+v, %v; want %s", p, err, tc.wantID)
			}
		})
	}
}

func TestMiddlewareRefusesAndNeverLogsTheToken(t *testing.T) {
	var logs bytes.Buffer
	a, _ := newAuth(t, &logs)
	var seen api.Principal
	h := a.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen, _ = api.PrincipalFrom(r.Context())
	}))
	rec := httptest.NewRecorder()
	r := httptest.NewRequest("GET", "/v1/tenants", nil)
	r.Header.Set("Authorization", "Bearer wrong-"+token)
	h.ServeHTTP(rec, r)
	if rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Body.String(), "unauthenticated") {
		t.Errorf("wrong token: %d %s", rec.Code, rec.Body)
	}
	if strings.Contains(logs.String(), token) || strings.Contains(rec.Body.String(), token) {
		t.Errorf("the presented token leaked into logs or the answer:\n%s\n%s", logs.String(), rec.Body)
	}
	if !strings.Contains(logs.String(), "authentication failed") {
		t.Errorf("refusal not logged: %q", logs.String())
	}

	rec = httptest.NewRecorder()
	r = httptest.NewRequest("GET", "/v1/tenants", nil)
	r.Header.Set("Authorization", "Bearer "+token)
	h.ServeHTTP(rec, r)
	if rec.Code != http.StatusOK || seen.ID != "token:bootstrap" {
		t.Errorf("good token: %d, principal %+v", rec.Code, seen)
	}
}

func TestWeakOrMissingTokenFile(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("hr.example.corp")
	path := filepath.Join(t.TempDir(), "token")
	os.WriteFile(path, []byte("changeme\n"), 0o600)
	if _, err := New(Config{TokenFile: path, TrustDomain: td, PathPrefix: "/admin/"}, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "at least 16") {
		t.Errorf("weak token: err = %v", err)
	}
	if _, err := New(Config{TokenFile: path + ".missing", TrustDomain: td, PathPrefix: "/admin/"}, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "admin.token_file") {
		t.Errorf("missing token file: err = %v", err)
	}
	// Without a token file, bearer tokens are refused outright.
	a, _ := New(Config{TrustDomain: td, PathPrefix: "/admin/"}, slog.New(slog.DiscardHandler))
	r := httptest.NewRequest("GET", "/v1/tenants", nil)
	r.Header.Set("Authorization", "Bearer anything-at-all-here")
	if _, err := a.Authenticate(r); err == nil || !strings.Contains(err.Error(), "no bootstrap token") {
		t.Errorf("no token configured: err = %v", err)
	}
}
