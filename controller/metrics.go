package controller

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	v1 "k8s.io/api/core/v1"

	"clb-direct/cloud"
)

// Results of clbdirect_sync_duration_seconds.
const (
	// SyncResultOK: the Service is as it should be (or was not ours).
	SyncResultOK = "ok"
	// SyncResultError: the sync failed and is retried.
	SyncResultError = "error"
	// SyncResultRequeue: the sync did its part and asked to come back
	// (a mode switch waiting for the new backends' health).
	SyncResultRequeue = "requeue"
	// SyncResultInvalid: the Service's configuration (annotations or
	// TkeServiceConfig) is invalid; nothing was changed.
	SyncResultInvalid = "invalid"
)

// Metrics are the controller's Prometheus collectors. A nil *Metrics
// records nothing, so tests that do not look at metrics need no registry.
type Metrics struct {
	syncDuration        *prometheus.HistogramVec
	registrationLatency prometheus.Histogram
}

// NewMetrics registers the controller's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		syncDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "clbdirect", Name: "sync_duration_seconds",
			Help: "Duration of one Service sync, by result: ok, error, requeue (asked to come back soon) or invalid (bad configuration, nothing changed).",
			// A sync that changes nothing makes no cloud call (milliseconds);
			// one that creates a CLB waits for its tasks (up to minutes).
			Buckets: []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"result"}),
		registrationLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "clbdirect", Name: "backend_registration_latency_seconds",
			Help: "Time from a Pod becoming registrable (the last transition of its ContainersReady condition, else Ready, else its creation) " +
				"to the BatchRegisterTargets call that registered it on its CLB succeeding.",
			Buckets: []float64{0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600},
		}),
	}
	reg.MustRegister(m.syncDuration, m.registrationLatency)
	for _, result := range []string{SyncResultOK, SyncResultError, SyncResultRequeue, SyncResultInvalid} {
		m.syncDuration.WithLabelValues(result)
	}
	return m
}

// observeSync records one sync's duration under the result its error and
// invalid (bad configuration) say.
func (m *Metrics) observeSync(d time.Duration, err error, invalid bool) {
	if m == nil {
		return
	}
	result := SyncResultOK
	var pending *requeueAfter
	switch {
	case errors.As(err, &pending):
		result = SyncResultRequeue
	case err != nil:
		result = SyncResultError
	case invalid:
		result = SyncResultInvalid
	}
	m.syncDuration.WithLabelValues(result).Observe(d.Seconds())
}

// observeRegistration records the registration latency of a Pod registered
// at now. A negative latency (clock skew between its kubelet and us) is 0.
func (m *Metrics) observeRegistration(since, now time.Time) {
	if m == nil {
		return
	}
	m.registrationLatency.Observe(max(now.Sub(since), 0).Seconds())
}

// registrableSince is when a Pod became registrable: when its containers
// turned ready (or the Pod did, for a status without ContainersReady), else
// when it was created.
func registrableSince(pod *v1.Pod) time.Time {
	for _, t := range []v1.PodConditionType{v1.ContainersReady, v1.PodReady} {
		for _, c := range pod.Status.Conditions {
			if c.Type == t && c.Status == v1.ConditionTrue && !c.LastTransitionTime.IsZero() {
				return c.LastTransitionTime.Time
			}
		}
	}
	return pod.CreationTimestamp.Time
}

// podRegistrableTimes maps each Pod IP to when its Pod became registrable.
// Two Pods with one IP (a terminating one and its successor): the later
// time, the successor's, wins.
func podRegistrableTimes(pods []*v1.Pod) map[string]time.Time {
	out := make(map[string]time.Time, len(pods))
	for _, pod := range pods {
		if pod.Status.PodIP == "" {
			continue
		}
		if t := registrableSince(pod); t.After(out[pod.Status.PodIP]) {
			out[pod.Status.PodIP] = t
		}
	}
	return out
}

// registrationObserver returns what applyPlan calls for each backend it
// registered: it records the registration latency of the Pod behind it,
// once per Pod and sync. Nil when there is nothing to record; the Pods'
// times are computed only once something was registered.
func (c *Controller) registrationObserver(pods []*v1.Pod) func(cloud.Backend) {
	if c.opts.Metrics == nil || len(pods) == 0 {
		return nil
	}
	var since map[string]time.Time
	seen := map[string]bool{}
	return func(b cloud.Backend) {
		// Nodes (classic mode) are registered by instance ID.
		if b.IP == "" || b.InstanceID != "" || seen[b.IP] {
			return
		}
		seen[b.IP] = true
		if since == nil {
			since = podRegistrableTimes(pods)
		}
		if t, ok := since[b.IP]; ok {
			c.opts.Metrics.observeRegistration(t, c.opts.Clock.Now())
		}
	}
}
