// Package pebblelog sends pebble's log lines to slog, for every pebble
// store of a node: the Raft log, the registry state and the audit log.
package pebblelog

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/cockroachdb/pebble/v2"
)

// New returns a pebble.Logger that logs to l with component=pebble:
// pebble's info messages (WAL, flush and compaction chatter) at debug
// level, formatted only when debug is on, and its errors at error level.
// Fatalf, which pebble calls on an unrecoverable internal error and which
// must not return, logs and panics with owner (the store, e.g. "audit")
// in the message, instead of exiting the process as pebble's default
// logger does, so the process's own crash handling and deferred cleanups
// still run.
func New(l *slog.Logger, owner string) pebble.Logger { return logger{l: l, owner: owner} }

type logger struct {
	l     *slog.Logger
	owner string
}

func (p logger) Infof(format string, args ...any) {
	if p.l.Enabled(context.Background(), slog.LevelDebug) {
		p.l.Debug(fmt.Sprintf(format, args...), "component", "pebble")
	}
}

func (p logger) Errorf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
}

func (p logger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.l.Error(msg, "component", "pebble", "fatal", true)
	panic(p.owner + ": pebble fatal error: " + msg)
}
