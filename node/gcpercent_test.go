package node

import (
	"os"
	"runtime/debug"
	"testing"
)

func TestTuneGC(t *testing.T) {
	before := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(before) })

	if _, set := os.LookupEnv("GOGC"); !set {
		if got := TuneGC(); got != DefaultGCPercent {
			t.Errorf("TuneGC() = %d without GOGC, want %d", got, DefaultGCPercent)
		}
		if pct := debug.SetGCPercent(100); pct != DefaultGCPercent {
			t.Errorf("GC percent in force = %d, want %d", pct, DefaultGCPercent)
		}
	}
	// With GOGC set, what the runtime took from it stays in force.
	t.Setenv("GOGC", "150")
	debug.SetGCPercent(150)
	if got := TuneGC(); got != 150 {
		t.Errorf("TuneGC() = %d with GOGC=150, want 150", got)
	}
	if pct := debug.SetGCPercent(100); pct != 150 {
		t.Errorf("GC percent in force = %d with GOGC=150, want it left at 150", pct)
	}
}
