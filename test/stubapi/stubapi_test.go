package stubapi

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/tools/pager"
)

// startClient starts a server and a client of it speaking protobuf, as
// client-go's generated clients do by default.
func startClient(t *testing.T) (*Server, kubernetes.Interface) {
	t.Helper()
	return startClientSpeaking(t, "")
}

// inEachFormat runs a test with a client speaking protobuf and one
// speaking JSON.
func inEachFormat(t *testing.T, test func(t *testing.T, s *Server, client kubernetes.Interface)) {
	for _, contentType := range []string{"", "application/json"} {
		t.Run(cmpOr(contentType, "protobuf"), func(t *testing.T) {
			s, client := startClientSpeaking(t, contentType)
			test(t, s, client)
		})
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func startClientSpeaking(t *testing.T, contentType string) (*Server, kubernetes.Interface) {
	t.Helper()
	s := Start(Options{})
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
	if contentType != "" {
		config.ContentType, config.AcceptContentTypes = contentType, contentType
	}
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		t.Fatal(err)
	}
	return s, client
}

func pod(namespace, name string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: labels},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1"}}}}
}

func service(namespace, name string) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Annotations: map[string]string{"a": "1"}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 80}}}}
}

func TestDiscoveryAndVersion(t *testing.T) {
	s, client := startClient(t)
	v, err := client.Discovery().ServerVersion()
	if err != nil || v.GitVersion != DefaultVersion || v.Minor != "34" {
		t.Fatalf("ServerVersion() = %+v, %v", v, err)
	}
	resources, err := client.Discovery().ServerResourcesForGroupVersion("v1")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range resources.APIResources {
		names = append(names, r.Name)
	}
	for _, want := range []string{"pods", "pods/status", "services", "services/status", "nodes", "configmaps", "events"} {
		if !slices.Contains(names, want) {
			t.Errorf("v1 resources %v lack %s", names, want)
		}
	}
	if _, err := client.Discovery().ServerResourcesForGroupVersion("events.k8s.io/v1"); err != nil {
		t.Errorf("events.k8s.io/v1: %v", err)
	}
	if _, err := client.Discovery().ServerResourcesForGroupVersion("cloud.tencent.com/v1alpha1"); !apierrors.IsNotFound(err) {
		t.Errorf("cloud.tencent.com/v1alpha1: %v, want NotFound", err)
	}
	if _, _, err := client.Discovery().ServerGroupsAndResources(); err != nil {
		t.Errorf("ServerGroupsAndResources: %v", err)
	}
	if got := s.Unhandled(); !slices.Contains(got, "GET /apis/cloud.tencent.com/v1alpha1") {
		t.Errorf("Unhandled() = %v, want the CRD's group", got)
	}
}

func TestListPagesAndSelects(t *testing.T) { inEachFormat(t, testListPagesAndSelects) }

func testListPagesAndSelects(t *testing.T, s *Server, client kubernetes.Interface) {
	ctx := context.Background()
	for i := range 7 {
		if err := s.Add(pod(fmt.Sprintf("ns-%d", i%2), fmt.Sprintf("p-%d", i), map[string]string{"i": fmt.Sprint(i % 3)})); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Add(pod("ns-0", "p-0", nil)); err == nil {
		t.Error("adding a Pod twice succeeded")
	}
	var names []string
	p := pager.New(func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
		return client.CoreV1().Pods("").List(ctx, opts)
	})
	p.PageSize = 2
	if err := p.EachListItem(ctx, metav1.ListOptions{}, func(obj runtime.Object) error {
		names = append(names, obj.(*corev1.Pod).Name)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"p-0", "p-2", "p-4", "p-6", "p-1", "p-3", "p-5"}; !slices.Equal(names, want) {
		t.Errorf("paged list = %v, want %v", names, want)
	}
	page, err := client.CoreV1().Pods("").List(ctx, metav1.ListOptions{Limit: 3})
	if err != nil || len(page.Items) != 3 || page.Continue == "" {
		t.Errorf("a first page of 3: %d items, continue %q, %v", len(page.Items), page.Continue, err)
	}
	// resourceVersion 0 is served whole, as from the watch cache.
	all, err := client.CoreV1().Pods("").List(ctx, metav1.ListOptions{Limit: 3, ResourceVersion: "0"})
	if err != nil || len(all.Items) != 7 || all.Continue != "" {
		t.Errorf("a list at resourceVersion 0: %d items, continue %q, %v", len(all.Items), all.Continue, err)
	}
	ns1, err := client.CoreV1().Pods("ns-1").List(ctx, metav1.ListOptions{LabelSelector: "i=1"})
	if err != nil || len(ns1.Items) != 1 || ns1.Items[0].Name != "p-1" {
		t.Errorf("ns-1 with i=1: %v, %v", ns1.Items, err)
	}
	byName, err := client.CoreV1().Pods("ns-0").List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", "p-4").String()})
	if err != nil || len(byName.Items) != 1 || byName.Items[0].Name != "p-4" {
		t.Errorf("by name: %v, %v", byName.Items, err)
	}
	if got, err := client.CoreV1().Pods("ns-0").Get(ctx, "p-2", metav1.GetOptions{}); err != nil || got.UID == "" || got.ResourceVersion == "" {
		t.Errorf("Get: %+v, %v", got.ObjectMeta, err)
	}
	if _, err := client.CoreV1().Pods("ns-0").Get(ctx, "nope", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("Get of a missing Pod: %v, want NotFound", err)
	}
	if err := client.CoreV1().Pods("ns-0").Delete(ctx, "p-0", metav1.DeleteOptions{}); !apierrors.IsMethodNotSupported(err) {
		t.Errorf("Delete: %v, want MethodNotSupported", err)
	}
}

func TestInformersFollowChanges(t *testing.T) { inEachFormat(t, testInformersFollowChanges) }

func testInformersFollowChanges(t *testing.T, s *Server, client kubernetes.Interface) {
	if err := s.Add(pod("ns", "a", nil), service("ns", "web"), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1"}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	factory := informers.NewSharedInformerFactory(client, 0)
	defer func() { cancel(); factory.Shutdown() }()
	pods := factory.Core().V1().Pods()
	nodes := factory.Core().V1().Nodes()
	nodes.Informer()
	deleted := make(chan string, 10)
	if _, err := pods.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		DeleteFunc: func(obj any) { deleted <- obj.(*corev1.Pod).Name },
	}); err != nil {
		t.Fatal(err)
	}
	factory.Start(ctx.Done())
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			t.Fatalf("%v did not sync", typ)
		}
	}
	if _, err := nodes.Lister().Get("node-1"); err != nil {
		t.Error(err)
	}
	if err := s.Add(pod("ns", "b", nil)); err != nil {
		t.Fatal(err)
	}
	changed := pod("ns", "a", map[string]string{"v": "2"})
	if err := s.Update(changed); err != nil {
		t.Fatal(err)
	}
	finalized := pod("ns", "c", nil)
	finalized.Finalizers = []string{"example.com/f"}
	if err := s.Add(finalized); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(pod("ns", "b", nil)); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(finalized); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		a, errA := pods.Lister().Pods("ns").Get("a")
		c, errC := pods.Lister().Pods("ns").Get("c")
		_, errB := pods.Lister().Pods("ns").Get("b")
		return errA == nil && a.Labels["v"] == "2" && errC == nil && c.DeletionTimestamp != nil && apierrors.IsNotFound(errB)
	})
	if got := <-deleted; got != "b" {
		t.Errorf("deleted %s, want b", got)
	}
	// Removing the last finalizer of a deleted object deletes it.
	if _, err := client.CoreV1().Pods("ns").Patch(ctx, "c", types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := <-deleted; got != "c" {
		t.Errorf("deleted %s, want c", got)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPatches(t *testing.T) { inEachFormat(t, testPatches) }

func testPatches(t *testing.T, s *Server, client kubernetes.Interface) {
	ctx := context.Background()
	if err := s.Add(service("ns", "web")); err != nil {
		t.Fatal(err)
	}
	svc, err := client.CoreV1().Services("ns").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svcs := client.CoreV1().Services("ns")
	// The finalizer patch, guarded by the resource version.
	finalizer := fmt.Sprintf(`{"metadata":{"finalizers":["example.com/f"],"resourceVersion":%q}}`, svc.ResourceVersion)
	patched, err := svcs.Patch(ctx, "web", types.MergePatchType, []byte(finalizer), metav1.PatchOptions{})
	if err != nil || !slices.Equal(patched.Finalizers, []string{"example.com/f"}) || patched.ResourceVersion == svc.ResourceVersion {
		t.Fatalf("finalizer patch: %+v, %v", patched.ObjectMeta, err)
	}
	if _, err := svcs.Patch(ctx, "web", types.MergePatchType, []byte(finalizer), metav1.PatchOptions{}); !apierrors.IsConflict(err) {
		t.Errorf("a patch on a stale resource version: %v, want Conflict", err)
	}
	// Annotations; a status in the patch of the object is ignored.
	patched, err = svcs.Patch(ctx, "web", types.MergePatchType,
		[]byte(`{"metadata":{"annotations":{"b":"2","a":null}},"status":{"loadBalancer":{"ingress":[{"ip":"1.2.3.4"}]}}}`), metav1.PatchOptions{})
	if err != nil || patched.Annotations["b"] != "2" || patched.Annotations["a"] != "" || len(patched.Status.LoadBalancer.Ingress) != 0 {
		t.Fatalf("annotation patch: %+v %+v, %v", patched.ObjectMeta, patched.Status, err)
	}
	// The status subresource changes only the status.
	patched, err = svcs.Patch(ctx, "web", types.MergePatchType,
		[]byte(`{"metadata":{"annotations":{"c":"3"}},"status":{"loadBalancer":{"ingress":[{"ip":"1.2.3.4"}]}}}`), metav1.PatchOptions{}, "status")
	if err != nil || patched.Annotations["c"] != "" || len(patched.Status.LoadBalancer.Ingress) != 1 {
		t.Fatalf("status patch: %+v %+v, %v", patched.ObjectMeta, patched.Status, err)
	}
	// A patch that changes nothing makes no new version.
	again, err := svcs.Patch(ctx, "web", types.MergePatchType,
		[]byte(`{"status":{"loadBalancer":{"ingress":[{"ip":"1.2.3.4"}]}}}`), metav1.PatchOptions{}, "status")
	if err != nil || again.ResourceVersion != patched.ResourceVersion {
		t.Errorf("a no-op patch: resource version %s, want %s (%v)", again.ResourceVersion, patched.ResourceVersion, err)
	}
	stored, err := s.Services()
	if err != nil || len(stored) != 1 || len(stored[0].Status.LoadBalancer.Ingress) != 1 || stored[0].Annotations["b"] != "2" {
		t.Errorf("Services() = %+v, %v", stored, err)
	}

	// A strategic merge patch of a Pod's conditions merges by type, and a
	// UID precondition holds.
	p := pod("ns", "a", nil)
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	if err := s.Add(p); err != nil {
		t.Fatal(err)
	}
	current, err := client.CoreV1().Pods("ns").Get(ctx, "a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	gate := fmt.Sprintf(`{"metadata":{"uid":%q},"status":{"conditions":[{"type":"example.com/gate","status":"True"}]}}`, current.UID)
	patchedPod, err := client.CoreV1().Pods("ns").Patch(ctx, "a", types.StrategicMergePatchType, []byte(gate), metav1.PatchOptions{}, "status")
	if err != nil || len(patchedPod.Status.Conditions) != 2 {
		t.Fatalf("condition patch: %+v, %v", patchedPod.Status, err)
	}
	if _, err := client.CoreV1().Pods("ns").Patch(ctx, "a", types.StrategicMergePatchType,
		[]byte(`{"metadata":{"uid":"someone-else"},"status":{"phase":"Failed"}}`), metav1.PatchOptions{}, "status"); !apierrors.IsConflict(err) {
		t.Errorf("a patch for another UID: %v, want Conflict", err)
	}
	if _, err := client.CoreV1().Pods("ns").Patch(ctx, "missing", types.MergePatchType, []byte(`{}`), metav1.PatchOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("patching a missing Pod: %v, want NotFound", err)
	}
	if _, err := client.CoreV1().Pods("ns").Patch(ctx, "a", types.ApplyYAMLPatchType, []byte(`{}`), metav1.PatchOptions{FieldManager: "x"}); err == nil {
		t.Error("an apply patch succeeded")
	}
	records := s.Patches()
	if len(records) != 9 || records[0].Resource != "services" || records[0].Type != types.MergePatchType || records[1].Status != 409 ||
		records[3].Subresource != "status" {
		t.Errorf("Patches() = %+v", records)
	}
}

func TestEvents(t *testing.T) { inEachFormat(t, testEvents) }

func testEvents(t *testing.T, s *Server, client kubernetes.Interface) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	broadcaster := events.NewBroadcaster(&events.EventSinkImpl{Interface: client.EventsV1()})
	if err := broadcaster.StartRecordingToSinkWithContext(ctx); err != nil {
		t.Fatal(err)
	}
	defer broadcaster.Shutdown()
	recorder := broadcaster.NewRecorder(scheme.Scheme, "test")
	svc := service("ns", "web")
	svc.UID = "uid-web"
	recorder.Eventf(svc, nil, corev1.EventTypeNormal, "Synced", "Sync", "CLB %s", "lb-1")
	waitFor(t, func() bool {
		evs, err := s.Events()
		if err != nil {
			t.Fatal(err)
		}
		return len(evs) == 1 && evs[0].Reason == "Synced" && evs[0].Regarding.Name == "web" && evs[0].Note == "CLB lb-1"
	})
}

func TestWatchFromTheCurrentStateAndInitialEvents(t *testing.T) {
	inEachFormat(t, testWatchFromTheCurrentStateAndInitialEvents)
}

func testWatchFromTheCurrentStateAndInitialEvents(t *testing.T, s *Server, client kubernetes.Interface) {
	ctx := context.Background()
	if err := s.Add(service("ns", "a"), service("ns", "b")); err != nil {
		t.Fatal(err)
	}
	w, err := client.CoreV1().Services("ns").Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	for _, want := range []string{"a", "b"} {
		ev := <-w.ResultChan()
		if ev.Type != "ADDED" || ev.Object.(*corev1.Service).Name != want {
			t.Errorf("event %s %v, want ADDED %s", ev.Type, ev.Object, want)
		}
	}
	send := true
	w2, err := client.CoreV1().Services("").Watch(ctx, metav1.ListOptions{SendInitialEvents: &send, AllowWatchBookmarks: true,
		ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan})
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Stop()
	var got []string
	for ev := range w2.ResultChan() {
		svc := ev.Object.(*corev1.Service)
		if ev.Type == "BOOKMARK" {
			if svc.Annotations[metav1.InitialEventsAnnotationKey] != "true" {
				t.Errorf("bookmark without the initial-events-end annotation: %v", svc.Annotations)
			}
			break
		}
		got = append(got, svc.Name)
	}
	if !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("initial events %v, want a and b", got)
	}
}

func TestProtobufOnlyWhenAsked(t *testing.T) {
	s := Start(Options{})
	defer s.Close()
	if err := s.Add(pod("ns", "a", nil)); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ accept, want string }{
		{"application/vnd.kubernetes.protobuf,application/json", "application/vnd.kubernetes.protobuf"},
		{"application/json", "application/json"},
		{"", "application/json"},
	} {
		req, _ := http.NewRequest(http.MethodGet, s.URL()+"/api/v1/namespaces/ns/pods", nil)
		req.Header.Set("Accept", tt.accept)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if got := resp.Header.Get("Content-Type"); got != tt.want {
			t.Errorf("Accept %q: Content-Type %q, want %q", tt.accept, got, tt.want)
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(body, nil, nil)
		if list, ok := obj.(*corev1.PodList); err != nil || !ok || len(list.Items) != 1 || list.Items[0].Name != "a" {
			t.Errorf("Accept %q: decoded %T %v", tt.accept, obj, err)
		}
	}
}
