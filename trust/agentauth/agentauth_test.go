package agentauth

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/mcpmesh/mcpmesh/registry/state"
	"github.com/mcpmesh/mcpmesh/trust/apikey"
	"github.com/mcpmesh/mcpmesh/trust/ca"
)

var (
	t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	td = spiffeid.RequireTrustDomainFromString("hr.example.corp")
)

// keys is a registry state with tenant payroll and three keys: good,
// revoked and expiring at t0+1h.
type keys struct {
	fsm                     *state.FSM
	good, revoked, expiring apikey.Key
}

func newKeys(t testing.TB) keys {
	t.Helper()
	f, err := state.Open("state", state.WithFS(vfs.NewMem()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	k := keys{fsm: f}
	var index uint64
	apply := func(cmd any) {
		t.Helper()
		data, err := state.Encode(cmd)
		if err != nil {
			t.Fatal(err)
		}
		index++
		if err, ok := f.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: data}).(error); ok {
			t.Fatal(err)
		}
	}
	apply(state.PutTenant{Tenant: state.Tenant{Name: "payroll", Owners: []string{"alice"}}, By: "admin", At: t0})
	for _, p := range []*apikey.Key{&k.good, &k.revoked, &k.expiring} {
		if *p, err = apikey.New(); err != nil {
			t.Fatal(err)
		}
	}
	apply(state.CreateAPIKey{Key: state.APIKey{ID: k.good.ID, Tenant: "payroll", Name: "good", Hash: k.good.Hash, Groups: []string{"hr-agents"}, Scopes: []string{"tools:call"}}, By: "admin", At: t0})
	apply(state.CreateAPIKey{Key: state.APIKey{ID: k.revoked.ID, Tenant: "payroll", Name: "revoked", Hash: k.revoked.Hash}, By: "admin", At: t0})
	apply(state.RevokeAPIKey{ID: k.revoked.ID, By: "secops", At: t0})
	apply(state.CreateAPIKey{Key: state.APIKey{ID: k.expiring.ID, Tenant: "payroll", Name: "expiring", Hash: k.expiring.Hash, ExpiresAt: t0.Add(time.Hour)}, By: "admin", At: t0})
	return k
}

func newAuth(k keys, now time.Time, opts ...Option) *Authenticator {
	cfg := Config{
		TrustDomain:     td,
		Methods:         []Method{MethodAPIKey, MethodSVID},
		SVIDPathPrefix:  "/agent/",
		SVIDTenants:     []TenantRule{{PathPrefix: "/agent/", Tenant: "shared"}, {PathPrefix: "/agent/payroll/", Tenant: "payroll"}},
		AnonymousRoutes: []string{"/mcp/s/hr/*"},
	}
	return New(cfg, k.fsm, append([]Option{WithClock(func() time.Time { return now })}, opts...)...)
}

func bearer(path, token string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, path, nil)
	r.Header.Set("Authorization", "Bearer "+token)
	return r
}

func wantRefused(t *testing.T, a *Authenticator, r *http.Request, reason, substr string) {
	t.Helper()
	p, err := a.Authenticate(r)
	ae, ok := err.(*Error)
	if !ok {
		t.Fatalf("Authenticate = %+v, %v; want a refusal (%s)", p, err, reason)
	}
	if ae.Reason != reason || !strings.Contains(ae.Message, substr) {
		t.Fatalf("refusal %s %q; want %s containing %q", ae.Reason, ae.Message, reason, substr)
	}
}

func TestAPIKeys(t *testing.T) {
	k := newKeys(t)
	a := newAuth(k, t0)
	p, err := a.Authenticate(bearer("/mcp", k.good.Secret))
	if err != nil {
		t.Fatal(err)
	}
	want := Principal{ID: "apikey:" + k.good.ID, TrustDomain: td.Name(), Tenant: "payroll", Groups: []string{"hr-agents"}, Scopes: []string{"tools:call"}, Method: MethodAPIKey}
	if !equal(p, want) {
		t.Fatalf("principal = %+v, want %+v", p, want)
	}
	if _, err := a.Authenticate(bearer("/mcp", k.expiring.Secret)); err != nil {
		t.Fatalf("key before its expiry: %v", err)
	}

	unknown, _ := apikey.New()
	tampered := k.good.Secret[:len(k.good.Secret)-2] + "zz"
	if tampered == k.good.Secret {
		tampered = k.good.Secret[:len(k.good.Secret)-2] + "yy"
	}
	wantRefused(t, a, bearer("/mcp", unknown.Secret), "unknown", unknown.ID)
	wantRefused(t, a, bearer("/mcp", tampered), "mismatch", "does not match")
	wantRefused(t, a, bearer("/mcp", k.revoked.Secret), "revoked", "revoked")
	wantRefused(t, newAuth(k, t0.Add(time.Hour)), bearer("/mcp", k.expiring.Secret), "expired", "expired")
	wantRefused(t, a, bearer("/mcp", "mcpk_short"), "malformed", "malformed")
	wantRefused(t, a, bearer("/mcp", "eyJhbGciOiJFUzI1NiJ9.e30.c2ln"), "unsupported", "JWT")
	r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
	r.Header.Set("Authorization", "Basic YWxpY2U6c2VjcmV0")
	wantRefused(t, a, r, "malformed", "Bearer")

	off := New(Config{TrustDomain: td, Methods: []Method{MethodSVID}, SVIDPathPrefix: "/agent/"}, k.fsm)
	wantRefused(t, off, bearer("/mcp", k.good.Secret), "disabled", "mcp.auth.methods")
}

func equal(a, b Principal) bool {
	return a.ID == b.ID && a.TrustDomain == b.TrustDomain && a.Tenant == b.Tenant && a.Method == b.Method &&
		slices.Equal(a.Groups, b.Groups) && slices.Equal(a.Scopes, b.Scopes)
}

// withSVID returns a request that arrived over mTLS with an SVID for id,
// issued by a CA of id's trust domain.
func withSVID(t *testing.T, id string) *http.Request {
	t.Helper()
	sid := spiffeid.RequireFromString(id)
	c, err := ca.Init(filepath.Join(t.TempDir(), "ca"), sid.TrustDomain())
	if err != nil {
		t.Fatal(err)
	}
	svid, err := c.IssueX509SVID(sid, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
	r.TLS = &tls.ConnectionState{HandshakeComplete: true, PeerCertificates: svid.Certificates}
	return r
}

func TestSVIDs(t *testing.T) {
	k := newKeys(t)
	a := newAuth(k, t0)
	for id, tenant := range map[string]string{
		"spiffe://hr.example.corp/agent/payroll/exporter": "payroll",
		"spiffe://hr.example.corp/agent/helpdesk":         "shared",
	} {
		p, err := a.Authenticate(withSVID(t, id))
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		if p.ID != id || p.Tenant != tenant || p.Method != MethodSVID || p.TrustDomain != td.Name() {
			t.Errorf("%s: principal %+v, want tenant %s", id, p, tenant)
		}
	}
	wantRefused(t, a, withSVID(t, "spiffe://finance.example.corp/agent/payroll/exporter"), "foreign-trust-domain", "finance.example.corp")
	wantRefused(t, a, withSVID(t, "spiffe://hr.example.corp/admin/alice"), "not-agent", "/agent/")
	wantRefused(t, a, withSVID(t, "spiffe://hr.example.corp/mcpmesh/node/n1"), "not-agent", "not an agent")
	off := New(Config{TrustDomain: td, Methods: []Method{MethodAPIKey}, SVIDPathPrefix: "/agent/"}, k.fsm)
	wantRefused(t, off, withSVID(t, "spiffe://hr.example.corp/agent/x"), "disabled", "mcp.auth.methods")
}

func TestAnonymousRoutes(t *testing.T) {
	k := newKeys(t)
	a := newAuth(k, t0)
	for path, anon := range map[string]bool{
		"/mcp/s/hr/corp.hr/directory": true,
		"/mcp/s/hr":                   true,
		"/mcp/s/hr/../../mcp":         false, // cleaned to /mcp
		"/mcp":                        false,
		"/mcp/s/hrx/y":                false,
	} {
		p, err := a.Authenticate(httptest.NewRequest(http.MethodPost, path, nil))
		if anon && (err != nil || p.Method != MethodAnonymous) {
			t.Errorf("%s: %+v, %v; want anonymous", path, p, err)
		}
		if !anon {
			if ae, ok := err.(*Error); !ok || ae.Reason != "missing" {
				t.Errorf("%s: %+v, %v; want refused as missing", path, p, err)
			}
		}
	}
	// A credential presented on an anonymous route is still checked.
	wantRefused(t, a, bearer("/mcp/s/hr/corp.hr/directory", k.revoked.Secret), "revoked", "revoked")
}

func TestMiddleware(t *testing.T) {
	k := newKeys(t)
	var logs bytes.Buffer
	var outcomes, refusals []string
	a := newAuth(k, t0, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))),
		WithObserver(func(m Method, o string) { outcomes = append(outcomes, string(m)+"/"+o) }),
		WithRefusals(func(r *http.Request, e *Error) {
			refusals = append(refusals, r.URL.Path+" "+string(e.Method)+"/"+e.Reason+": "+e.Message)
		}))
	var got Principal
	var info *auth.TokenInfo
	var header string
	h := a.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ = FromContext(r.Context())
		info = auth.TokenInfoFromContext(r.Context())
		header = r.Header.Get("Authorization")
	}))

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, bearer("/mcp", k.good.Secret))
	if rec.Code != http.StatusOK || got.ID != "apikey:"+k.good.ID {
		t.Fatalf("good key: HTTP %d, principal %+v", rec.Code, got)
	}
	if p, ok := FromTokenInfo(info); !ok || p.ID != got.ID || info.UserID != got.ID {
		t.Errorf("TokenInfo %+v does not carry the principal", info)
	}
	if header != "Bearer "+k.good.Secret {
		t.Errorf("the handler saw Authorization %q, want the agent's own header back", header)
	}

	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/mcp/s/hr/x", nil))
	if rec.Code != http.StatusOK || got.Method != MethodAnonymous || header != "" {
		t.Errorf("anonymous: HTTP %d, principal %+v, Authorization %q", rec.Code, got, header)
	}

	tampered := k.good.Secret[:len(k.good.Secret)-3] + "abc"
	for i, tc := range []struct {
		req       *http.Request
		challenge string
	}{
		{bearer("/mcp", tampered), `error="invalid_token"`},
		{bearer("/mcp", k.revoked.Secret), `error="invalid_token"`},
		{httptest.NewRequest(http.MethodPost, "/mcp", nil), `Bearer realm="mcpmesh"`},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, tc.req)
		// The refusal hook ran before the answer was written.
		if len(refusals) != i+1 {
			t.Fatalf("after refusal %d the hook saw %d refusals: %q", i+1, len(refusals), refusals)
		}
		for _, secret := range []string{k.good.Secret, tampered, k.revoked.Secret} {
			if strings.Contains(refusals[i], secret) {
				t.Errorf("the refusal hook got the key: %s", refusals[i])
			}
		}
		var body struct {
			Error struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatalf("refusal body %q: %v", rec.Body, err)
		}
		if rec.Code != http.StatusUnauthorized || body.Error.Code != CodeUnauthenticated || body.Error.Message == "" ||
			!strings.Contains(rec.Header().Get("WWW-Authenticate"), tc.challenge) {
			t.Errorf("refusal: HTTP %d, challenge %q, body %s", rec.Code, rec.Header().Get("WWW-Authenticate"), rec.Body)
		}
		for _, secret := range []string{k.good.Secret, tampered, k.revoked.Secret} {
			if strings.Contains(rec.Body.String(), secret) || strings.Contains(rec.Header().Get("WWW-Authenticate"), secret) {
				t.Errorf("the refusal repeats the key: %s", rec.Body)
			}
		}
	}
	for _, secret := range []string{k.good.Secret, tampered, k.revoked.Secret, k.good.Secret[len(apikey.Prefix)+13:]} {
		if strings.Contains(logs.String(), secret) {
			t.Fatalf("a key's secret reached the log:\n%s", logs.String())
		}
	}
	wantOutcomes := []string{"api-key/ok", "anonymous/ok", "api-key/mismatch", "api-key/revoked", "/missing"}
	if !slices.Equal(outcomes, wantOutcomes) {
		t.Errorf("observed %v, want %v", outcomes, wantOutcomes)
	}
	for i, want := range []string{"/mcp api-key/mismatch: ", "/mcp api-key/revoked: ", "/mcp /missing: "} {
		if !strings.HasPrefix(refusals[i], want) || len(refusals[i]) == len(want) {
			t.Errorf("refusal %d seen by the hook as %q, want %q and the message", i, refusals[i], want)
		}
	}
}
