//go:build !linux

package bench

import "testing"

// checkTmpfs only knows how to detect a tmpfs on Linux.
func checkTmpfs(b *testing.B, dir string) {}
