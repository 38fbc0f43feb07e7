package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/mcpmesh/mcpmesh/registry/api"
	"github.com/mcpmesh/mcpmesh/registry/cluster"
	"github.com/mcpmesh/mcpmesh/trust/ca"
	"github.com/mcpmesh/mcpmesh/trust/manifest"
	"github.com/mcpmesh/mcpmesh/trust/mtls"
	"github.com/mcpmesh/mcpmesh/trust/svid"
)

// cli runs mcpmesh with args and returns its exit code, standard output
// and standard error.
func cli(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(t.Context(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// wantFail checks a command failed with code and one line on standard
// error saying each of wants.
func wantFail(t *testing.T, what string, code int, stderr string, wantCode int, wants ...string) {
	t.Helper()
	if code != wantCode || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
		t.Errorf("%s: exit %d, stderr %q; want exit %d and one line", what, code, stderr, wantCode)
	}
	for _, w := range wants {
		if !strings.Contains(stderr, w) {
			t.Errorf("%s: stderr %q does not say %q", what, stderr, w)
		}
	}
}

// writeManifestYAML writes a manifest of hr and finance (real CA roots)
// at version, expiring at expires, and returns its path.
func writeManifestYAML(t *testing.T, dir string, version int, expires time.Time) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "version: %d\nexpires: %s\ntrust_domains:\n", version, expires.UTC().Format(time.RFC3339))
	for _, bu := range []struct{ td, ns string }{{"hr.example.corp", "hr"}, {"finance.example.corp", "finance"}} {
		c, err := ca.Init(t.TempDir(), spiffeid.RequireTrustDomainFromString(bu.td))
		if err != nil {
			t.Fatal(err)
		}
		root, _, _ := c.Marshal()
		fmt.Fprintf(&b, "  - trust_domain: %s\n    namespace: %s\n    bundle_endpoints:\n      - url: https://127.0.0.1:7301\n        spiffe_id: spiffe://%s/mcpmesh/node/n1\n    bootstrap_bundle: |\n      %s\n",
			bu.td, bu.ns, bu.td, strings.ReplaceAll(strings.TrimSpace(string(root)), "\n", "\n      "))
	}
	b.WriteString("relationships:\n  - from: hr.example.corp\n    to: finance.example.corp\n")
	path := filepath.Join(dir, fmt.Sprintf("manifest-v%d.yaml", version))
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestTrustManifestOffline(t *testing.T) {
	dir := t.TempDir()
	for _, alg := range []string{"es256", "ed25519"} {
		t.Run(alg, func(t *testing.T) {
			keys := filepath.Join(dir, alg)
			code, out, errOut := cli(t, "trust", "manifest", "keygen", "-out", keys, "-alg", alg)
			if code != 0 || !strings.Contains(out, "central.key") {
				t.Fatalf("keygen: exit %d, %s%s", code, out, errOut)
			}
			if fi, err := os.Stat(filepath.Join(keys, "central.key")); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("central.key: %v, mode %v; want 0600", err, fi.Mode())
			}
			code, _, errOut = cli(t, "trust", "manifest", "keygen", "-out", keys)
			wantFail(t, "keygen over an existing key", code, errOut, 1, "exists", "never overwrites")

			yml := writeManifestYAML(t, dir, 3, time.Now().Add(24*time.Hour))
			jws := filepath.Join(dir, alg+".jws")
			code, out, errOut = cli(t, "trust", "manifest", "sign", "-key", filepath.Join(keys, "central.key"), "-f", yml, "-o", jws)
			if code != 0 || !strings.Contains(out, "signed version 3") {
				t.Fatalf("sign: exit %d, %s%s", code, out, errOut)
			}
			code, out, errOut = cli(t, "trust", "manifest", "verify", "-pub", filepath.Join(keys, "central.pub"), "-f", jws)
			if code != 0 || !strings.Contains(out, "signature OK") || !strings.Contains(out, "version 3") ||
				!strings.Contains(out, "hr.example.corp  finance.example.corp") || !strings.Contains(out, "finance.example.corp  finance") {
				t.Errorf("verify: exit %d, %s%s", code, out, errOut)
			}
			code, out, _ = cli(t, "trust", "manifest", "verify", "-pub", filepath.Join(keys, "central.pub"), "-f", jws, "-o", "json")
			var resp api.ManifestResponse
			if code != 0 || json.Unmarshal([]byte(out), &resp) != nil || resp.Version != 3 || len(resp.TrustDomains) != 2 {
				t.Errorf("verify -o json: exit %d, %s", code, out)
			}
		})
	}
	ecPub := filepath.Join(dir, "es256", "central.pub")
	edJWS := filepath.Join(dir, "ed25519.jws")
	code, _, errOut := cli(t, "trust", "manifest", "verify", "-pub", ecPub, "-f", edJWS)
	wantFail(t, "verify with another key", code, errOut, 1, "signature does not verify")

	// Signing without stdout output prints the JWS alone.
	yml := writeManifestYAML(t, dir, 4, time.Now().Add(time.Hour))
	code, out, _ := cli(t, "trust", "manifest", "sign", "-key", filepath.Join(dir, "es256", "central.key"), "-f", yml)
	if code != 0 || strings.Count(strings.TrimSpace(out), ".") != 2 || strings.Contains(strings.TrimSpace(out), "\n") {
		t.Errorf("sign to stdout: exit %d, %q", code, out)
	}

	expired := writeManifestYAML(t, dir, 5, time.Now().Add(-time.Hour))
	code, _, errOut = cli(t, "trust", "manifest", "sign", "-key", filepath.Join(dir, "es256", "central.key"), "-f", expired)
	wantFail(t, "sign an expired manifest", code, errOut, 1, "is already past", "set a later expires")

	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("version: 1\nexpires: 2030-01-01T00:00:00Z\ntrust_domains:\n  - trust_domain: hr.example.corp\n    namespace: hr\n    bundle_endpoints: [{url: 'http://x:1', spiffe_id: 'spiffe://hr.example.corp/n'}]\n    bootstrap_bundle: x\n"), 0o644)
	code, _, errOut = cli(t, "trust", "manifest", "sign", "-key", filepath.Join(dir, "es256", "central.key"), "-f", bad)
	wantFail(t, "sign an invalid manifest", code, errOut, 1, "trust_domains[0].bundle_endpoints[0].url", "trust_domains[0].bootstrap_bundle")

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"keygen"}, "want -out DIR"},
		{[]string{"keygen", "-out", dir, "-alg", "rsa"}, "want es256"},
		{[]string{"sign", "-f", yml}, "want -key central.key and -f manifest.yaml"},
		{[]string{"verify", "-f", edJWS}, "want -pub central.pub"},
		{[]string{"verify", "-pub", ecPub, "-f", edJWS, "extra"}, "unexpected argument"},
		{[]string{"push"}, "want -f manifest.jws"},
	} {
		code, _, errOut := cli(t, append([]string{"trust", "manifest"}, tc.args...)...)
		wantFail(t, strings.Join(tc.args, " "), code, errOut, 2, tc.want)
	}
	for _, sub := range []string{"keygen", "sign", "verify", "push", "show"} {
		if code, _, _ := cli(t, "trust", "manifest", sub, "-h"); code != 0 {
			t.Errorf("trust manifest %s -h: exit %d", sub, code)
		}
	}
}

// TestTrustManifestPushShow pushes and shows through a real one-node
// cluster's admin API.
func TestTrustManifestPushShow(t *testing.T) {
	dir := t.TempDir()
	if code, out, errOut := cli(t, "trust", "manifest", "keygen", "-out", dir); code != 0 {
		t.Fatalf("keygen: %s%s", out, errOut)
	}
	pub, err := manifest.LoadPublicKeyFile(filepath.Join(dir, "central.pub"))
	if err != nil {
		t.Fatal(err)
	}
	addr := serveAdminAPI(t, api.WithManifestKey(pub))
	tokenFile := filepath.Join(dir, "token")
	os.WriteFile(tokenFile, []byte("unused"), 0o600)
	client := []string{"-addr", addr, "-token-file", tokenFile}

	code, _, errOut := cli(t, append([]string{"trust", "manifest", "show"}, client...)...)
	wantFail(t, "show before a push", code, errOut, 1, "no federation manifest is stored")

	sign := func(version int) string {
		jws := filepath.Join(dir, fmt.Sprintf("v%d.jws", version))
		if code, out, errOut := cli(t, "trust", "manifest", "sign", "-key", filepath.Join(dir, "central.key"), "-f", writeManifestYAML(t, dir, version, time.Now().Add(time.Hour)), "-o", jws); code != 0 {
			t.Fatalf("sign: %s%s", out, errOut)
		}
		return jws
	}
	v3 := sign(3)
	code, out, errOut := cli(t, append([]string{"trust", "manifest", "push", "-f", v3}, client...)...)
	if code != 0 || !strings.Contains(out, "version 3 committed") {
		t.Fatalf("push: exit %d, %s%s", code, out, errOut)
	}
	code, out, _ = cli(t, append([]string{"trust", "manifest", "push", "-f", v3}, client...)...)
	if code != 0 || !strings.Contains(out, "version 3 was already in force") {
		t.Errorf("second push: exit %d, %s", code, out)
	}
	code, _, errOut = cli(t, append([]string{"trust", "manifest", "push", "-f", sign(2)}, client...)...)
	wantFail(t, "push of an older version", code, errOut, 1, "version 2 is older than version 3 in force")

	code, out, _ = cli(t, append([]string{"trust", "manifest", "show", "-o", "json"}, client...)...)
	var resp api.ManifestResponse
	if code != 0 || json.Unmarshal([]byte(out), &resp) != nil || resp.Version != 3 || resp.By != "token:bootstrap" {
		t.Errorf("show -o json: exit %d, %s", code, out)
	}
	code, out, _ = cli(t, append([]string{"trust", "manifest", "show", "-signed"}, client...)...)
	if want, _ := os.ReadFile(v3); code != 0 || strings.TrimSpace(out) != strings.TrimSpace(string(want)) {
		t.Errorf("show -signed: exit %d, %q; want the signed file", code, out)
	}
	code, out, _ = cli(t, append([]string{"trust", "manifest", "show"}, client...)...)
	if code != 0 || !strings.Contains(out, "version 3") || !strings.Contains(out, "in force") {
		t.Errorf("show: exit %d, %s", code, out)
	}

	// A node without the key says federation is off.
	off := serveAdminAPI(t)
	code, _, errOut = cli(t, "trust", "manifest", "push", "-f", v3, "-addr", off, "-token-file", tokenFile)
	wantFail(t, "push to a node without federation", code, errOut, 1, "federation is off", "federation.manifest_key_file")
}

// serveAdminAPI serves the admin API of a one-node cluster on loopback,
// every request as the bootstrap token's administrator, and returns its URL.
func serveAdminAPI(t *testing.T, opts ...api.Option) string {
	t.Helper()
	td := spiffeid.RequireTrustDomainFromString("hr.example.corp")
	authority, err := ca.Init(t.TempDir(), td)
	if err != nil {
		t.Fatal(err)
	}
	rot, err := svid.NewRotator(authority, spiffeid.RequireFromSegments(td, "mcpmesh", "node", "n1"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	authz := mtls.NodeAuthorizer(td, slog.New(slog.DiscardHandler))
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
	for deadline := time.Now().Add(10 * time.Second); !cl.IsLeader(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the one-node cluster elected no leader in 10s")
		}
	}
	h := api.New(cl, opts...)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(api.WithPrincipal(r.Context(), api.Principal{ID: "token:bootstrap", Method: "token"})))
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}
