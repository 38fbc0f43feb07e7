//go:build !linux

package main

import "os/exec"

// dieWithParent is Linux's Pdeathsig; elsewhere children are stopped when
// the demo returns (Ctrl-C, -once or an error), not when it is killed.
func dieWithParent(cmd *exec.Cmd) {}
