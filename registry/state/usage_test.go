package state

import (
	"bytes"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestQuotas(t *testing.T) {
	a := &applier{t: t, f: newTestFSM(t)}
	if q, err := a.f.Quotas(); err != nil || len(q.Quotas) != 0 {
		t.Fatalf("quotas of a new registry = %+v, %v; want none", q, err)
	}
	set := []Quota{
		{Tenant: "payroll", Calls: 1000, Budget: 12.5, Currency: "EUR", WarnAt: 0.9},
		{Tenant: "benefits", Calls: 10},
	}
	r := a.mustOK(PutQuotas{Quotas: set, By: "alice", At: t0})
	q, err := a.f.Quotas()
	if err != nil {
		t.Fatal(err)
	}
	want := Quotas{Quotas: []Quota{set[1], set[0]}, UpdatedBy: "alice", UpdatedAt: t0, ModifyIndex: r.Index}
	if diff := cmp.Diff(want, q); diff != "" {
		t.Errorf("quotas (-want +got):\n%s", diff)
	}
	if p, ok := q.For("payroll"); !ok || p.BudgetMicros() != 12_500_000 || p.Warn() != 0.9 {
		t.Errorf("For(payroll) = %+v, %v", p, ok)
	}
	if b, _ := q.For("benefits"); b.Warn() != DefaultWarnAt {
		t.Errorf("default warnAt = %v", b.Warn())
	}
	if _, ok := q.For("sales"); ok {
		t.Error("a tenant without a quota has one")
	}
	if r := a.mustOK(PutQuotas{Quotas: []Quota{set[1], set[0]}, By: "bob", At: t0.Add(time.Hour)}); !r.Unchanged {
		t.Error("the same set in another order changed the state")
	}

	for _, tc := range []struct {
		q    Quota
		want string
	}{
		{Quota{Tenant: "Payroll", Calls: 1}, "tenant name"},
		{Quota{Tenant: "payroll"}, "neither calls nor budget"},
		{Quota{Tenant: "payroll", Calls: -1}, "calls is -1"},
		{Quota{Tenant: "payroll", Budget: 10}, "currency"},
		{Quota{Tenant: "payroll", Budget: 10, Currency: "eur"}, "ISO 4217"},
		{Quota{Tenant: "payroll", Calls: 5, Currency: "EUR"}, "without a budget"},
		{Quota{Tenant: "payroll", Calls: 5, WarnAt: 1.5}, "warnAt"},
		{Quota{Tenant: "payroll", Budget: -3, Currency: "EUR"}, "budget -3"},
	} {
		a.mustFail(PutQuotas{Quotas: []Quota{tc.q}, By: "x", At: t0}, KindInvalid, tc.want)
	}
	a.mustFail(PutQuotas{Quotas: []Quota{{Tenant: "a", Calls: 1}, {Tenant: "a", Calls: 2}}, By: "x", At: t0}, KindInvalid, "two quotas")
	// Refused sets left the stored one alone; an empty set removes all.
	a.mustOK(PutQuotas{By: "carol", At: t0})
	if q, _ := a.f.Quotas(); len(q.Quotas) != 0 {
		t.Errorf("after an empty set: %+v", q.Quotas)
	}
}

func TestFlushUsageExactlyOnce(t *testing.T) {
	a := &applier{t: t, f: newTestFSM(t)}
	row := func(tenant, tool string, calls, micros int64) UsageRow {
		return UsageRow{Month: "2026-11", Tenant: tenant, Tool: tool, CallerBU: "hr", Currency: "EUR", Calls: calls, CostMicros: micros}
	}
	first := FlushUsage{Node: "n1", From: 0, To: 10, At: t0, Rows: []UsageRow{row("payroll", "corp.hr/directory/lookup", 3, 750_000), row("benefits", "corp.hr/directory/lookup", 1, 250_000)}}
	a.mustOK(first)
	// The same batch again (a retry after a lost reply, a replay): refused,
	// naming the mark, and nothing counted twice.
	a.mustFail(first, KindConflict, "end at 10")
	res := a.apply(first)
	if mark, ok := MarkOfConflict(res.(*Error)); !ok || mark != 10 {
		t.Errorf("MarkOfConflict = %d, %v; want 10", mark, ok)
	}
	// A batch re-derived after a crash from an older mark overlaps: refused.
	a.mustFail(FlushUsage{Node: "n1", From: 5, To: 12, At: t0, Rows: []UsageRow{row("payroll", "corp.hr/directory/lookup", 1, 0)}}, KindConflict, "end at 10")
	// A batch that skips records is refused too.
	a.mustFail(FlushUsage{Node: "n1", From: 11, To: 12, At: t0, Rows: nil}, KindConflict, "end at 10")
	// Another node has its own mark.
	a.mustOK(FlushUsage{Node: "n2", From: 0, To: 4, At: t0, Rows: []UsageRow{row("payroll", "corp.hr/directory/lookup", 2, 500_000)}})
	a.mustOK(FlushUsage{Node: "n1", From: 10, To: 20, At: t0.Add(time.Second), Rows: []UsageRow{row("payroll", "corp.hr/payroll/run", 1, 2_000_000)}})

	tu, err := a.f.TenantUsage("2026-11", "payroll")
	if err != nil {
		t.Fatal(err)
	}
	if want := (TenantUsage{Month: "2026-11", Tenant: "payroll", Calls: 6, Cost: map[string]int64{"EUR": 3_250_000}}); !cmp.Equal(want, tu) {
		t.Errorf("payroll's total = %+v, want %+v", tu, want)
	}
	if tu, _ := a.f.TenantUsage("2026-10", "payroll"); tu.Calls != 0 {
		t.Errorf("another month has usage: %+v", tu)
	}
	rows, err := a.f.UsageRows("2026-11")
	if err != nil {
		t.Fatal(err)
	}
	wantRows := []UsageRow{row("benefits", "corp.hr/directory/lookup", 1, 250_000), row("payroll", "corp.hr/directory/lookup", 5, 1_250_000), row("payroll", "corp.hr/payroll/run", 1, 2_000_000)}
	if diff := cmp.Diff(wantRows, rows); diff != "" {
		t.Errorf("rows (-want +got):\n%s", diff)
	}
	m, _ := a.f.UsageMark("n1")
	if m.Seq != 20 {
		t.Errorf("n1's mark = %+v, want seq 20", m)
	}
	if m, _ := a.f.UsageMark("n3"); m.Seq != 0 || m.Node != "n3" {
		t.Errorf("a node that never flushed: %+v", m)
	}

	for _, tc := range []struct {
		c    FlushUsage
		want string
	}{
		{FlushUsage{Node: "N1", From: 0, To: 1}, "node id"},
		{FlushUsage{Node: "n9", From: 3, To: 3}, "empty range"},
		{FlushUsage{Node: "n9", From: 0, To: 1, Rows: []UsageRow{{Month: "2026-13", Tool: "a/b"}}}, "malformed"},
		{FlushUsage{Node: "n9", From: 0, To: 1, Rows: []UsageRow{{Month: "2026-11", Tool: "a\x00b"}}}, "malformed"},
		{FlushUsage{Node: "n9", From: 0, To: 1, Rows: []UsageRow{{Month: "2026-11", Tool: "a/b", Calls: -1}}}, "malformed"},
	} {
		a.mustFail(tc.c, KindInvalid, tc.want)
	}
}

func TestUsageSurvivesSnapshots(t *testing.T) {
	a := &applier{t: t, f: newTestFSM(t)}
	a.mustOK(PutQuotas{Quotas: []Quota{{Tenant: "payroll", Budget: 1, Currency: "EUR"}}, By: "alice", At: t0})
	a.mustOK(FlushUsage{Node: "n1", From: 0, To: 7, At: t0, Rows: []UsageRow{{Month: "2026-11", Tenant: "payroll", Tool: "corp.hr/x/y", CallerBU: "hr", Currency: "EUR", Calls: 7, CostMicros: 700_000}}})
	wantQ, _ := a.f.Quotas()
	wantRows, _ := a.f.UsageRows("2026-11")
	wantMarks, _ := a.f.UsageMarks()

	snap, err := a.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	other := &applier{t: t, f: newTestFSM(t)}
	if err := other.f.Restore(nopCloser{bytes.NewReader(sink.Bytes())}); err != nil {
		t.Fatal(err)
	}
	gotQ, _ := other.f.Quotas()
	gotRows, _ := other.f.UsageRows("2026-11")
	gotMarks, _ := other.f.UsageMarks()
	if diff := cmp.Diff([]any{wantQ, wantRows, wantMarks}, []any{gotQ, gotRows, gotMarks}); diff != "" {
		t.Errorf("after restore (-want +got):\n%s", diff)
	}
	// The restored mark still refuses what was counted.
	other.index = a.index
	other.mustFail(FlushUsage{Node: "n1", From: 0, To: 7, At: t0, Rows: nil}, KindConflict, "end at 7")
}

func TestMonths(t *testing.T) {
	for _, tc := range []struct {
		at        time.Time
		month     string
		resetsUTC string
	}{
		{time.Date(2026, 11, 30, 23, 59, 59, 999e6, time.UTC), "2026-11", "2026-12-01T00:00:00Z"},
		{time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), "2026-12", "2027-01-01T00:00:00Z"},
		{time.Date(2026, 12, 31, 23, 0, 0, 0, time.UTC), "2026-12", "2027-01-01T00:00:00Z"},
		// 00:30 on 1 December in Berlin is still November in UTC.
		{time.Date(2026, 12, 1, 0, 30, 0, 0, time.FixedZone("CET", 3600)), "2026-11", "2026-12-01T00:00:00Z"},
	} {
		if got := MonthOf(tc.at); got != tc.month {
			t.Errorf("MonthOf(%v) = %s, want %s", tc.at, got, tc.month)
		}
		if got := MonthEnd(tc.at).Format(time.RFC3339); got != tc.resetsUTC {
			t.Errorf("MonthEnd(%v) = %s, want %s", tc.at, got, tc.resetsUTC)
		}
	}
	if m, err := ParseMonth("2026-11"); err != nil || !m.Equal(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("ParseMonth(2026-11) = %v, %v", m, err)
	}
	for _, bad := range []string{"", "2026-1", "2026-13", "2026-00", "26-11", "2026/11", "2026-11-01", "november"} {
		if _, err := ParseMonth(bad); err == nil {
			t.Errorf("ParseMonth(%q) accepted", bad)
		}
	}
	for _, c := range []float64{0.1, 0.25, 1e-7} {
		m, ok := ToMicros(c)
		if !ok || FromMicros(m)-c > 1e-6 {
			t.Errorf("ToMicros(%v) = %d, %v", c, m, ok)
		}
	}
	// Ten calls of 0.10 make exactly 1.00: integer micro-units.
	var sum int64
	for range 10 {
		m, _ := ToMicros(0.1)
		sum += m
	}
	if b, _ := ToMicros(1.0); sum != b {
		t.Errorf("10 × 0.10 = %d micro-units, budget 1.00 = %d", sum, b)
	}
}
