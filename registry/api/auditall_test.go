package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mcpmesh/mcpmesh/node/audit"
)

// label names a record as node/seq for comparisons.
func label(r audit.Record) string { return fmt.Sprintf("%s/%d", r.Node, r.Seq) }

func TestMergeNewest(t *testing.T) {
	t0 := time.Date(2026, 11, 3, 9, 0, 0, 0, time.UTC)
	rec := func(node string, seq uint64, sec int) audit.Record {
		return audit.Record{Node: node, Seq: seq, Time: t0.Add(time.Duration(sec) * time.Second)}
	}
	answers := [][]audit.Record{
		{rec("n1", 1, 1), rec("n1", 2, 4), rec("n1", 3, 4)},
		{rec("n2", 7, 2), rec("n2", 8, 4)},
		nil, // a replica that did not answer
		{rec("n3", 1, 3)},
	}
	var got []string
	for _, r := range mergeNewest(answers, 100) {
		got = append(got, label(r))
	}
	// Same time (4s): by node, then by number.
	want := []string{"n1/1", "n2/7", "n3/1", "n1/2", "n1/3", "n2/8"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("merged (-want +got):\n%s", diff)
	}
	got = nil
	for _, r := range mergeNewest(answers, 2) {
		got = append(got, label(r))
	}
	if diff := cmp.Diff([]string{"n1/3", "n2/8"}, got); diff != "" {
		t.Errorf("merged, limit 2 (-want +got):\n%s", diff)
	}
	if got := mergeNewest(nil, 5); got == nil || len(got) != 0 {
		t.Errorf("no answers: %v, want an empty list (JSON [])", got)
	}
}

// lines is a replica's export: JSON lines of records (node, seq, second).
func lines(node string, recs ...[2]int) string {
	t0 := time.Date(2026, 11, 3, 9, 0, 0, 0, time.UTC)
	var b strings.Builder
	for _, r := range recs {
		line, _ := json.Marshal(audit.Record{Node: node, Seq: uint64(r[0]), Time: t0.Add(time.Duration(r[1]) * time.Second), Kind: audit.KindCall})
		b.Write(line)
		b.WriteByte('\n')
	}
	return b.String()
}

// failingReader yields r, then fails with err.
type failingReader struct {
	r   io.Reader
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, f.err
	}
	return n, err
}

func TestMergeExports(t *testing.T) {
	cut := errors.New("connection reset")
	streams := []*exportStream{
		{node: "n1", dec: json.NewDecoder(strings.NewReader(lines("n1", [2]int{1, 1}, [2]int{2, 5}, [2]int{3, 9})))},
		nil, // a replica with no client: its error is already in failed
		{node: "n2", dec: json.NewDecoder(strings.NewReader(lines("n2", [2]int{4, 2}, [2]int{5, 5})))},
		// n3 fails after its second record.
		{node: "n3", dec: json.NewDecoder(&failingReader{strings.NewReader(lines("n3", [2]int{1, 3}, [2]int{2, 6})), cut})},
		// n4's address answers with n5's records.
		{node: "n4", dec: json.NewDecoder(strings.NewReader(lines("n5", [2]int{1, 0})))},
	}
	failed := make([]error, len(streams))
	failed[1] = errors.New("unreachable")
	var out strings.Builder
	if err := mergeExports(&out, streams, failed); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
		var r audit.Record
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		got = append(got, label(r))
	}
	want := []string{"n1/1", "n2/4", "n3/1", "n1/2", "n2/5", "n3/2", "n1/3"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("merged export (-want +got):\n%s", diff)
	}
	if failed[0] != nil || failed[2] != nil {
		t.Errorf("complete streams marked failed: %v, %v", failed[0], failed[2])
	}
	if failed[1] == nil || failed[1].Error() != "unreachable" {
		t.Errorf("unreachable replica: %v", failed[1])
	}
	if failed[3] == nil || !errors.Is(failed[3], cut) || !strings.Contains(failed[3].Error(), "after 2 records") {
		t.Errorf("cut stream: %v, want it stopped after 2 records by %v", failed[3], cut)
	}
	if failed[4] == nil || !strings.Contains(failed[4].Error(), `node "n5"'s, not "n4"'s`) {
		t.Errorf("stream of another node: %v", failed[4])
	}
}
