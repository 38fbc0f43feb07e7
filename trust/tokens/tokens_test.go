package tokens

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mcpmesh/mcpmesh/registry/state"
)

const (
	issuer   = "spiffe://hr.example.corp/mcpmesh/gateway"
	nodeID   = "spiffe://hr.example.corp/mcpmesh/node/n1"
	audience = "corp.hr/directory"
)

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

// clock is a settable clock, safe for concurrent use.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// bu is one namespace's token machinery over a real registry state: the
// rotator commits to the FSM as Raft would, the minter signs with what the
// FSM holds, and its key set is served over HTTP.
type bu struct {
	t       *testing.T
	clock   *clock
	fsm     *state.FSM
	index   uint64
	rotator *Rotator
	minter  *Minter
	jwks    *httptest.Server
	reg     *prometheus.Registry
}

func newBU(t *testing.T, cfg RotationConfig) *bu {
	t.Helper()
	f, err := state.Open("state", state.WithFS(vfs.NewMem()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	b := &bu{t: t, clock: &clock{t: t0}, fsm: f, reg: prometheus.NewRegistry()}
	propose := func(_ context.Context, cmd []byte) error {
		b.index++
		if err, ok := f.Apply(&raft.Log{Index: b.index, Term: 1, Type: raft.LogCommand, Data: cmd}).(error); ok {
			return err
		}
		return nil
	}
	b.rotator, err = NewRotator(cfg, f.SigningKeys, propose, func() bool { return true }, WithClock(b.clock.now), WithMetrics(b.reg))
	if err != nil {
		t.Fatal(err)
	}
	b.minter, err = NewMinter(Config{Issuer: issuer, Node: nodeID, TTL: cfg.TTL}, WithClock(b.clock.now), WithMetrics(b.reg))
	if err != nil {
		t.Fatal(err)
	}
	b.jwks = httptest.NewServer(b.minter.JWKSHandler())
	t.Cleanup(b.jwks.Close)
	return b
}

// step runs the rotator at the current time and hands the minter the keys.
func (b *bu) step() Plan {
	b.t.Helper()
	p, err := b.rotator.Step(b.t.Context())
	if err != nil {
		b.t.Fatal(err)
	}
	keys, err := b.fsm.SigningKeys()
	if err != nil {
		b.t.Fatal(err)
	}
	if err := b.minter.SetKeys(keys); err != nil {
		b.t.Fatal(err)
	}
	return p
}

func (b *bu) verifier(aud string) *Verifier {
	b.t.Helper()
	v, err := NewVerifier(VerifierConfig{Issuer: issuer, Audience: aud, JWKSURL: b.jwks.URL}, WithClock(b.clock.now))
	if err != nil {
		b.t.Fatal(err)
	}
	return v
}

func (b *bu) mint(c Caller) string {
	b.t.Helper()
	tok, err := b.minter.Mint(audience, c)
	if err != nil {
		b.t.Fatal(err)
	}
	return tok
}

// publishedKIDs are the key ids the JWKS endpoint serves now.
func (b *bu) publishedKIDs() []string {
	b.t.Helper()
	resp, err := http.Get(b.jwks.URL)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		b.t.Fatal(err)
	}
	var ids []string
	for _, k := range set.Keys {
		ids = append(ids, k.KeyID)
	}
	return ids
}

func TestMintAndVerify(t *testing.T) {
	b := newBU(t, RotationConfig{})
	if _, err := b.minter.Mint(audience, Caller{}); !errors.Is(err, ErrNoKey) {
		t.Fatalf("Mint before any key: err = %v, want ErrNoKey", err)
	}
	b.step()
	tok := b.mint(Caller{Principal: "apikey:aaaaaaaaaaaa", Tenant: "payroll", RequestID: "req-1"})
	got, err := b.verifier(audience).Verify(t.Context(), tok)
	if err != nil {
		t.Fatal(err)
	}
	want := Claims{Issuer: issuer, Subject: "apikey:aaaaaaaaaaaa", Audience: audience, IssuedAt: t0, Expiry: t0.Add(time.Minute),
		Tenant: "payroll", Caller: []string{"apikey:aaaaaaaaaaaa", nodeID}, RequestID: "req-1"}
	if diff := cmp.Diff(want, got, cmp.FilterPath(func(p cmp.Path) bool { return p.String() == "ID" }, cmp.Ignore())); diff != "" || len(got.ID) < 16 {
		t.Errorf("claims (-want +got):\n%s\njti %q", diff, got.ID)
	}

	// The node's own requests: the node is the subject and the chain, no
	// tenant; the request id is made up.
	own, err := b.verifier(audience).Verify(t.Context(), b.mint(Caller{}))
	if err != nil || own.Subject != nodeID || !slices.Equal(own.Caller, []string{nodeID}) || own.Tenant != "" || own.RequestID == "" {
		t.Errorf("the node's own token: %+v, %v", own, err)
	}
	// A call that came through other nodes lists them in order.
	via, _ := b.verifier(audience).Verify(t.Context(), b.mint(Caller{Principal: "spiffe://finance.example.corp/agent/x", Via: []string{"spiffe://finance.example.corp/mcpmesh/node/f1"}}))
	if wantChain := []string{"spiffe://finance.example.corp/agent/x", "spiffe://finance.example.corp/mcpmesh/node/f1", nodeID}; !slices.Equal(via.Caller, wantChain) {
		t.Errorf("caller chain = %v, want %v", via.Caller, wantChain)
	}
	if n := testutil.ToFloat64(b.minter.minted.WithLabelValues(audience, "ok")); n != 3 {
		t.Errorf("mcpmesh_tokens_minted_total{outcome=ok} = %v, want 3", n)
	}
	if n := testutil.ToFloat64(b.minter.minted.WithLabelValues(audience, "no_key")); n != 1 {
		t.Errorf("mcpmesh_tokens_minted_total{outcome=no_key} = %v, want 1", n)
	}
}

// TestRefusals: every token an upstream must not accept is refused, with
// a reason, and without repeating the token.
func TestRefusals(t *testing.T) {
	b := newBU(t, RotationConfig{})
	b.step()
	good := b.mint(Caller{Principal: "apikey:aaaaaaaaaaaa", Tenant: "payroll"})

	// A key that is not the BU's, under the BU's key id and under its own.
	stranger, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sign := func(kid string, alg jose.SignatureAlgorithm, key any, claims any) string {
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := jwt.Signed(s).Claims(claims).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	claims := upstreamClaims{Claims: jwt.Claims{Issuer: issuer, Subject: "x", Audience: jwt.Audience{audience},
		IssuedAt: jwt.NewNumericDate(t0), Expiry: jwt.NewNumericDate(t0.Add(time.Minute))}, Caller: []string{"x"}}
	kid := b.minter.ActiveKeyID()
	payload := strings.Split(good, ".")[1]

	for _, tc := range []struct {
		name, token, want string
		at                time.Time
		aud               string
	}{
		{name: "garbage", token: "not-a-token", want: "not a compact JWS"},
		{name: "forged with the BU's kid", token: sign(kid, jose.ES256, stranger, claims), want: "does not verify"},
		{name: "unknown kid", token: sign("stranger-key", jose.ES256, stranger, claims), want: "not in the key set"},
		{name: "HMAC", token: sign(kid, jose.HS256, []byte("0123456789abcdef0123456789abcdef"), claims), want: "ES256"},
		{name: "another tenant's payload, this signature", token: headerOf(good) + "." + payloadOf(b.mint(Caller{Principal: "apikey:bbbbbbbbbbbb", Tenant: "benefits"})) + "." + sigOf(good), want: "does not verify"},
		{name: "another audience", token: good, aud: "corp.finance/ledger", want: "not for \"corp.finance/ledger\""},
		{name: "expired", token: good, at: t0.Add(time.Minute + 6*time.Second), want: "expired"},
		{name: "from the future", token: good, at: t0.Add(-time.Minute), want: "not valid yet"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b.clock.set(t0)
			if !tc.at.IsZero() {
				b.clock.set(tc.at)
			}
			aud := audience
			if tc.aud != "" {
				aud = tc.aud
			}
			_, err := b.verifier(aud).Verify(t.Context(), tc.token)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Verify = %v; want ErrInvalid saying %q", err, tc.want)
			}
			if strings.Contains(err.Error(), payload) {
				t.Errorf("the refusal repeats the token: %v", err)
			}
		})
	}
	b.clock.set(t0)
	if _, err := b.verifier(audience).Verify(t.Context(), good); err != nil {
		t.Errorf("the good token: %v", err)
	}
}

func headerOf(tok string) string  { return strings.Split(tok, ".")[0] }
func payloadOf(tok string) string { return strings.Split(tok, ".")[1] }
func sigOf(tok string) string     { return strings.Split(tok, ".")[2] }

// TestRotationOverlap: the leader rotates every RotateEvery; a token
// minted just before a rotation still verifies after it, at a verifier
// that cached the key set before, while the old key is published; the new
// key's tokens verify at once (unknown kid: refetch); the old key leaves
// the key set once all its tokens have expired, not before.
func TestRotationOverlap(t *testing.T) {
	cfg := RotationConfig{RotateEvery: time.Hour, TTL: time.Minute, Leeway: 30 * time.Second}
	b := newBU(t, cfg)
	if p := b.step(); !p.Rotate {
		t.Fatalf("first step = %+v, want the first key", p)
	}
	first := b.minter.ActiveKeyID()
	v := b.verifier(audience) // keeps its cache across the rotation

	b.clock.set(t0.Add(time.Hour - time.Second))
	if p := b.step(); p.Rotate || !p.Next.Equal(t0.Add(time.Hour)) {
		t.Fatalf("step before the rotation is due = %+v; want nothing to do until %s", p, t0.Add(time.Hour))
	}
	before := b.mint(Caller{Principal: "apikey:aaaaaaaaaaaa", Tenant: "payroll"})
	if _, err := v.Verify(t.Context(), before); err != nil {
		t.Fatal(err)
	}

	rotatedAt := t0.Add(time.Hour)
	b.clock.set(rotatedAt)
	if p := b.step(); !p.Rotate {
		t.Fatalf("step at rotate_every = %+v, want a rotation", p)
	}
	second := b.minter.ActiveKeyID()
	if second == first || second == "" {
		t.Fatalf("active key after rotation = %q (was %q)", second, first)
	}
	if got := b.publishedKIDs(); !slices.Equal(got, []string{first, second}) {
		t.Fatalf("key set after rotation = %v, want [%s %s]", got, first, second)
	}
	b.clock.set(rotatedAt.Add(50 * time.Second))
	if _, err := v.Verify(t.Context(), before); err != nil {
		t.Errorf("a token minted before the rotation, after it: %v", err)
	}
	after := b.mint(Caller{Principal: "apikey:aaaaaaaaaaaa", Tenant: "payroll"})
	if _, err := v.Verify(t.Context(), after); err != nil {
		t.Errorf("a token of the new key at a verifier that cached the old set: %v", err)
	}
	if _, err := b.verifier(audience).Verify(t.Context(), before); err != nil {
		t.Errorf("a token minted before the rotation, at a fresh verifier: %v", err)
	}

	// Kept until retirement + TTL + leeway, then deleted.
	b.clock.set(rotatedAt.Add(90*time.Second - time.Millisecond))
	if p := b.step(); len(p.Delete) != 0 || !p.Next.Equal(rotatedAt.Add(90*time.Second)) {
		t.Fatalf("step before the old key's tokens all expired = %+v", p)
	}
	if got := b.publishedKIDs(); !slices.Contains(got, first) {
		t.Fatalf("the old key left the key set early: %v", got)
	}
	b.clock.set(rotatedAt.Add(90 * time.Second))
	if p := b.step(); !slices.Equal(p.Delete, []string{first}) {
		t.Fatalf("step once the old key's tokens expired = %+v, want it deleted", p)
	}
	if got := b.publishedKIDs(); !slices.Equal(got, []string{second}) {
		t.Fatalf("key set after the old key's tokens expired = %v, want [%s]", got, second)
	}
	if _, err := b.verifier(audience).Verify(t.Context(), before); !errors.Is(err, ErrInvalid) {
		t.Errorf("a token of the deleted key: err = %v, want refused", err)
	}
	if n := testutil.ToFloat64(b.rotator.rotations); n != 2 {
		t.Errorf("rotations counted = %v, want 2", n)
	}
	if n := testutil.ToFloat64(b.rotator.deletions); n != 1 {
		t.Errorf("deletions counted = %v, want 1", n)
	}
}

// TestFollowerDoesNotRotate: only the leader writes keys.
func TestFollowerDoesNotRotate(t *testing.T) {
	b := newBU(t, RotationConfig{})
	proposed := 0
	r, err := NewRotator(RotationConfig{}, b.fsm.SigningKeys, func(context.Context, []byte) error { proposed++; return nil },
		func() bool { return false }, WithClock(b.clock.now))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Step(t.Context()); err != nil || proposed != 0 {
		t.Errorf("a follower's step proposed %d commands (err %v)", proposed, err)
	}
}

func TestPlanRotation(t *testing.T) {
	cfg := RotationConfig{RotateEvery: time.Hour, TTL: time.Minute, Leeway: 30 * time.Second}
	retired := func(at time.Time) *time.Time { return &at }
	for _, tc := range []struct {
		name string
		keys []state.SigningKey
		now  time.Time
		want Plan
	}{
		{"no key", nil, t0, Plan{Rotate: true, ActiveFrom: t0}},
		{"fresh key", []state.SigningKey{{ID: "a", CreatedAt: t0}}, t0.Add(time.Minute), Plan{Next: t0.Add(time.Hour)}},
		{"due", []state.SigningKey{{ID: "a", CreatedAt: t0}}, t0.Add(time.Hour), Plan{Rotate: true, ActiveFrom: t0.Add(time.Hour)}},
		{"only retired keys", []state.SigningKey{{ID: "a", CreatedAt: t0, RetiredAt: retired(t0)}}, t0, Plan{Rotate: true, ActiveFrom: t0, Next: t0.Add(90 * time.Second)}},
		{"retired in overlap", []state.SigningKey{{ID: "a", RetiredAt: retired(t0)}, {ID: "b", CreatedAt: t0}}, t0.Add(89 * time.Second),
			Plan{Next: t0.Add(90 * time.Second)}},
		{"retired and expired", []state.SigningKey{{ID: "a", RetiredAt: retired(t0)}, {ID: "b", RetiredAt: retired(t0.Add(time.Minute))}, {ID: "c", CreatedAt: t0.Add(time.Minute)}},
			t0.Add(100 * time.Second), Plan{Delete: []string{"a"}, Next: t0.Add(150 * time.Second)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, PlanRotation(tc.keys, tc.now, cfg)); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
		})
	}
	// Publishing ahead: the next key is committed PublishAhead before the
	// signing key is due, and signs from then.
	ahead := cfg
	ahead.PublishAhead = 10 * time.Minute
	from := func(at time.Time) *time.Time { return &at }
	for _, tc := range []struct {
		name string
		keys []state.SigningKey
		now  time.Time
		want Plan
	}{
		{"not yet", []state.SigningKey{{ID: "a", CreatedAt: t0}}, t0.Add(49 * time.Minute), Plan{Next: t0.Add(50 * time.Minute)}},
		{"publish", []state.SigningKey{{ID: "a", CreatedAt: t0}}, t0.Add(50 * time.Minute), Plan{Rotate: true, ActiveFrom: t0.Add(time.Hour)}},
		{"next key published", []state.SigningKey{{ID: "a", CreatedAt: t0, RetiredAt: retired(t0.Add(time.Hour))}, {ID: "b", CreatedAt: t0.Add(50 * time.Minute), ActiveFrom: from(t0.Add(time.Hour))}},
			t0.Add(55 * time.Minute), Plan{Next: t0.Add(time.Hour)}},
		{"next key signs", []state.SigningKey{{ID: "a", CreatedAt: t0, RetiredAt: retired(t0.Add(time.Hour))}, {ID: "b", CreatedAt: t0.Add(50 * time.Minute), ActiveFrom: from(t0.Add(time.Hour))}},
			t0.Add(time.Hour), Plan{Next: t0.Add(time.Hour + 90*time.Second)}},
		{"first key signs at once", nil, t0, Plan{Rotate: true, ActiveFrom: t0}},
	} {
		t.Run("ahead/"+tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, PlanRotation(tc.keys, tc.now, ahead)); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRotationPublishesAhead: with PublishAhead the next key is in the
// key set before it signs, so a verifier that cached the set after the
// publication verifies the new key's first token without fetching again;
// until then the old key signs.
func TestRotationPublishesAhead(t *testing.T) {
	cfg := RotationConfig{RotateEvery: time.Hour, TTL: time.Minute, Leeway: 30 * time.Second, PublishAhead: 10 * time.Minute}
	b := newBU(t, cfg)
	b.step()
	first := b.minter.ActiveKeyID()
	var fetches atomic.Int64
	counted := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		b.minter.JWKSHandler().ServeHTTP(w, r)
	}))
	defer counted.Close()
	v, err := NewVerifier(VerifierConfig{Issuer: issuer, Audience: audience, JWKSURL: counted.URL}, WithClock(b.clock.now))
	if err != nil {
		t.Fatal(err)
	}
	kid := func(tok string) string {
		jws, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256})
		if err != nil {
			t.Fatal(err)
		}
		return jws.Headers[0].KeyID
	}

	b.clock.set(t0.Add(50 * time.Minute))
	if p := b.step(); !p.Rotate || !p.ActiveFrom.Equal(t0.Add(time.Hour)) {
		t.Fatalf("step 10m before the rotation is due = %+v, want the next key, signing from %s", p, t0.Add(time.Hour))
	}
	kids := b.publishedKIDs()
	if len(kids) != 2 || kids[0] != first {
		t.Fatalf("key set after publishing the next key = %v", kids)
	}
	second := kids[1]
	tok := b.mint(Caller{Principal: "apikey:aaaaaaaaaaaa"})
	if got := kid(tok); got != first || b.minter.ActiveKeyID() != first {
		t.Errorf("before the next key's time the token is signed by %s (active %s), want %s", got, b.minter.ActiveKeyID(), first)
	}
	// The verifier caches the set with both keys (it refreshes every 5
	// minutes, so this is its last fetch before the next key's time).
	b.clock.set(t0.Add(58 * time.Minute))
	if _, err := v.Verify(t.Context(), b.mint(Caller{Principal: "apikey:aaaaaaaaaaaa"})); err != nil {
		t.Fatal(err)
	}
	cached := fetches.Load()

	b.clock.set(t0.Add(time.Hour))
	if p := b.step(); p.Rotate {
		t.Errorf("step at the next key's time = %+v; it was published already", p)
	}
	tok = b.mint(Caller{Principal: "apikey:aaaaaaaaaaaa"})
	if got := kid(tok); got != second || b.minter.ActiveKeyID() != second {
		t.Errorf("from the next key's time the token is signed by %s (active %s), want %s", got, b.minter.ActiveKeyID(), second)
	}
	if _, err := v.Verify(t.Context(), tok); err != nil {
		t.Errorf("the new key's first token at a verifier that cached the set before: %v", err)
	}
	if n := fetches.Load() - cached; n != 0 {
		t.Errorf("the verifier fetched the key set %d more times to verify the new key's token; it was published ahead", n)
	}
	if _, err := NewRotator(RotationConfig{RotateEvery: time.Hour, PublishAhead: time.Hour}, nil, nil, nil); err == nil {
		t.Error("PublishAhead equal to RotateEvery: accepted")
	}
}

// TestKeySetIsPublic: the served key set holds public keys only.
func TestKeySetIsPublic(t *testing.T) {
	b := newBU(t, RotationConfig{RotateEvery: time.Hour})
	b.step()
	b.clock.set(t0.Add(time.Hour))
	b.step()
	resp, err := http.Get(b.jwks.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var raw struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		t.Fatal(err)
	}
	if resp.Header.Get("Content-Type") != "application/jwk-set+json" || len(raw.Keys) != 2 {
		t.Fatalf("key set: %s, %d keys", resp.Header.Get("Content-Type"), len(raw.Keys))
	}
	for _, k := range raw.Keys {
		if _, ok := k["d"]; ok || k["kty"] != "EC" || k["crv"] != "P-256" || k["alg"] != "ES256" || k["use"] != "sig" {
			t.Errorf("published key %v: want a public EC P-256 signing key", k)
		}
	}
}

func FuzzVerify(f *testing.F) {
	minter, err := NewMinter(Config{Issuer: issuer, Node: nodeID})
	if err != nil {
		f.Fatal(err)
	}
	cmd, err := NewKey(time.Now())
	if err != nil {
		f.Fatal(err)
	}
	if err := minter.SetKeys([]state.SigningKey{{ID: cmd.ID, Algorithm: cmd.Algorithm, Private: cmd.Private, CreatedAt: cmd.At}}); err != nil {
		f.Fatal(err)
	}
	srv := httptest.NewServer(minter.JWKSHandler())
	defer srv.Close()
	v, err := NewVerifier(VerifierConfig{Issuer: issuer, Audience: audience, JWKSURL: srv.URL})
	if err != nil {
		f.Fatal(err)
	}
	good, _ := minter.Mint(audience, Caller{Principal: "p", Tenant: "t"})
	f.Add(good)
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.")
	f.Add(headerOf(good) + ".e30." + sigOf(good))
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := v.Verify(context.Background(), tok)
		if err == nil && tok != good {
			// Only a token the minter signed can verify; the fuzzer does
			// not forge ES256 signatures.
			if c.Issuer != issuer || c.Audience != audience {
				t.Fatalf("accepted %q with claims %+v", tok, c)
			}
		}
	})
}

// BenchmarkMint is the cost minting adds to every upstream request.
func BenchmarkMint(b *testing.B) {
	m, err := NewMinter(Config{Issuer: issuer, Node: nodeID})
	if err != nil {
		b.Fatal(err)
	}
	k, err := NewKey(time.Now())
	if err != nil {
		b.Fatal(err)
	}
	if err := m.SetKeys([]state.SigningKey{{ID: k.ID, Algorithm: k.Algorithm, Private: k.Private, CreatedAt: k.At}}); err != nil {
		b.Fatal(err)
	}
	c := Caller{Principal: "apikey:aaaaaaaaaaaa", Tenant: "payroll", RequestID: "r"}
	for b.Loop() {
		if _, err := m.Mint(audience, c); err != nil {
			b.Fatal(err)
		}
	}
}
