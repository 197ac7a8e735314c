package controller

import (
	"slices"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"clb-direct/cloud"
	"clb-direct/tkeconfig"
)

// tsc is a TkeServiceConfig "web-config" in the test namespace.
func tsc(listeners ...map[string]any) *unstructured.Unstructured {
	items := make([]any, len(listeners))
	for i, l := range listeners {
		items[i] = l
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": tkeconfig.GVK.GroupVersion().String(),
		"kind":       tkeconfig.GVK.Kind,
		"metadata":   map[string]any{"name": "web-config", "namespace": testNamespace},
		"spec":       map[string]any{"loadBalancer": map[string]any{"l4Listeners": items}},
	}}
	return u
}

func httpCheckOn80(interval int64) map[string]any {
	return map[string]any{
		"protocol": "TCP", "port": int64(80),
		"healthCheck": map[string]any{"enable": true, "checkType": "HTTP", "httpCheckPath": "/healthz", "intervalTime": interval},
		"scheduler":   "LEAST_CONN",
	}
}

func (f *fixture) putConfig(u *unstructured.Unstructured) {
	f.t.Helper()
	client := f.dynamic.Resource(tkeconfig.GVR).Namespace(u.GetNamespace())
	if _, err := client.Get(f.ctx, u.GetName(), metav1.GetOptions{}); err == nil {
		if _, err := client.Update(f.ctx, u, metav1.UpdateOptions{}); err != nil {
			f.t.Fatal(err)
		}
		return
	}
	if _, err := client.Create(f.ctx, u, metav1.CreateOptions{}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) listener(protocol cloud.Protocol, port int32) cloud.Listener {
	f.t.Helper()
	for _, lb := range f.cloud.Snapshot().LoadBalancers {
		for _, l := range lb.Listeners {
			if l.Protocol == protocol && l.Port == port {
				return l.Listener
			}
		}
	}
	f.t.Fatalf("no listener %s:%d", protocol, port)
	return cloud.Listener{}
}

func configured(s *v1.Service) { s.Annotations[AnnotationTkeServiceConfig] = "web-config" }

func TestTkeServiceConfigTunesOnlyWhatItDeclares(t *testing.T) {
	f := newFixture(t, nil, directService(configured), readyPod("a", "10.0.0.1"))
	f.putConfig(tsc(httpCheckOn80(10)))
	f.mustSync()
	tcp := f.listener(cloud.ProtocolTCP, 80)
	if hc := tcp.HealthCheck; hc == nil || hc.CheckType != "HTTP" || hc.HTTPPath != "/healthz" || hc.IntervalSeconds != 10 || tcp.Scheduler != "LEAST_CONN" {
		t.Errorf("TCP:80 created with %+v / %+v, want the config's HTTP check every 10s and LEAST_CONN", tcp.HealthCheck, tcp.ListenerSpec)
	}
	// Not declared: the timeout keeps the default, UDP:53 is untouched.
	if tcp.HealthCheck.TimeoutSeconds != 2 {
		t.Errorf("undeclared timeout changed to %d", tcp.HealthCheck.TimeoutSeconds)
	}
	if udp := f.listener(cloud.ProtocolUDP, 53); udp.HealthCheck == nil || udp.HealthCheck.CheckType == "HTTP" || udp.Scheduler == "LEAST_CONN" {
		t.Errorf("UDP:53 took settings it was not given: %+v", udp.ListenerSpec)
	}

	// A config change modifies exactly that listener, once.
	f.putConfig(tsc(httpCheckOn80(30)))
	f.mustSync()
	f.expectActions("ModifyListener")
	if got := f.listener(cloud.ProtocolTCP, 80).HealthCheck.IntervalSeconds; got != 30 {
		t.Errorf("interval %d, want 30", got)
	}
	f.mustSync()
	f.expectActions()
}

func TestBadTkeServiceConfigLeavesTheCLB(t *testing.T) {
	for name, put := range map[string]func(f *fixture){
		"missing": func(*fixture) {},
		"invalid": func(f *fixture) { f.putConfig(tsc(httpCheckOn80(3))) }, // interval below 5
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, nil, directService(), readyPod("a", "10.0.0.1"))
			f.mustSync()
			before := f.backends(f.loadBalancerID())
			put(f)
			f.updateService(configured)
			f.addPods(readyPod("b", "10.0.0.2"))
			if err := f.sync(); err != nil {
				t.Fatalf("a bad config is the user's to fix, not an error to retry: %v", err)
			}
			f.expectActions()
			evs := f.events()
			if !slices.ContainsFunc(evs, func(e string) bool {
				return strings.HasPrefix(e, "Warning InvalidConfiguration") && strings.Contains(e, "web-config")
			}) {
				t.Errorf("no Warning naming the config among %q", evs)
			}
			if name == "invalid" && !slices.ContainsFunc(evs, func(e string) bool { return strings.Contains(e, "intervalTime") }) {
				t.Errorf("the Warning does not name the bad field: %q", evs)
			}
			if got := f.backends(f.loadBalancerID()); !slices.Equal(got, before) {
				t.Errorf("the CLB changed: %q, want %q", got, before)
			}
		})
	}
}

func TestConfigChangeQueuesOnlyTheServicesUsingIt(t *testing.T) {
	other := directService(func(s *v1.Service) { s.Name, s.UID = "other", "uid-other" })
	f := newFixture(t, nil, directService(configured), other)
	f.ctrl.enqueueConfigServices(tsc())
	if got := drainQueue(f.ctrl); !slices.Equal(got, []string{testKey}) {
		t.Errorf("queued %q, want only %s", got, testKey)
	}
}

func TestAutoServiceConfigShowsTheCLBAndIsOwnedByTheService(t *testing.T) {
	f := newFixture(t, nil, directService(func(s *v1.Service) { s.Annotations[AnnotationTkeServiceConfigAuto] = "true" }), readyPod("a", "10.0.0.1"))
	f.mustSync()
	auto, err := f.dynamic.Resource(tkeconfig.GVR).Namespace(testNamespace).Get(f.ctx, tkeconfig.AutoConfigName(testService), metav1.GetOptions{})
	if err != nil {
		t.Fatalf("auto config not created: %v", err)
	}
	refs := auto.GetOwnerReferences()
	if len(refs) != 1 || refs[0].UID != "uid-web" || refs[0].Kind != "Service" {
		t.Errorf("owner references %+v, want the Service (so it is deleted with it)", refs)
	}
	got, err := tkeconfig.FromUnstructured(auto)
	if err != nil {
		t.Fatalf("the auto config does not convert back: %v", err)
	}
	if l := got.Listener("TCP", 80); l == nil || l.HealthCheck == nil || l.HealthCheck.Enable == nil || !*l.HealthCheck.Enable {
		t.Errorf("auto config does not show TCP:80's health check: %+v", got.LoadBalancer)
	}
	if got.Listener("UDP", 53) == nil {
		t.Errorf("auto config lacks UDP:53: %+v", got.LoadBalancer)
	}
	// Unchanged CLB: no update.
	f.dynamic.ClearActions()
	f.mustSync()
	for _, a := range f.dynamic.Actions() {
		if a.GetVerb() != "get" && a.GetVerb() != "list" {
			t.Errorf("auto config rewritten although nothing changed: %s", a.GetVerb())
		}
	}
}

func TestTkeServiceConfigBandwidth(t *testing.T) {
	f := newFixture(t, nil, directService(configured), readyPod("a", "10.0.0.1"))
	config := tsc(httpCheckOn80(10))
	if err := unstructured.SetNestedField(config.Object, int64(20), "spec", "loadBalancer", "internetMaxBandwidthOut"); err != nil {
		t.Fatal(err)
	}
	f.putConfig(config)
	f.mustSync()
	if got := f.cloud.Snapshot().LoadBalancers[0].InternetMaxBandwidthOut; got != 20 {
		t.Errorf("bandwidth %d, want 20", got)
	}
	f.mustSync()
	f.expectActions()
}

func TestExtensiveParameters(t *testing.T) {
	f := newFixture(t, nil, directService(func(s *v1.Service) {
		s.Annotations[AnnotationExtensiveParameters] = `{"InternetAccessible":{"InternetChargeType":"TRAFFIC_POSTPAID_BY_HOUR","InternetMaxBandwidthOut":15}}`
	}))
	f.mustSync()
	if got := f.cloud.Snapshot().LoadBalancers[0].InternetMaxBandwidthOut; got != 15 {
		t.Errorf("bandwidth %d, want the 15 of the extensive parameters", got)
	}

	// A parameter the controller owns is refused before anything is created.
	g := newFixture(t, nil, directService(func(s *v1.Service) {
		s.Annotations[AnnotationExtensiveParameters] = `{"LoadBalancerType":"INTERNAL"}`
	}))
	g.mustSync()
	g.expectActions()
	g.expectEvent("Warning InvalidConfiguration")
}
