package node

import (
	"github.com/prometheus/client_golang/prometheus"
)

// collector reports registry and Raft state on each scrape, reading the
// local replica (cheap: the registry is small and reads are local).
type collector struct {
	n        *Node
	upConn   *prometheus.Desc
	upOpen   *prometheus.Desc
	upFails  *prometheus.Desc
	upFlight *prometheus.Desc
	applied  *prometheus.Desc
	leader   *prometheus.Desc
	versions *prometheus.Desc
	tenants  *prometheus.Desc
	ready    *prometheus.Desc
}

func newCollector(n *Node) *collector {
	ns := prometheus.Labels{"namespace": n.cfg.Namespace}
	up := []string{"upstream"}
	return &collector{
		n:        n,
		upConn:   prometheus.NewDesc("mcpmesh_upstream_connected", "1 if the node holds a session to the upstream (server@version).", up, ns),
		upOpen:   prometheus.NewDesc("mcpmesh_upstream_circuit_open", "1 while the upstream's circuit breaker fails calls fast.", up, ns),
		upFails:  prometheus.NewDesc("mcpmesh_upstream_consecutive_failures", "Transport failures in a row talking to the upstream.", up, ns),
		upFlight: prometheus.NewDesc("mcpmesh_upstream_calls_in_flight", "Calls to the upstream in flight (its bulkhead's occupancy).", up, ns),
		applied:  prometheus.NewDesc("mcpmesh_registry_applied_index", "Raft index of the last entry applied to the registry state.", nil, ns),
		leader:   prometheus.NewDesc("mcpmesh_registry_is_leader", "1 if this node is the namespace's Raft leader.", nil, ns),
		versions: prometheus.NewDesc("mcpmesh_registry_server_versions", "Registered server versions by lifecycle state.", []string{"state"}, ns),
		tenants:  prometheus.NewDesc("mcpmesh_registry_tenants", "Number of tenants in the namespace.", nil, ns),
		ready:    prometheus.NewDesc("mcpmesh_node_ready", "1 if the node reports ready (leader known, state caught up, not draining).", nil, ns),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.applied, c.leader, c.versions, c.tenants, c.ready, c.upConn, c.upOpen, c.upFails, c.upFlight} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	cl := c.n.cluster
	if cl == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.applied, prometheus.GaugeValue, float64(cl.FSM.AppliedIndex()))
	ch <- prometheus.MustNewConstMetric(c.leader, prometheus.GaugeValue, b2f(cl.IsLeader()))
	ready, _ := cl.Ready()
	ch <- prometheus.MustNewConstMetric(c.ready, prometheus.GaugeValue, b2f(ready && !c.n.draining.Load()))
	if all, err := cl.FSM.AllVersions(); err == nil {
		counts := map[string]int{}
		for _, v := range all {
			counts[string(v.State)]++
		}
		for st, k := range counts {
			ch <- prometheus.MustNewConstMetric(c.versions, prometheus.GaugeValue, float64(k), st)
		}
	}
	if ts, err := cl.FSM.Tenants(); err == nil {
		ch <- prometheus.MustNewConstMetric(c.tenants, prometheus.GaugeValue, float64(len(ts)))
	}
	if c.n.pool != nil {
		for _, h := range c.n.pool.Health() {
			ch <- prometheus.MustNewConstMetric(c.upConn, prometheus.GaugeValue, b2f(h.Connected), h.Upstream)
			ch <- prometheus.MustNewConstMetric(c.upOpen, prometheus.GaugeValue, b2f(h.Open), h.Upstream)
			ch <- prometheus.MustNewConstMetric(c.upFails, prometheus.GaugeValue, float64(h.Failures), h.Upstream)
			ch <- prometheus.MustNewConstMetric(c.upFlight, prometheus.GaugeValue, float64(h.InFlight), h.Upstream)
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
