package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"clb-direct/cloud/fake"
	"clb-direct/controller"
	"clb-direct/test/env"
)

// fixture is one test's namespace and controller.
type fixture struct {
	t    *testing.T
	ctx  context.Context
	ns   string
	ctrl *env.Controller
	// em is the emulator the test's controller uses: the environment's,
	// or ControllerOptions.Emulator.
	em *env.Emulator
}

var namespaceSeq atomic.Int32

// newFixture creates a namespace and starts a controller for the test. At
// the end it deletes the test's Services, checks their CLBs are gone (no
// leak), and checks the controller exits cleanly on SIGTERM.
func newFixture(t *testing.T, opts env.ControllerOptions) *fixture {
	t.Helper()
	requireE2E(t)
	f := &fixture{t: t, ctx: t.Context(), ns: fmt.Sprintf("e2e-%d-%s", namespaceSeq.Add(1), strings.ToLower(strings.TrimPrefix(t.Name(), "Test")))}
	if len(f.ns) > 50 {
		f.ns = f.ns[:50]
	}
	f.ns = strings.Trim(strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, f.ns), "-")
	if _, err := e.Admin.CoreV1().Namespaces().Create(f.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: f.ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if opts.Name == "" {
		opts.Name = f.ns
	}
	f.em = e.Emulator
	if opts.Emulator != nil {
		f.em = opts.Emulator
	}
	f.ctrl = f.startController(opts)
	t.Cleanup(f.cleanup)
	return f
}

func (f *fixture) startController(opts env.ControllerOptions) *env.Controller {
	f.t.Helper()
	ctrl, err := e.StartController(context.Background(), opts)
	if err != nil {
		f.t.Fatal(err)
	}
	return ctrl
}

func (f *fixture) cleanup() {
	t := f.t
	// The test's context is already cancelled when cleanups run.
	ctx := context.Background()
	f.ctx = ctx
	if f.ctrl != nil && !t.Failed() {
		svcs, err := e.Admin.CoreV1().Services(f.ns).List(ctx, metav1.ListOptions{})
		if err == nil {
			for _, svc := range svcs.Items {
				lbID := svc.Annotations[controller.AnnotationLoadBalancerID]
				_ = e.Admin.CoreV1().Services(f.ns).Delete(ctx, svc.Name, metav1.DeleteOptions{})
				f.waitFor(30*time.Second, "Service "+svc.Name+" deleted and its CLB gone", func() (bool, string) {
					_, err := e.Admin.CoreV1().Services(f.ns).Get(ctx, svc.Name, metav1.GetOptions{})
					if err == nil {
						return false, "the Service still exists (finalizer not released)"
					}
					if lbID == "" {
						return true, ""
					}
					if lb, ok := f.loadBalancer(lbID); ok {
						return false, fmt.Sprintf("CLB %s still exists with %d listeners", lbID, len(lb.Listeners))
					}
					return true, ""
				})
			}
		}
	}
	if f.ctrl != nil {
		select {
		case <-f.ctrl.Done():
		default:
			if err := f.ctrl.Stop(30 * time.Second); err != nil && !t.Failed() {
				t.Errorf("controller did not exit cleanly on SIGTERM: %v", err)
			}
		}
		if t.Failed() {
			t.Logf("controller log %s ends with:\n%s", f.ctrl.LogPath, env.Tail(f.ctrl.LogPath, 40))
		}
	}
	_ = e.Admin.CoreV1().Namespaces().Delete(ctx, f.ns, metav1.DeleteOptions{})
}

// waitFor polls cond until it holds, failing the test with cond's last
// explanation (the difference between expected and actual) on timeout.
func (f *fixture) waitFor(timeout time.Duration, what string, cond func() (bool, string)) time.Duration {
	f.t.Helper()
	start := time.Now()
	last := ""
	for {
		ok, detail := cond()
		if ok {
			return time.Since(start)
		}
		last = detail
		if time.Since(start) > timeout {
			f.t.Fatalf("%s: not true within %s: %s", what, timeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (f *fixture) createDeployment(name string, replicas int32, mutate ...func(*appsv1.Deployment)) {
	f.t.Helper()
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: f.ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: ptr.To[int64](3),
					Containers: []corev1.Container{{
						Name: "web", Image: "simulated",
						Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}},
					}},
				},
			},
		},
	}
	for _, m := range mutate {
		m(d)
	}
	if _, err := e.Admin.AppsV1().Deployments(f.ns).Create(f.ctx, d, metav1.CreateOptions{}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) scale(name string, replicas int32) {
	f.t.Helper()
	scale, err := e.Admin.AppsV1().Deployments(f.ns).GetScale(f.ctx, name, metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	scale.Spec.Replicas = replicas
	if _, err := e.Admin.AppsV1().Deployments(f.ns).UpdateScale(f.ctx, name, scale, metav1.UpdateOptions{}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) createService(name string, annotations map[string]string, mutate ...func(*corev1.Service)) {
	f.t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: f.ns, Annotations: annotations},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("http")}},
		},
	}
	for _, m := range mutate {
		m(svc)
	}
	if _, err := e.Admin.CoreV1().Services(f.ns).Create(f.ctx, svc, metav1.CreateOptions{}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) updateService(name string, mutate func(*corev1.Service)) {
	f.t.Helper()
	for range 5 {
		svc, err := e.Admin.CoreV1().Services(f.ns).Get(f.ctx, name, metav1.GetOptions{})
		if err != nil {
			f.t.Fatal(err)
		}
		mutate(svc)
		if _, err = e.Admin.CoreV1().Services(f.ns).Update(f.ctx, svc, metav1.UpdateOptions{}); err == nil {
			return
		}
	}
	f.t.Fatalf("updating Service %s kept conflicting", name)
}

func (f *fixture) service(name string) *corev1.Service {
	f.t.Helper()
	svc, err := e.Admin.CoreV1().Services(f.ns).Get(f.ctx, name, metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	return svc
}

// registrablePodEndpoints are "ip:8080" of the Pods the controller must
// register: running, not terminating, containers ready (Ready may wait on
// the readiness gate, which waits on the registration).
func (f *fixture) registrablePodEndpoints(app string) []string {
	f.t.Helper()
	pods, err := e.Admin.CoreV1().Pods(f.ns).List(f.ctx, metav1.ListOptions{LabelSelector: labels.Set{"app": app}.String()})
	if err != nil {
		f.t.Fatal(err)
	}
	var out []string
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil || p.Status.PodIP == "" || !podCondition(&p, corev1.ContainersReady) {
			continue
		}
		out = append(out, net.JoinHostPort(p.Status.PodIP, "8080"))
	}
	slices.Sort(out)
	return out
}

func podReady(p *corev1.Pod) bool { return podCondition(p, corev1.PodReady) }

func podCondition(p *corev1.Pod, conditionType corev1.PodConditionType) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == conditionType {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func (f *fixture) loadBalancer(id string) (fake.LoadBalancerState, bool) {
	f.t.Helper()
	state, err := f.em.State(f.ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	for _, lb := range state.LoadBalancers {
		if lb.ID == id {
			return lb, true
		}
	}
	return fake.LoadBalancerState{}, false
}

// clbBackends describes the CLB of a Service: its VIP and, per listener,
// the sorted "ip:port" of its backends (and how many are healthy).
type clbView struct {
	id        string
	vip       string
	listeners map[string][]string
	healthy   map[string]int
}

// backends is the view without health: what the controller decides.
func (v clbView) backends() string {
	v.healthy = nil
	return v.String()
}

func (v clbView) String() string {
	var parts []string
	for _, k := range slices.Sorted(mapKeys(v.listeners)) {
		parts = append(parts, fmt.Sprintf("%s=%v (healthy %d)", k, v.listeners[k], v.healthy[k]))
	}
	return fmt.Sprintf("CLB %q vip %q listeners {%s}", v.id, v.vip, strings.Join(parts, "; "))
}

func mapKeys[M ~map[string]V, V any](m M) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func (f *fixture) clb(serviceName string) clbView {
	f.t.Helper()
	svc := f.service(serviceName)
	id := svc.Annotations[controller.AnnotationLoadBalancerID]
	view := clbView{id: id, listeners: map[string][]string{}, healthy: map[string]int{}}
	if id == "" {
		return view
	}
	lb, ok := f.loadBalancer(id)
	if !ok {
		return view
	}
	if len(lb.VIPs) > 0 {
		view.vip = lb.VIPs[0]
	}
	for _, l := range lb.Listeners {
		key := fmt.Sprintf("%s:%d", l.Protocol, l.Port)
		view.listeners[key] = []string{}
		for _, b := range l.Backends {
			view.listeners[key] = append(view.listeners[key], b.Key().String())
			if b.Healthy {
				view.healthy[key]++
			}
		}
		slices.Sort(view.listeners[key])
	}
	return view
}

// expectBackends waits until the app has replicas registrable Pods and the
// Service's CLB has exactly one listener, TCP:80, whose backends are them.
func (f *fixture) expectBackends(serviceName, app string, replicas int, timeout time.Duration) time.Duration {
	f.t.Helper()
	return f.waitFor(timeout, fmt.Sprintf("CLB backends of %s = its %d Pods", serviceName, replicas), func() (bool, string) {
		want := f.registrablePodEndpoints(app)
		view := f.clb(serviceName)
		got, ok := view.listeners["TCP:80"]
		if len(want) != replicas || !ok || len(view.listeners) != 1 || !slices.Equal(got, want) {
			return false, fmt.Sprintf("want %d Pods on listener TCP:80, Pods %v; have %s", replicas, want, view)
		}
		return true, ""
	})
}

// httpGet sends one request through the CLB on a new connection, so the
// data plane picks a backend for each request.
func httpGet(addr string) (string, error) {
	client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + addr + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %s: %s", resp.Status, body)
	}
	return strings.TrimSpace(string(body)), nil
}

func vipAddr(view clbView) string { return net.JoinHostPort(view.vip, strconv.Itoa(80)) }

// load sends requests through the CLB continuously until stopped and
// counts the failures.
type load struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       []string
	stop       chan struct{}
	done       sync.WaitGroup
}

func startLoad(addr string, workers int) *load {
	l := &load{stop: make(chan struct{})}
	for range workers {
		l.done.Go(func() {
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				if _, err := httpGet(addr); err != nil {
					l.failed.Add(1)
					l.mu.Lock()
					if len(l.errs) < 10 {
						l.errs = append(l.errs, time.Now().Format("15:04:05.000")+" "+err.Error())
					}
					l.mu.Unlock()
				} else {
					l.ok.Add(1)
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	return l
}

func (l *load) finish() (ok, failed int64, errs []string) {
	close(l.stop)
	l.done.Wait()
	return l.ok.Load(), l.failed.Load(), l.errs
}

// waitForTraffic waits until requests through addr succeed 5 times in a
// row: the data plane follows the account's health within its reconcile
// interval, so load starts once requests really flow.
func (f *fixture) waitForTraffic(addr string) {
	f.t.Helper()
	f.waitFor(10*time.Second, "requests flow through "+addr, func() (bool, string) {
		for range 5 {
			if _, err := httpGet(addr); err != nil {
				return false, err.Error()
			}
		}
		return true, ""
	})
}

// sampleHealthy watches the fewest healthy backends the Service's TCP:80
// listener has, every 50 ms, until the returned function is called; that
// function returns the fewest seen.
func (f *fixture) sampleHealthy(serviceName string) func() int {
	fewest := 1 << 30
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			fewest = min(fewest, f.clb(serviceName).healthy["TCP:80"])
		}
	}()
	return func() int {
		close(stop)
		<-done
		return fewest
	}
}
