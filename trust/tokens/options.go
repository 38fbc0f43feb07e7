package tokens

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Option configures NewMinter, NewVerifier and NewRotator: the injected
// collaborators. Each takes the options that concern it and ignores the
// rest.
type Option interface{ apply(*options) }

type options struct {
	logger   *slog.Logger
	now      func() time.Time
	registry prometheus.Registerer
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return optionFunc(func(o *options) { o.logger = l }) }

// WithClock sets the clock; the default is time.Now.
func WithClock(now func() time.Time) Option { return optionFunc(func(o *options) { o.now = now }) }

// WithMetrics registers the metrics with reg; the default registers none.
func WithMetrics(reg prometheus.Registerer) Option {
	return optionFunc(func(o *options) { o.registry = reg })
}

func newOptions(opts []Option) options {
	o := options{logger: slog.New(slog.DiscardHandler), now: time.Now}
	for _, opt := range opts {
		opt.apply(&o)
	}
	return o
}
