package peer

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
)

// Option configures NewServer and NewClient: the injected collaborators.
// Options are sealed: only this package implements them.
type Option interface{ apply(*options) }

type options struct {
	logger   *slog.Logger
	registry prometheus.Registerer
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

// WithMetrics registers the peer metrics with reg; the default registers
// none. A Server and a Client given the same reg share the collectors.
func WithMetrics(reg prometheus.Registerer) Option {
	return optionFunc(func(o *options) { o.registry = reg })
}

func newOptions(opts []Option) options {
	o := options{logger: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt.apply(&o)
	}
	return o
}
