package controller

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"
	"unique"

	gocmp "github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2/ktesting"

	"clb-direct/cloud/fake"
	"clb-direct/test/stubapi"
)

// trimmedWithoutTypeMeta is what a view of a cached Pod must equal.
func trimmedWithoutTypeMeta(t *testing.T, pod *v1.Pod) *v1.Pod {
	out := trimmed(t, pod.DeepCopy())
	out.TypeMeta = metav1.TypeMeta{}
	return out
}

func TestCachedPodViewIsTheTrimmedPod(t *testing.T) {
	for _, pod := range podVariants() {
		packed, err := packForCache(pod.DeepCopy())
		if err != nil {
			t.Fatal(err)
		}
		if diff := gocmp.Diff(trimmedWithoutTypeMeta(t, pod), view(packed)); diff != "" {
			t.Errorf("%s: the view differs from the trimmed Pod (-trimmed +view):\n%s", pod.Name, diff)
		}
		// A packed Pod passes through again, as from the paged LIST.
		again, _ := packForCache(packed)
		if again != packed {
			t.Errorf("%s: packing a packed Pod made another", pod.Name)
		}
		copied := packed.(*cachedPod).DeepCopyObject()
		if diff := gocmp.Diff(view(packed), view(copied)); diff != "" {
			t.Errorf("%s: DeepCopyObject differs (-original +copy):\n%s", pod.Name, diff)
		}
	}
	tombstone := view(cache.DeletedFinalStateUnknown{Key: "ns/ready", Obj: packPod(trimPod(wholePod("ready", "10.0.0.1")))})
	if pod, ok := tombstone.(cache.DeletedFinalStateUnknown).Obj.(*v1.Pod); !ok || pod.Name != "ready" {
		t.Errorf("a tombstone's view holds %T", tombstone.(cache.DeletedFinalStateUnknown).Obj)
	}
}

func TestCachedPodsOfOneTemplateShareIt(t *testing.T) {
	a := packPod(trimPod(wholePod("a", "10.0.0.1")))
	b := packPod(trimPod(wholePod("b", "10.0.0.2")))
	other := packPod(trimPod(wholePod("c", "10.0.0.3", func(p *v1.Pod) { p.Labels["version"] = "2" })))
	if a.template != b.template || a.labels != b.labels || a.annotations != b.annotations {
		t.Error("two Pods of one template do not share it")
	}
	if a.labels == other.labels {
		t.Error("Pods with other labels share them")
	}
	if a.template != other.template {
		t.Error("Pods with the same containers but other labels do not share the containers")
	}
	// Handles are equal when they share the interned value.
	gate := func(p *cachedPod) unique.Handle[conditionDetail] {
		for _, c := range p.conditions {
			if c.detail != (unique.Handle[conditionDetail]{}) {
				return c.detail
			}
		}
		return unique.Handle[conditionDetail]{}
	}
	if gate(a) == (unique.Handle[conditionDetail]{}) || gate(a) != gate(b) {
		t.Error("the readiness gate condition's reason and message are not shared")
	}
	runtime.KeepAlive(a)
	runtime.KeepAlive(b)
	runtime.KeepAlive(other)
}

func TestInternerForgetsWhatNobodyHolds(t *testing.T) {
	var in interner[podTemplate]
	v := in.intern("key", &podTemplate{})
	if got := in.intern("key", &podTemplate{}); got != v {
		t.Fatal("intern did not return the value it holds")
	}
	runtime.KeepAlive(v)
	v = nil
	deadline := time.Now().Add(10 * time.Second)
	for in.len() > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the interner still holds a value nobody uses")
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}

// startStub starts the stub API server and a client of it.
func startStub(t *testing.T) (*stubapi.Server, kubernetes.Interface) {
	t.Helper()
	s := stubapi.Start(stubapi.Options{})
	t.Cleanup(s.Close)
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := s.WriteKubeconfig(path); err != nil {
		t.Fatal(err)
	}
	config, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	config.QPS, config.Burst = -1, 0
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		t.Fatal(err)
	}
	return s, client
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPodInformerListsInPagesAndServesViews(t *testing.T) {
	s, client := startStub(t)
	const n = 2*podListPageSize + 100
	for i := range n {
		pod := wholePod(fmt.Sprintf("web-%04d", i), fmt.Sprintf("10.1.%d.%d", i/250, i%250+1), func(p *v1.Pod) {
			p.UID, p.ResourceVersion, p.Finalizers = "", "", nil
			p.Namespace = fmt.Sprintf("ns-%d", i%2)
		})
		if err := s.Add(pod); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTransform(TrimForCache))
	defer func() { cancel(); factory.Shutdown() }()
	pods, err := PodInformer(factory)
	if err != nil {
		t.Fatal(err)
	}
	type event struct{ kind, name string }
	received := make(chan event, 2*n)
	record := func(kind string) func(any) {
		return func(obj any) {
			if tombstone, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = tombstone.Obj
			}
			pod, ok := obj.(*v1.Pod)
			if !ok {
				t.Errorf("a handler got %T", obj)
				return
			}
			received <- event{kind, pod.Name}
		}
	}
	if _, err := pods.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    record("add"),
		UpdateFunc: func(_, obj any) { record("update")(obj) },
		DeleteFunc: record("delete"),
	}); err != nil {
		t.Fatal(err)
	}
	factory.Start(ctx.Done())
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			t.Fatalf("%v did not sync", typ)
		}
	}
	if got := s.Requests()["list pods"]; got != 3 {
		t.Errorf("%d LIST requests for %d Pods, want 3 pages", got, n)
	}
	for _, obj := range pods.Informer().GetIndexer().List() {
		if _, ok := obj.(*cachedPod); !ok {
			t.Fatalf("the cache holds a %T", obj)
		}
	}
	all, err := pods.Lister().List(labels.Everything())
	if err != nil || len(all) != n {
		t.Fatalf("List: %d Pods, %v", len(all), err)
	}
	ns1, err := pods.Lister().Pods("ns-1").List(labels.SelectorFromSet(labels.Set{"app": "web"}))
	if err != nil || len(ns1) != n/2 {
		t.Errorf("List in ns-1: %d Pods, %v", len(ns1), err)
	}
	if none, err := pods.Lister().Pods("ns-1").List(labels.SelectorFromSet(labels.Set{"app": "api"})); err != nil || len(none) != 0 {
		t.Errorf("List of app=api: %d Pods, %v", len(none), err)
	}
	whole, err := client.CoreV1().Pods("ns-1").Get(ctx, "web-0007", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := pods.Lister().Pods("ns-1").Get("web-0007")
	if err != nil {
		t.Fatal(err)
	}
	if diff := gocmp.Diff(trimmedWithoutTypeMeta(t, whole), got); diff != "" {
		t.Errorf("the cached Pod differs from the trimmed one (-trimmed +cached):\n%s", diff)
	}
	if _, err := pods.Lister().Pods("ns-0").Get("web-0007"); !apierrors.IsNotFound(err) {
		t.Errorf("Get of a missing Pod: %v, want NotFound", err)
	}

	// Watch events are packed too, and handlers get views.
	changed := whole.DeepCopy()
	changed.Status.PodIP = "10.9.9.9"
	if err := s.Update(changed); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(whole); err != nil {
		t.Fatal(err)
	}
	var seen []event
	waitUntil(t, "the update and the deletion", func() bool {
		for {
			select {
			case e := <-received:
				seen = append(seen, e)
				continue
			default:
			}
			break
		}
		return slices.Contains(seen, event{"update", "web-0007"}) && slices.Contains(seen, event{"delete", "web-0007"})
	})
	if adds := len(slices.DeleteFunc(slices.Clone(seen), func(e event) bool { return e.kind != "add" })); adds != n {
		t.Errorf("%d adds, want %d", adds, n)
	}
	for _, obj := range pods.Informer().GetIndexer().List() {
		if _, ok := obj.(*cachedPod); !ok {
			t.Fatalf("after a watch event the cache holds a %T", obj)
		}
	}

	// One Pod informer per factory.
	if _, err := PodInformer(factory); err == nil {
		t.Error("a second PodInformer on one factory succeeded")
	}
}

// TestControllerSyncsFromThePodCache runs the controller on the Pod cache
// against the stub API: the Pods are registered, and a new Pod follows.
func TestControllerSyncsFromThePodCache(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	ctx, cancel := context.WithCancel(ctx)
	s, client := startStub(t)
	svc := directService()
	svc.UID = ""
	// VPC-CNI Pods: GlobalRouter ones would need the cluster's opt-in.
	eni := func(p *v1.Pod) {
		p.Spec.Containers[0].Resources.Requests = v1.ResourceList{ResourceENIIP: resource.MustParse("1")}
	}
	if err := s.Add(svc, readyPod("a", "10.0.0.1", eni), readyPod("b", "10.0.0.2", eni)); err != nil {
		t.Fatal(err)
	}
	clb := fake.New()
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTransform(TrimForCache))
	defer func() { cancel(); factory.Shutdown() }()
	pods, err := PodInformer(factory)
	if err != nil {
		t.Fatal(err)
	}
	ctrl, err := New(ctx, client, clb, events.NewFakeRecorder(100), factory.Core().V1().Services(), pods, Options{ClusterID: testClusterID})
	if err != nil {
		t.Fatal(err)
	}
	factory.Start(ctx.Done())
	go func() { _ = ctrl.Run(ctx, 1) }()
	backends := func() int {
		n := 0
		for _, lb := range clb.Snapshot().LoadBalancers {
			for _, l := range lb.Listeners {
				n += len(l.Backends)
			}
		}
		return n
	}
	// Two Pods on two listeners.
	waitUntil(t, "4 backends", func() bool { return backends() == 4 })
	if err := s.Add(readyPod("c", "10.0.0.3", eni)); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "6 backends", func() bool { return backends() == 6 })
}

func TestInternedMapsOfDifferentContentDiffer(t *testing.T) {
	a := internMap(map[string]string{"a": "b\x00c\x00"})
	b := internMap(map[string]string{"a": "b", "c": ""})
	if a == b {
		t.Error("two different maps were interned as one")
	}
	if internMap(nil) != nil {
		t.Error("a nil map was interned")
	}
	runtime.KeepAlive(a)
	runtime.KeepAlive(b)
}
