package e2e

import (
	"slices"
	"testing"

	"github.com/mcpmesh/mcpmesh/registry/api"
	"github.com/mcpmesh/mcpmesh/registry/card"
	"github.com/mcpmesh/mcpmesh/registry/state"
	"github.com/mcpmesh/mcpmesh/test/internal/testcluster"
)

// TestReplication: a card submitted on one follower and approved on the
// other reaches every node, with its history.
func TestReplication(t *testing.T) {
	t.Parallel()
	c := startCluster(t, testcluster.Options{NoSync: true})
	leader := c.Leader(leaderTimeout)
	fs := c.Followers(leader)
	if len(fs) != 2 {
		t.Fatalf("want 2 followers of %s, got %d", leader.ID, len(fs))
	}
	const name = "corp.hr/directory"
	r := ref(name, "1.0.0")

	// The follower forwards the write to the leader and answers with the
	// version as it now has it.
	res := submit(t, c, fs[0], name, "1.0.0")
	if res.State != card.StateSubmitted || res.Unchanged || len(res.Tools) != 1 || res.Tools[0].Name != "lookup" {
		t.Fatalf("submit on follower %s answered %+v; want a new submitted version with tool lookup", fs[0].ID, res)
	}

	// A consistent read sees it at once on every node.
	for _, n := range c.Nodes {
		d, out, ok := show(t, c, n, r, "-consistent")
		if !ok {
			t.Fatalf("on %s: registry show %s -consistent right after the submit failed: %s", n.ID, r, out)
		}
		if d.State != card.StateSubmitted || d.SubmittedBy != "token:bootstrap" || len(d.ToolVersions) != 1 || d.CardHash == "" {
			t.Errorf("on %s: consistent read shows state %q, submitted by %q, %d tool versions, card hash %q; want submitted by token:bootstrap with 1 tool",
				n.ID, d.State, d.SubmittedBy, len(d.ToolVersions), d.CardHash)
		}
	}

	// Approve on the other follower; it answers with the new state.
	out := mustCLI(t, c, fs[1], "registry", "approve", r, "-reason", "reviewed by security", "-o", "json")
	if sv := decode[state.ServerVersion](t, "registry approve", out); sv.State != card.StateApproved {
		t.Errorf("approve on follower %s answered state %q, want approved (a stale read of the follower's own state?)", fs[1].ID, sv.State)
	}

	// Every node, reading locally, eventually shows the approval with who
	// and why, and all three give the very same answer.
	var first string
	for _, n := range c.Nodes {
		d := eventuallyShow(t, c, n, r, func(d api.VersionDetail) bool { return d.State == card.StateApproved })
		h := d.History
		if len(h) != 2 ||
			h[0].To != card.StateSubmitted || h[0].By != "token:bootstrap" ||
			h[1].From != card.StateSubmitted || h[1].To != card.StateApproved || h[1].By != "token:bootstrap" || h[1].Reason != "reviewed by security" {
			t.Errorf("on %s: history = %+v; want submitted by token:bootstrap, then submitted → approved by token:bootstrap with reason %q", n.ID, h, "reviewed by security")
		}
		_, raw, _ := show(t, c, n, r)
		if first == "" {
			first = raw
		} else if raw != first {
			t.Errorf("on %s: registry show %s differs from %s's answer:\n%s\nvs\n%s", n.ID, r, c.Nodes[0].ID, raw, first)
		}
	}
}

// TestTenants: a tenant added on one node is listed on another.
func TestTenants(t *testing.T) {
	t.Parallel()
	c := startCluster(t, testcluster.Options{NoSync: true})
	leader := c.Leader(leaderTimeout)
	fs := c.Followers(leader)
	add, other := fs[0], leader

	out := mustCLI(t, c, add, "tenant", "add", "payroll", "-owner", "alice@corp", "-o", "json")
	if tn := decode[state.Tenant](t, "tenant add", out); tn.Name != "payroll" || !slices.Equal(tn.Owners, []string{"alice@corp"}) {
		t.Errorf("tenant add on %s answered %+v; want payroll owned by alice@corp", add.ID, tn)
	}

	var last []state.Tenant
	ok := testcluster.Eventually(catchUp, func() bool {
		last = tenants(t, c, other)
		return len(last) == 1
	})
	if !ok {
		t.Fatalf("on %s: tenant list never showed the tenant added on %s; last seen %+v", other.ID, add.ID, last)
	}
	if tn := last[0]; tn.Name != "payroll" || !slices.Equal(tn.Owners, []string{"alice@corp"}) || tn.CreatedBy != "token:bootstrap" || tn.CreatedAt.IsZero() {
		t.Errorf("on %s: tenant = %+v; want payroll owned by alice@corp, created by token:bootstrap", other.ID, tn)
	}
	// The third node agrees.
	if got := tenants(t, c, fs[1], "-consistent"); len(got) != 1 || got[0].Name != "payroll" {
		t.Errorf("on %s: consistent tenant list = %+v; want payroll", fs[1].ID, got)
	}
}
