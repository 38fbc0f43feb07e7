package bundles

import (
	"github.com/prometheus/client_golang/prometheus"
)

var sequenceDesc = prometheus.NewDesc(
	"mcpmesh_federation_bundle_sequence",
	"Sequence number of each trust bundle the node trusts now (its own trust domain's included); a foreign one rises when its BU rotates keys and the leader stored the new bundle.",
	[]string{"trust_domain"}, nil,
)

// setCollector reports the sequence of each bundle in the current set.
type setCollector struct{ s *Set }

func (c setCollector) Describe(ch chan<- *prometheus.Desc) { ch <- sequenceDesc }

func (c setCollector) Collect(ch chan<- prometheus.Metric) {
	for _, b := range c.s.cur.Load().set.Bundles() {
		if seq, ok := b.SequenceNumber(); ok {
			ch <- prometheus.MustNewConstMetric(sequenceDesc, prometheus.GaugeValue, float64(seq), b.TrustDomain().Name())
		}
	}
}

func newFetchErrors(reg prometheus.Registerer) (*prometheus.CounterVec, error) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mcpmesh_federation_bundle_fetch_errors_total",
		Help: "Failed fetches of a foreign trust domain's bundle by the BU's leader, after trying every bundle endpoint of the trust domain.",
	}, []string{"trust_domain"})
	if reg != nil {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return c, nil
}
