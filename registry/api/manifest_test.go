package api

import (
	"crypto"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/mcpmesh/mcpmesh/node/audit"
	"github.com/mcpmesh/mcpmesh/trust/ca"
	"github.com/mcpmesh/mcpmesh/trust/manifest"
)

// testManifest is a valid manifest of hr and finance, real CA roots
// included, at version, expiring at expires.
func testManifest(t *testing.T, version uint64, expires time.Time, rels ...manifest.Relationship) *manifest.Manifest {
	t.Helper()
	m := &manifest.Manifest{Version: version, Expires: expires, Relationships: rels}
	for _, bu := range []struct{ td, ns string }{{"hr.example.corp", "hr"}, {"finance.example.corp", "finance"}} {
		c, err := ca.Init(t.TempDir(), spiffeid.RequireTrustDomainFromString(bu.td))
		if err != nil {
			t.Fatal(err)
		}
		root, _, err := c.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		m.TrustDomains = append(m.TrustDomains, manifest.Domain{
			TrustDomain: bu.td, Namespace: bu.ns, BootstrapBundle: string(root),
			BundleEndpoints: []manifest.BundleEndpoint{{URL: "https://127.0.0.1:7301", SPIFFEID: "spiffe://" + bu.td + "/mcpmesh/node/n1"}},
		})
	}
	return m
}

func signManifest(t *testing.T, m *manifest.Manifest, key crypto.Signer) []byte {
	t.Helper()
	signed, err := manifest.Sign(m, key)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

// TestManifestAPI: a pushed manifest is verified with central security's
// key, committed, shown, and audited; rollbacks, forgeries and expired
// manifests are refused with what to do.
func TestManifestAPI(t *testing.T) {
	c := newOneNodeCluster(t)
	a := &memAuditor{}
	key, err := manifest.GenerateKey(manifest.ES256)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	var clock atomic.Pointer[time.Time]
	clock.Store(&now)
	h := New(c, WithAudit(a, "hr", "n1"), WithManifestKey(key.Public()), WithClock(func() time.Time { return *clock.Load() }))
	srv := httptest.NewServer(asAdmin(h))
	t.Cleanup(srv.Close)
	cl, err := NewClient(ClientConfig{Addr: srv.URL, Token: "unused", Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	expires := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	hrToFinance := manifest.Relationship{From: "hr.example.corp", To: "finance.example.corp"}

	_, err = cl.Manifest(ctx, false)
	wantAPIError(t, "show before any push", err, http.StatusNotFound, "mcpmesh trust manifest push")

	v3 := testManifest(t, 3, expires, hrToFinance)
	signed3 := signManifest(t, v3, key)
	out, err := cl.PushManifest(ctx, signed3)
	if err != nil {
		t.Fatal(err)
	}
	kid, _ := manifest.KeyID(key.Public())
	if out.Version != 3 || !out.Expires.Equal(expires) || out.Expired || out.Unchanged || out.Signed != string(signed3) || out.KeyID != kid ||
		out.By != "token:bootstrap" || len(out.TrustDomains) != 2 || len(out.Relationships) != 1 || out.Index == 0 {
		t.Errorf("push answer = %+v", out)
	}
	if _, v, ok, _ := c.FSM.Manifest(); !ok || v != 3 {
		t.Errorf("stored version %d, %v; want 3", v, ok)
	}
	rec := a.last(t)
	if rec.Kind != audit.KindAdmin || rec.Action != "federation.manifest.put" || rec.Target != "v3" || rec.Outcome != audit.OutcomeOK {
		t.Errorf("audit record of the push: %+v", rec)
	}
	if intent := a.recs[len(a.recs)-2]; intent.Outcome != audit.OutcomeRequested || intent.RequestID != rec.RequestID {
		t.Errorf("the push's intent was not recorded first: %+v", intent)
	}
	// The same signed manifest again (a retry) is fine.
	if again, err := cl.PushManifest(ctx, append(signed3, '\n')); err != nil || !again.Unchanged {
		t.Errorf("second identical push = %+v, %v; want unchanged", again, err)
	}

	// A validly signed older version is a rollback: refused, on record.
	_, err = cl.PushManifest(ctx, signManifest(t, testManifest(t, 2, expires), key))
	wantAPIError(t, "rollback", err, http.StatusConflict, "version 2 is older than version 3 in force")
	if rec := a.last(t); rec.Outcome != audit.OutcomeError || rec.ErrorCode != http.StatusConflict || rec.Target != "v2" {
		t.Errorf("audit record of a refused rollback: %+v", rec)
	}
	_, err = cl.PushManifest(ctx, signManifest(t, testManifest(t, 3, expires), key))
	wantAPIError(t, "same version, other content", err, http.StatusConflict, "under version 4 or higher")

	// Not central security's.
	other, _ := manifest.GenerateKey(manifest.EdDSA)
	_, err = cl.PushManifest(ctx, signManifest(t, testManifest(t, 9, expires), other))
	wantAPIError(t, "signed with another key", err, http.StatusForbidden, "ES256")
	otherEC, _ := manifest.GenerateKey(manifest.ES256)
	_, err = cl.PushManifest(ctx, signManifest(t, testManifest(t, 9, expires), otherEC))
	wantAPIError(t, "signed with another ECDSA key", err, http.StatusForbidden, "signed by another key")
	parts := strings.Split(string(signManifest(t, testManifest(t, 9, expires), key)), ".")
	_, err = cl.PushManifest(ctx, []byte(parts[0]+"."+parts[1]+"x."+parts[2]))
	wantAPIError(t, "tampered", err, http.StatusForbidden, "does not verify")
	_, err = cl.PushManifest(ctx, []byte("version: 9\n"))
	wantAPIError(t, "unsigned YAML", err, http.StatusForbidden, "mcpmesh trust manifest sign")

	// Expired by the node's clock.
	_, err = cl.PushManifest(ctx, signManifest(t, testManifest(t, 9, now.Add(-time.Hour)), key))
	wantAPIError(t, "expired", err, http.StatusBadRequest, "expired at 2026-05-31T23:00:00Z")
	if _, v, _, _ := c.FSM.Manifest(); v != 3 {
		t.Errorf("a refused push changed the stored version to %d", v)
	}

	// A higher version replaces it.
	v4 := testManifest(t, 4, expires)
	if out, err := cl.PushManifest(ctx, signManifest(t, v4, key)); err != nil || out.Version != 4 || len(out.Relationships) != 0 {
		t.Errorf("push of version 4 = %+v, %v", out, err)
	}
	// Once expired it is still shown, marked expired.
	later := expires.Add(time.Hour)
	clock.Store(&later)
	shown, err := cl.Manifest(ctx, true)
	if err != nil || shown.Version != 4 || !shown.Expired {
		t.Errorf("show after the expiry = %+v, %v; want version 4, expired", shown, err)
	}
}

func TestManifestAPIFederationOff(t *testing.T) {
	c := newOneNodeCluster(t)
	h := New(c)
	for _, method := range []string{"GET", "PUT"} {
		w := do(t, h, method, "/v1/federation/manifest", "x.y.z")
		if w.Code != http.StatusNotImplemented || !strings.Contains(w.Body.String(), "federation is off") || !strings.Contains(w.Body.String(), "federation.manifest_key_file") {
			t.Errorf("%s without a key: HTTP %d %s", method, w.Code, w.Body)
		}
	}
}
