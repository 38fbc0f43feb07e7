package raftstore

import (
	"context"
	"fmt"
	"log/slog"
)

// pebbleLogger adapts a *slog.Logger to pebble's Logger interface.
type pebbleLogger struct {
	l *slog.Logger
}

func (p pebbleLogger) Infof(format string, args ...any) {
	// pebble's Info messages (WAL and flush chatter) are debug detail for us.
	if p.l.Enabled(context.Background(), slog.LevelDebug) {
		p.l.Debug(fmt.Sprintf(format, args...), "component", "pebble")
	}
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
}

// Fatalf is called by pebble on an unrecoverable internal error and must not
// return (pebble's default logger calls os.Exit). We log and panic instead,
// so the process's own crash handling and deferred cleanups still run.
func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.l.Error(msg, "component", "pebble", "fatal", true)
	panic("raftstore: pebble fatal error: " + msg)
}
