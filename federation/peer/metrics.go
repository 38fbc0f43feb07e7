package peer

import (
	"errors"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are shared by the Server and the Client of one node: both
// register the same collectors, and the second registration reuses the
// first's.
type metrics struct {
	requests   *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	handshakes *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcpmesh_federation_peer_requests_total",
			Help: "HTTP/3 requests between BUs' nodes: direction in (served) or out (sent), the peer's trust domain, and the HTTP status code, or \"error\" when an outgoing request got no answer.",
		}, []string{"direction", "peer_trust_domain", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mcpmesh_federation_peer_request_duration_seconds",
			Help:    "Time from sending (out) or receiving (in) a peer request to its response headers, connection setup included for the first request on a new connection.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"direction"}),
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcpmesh_federation_peer_handshake_failures_total",
			Help: "Peer connections that failed or were refused during the TLS handshake, by reason (no_certificate, untrusted_trust_domain, bad_certificate, unauthorized, trust_domain_mismatch, refused_by_peer, timeout, other).",
		}, []string{"reason"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.requests, err = register(reg, m.requests); err != nil {
		return nil, err
	}
	if m.duration, err = register(reg, m.duration); err != nil {
		return nil, err
	}
	if m.handshakes, err = register(reg, m.handshakes); err != nil {
		return nil, err
	}
	for _, r := range handshakeReasons {
		m.handshakes.WithLabelValues(r)
	}
	return m, nil
}

// register registers c, or returns the collector already registered
// under its name.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, err
}

func codeLabel(status int) string { return strconv.Itoa(status) }
