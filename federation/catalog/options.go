package catalog

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Option configures NewExporter and NewImporter.
type Option interface{ apply(*options) }

type options struct {
	logger *slog.Logger
	reg    prometheus.Registerer
	now    func() time.Time
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return optionFunc(func(o *options) { o.logger = l }) }

// WithMetrics registers the metrics with reg: the exporter's
// mcpmesh_federation_catalog_exported_tools{consumer}, the importer's
// mcpmesh_federation_catalog_imported_tools{origin} and
// mcpmesh_federation_catalog_syncs_total{origin,result}.
func WithMetrics(reg prometheus.Registerer) Option {
	return optionFunc(func(o *options) { o.reg = reg })
}

// WithClock sets the clock; the default is time.Now.
func WithClock(now func() time.Time) Option { return optionFunc(func(o *options) { o.now = now }) }

func newOptions(opts []Option) options {
	o := options{logger: slog.New(slog.DiscardHandler), now: time.Now}
	for _, opt := range opts {
		opt.apply(&o)
	}
	return o
}
