package jwks

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// publisher serves a key set that the test changes, counting fetches.
type publisher struct {
	mu      sync.Mutex
	set     jose.JSONWebKeySet
	status  int
	fetches int
}

func (p *publisher) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fetches++
	if p.status != 0 {
		w.WriteHeader(p.status)
		return
	}
	json.NewEncoder(w).Encode(p.set)
}

func (p *publisher) publish(kids ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.set.Keys = nil
	for _, kid := range kids {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		p.set.Keys = append(p.set.Keys, jose.JSONWebKey{Key: k.Public(), KeyID: kid, Algorithm: "ES256", Use: "sig"})
	}
}

func (p *publisher) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fetches
}

func TestRefetchesForUnknownKeysAtMostOncePerInterval(t *testing.T) {
	pub := &publisher{}
	pub.publish("a")
	srv := httptest.NewServer(pub)
	defer srv.Close()
	now := time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)
	s := New(Config{URL: srv.URL, MinRefreshInterval: 10 * time.Second}, func() time.Time { return now })

	if _, err := s.Key(t.Context(), "a"); err != nil || pub.count() != 1 {
		t.Fatalf("first key: %v after %d fetches", err, pub.count())
	}
	if !s.Has("a") || s.Has("b") {
		t.Error("Has disagrees with the fetched set")
	}
	// A rotation: b is unknown, so the set is fetched again, once.
	pub.publish("a", "b")
	now = now.Add(11 * time.Second)
	if _, err := s.Key(t.Context(), "b"); err != nil || pub.count() != 2 {
		t.Fatalf("rotated key: %v after %d fetches", err, pub.count())
	}
	// Made-up ids within the interval cause no fetch.
	for range 5 {
		var missing *MissingError
		if _, err := s.Key(t.Context(), "forged"); !errors.As(err, &missing) || missing.Fetch != nil {
			t.Fatalf("forged key: err = %v", err)
		}
	}
	if pub.count() != 2 {
		t.Errorf("forged key ids caused %d fetches, want none", pub.count()-2)
	}
	// A failing publisher is reported in the MissingError.
	pub.mu.Lock()
	pub.status = http.StatusBadGateway
	pub.mu.Unlock()
	now = now.Add(6 * time.Minute)
	var missing *MissingError
	if _, err := s.Key(t.Context(), "c"); !errors.As(err, &missing) || missing.Fetch == nil {
		t.Fatalf("key with the publisher down: err = %v, want the fetch error", err)
	}
}
