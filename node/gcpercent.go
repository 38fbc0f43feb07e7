package node

import (
	"os"
	"runtime/debug"
)

// DefaultGCPercent is the garbage collector's target (GOGC) a node process
// runs with unless the GOGC environment variable names one. Go's default,
// 100, collects each time the heap doubles; a node's live heap is small
// (state is in pebble, off the Go heap's hot path) and almost everything a
// call allocates dies with the call, so at 100 the collector ran every few
// hundred calls and took about 9% of a node's CPU under load (make
// bench-gateway). At 400 the heap may grow to five times the live heap
// between collections in exchange. GOGC=100 restores Go's default;
// GOMEMLIMIT caps the heap whatever the percent.
const DefaultGCPercent = 400

// TuneGC sets the process's garbage-collection target to DefaultGCPercent
// unless GOGC is set in the environment, and returns the target in force
// (-1: collection off, as GOGC=off).
func TuneGC() int {
	if _, set := os.LookupEnv("GOGC"); set {
		pct := debug.SetGCPercent(100)
		debug.SetGCPercent(pct)
		return pct
	}
	debug.SetGCPercent(DefaultGCPercent)
	return DefaultGCPercent
}
