package catalog

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpmesh/mcpmesh/registry/state"
)

// Sync results, the result label of mcpmesh_federation_catalog_syncs_total.
const (
	resultChanged   = "changed"
	resultUnchanged = "unchanged"
	resultError     = "error"
	resultRefused   = "refused"
)

// exportedCollector reports, at each scrape, how many tool versions the
// namespace exports to each consumer trust domain of its export set, read
// from the local replica's state (every replica answers the same).
type exportedCollector struct {
	fsm  *state.FSM
	desc *prometheus.Desc
}

func newExportedCollector(fsm *state.FSM) *exportedCollector {
	return &exportedCollector{fsm: fsm, desc: prometheus.NewDesc("mcpmesh_federation_catalog_exported_tools",
		"Tool versions this BU exports to a consumer trust domain.", []string{"consumer"}, nil)}
}

func (c *exportedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *exportedCollector) Collect(ch chan<- prometheus.Metric) {
	es, err := c.fsm.Exports()
	if err != nil {
		return
	}
	for _, td := range es.ConsumerTrustDomains() {
		cat, err := c.fsm.ExportedCatalog(td)
		if err != nil {
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(len(cat.Tools)), td)
	}
}

// importedCollector reports, at each scrape, how many tool versions are
// imported from each origin namespace, read from the local replica's
// state.
type importedCollector struct {
	fsm  *state.FSM
	desc *prometheus.Desc
}

func newImportedCollector(fsm *state.FSM) *importedCollector {
	return &importedCollector{fsm: fsm, desc: prometheus.NewDesc("mcpmesh_federation_catalog_imported_tools",
		"Tool versions imported from an origin BU (namespace).", []string{"origin"}, nil)}
}

func (c *importedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *importedCollector) Collect(ch chan<- prometheus.Metric) {
	ims, err := c.fsm.AllImports()
	if err != nil {
		return
	}
	for _, im := range ims {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(len(im.Tools)), im.Namespace)
	}
}

func newSyncsCounter(reg prometheus.Registerer) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mcpmesh_federation_catalog_syncs_total",
		Help: "Catalog syncs with an origin BU by result: changed, unchanged, error, refused (a catalog that failed its checks).",
	}, []string{"origin", "result"})
	if reg != nil {
		reg.MustRegister(c)
	}
	return c
}
