package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/util/workqueue"
)

// workqueueSubsystem gives the queue metrics the names client-go's own
// components and controller-runtime use (workqueue_depth, ...), so existing
// dashboards work as they are.
const workqueueSubsystem = "workqueue"

// workqueueProvider implements workqueue.MetricsProvider with one vector
// per metric, labelled by the queue's name.
type workqueueProvider struct {
	depth                   *prometheus.GaugeVec
	adds                    *prometheus.CounterVec
	latency                 *prometheus.HistogramVec
	workDuration            *prometheus.HistogramVec
	unfinishedWork          *prometheus.GaugeVec
	longestRunningProcessor *prometheus.GaugeVec
	retries                 *prometheus.CounterVec
}

// NewWorkqueueProvider registers the workqueue metrics on reg and returns
// the provider that feeds them. Give it to workqueue.SetProvider before any
// queue is created: queues made earlier keep reporting nothing.
func NewWorkqueueProvider(reg prometheus.Registerer) workqueue.MetricsProvider {
	labels := []string{"name"}
	// 1 µs to 1000 s: a key may wait behind slow cloud calls for minutes.
	buckets := prometheus.ExponentialBuckets(1e-6, 10, 10)
	p := &workqueueProvider{
		depth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Subsystem: workqueueSubsystem, Name: "depth",
			Help: "Current depth of the workqueue.",
		}, labels),
		adds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Subsystem: workqueueSubsystem, Name: "adds_total",
			Help: "Total number of adds handled by the workqueue.",
		}, labels),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Subsystem: workqueueSubsystem, Name: "queue_duration_seconds",
			Help:    "How long in seconds an item stays in the workqueue before being requested.",
			Buckets: buckets,
		}, labels),
		workDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Subsystem: workqueueSubsystem, Name: "work_duration_seconds",
			Help:    "How long in seconds processing an item from the workqueue takes.",
			Buckets: buckets,
		}, labels),
		unfinishedWork: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Subsystem: workqueueSubsystem, Name: "unfinished_work_seconds",
			Help: "How many seconds of work has been done that is in progress and hasn't been observed by work_duration. " +
				"Large values indicate stuck threads.",
		}, labels),
		longestRunningProcessor: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Subsystem: workqueueSubsystem, Name: "longest_running_processor_seconds",
			Help: "How many seconds the longest running processor for the workqueue has been running.",
		}, labels),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Subsystem: workqueueSubsystem, Name: "retries_total",
			Help: "Total number of retries handled by the workqueue.",
		}, labels),
	}
	reg.MustRegister(p.depth, p.adds, p.latency, p.workDuration, p.unfinishedWork, p.longestRunningProcessor, p.retries)
	return p
}

func (p *workqueueProvider) NewDepthMetric(name string) workqueue.GaugeMetric {
	return p.depth.WithLabelValues(name)
}

func (p *workqueueProvider) NewAddsMetric(name string) workqueue.CounterMetric {
	return p.adds.WithLabelValues(name)
}

func (p *workqueueProvider) NewLatencyMetric(name string) workqueue.HistogramMetric {
	return p.latency.WithLabelValues(name)
}

func (p *workqueueProvider) NewWorkDurationMetric(name string) workqueue.HistogramMetric {
	return p.workDuration.WithLabelValues(name)
}

func (p *workqueueProvider) NewUnfinishedWorkSecondsMetric(name string) workqueue.SettableGaugeMetric {
	return p.unfinishedWork.WithLabelValues(name)
}

func (p *workqueueProvider) NewLongestRunningProcessorSecondsMetric(name string) workqueue.SettableGaugeMetric {
	return p.longestRunningProcessor.WithLabelValues(name)
}

func (p *workqueueProvider) NewRetriesMetric(name string) workqueue.CounterMetric {
	return p.retries.WithLabelValues(name)
}
