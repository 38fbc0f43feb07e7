package servers

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mcpmesh/mcpmesh/registry/state"
	"github.com/mcpmesh/mcpmesh/trust/tokens"
)

const testIssuer = "spiffe://hr.example.corp/mcpmesh/gateway"

// testMinter mints tokens as the node would; verifiers fetch its key set
// in-process (jwksTransport), so tests start no server for it.
var testMinter = func() *tokens.Minter {
	m, err := tokens.NewMinter(tokens.Config{Issuer: testIssuer, Node: "spiffe://hr.example.corp/mcpmesh/node/n1", TTL: time.Hour})
	if err != nil {
		panic(err)
	}
	k, err := tokens.NewKey(time.Now())
	if err != nil {
		panic(err)
	}
	if err := m.SetKeys([]state.SigningKey{{ID: k.ID, Algorithm: k.Algorithm, Private: k.Private, CreatedAt: k.At}}); err != nil {
		panic(err)
	}
	return m
}()

// jwksTransport answers every request with the test minter's key set.
type jwksTransport struct{}

func (jwksTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	w := httptest.NewRecorder()
	testMinter.JWKSHandler().ServeHTTP(w, r)
	return w.Result(), nil
}

// access is the option that makes server verify the test minter's tokens.
func access(server string) Option {
	v, err := tokens.NewVerifier(tokens.VerifierConfig{Issuer: testIssuer, Audience: server, JWKSURL: "http://node.invalid" + tokens.JWKSPath,
		HTTPClient: &http.Client{Transport: jwksTransport{}}})
	if err != nil {
		panic(err)
	}
	return WithVerifier(v)
}

// token is a node token for a call to server by an agent of tenant.
func token(t *testing.T, server, tenant string) string {
	t.Helper()
	tok, err := testMinter.Mint(server, tokens.Caller{Principal: "apikey:" + tenant, Tenant: tenant})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// as is the header of requests the node makes to server for an agent of
// tenant.
func as(t *testing.T, server, tenant string) http.Header {
	t.Helper()
	return http.Header{"Authorization": {"Bearer " + token(t, server, tenant)}}
}

// TestCallsNeedANodeTokenWithATenant: a call without a token, with a
// token for another server, of another issuer's key, or without a tenant
// gets an isError result saying why, and no record.
func TestCallsNeedANodeTokenWithATenant(t *testing.T) {
	other, err := tokens.NewMinter(tokens.Config{Issuer: testIssuer, Node: "spiffe://hr.example.corp/mcpmesh/node/rogue"})
	if err != nil {
		t.Fatal(err)
	}
	k, _ := tokens.NewKey(time.Now())
	other.SetKeys([]state.SigningKey{{ID: k.ID, Algorithm: k.Algorithm, Private: k.Private, CreatedAt: k.At}})
	rogue, _ := other.Mint(DirectoryName, tokens.Caller{Principal: "apikey:payroll", Tenant: "payroll"})
	noTenant, _ := testMinter.Mint(DirectoryName, tokens.Caller{Principal: "anonymous"})
	for _, tc := range []struct {
		name string
		opts []Option
		h    http.Header
		want string
	}{
		{"no verifier configured", nil, as(t, DirectoryName, "payroll"), "-jwks-url"},
		{"no token", []Option{access(DirectoryName)}, nil, "carries no node token"},
		{"token for another server", []Option{access(DirectoryName)}, as(t, LedgerName, "payroll"), `not for "corp.hr/directory"`},
		{"token of another key", []Option{access(DirectoryName)}, http.Header{"Authorization": {"Bearer " + rogue}}, "not in the key set"},
		{"no tenant", []Option{access(DirectoryName)}, http.Header{"Authorization": {"Bearer " + noTenant}}, "has no tenant"},
	} {
		for _, m := range []mode{modes[0], modes[2]} {
			t.Run(tc.name+"/"+m.name, func(t *testing.T) {
				cs := connect(t, Handler(NewDirectory(tc.opts...), m.stateless), m, nil, tc.h)
				res := callTool(t, cs, "search_employees", map[string]any{"query": "an"})
				if !res.IsError || !strings.Contains(text(res), tc.want) || res.StructuredContent != nil || strings.Contains(text(res), "E-") {
					t.Errorf("isError %v, %q; want a refusal saying %q and no record", res.IsError, text(res), tc.want)
				}
			})
		}
	}
}

// TestTenantsSeeTheirOwnRows: each tenant's agent sees its own rows and
// no other tenant's, in every mode; a salary grade both tenants have
// answers from the caller's own table.
func TestTenantsSeeTheirOwnRows(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			h := Handler(NewDirectory(access(DirectoryName)), m.stateless)
			for tenant, want := range map[string]string{"payroll": "9000000-12000000 USD", "benefits": "7000000-9500000 EUR"} {
				cs := connect(t, h, m, nil, as(t, DirectoryName, tenant))
				// Every team is named after its tenant.
				for _, query := range []string{"payroll", "benefits"} {
					res := callTool(t, cs, "search_employees", map[string]any{"query": query, "limit": 100})
					var got struct {
						Employees []employee `json:"employees"`
					}
					decodeStructured(t, res, &got)
					if want := map[bool]int{true: 4, false: 0}[query == tenant]; len(got.Employees) != want {
						t.Errorf("%s searching %q sees %d employees, want %d", tenant, query, len(got.Employees), want)
					}
					for _, e := range got.Employees {
						if e.Tenant != tenant {
							t.Errorf("%s sees %s of tenant %s", tenant, e.ID, e.Tenant)
						}
					}
				}
				var band bandResult
				decodeStructured(t, callTool(t, cs, "get_salary_band", map[string]any{"grade": "E3"}), &band)
				if got := fmt.Sprintf("%d-%d %s", band.MinCents, band.MaxCents, band.Currency); got != want {
					t.Errorf("%s's E3 band = %s, want %s", tenant, got, want)
				}
			}
		})
	}
}
