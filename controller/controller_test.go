package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic/dynamicinformer"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/informers"
	k8sfake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2/ktesting"
	testingclock "k8s.io/utils/clock/testing"

	"clb-direct/cloud"
	"clb-direct/cloud/fake"
	"clb-direct/tkeconfig"
)

const (
	testClusterID = "cls-test"
	testNamespace = "ns"
	testService   = "web"
	testKey       = testNamespace + "/" + testService
)

// fixture is a controller over a fake clientset and a fake CLB account. The
// informers are not run: the test puts objects in their caches (refresh), so
// every sync sees exactly the state the test set up.
type fixture struct {
	t        *testing.T
	ctx      context.Context
	client   *k8sfake.Clientset
	cloud    *fake.Cloud
	recorder *events.FakeRecorder
	clock    *testingclock.FakeClock
	factory  informers.SharedInformerFactory
	dynamic  *dynamicfake.FakeDynamicClient
	configs  informers.GenericInformer
	ctrl     *Controller
}

func newFixture(t *testing.T, clb *fake.Cloud, objects ...runtime.Object) *fixture {
	t.Helper()
	_, ctx := ktesting.NewTestContext(t)
	if clb == nil {
		clb = fake.New()
	}
	// The cluster has opted in to direct access for GlobalRouter Pods, which
	// the test Pods are (they carry no ENI resource).
	objects = append(objects, &v1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: ServiceControllerConfigNamespace, Name: ServiceControllerConfigName},
		Data:       map[string]string{GlobalRouteDirectAccessKey: "true"},
	})
	f := &fixture{
		t:        t,
		ctx:      ctx,
		client:   k8sfake.NewClientset(objects...),
		cloud:    clb,
		recorder: events.NewFakeRecorder(100),
		clock:    testingclock.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)),
	}
	f.factory = informers.NewSharedInformerFactory(f.client, 0)
	f.dynamic = dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{tkeconfig.GVR: "TkeServiceConfigList"})
	f.configs = dynamicinformer.NewDynamicSharedInformerFactory(f.dynamic, 0).ForResource(tkeconfig.GVR)
	ctrl, err := New(ctx, f.client, clb, f.recorder, f.factory.Core().V1().Services(), f.factory.Core().V1().Pods(),
		Options{ClusterID: testClusterID, Clock: f.clock, TerminalRetryDelay: time.Minute, ServiceConfigs: f.configs, Dynamic: f.dynamic,
			ServiceControllerConfig: f.factory.Core().V1().ConfigMaps(), ServerVersion: "v1.34.2",
			Nodes: f.factory.Core().V1().Nodes(), SwitchTimeout: time.Minute})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	f.ctrl = ctrl
	f.refresh()
	return f
}

// refresh copies the clientset's Services and Pods into the informer caches,
// as a running informer would.
func (f *fixture) refresh() {
	f.t.Helper()
	svcs, err := f.client.CoreV1().Services("").List(f.ctx, metav1.ListOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	pods, err := f.client.CoreV1().Pods("").List(f.ctx, metav1.ListOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	cms, err := f.client.CoreV1().ConfigMaps("").List(f.ctx, metav1.ListOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	nodes, err := f.client.CoreV1().Nodes().List(f.ctx, metav1.ListOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	configs, err := f.dynamic.Resource(tkeconfig.GVR).Namespace("").List(f.ctx, metav1.ListOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	for store, objs := range map[cache.Indexer][]any{
		f.factory.Core().V1().Services().Informer().GetIndexer():   pointers(svcs.Items),
		f.factory.Core().V1().Pods().Informer().GetIndexer():       pointers(pods.Items),
		f.factory.Core().V1().ConfigMaps().Informer().GetIndexer(): pointers(cms.Items),
		f.factory.Core().V1().Nodes().Informer().GetIndexer():      pointers(nodes.Items),
		f.configs.Informer().GetIndexer():                          pointers(configs.Items),
	} {
		if err := store.Replace(objs, ""); err != nil {
			f.t.Fatal(err)
		}
	}
}

// pointers turns a list's items into what an informer store holds.
func pointers[T any](items []T) []any {
	out := make([]any, len(items))
	for i := range items {
		out[i] = &items[i]
	}
	return out
}

// sync runs one sync of the test Service with fresh caches and clean logs.
func (f *fixture) sync() error {
	f.t.Helper()
	f.refresh()
	f.cloud.ResetCalls()
	f.client.ClearActions()
	return f.ctrl.syncService(f.ctx, testKey)
}

func (f *fixture) mustSync() {
	f.t.Helper()
	if err := f.sync(); err != nil {
		f.t.Fatalf("sync: %v", err)
	}
}

func (f *fixture) service() *v1.Service {
	f.t.Helper()
	svc, err := f.client.CoreV1().Services(testNamespace).Get(f.ctx, testService, metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	return svc
}

func (f *fixture) updateService(mutate func(*v1.Service)) {
	f.t.Helper()
	svc := f.service()
	mutate(svc)
	if _, err := f.client.CoreV1().Services(testNamespace).Update(f.ctx, svc, metav1.UpdateOptions{}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) addPods(pods ...*v1.Pod) {
	f.t.Helper()
	for _, p := range pods {
		if _, err := f.client.CoreV1().Pods(p.Namespace).Create(f.ctx, p, metav1.CreateOptions{}); err != nil {
			f.t.Fatal(err)
		}
	}
}

func (f *fixture) deletePod(name string) {
	f.t.Helper()
	if err := f.client.CoreV1().Pods(testNamespace).Delete(f.ctx, name, metav1.DeleteOptions{}); err != nil {
		f.t.Fatal(err)
	}
}

// actions returns the cloud calls of the last sync as "Action:backends".
func (f *fixture) actions() []string {
	var out []string
	for _, c := range f.cloud.Calls() {
		s := c.Action
		if c.Backends > 0 {
			s += fmt.Sprintf(":%d", c.Backends)
		}
		out = append(out, s)
	}
	return out
}

func (f *fixture) expectActions(want ...string) {
	f.t.Helper()
	if got := f.actions(); !slices.Equal(got, want) {
		f.t.Errorf("cloud calls:\n got  %q\n want %q", got, want)
	}
}

// kubeWrites returns the clientset writes of the last sync as "verb resource/subresource".
func (f *fixture) kubeWrites() []string {
	var out []string
	for _, a := range f.client.Actions() {
		if a.GetVerb() == "get" || a.GetVerb() == "list" || a.GetVerb() == "watch" {
			continue
		}
		s := a.GetVerb() + " " + a.GetResource().Resource
		if a.GetSubresource() != "" {
			s += "/" + a.GetSubresource()
		}
		out = append(out, s)
	}
	return out
}

// events drains the recorded events.
func (f *fixture) events() []string {
	var out []string
	for {
		select {
		case e := <-f.recorder.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func (f *fixture) expectEvent(prefix string) {
	f.t.Helper()
	evs := f.events()
	for _, e := range evs {
		if strings.HasPrefix(e, prefix) {
			return
		}
	}
	f.t.Errorf("no event starting with %q among %q", prefix, evs)
}

// backends returns the backends on the CLB, as "listenerPort/PROTO ip:port w".
func (f *fixture) backends(lbID string) []string {
	state := f.cloud.Snapshot()
	var out []string
	for _, lb := range state.LoadBalancers {
		if lb.ID != lbID {
			continue
		}
		for _, l := range lb.Listeners {
			for _, b := range l.Backends {
				out = append(out, fmt.Sprintf("%d/%s %s w%d", l.Port, l.Protocol, b.Key(), b.Weight))
			}
		}
	}
	slices.Sort(out)
	return out
}

func (f *fixture) loadBalancerID() string {
	return f.service().Annotations[AnnotationLoadBalancerID]
}

func directService(mutate ...func(*v1.Service)) *v1.Service {
	svc := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: testNamespace, Name: testService, UID: types.UID("uid-web"),
			Annotations: map[string]string{AnnotationDirectAccess: "true"},
		},
		Spec: v1.ServiceSpec{
			Type:     v1.ServiceTypeLoadBalancer,
			Selector: map[string]string{"app": "web"},
			Ports: []v1.ServicePort{
				{Name: "http", Protocol: v1.ProtocolTCP, Port: 80, TargetPort: intstr.FromString("http")},
				{Name: "dns", Protocol: v1.ProtocolUDP, Port: 53, TargetPort: intstr.FromInt32(5353)},
			},
		},
	}
	for _, m := range mutate {
		m(svc)
	}
	return svc
}

// readyPod is a Ready Pod the test Service selects, serving both its ports.
func readyPod(name, ip string, mutate ...func(*v1.Pod)) *v1.Pod {
	web := func(p *v1.Pod) { p.Namespace = testNamespace; p.Labels = map[string]string{"app": "web"} }
	opts := []func(*v1.Pod){web, podPort("http", 8080, v1.ProtocolTCP), podPort("dns", 5353, v1.ProtocolUDP)}
	return mkPod(name, ip, append(opts, mutate...)...)
}

func TestSyncCreatesLoadBalancerListenersAndBackends(t *testing.T) {
	f := newFixture(t, nil, directService(),
		readyPod("a", "10.0.0.1"), readyPod("b", "10.0.0.2"), readyPod("c", "10.0.0.3", podUnready))
	f.mustSync()

	// One tag lookup, one create, a listener per port, and all four
	// backends (2 Pods x 2 ports) in one batch across both listeners.
	f.expectActions("DescribeLoadBalancers", "CreateLoadBalancer", "CreateListener", "CreateListener", "BatchRegisterTargets:4")
	if got, want := f.kubeWrites(), []string{"patch services", "patch services", "patch services/status"}; !slices.Equal(got, want) {
		t.Errorf("kube writes: got %q, want %q (finalizer, annotation, status)", got, want)
	}
	svc := f.service()
	if !slices.Contains(svc.Finalizers, Finalizer) {
		t.Errorf("finalizer missing: %v", svc.Finalizers)
	}
	lbID := svc.Annotations[AnnotationLoadBalancerID]
	lbs, err := f.cloud.DescribeLoadBalancers(f.ctx, cloud.LoadBalancerQuery{IDs: []string{lbID}})
	if err != nil || len(lbs) != 1 {
		t.Fatalf("CLB %q not found: %v %v", lbID, lbs, err)
	}
	if !lbs[0].OwnedBy(testClusterID, "uid-web") {
		t.Errorf("CLB tags %v do not mark it as ours", lbs[0].Tags)
	}
	if len(svc.Status.LoadBalancer.Ingress) != 1 || svc.Status.LoadBalancer.Ingress[0].IP != lbs[0].VIPs[0] {
		t.Errorf("ingress %v, want the VIP %v", svc.Status.LoadBalancer.Ingress, lbs[0].VIPs)
	}
	want := []string{"53/UDP 10.0.0.1:5353 w10", "53/UDP 10.0.0.2:5353 w10", "80/TCP 10.0.0.1:8080 w10", "80/TCP 10.0.0.2:8080 w10"}
	if got := f.backends(lbID); !slices.Equal(got, want) {
		t.Errorf("backends:\n got  %q\n want %q", got, want)
	}
	f.expectEvent("Normal CreatedLoadBalancer")
}

func TestSecondSyncWritesNothing(t *testing.T) {
	f := newFixture(t, nil, directService(), readyPod("a", "10.0.0.1"), readyPod("b", "10.0.0.2"))
	f.mustSync()
	f.mustSync()
	f.expectActions() // not even a read: the CLB state is cached
	if got := f.kubeWrites(); len(got) != 0 {
		t.Errorf("kube writes on an unchanged Service: %q", got)
	}

	// Each periodic resync reads the CLB once, alternating between its
	// targets and its listeners, and still writes nothing.
	for _, want := range []string{"DescribeTargets", "DescribeListeners", "DescribeTargets"} {
		f.resync()
		f.mustSync()
		f.expectActions(want)
	}
	// A resync soon after another (as a relist looks) reads nothing.
	f.clock.Step(defaultResyncPeriod / 4)
	svc := f.service()
	f.ctrl.onServiceUpdate(svc, svc)
	f.mustSync()
	f.expectActions()
	if got := f.kubeWrites(); len(got) != 0 {
		t.Errorf("kube writes on resyncs: %q", got)
	}
}

func TestResyncRepairsWhatChangedBehindOurBack(t *testing.T) {
	f := newFixture(t, nil, directService(), readyPod("a", "10.0.0.1"), readyPod("b", "10.0.0.2"))
	f.mustSync()
	lbID := f.loadBalancerID()
	want := f.backends(lbID)
	listeners, err := f.cloud.DescribeListeners(f.ctx, lbID)
	if err != nil || len(listeners) != 2 {
		t.Fatalf("listeners %v, %v", listeners, err)
	}

	// Someone deregisters a Pod: the first resync's targets read sees it
	// and registers the Pod again.
	backends, err := f.cloud.DescribeBackends(f.ctx, lbID)
	if err != nil {
		t.Fatal(err)
	}
	gone := []cloud.ListenerBackend{{ListenerID: listeners[0].ID, Backend: backends[listeners[0].ID][0]}}
	if err := f.cloud.DeregisterBackends(f.ctx, lbID, gone); err != nil {
		t.Fatal(err)
	}
	f.actions()
	f.resync()
	f.mustSync()
	f.expectActions("DescribeTargets", "BatchRegisterTargets:1")
	if got := f.backends(lbID); !slices.Equal(got, want) {
		t.Errorf("backends after the resync:\n got  %q\n want %q", got, want)
	}

	// Someone deletes a listener: the next resync (a listeners read) sees
	// a listener missing, reads the CLB whole, and puts it back.
	if err := f.cloud.DeleteListener(f.ctx, lbID, listeners[1].ID); err != nil {
		t.Fatal(err)
	}
	f.actions()
	f.resync()
	f.mustSync()
	f.expectActions("DescribeListeners", "DescribeLoadBalancers", "DescribeListeners", "DescribeTargets", "CreateListener", "BatchRegisterTargets:2")
	if got := f.backends(lbID); !slices.Equal(got, want) {
		t.Errorf("backends after the second resync:\n got  %q\n want %q", got, want)
	}
}

func TestSyncAppliesOnlyTheDifferenceRegisteringBeforeDeregistering(t *testing.T) {
	f := newFixture(t, nil, directService(), readyPod("a", "10.0.0.1"), readyPod("b", "10.0.0.2"))
	f.mustSync()
	lbID := f.loadBalancerID()

	f.deletePod("a")
	f.addPods(readyPod("c", "10.0.0.3"))
	f.mustSync()
	f.expectActions("BatchRegisterTargets:2", "BatchDeregisterTargets:2")
	want := []string{"53/UDP 10.0.0.2:5353 w10", "53/UDP 10.0.0.3:5353 w10", "80/TCP 10.0.0.2:8080 w10", "80/TCP 10.0.0.3:8080 w10"}
	if got := f.backends(lbID); !slices.Equal(got, want) {
		t.Errorf("backends:\n got  %q\n want %q", got, want)
	}

	f.updateService(func(s *v1.Service) { s.Annotations[AnnotationBackendWeight] = "50" })
	f.mustSync()
	f.expectActions("BatchModifyTargetWeight:4")

	// A removed port deletes its listener and nothing else.
	f.updateService(func(s *v1.Service) { s.Spec.Ports = s.Spec.Ports[:1] })
	f.mustSync()
	f.expectActions("DeleteListener")
	want = []string{"80/TCP 10.0.0.2:8080 w50", "80/TCP 10.0.0.3:8080 w50"}
	if got := f.backends(lbID); !slices.Equal(got, want) {
		t.Errorf("backends:\n got  %q\n want %q", got, want)
	}
}

func TestGatePendingPodIsRegistered(t *testing.T) {
	gated := readyPod("gated", "10.0.0.9", podGates(ReadinessGate), podGatePending)
	f := newFixture(t, nil, directService(), gated)
	f.mustSync()
	if got := f.backends(f.loadBalancerID()); len(got) != 2 {
		t.Errorf("a Pod waiting only on our gate must be registered on both ports, got %q", got)
	}
}

func TestBatchesRespectTheAPILimitAcrossListeners(t *testing.T) {
	clb := fake.New(fake.WithLimits(fake.Limits{BackendsPerListener: 1000}))
	var objs []runtime.Object
	objs = append(objs, directService())
	for i := range 600 {
		objs = append(objs, readyPod(fmt.Sprintf("p%d", i), fmt.Sprintf("10.1.%d.%d", i/250, i%250)))
	}
	f := newFixture(t, clb, objs...)
	f.mustSync()
	// 600 Pods x 2 ports = 1200 backends: the fewest calls of at most 500.
	// 600 on a listener is more than the usual quota: the account's is read.
	f.expectActions("DescribeLoadBalancers", "CreateLoadBalancer", "DescribeQuota", "CreateListener", "CreateListener",
		"BatchRegisterTargets:500", "BatchRegisterTargets:500", "BatchRegisterTargets:200")
}

func TestDeletedServiceReleasesEverything(t *testing.T) {
	f := newFixture(t, nil, directService(), readyPod("a", "10.0.0.1"))
	f.mustSync()
	lbID := f.loadBalancerID()

	f.updateService(func(s *v1.Service) { now := metav1.Now(); s.DeletionTimestamp = &now })
	f.mustSync()
	f.expectActions("DescribeLoadBalancers", "DeleteLoadBalancer")
	if got := f.cloud.Snapshot().LoadBalancers; len(got) != 0 {
		t.Errorf("CLBs left after the Service was deleted: %+v", got)
	}
	if svc := f.service(); slices.Contains(svc.Finalizers, Finalizer) {
		t.Errorf("finalizer still there: %v", svc.Finalizers)
	}
	f.expectEvent("Normal DeletedLoadBalancer")
	if lbs, _ := f.cloud.DescribeLoadBalancers(f.ctx, cloud.LoadBalancerQuery{IDs: []string{lbID}}); len(lbs) != 0 {
		t.Errorf("CLB %s still exists", lbID)
	}
}

func TestChangingTypeOrClassCleansUp(t *testing.T) {
	for name, mutate := range map[string]func(*v1.Service){
		"type ClusterIP": func(s *v1.Service) { s.Spec.Type = v1.ServiceTypeClusterIP },
		"other class":    func(s *v1.Service) { class := "other"; s.Spec.LoadBalancerClass = &class },
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, nil, directService(), readyPod("a", "10.0.0.1"))
			f.mustSync()
			f.updateService(mutate)
			f.mustSync()
			f.expectActions("DescribeLoadBalancers", "DeleteLoadBalancer")
			svc := f.service()
			if slices.Contains(svc.Finalizers, Finalizer) || svc.Annotations[AnnotationLoadBalancerID] != "" || len(svc.Status.LoadBalancer.Ingress) != 0 {
				t.Errorf("Service not released: finalizers %v annotations %v ingress %v", svc.Finalizers, svc.Annotations, svc.Status.LoadBalancer.Ingress)
			}
			// Released means forgotten: nothing more happens.
			f.mustSync()
			f.expectActions()
		})
	}
}

func TestLoadBalancerNotOursIsNeverDeletedAndForeignListenersAreLeftAlone(t *testing.T) {
	clb := fake.New()
	foreign := clb.AddLoadBalancer(cloud.LoadBalancer{Name: "someone-else", Tags: map[string]string{"team": "other"}})
	clb.AddListener(foreign.ID, cloud.ListenerSpec{Name: "theirs", Protocol: cloud.ProtocolTCP, Port: 80})
	clb.AddListener(foreign.ID, cloud.ListenerSpec{Name: "theirs-too", Protocol: cloud.ProtocolTCP, Port: 443})
	svc := directService(func(s *v1.Service) { s.Annotations[AnnotationExistingLoadBalancer] = foreign.ID })
	f := newFixture(t, clb, svc, readyPod("a", "10.0.0.1"))
	f.mustSync()

	// TCP 80 is taken by their listener: only UDP 53 is ours to create.
	f.expectActions("DescribeLoadBalancers", "DescribeListeners", "DescribeTargets", "CreateListener", "BatchRegisterTargets:1")
	f.expectEvent("Warning ListenerConflict")
	if got, want := f.backends(foreign.ID), []string{"53/UDP 10.0.0.1:5353 w10"}; !slices.Equal(got, want) {
		t.Errorf("backends: got %q, want %q (nothing on their listener)", got, want)
	}

	f.updateService(func(s *v1.Service) { now := metav1.Now(); s.DeletionTimestamp = &now })
	f.mustSync()
	f.expectActions("DescribeLoadBalancers", "DescribeListeners", "DeleteListener")
	state := f.cloud.Snapshot()
	if len(state.LoadBalancers) != 1 || len(state.LoadBalancers[0].Listeners) != 2 {
		t.Fatalf("their CLB and its two listeners must remain: %+v", state.LoadBalancers)
	}
	for _, l := range state.LoadBalancers[0].Listeners {
		if l.Name != "theirs" && l.Name != "theirs-too" {
			t.Errorf("unexpected listener left: %+v", l)
		}
	}
}

func TestInvalidAnnotationLeavesTheLoadBalancerAndDoesNotRepeat(t *testing.T) {
	f := newFixture(t, nil, directService(), readyPod("a", "10.0.0.1"))
	f.mustSync()
	lbID := f.loadBalancerID()
	before := f.backends(lbID)
	f.events()

	f.updateService(func(s *v1.Service) { s.Annotations[AnnotationDirectAccess] = "yes" })
	f.deletePod("a") // would deregister, were the Service valid
	if err := f.sync(); err != nil {
		t.Fatalf("an invalid annotation must not be retried as an error: %v", err)
	}
	f.expectActions()
	f.expectEvent("Warning InvalidConfiguration")
	if got := f.backends(lbID); !slices.Equal(got, before) {
		t.Errorf("CLB changed: got %q, want %q", got, before)
	}
	f.mustSync()
	if evs := f.events(); len(evs) != 0 {
		t.Errorf("the same problem was evented again: %q", evs)
	}
}

func TestCLBDeletedBehindOurBackIsRecreated(t *testing.T) {
	f := newFixture(t, nil, directService(), readyPod("a", "10.0.0.1"))
	f.mustSync()
	old := f.loadBalancerID()
	if err := f.cloud.DeleteLoadBalancer(f.ctx, old); err != nil {
		t.Fatal(err)
	}
	f.resync() // the periodic resync notices
	f.mustSync()
	// The resync's read finds the CLB gone; the lookup by ID and by tags
	// find nothing. The last call checks whether the previous CLB is still
	// there to be released (it is not).
	f.expectActions("DescribeTargets", "DescribeLoadBalancers", "DescribeLoadBalancers", "CreateLoadBalancer", "CreateListener", "CreateListener", "BatchRegisterTargets:2",
		"DescribeLoadBalancers")
	if now := f.loadBalancerID(); now == old || now == "" {
		t.Errorf("annotation %q, want a new CLB instead of %q", now, old)
	}
}

func TestErrorsAreClassified(t *testing.T) {
	tests := []struct {
		name         string
		code         string
		wantRequeues int
		wantSlow     bool
	}{
		{"throttled", cloud.CodeRequestLimitExceeded, 1, false},
		{"busy", cloud.CodeResourceInOperating, 1, false},
		{"forbidden", cloud.CodeUnauthorized, 0, true},
		{"quota", cloud.CodeLimitExceeded, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, nil, directService(), readyPod("a", "10.0.0.1"))
			f.cloud.FailNext("CreateLoadBalancer", 1, cloud.NewError("CreateLoadBalancer", tc.code, "injected", "req-1"))
			f.ctrl.queue.Add(testKey)
			if !f.ctrl.processNextWorkItem(f.ctx) {
				t.Fatal("queue shut down")
			}
			if got := f.ctrl.queue.NumRequeues(testKey); got != tc.wantRequeues {
				t.Errorf("requeues %d, want %d", got, tc.wantRequeues)
			}
			f.expectEvent("Warning SyncLoadBalancerFailed")
			if tc.wantSlow {
				if f.ctrl.queue.Len() != 0 {
					t.Errorf("a terminal error was retried at once")
				}
				f.clock.Step(time.Minute)
				if err := waitFor(func() bool { return f.ctrl.queue.Len() == 1 }); err != nil {
					t.Errorf("not retried after the terminal retry delay: %v", err)
				}
			}
			// The next attempt succeeds and resets the backoff.
			f.ctrl.queue.Add(testKey)
			for f.ctrl.queue.Len() > 0 {
				f.ctrl.processNextWorkItem(f.ctx)
			}
			if got := f.ctrl.queue.NumRequeues(testKey); got != 0 {
				t.Errorf("requeues after success %d, want 0", got)
			}
		})
	}
}

func TestPartialFailureKeepsOldBackendsOfTheFailedListener(t *testing.T) {
	f := newFixture(t, nil, directService(), readyPod("a", "10.0.0.1"))
	f.mustSync()
	lbID := f.loadBalancerID()
	var tcpListener string
	for _, l := range f.cloud.Snapshot().LoadBalancers[0].Listeners {
		if l.Protocol == cloud.ProtocolTCP {
			tcpListener = l.ID
		}
	}
	// Pod a is replaced by b; registering b on the TCP listener fails.
	f.deletePod("a")
	f.addPods(readyPod("b", "10.0.0.2"))
	f.cloud.FailNext("BatchRegisterTargets", 1, &cloud.PartialFailure{Action: "BatchRegisterTargets", FailedListenerIDs: []string{tcpListener}})
	if err := f.sync(); err == nil {
		t.Fatal("a partial failure must be an error, so the Service is retried")
	}
	// Only the UDP listener loses Pod a; TCP keeps it until b is there.
	var deregistered int
	for _, c := range f.cloud.Calls() {
		if c.Action == "BatchDeregisterTargets" {
			deregistered += c.Backends
		}
	}
	if deregistered != 1 {
		t.Errorf("deregistered %d backends, want 1 (UDP only)", deregistered)
	}
	if got := f.backends(lbID); !slices.Contains(got, "80/TCP 10.0.0.1:8080 w10") {
		t.Errorf("TCP listener lost its only backend: %q", got)
	}
	// The retry re-reads the CLB and finishes the job.
	f.mustSync()
	want := []string{"53/UDP 10.0.0.2:5353 w10", "80/TCP 10.0.0.2:8080 w10"}
	if got := f.backends(lbID); !slices.Equal(got, want) {
		t.Errorf("after retry: got %q, want %q", got, want)
	}
}

func TestPodEventsQueueOnlyTheServicesSelectingThePod(t *testing.T) {
	other := directService(func(s *v1.Service) {
		s.Name = "other"
		s.UID = "uid-other"
		s.Spec.Selector = map[string]string{"app": "other"}
	})
	multi := directService(func(s *v1.Service) {
		s.Name = "multi"
		s.UID = "uid-multi"
		s.Spec.Selector = map[string]string{"app": "web", "tier": "front"}
	})
	f := newFixture(t, nil, directService(), other, multi)
	f.ctrl.enqueuePodServices(readyPod("a", "10.0.0.1"))
	if got := drainQueue(f.ctrl); !slices.Equal(got, []string{testKey}) {
		t.Errorf("queued %q, want only %q", got, testKey)
	}
	// Each check comes a quiet while after the one before: no pacing.
	f.clock.Step(defaultPodEventWindow)
	f.ctrl.enqueuePodServices(readyPod("b", "10.0.0.2", func(p *v1.Pod) { p.Labels["tier"] = "front" }))
	if got := drainQueue(f.ctrl); !slices.Equal(got, []string{"ns/multi", testKey}) {
		t.Errorf("queued %q, want ns/multi and %s", got, testKey)
	}

	// A status change that cannot change any backend queues nothing.
	a := readyPod("a", "10.0.0.1")
	b := a.DeepCopy()
	b.Status.Conditions = append(b.Status.Conditions, v1.PodCondition{Type: "Other", Status: v1.ConditionTrue})
	f.ctrl.onPodUpdate(a, b)
	if got := drainQueue(f.ctrl); len(got) != 0 {
		t.Errorf("irrelevant Pod update queued %q", got)
	}
	c := b.DeepCopy()
	podUnready(c)
	f.clock.Step(defaultPodEventWindow)
	f.ctrl.onPodUpdate(b, c)
	if got := drainQueue(f.ctrl); !slices.Equal(got, []string{testKey}) {
		t.Errorf("readiness change queued %q, want %q", got, testKey)
	}
}

// A stream of Pod changes to one Service is synced at its first change,
// then once per window, however many changes the window brings; another
// Service's changes are paced on their own.
func TestPodChangesArePacedPerService(t *testing.T) {
	clk := testingclock.NewFakePassiveClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	const window = time.Second
	pacer := newPodEventPacer(window, clk)
	step := window / 10
	expect := func(key string, wantAfter time.Duration, wantQueue bool) {
		t.Helper()
		if after, queue := pacer.delay(key); after != wantAfter || queue != wantQueue {
			t.Errorf("at %s, %s: after %s, queue %v; want %s, %v", clk.Now().Format("05.000"), key, after, queue, wantAfter, wantQueue)
		}
	}
	expect("ns/web", 0, true) // the first change: at once
	clk.SetTime(clk.Now().Add(step))
	expect("ns/web", window-step, true) // the second: at the window's end
	for range 8 {
		clk.SetTime(clk.Now().Add(step))
		expect("ns/web", 0, false) // the rest: that sync sees them
	}
	expect("ns/other", 0, true) // another Service is paced on its own
	// Past the window's end (the sync due then has run), a change goes to
	// the end of the next window.
	clk.SetTime(clk.Now().Add(2 * step))
	expect("ns/web", window-step, true)
	clk.SetTime(clk.Now().Add(2 * window))
	expect("ns/web", 0, true) // after a quiet window: at once again
	pacer.forget("ns/web")
	expect("ns/web", 0, true)
}

// Pod events reach the queue through the pacer: a first change at once, a
// second within the window not yet.
func TestPodEventsArePaced(t *testing.T) {
	f := newFixture(t, nil, directService())
	f.ctrl.enqueuePodServices(readyPod("a", "10.0.0.1"))
	if got := drainQueue(f.ctrl); !slices.Equal(got, []string{testKey}) {
		t.Fatalf("first change queued %q, want %q at once", got, testKey)
	}
	f.ctrl.enqueuePodServices(readyPod("b", "10.0.0.2"))
	if got := drainQueue(f.ctrl); len(got) != 0 {
		t.Fatalf("a second change within the window queued %q at once", got)
	}
}

func drainQueue(c *Controller) []string {
	var keys []string
	for c.queue.Len() > 0 {
		k, _ := c.queue.Get()
		c.queue.Done(k)
		c.queue.Forget(k)
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func TestRunStopsTakingWorkAndFinishesInFlightSyncs(t *testing.T) {
	f := newFixture(t, nil, directService(), readyPod("a", "10.0.0.1"))
	f.cloud.SetLatency("CreateLoadBalancer", 200*time.Millisecond)
	ctx, cancel := context.WithCancel(f.ctx)
	f.factory.Start(ctx.Done())
	go f.configs.Informer().Run(ctx.Done())
	done := make(chan error)
	go func() { done <- f.ctrl.Run(ctx, 2) }()
	if err := waitFor(func() bool { return f.cloud.CountCalls("CreateLoadBalancer") == 1 }); err != nil {
		t.Fatalf("sync did not start: %v", err)
	}
	cancel() // while CreateLoadBalancer is in flight
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	// The in-flight sync was allowed to finish its CLB and listeners.
	if n := f.cloud.CountCalls("CreateListener"); n != 2 {
		t.Errorf("in-flight sync was cut short: %d listeners created, want 2", n)
	}
	f.factory.Shutdown()
}

func waitFor(cond func() bool) error {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("condition not met in 5s")
}

// resync delivers what the informer's periodic resync does: the cached
// Service as both old and new.
// resync is the informer's periodic resync, a period after the last.
func (f *fixture) resync() {
	f.clock.Step(defaultResyncPeriod)
	svc := f.service()
	f.ctrl.onServiceUpdate(svc, svc)
}

func TestGraceShutdownDrainsATerminatingPodAtWeightZero(t *testing.T) {
	svc := directService(func(s *v1.Service) { s.Annotations[AnnotationGraceShutdown] = "true" })
	f := newFixture(t, nil, svc, readyPod("a", "10.0.0.1"), readyPod("b", "10.0.0.2"))
	f.mustSync()
	lbID := f.loadBalancerID()

	pod, err := f.client.CoreV1().Pods(testNamespace).Get(f.ctx, "a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	podTerminating(pod)
	if _, err := f.client.CoreV1().Pods(testNamespace).Update(f.ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.mustSync()
	// Not deregistered: weight 0, so established connections drain.
	f.expectActions("BatchModifyTargetWeight:2")
	want := []string{"53/UDP 10.0.0.1:5353 w0", "53/UDP 10.0.0.2:5353 w10", "80/TCP 10.0.0.1:8080 w0", "80/TCP 10.0.0.2:8080 w10"}
	if got := f.backends(lbID); !slices.Equal(got, want) {
		t.Errorf("backends:\n got  %q\n want %q", got, want)
	}

	f.deletePod("a") // gone for good
	f.mustSync()
	f.expectActions("BatchDeregisterTargets:2")
}

func TestExistingLoadBalancerIsSharedAndNeverDeleted(t *testing.T) {
	clb := fake.New()
	theirs := clb.AddLoadBalancer(cloud.LoadBalancer{Name: "users-clb", Tags: map[string]string{"team": "other"}})
	clb.AddListener(theirs.ID, cloud.ListenerSpec{Name: "theirs", Protocol: cloud.ProtocolTCP, Port: 443})
	existing := func(s *v1.Service) { s.Annotations[AnnotationExistingLoadBalancer] = theirs.ID }
	other := directService(existing, func(s *v1.Service) {
		s.Name, s.UID = "other", "uid-other"
		s.Spec.Ports = []v1.ServicePort{{Name: "alt", Protocol: v1.ProtocolTCP, Port: 8000, TargetPort: intstr.FromString("http")}}
	})
	f := newFixture(t, clb, directService(existing), other, readyPod("a", "10.0.0.1"))
	f.mustSync()
	f.expectActions("DescribeLoadBalancers", "DescribeListeners", "DescribeTargets", "CreateListener", "CreateListener", "BatchRegisterTargets:2")
	if got := f.loadBalancerID(); got != theirs.ID {
		t.Errorf("annotation %s = %q, want the existing CLB %s", AnnotationLoadBalancerID, got, theirs.ID)
	}
	// A second Service on the same CLB, on another port.
	if err := f.ctrl.syncService(f.ctx, "ns/other"); err != nil {
		t.Fatal(err)
	}
	want := []string{"53/UDP 10.0.0.1:5353 w10", "80/TCP 10.0.0.1:8080 w10", "8000/TCP 10.0.0.1:8080 w10"}
	if got := f.backends(theirs.ID); !slices.Equal(got, want) {
		t.Errorf("backends:\n got  %q\n want %q", got, want)
	}

	f.updateService(func(s *v1.Service) { now := metav1.Now(); s.DeletionTimestamp = &now })
	f.mustSync()
	f.expectActions("DescribeLoadBalancers", "DescribeListeners", "DeleteListener", "DeleteListener")
	state := f.cloud.Snapshot()
	if len(state.LoadBalancers) != 1 {
		t.Fatalf("the existing CLB must never be deleted: %+v", state.LoadBalancers)
	}
	var names []string
	for _, l := range state.LoadBalancers[0].Listeners {
		names = append(names, l.Name)
	}
	if want := []string{"theirs", listenerName("uid-other", ListenerKey{cloud.ProtocolTCP, 8000})}; !slices.Equal(names, want) {
		t.Errorf("listeners left %q, want %q (theirs and the other Service's)", names, want)
	}
}

func TestMissingExistingLoadBalancerCreatesNothing(t *testing.T) {
	f := newFixture(t, nil, directService(func(s *v1.Service) { s.Annotations[AnnotationExistingLoadBalancer] = "lb-missing1" }), readyPod("a", "10.0.0.1"))
	f.ctrl.queue.Add(testKey)
	f.ctrl.processNextWorkItem(f.ctx)
	f.expectActions("DescribeLoadBalancers")
	f.expectEvent("Warning SyncLoadBalancerFailed")
	if f.ctrl.queue.NumRequeues(testKey) != 0 || f.ctrl.queue.Len() != 0 {
		t.Errorf("a missing existing CLB is for the user to fix: want a slow retry, not a backoff")
	}
}

func TestMovingToAnExistingLoadBalancerReleasesOurs(t *testing.T) {
	clb := fake.New()
	f := newFixture(t, clb, directService(), readyPod("a", "10.0.0.1"))
	f.mustSync()
	ours := f.loadBalancerID()
	theirs := clb.AddLoadBalancer(cloud.LoadBalancer{Name: "users-clb"})
	f.updateService(func(s *v1.Service) { s.Annotations[AnnotationExistingLoadBalancer] = theirs.ID })
	f.mustSync()
	// The new CLB serves first, then ours goes.
	f.expectActions("DescribeLoadBalancers", "DescribeListeners", "DescribeTargets", "CreateListener", "CreateListener", "BatchRegisterTargets:2",
		"DescribeLoadBalancers", "DeleteLoadBalancer")
	if lbs, _ := clb.DescribeLoadBalancers(f.ctx, cloud.LoadBalancerQuery{IDs: []string{ours}}); len(lbs) != 0 {
		t.Errorf("our previous CLB %s was not released", ours)
	}
}

func TestInternalSubnetMakesAnInternalCLB(t *testing.T) {
	f := newFixture(t, nil, directService(func(s *v1.Service) { s.Annotations[AnnotationInternalSubnet] = "subnet-abc123" }))
	f.mustSync()
	state := f.cloud.Snapshot()
	if len(state.LoadBalancers) != 1 || state.LoadBalancers[0].SubnetID != "subnet-abc123" {
		t.Errorf("want one internal CLB in subnet-abc123, got %+v", state.LoadBalancers)
	}
}

func TestQuotasApplyWhatFitsAndWarn(t *testing.T) {
	clb := fake.New(fake.WithLimits(fake.Limits{ListenersPerLoadBalancer: 1, BackendsPerListener: 2}))
	f := newFixture(t, clb, directService(), readyPod("a", "10.0.0.1"), readyPod("b", "10.0.0.2"), readyPod("c", "10.0.0.3"))
	// Within the usual quotas nothing reads them: the account's smaller
	// ones show when a write is refused...
	if err := f.sync(); cloud.KindOf(err) != cloud.KindQuota {
		t.Fatalf("first sync: %v, want a quota error", err)
	}
	// ...and the next sync reads them and applies what fits.
	f.mustSync()
	f.expectEvent("Warning QuotaExceeded")
	state := f.cloud.Snapshot()
	if len(state.LoadBalancers) != 1 || len(state.LoadBalancers[0].Listeners) != 1 {
		t.Fatalf("want 1 listener (the quota), got %+v", state.LoadBalancers)
	}
	if n := len(state.LoadBalancers[0].Listeners[0].Backends); n != 2 {
		t.Errorf("%d backends, want 2 (the quota)", n)
	}
	// Settled: nothing more to write.
	f.mustSync()
	if w := f.cloud.WriteCalls(); len(w) != 0 {
		t.Errorf("writes after settling: %+v", w)
	}
}

// A failed release is retried: the previous CLB stays recorded until it is
// gone, even once the Service's annotation names the new one.
func TestPreviousCLBIsReleasedEvenAfterAnError(t *testing.T) {
	clb := fake.New()
	f := newFixture(t, clb, directService(), readyPod("a", "10.0.0.1"))
	f.mustSync()
	ours := f.loadBalancerID()
	theirs := clb.AddLoadBalancer(cloud.LoadBalancer{Name: "users-clb"})
	f.updateService(func(s *v1.Service) { s.Annotations[AnnotationExistingLoadBalancer] = theirs.ID })
	clb.FailNext("DeleteLoadBalancer", 1, cloud.NewError("DeleteLoadBalancer", cloud.CodeInternalError, "injected", ""))
	if err := f.sync(); err == nil {
		t.Fatal("the failed release must be retried")
	}
	if got := f.service().Annotations[AnnotationPreviousLoadBalancers]; got != ours {
		t.Fatalf("previous CLBs recorded %q, want %q", got, ours)
	}
	// The Service is deleted before the retry: both go through cleanup.
	f.updateService(func(s *v1.Service) { now := metav1.Now(); s.DeletionTimestamp = &now })
	f.mustSync()
	if lbs, _ := clb.DescribeLoadBalancers(f.ctx, cloud.LoadBalancerQuery{IDs: []string{ours}}); len(lbs) != 0 {
		t.Errorf("our previous CLB %s leaked", ours)
	}
	if lbs, _ := clb.DescribeLoadBalancers(f.ctx, cloud.LoadBalancerQuery{IDs: []string{theirs.ID}}); len(lbs) != 1 {
		t.Errorf("the user's CLB %s must remain", theirs.ID)
	}
}

// Removing tke-existed-lbid takes the Service back to a CLB of its own and
// removes its listeners from the user's.
func TestLeavingAnExistingCLB(t *testing.T) {
	clb := fake.New()
	theirs := clb.AddLoadBalancer(cloud.LoadBalancer{Name: "users-clb"})
	f := newFixture(t, clb, directService(func(s *v1.Service) { s.Annotations[AnnotationExistingLoadBalancer] = theirs.ID }), readyPod("a", "10.0.0.1"))
	f.mustSync()
	f.updateService(func(s *v1.Service) { delete(s.Annotations, AnnotationExistingLoadBalancer) })
	f.mustSync()
	own := f.loadBalancerID()
	if own == theirs.ID || own == "" {
		t.Fatalf("annotation %q, want a CLB of the Service's own", own)
	}
	if got := f.backends(own); len(got) != 2 {
		t.Errorf("own CLB backends %q", got)
	}
	if got := f.backends(theirs.ID); len(got) != 0 {
		t.Errorf("listeners left on the user's CLB: %q", got)
	}
	if f.service().Annotations[AnnotationPreviousLoadBalancers] != "" {
		t.Errorf("previous CLBs still recorded after the release")
	}
}
