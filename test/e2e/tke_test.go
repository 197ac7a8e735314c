package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	"k8s.io/utils/ptr"

	"clb-direct/cloud"
	"clb-direct/cloud/fake"
	"clb-direct/cloud/tencent"
	"clb-direct/controller"
	"clb-direct/test/env"
	"clb-direct/tkeconfig"
)

// Helpers of the TKE feature tests.

// serviceConfigs is the TkeServiceConfig resource of the fixture's namespace.
func (f *fixture) serviceConfigs() dynamic.ResourceInterface {
	f.t.Helper()
	dyn, err := dynamic.NewForConfig(e.Cluster.AdminConfig())
	if err != nil {
		f.t.Fatal(err)
	}
	return dyn.Resource(tkeconfig.GVR).Namespace(f.ns)
}

// newServiceConfig is a TkeServiceConfig object with the given
// spec.loadBalancer.
func newServiceConfig(namespace, name string, loadBalancer map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"spec": map[string]any{"loadBalancer": loadBalancer},
	}}
	u.SetGroupVersionKind(tkeconfig.GVK)
	u.SetNamespace(namespace)
	u.SetName(name)
	return u
}

// tcp80Config is spec.loadBalancer tuning listener TCP:80 with an HTTP
// health check of /healthz at the given interval, LEAST_CONN and 300 s of
// session persistence.
func tcp80Config(intervalTime int64) map[string]any {
	return map[string]any{"l4Listeners": []any{map[string]any{
		"protocol": "TCP", "port": int64(80),
		"healthCheck": map[string]any{
			"enable": true, "checkType": "HTTP", "httpCheckPath": "/healthz", "httpCheckMethod": "GET",
			"httpCode": int64(2), "intervalTime": intervalTime, "healthNum": int64(2), "unHealthNum": int64(2),
		},
		"scheduler": "LEAST_CONN",
		"session":   map[string]any{"enable": true, "sessionExpireTime": int64(300)},
	}}}
}

// selectApp makes a Service select the Pods of app rather than of its name.
func selectApp(app string) func(*corev1.Service) {
	return func(s *corev1.Service) { s.Spec.Selector = map[string]string{"app": app} }
}

// onPort makes a Service's only port number port.
func onPort(port int32) func(*corev1.Service) {
	return func(s *corev1.Service) { s.Spec.Ports[0].Port = port; s.Spec.Ports[0].Name = fmt.Sprintf("p%d", port) }
}

// listener finds a listener of a CLB in the emulator's state.
func (f *fixture) listener(lbID string, protocol cloud.Protocol, port int32) (fake.ListenerState, bool) {
	f.t.Helper()
	lb, ok := f.loadBalancer(lbID)
	if !ok {
		return fake.ListenerState{}, false
	}
	for _, l := range lb.Listeners {
		if l.Protocol == protocol && l.Port == port {
			return l, true
		}
	}
	return fake.ListenerState{}, false
}

// podEndpointsOn are the registrable Pods of app as "ip:port".
func (f *fixture) podEndpointsOn(app, port string) []string {
	f.t.Helper()
	var out []string
	for _, ep := range f.registrablePodEndpoints(app) {
		host, _, _ := net.SplitHostPort(ep)
		out = append(out, net.JoinHostPort(host, port))
	}
	slices.Sort(out)
	return out
}

// expectListeners waits until the Service's CLB has exactly the listeners of
// want ("PROTO:port"), each with exactly the backends want computes (called
// on every poll, as Pods come and go).
func (f *fixture) expectListeners(serviceName string, timeout time.Duration, want func() map[string][]string) time.Duration {
	f.t.Helper()
	return f.waitFor(timeout, "listeners and backends of "+serviceName, func() (bool, string) {
		w := want()
		view := f.clb(serviceName)
		if view.id == "" {
			return false, "the Service has no CLB yet"
		}
		ok := len(view.listeners) == len(w)
		for k, backends := range w {
			if got, has := view.listeners[k]; !has || !slices.Equal(got, backends) {
				ok = false
			}
		}
		return ok, fmt.Sprintf("want %v; have %s", w, view)
	})
}

// waitEvent waits for an event of reason and type on the object whose note
// contains every one of contains, and returns its note.
func (f *fixture) waitEvent(timeout time.Duration, object, eventType, reason string, contains ...string) string {
	f.t.Helper()
	var note string
	f.waitFor(timeout, fmt.Sprintf("a %s event %s on %s mentioning %q", eventType, reason, object, contains), func() (bool, string) {
		evs, err := e.Admin.EventsV1().Events(f.ns).List(f.ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		var seen []string
		for _, ev := range evs.Items {
			if ev.Regarding.Name != object {
				continue
			}
			seen = append(seen, fmt.Sprintf("%s %s: %s", ev.Type, ev.Reason, ev.Note))
			if ev.Type != eventType || ev.Reason != reason {
				continue
			}
			all := true
			for _, c := range contains {
				all = all && strings.Contains(ev.Note, c)
			}
			if all {
				note = ev.Note
				return true, ""
			}
		}
		return false, fmt.Sprintf("events of %s: %q", object, seen)
	})
	return note
}

// healthOf reports whether the CLB says backend ip:port of a listener is
// healthy, and whether it is there at all.
func (f *fixture) healthOf(lbID string, protocol cloud.Protocol, port int32, backend string) (healthy, found bool, detail string) {
	f.t.Helper()
	l, ok := f.listener(lbID, protocol, port)
	if !ok {
		return false, false, "no listener"
	}
	for _, b := range l.Backends {
		if b.Key().String() == backend {
			return b.Healthy, true, b.HealthDetail
		}
	}
	return false, false, "not registered"
}

// allHealthy waits until every backend of the Service's listener is healthy.
func (f *fixture) allHealthy(serviceName, listener string, n int, timeout time.Duration) {
	f.t.Helper()
	f.waitFor(timeout, fmt.Sprintf("%d healthy backends on %s of %s", n, listener, serviceName), func() (bool, string) {
		v := f.clb(serviceName)
		return v.healthy[listener] == n && len(v.listeners[listener]) == n, v.String()
	})
}

func (f *fixture) podsOf(app string) []corev1.Pod {
	f.t.Helper()
	pods, err := e.Admin.CoreV1().Pods(f.ns).List(f.ctx, metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		f.t.Fatal(err)
	}
	var out []corev1.Pod
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && p.Status.PodIP != "" {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b corev1.Pod) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// deleteService deletes a Service and waits until it is gone (finalizer
// released).
func (f *fixture) deleteService(name string, timeout time.Duration) time.Duration {
	f.t.Helper()
	if err := e.Admin.CoreV1().Services(f.ns).Delete(f.ctx, name, metav1.DeleteOptions{}); err != nil {
		f.t.Fatal(err)
	}
	return f.waitFor(timeout, "Service "+name+" gone", func() (bool, string) {
		svc, err := e.Admin.CoreV1().Services(f.ns).Get(f.ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, ""
		}
		if err != nil {
			return false, err.Error()
		}
		return false, fmt.Sprintf("still there, finalizers %v", svc.Finalizers)
	})
}

// Bound: the listener gets the config's HTTP check, LEAST_CONN and a 300 s
// session within 30 s; a Pod failing /healthz is reported unhealthy by that
// listener within 10 s while a default (TCP-checked) listener keeps it
// healthy; a config update reaches the listener within 10 s; the API server
// itself refuses an out-of-range config; a Service naming a missing config
// gets a Warning within 10 s and its CLB stays unchanged while Pods change.
func TestTkeServiceConfig(t *testing.T) {
	f := newFixture(t, env.ControllerOptions{})
	configs := f.serviceConfigs()
	if _, err := configs.Create(f.ctx, newServiceConfig(f.ns, "web-config", tcp80Config(5)), metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating TkeServiceConfig web-config: %v", err)
	}
	f.createDeployment("web", 2)
	f.createService("web", map[string]string{controller.AnnotationDirectAccess: "true", controller.AnnotationTkeServiceConfig: "web-config"})
	// The control: the same Pods behind a listener with the default check.
	f.createService("plain", direct, selectApp("web"))
	f.expectBackends("web", "web", 2, 30*time.Second)
	f.expectBackends("plain", "web", 2, 30*time.Second)

	wantHC := cloud.HealthCheck{Enabled: true, IntervalSeconds: 5, TimeoutSeconds: 2, HealthyThreshold: 2, UnhealthyThreshold: 2,
		CheckType: "HTTP", HTTPCode: 2, HTTPPath: "/healthz", HTTPMethod: "GET"}
	lbID := f.clb("web").id
	listenerIs := func(hc cloud.HealthCheck) func() (bool, string) {
		return func() (bool, string) {
			l, ok := f.listener(lbID, cloud.ProtocolTCP, 80)
			if !ok {
				return false, "no listener TCP:80 on " + lbID
			}
			got := l.ListenerSpec
			ok = got.HealthCheck != nil && *got.HealthCheck == hc && got.Scheduler == "LEAST_CONN" && got.SessionExpireSeconds == 300
			gotHC := "nil"
			if got.HealthCheck != nil {
				gotHC = fmt.Sprintf("%+v", *got.HealthCheck)
			}
			return ok, fmt.Sprintf("want health check %+v, scheduler LEAST_CONN, session 300 s; have health check %s, scheduler %q, session %d s",
				hc, gotHC, got.Scheduler, got.SessionExpireSeconds)
		}
	}
	f.waitFor(10*time.Second, "listener TCP:80 tuned by web-config", listenerIs(wantHC))

	// The HTTP check matters: a Pod whose /healthz fails is unhealthy on
	// the tuned listener, and healthy on the TCP-checked one.
	f.allHealthy("web", "TCP:80", 2, 15*time.Second)
	f.allHealthy("plain", "TCP:80", 2, 15*time.Second)
	sick := f.podsOf("web")[0]
	sickEndpoint := net.JoinHostPort(sick.Status.PodIP, "8080")
	plainID := f.clb("plain").id
	e.Sim.SetHealthy(f.ns, sick.Name, false)
	t.Cleanup(func() { e.Sim.SetHealthy(f.ns, sick.Name, true) })
	took := f.waitFor(10*time.Second, "the HTTP-checked listener reports "+sickEndpoint+" unhealthy", func() (bool, string) {
		healthy, found, detail := f.healthOf(lbID, cloud.ProtocolTCP, 80, sickEndpoint)
		return found && !healthy, fmt.Sprintf("want registered and unhealthy; registered %v healthy %v (%s)", found, healthy, detail)
	})
	t.Logf("HTTP check reported the failing Pod unhealthy in %s", took)
	// Three failed TCP checks at the scaled 500 ms interval would take 1.5 s.
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if healthy, found, detail := f.healthOf(plainID, cloud.ProtocolTCP, 80, sickEndpoint); !found || !healthy {
			t.Fatalf("the default TCP check must keep %s healthy (it accepts connections); registered %v healthy %v (%s)", sickEndpoint, found, healthy, detail)
		}
	}
	if healthy, _, detail := f.healthOf(lbID, cloud.ProtocolTCP, 80, sickEndpoint); healthy {
		t.Errorf("%s turned healthy again on the HTTP-checked listener although /healthz still fails (%s)", sickEndpoint, detail)
	}

	// An update of the config reaches the listener.
	cfg, err := configs.Get(f.ctx, "web-config", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Object["spec"] = map[string]any{"loadBalancer": tcp80Config(10)}
	if _, err := configs.Update(f.ctx, cfg, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("updating web-config to intervalTime 10: %v", err)
	}
	wantHC.IntervalSeconds = 10
	took = f.waitFor(10*time.Second, "listener TCP:80 follows web-config's intervalTime 10", listenerIs(wantHC))
	t.Logf("config update reached the listener in %s", took)

	// The CRD's schema refuses an interval below 5 s: on update and create.
	cfg, err = configs.Get(f.ctx, "web-config", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Object["spec"] = map[string]any{"loadBalancer": tcp80Config(3)}
	_, err = configs.Update(f.ctx, cfg, metav1.UpdateOptions{})
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "intervalTime") {
		t.Errorf("updating web-config to intervalTime 3: want an Invalid error from the API server naming intervalTime, got %v", err)
	}
	_, err = configs.Create(f.ctx, newServiceConfig(f.ns, "bad-config", tcp80Config(3)), metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "intervalTime") {
		t.Errorf("creating bad-config with intervalTime 3: want an Invalid error from the API server naming intervalTime, got %v", err)
	}
	time.Sleep(time.Second)
	if ok, detail := listenerIs(wantHC)(); !ok {
		t.Errorf("after the refused config changes the listener changed: %s", detail)
	}

	// A Service naming a config that does not exist: Warning, CLB unchanged.
	before, _ := f.loadBalancer(plainID)
	f.updateService("plain", func(s *corev1.Service) { s.Annotations[controller.AnnotationTkeServiceConfig] = "missing-config" })
	f.waitEvent(10*time.Second, "plain", corev1.EventTypeWarning, controller.ReasonInvalidConfig, "missing-config")
	f.scale("web", 3)
	// The tuned Service takes the new Pod: a sync the other one would have made.
	f.expectBackends("web", "web", 3, 30*time.Second)
	time.Sleep(2 * time.Second)
	after, _ := f.loadBalancer(plainID)
	if !reflect.DeepEqual(clbSpec(before), clbSpec(after)) {
		t.Errorf("the CLB of a Service naming a missing TkeServiceConfig changed:\n before %+v\n after  %+v", clbSpec(before), clbSpec(after))
	}
}

// clbSpec is a CLB without health verdicts: what the controller writes.
func clbSpec(lb fake.LoadBalancerState) map[string]any {
	listeners := map[string]any{}
	for _, l := range lb.Listeners {
		var backends []cloud.Backend
		for _, b := range l.Backends {
			backends = append(backends, b.Backend)
		}
		slices.SortFunc(backends, func(a, b cloud.Backend) int { return strings.Compare(a.Key().String(), b.Key().String()) })
		listeners[fmt.Sprintf("%s:%d", l.Protocol, l.Port)] = map[string]any{"listener": l.Listener, "backends": backends}
	}
	return map[string]any{"id": lb.ID, "vips": lb.VIPs, "listeners": listeners}
}

// Bound: <svc>-auto-service-config appears within 30 s showing listener
// TCP:80 as it is, owned by the Service, follows a new port within 15 s, and
// is deleted by the garbage collector within 90 s of the Service (the
// collector discovers the CRD, installed after it started, on its periodic
// resync, which may take up to ~60 s).
func TestAutoServiceConfig(t *testing.T) {
	f := newFixture(t, env.ControllerOptions{})
	f.createDeployment("web", 2)
	f.createService("web", map[string]string{controller.AnnotationDirectAccess: "true", controller.AnnotationTkeServiceConfigAuto: "true"})
	f.expectBackends("web", "web", 2, 30*time.Second)
	svc := f.service("web")
	configs := f.serviceConfigs()
	name := tkeconfig.AutoConfigName("web")

	// What the emulator gives a new listener with the controller's default
	// TCP check, in TkeServiceConfig form.
	wantListener := func(port int64) map[string]any {
		return map[string]any{
			"protocol": "TCP", "port": port, "scheduler": "WRR",
			"session": map[string]any{"enable": false},
			"healthCheck": map[string]any{"enable": true, "intervalTime": int64(5), "timeout": int64(2),
				"healthNum": int64(3), "unHealthNum": int64(3)},
		}
	}
	var got *unstructured.Unstructured
	listenersAre := func(ports ...int64) func() (bool, string) {
		return func() (bool, string) {
			var err error
			got, err = configs.Get(f.ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			var want []any
			for _, p := range ports {
				want = append(want, wantListener(p))
			}
			have, _, _ := unstructured.NestedSlice(got.Object, "spec", "loadBalancer", "l4Listeners")
			return reflect.DeepEqual(normalize(have), normalize(want)), fmt.Sprintf("want l4Listeners %v; have %v", want, have)
		}
	}
	took := f.waitFor(30*time.Second, name+" shows listener TCP:80", listenersAre(80))
	t.Logf("%s appeared in %s", name, took)
	owners := got.GetOwnerReferences()
	if len(owners) != 1 || owners[0].Kind != "Service" || owners[0].APIVersion != "v1" || owners[0].Name != "web" ||
		owners[0].UID != svc.UID || !ptr.Deref(owners[0].Controller, false) {
		t.Errorf("ownerReferences of %s: want the Service web (uid %s) as controller, have %+v", name, svc.UID, owners)
	}

	// It follows the CLB: a second port gives a second listener.
	f.updateService("web", func(s *corev1.Service) {
		s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: "alt", Port: 81, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("http")})
	})
	f.waitFor(15*time.Second, name+" shows listeners TCP:80 and TCP:81", listenersAre(80, 81))

	lbID := f.clb("web").id
	start := time.Now()
	f.deleteService("web", 30*time.Second)
	if _, ok := f.loadBalancer(lbID); ok {
		t.Errorf("CLB %s still exists after its Service was deleted", lbID)
	}
	f.waitFor(90*time.Second, name+" deleted by the garbage collector", func() (bool, string) {
		_, err := configs.Get(f.ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, ""
		}
		return false, fmt.Sprintf("still there (err %v)", err)
	})
	t.Logf("%s garbage-collected %s after the Service was deleted", name, time.Since(start).Round(time.Millisecond))
}

// normalize makes JSON-shaped values comparable whatever their integer
// types.
func normalize(v any) any {
	data, err := json.Marshal(v)
	if err != nil {
		return err.Error()
	}
	var out any
	if err := json.Unmarshal(data, &out); err != nil {
		return err.Error()
	}
	return out
}

// Bound: two Services on the user's CLB get their listeners and all Pods
// within 30 s; a third on a port a foreign listener holds gets a Warning
// within 10 s and the foreign listener stays as it was; deleting the
// Services removes their listeners only, each within 30 s.
func TestExistingCLB(t *testing.T) {
	f := newFixture(t, env.ControllerOptions{})

	// The user makes a CLB with a listener of their own, with the SDK.
	credentials := filepath.Join(t.TempDir(), "credentials.json")
	data, err := json.Marshal(map[string]string{"secretId": e.Emulator.SecretID, "secretKey": e.Emulator.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(credentials, data, 0o600); err != nil {
		t.Fatal(err)
	}
	user, err := tencent.New(tencent.Options{Region: e.Emulator.Region, Endpoint: e.Emulator.Addr, Scheme: "http", CredentialsFile: credentials})
	if err != nil {
		t.Fatal(err)
	}
	lb, err := user.CreateLoadBalancer(f.ctx, cloud.LoadBalancerSpec{Name: "users-own-clb"})
	if err != nil {
		t.Fatalf("creating the user's CLB: %v", err)
	}
	t.Cleanup(func() {
		if err := user.DeleteLoadBalancer(context.Background(), lb.ID); err != nil && !cloud.IsNotFound(err) {
			t.Errorf("deleting the user's CLB %s: %v", lb.ID, err)
		}
	})
	foreign, err := user.CreateListener(f.ctx, lb.ID, cloud.ListenerSpec{Name: "users-https", Protocol: cloud.ProtocolTCP, Port: 443,
		Scheduler: "LEAST_CONN", SessionExpireSeconds: 60})
	if err != nil {
		t.Fatalf("creating the user's listener: %v", err)
	}
	if err := user.RegisterBackends(f.ctx, lb.ID, []cloud.ListenerBackend{{ListenerID: foreign.ID, Backend: cloud.Backend{IP: "127.0.0.1", Port: 9, Weight: 7}}}); err != nil {
		t.Fatalf("registering the user's backend: %v", err)
	}
	foreignSpec := func() (map[string]any, bool) {
		l, ok := f.listener(lb.ID, cloud.ProtocolTCP, 443)
		if !ok {
			return nil, false
		}
		return clbSpec(fake.LoadBalancerState{Listeners: []fake.ListenerState{l}})["listeners"].(map[string]any), true
	}
	foreignBefore, _ := foreignSpec()

	existing := map[string]string{controller.AnnotationDirectAccess: "true", controller.AnnotationExistingLoadBalancer: lb.ID}
	f.createDeployment("web", 2)
	f.createService("web-80", existing, selectApp("web"), onPort(80))
	f.createService("web-8080", existing, selectApp("web"), onPort(8080))
	want := func(ports ...string) func() map[string][]string {
		return func() map[string][]string {
			w := map[string][]string{"TCP:443": {"127.0.0.1:9"}}
			for _, p := range ports {
				w["TCP:"+p] = f.podEndpointsOn("web", "8080")
			}
			return w
		}
	}
	took := f.expectListeners("web-80", 30*time.Second, want("80", "8080"))
	t.Logf("two Services share the user's CLB after %s", took)
	for _, name := range []string{"web-80", "web-8080"} {
		if id := f.service(name).Annotations[controller.AnnotationLoadBalancerID]; id != lb.ID {
			t.Errorf("Service %s records CLB %q, want the user's %s", name, id, lb.ID)
		}
	}
	if n := len(f.podEndpointsOn("web", "8080")); n != 2 {
		t.Errorf("%d Pods registrable, want 2", n)
	}

	f.createService("web-443", existing, selectApp("web"), onPort(443))
	f.waitEvent(10*time.Second, "web-443", corev1.EventTypeWarning, controller.ReasonListenerConflict, lb.ID, "TCP:443")
	time.Sleep(2 * time.Second)
	if after, ok := foreignSpec(); !ok || !reflect.DeepEqual(after, foreignBefore) {
		t.Errorf("the user's listener changed:\n before %+v\n after  %+v (present %v)", foreignBefore, after, ok)
	}
	f.expectListeners("web-80", 5*time.Second, want("80", "8080"))

	f.deleteService("web-80", 30*time.Second)
	f.expectListeners("web-8080", 10*time.Second, want("8080"))
	f.deleteService("web-8080", 30*time.Second)
	f.deleteService("web-443", 30*time.Second)
	state, err := e.Emulator.State(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	var found *fake.LoadBalancerState
	for i := range state.LoadBalancers {
		if state.LoadBalancers[i].ID == lb.ID {
			found = &state.LoadBalancers[i]
		}
	}
	if found == nil {
		t.Fatalf("the user's CLB %s was deleted with the Services that used it", lb.ID)
	}
	if after, ok := foreignSpec(); len(found.Listeners) != 1 || !ok || !reflect.DeepEqual(after, foreignBefore) {
		t.Errorf("after the Services were deleted the user's CLB should have exactly its own listener as before:\n want %+v\n have %+v", foreignBefore, clbSpec(*found))
	}
}

// Bound: the internal CLB in its subnet and the public CLB with the
// bandwidth of the extensive parameters, each with its Pods, within 30 s;
// invalid parameters give a Warning within 10 s and no CLB 3 s later.
func TestInternalCLBAndExtensiveParameters(t *testing.T) {
	f := newFixture(t, env.ControllerOptions{})
	f.createDeployment("web", 2)
	f.createService("internal", map[string]string{controller.AnnotationDirectAccess: "true",
		controller.AnnotationInternalSubnet: "subnet-abc123"}, selectApp("web"))
	f.createService("wide", map[string]string{controller.AnnotationDirectAccess: "true",
		controller.AnnotationExtensiveParameters: `{"InternetAccessible":{"InternetChargeType":"TRAFFIC_POSTPAID_BY_HOUR","InternetMaxBandwidthOut":20}}`}, selectApp("web"))
	f.createService("broken", map[string]string{controller.AnnotationDirectAccess: "true",
		controller.AnnotationExtensiveParameters: `{"InternetAccessible":{"InternetMaxBandwidthOut":20}`}, selectApp("web"))

	f.expectBackends("internal", "web", 2, 30*time.Second)
	f.expectBackends("wide", "web", 2, 30*time.Second)
	internal, _ := f.loadBalancer(f.clb("internal").id)
	if internal.SubnetID != "subnet-abc123" {
		t.Errorf("CLB %s of Service internal: SubnetID %q, want subnet-abc123", internal.ID, internal.SubnetID)
	}
	wide, _ := f.loadBalancer(f.clb("wide").id)
	if wide.InternetMaxBandwidthOut != 20 || wide.SubnetID != "" {
		t.Errorf("CLB %s of Service wide: InternetMaxBandwidthOut %d SubnetID %q, want 20 and public (no subnet)", wide.ID, wide.InternetMaxBandwidthOut, wide.SubnetID)
	}

	f.waitEvent(10*time.Second, "broken", corev1.EventTypeWarning, controller.ReasonInvalidConfig, controller.AnnotationExtensiveParameters)
	time.Sleep(3 * time.Second)
	broken := f.service("broken")
	state, err := e.Emulator.State(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	var tagged []string
	for _, lb := range state.LoadBalancers {
		if lb.Tags[cloud.TagServiceUUID] == string(broken.UID) {
			tagged = append(tagged, lb.ID)
		}
	}
	if id := broken.Annotations[controller.AnnotationLoadBalancerID]; id != "" || len(tagged) > 0 {
		t.Errorf("Service broken with invalid extensive parameters: want no CLB; annotation %q, CLBs tagged with its UID %v", id, tagged)
	}
}

// Bound: with GlobalRouter Pods and the cluster's opt-in withdrawn, a
// scale-up gives a Warning within 15 s and the CLB keeps its backends; with
// the opt-in back, all Pods are registered within 30 s.
func TestGlobalRouterOptIn(t *testing.T) {
	f := newFixture(t, env.ControllerOptions{})
	t.Cleanup(func() {
		if err := e.SetGlobalRouteDirectAccess(context.Background(), true); err != nil {
			t.Errorf("restoring GlobalRouteDirectAccess: %v", err)
		}
	})
	f.createDeployment("web", 2)
	f.createService("web", direct)
	f.expectBackends("web", "web", 2, 30*time.Second)
	before := f.clb("web")

	if err := e.SetGlobalRouteDirectAccess(f.ctx, false); err != nil {
		t.Fatal(err)
	}
	f.scale("web", 4)
	f.waitEvent(15*time.Second, "web", corev1.EventTypeWarning, controller.ReasonNetworkMode, controller.GlobalRouteDirectAccessKey)
	f.waitFor(30*time.Second, "4 Pods running", func() (bool, string) {
		n := len(f.registrablePodEndpoints("web"))
		return n == 4, fmt.Sprintf("%d registrable", n)
	})
	time.Sleep(2 * time.Second)
	if after := f.clb("web"); after.backends() != before.backends() {
		t.Errorf("the CLB changed while GlobalRouter Pods are not allowed:\n before %s\n after  %s", before.backends(), after.backends())
	}

	if err := e.SetGlobalRouteDirectAccess(f.ctx, true); err != nil {
		t.Fatal(err)
	}
	took := f.expectBackends("web", "web", 4, 30*time.Second)
	t.Logf("opt-in restored: 4 Pods registered in %s", took)
}

// Bound: a deleted Pod's backend is seen at weight 0 while the Pod is still
// terminating (within its 3 s grace period), then deregistered within 10 s
// of its deletion; the other backend keeps its weight throughout.
func TestGraceShutdownDrainsAtWeightZero(t *testing.T) {
	f := newFixture(t, env.ControllerOptions{})
	f.createDeployment("web", 2, func(d *appsv1.Deployment) {
		d.Spec.Template.Spec.TerminationGracePeriodSeconds = ptr.To[int64](3)
	})
	f.createService("web", map[string]string{controller.AnnotationDirectAccess: "true", controller.AnnotationGraceShutdown: "true"})
	f.expectBackends("web", "web", 2, 30*time.Second)
	lbID := f.clb("web").id
	pods := f.podsOf("web")
	victim, survivor := pods[0], pods[1]
	victimEP := net.JoinHostPort(victim.Status.PodIP, "8080")
	survivorEP := net.JoinHostPort(survivor.Status.PodIP, "8080")

	weights := func() map[string]int32 {
		l, _ := f.listener(lbID, cloud.ProtocolTCP, 80)
		out := map[string]int32{}
		for _, b := range l.Backends {
			out[b.Key().String()] = b.Weight
		}
		return out
	}
	deleted := time.Now()
	if err := e.Admin.CoreV1().Pods(f.ns).Delete(f.ctx, victim.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	var seenZero time.Duration
	var last map[string]int32
	for seenZero == 0 && time.Since(deleted) < 5*time.Second {
		last = weights()
		if w, ok := last[victimEP]; ok && w == 0 {
			p, err := e.Admin.CoreV1().Pods(f.ns).Get(f.ctx, victim.Name, metav1.GetOptions{})
			if err != nil || p.UID != victim.UID || p.DeletionTimestamp == nil {
				t.Fatalf("%s was at weight 0 only once the Pod was gone (get: %v): it must drain while terminating", victimEP, err)
			}
			seenZero = time.Since(deleted)
			if last[survivorEP] != controller.DefaultBackendWeight {
				t.Errorf("the surviving backend %s has weight %d, want %d", survivorEP, last[survivorEP], controller.DefaultBackendWeight)
			}
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if seenZero == 0 {
		t.Fatalf("the terminating Pod's backend %s was never seen at weight 0 within 5 s; last weights %v", victimEP, last)
	}
	t.Logf("terminating Pod at weight 0 %s after its deletion", seenZero.Round(time.Millisecond))

	f.waitFor(10*time.Second, victimEP+" deregistered once its Pod is gone", func() (bool, string) {
		_, err := e.Admin.CoreV1().Pods(f.ns).Get(f.ctx, victim.Name, metav1.GetOptions{})
		podGone := apierrors.IsNotFound(err)
		w := weights()
		_, registered := w[victimEP]
		return podGone && !registered, fmt.Sprintf("Pod gone %v, backends %v", podGone, w)
	})
	t.Logf("deregistered %s after the deletion", time.Since(deleted).Round(time.Millisecond))
	f.expectBackends("web", "web", 2, 30*time.Second)
}

// Bound: each change of the Service's ports reaches the CLB within 20 s: a
// UDP port gets a UDP listener with every Pod (healthy: the Pods answer
// UDP), a new targetPort re-points the backends, a removed port loses its
// listener.
func TestListenerFollowsServicePorts(t *testing.T) {
	f := newFixture(t, env.ControllerOptions{})
	f.createDeployment("web", 2, func(d *appsv1.Deployment) {
		c := &d.Spec.Template.Spec.Containers[0]
		c.Ports = append(c.Ports,
			corev1.ContainerPort{Name: "dns", ContainerPort: 5353, Protocol: corev1.ProtocolUDP},
			corev1.ContainerPort{Name: "alt", ContainerPort: 8081, Protocol: corev1.ProtocolTCP})
	})
	f.createService("web", direct)
	f.expectBackends("web", "web", 2, 30*time.Second)

	f.updateService("web", func(s *corev1.Service) {
		s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromString("dns")})
	})
	took := f.expectListeners("web", 20*time.Second, func() map[string][]string {
		return map[string][]string{"TCP:80": f.podEndpointsOn("web", "8080"), "UDP:53": f.podEndpointsOn("web", "5353")}
	})
	t.Logf("UDP listener with its backends in %s", took)
	f.allHealthy("web", "UDP:53", 2, 15*time.Second)

	f.updateService("web", func(s *corev1.Service) { s.Spec.Ports[0].TargetPort = intstr.FromInt32(8081) })
	took = f.expectListeners("web", 20*time.Second, func() map[string][]string {
		return map[string][]string{"TCP:80": f.podEndpointsOn("web", "8081"), "UDP:53": f.podEndpointsOn("web", "5353")}
	})
	t.Logf("TCP:80 re-pointed to port 8081 in %s", took)
	f.allHealthy("web", "TCP:80", 2, 15*time.Second)

	f.updateService("web", func(s *corev1.Service) {
		s.Spec.Ports = slices.DeleteFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return p.Protocol == corev1.ProtocolUDP })
	})
	took = f.expectListeners("web", 20*time.Second, func() map[string][]string {
		return map[string][]string{"TCP:80": f.podEndpointsOn("web", "8081")}
	})
	t.Logf("UDP:53 listener deleted in %s", took)
}
