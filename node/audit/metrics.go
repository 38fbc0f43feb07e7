package audit

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	commit   prometheus.Histogram
	batch    prometheus.Histogram
	records  *prometheus.CounterVec
	failures prometheus.Counter
}

// newMetrics creates the log's metrics and registers them with reg (nil:
// unregistered).
func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "mcpmesh_audit_commit_seconds",
			Help:    "Time to write and fsync one batch of audit records (group commit).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "mcpmesh_audit_batch_records",
			Help:    "Audit records per committed batch.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12),
		}),
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcpmesh_audit_records_total",
			Help: "Audit records made durable, by kind (call, auth, admin).",
		}, []string{"kind"}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mcpmesh_audit_failures_total",
			Help: "Audit records that could not be made durable; each failed the request it recorded.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.commit, m.batch, m.records, m.failures)
	}
	return m
}
