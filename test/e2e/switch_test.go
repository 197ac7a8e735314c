package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"clb-direct/controller"
	"clb-direct/test/env"
)

// instanceBackends are "ins-…:nodePort" of every simulated Node.
func (f *fixture) instanceBackends(nodePort int32) []string {
	f.t.Helper()
	nodes, err := e.Admin.CoreV1().Nodes().List(f.ctx, metav1.ListOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	var out []string
	for _, n := range nodes.Items {
		id := n.Spec.ProviderID[strings.LastIndex(n.Spec.ProviderID, "/")+1:]
		out = append(out, fmt.Sprintf("%s:%d", id, nodePort))
	}
	slices.Sort(out)
	return out
}

// expectHealthyBackends waits until the Service's TCP:80 listener has
// exactly want, all healthy.
func (f *fixture) expectHealthyBackends(serviceName string, want func() []string, timeout time.Duration) time.Duration {
	f.t.Helper()
	return f.waitFor(timeout, "listener TCP:80 of "+serviceName, func() (bool, string) {
		w := want()
		view := f.clb(serviceName)
		got := view.listeners["TCP:80"]
		ok := slices.Equal(got, w) && view.healthy["TCP:80"] == len(w) && len(w) > 0
		return ok, fmt.Sprintf("want %v all healthy; have %s", w, view)
	})
}

// Bound: each switch (direct → classic NodePort mode → direct) completes
// within 60 s under continuous load through the CLB, with zero failed
// requests and never a moment without a healthy backend.
func TestSwitchModesUnderLoad(t *testing.T) {
	f := newFixture(t, env.ControllerOptions{})
	f.createDeployment("web", 4)
	f.createService("web", direct)
	pods := func() []string { return f.registrablePodEndpoints("web") }
	f.expectHealthyBackends("web", pods, 60*time.Second)
	view := f.clb("web")
	f.waitForTraffic(vipAddr(view))
	l := startLoad(vipAddr(view), 4)
	fewestHealthy := f.sampleHealthy("web")

	f.updateService("web", func(s *corev1.Service) { s.Annotations[controller.AnnotationDirectAccess] = "false" })
	nodePort := f.service("web").Spec.Ports[0].NodePort
	toClassic := f.expectHealthyBackends("web", func() []string { return f.instanceBackends(nodePort) }, 60*time.Second)
	t.Logf("direct → classic in %s", toClassic.Round(time.Millisecond))
	time.Sleep(time.Second)

	f.updateService("web", func(s *corev1.Service) { s.Annotations[controller.AnnotationDirectAccess] = "true" })
	toDirect := f.expectHealthyBackends("web", pods, 60*time.Second)
	t.Logf("classic → direct in %s", toDirect.Round(time.Millisecond))
	time.Sleep(time.Second)

	minHealthy := fewestHealthy()
	ok, failed, errs := l.finish()
	t.Logf("requests ok %d, failed %d; fewest healthy backends %d", ok, failed, minHealthy)
	if failed != 0 {
		t.Errorf("%d requests failed while switching modes: %v", failed, errs)
	}
	if minHealthy == 0 {
		t.Errorf("the CLB had no healthy backend at some moment of the switches")
	}
	if ok == 0 {
		t.Errorf("no request succeeded: the load generator did not run")
	}
}
