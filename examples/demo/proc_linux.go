package main

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the child get SIGKILL when the demo exits, however
// it exits, so no node or server outlives it.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
