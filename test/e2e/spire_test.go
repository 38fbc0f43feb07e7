package e2e

import (
	"crypto/x509"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/mcpmesh/mcpmesh/test/internal/testcluster"
	"github.com/mcpmesh/mcpmesh/trust/ca"
	"github.com/mcpmesh/mcpmesh/trust/spire/spiretest"
)

// TestNodeIdentityFromSPIRE: a node with trust.source workload-api, pointed
// at an in-process Workload API, serves mTLS with the SVID SPIRE issued it
// and picks up a rotated SVID without a restart; agents authenticate with
// an X.509-SVID and a JWT-SVID fetched from the same Workload API by
// `mcpmesh trust issue -workload-api` (the JWT-SVID verified against the
// Workload API's JWT bundle); a node whose SVID SPIRE issued for another
// SPIFFE ID refuses to start and says why.
func TestNodeIdentityFromSPIRE(t *testing.T) {
	t.Parallel()
	td := spiffeid.RequireTrustDomainFromString("hr.example.corp")
	nodeID := spiffeid.RequireFromPath(td, "/mcpmesh/node/n1")
	agentID := spiffeid.RequireFromPath(td, "/agent/payroll/exporter")
	c := testcluster.New(t, testcluster.Options{NoSync: true, Nodes: 1,
		ExtraYAML: "mcp:\n  auth:\n    methods: [x509-svid, jwt-svid]\n"})
	// The cluster's CA stands in for the SPIRE server; the node never
	// sees its directory.
	spireCA, err := ca.Load(c.CADir)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := spiretest.New(spiretest.Config{CA: spireCA, IDs: []spiffeid.ID{nodeID, agentID}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	n := c.Nodes[0]
	n.WriteConfigWith(testcluster.NodeOverrides{HTTPTLS: true, WorkloadAPIAddr: srv.Addr()},
		"bootstrap:\n  expect: 1\n  peers:\n    - { id: n1, address: \""+n.RaftAddr+"\" }\n")
	if cfg, _ := os.ReadFile(n.ConfigPath); strings.Contains(string(cfg), "ca_dir") {
		t.Fatalf("the node's config names the CA directory:\n%s", cfg)
	}
	n.Start()

	// served returns the certificate the node presents on a new connection,
	// trusting only the trust domain's bundle and a node SVID of it.
	roots := spireCA.Bundle()
	served := func(clientSVIDDir string) (*x509.Certificate, *http.Client, error) {
		cfg := tlsconfig.TLSClientConfig(roots, tlsconfig.AuthorizeID(nodeID))
		if clientSVIDDir != "" {
			s, _, err := ca.LoadSVID(clientSVIDDir)
			if err != nil {
				t.Fatal(err)
			}
			cfg = tlsconfig.MTLSClientConfig(s, roots, tlsconfig.AuthorizeID(nodeID))
		}
		tr := &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}
		cl := &http.Client{Transport: tr, Timeout: 5 * time.Second}
		resp, err := cl.Get(n.HTTPSURL() + "/readyz")
		if err != nil {
			return nil, cl, err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, cl, &statusError{resp.Status}
		}
		return resp.TLS.PeerCertificates[0], cl, nil
	}
	var last string
	var leaf *x509.Certificate
	if !testcluster.Eventually(readyTimeout, func() bool {
		if !n.Running() {
			last = "process exited"
			return false
		}
		l, _, err := served("")
		if err != nil {
			last = err.Error()
			return false
		}
		leaf = l
		return true
	}) {
		t.Fatalf("node not ready over HTTPS within %s; last: %s; log tail:\n%s", readyTimeout, last, n.LogTail(30))
	}
	if want := srv.Current().Certificates[0]; !leaf.Equal(want) {
		t.Fatalf("the node serves serial %x, not the SVID the Workload API issued (%x)", leaf.SerialNumber, want.SerialNumber)
	}
	if log := grepLines(n.Log(), `msg="node started"`); !strings.Contains(log, "identity=workload-api") || !strings.Contains(log, "spiffe_id="+nodeID.String()) {
		t.Errorf("the node did not log its identity from SPIRE:\n%s", n.LogTail(30))
	}

	// SPIRE rotates the SVID: the running node serves the new one.
	rotated, err := srv.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	if !testcluster.Eventually(catchUp, func() bool {
		l, _, err := served("")
		if err != nil {
			last = err.Error()
			return false
		}
		last = "serial " + l.SerialNumber.Text(16)
		return l.Equal(rotated.Certificates[0])
	}) {
		t.Fatalf("the node does not serve the rotated SVID %x; last: %s", rotated.Certificates[0].SerialNumber, last)
	}
	if strings.Count(n.Log(), "=== start") != 1 || !n.Running() {
		t.Fatal("the node restarted to pick up the rotated SVID")
	}

	// Agents get their credentials from the same Workload API.
	dir := t.TempDir()
	if out, code := c.Run("trust", "issue", "-workload-api", srv.Addr(), "-spiffe-id", agentID.String(), "-out", dir); code != 0 || !strings.Contains(out, "fetched "+agentID.String()) {
		t.Fatalf("trust issue -workload-api: exit %d: %s", code, out)
	}
	if s, _, err := ca.LoadSVID(dir); err != nil || s.ID != agentID {
		t.Fatalf("the fetched SVID directory: %v, %v", s, err)
	}
	out, code := c.Run("trust", "issue", "-workload-api", srv.Addr(), "-spiffe-id", agentID.String(), "-jwt", "-audience", "spiffe://hr.example.corp/mcpmesh/gateway")
	if code != 0 {
		t.Fatalf("trust issue -workload-api -jwt: exit %d: %s", code, out)
	}
	token := strings.TrimSpace(out)
	wrongAud, code := c.Run("trust", "issue", "-workload-api", srv.Addr(), "-spiffe-id", agentID.String(), "-jwt", "-audience", "spiffe://hr.example.corp/elsewhere")
	if code != 0 {
		t.Fatalf("trust issue -workload-api -jwt: exit %d: %s", code, wrongAud)
	}
	initialize := func(cl *http.Client, bearer string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, n.HTTPSURL()+"/mcp", strings.NewReader(legacyInit))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	_, anon, _ := served("")
	_, withSVID, err := served(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		cl     *http.Client
		bearer string
		want   int
	}{
		{"X.509-SVID from SPIRE", withSVID, "", http.StatusOK},
		{"JWT-SVID from SPIRE", anon, token, http.StatusOK},
		{"JWT-SVID for another audience", anon, strings.TrimSpace(wrongAud), http.StatusUnauthorized},
		{"nothing", anon, "", http.StatusUnauthorized},
	} {
		if got := initialize(tc.cl, tc.bearer); got != tc.want {
			t.Errorf("%s: initialize answered %d, want %d", tc.name, got, tc.want)
		}
	}

	// A node SPIRE knows under another ID refuses to start.
	n2 := c.AddNodeWith("n2", n, testcluster.NodeOverrides{WorkloadAPIAddr: srv.Addr()})
	n2.Start()
	if err := n2.Exited(readyTimeout); err == nil {
		t.Fatal("node n2 started with n1's SVID")
	}
	if log := n2.Log(); !strings.Contains(log, "not spiffe://hr.example.corp/mcpmesh/node/n2") || !strings.Contains(log, "register the workload") {
		t.Errorf("n2's refusal does not say what is wrong:\n%s", n2.LogTail(10))
	}
}

type statusError struct{ status string }

func (e *statusError) Error() string { return e.status }
