package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/mcpmesh/mcpmesh/registry/api"
	"github.com/mcpmesh/mcpmesh/registry/card"
	"github.com/mcpmesh/mcpmesh/registry/state"
	"github.com/mcpmesh/mcpmesh/test/internal/testcluster"
)

// TestSnapshotSaveRestore: a saved snapshot, restored through a follower,
// takes every node back to the state at the save; a corrupted snapshot is
// refused and changes nothing.
func TestSnapshotSaveRestore(t *testing.T) {
	t.Parallel()
	c := startCluster(t, testcluster.Options{NoSync: true})
	leader := c.Leader(leaderTimeout)
	fs := c.Followers(leader)
	const name = "corp.hr/directory"
	dir := t.TempDir()

	// The state at the save: 1.0.0 submitted, tenant payroll.
	submit(t, c, leader, name, "1.0.0")
	mustCLI(t, c, leader, "tenant", "add", "payroll", "-owner", "alice@corp")
	file := filepath.Join(dir, "registry.snap")
	out := mustCLI(t, c, fs[0], "operator", "snapshot", "save", "-f", file)
	if !strings.Contains(out, "saved snapshot to "+file) {
		t.Errorf("snapshot save said %q", out)
	}
	saved, err := os.ReadFile(file)
	if err != nil || len(saved) == 0 {
		t.Fatalf("snapshot file: %d bytes, %v", len(saved), err)
	}
	atSave := mustCLI(t, c, leader, "registry", "list", "-consistent", "-o", "json")

	// Later changes: a new version, an approval, a tenant.
	submit(t, c, leader, name, "2.0.0")
	mustCLI(t, c, leader, "registry", "approve", ref(name, "1.0.0"))
	mustCLI(t, c, leader, "tenant", "add", "recruiting", "-owner", "bob@corp")
	afterChanges := mustCLI(t, c, leader, "registry", "list", "-consistent", "-o", "json")

	// A corrupted snapshot (one byte flipped in the middle, and one in the
	// header) is refused with one line, and changes nothing.
	for _, at := range []int{len(saved) / 2, 3} {
		bad := append([]byte(nil), saved...)
		bad[at] ^= 0x40
		badFile := writeFile(t, dir, "corrupt.snap", bad)
		out, code := c.CLI(fs[1], "operator", "snapshot", "restore", "-f", badFile)
		wantFailure(t, "restore of a snapshot corrupted at byte "+strconv.Itoa(at), out, code, 1, "corrupt")
	}
	if got := mustCLI(t, c, leader, "registry", "list", "-consistent", "-o", "json"); got != afterChanges {
		t.Errorf("a refused restore changed the registry:\n%s\nwant\n%s", got, afterChanges)
	}

	// Restore through a follower, which forwards it to the leader.
	out = mustCLI(t, c, fs[1], "operator", "snapshot", "restore", "-f", file)
	if !strings.Contains(out, "restored the namespace from "+file) {
		t.Errorf("snapshot restore said %q", out)
	}
	// Every node, reading locally, is back at the save: 2.0.0 is gone,
	// 1.0.0 is submitted again, recruiting is gone.
	for _, n := range c.Nodes {
		var list string
		var tens []state.Tenant
		ok := testcluster.Eventually(catchUp, func() bool {
			list = mustCLI(t, c, n, "registry", "list", "-o", "json")
			tens = tenants(t, c, n)
			return list == atSave && len(tens) == 1 && tens[0].Name == "payroll"
		})
		if !ok {
			t.Errorf("%s after the restore: registry list\n%s\nwant (at the save)\n%s\ntenants %+v, want only payroll", n.ID, list, atSave, tens)
		}
		if _, raw, ok := show(t, c, n, ref(name, "2.0.0")); ok || !strings.Contains(raw, "not registered") {
			t.Errorf("%s after the restore: the version submitted after the save is still there: %s", n.ID, raw)
		}
	}

	// A node restarted now comes back with the restored state, not the one
	// its own log had before.
	fs[0].Stop(stopTimeout)
	fs[0].Start()
	fs[0].WaitReady(readyTimeout)
	if got := mustCLI(t, c, fs[0], "registry", "list", "-o", "json"); got != atSave {
		t.Errorf("%s restarted after the restore: registry list\n%s\nwant (at the save)\n%s", fs[0].ID, got, atSave)
	}

	// The restored cluster takes writes, and they reach every node.
	mustCLI(t, c, fs[0], "registry", "approve", ref(name, "1.0.0"), "-reason", "after restore")
	for _, n := range c.Nodes {
		eventuallyShow(t, c, n, ref(name, "1.0.0"), func(d api.VersionDetail) bool {
			return d.State == card.StateApproved && len(d.History) == 2 && d.History[1].Reason == "after restore"
		})
	}
}
