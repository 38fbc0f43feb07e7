package assertion

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Option configures NewMinter and NewVerifier: the injected collaborators.
type Option interface{ apply(*options) }

type options struct {
	now      func() time.Time
	registry prometheus.Registerer
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// WithClock sets the clock Mint reads; the default is time.Now. Verify
// takes the time as an argument instead.
func WithClock(now func() time.Time) Option { return optionFunc(func(o *options) { o.now = now }) }

// WithMetrics registers the metrics with reg; the default registers none.
func WithMetrics(reg prometheus.Registerer) Option {
	return optionFunc(func(o *options) { o.registry = reg })
}

func newOptions(opts []Option) options {
	o := options{now: time.Now}
	for _, opt := range opts {
		opt.apply(&o)
	}
	return o
}
