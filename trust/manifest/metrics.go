package manifest

import "github.com/prometheus/client_golang/prometheus"

// collector reports the held manifest's version and expiry at scrape time.
type collector struct {
	h       *Holder
	version *prometheus.Desc
	expiry  *prometheus.Desc
}

// NewCollector returns a Prometheus collector of the manifest h holds:
// mcpmesh_federation_manifest_version (0 while none is held) and
// mcpmesh_federation_manifest_expiry_timestamp_seconds (absent while none
// is held). Register it with the node's registerer, wrapped with its
// namespace label as the node's other metrics are.
func NewCollector(h *Holder) prometheus.Collector {
	return &collector{
		h:       h,
		version: prometheus.NewDesc("mcpmesh_federation_manifest_version", "Version of the federation manifest the node holds; 0 when it holds none.", nil, nil),
		expiry:  prometheus.NewDesc("mcpmesh_federation_manifest_expiry_timestamp_seconds", "When the federation manifest the node holds expires (Unix time); federation stops then unless a fresh one is pushed.", nil, nil),
	}
}

// Describe sends the two descriptors.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.version
	ch <- c.expiry
}

// Collect reads the holder.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	m := c.h.Load()
	if m == nil {
		ch <- prometheus.MustNewConstMetric(c.version, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.version, prometheus.GaugeValue, float64(m.Version))
	ch <- prometheus.MustNewConstMetric(c.expiry, prometheus.GaugeValue, float64(m.Expires.UnixNano())/1e9)
}
