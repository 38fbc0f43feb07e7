package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpmesh/mcpmesh/examples/servers"
	"github.com/mcpmesh/mcpmesh/test/internal/testcluster"
	"github.com/mcpmesh/mcpmesh/trust/tokens"
)

const (
	hrIssuer = "spiffe://hr.example.corp/mcpmesh/gateway"
	jwksPath = "/.well-known/mcpmesh/jwks.json"
)

// exampleUpstream is the example HR directory, served from the test
// process in one protocol era, verifying the tokens of the node whose key
// set is at jwksURL; it records the headers of every HTTP request and the
// JSON-RPC requests it received.
type exampleUpstream struct {
	URL string
	rec *servers.Recorder

	mu      sync.Mutex
	headers []http.Header
}

func startExampleDirectory(t *testing.T, jwksURL string, stateless bool) *exampleUpstream {
	t.Helper()
	v, err := tokens.NewVerifier(tokens.VerifierConfig{Issuer: hrIssuer, Audience: servers.DirectoryName, JWKSURL: jwksURL})
	if err != nil {
		t.Fatal(err)
	}
	u := &exampleUpstream{rec: servers.NewRecorder(servers.Handler(servers.NewDirectory(servers.WithVerifier(v)), stateless))}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.headers = append(u.headers, r.Header.Clone())
		u.mu.Unlock()
		u.rec.ServeHTTP(w, r)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	u.URL = "http://" + ln.Addr().String() + "/mcp"
	return u
}

// directoryCard is the example directory's card at version, reached at url.
func directoryCard(t *testing.T, version, url string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "examples/catalog/hr/directory-1.0.0.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	doc["version"] = version
	gov := doc["_meta"].(map[string]any)["io.mcpmesh/governance"].(map[string]any)
	gov["upstream"] = map[string]any{"transport": "streamable-http", "url": url}
	raw, _ = json.Marshal(doc)
	return raw
}

// agentCredentials are what an agent sends that carries a credential, or
// looks like one; none may reach an upstream.
var agentCredentials = map[string]string{
	"Cookie":               "session=agent-cookie-must-not-travel",
	"X-Api-Key":            "agent-x-api-key-must-not-travel",
	"Proxy-Authorization":  "Basic YWdlbnQ6bXVzdC1ub3QtdHJhdmVs",
	"X-Auth-Token":         "agent-auth-token-must-not-travel",
	"X-Amz-Security-Token": "agent-aws-token-must-not-travel",
}

// agentTransport sends the agent's API key and every credential above.
type agentTransport struct{ key string }

func (a agentTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+a.key)
	for k, v := range agentCredentials {
		r.Header.Set(k, v)
	}
	return http.DefaultTransport.RoundTrip(r)
}

func connectAgent(t *testing.T, url, era, key string) *mcp.ClientSession {
	t.Helper()
	s, err := dialAgent(t, url, era, key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// dialAgent is connectAgent for a caller that may retry: a key created on
// one replica is unknown to another until that replica applies it.
func dialAgent(t *testing.T, url, era, key string) (*mcp.ClientSession, error) {
	return dial(t, url, era, agentTransport{key})
}

// keySet fetches a node's published key set.
func keySet(t *testing.T, n *testcluster.Node) (jose.JSONWebKeySet, string) {
	t.Helper()
	code, body := get(t, n.URL()+jwksPath, "")
	if code != http.StatusOK {
		t.Fatalf("GET %s on %s: HTTP %d %s", jwksPath, n.ID, code, body)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal([]byte(body), &set); err != nil {
		t.Fatalf("%s's key set: %v: %s", n.ID, err, body)
	}
	return set, body
}

func kids(set jose.JSONWebKeySet) []string {
	var out []string
	for _, k := range set.Keys {
		out = append(out, k.KeyID)
	}
	return out
}

// TestUpstreamTokens: through the real binary, every replica of a BU signs
// upstream tokens with the BU's key and publishes the same key set; an
// agent of tenant payroll asking the example directory for salaries sees
// payroll's rows only, one of benefits benefits' only, in both protocol
// eras of agent and upstream; and no upstream ever receives a header the
// agent sent that carries a credential: only the node-minted
// Authorization, naming the agent's tenant and the request id the agent
// sees in its result.
func TestUpstreamTokens(t *testing.T) {
	t.Parallel()
	c := startCluster(t, testcluster.Options{NoSync: true})
	leader := c.Leader(leaderTimeout)
	mustCLI(t, c, leader, "apply", "-f", permitAll(t))
	follower := c.Followers(leader)[0]
	// Verifiers fetch a follower's key set; calls go through every node.
	jwksURL := follower.URL() + jwksPath
	modern := startExampleDirectory(t, jwksURL, true)
	legacy := startExampleDirectory(t, jwksURL, false)
	mustCLI(t, c, follower, "registry", "submit", "-f", writeCard(t, directoryCard(t, "1.0.0", modern.URL)))
	mustCLI(t, c, follower, "registry", "submit", "-f", writeCard(t, directoryCard(t, "1.1.0", legacy.URL)))
	mustCLI(t, c, follower, "registry", "approve", "corp.hr/directory@1.0.0")
	mustCLI(t, c, follower, "registry", "approve", "corp.hr/directory@1.1.0")
	mustCLI(t, c, follower, "tenant", "add", "payroll", "-owner", "alice@corp.example")
	mustCLI(t, c, follower, "tenant", "add", "benefits", "-owner", "bob@corp.example")
	keys := map[string]string{
		"payroll":  createKey(t, c, follower, "payroll", "payroll agent").Secret,
		"benefits": createKey(t, c, leader, "benefits", "benefits agent").Secret,
	}

	// Every replica publishes the same key set, with one key.
	var first string
	ok := testcluster.Eventually(catchUp, func() bool {
		for i, n := range c.Nodes {
			set, body := keySet(t, n)
			if len(set.Keys) != 1 || (i > 0 && body != first) {
				return false
			}
			first = body
		}
		return true
	})
	if !ok {
		t.Fatalf("the replicas do not publish one and the same key; last: %s", first)
	}

	bands := map[string]string{"payroll": "9000000..12000000 USD", "benefits": "7000000..9500000 EUR"}
	upstreamOf := map[string]*exampleUpstream{"1.0.0": modern, "1.1.0": legacy}
	type seenCall struct{ rid, tenant, sub string }
	var want []seenCall
	for _, n := range c.Nodes {
		for _, era := range []string{"2026-07-28", "2025-11-25"} {
			for tenant, key := range keys {
				for version := range upstreamOf {
					var s *mcp.ClientSession
					var res *mcp.CallToolResult
					var last string
					ok := testcluster.Eventually(catchUp, func() bool {
						var err error
						if s, err = dialAgent(t, n.URL()+"/mcp", era, key); err != nil {
							last = err.Error()
							return false
						}
						res, err = s.CallTool(t.Context(), &mcp.CallToolParams{Name: "hr.get_salary_band", Arguments: map[string]any{"grade": "E3"},
							Meta: mcp.Meta{"io.mcpmesh/version": version}})
						last = fmt.Sprint(res, err)
						return err == nil
					})
					if !ok {
						t.Fatalf("%s %s %s via %s: get_salary_band failed: %s", tenant, era, version, n.ID, last)
					}
					var band struct {
						Min, Max int64
						Currency string
					}
					raw, _ := json.Marshal(res.StructuredContent)
					var sc struct {
						MinCents int64  `json:"min_cents"`
						MaxCents int64  `json:"max_cents"`
						Currency string `json:"currency"`
					}
					json.Unmarshal(raw, &sc)
					band.Min, band.Max, band.Currency = sc.MinCents, sc.MaxCents, sc.Currency
					if got := fmt.Sprintf("%d..%d %s", band.Min, band.Max, band.Currency); res.IsError || got != bands[tenant] {
						t.Errorf("%s %s %s via %s: E3 band %s (%v), want %s's own %s", tenant, era, version, n.ID, got, res.Content, tenant, bands[tenant])
					}
					rid, _ := res.Meta["io.mcpmesh/requestId"].(string)
					if rid == "" {
						t.Errorf("%s %s via %s: the result names no request id: %v", tenant, era, n.ID, res.Meta)
					}
					want = append(want, seenCall{rid, tenant, "apikey:"})

					// Another tenant's rows stay out of reach: a search that
					// matches rows of both tenants (London, Boston) returns
					// the caller's only.
					res, err := s.CallTool(t.Context(), &mcp.CallToolParams{Name: "hr.search_employees", Arguments: map[string]any{"query": "on"},
						Meta: mcp.Meta{"io.mcpmesh/version": version}})
					if err != nil || res.IsError {
						t.Fatalf("%s search via %s: %v %v", tenant, n.ID, res, err)
					}
					text := res.Content[0].(*mcp.TextContent).Text
					other := map[string]string{"payroll": "benefits", "benefits": "payroll"}[tenant]
					if !strings.Contains(text, "(tenant "+tenant+")") || strings.Contains(text, "(tenant "+other+")") {
						t.Errorf("%s %s %s via %s: search shows %q; want %s's rows only", tenant, era, version, n.ID, text, tenant)
					}
				}
			}
		}
	}

	// What the upstreams received: the node's token on every request, the
	// caller's on each call, and nothing of the agent's.
	v, err := tokens.NewVerifier(tokens.VerifierConfig{Issuer: hrIssuer, Audience: servers.DirectoryName, JWKSURL: jwksURL})
	if err != nil {
		t.Fatal(err)
	}
	calls := map[string]tokens.Claims{} // by request id
	nHeaders := 0
	for version, u := range upstreamOf {
		u.mu.Lock()
		headers := slices.Clone(u.headers)
		u.mu.Unlock()
		if len(headers) == 0 {
			t.Fatalf("upstream %s received no requests", version)
		}
		nHeaders += len(headers)
		for _, h := range headers {
			for name, vals := range h {
				for _, val := range vals {
					for _, secret := range append(slices.Collect(mapsValues(agentCredentials)), keys["payroll"], keys["benefits"], keys["payroll"][len(keys["payroll"])-43:], keys["benefits"][len(keys["benefits"])-43:]) {
						if strings.Contains(val, secret) {
							t.Errorf("upstream %s received the agent's credential in %s", version, name)
						}
					}
				}
				if _, ok := agentCredentials[name]; ok {
					t.Errorf("upstream %s received a %s header", version, name)
				}
			}
			tok, ok := strings.CutPrefix(h.Get("Authorization"), "Bearer ")
			if !ok {
				t.Errorf("upstream %s got a request without the node's token", version)
				continue
			}
			if _, err := v.Verify(t.Context(), tok); err != nil {
				t.Errorf("upstream %s got a token it cannot verify: %v", version, err)
			}
		}
		for _, r := range u.rec.Calls("") {
			tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			cl, err := v.Verify(t.Context(), tok)
			if err != nil {
				// Tokens live 60s; the test is shorter.
				t.Errorf("a %s call's token: %v", r.ToolName(), err)
				continue
			}
			calls[cl.RequestID] = cl
		}
	}
	t.Logf("%d salary calls through %d replicas; the upstreams got %d HTTP requests, each with a node token, and %d tools/call tokens", len(want), len(c.Nodes), nHeaders, len(calls))
	for _, w := range want {
		cl, ok := calls[w.rid]
		if !ok {
			t.Errorf("no upstream call carried request id %s", w.rid)
			continue
		}
		if cl.Tenant != w.tenant || !strings.HasPrefix(cl.Subject, w.sub) || len(cl.Caller) != 2 || cl.Caller[0] != cl.Subject ||
			!strings.HasPrefix(cl.Caller[1], "spiffe://hr.example.corp/mcpmesh/node/") || cl.Expiry.Sub(cl.IssuedAt) != time.Minute {
			t.Errorf("call %s: token claims %+v; want tenant %s, the agent as subject, the node last in the chain, 60s", w.rid, cl, w.tenant)
		}
	}
	for _, n := range c.Nodes {
		log := n.Log()
		for _, key := range keys {
			if strings.Contains(log, key[len(key)-43:]) {
				t.Errorf("%s's log holds an API key's secret", n.ID)
			}
		}
		for _, cl := range calls {
			if strings.Contains(log, cl.ID) {
				t.Errorf("%s's log holds a minted token's id", n.ID)
			}
		}
	}
	_, m := get(t, leader.URL()+"/metrics", "")
	if !strings.Contains(m, `mcpmesh_tokens_minted_total{audience="corp.hr/directory",namespace="hr",outcome="ok"}`) ||
		!strings.Contains(m, `mcpmesh_tokens_signing_keys{namespace="hr",state="active"} 1`) {
		t.Errorf("the leader's /metrics lacks the token metrics")
	}
}

func mapsValues(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for _, v := range m {
			if !yield(v) {
				return
			}
		}
	}
}

// TestSigningKeyRotation: with a short rotate_every, the leader rotates
// the BU's signing key; a token minted just before a rotation still
// verifies at the example server afterwards (its key is still published),
// and the old key leaves the key set only after its last token expired.
func TestSigningKeyRotation(t *testing.T) {
	t.Parallel()
	// rotate_every is well above the example server's 5s floor between key
	// set fetches: a rotation within 5s of its last fetch would leave it
	// unable to learn the new key in time for the call after the rotation.
	c := startCluster(t, testcluster.Options{NoSync: true, Nodes: 1,
		ExtraYAML: "upstream_tokens:\n  rotate_every: 8s\n  ttl: 3s\n  leeway: 1s\n"})
	n := c.Nodes[0]
	up := startExampleDirectory(t, n.URL()+jwksPath, true)
	mustCLI(t, c, n, "apply", "-f", permitAll(t))
	mustCLI(t, c, n, "registry", "submit", "-f", writeCard(t, directoryCard(t, "1.0.0", up.URL)))
	mustCLI(t, c, n, "registry", "approve", "corp.hr/directory@1.0.0")
	mustCLI(t, c, n, "tenant", "add", "payroll", "-owner", "alice@corp.example")
	key := createKey(t, c, n, "payroll", "rotation agent").Secret
	s := connectAgent(t, n.URL()+"/mcp", "2026-07-28", key)

	call := func() (string, error) {
		res, err := s.CallTool(t.Context(), &mcp.CallToolParams{Name: "hr.get_salary_band", Arguments: map[string]any{"grade": "E3"}})
		if err != nil || res.IsError {
			return "", fmt.Errorf("call: %v %v", res, err)
		}
		calls := up.rec.Calls("get_salary_band")
		tok, _ := strings.CutPrefix(calls[len(calls)-1].Header.Get("Authorization"), "Bearer ")
		return tok, nil
	}
	kidOf := func(tok string) (string, time.Time) {
		jws, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256})
		if err != nil {
			t.Fatalf("the upstream's token does not parse: %v", err)
		}
		var cl jwt.Claims
		jws.UnsafeClaimsWithoutVerification(&cl)
		return jws.Headers[0].KeyID, cl.Expiry.Time()
	}
	// Call until a token is signed by another key than the first; the last
	// token signed with the first key is the one to replay. The key set is
	// read before each call, so a set holding the next key while the call
	// is still signed with the first shows that the key was published
	// ahead (upstream_tokens.publish_ahead, a quarter of rotate_every here).
	var before, oldKID, newKID, signedBy string
	var oldExp time.Time
	var publishedAhead bool
	var rotated []string
	ok := testcluster.Eventually(30*time.Second, func() bool {
		set, _ := keySet(t, n)
		tok, err := call()
		if err != nil {
			return false
		}
		kid, exp := kidOf(tok)
		if oldKID == "" {
			oldKID = kid
		}
		rotated = kids(set)
		if kid == oldKID {
			before, oldExp = tok, exp
			if len(rotated) >= 2 && rotated[len(rotated)-1] != oldKID {
				publishedAhead, newKID = true, rotated[len(rotated)-1]
			}
			return false
		}
		signedBy = kid
		return true
	})
	if !ok {
		t.Fatalf("no token of a new key within 30s: key set %v, old key %q", rotated, oldKID)
	}
	if !publishedAhead || signedBy != newKID {
		t.Errorf("the new key %s signed before it was published (seen published ahead: %v, as %q)", signedBy, publishedAhead, newKID)
	}
	rotatedAt := time.Now()

	// The token minted before the rotation still opens the example server
	// (replayed to it directly, as its own request).
	direct := mcp.NewClient(&mcp.Implementation{Name: "replay", Version: "1"}, nil)
	ds, err := direct.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: up.URL,
		HTTPClient: &http.Client{Transport: headerTransport{http.Header{"Authorization": {"Bearer " + before}}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ds.Close()
	res, err := ds.CallTool(t.Context(), &mcp.CallToolParams{Name: "get_salary_band", Arguments: map[string]any{"grade": "E3"}})
	if time.Now().Before(oldExp) {
		if err != nil || res.IsError {
			t.Errorf("a token of the retired key, before it expired, after the rotation: %v %v", res, err)
		}
	}
	// So does a fresh verifier, which fetches the key set now.
	v, _ := tokens.NewVerifier(tokens.VerifierConfig{Issuer: hrIssuer, Audience: servers.DirectoryName, JWKSURL: n.URL() + jwksPath, Leeway: time.Nanosecond})
	if _, err := v.Verify(t.Context(), before); err != nil && time.Now().Before(oldExp) {
		t.Errorf("a fresh verifier refuses the retired key's token before it expired: %v", err)
	}
	// Calls go on with the new key.
	if tok, err := call(); err != nil {
		t.Errorf("call after the rotation: %v", err)
	} else if kid, _ := kidOf(tok); kid == oldKID {
		t.Errorf("a call after the rotation was signed with the retired key")
	}

	// The old key leaves the key set, but not before its last token expired.
	var gone time.Time
	ok = testcluster.Eventually(15*time.Second, func() bool {
		set, _ := keySet(t, n)
		if !slices.Contains(kids(set), oldKID) {
			gone = time.Now()
			return true
		}
		time.Sleep(50 * time.Millisecond)
		return false
	})
	if !ok {
		t.Fatalf("the retired key %s is still published 15s after the rotation", oldKID)
	}
	if gone.Before(oldExp) {
		t.Errorf("the retired key left the key set at %s, before its last token expired at %s", gone.Format(time.StampMilli), oldExp.Format(time.StampMilli))
	}
	t.Logf("rotation seen at %s; retired key %s published until %s, its last token expired at %s (overlap %v after expiry)",
		rotatedAt.Format(time.StampMilli), oldKID, gone.Format(time.StampMilli), oldExp.Format(time.StampMilli), gone.Sub(oldExp).Round(time.Millisecond))
	if _, err := v.Verify(t.Context(), before); err == nil {
		t.Error("the retired key's token still verifies after the key was deleted")
	}
	_, m := get(t, n.URL()+"/metrics", "")
	if !strings.Contains(m, `mcpmesh_tokens_keys_deleted_total{namespace="hr"}`) || strings.Contains(m, `mcpmesh_tokens_key_rotations_total{namespace="hr"} 1`+"\n") {
		t.Errorf("/metrics lacks the rotations and deletions")
	}
	if strings.Contains(n.Log(), strings.Split(before, ".")[2]) {
		t.Error("the node's log holds a minted token")
	}
}

// headerTransport adds fixed headers to every request.
type headerTransport struct{ h http.Header }

func (t headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, v := range t.h {
		r.Header[k] = v
	}
	return http.DefaultTransport.RoundTrip(r)
}
