package validate

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
)

// schemaN returns a distinct valid schema for each n.
func schemaN(n int) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"type":"object","properties":{"n":{"maximum":%d}}}`, n))
}

func mustHash(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	h, err := Hash(raw)
	if err != nil {
		t.Fatalf("Hash(%s): %v", raw, err)
	}
	return h
}

func TestCacheHitsAndMisses(t *testing.T) {
	c := NewCache(0)
	a := json.RawMessage(`{"type":"object","properties":{"n":{"type":"integer"}}}`)
	// The same schema with other key order and spacing: the same hash.
	a2 := json.RawMessage(`{ "properties": {"n": {"type": "integer"}}, "type": "object" }`)
	b := json.RawMessage(`{"type":"object","properties":{"n":{"type":"string"}}}`)
	ha, ha2, hb := mustHash(t, a), mustHash(t, a2), mustHash(t, b)
	if ha != ha2 || ha == hb {
		t.Fatalf("hashes: a %s, a reordered %s, b %s; want a = a reordered ≠ b", ha, ha2, hb)
	}

	s1, err := c.Schema(ha, a)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := c.Schema(ha2, a2)
	if err != nil {
		t.Fatal(err)
	}
	if s1 != s2 {
		t.Errorf("equal hashes gave different compiled schemas")
	}
	s3, err := c.Schema(hb, b)
	if err != nil {
		t.Fatal(err)
	}
	if s3 == s1 {
		t.Errorf("a changed schema gave the cached one")
	}
	if err := s3.Validate(json.RawMessage(`{"n":"x"}`)); err != nil {
		t.Errorf("the changed schema does not validate as itself: %v", err)
	}
	if hits, misses := c.Stats(); hits != 1 || misses != 2 || c.Len() != 2 {
		t.Errorf("stats: %d hits, %d misses, %d entries; want 1, 2, 2", hits, misses, c.Len())
	}
}

func TestCacheKeepsCompileErrors(t *testing.T) {
	c := NewCache(4)
	bad := json.RawMessage(`{"type":"object","properties":{"a":{"type":"nope"}}}`)
	h := mustHash(t, bad)
	for range 3 {
		s, err := c.Schema(h, bad)
		var se *SchemaError
		if s != nil || !errors.As(err, &se) {
			t.Fatalf("Schema of an invalid schema = %v, %v; want nil and a *SchemaError", s, err)
		}
	}
	if hits, misses := c.Stats(); hits != 2 || misses != 1 {
		t.Errorf("stats: %d hits, %d misses; want the error compiled once and then served from the cache", hits, misses)
	}
}

// TestCacheBounded: a full cache evicts, and by CLOCK a schema used since
// the hand last passed survives over one that was not.
func TestCacheBounded(t *testing.T) {
	c := NewCache(2)
	get := func(n int) *Schema {
		t.Helper()
		raw := schemaN(n)
		s, err := c.Schema(mustHash(t, raw), raw)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s0 := get(0)
	get(1)
	get(0) // used: 0 gets its second chance
	get(2) // evicts 1
	if c.Len() != 2 {
		t.Fatalf("cache of capacity 2 holds %d entries", c.Len())
	}
	_, misses := c.Stats()
	if get(0) != s0 {
		t.Errorf("the recently used schema was evicted")
	}
	if _, m := c.Stats(); m != misses {
		t.Errorf("schema 0 was compiled again; want it kept")
	}
	get(1)
	if _, m := c.Stats(); m != misses+1 {
		t.Errorf("schema 1 was not compiled again; want it evicted")
	}
	for n := range 50 {
		get(n)
	}
	if c.Len() != 2 {
		t.Errorf("after 50 schemas the cache holds %d entries; want 2", c.Len())
	}
}

func TestCacheConcurrent(t *testing.T) {
	c := NewCache(32) // room for all: no eviction races the check below
	raw := json.RawMessage(string(ledgerTool(t, "transfer_funds").InputSchema))
	h := mustHash(t, raw)
	var wg sync.WaitGroup
	got := make([]*Schema, 16)
	start := make(chan struct{})
	for i := range got {
		wg.Go(func() {
			<-start
			s, err := c.Schema(h, raw)
			if err != nil {
				t.Error(err)
			}
			got[i] = s
			// Churn other entries at the same time.
			other := schemaN(i)
			if _, err := c.Schema(mustHash(t, other), other); err != nil {
				t.Error(err)
			}
		})
	}
	close(start)
	wg.Wait()
	for i, s := range got {
		if s == nil || s != got[0] {
			t.Fatalf("goroutine %d got schema %p; want all the same, non-nil (%p)", i, s, got[0])
		}
	}
	if err := got[0].Validate(json.RawMessage(validTransfer)); err != nil {
		t.Errorf("cached transfer_funds schema refuses valid arguments: %v", err)
	}
	if _, misses := c.Stats(); misses != uint64(len(got))+1 {
		t.Errorf("%d compiles for %d distinct schemas; want concurrent misses of one hash to compile once", misses, len(got)+1)
	}
}
