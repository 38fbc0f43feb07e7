package bench

import (
	"syscall"
	"testing"
)

// tmpfsMagic is TMPFS_MAGIC from linux/magic.h.
const tmpfsMagic = 0x01021994

// checkTmpfs warns when the nodes' data would live on a tmpfs, where fsync
// costs nothing and the write numbers say nothing about durability.
func checkTmpfs(b *testing.B, dir string) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err == nil && st.Type == tmpfsMagic {
		b.Logf("WARNING: %s is on a tmpfs: fsync is free there; set TMPDIR to a directory on a disk for honest numbers", dir)
	}
}
