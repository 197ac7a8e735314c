package readiness

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the readiness worker's Prometheus collectors. A nil *Metrics
// records nothing.
type Metrics struct {
	gateLatency prometheus.Histogram
	waiting     prometheus.Gauge
}

// NewMetrics registers the readiness worker's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		gateLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "clbdirect", Subsystem: "readiness", Name: "gate_latency_seconds",
			Help: "Time from the round in which the CLB first reported a waiting Pod healthy to the patch setting its readiness gate True succeeding.",
			// One round plus a patch; failed patches are retried once per
			// poll interval.
			Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
		}),
		waiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "clbdirect", Subsystem: "readiness", Name: "pods_waiting",
			Help: "Pods carrying the readiness gate whose condition is not True yet.",
		}),
	}
	reg.MustRegister(m.gateLatency, m.waiting)
	return m
}

func (m *Metrics) observeGate(latency time.Duration) {
	if m != nil {
		m.gateLatency.Observe(max(latency, 0).Seconds())
	}
}

func (m *Metrics) setWaiting(n int) {
	if m != nil {
		m.waiting.Set(float64(n))
	}
}
