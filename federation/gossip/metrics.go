package gossip

import "github.com/prometheus/client_golang/prometheus"

// metrics are the pool's Prometheus metrics. Labels are bounded: a state.
type metrics struct {
	members      *prometheus.GaugeVec
	hintUpdates  prometheus.Counter
	decodeErrors prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		members: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mcpmesh_gossip_members",
			Help: "Members of the mesh-wide gossip pool this node knows, this node included, by state (alive, dead, left; dead and left ones are kept for an hour).",
		}, []string{"state"}),
		hintUpdates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mcpmesh_gossip_hint_updates_total",
			Help: "Hint changes received from other members (a new catalog version, bundle sequence, manifest version or peer address).",
		}),
		decodeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mcpmesh_gossip_hint_decode_errors_total",
			Help: "Hints received from other members that did not decode or disagreed with the member's name; such members count, their hints are ignored.",
		}),
	}
	for _, s := range []State{StateAlive, StateDead, StateLeft} {
		m.members.WithLabelValues(s.String())
	}
	if reg != nil {
		reg.MustRegister(m.members, m.hintUpdates, m.decodeErrors)
	}
	return m
}
