package state

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestPolicies(t *testing.T) {
	a := &applier{t: t, f: newTestFSM(t)}
	if p, err := a.f.Policies(); err != nil || len(p.Files) != 0 || p.ModifyIndex != 0 {
		t.Fatalf("a new registry has policies %+v, %v", p, err)
	}
	a.mustFail(PutPolicies{Files: []PolicyFile{{Name: "", Text: "x"}}, By: "admin", At: t0}, KindInvalid, "no name")
	a.mustFail(PutPolicies{Files: []PolicyFile{{Name: "a.cedar"}, {Name: "a.cedar"}}, By: "admin", At: t0}, KindInvalid, "twice")

	put := a.mustOK(PutPolicies{Files: []PolicyFile{{Name: "b.cedar", Text: "B"}, {Name: "a.cedar", Text: "A"}}, By: "admin", At: t0})
	if r := a.mustOK(PutPolicies{Files: []PolicyFile{{Name: "a.cedar", Text: "A"}, {Name: "b.cedar", Text: "B"}}, By: "ci", At: t0.Add(time.Hour)}); !r.Unchanged {
		t.Error("the same files in another order changed the set")
	}
	p, err := a.f.Policies()
	if err != nil {
		t.Fatal(err)
	}
	want := Policies{Files: []PolicyFile{{Name: "a.cedar", Text: "A"}, {Name: "b.cedar", Text: "B"}}, UpdatedBy: "admin", UpdatedAt: t0, ModifyIndex: put.Index}
	if diff := cmp.Diff(want, p); diff != "" {
		t.Errorf("policies (-want +got):\n%s", diff)
	}

	cleared := a.mustOK(PutPolicies{By: "admin", At: t0})
	if p, _ := a.f.Policies(); len(p.Files) != 0 || p.ModifyIndex != cleared.Index {
		t.Errorf("after clearing: %+v", p)
	}
}
