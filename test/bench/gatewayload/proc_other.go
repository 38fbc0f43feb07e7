//go:build !linux

package main

import (
	"errors"
	"os/exec"
)

// cpuTicks needs /proc/<pid>/stat: the harness measures on Linux only.
func cpuTicks(pid int) (int64, error) {
	return 0, errors.New("CPU per call is read from /proc/<pid>/stat; run gatewayload on Linux")
}

// dieWithParent is Linux's Pdeathsig; elsewhere children are killed at the
// end of a run only.
func dieWithParent(cmd *exec.Cmd) {}
