package ratelimit

import (
	"fmt"
	"testing"
	"time"

	"github.com/mcpmesh/mcpmesh/registry/state"
)

// clock is a settable clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newTest(t *testing.T, replicas int, limits ...state.Limit) (*Limiter, *clock) {
	t.Helper()
	c := &clock{t: time.Date(2026, 11, 3, 12, 0, 0, 0, time.UTC)}
	l := New(WithClock(c.now))
	if err := state.ValidateLimits(limits); err != nil {
		t.Fatal(err)
	}
	l.Set(limits, replicas)
	return l, c
}

// admitted counts the calls of n admitted at the current instant.
func admitted(l *Limiter, c Call, n int) int {
	ok := 0
	for range n {
		if _, yes := l.Allow(c); yes {
			ok++
		}
	}
	return ok
}

var payroll = Call{Principal: "apikey:aaaaaaaaaaaa", Tenant: "payroll", Tool: "corp.hr/directory/search"}

func TestBurstThenRate(t *testing.T) {
	l, c := newTest(t, 1, state.Limit{Tenant: "payroll", Rate: "10/s", Burst: 20})
	if got := admitted(l, payroll, 50); got != 20 {
		t.Fatalf("at once: %d admitted, want the burst of 20", got)
	}
	r, ok := l.Allow(payroll)
	if ok || r.Limit.Tenant != "payroll" || r.RetryAfter != 100*time.Millisecond {
		t.Fatalf("refusal = %+v %v, want tenant payroll, retry after 100ms", r, ok)
	}
	c.advance(time.Second)
	if got := admitted(l, payroll, 50); got != 10 {
		t.Errorf("a second later: %d admitted, want 10", got)
	}
	// Over a long run the rate holds: 10/s for 60 s in 100 ms steps.
	total := 0
	for range 600 {
		c.advance(100 * time.Millisecond)
		total += admitted(l, payroll, 5)
	}
	if total != 600 {
		t.Errorf("60 s at 10/s: %d admitted, want 600", total)
	}
	// Another tenant is not limited by payroll's limit.
	if got := admitted(l, Call{Principal: "x", Tenant: "benefits", Tool: payroll.Tool}, 100); got != 100 {
		t.Errorf("benefits: %d of 100 admitted", got)
	}
}

func TestShareOfReplicas(t *testing.T) {
	// 30/s burst 30 over 3 replicas: each admits 10/s, burst 10.
	l, c := newTest(t, 3, state.Limit{Tenant: "payroll", Rate: "30/s", Burst: 30})
	if got := admitted(l, payroll, 100); got != 10 {
		t.Fatalf("burst share: %d, want 10", got)
	}
	c.advance(time.Second)
	if got := admitted(l, payroll, 100); got != 10 {
		t.Errorf("rate share: %d in a second, want 10", got)
	}
	// N drops to 2: the share rises to 15/s, burst 15.
	l.Set([]state.Limit{{Tenant: "payroll", Rate: "30/s", Burst: 30}}, 2)
	c.advance(2 * time.Second)
	if got := admitted(l, payroll, 100); got != 15 {
		t.Errorf("with 2 replicas: %d, want 15", got)
	}
	// Burst 2 over 3 replicas is at least 1 each.
	l.Set([]state.Limit{{Tenant: "payroll", Rate: "1/m", Burst: 2}}, 3)
	c.advance(time.Hour)
	if got := admitted(l, payroll, 5); got != 1 {
		t.Errorf("burst 2 over 3 replicas: %d, want 1", got)
	}
	r, _ := l.Allow(payroll)
	if r.Replicas != 3 || r.RetryAfter != 3*time.Minute {
		t.Errorf("refusal = %+v, want 3 replicas and a retry after 3m (1/m shared by 3)", r)
	}
}

// TestEveryMatchingLimit: a call takes from every limit that matches;
// a refused call takes from none.
func TestEveryMatchingLimit(t *testing.T) {
	l, c := newTest(t, 1,
		state.Limit{Tenant: "payroll", Rate: "100/s", Burst: 100},
		state.Limit{Tool: "corp.hr/directory/search", Rate: "100/s", Burst: 5},
		state.Limit{Tenant: "payroll", Tool: "corp.hr/directory/search", Rate: "100/s", Burst: 100},
		state.Limit{Identity: "spiffe://hr.example.corp/agent/*", Rate: "1/s", Burst: 1},
	)
	other := Call{Principal: "apikey:bbbbbbbbbbbb", Tenant: "payroll", Tool: "corp.hr/directory/list"}
	// The tool's burst of 5 stops payroll's calls of it ...
	if got := admitted(l, payroll, 10); got != 5 {
		t.Fatalf("calls of the tool: %d, want 5", got)
	}
	r, _ := l.Allow(payroll)
	if r.Limit.Scope() != "tool=corp.hr/directory/search" {
		t.Errorf("refused by %s, want the tool's limit", r.Limit.Scope())
	}
	// ... and the 5 refused calls took nothing from the tenant's 100:
	// 95 more calls of another tool pass.
	if got := admitted(l, other, 200); got != 95 {
		t.Errorf("tenant's other calls: %d, want 95 (100 minus the 5 admitted)", got)
	}
	// Identity prefix: one bucket per agent.
	a := Call{Principal: "spiffe://hr.example.corp/agent/a", Tool: "corp.hr/directory/list"}
	b := Call{Principal: "spiffe://hr.example.corp/agent/b", Tool: "corp.hr/directory/list"}
	if admitted(l, a, 3) != 1 || admitted(l, b, 3) != 1 {
		t.Error("identity prefix: want one call each for agents a and b")
	}
	if got := admitted(l, Call{Principal: "spiffe://finance.example.corp/agent/a"}, 3); got != 3 {
		t.Errorf("an agent outside the prefix: %d of 3 admitted", got)
	}
	// When several are empty, the refusal names the one that refills last.
	c.advance(10 * time.Millisecond)
	r, ok := l.Allow(Call{Principal: "spiffe://hr.example.corp/agent/a", Tenant: "payroll", Tool: "corp.hr/directory/search"})
	if ok || r.Limit.Identity == "" {
		t.Errorf("refusal = %+v, want the identity limit (1/s refills last)", r)
	}
}

func TestEveryTenant(t *testing.T) {
	l, _ := newTest(t, 1, state.Limit{Tenant: "*", Rate: "1/s", Burst: 2})
	for _, tenant := range []string{"payroll", "benefits"} {
		if got := admitted(l, Call{Principal: "p", Tenant: tenant}, 5); got != 2 {
			t.Errorf("tenant %s: %d, want its own burst of 2", tenant, got)
		}
	}
	if got := admitted(l, Call{Principal: "p"}, 5); got != 5 {
		t.Errorf("no tenant: %d of 5, want all (a tenant limit matches tenants only)", got)
	}
}

// TestIdleBucketsAreDropped: memory stays bounded with many agents.
func TestIdleBucketsAreDropped(t *testing.T) {
	l, c := newTest(t, 1, state.Limit{Identity: "*", Rate: "10/s", Burst: 10})
	for i := range 5000 {
		l.Allow(Call{Principal: fmt.Sprintf("apikey:%012d", i)})
		if i%1000 == 999 {
			c.advance(2 * time.Second) // every bucket so far refills
		}
	}
	if n := l.Len(); n > 2048 {
		t.Errorf("%d buckets after 5000 agents, most of them idle and refilled; want ≤ 2048", n)
	}
	// The hard bound holds even when nothing has refilled.
	l2, _ := newTest(t, 1, state.Limit{Identity: "*", Rate: "1/h", Burst: 10})
	l2.max = 1500
	for i := range 5000 {
		l2.Allow(Call{Principal: fmt.Sprintf("apikey:%012d", i)})
	}
	if n := l2.Len(); n > 3000 {
		t.Errorf("%d buckets with a bound of 1500 (and sweeps at twice the size), want ≤ 3000", n)
	}
	// Removing a limit drops its buckets.
	l.Set(nil, 1)
	if n := l.Len(); n != 0 {
		t.Errorf("%d buckets after the limits were removed", n)
	}
	if !l.None() || l2.None() {
		t.Errorf("None() = %v without limits, %v with one", l.None(), l2.None())
	}
}

func BenchmarkAllow(b *testing.B) {
	l := New()
	l.Set([]state.Limit{
		{Tenant: "payroll", Rate: "1000000/s", Burst: 1000000},
		{Tool: "corp.hr/directory/search", Rate: "1000000/s", Burst: 1000000},
		{Identity: "*", Rate: "1000000/s", Burst: 1000000},
	}, 3)
	for b.Loop() {
		l.Allow(payroll)
	}
}
