package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"

	"clb-direct/cloud"
	"clb-direct/cloud/fake"
	"clb-direct/cloud/tencent"
	"clb-direct/controller"
	"clb-direct/test/env"
)

// The workload: Services whose Pods never change ("stable", one of them on
// a CLB the user lends), Services and Pods the test churns, and cloud
// objects somebody else made ("foreign"), which the controller must never
// touch.
const (
	namespace     = "chaos"
	stableCount   = 3
	stableLent    = "stable-lent"
	churnCount    = 4
	maxChurnPods  = 4
	portHTTP      = 8080
	portAlt       = 8081
	backendWeight = 10
)

// The user's SecretId: their calls are told apart from the controller's in
// the emulator's logs.
const (
	userSecretID  = "AKIDchaosforeignuser"
	userSecretKey = "chaos-foreign-user-key"
)

var direct = map[string]string{controller.AnnotationDirectAccess: "true"}

// world is the workload and everything the test records about it.
type world struct {
	t    *testing.T
	ctx  context.Context
	user cloud.Interface

	// foreignCLBs are wholly someone else's; lentCLB is the user's CLB a
	// stable Service uses (tke-existed-lbid), with the user's listeners
	// foreignListeners on it.
	foreignCLBs      []string
	lentCLB          string
	foreignListeners []string
	// foreignBefore is the JSON of every foreign object in /admin/state
	// before the faults: whole CLBs, the lent CLB without its listeners,
	// and the user's listeners on it.
	foreignBefore map[string]string

	// stableCLB is each stable Service's CLB before the faults.
	stableCLB map[string]string

	pods    cache.Indexer
	stopInf context.CancelFunc

	mu sync.Mutex
	// services are every Service the test created, by UID.
	services map[types.UID]*serviceRecord
	// podUID and podName map every Pod IP ever seen (never reused) to its Pod.
	podUID  map[string]types.UID
	podName map[string]string
	// podUndesired and svcUndesired are the changes the test started that
	// may take a Pod, or some targets of a Service, out of the Service's
	// backends, with the instant taken before the API call, so that the
	// controller cannot have seen the change earlier. Every such change is
	// for good: a Pod deleted, made unready or relabelled never comes back,
	// a Service never returns to a target port it left nor gets port 81
	// again, so a target once out of the backends never returns to them.
	podUndesired map[types.UID][]time.Time
	svcUndesired map[types.UID][]serviceChange
	// port81 are the Services that got port 81 (once at most).
	port81 map[types.UID]bool
	// deleted are the Services the test deleted, which must be gone (their
	// finalizer released) at the end.
	deleted []types.UID
	podSeq  int

	traffic map[string]*traffic
}

type serviceRecord struct {
	name   string
	uid    types.UID
	stable bool
}

func newWorld(t *testing.T) *world {
	w := &world{
		t: t, ctx: t.Context(),
		foreignBefore: map[string]string{}, stableCLB: map[string]string{},
		services: map[types.UID]*serviceRecord{}, podUID: map[string]types.UID{}, podName: map[string]string{},
		podUndesired: map[types.UID][]time.Time{}, svcUndesired: map[types.UID][]serviceChange{}, port81: map[types.UID]bool{},
		traffic: map[string]*traffic{},
	}
	if _, err := e.Admin.CoreV1().Namespaces().Create(w.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	w.user = w.userClient()
	// Every Pod IP the namespace ever has, as soon as it is known.
	factory := informers.NewSharedInformerFactoryWithOptions(e.Admin, 0, informers.WithNamespace(namespace))
	inf := factory.Core().V1().Pods().Informer()
	record := func(obj any) {
		if p, ok := obj.(*corev1.Pod); ok && p.Status.PodIP != "" {
			w.mu.Lock()
			w.podUID[p.Status.PodIP], w.podName[p.Status.PodIP] = p.UID, p.Name
			w.mu.Unlock()
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: record, UpdateFunc: func(_, obj any) { record(obj) }}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.stopInf = cancel
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	w.pods = inf.GetIndexer()
	t.Cleanup(cancel)
	return w
}

// userClient is the official SDK as the user who owns the foreign objects.
func (w *world) userClient() cloud.Interface {
	credentials := filepath.Join(w.t.TempDir(), "user.json")
	data, _ := json.Marshal(map[string]string{"secretId": userSecretID, "secretKey": userSecretKey})
	if err := os.WriteFile(credentials, data, 0o600); err != nil {
		w.t.Fatal(err)
	}
	c, err := tencent.New(tencent.Options{Region: e.Emulator.Region, Endpoint: e.Emulator.Addr, Scheme: "http", CredentialsFile: credentials})
	if err != nil {
		w.t.Fatal(err)
	}
	return c
}

// proxyKubeconfig writes a kubeconfig for deploy/'s ServiceAccount that
// reaches the API server through addr.
func (w *world) proxyKubeconfig(addr string) string {
	token, err := e.Cluster.ServiceAccountToken(w.ctx, env.ControllerNamespace, env.ControllerServiceAccount)
	if err != nil {
		w.t.Fatal(err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["chaos"] = &clientcmdapi.Cluster{Server: "https://" + addr, CertificateAuthorityData: e.Cluster.CAData()}
	cfg.AuthInfos["clb-direct"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["chaos"] = &clientcmdapi.Context{Cluster: "chaos", AuthInfo: "clb-direct"}
	cfg.CurrentContext = "chaos"
	path := filepath.Join(w.t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		w.t.Fatal(err)
	}
	return path
}

// --- foreign objects ---

// createForeign makes, as the user: a CLB with tags of their own, a CLB
// tagged as another cluster's with a listener named like ours, and the CLB
// they lend to a stable Service, with two listeners of their own; each
// listener has targets, health-checked or not.
func (w *world) createForeign() {
	ctx := w.ctx
	lb := func(name string, tags map[string]string) string {
		l, err := w.user.CreateLoadBalancer(ctx, cloud.LoadBalancerSpec{Name: name, Tags: tags, ClientToken: "chaos-" + name})
		if err != nil {
			w.t.Fatalf("the user creating CLB %s: %v", name, err)
		}
		return l.ID
	}
	listener := func(lbID, name string, port int32, checked bool, targets ...cloud.Backend) string {
		l, err := w.user.CreateListener(ctx, lbID, cloud.ListenerSpec{Name: name, Protocol: cloud.ProtocolTCP, Port: port,
			HealthCheck: &cloud.HealthCheck{Enabled: checked, IntervalSeconds: 5, TimeoutSeconds: 2, HealthyThreshold: 3, UnhealthyThreshold: 3},
			Scheduler:   "LEAST_CONN", SessionExpireSeconds: 90})
		if err != nil {
			w.t.Fatalf("the user creating listener %s: %v", name, err)
		}
		var batch []cloud.ListenerBackend
		for _, b := range targets {
			batch = append(batch, cloud.ListenerBackend{ListenerID: l.ID, Backend: b})
		}
		if err := w.user.RegisterBackends(ctx, lbID, batch); err != nil {
			w.t.Fatalf("the user registering targets on %s: %v", name, err)
		}
		return l.ID
	}
	closed := func(ip string, weight int32) cloud.Backend { return cloud.Backend{IP: ip, Port: 9, Weight: weight} }

	payments := lb("payments-team", map[string]string{"team": "payments", "env": "prod"})
	listener(payments, "payments-web", 80, false, closed("127.0.0.1", 5), closed("127.0.0.2", 7))
	listener(payments, "payments-admin", 8443, true, closed("127.0.0.3", 10))
	otherCluster := lb("clbdirect_cls-other_web", map[string]string{
		cloud.TagCreatedBy: cloud.CreatedByValue, cloud.TagClusterID: "cls-other", cloud.TagServiceUUID: "6a1e0d0c-0000-4000-8000-000000000001"})
	listener(otherCluster, "clbdirect_6a1e0d0c-0000-4000-8000-000000000001_TCP_80", 80, false, closed("127.0.0.4", 10))
	w.foreignCLBs = []string{payments, otherCluster}

	w.lentCLB = lb("users-shared", nil)
	w.foreignListeners = []string{
		listener(w.lentCLB, "users-https", 443, false, closed("127.0.0.5", 3)),
		listener(w.lentCLB, "users-metrics", 9100, true, closed("127.0.0.6", 10), closed("127.0.0.7", 20)),
	}
}

// snapshotForeign records the foreign objects once every foreign target's
// health is decided (the emulator probes them), so that nothing about them
// changes on its own afterwards.
func (w *world) snapshotForeign() {
	deadline := time.Now().Add(30 * time.Second)
	for {
		snap, undecided := w.foreignJSON()
		if undecided == "" {
			w.foreignBefore = snap
			return
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("the foreign targets' health is still not decided after 30s: %s", undecided)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// foreignJSON returns the JSON of every foreign object in /admin/state,
// and a target whose health is undecided, if any.
func (w *world) foreignJSON() (map[string]string, string) {
	state, err := e.Emulator.State(context.Background())
	if err != nil {
		w.t.Fatal(err)
	}
	out := map[string]string{}
	undecided := ""
	mark := func(ls fake.ListenerState) {
		for _, b := range ls.Backends {
			if b.HealthDetail == "Unknown" {
				undecided = fmt.Sprintf("%s target %s", ls.Name, b.Key())
			}
		}
	}
	for _, lb := range state.LoadBalancers {
		switch {
		case slices.Contains(w.foreignCLBs, lb.ID):
			out["CLB "+lb.ID] = mustJSON(lb)
			for _, l := range lb.Listeners {
				mark(l)
			}
		case lb.ID == w.lentCLB:
			out["lent CLB "+lb.ID+" (without listeners)"] = mustJSON(lb.LoadBalancer)
			for _, l := range lb.Listeners {
				if slices.Contains(w.foreignListeners, l.ID) {
					out["listener "+l.ID+" of the lent CLB"] = mustJSON(l)
					mark(l)
				}
			}
		}
	}
	return out, undecided
}

func mustJSON(v any) string {
	data, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(data)
}

// --- Services and Pods ---

func podTemplateSpec(app string) corev1.PodSpec {
	return corev1.PodSpec{
		TerminationGracePeriodSeconds: ptr.To[int64](2),
		Containers: []corev1.Container{{
			Name: "web", Image: "simulated",
			Ports: []corev1.ContainerPort{
				{Name: "http", ContainerPort: portHTTP, Protocol: corev1.ProtocolTCP},
				{Name: "alt", ContainerPort: portAlt, Protocol: corev1.ProtocolTCP},
				{Name: "third", ContainerPort: portAlt + 1, Protocol: corev1.ProtocolTCP},
				{Name: "fourth", ContainerPort: portAlt + 2, Protocol: corev1.ProtocolTCP},
			},
		}},
	}
}

func serviceSpec(name string, annotations map[string]string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Annotations: annotations},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("http")}},
		},
	}
}

// createService creates a Service and records it.
func (w *world) createService(svc *corev1.Service, stable bool) error {
	created, err := e.Admin.CoreV1().Services(namespace).Create(w.ctx, svc, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	w.mu.Lock()
	w.services[created.UID] = &serviceRecord{name: created.Name, uid: created.UID, stable: stable}
	w.mu.Unlock()
	return nil
}

// createStable creates the stable Deployments and Services: never changed
// until the end.
func (w *world) createStable() {
	names := []string{stableLent}
	for i := range stableCount {
		names = append(names, fmt.Sprintf("stable-%d", i))
	}
	for _, name := range names {
		d := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To[int32](2),
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}}, Spec: podTemplateSpec(name)},
			},
		}
		if _, err := e.Admin.AppsV1().Deployments(namespace).Create(w.ctx, d, metav1.CreateOptions{}); err != nil {
			w.t.Fatal(err)
		}
		annotations := direct
		if name == stableLent {
			annotations = map[string]string{controller.AnnotationDirectAccess: "true", controller.AnnotationExistingLoadBalancer: w.lentCLB}
		}
		if err := w.createService(serviceSpec(name, annotations), true); err != nil {
			w.t.Fatal(err)
		}
	}
}

func churnName(i int) string { return fmt.Sprintf("churn-%d", i) }

// createChurnInitial creates the churned Services with two Pods each.
func (w *world) createChurnInitial() {
	for i := range churnCount {
		if err := w.createService(serviceSpec(churnName(i), direct), false); err != nil {
			w.t.Fatal(err)
		}
		for range 2 {
			if err := w.createPod(i); err != nil {
				w.t.Fatal(err)
			}
		}
	}
}

func (w *world) createPod(i int) error {
	w.mu.Lock()
	w.podSeq++
	name := fmt.Sprintf("%s-p%d", churnName(i), w.podSeq)
	w.mu.Unlock()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: map[string]string{"app": churnName(i), "churn": "true"}},
		Spec:       podTemplateSpec(churnName(i)),
	}
	_, err := e.Admin.CoreV1().Pods(namespace).Create(w.ctx, pod, metav1.CreateOptions{})
	return err
}

// serviceChange is a change of a Service that may take some of its targets
// out of the backends: those on listener port ListenerPort (0: any) and
// target port TargetPort (0: any).
type serviceChange struct {
	At                       time.Time
	ListenerPort, TargetPort int32
}

// podChange records that a change that may take the Pod out of its
// Service's backends starts now, runs it, and forgets it if the API
// server refused it.
func (w *world) podChange(podUID types.UID, change func() error) error {
	now := time.Now()
	w.mu.Lock()
	w.podUndesired[podUID] = append(w.podUndesired[podUID], now)
	w.mu.Unlock()
	err := change()
	if refused(err) {
		w.mu.Lock()
		w.podUndesired[podUID] = slices.DeleteFunc(w.podUndesired[podUID], func(t time.Time) bool { return t.Equal(now) })
		w.mu.Unlock()
	}
	return err
}

// serviceChange records that a change of the Service that may take the
// targets on listenerPort and targetPort (0: any) out of its backends
// starts now, runs it, and forgets it if the API server refused it.
func (w *world) serviceChange(svcUID types.UID, listenerPort, targetPort int32, change func() error) error {
	ch := serviceChange{At: time.Now(), ListenerPort: listenerPort, TargetPort: targetPort}
	w.mu.Lock()
	w.svcUndesired[svcUID] = append(w.svcUndesired[svcUID], ch)
	w.mu.Unlock()
	err := change()
	if refused(err) {
		w.mu.Lock()
		w.svcUndesired[svcUID] = slices.DeleteFunc(w.svcUndesired[svcUID], func(c serviceChange) bool { return c == ch })
		w.mu.Unlock()
	}
	return err
}

// refused reports whether the API server certainly did not make a change:
// it answered with an error other than NotFound (a Pod deleted already is
// out all the same).
func refused(err error) bool {
	_, status := err.(apierrors.APIStatus)
	return status && !apierrors.IsNotFound(err)
}

// --- traffic ---

// traffic sends requests through one Service's CLB, on a new connection
// each, and counts the outcomes.
type traffic struct {
	name       string
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       []string
	stop       chan struct{}
	done       chan struct{}
}

func (w *world) startTraffic(name string, addr func() string) *traffic {
	tr := &traffic{name: name, stop: make(chan struct{}), done: make(chan struct{})}
	w.traffic[name] = tr
	client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	go func() {
		defer close(tr.done)
		for {
			select {
			case <-tr.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			a := addr()
			if a == "" {
				continue
			}
			if err := get(client, a); err != nil {
				tr.failed.Add(1)
				tr.mu.Lock()
				if len(tr.errs) < 5 {
					tr.errs = append(tr.errs, time.Now().Format("15:04:05.000")+" "+err.Error())
				}
				tr.mu.Unlock()
			} else {
				tr.ok.Add(1)
			}
		}
	}()
	return tr
}

func get(client *http.Client, addr string) error {
	resp, err := client.Get("http://" + addr + "/")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %s", resp.Status)
	}
	return nil
}

func (tr *traffic) finish() {
	close(tr.stop)
	<-tr.done
}

// vipOf reads a Service's VIP from its status; "" when it has none.
func vipOf(ctx context.Context, name string) string {
	svc, err := e.Admin.CoreV1().Services(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil || len(svc.Status.LoadBalancer.Ingress) == 0 {
		return ""
	}
	return net.JoinHostPort(svc.Status.LoadBalancer.Ingress[0].IP, "80")
}

// cachedVIP reads a Service's VIP at most every second.
func cachedVIP(name string) func() string {
	var last string
	var at time.Time
	return func() string {
		if time.Since(at) > time.Second {
			last, at = vipOf(context.Background(), name), time.Now()
		}
		return last
	}
}

// --- the desired state, from the API ---

// registrable mirrors which Pods the controller must register (README,
// "Which Pods are backends"): an IP, not terminating, not finished, and
// Ready or waiting only on the CLB readiness gate.
func registrable(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil || p.Status.PodIP == "" || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return false
	}
	if condition(p, corev1.PodReady) {
		return true
	}
	if !condition(p, corev1.ContainersReady) {
		return false
	}
	ours := false
	for _, g := range p.Spec.ReadinessGates {
		if g.ConditionType == controller.ReadinessGate {
			ours = true
		} else if !condition(p, g.ConditionType) {
			return false
		}
	}
	return ours
}

func condition(p *corev1.Pod, t corev1.PodConditionType) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == t {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// containerPort resolves a Service port's target port on a Pod.
func containerPort(p *corev1.Pod, sp corev1.ServicePort) (int32, bool) {
	if sp.TargetPort.Type == intstr.Int {
		return sp.TargetPort.IntVal, true
	}
	for _, c := range p.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.Name == sp.TargetPort.StrVal && cp.Protocol == sp.Protocol {
				return cp.ContainerPort, true
			}
		}
	}
	return 0, false
}

// listenerView is a listener as compared: name, and sorted "ip:port/weight".
type listenerView struct {
	Name     string
	Backends []string
}

// desiredListeners is what the Service's CLB must have, by "TCP:port".
func desiredListeners(svc *corev1.Service, pods []corev1.Pod) map[string]listenerView {
	out := map[string]listenerView{}
	for _, sp := range svc.Spec.Ports {
		key := fmt.Sprintf("%s:%d", sp.Protocol, sp.Port)
		view := listenerView{Name: fmt.Sprintf("clbdirect_%s_%s_%d", svc.UID, sp.Protocol, sp.Port), Backends: []string{}}
		for i := range pods {
			p := &pods[i]
			if !selects(svc, p) || !registrable(p) {
				continue
			}
			if port, ok := containerPort(p, sp); ok {
				view.Backends = append(view.Backends, fmt.Sprintf("%s/%d", net.JoinHostPort(p.Status.PodIP, strconv.Itoa(int(port))), backendWeight))
			}
		}
		slices.Sort(view.Backends)
		out[key] = view
	}
	return out
}

func selects(svc *corev1.Service, p *corev1.Pod) bool {
	if len(svc.Spec.Selector) == 0 {
		return false
	}
	for k, v := range svc.Spec.Selector {
		if p.Labels[k] != v {
			return false
		}
	}
	return true
}

func actualListener(l fake.ListenerState) listenerView {
	view := listenerView{Name: l.Name, Backends: []string{}}
	for _, b := range l.Backends {
		view.Backends = append(view.Backends, fmt.Sprintf("%s/%d", b.Key(), b.Weight))
	}
	slices.Sort(view.Backends)
	return view
}

// diff compares every CLB in the account with what the Services ask for:
// each live Service's CLB has exactly its listeners and backends and is in
// its status; each Service the test deleted is gone; every CLB and
// listener is accounted for by a live Service, or is foreign. It returns
// the differences, none when all is as it must be.
func (w *world) diff(ctx context.Context) []string {
	svcs, err := e.Admin.CoreV1().Services(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return []string{err.Error()}
	}
	pods, err := e.Admin.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return []string{err.Error()}
	}
	state, err := e.Emulator.State(ctx)
	if err != nil {
		return []string{err.Error()}
	}
	lbs := map[string]fake.LoadBalancerState{}
	for _, lb := range state.LoadBalancers {
		lbs[lb.ID] = lb
	}
	var problems []string
	accounted := map[string]bool{w.lentCLB: true}
	for _, id := range w.foreignCLBs {
		accounted[id] = true
	}
	lentListeners := map[string]bool{}
	for _, id := range w.foreignListeners {
		lentListeners[id] = true
	}
	live := map[types.UID]bool{}
	for i := range svcs.Items {
		svc := &svcs.Items[i]
		live[svc.UID] = true
		name := svc.Name
		if svc.DeletionTimestamp != nil {
			problems = append(problems, fmt.Sprintf("Service %s (%s) is still terminating: finalizers %v", name, svc.UID, svc.Finalizers))
			continue
		}
		if !slices.Contains(svc.Finalizers, controller.Finalizer) {
			problems = append(problems, fmt.Sprintf("Service %s has no finalizer", name))
		}
		lbID := svc.Annotations[controller.AnnotationLoadBalancerID]
		lb, ok := lbs[lbID]
		if !ok {
			problems = append(problems, fmt.Sprintf("Service %s records CLB %q, which does not exist", name, lbID))
			continue
		}
		lent := svc.Annotations[controller.AnnotationExistingLoadBalancer] != ""
		if lent && lbID != w.lentCLB {
			problems = append(problems, fmt.Sprintf("Service %s lends CLB %s but records %s", name, w.lentCLB, lbID))
			continue
		}
		if !lent {
			accounted[lbID] = true
			if !lb.OwnedBy(env.ClusterID, string(svc.UID)) {
				problems = append(problems, fmt.Sprintf("Service %s's CLB %s does not carry its ownership tags: %v", name, lbID, lb.Tags))
			}
		}
		want := desiredListeners(svc, pods.Items)
		have := map[string]listenerView{}
		prefix := fmt.Sprintf("clbdirect_%s_", svc.UID)
		for _, l := range lb.Listeners {
			if lent && !strings.HasPrefix(l.Name, prefix) {
				continue
			}
			if lent {
				lentListeners[l.ID] = true
			}
			key := fmt.Sprintf("%s:%d", l.Protocol, l.Port)
			if _, dup := have[key]; dup {
				problems = append(problems, fmt.Sprintf("Service %s: CLB %s has two listeners on %s", name, lbID, key))
			}
			have[key] = actualListener(l)
		}
		if got, wantJSON := mustJSON(have), mustJSON(want); got != wantJSON {
			problems = append(problems, fmt.Sprintf("Service %s: CLB %s has listeners %s, want %s", name, lbID, got, wantJSON))
		}
		var ingress []string
		for _, in := range svc.Status.LoadBalancer.Ingress {
			ingress = append(ingress, in.IP)
		}
		if len(lb.VIPs) == 0 || !slices.Equal(ingress, lb.VIPs) {
			problems = append(problems, fmt.Sprintf("Service %s: status ingress %v, CLB %s VIPs %v", name, ingress, lbID, lb.VIPs))
		}
	}
	w.mu.Lock()
	for _, uid := range w.deleted {
		if live[uid] {
			problems = append(problems, fmt.Sprintf("Service %s (%s) was deleted but still exists", w.services[uid].name, uid))
		}
	}
	w.mu.Unlock()
	for _, lb := range state.LoadBalancers {
		if !accounted[lb.ID] {
			problems = append(problems, fmt.Sprintf("leaked CLB %s (%s, tags %v, %d listeners): no live Service uses it", lb.ID, lb.Name, lb.Tags, len(lb.Listeners)))
		}
		if lb.ID == w.lentCLB {
			for _, l := range lb.Listeners {
				if !lentListeners[l.ID] {
					problems = append(problems, fmt.Sprintf("leaked listener %s (%s) on the lent CLB %s", l.ID, l.Name, lb.ID))
				}
			}
		}
	}
	slices.Sort(problems)
	return problems
}

// waitWorkload waits until every Service the test made at first has its
// two Pods registrable, so that convergence before the faults means
// something.
func (w *world) waitWorkload(timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for {
		pods, err := e.Admin.CoreV1().Pods(namespace).List(w.ctx, metav1.ListOptions{})
		if err != nil {
			w.t.Fatal(err)
		}
		count := map[string]int{}
		for i := range pods.Items {
			if registrable(&pods.Items[i]) {
				count[pods.Items[i].Labels["app"]]++
			}
		}
		missing := []string{}
		for _, app := range append([]string{stableLent}, w.appNames()...) {
			if count[app] != 2 {
				missing = append(missing, fmt.Sprintf("%s has %d", app, count[app]))
			}
		}
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("the workload's Pods are not all registrable after %s: %v", timeout, missing)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (w *world) appNames() []string {
	var names []string
	for i := range stableCount {
		names = append(names, fmt.Sprintf("stable-%d", i))
	}
	for i := range churnCount {
		names = append(names, churnName(i))
	}
	return names
}

// waitConverged polls diff until it is empty, for up to timeout; it
// returns how long that took, or the last differences.
func (w *world) waitConverged(timeout time.Duration) (time.Duration, []string) {
	start := time.Now()
	var last []string
	for {
		last = w.diff(context.Background())
		if len(last) == 0 {
			return time.Since(start), nil
		}
		if time.Since(start) > timeout {
			return time.Since(start), last
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// waitHealthy waits until every backend of the Service's CLB listeners is
// healthy and requests through its VIP succeed 5 times in a row.
func (w *world) waitHealthy(name string, timeout time.Duration) string {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for {
		addr := vipOf(w.ctx, name)
		ok := addr != ""
		for i := 0; ok && i < 5; i++ {
			ok = get(client, addr) == nil
		}
		if ok {
			return addr
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("requests through the CLB of Service %s (%q) do not succeed after %s", name, addr, timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// randIn returns a duration uniformly in [lo, hi).
func randIn(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(rng.Int64N(int64(hi-lo)))
}
