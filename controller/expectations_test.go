package controller

import (
	"cmp"
	"slices"
	"testing"

	gocmp "github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"clb-direct/cloud"
	"clb-direct/readiness"
)

// listenerIDs maps "PROTO:port" to the listener's ID on the CLB.
func (f *fixture) listenerIDs(lbID string) map[string]string {
	out := map[string]string{}
	for _, lb := range f.cloud.Snapshot().LoadBalancers {
		if lb.ID != lbID {
			continue
		}
		for _, l := range lb.Listeners {
			out[ListenerKey{Protocol: l.Protocol, Port: l.Port}.String()] = l.ID
		}
	}
	return out
}

func sortedTargets(exp readiness.Expectation) []readiness.Target {
	out := slices.Clone(exp.Targets)
	slices.SortFunc(out, func(a, b readiness.Target) int {
		return cmp.Or(cmp.Compare(a.Service, b.Service), cmp.Compare(a.Listener, b.Listener))
	})
	return out
}

func TestExpectRegisteredPod(t *testing.T) {
	pod := readyPod("a", "10.0.0.1")
	f := newFixture(t, nil, directService(), pod)
	f.mustSync()
	lbID := f.loadBalancerID()
	ids := f.listenerIDs(lbID)
	if lbID == "" || ids["TCP:80"] == "" || ids["UDP:53"] == "" {
		t.Fatalf("sync made CLB %q with listeners %v", lbID, ids)
	}

	exp := f.ctrl.Expect(pod)
	want := readiness.Expectation{
		Services: []string{testKey},
		Targets: []readiness.Target{
			{LoadBalancerID: lbID, ListenerID: ids["TCP:80"], Listener: "TCP:80", Service: testKey,
				IP: "10.0.0.1", Port: 8080, Registered: true, HealthCheck: "TCP"},
			{LoadBalancerID: lbID, ListenerID: ids["UDP:53"], Listener: "UDP:53", Service: testKey,
				IP: "10.0.0.1", Port: 5353, Registered: true, HealthCheck: "UDP"},
		},
	}
	if diff := gocmp.Diff(want, readiness.Expectation{Services: exp.Services, Targets: sortedTargets(exp)}); diff != "" {
		t.Errorf("Expect (-want +got):\n%s", diff)
	}
	if !f.ctrl.SelectedByDirectAccess(pod) {
		t.Error("SelectedByDirectAccess = false for a Pod the Service selects")
	}

	// The same Pod on a port the CLB does not have it on is not registered:
	// a Pod whose named port now resolves elsewhere.
	moved := readyPod("a", "10.0.0.1", func(p *v1.Pod) { p.Spec.Containers[0].Ports[0].ContainerPort = 9090 })
	for _, tg := range f.ctrl.Expect(moved).Targets {
		if tg.Listener == "TCP:80" && (tg.Registered || tg.Port != 9090 || tg.ListenerID != ids["TCP:80"]) {
			t.Errorf("target on a port the CLB does not have: %+v", tg)
		}
	}
}

func TestExpectPodNotSyncedYet(t *testing.T) {
	f := newFixture(t, nil, directService(), readyPod("a", "10.0.0.1"))
	f.mustSync()
	lbID := f.loadBalancerID()
	ids := f.listenerIDs(lbID)

	late := readyPod("b", "10.0.0.2")
	f.addPods(late)
	f.refresh()
	exp := f.ctrl.Expect(late)
	want := readiness.Expectation{
		Services: []string{testKey},
		Targets: []readiness.Target{
			{LoadBalancerID: lbID, ListenerID: ids["TCP:80"], Listener: "TCP:80", Service: testKey,
				IP: "10.0.0.2", Port: 8080, Registered: false, HealthCheck: "TCP"},
			{LoadBalancerID: lbID, ListenerID: ids["UDP:53"], Listener: "UDP:53", Service: testKey,
				IP: "10.0.0.2", Port: 5353, Registered: false, HealthCheck: "UDP"},
		},
	}
	if diff := gocmp.Diff(want, readiness.Expectation{Services: exp.Services, Targets: sortedTargets(exp)}); diff != "" {
		t.Errorf("Expect (-want +got):\n%s", diff)
	}
	if !f.ctrl.SelectedByDirectAccess(late) {
		t.Error("SelectedByDirectAccess = false for a Pod the Service selects")
	}

	// Once synced, it is registered.
	f.mustSync()
	for _, tg := range f.ctrl.Expect(late).Targets {
		if !tg.Registered {
			t.Errorf("after the sync, target %+v is not registered", tg)
		}
	}
}

func TestExpectBeforeAnySync(t *testing.T) {
	pod := readyPod("a", "10.0.0.1")
	f := newFixture(t, nil, directService(), pod)
	exp := f.ctrl.Expect(pod)
	want := readiness.Expectation{
		Services: []string{testKey},
		Targets: []readiness.Target{
			{Listener: "TCP:80", Service: testKey, IP: "10.0.0.1", Port: 8080},
			{Listener: "UDP:53", Service: testKey, IP: "10.0.0.1", Port: 5353},
		},
	}
	if diff := gocmp.Diff(want, readiness.Expectation{Services: exp.Services, Targets: sortedTargets(exp)}); diff != "" {
		t.Errorf("Expect (-want +got):\n%s", diff)
	}
}

func TestExpectPodSelectedByNoDirectAccessService(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*v1.Service)
		pod    *v1.Pod
	}{
		{name: "other labels", pod: readyPod("x", "10.0.0.9", func(p *v1.Pod) { p.Labels = map[string]string{"app": "other"} })},
		{name: "other namespace", pod: readyPod("x", "10.0.0.9", func(p *v1.Pod) { p.Namespace = "elsewhere" })},
		{name: "annotation false", pod: readyPod("x", "10.0.0.9"),
			mutate: func(s *v1.Service) { s.Annotations[AnnotationDirectAccess] = "false" }},
		{name: "annotation missing", pod: readyPod("x", "10.0.0.9"),
			mutate: func(s *v1.Service) { delete(s.Annotations, AnnotationDirectAccess) }},
		{name: "invalid annotation", pod: readyPod("x", "10.0.0.9"),
			mutate: func(s *v1.Service) { s.Annotations[AnnotationDirectAccess] = "yes" }},
		// An invalid weight with direct-access "true" keeps the Service
		// (TestInvalidAnnotationKeepsTheGateClosed).
		{name: "type ClusterIP", pod: readyPod("x", "10.0.0.9"),
			mutate: func(s *v1.Service) { s.Spec.Type = v1.ServiceTypeClusterIP }},
		{name: "other class", pod: readyPod("x", "10.0.0.9"),
			mutate: func(s *v1.Service) { class := "other"; s.Spec.LoadBalancerClass = &class }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, nil, directService(), readyPod("a", "10.0.0.1"))
			f.mustSync() // the CLB state is known: it must not leak into the answer
			if tc.mutate != nil {
				f.updateService(tc.mutate)
			}
			f.addPods(tc.pod)
			f.refresh()
			if exp := f.ctrl.Expect(tc.pod); len(exp.Services) != 0 || len(exp.Targets) != 0 {
				t.Errorf("Expect = %+v, want nothing", exp)
			}
			if f.ctrl.SelectedByDirectAccess(tc.pod) {
				t.Error("SelectedByDirectAccess = true")
			}
		})
	}
}

func TestExpectTwoServices(t *testing.T) {
	api := directService(func(s *v1.Service) {
		s.Name = "api"
		s.UID = "uid-api"
		s.Spec.Ports = []v1.ServicePort{{Name: "https", Protocol: v1.ProtocolTCP, Port: 443, TargetPort: intstr.FromInt32(8443)}}
	})
	// Selects the Pod too, but is not direct access.
	plain := directService(func(s *v1.Service) {
		s.Name = "plain"
		s.UID = "uid-plain"
		delete(s.Annotations, AnnotationDirectAccess)
	})
	pod := readyPod("a", "10.0.0.1", func(p *v1.Pod) { p.Labels["tier"] = "front" })
	f := newFixture(t, nil, directService(), api, plain, pod)
	f.mustSync()
	if err := f.ctrl.syncService(f.ctx, "ns/api"); err != nil {
		t.Fatal(err)
	}
	webLB := f.loadBalancerID()
	apiSvc, err := f.client.CoreV1().Services(testNamespace).Get(f.ctx, "api", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	apiLB := apiSvc.Annotations[AnnotationLoadBalancerID]
	if webLB == "" || apiLB == "" || webLB == apiLB {
		t.Fatalf("CLBs web %q, api %q: want two", webLB, apiLB)
	}
	webIDs, apiIDs := f.listenerIDs(webLB), f.listenerIDs(apiLB)

	// The Services are found through the Pod's labels, a map: ask more
	// than once so that every order is seen.
	for range 10 {
		exp := f.ctrl.Expect(pod)
		want := readiness.Expectation{
			Services: []string{"ns/api", testKey},
			Targets: []readiness.Target{
				{LoadBalancerID: apiLB, ListenerID: apiIDs["TCP:443"], Listener: "TCP:443", Service: "ns/api",
					IP: "10.0.0.1", Port: 8443, Registered: true, HealthCheck: "TCP"},
				{LoadBalancerID: webLB, ListenerID: webIDs["TCP:80"], Listener: "TCP:80", Service: testKey,
					IP: "10.0.0.1", Port: 8080, Registered: true, HealthCheck: "TCP"},
				{LoadBalancerID: webLB, ListenerID: webIDs["UDP:53"], Listener: "UDP:53", Service: testKey,
					IP: "10.0.0.1", Port: 5353, Registered: true, HealthCheck: "UDP"},
			},
		}
		if diff := gocmp.Diff(want, readiness.Expectation{Services: exp.Services, Targets: sortedTargets(exp)}); diff != "" {
			t.Fatalf("Expect (-want +got):\n%s", diff)
		}
	}
	if !f.ctrl.SelectedByDirectAccess(pod) {
		t.Error("SelectedByDirectAccess = false")
	}
}

func TestDescribeHealthCheck(t *testing.T) {
	tests := []struct {
		protocol cloud.Protocol
		hc       *cloud.HealthCheck
		want     string
	}{
		{cloud.ProtocolTCP, nil, "no health check (always healthy)"},
		{cloud.ProtocolTCP, &cloud.HealthCheck{Enabled: false, CheckType: "HTTP"}, "no health check (always healthy)"},
		{cloud.ProtocolTCP, &cloud.HealthCheck{Enabled: true}, "TCP"},
		{cloud.ProtocolUDP, &cloud.HealthCheck{Enabled: true}, "UDP"},
		{cloud.ProtocolUDP, &cloud.HealthCheck{Enabled: true, CheckType: "custom"}, "CUSTOM"},
		{cloud.ProtocolTCP, &cloud.HealthCheck{Enabled: true, CheckType: "HTTP", HTTPPath: "/healthz"}, "HTTP GET /healthz"},
		{cloud.ProtocolTCP, &cloud.HealthCheck{Enabled: true, CheckType: "http", HTTPMethod: "head", HTTPPath: "/"}, "HTTP HEAD /"},
	}
	for _, tc := range tests {
		if got := describeHealthCheck(tc.protocol, tc.hc); got != tc.want {
			t.Errorf("describeHealthCheck(%s, %+v) = %q, want %q", tc.protocol, tc.hc, got, tc.want)
		}
	}
}

// A typo in another annotation must not open the gates of new Pods: the
// CLB is left as it is, so they are not registered.
func TestInvalidAnnotationKeepsTheGateClosed(t *testing.T) {
	svc := directService(func(s *v1.Service) { s.Annotations[AnnotationBackendWeight] = "101" })
	f := newFixture(t, nil, svc, readyPod("a", "10.0.0.1"))
	pod := readyPod("a", "10.0.0.1")
	exp := f.ctrl.Expect(pod)
	if len(exp.Services) != 1 || len(exp.Targets) == 0 || slices.ContainsFunc(exp.Targets, func(tg readiness.Target) bool { return tg.Registered }) {
		t.Errorf("Expect = %+v, want the Service with unregistered targets (gate stays False)", exp)
	}
	if !f.ctrl.SelectedByDirectAccess(pod) {
		t.Error("the webhook must still inject the gate")
	}
}
