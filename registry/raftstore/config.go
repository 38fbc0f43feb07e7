package raftstore

import (
	"errors"
	"log/slog"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Config configures a [Store]. The zero value is not usable: Dir is required.
type Config struct {
	// Dir is the directory holding the pebble database. It is created if it
	// does not exist. Required. When [WithFS] is given, Dir is a path in that
	// file system.
	Dir string `yaml:"dir"`

	// NoSync, when true, commits writes without fsync. Only for tests and
	// benchmarks: a crash may lose the most recent acknowledged writes, which
	// breaks Raft's safety. The default, false, fsyncs every StoreLog,
	// StoreLogs, DeleteRange, Set and SetUint64 before it returns.
	NoSync bool `yaml:"no_sync"`
}

// Validate reports whether c can be used to open a [Store].
func (c *Config) Validate() error {
	if c.Dir == "" {
		return errors.New("raftstore: config: dir is required; set it to the directory for the Raft log database")
	}
	return nil
}

// Option configures optional collaborators of a [Store]. Options are built
// by the With functions of this package only.
type Option interface {
	apply(*options)
}

type options struct {
	fs     vfs.FS
	logger *slog.Logger
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// WithFS makes the store use fs instead of the operating system's file
// system, for tests (vfs.NewMem, vfs.NewCrashableMem). A nil fs means the
// default, vfs.Default.
func WithFS(fs vfs.FS) Option {
	return optionFunc(func(o *options) { o.fs = fs })
}

// WithLogger sends the store's and pebble's log messages to l: pebble's
// informational messages at debug level, its errors at error level. Without
// this option, or with a nil l, nothing is logged.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(o *options) { o.logger = l })
}
