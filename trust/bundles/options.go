package bundles

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Option configures NewSet and NewWatcher: the injected collaborators.
// Options are sealed: only this package implements them.
type Option interface{ apply(*options) }

type options struct {
	logger   *slog.Logger
	registry prometheus.Registerer
	now      func() time.Time
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(o *options) {
		if l != nil {
			o.logger = l
		}
	})
}

// WithMetrics registers the metrics with reg; the default registers none.
// NewSet registers mcpmesh_federation_bundle_sequence, NewWatcher
// mcpmesh_federation_bundle_fetch_errors_total.
func WithMetrics(reg prometheus.Registerer) Option {
	return optionFunc(func(o *options) { o.registry = reg })
}

// WithClock sets the clock stamped on proposed commands; the default is
// time.Now.
func WithClock(now func() time.Time) Option {
	return optionFunc(func(o *options) {
		if now != nil {
			o.now = now
		}
	})
}

func newOptions(opts []Option) options {
	o := options{logger: slog.New(slog.DiscardHandler), now: time.Now}
	for _, opt := range opts {
		opt.apply(&o)
	}
	return o
}
