package svid

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/mcpmesh/mcpmesh/trust/ca"
)

var (
	hrTD   = spiffeid.RequireTrustDomainFromString("hr.example.corp")
	nodeID = spiffeid.RequireFromPath(hrTD, "/mcpmesh/node/1")
)

// The embedded CA is the Issuer nodes use.
var _ Issuer = (*ca.CA)(nil)

// testIssuer issues from a real CA, failing the calls it is told to fail,
// and records when it was called.
type testIssuer struct {
	ca *ca.CA

	mu       sync.Mutex
	failNext int
	calls    []time.Time
	failures int
}

func newTestIssuer(t *testing.T) *testIssuer {
	t.Helper()
	c, err := ca.Init(filepath.Join(t.TempDir(), "ca"), hrTD)
	if err != nil {
		t.Fatal(err)
	}
	return &testIssuer{ca: c}
}

func (i *testIssuer) IssueX509SVID(id spiffeid.ID, ttl time.Duration) (*x509svid.SVID, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.calls = append(i.calls, time.Now())
	if i.failNext > 0 {
		i.failNext--
		i.failures++
		return nil, errors.New("CA unavailable")
	}
	return i.ca.IssueX509SVID(id, ttl)
}

func (i *testIssuer) fail(n int) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.failNext = n
}

func (i *testIssuer) stats() (calls []time.Time, failures int) {
	i.mu.Lock()
	defer i.mu.Unlock()
	return append([]time.Time(nil), i.calls...), i.failures
}

// lockedBuffer is a log sink that the Run goroutine and the test share.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startRun runs r.Run until the test ends and checks that it returns
// context.Canceled then.
func startRun(t *testing.T, r *Rotator) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v after cancel, want context.Canceled", err)
		}
	})
}

func mustGet(t *testing.T, r *Rotator) *x509svid.SVID {
	t.Helper()
	s, err := r.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRotatorRenewsBeforeExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		issuer := newTestIssuer(t)
		type rotation struct {
			at   time.Time
			svid *x509svid.SVID
		}
		var (
			mu        sync.Mutex
			rotations []rotation
		)
		r, err := NewRotator(issuer, nodeID, time.Hour, WithOnRotate(func(s *x509svid.SVID) {
			mu.Lock()
			defer mu.Unlock()
			rotations = append(rotations, rotation{time.Now(), s})
		}))
		if err != nil {
			t.Fatal(err)
		}
		first := mustGet(t, r)
		startRun(t, r)

		// Walk through five lifetimes a minute at a time: at every step the
		// served SVID is valid.
		for end := time.Now().Add(5 * time.Hour); time.Now().Before(end); {
			time.Sleep(time.Minute)
			synctest.Wait()
			leaf := mustGet(t, r).Certificates[0]
			if now := time.Now(); now.Before(leaf.NotBefore) || !now.Before(leaf.NotAfter) {
				t.Fatalf("at %v the served SVID is valid only from %v to %v", now, leaf.NotBefore, leaf.NotAfter)
			}
		}

		mu.Lock()
		defer mu.Unlock()
		if len(rotations) < 9 {
			t.Fatalf("%d renewals in 5 hours of 1-hour SVIDs, want at least 9", len(rotations))
		}
		prev := first
		for i, rot := range rotations {
			leaf := prev.Certificates[0]
			life := leaf.NotAfter.Sub(leaf.NotBefore)
			earliest := leaf.NotBefore.Add(life * 4 / 10)
			latest := leaf.NotBefore.Add(life / 2)
			if rot.at.Before(earliest) || rot.at.After(latest) {
				t.Errorf("renewal %d at %v, want between %v and %v (40%%-50%% of the lifetime)", i, rot.at, earliest, latest)
			}
			if rot.svid.Certificates[0].SerialNumber.Cmp(leaf.SerialNumber) == 0 {
				t.Errorf("renewal %d kept the serial of the SVID it replaced", i)
			}
			if rot.svid.ID != nodeID {
				t.Errorf("renewal %d issued %v, want %v", i, rot.svid.ID, nodeID)
			}
			prev = rot.svid
		}
		if got := mustGet(t, r); got != prev {
			t.Error("GetX509SVID does not serve the latest renewed SVID")
		}
	})
}

func TestRotatorRetriesIssuerFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		issuer := newTestIssuer(t)
		logs := &lockedBuffer{}
		r, err := NewRotator(issuer, nodeID, time.Hour, WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
		if err != nil {
			t.Fatal(err)
		}
		first := mustGet(t, r)
		const failures = 5
		issuer.fail(failures)
		startRun(t, r)

		// Until the issuer recovers, the first SVID keeps being served.
		for mustGet(t, r) == first {
			if !time.Now().Before(first.Certificates[0].NotAfter) {
				t.Fatal("the SVID expired before it was renewed")
			}
			if _, n := issuer.stats(); n > failures {
				t.Fatalf("issuer failed %d times, want %d", n, failures)
			}
			time.Sleep(time.Second)
			synctest.Wait()
		}
		renewedAt := time.Now()
		if !renewedAt.Before(first.Certificates[0].NotAfter) {
			t.Errorf("renewed at %v, after the SVID expired at %v", renewedAt, first.Certificates[0].NotAfter)
		}

		calls, n := issuer.stats()
		if n != failures {
			t.Errorf("issuer failed %d times, want %d", n, failures)
		}
		// The first call is NewRotator's; then 5 failures and a success,
		// spaced by the growing backoff.
		var gaps []time.Duration
		for i := 2; i < len(calls); i++ {
			gaps = append(gaps, calls[i].Sub(calls[i-1]))
		}
		want := []time.Duration{1 * time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second}
		if diff := cmp.Diff(want, gaps); diff != "" {
			t.Errorf("delays between attempts (-want +got):\n%s", diff)
		}

		out := logs.String()
		for _, want := range []string{"level=WARN", "CA unavailable", "attempt=5", "spiffe_id=spiffe://hr.example.corp/mcpmesh/node/1", "renewed X509-SVID"} {
			if !strings.Contains(out, want) {
				t.Errorf("logs do not contain %q:\n%s", want, out)
			}
		}
		if strings.Contains(out, "level=ERROR") {
			t.Errorf("logged an error although the SVID never expired:\n%s", out)
		}
	})
}

func TestRotatorKeepsServingExpiredSVID(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		issuer := newTestIssuer(t)
		logs := &lockedBuffer{}
		r, err := NewRotator(issuer, nodeID, 10*time.Minute, WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
		if err != nil {
			t.Fatal(err)
		}
		first := mustGet(t, r)
		issuer.fail(1 << 30)
		startRun(t, r)

		time.Sleep(time.Until(first.Certificates[0].NotAfter.Add(5 * time.Minute)))
		synctest.Wait()
		if mustGet(t, r) != first {
			t.Error("GetX509SVID stopped serving the last SVID while the issuer fails")
		}
		if out := logs.String(); !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "expired") {
			t.Errorf("no error logged about the expired SVID:\n%s", out)
		}
		// The delay between attempts stops growing at 30 s.
		calls, _ := issuer.stats()
		if got := calls[len(calls)-1].Sub(calls[len(calls)-2]); got != 30*time.Second {
			t.Errorf("delay between the last attempts = %v, want 30s", got)
		}
	})
}

func TestRotatorRunTwice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, err := NewRotator(newTestIssuer(t), nodeID, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		startRun(t, r)
		synctest.Wait()
		if err := r.Run(t.Context()); err == nil || !strings.Contains(err.Error(), "already running") {
			t.Errorf("second Run = %v, want an already running error", err)
		}
	})
}

// wrongIDIssuer issues SVIDs for another ID than asked.
type wrongIDIssuer struct{ *testIssuer }

func (i wrongIDIssuer) IssueX509SVID(_ spiffeid.ID, ttl time.Duration) (*x509svid.SVID, error) {
	return i.testIssuer.IssueX509SVID(spiffeid.RequireFromPath(hrTD, "/agent/x"), ttl)
}

func TestNewRotatorErrors(t *testing.T) {
	failing := newTestIssuer(t)
	failing.fail(1)
	tests := []struct {
		name   string
		issuer Issuer
		id     spiffeid.ID
		ttl    time.Duration
		want   string
	}{
		{"nil issuer", nil, nodeID, time.Hour, "issuer is nil"},
		{"empty ID", newTestIssuer(t), spiffeid.ID{}, time.Hour, "SPIFFE ID is empty"},
		{"zero ttl", newTestIssuer(t), nodeID, 0, "not positive"},
		{"issuer fails", failing, nodeID, time.Hour, "CA unavailable"},
		{"issuer returns another ID", wrongIDIssuer{newTestIssuer(t)}, nodeID, time.Hour, "issuer returned an SVID for spiffe://hr.example.corp/agent/x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewRotator(tt.issuer, tt.id, tt.ttl)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("NewRotator error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}
