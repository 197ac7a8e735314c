package controller

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"clb-direct/cloud"
)

// withMetrics gives the fixture's controller metrics on a registry of its own.
func (f *fixture) withMetrics() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	f.ctrl.opts.Metrics = NewMetrics(reg)
	return reg
}

// histogram returns the sample count and sum of the histogram called name
// whose labels include labels.
func histogram(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) (uint64, float64) {
	t.Helper()
	families, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if want, ok := labels[l.GetName()]; ok && want != l.GetValue() {
					continue metrics
				}
			}
			return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
		}
	}
	t.Fatalf("no histogram %s%v", name, labels)
	return 0, 0
}

// readySince makes the Pod's containers ready since ago before now.
func readySince(now time.Time, ago time.Duration) func(*v1.Pod) {
	return func(p *v1.Pod) {
		for i := range p.Status.Conditions {
			p.Status.Conditions[i].LastTransitionTime = metav1.NewTime(now.Add(-ago))
		}
	}
}

func TestSyncMetrics(t *testing.T) {
	f := newFixture(t, nil, directService())
	reg := f.withMetrics()
	syncs := func(result string) uint64 {
		n, _ := histogram(t, reg, "clbdirect_sync_duration_seconds", map[string]string{"result": result})
		return n
	}
	registrations := func() (uint64, float64) {
		return histogram(t, reg, "clbdirect_backend_registration_latency_seconds", nil)
	}

	now := f.clock.Now()
	f.addPods(readyPod("a", "10.0.0.1", readySince(now, 30*time.Second)),
		readyPod("b", "10.0.0.2", podGates(ReadinessGate), podGatePending, readySince(now, 10*time.Second)),
		readyPod("c", "10.0.0.3", podUnready))
	f.mustSync()
	f.expectActions("DescribeLoadBalancers", "CreateLoadBalancer", "CreateListener", "CreateListener", "BatchRegisterTargets:4")
	if n := syncs(SyncResultOK); n != 1 {
		t.Errorf("%d ok syncs, want 1", n)
	}
	// Two Pods on two listeners: one latency each, 30 s and 10 s.
	if n, sum := registrations(); n != 2 || sum != 40 {
		t.Errorf("registration latencies: %d summing to %vs, want 2 summing to 40s", n, sum)
	}

	// Nothing to register: no latency.
	f.mustSync()
	if n, _ := registrations(); n != 2 {
		t.Errorf("%d registration latencies after a sync that registered nothing, want 2", n)
	}

	// A failed registration is an error and no latency; the retry that
	// registers the Pod records the time since it became ready.
	f.addPods(readyPod("d", "10.0.0.4", readySince(now, 5*time.Second)))
	f.cloud.FailNext("BatchRegisterTargets", 1, nil)
	if err := f.sync(); err == nil {
		t.Fatal("sync with a failing registration succeeded")
	}
	if n := syncs(SyncResultError); n != 1 {
		t.Errorf("%d error syncs, want 1", n)
	}
	if n, _ := registrations(); n != 2 {
		t.Errorf("%d registration latencies after a failed registration, want 2", n)
	}
	f.clock.Step(time.Second)
	f.mustSync()
	if n, sum := registrations(); n != 3 || sum != 46 {
		t.Errorf("registration latencies: %d summing to %vs, want 3 summing to 46s", n, sum)
	}

	f.updateService(func(s *v1.Service) { s.Annotations[AnnotationDirectAccess] = "yes" })
	f.mustSync()
	if n := syncs(SyncResultInvalid); n != 1 {
		t.Errorf("%d invalid syncs, want 1", n)
	}
	if n := syncs(SyncResultOK); n != 3 {
		t.Errorf("%d ok syncs, want 3", n)
	}
}

func TestSyncResults(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	for _, tc := range []struct {
		err     error
		invalid bool
		want    string
	}{
		{nil, false, SyncResultOK},
		{nil, true, SyncResultInvalid},
		{cloud.NewError("CreateListener", cloud.CodeInternalError, "", ""), false, SyncResultError},
		{&requeueAfter{after: time.Second, reason: "switching"}, false, SyncResultRequeue},
	} {
		before, _ := histogram(t, reg, "clbdirect_sync_duration_seconds", map[string]string{"result": tc.want})
		m.observeSync(time.Second, tc.err, tc.invalid)
		if after, _ := histogram(t, reg, "clbdirect_sync_duration_seconds", map[string]string{"result": tc.want}); after != before+1 {
			t.Errorf("error %v, invalid %v: not counted as %s", tc.err, tc.invalid, tc.want)
		}
	}
	// A nil *Metrics records nothing, and does not fail.
	var none *Metrics
	none.observeSync(time.Second, nil, false)
	none.observeRegistration(time.Time{}, time.Now())
}

func TestRegistrableSince(t *testing.T) {
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) metav1.Time { return metav1.NewTime(created.Add(d)) }
	pod := func(conditions ...v1.PodCondition) *v1.Pod {
		return &v1.Pod{ObjectMeta: metav1.ObjectMeta{CreationTimestamp: metav1.NewTime(created)}, Status: v1.PodStatus{Conditions: conditions}}
	}
	for _, tc := range []struct {
		name string
		pod  *v1.Pod
		want time.Time
	}{
		{"containers ready", pod(
			v1.PodCondition{Type: v1.PodReady, Status: v1.ConditionFalse, LastTransitionTime: at(time.Second)},
			v1.PodCondition{Type: v1.ContainersReady, Status: v1.ConditionTrue, LastTransitionTime: at(5 * time.Second)},
		), created.Add(5 * time.Second)},
		{"ready only", pod(v1.PodCondition{Type: v1.PodReady, Status: v1.ConditionTrue, LastTransitionTime: at(7 * time.Second)}), created.Add(7 * time.Second)},
		{"not ready", pod(v1.PodCondition{Type: v1.ContainersReady, Status: v1.ConditionFalse, LastTransitionTime: at(time.Second)}), created},
		{"no conditions", pod(), created},
	} {
		if got := registrableSince(tc.pod); !got.Equal(tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
