package audit

import (
	"errors"
	"log/slog"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures a [Log]. The zero value is not usable: Dir is required.
type Config struct {
	// Dir is the directory of the audit database, normally
	// <data dir>/audit. It is created if missing. Required.
	Dir string
	// Node is the node's id, written into every record. Required.
	Node string
	// NoSync commits without fsync. Only for tests and benchmarks of other
	// things: a crash may then lose records whose calls were acknowledged.
	// Default false.
	NoSync bool
	// MaxBatch bounds how many records one commit writes. Default 1024.
	MaxBatch int
}

// Validate reports whether c can open a Log.
func (c *Config) Validate() error {
	switch {
	case c.Dir == "":
		return errors.New("audit log: config: dir is required; set it to the directory for the audit database")
	case c.Node == "":
		return errors.New("audit log: config: node is required (the node id written into every record)")
	case c.MaxBatch < 0:
		return errors.New("audit log: config: max batch must not be negative")
	}
	return nil
}

func (c *Config) setDefaults() {
	if c.MaxBatch == 0 {
		c.MaxBatch = 1024
	}
}

// Option configures optional collaborators of a Log. Options are built by
// the With functions of this package only.
type Option interface{ apply(*options) }

type options struct {
	logger *slog.Logger
	reg    prometheus.Registerer
	fs     vfs.FS
	now    func() time.Time
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return optionFunc(func(o *options) { o.logger = l }) }

// WithMetrics registers the log's metrics with reg; by default they are
// kept but not registered.
func WithMetrics(reg prometheus.Registerer) Option {
	return optionFunc(func(o *options) { o.reg = reg })
}

// WithFS makes the log use fs instead of the operating system's file
// system, for tests (vfs.NewMem, vfs.NewCrashableMem).
func WithFS(fs vfs.FS) Option { return optionFunc(func(o *options) { o.fs = fs }) }

// WithClock sets the clock that stamps records without a time and decides
// retention; the default is time.Now.
func WithClock(now func() time.Time) Option { return optionFunc(func(o *options) { o.now = now }) }
