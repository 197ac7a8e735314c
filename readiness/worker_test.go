package readiness

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	k8sfake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2/ktesting"
	testingclock "k8s.io/utils/clock/testing"

	"clb-direct/cloud"
	"clb-direct/cloud/fake"
)

const (
	testPollInterval = 2 * time.Second
	testTimeout      = time.Minute
	describeHealth   = "DescribeTargetHealth"
)

// stubSource returns the expectation the test set for each Pod, by name,
// and counts how often each Pod was looked at.
type stubSource struct {
	mu    sync.Mutex
	exps  map[string]Expectation
	asked map[string]int
}

func (s *stubSource) HasSynced() bool { return true }

func (s *stubSource) Expect(pod *v1.Pod) Expectation {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.asked[pod.Name]++
	return s.exps[pod.Name]
}

func (s *stubSource) set(name string, exp Expectation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.exps[name] = exp
}

func (s *stubSource) timesAsked(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.asked[name]
}

// workerFixture is a Worker over a fake clientset whose informers run, a
// fake CLB account and a fake clock.
type workerFixture struct {
	t        *testing.T
	ctx      context.Context
	client   *k8sfake.Clientset
	cloud    *fake.Cloud
	clock    *testingclock.FakeClock
	recorder *events.FakeRecorder
	source   *stubSource
	w        *Worker
	// lb and listener hold the registered backends of the test Pods.
	lb       cloud.LoadBalancer
	listener cloud.Listener
}

func newWorkerFixture(t *testing.T) *workerFixture {
	t.Helper()
	_, ctx := ktesting.NewTestContext(t)
	ctx, cancel := context.WithCancel(ctx)
	f := &workerFixture{
		t:        t,
		ctx:      ctx,
		client:   k8sfake.NewClientset(),
		cloud:    fake.New(),
		clock:    testingclock.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)),
		recorder: events.NewFakeRecorder(100),
		source:   &stubSource{exps: map[string]Expectation{}, asked: map[string]int{}},
	}
	factory := informers.NewSharedInformerFactory(f.client, 0)
	w, err := New(ctx, f.client, f.cloud, f.source, f.recorder, factory.Core().V1().Pods(),
		Options{PollInterval: testPollInterval, Timeout: testTimeout, Clock: f.clock})
	if err != nil {
		t.Fatal(err)
	}
	f.w = w
	factory.Start(ctx.Done())
	t.Cleanup(func() {
		cancel()
		factory.Shutdown()
	})
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			t.Fatalf("informer %v did not sync", typ)
		}
	}
	f.lb = f.cloud.AddLoadBalancer(cloud.LoadBalancer{Name: "web"})
	f.listener = f.cloud.AddListener(f.lb.ID, cloud.ListenerSpec{Name: "web-tcp-80", Protocol: cloud.ProtocolTCP, Port: 80})
	return f
}

// addPod creates a gated Pod at ip, registered (healthy) on the fixture's
// listener, and waits until the worker counts it as waiting.
func (f *workerFixture) addPod(name, ip string) {
	f.t.Helper()
	f.prepare(name, ip, f.lb.ID, f.listener.ID)
	f.create(name, ip)
}

// prepare registers the Pod's backend and sets what the controller expects of it.
func (f *workerFixture) prepare(name, ip, lbID, listenerID string) {
	f.t.Helper()
	f.register(lbID, listenerID, ip)
	f.source.set(name, f.expectation(lbID, listenerID, ip))
}

func (f *workerFixture) create(name, ip string) {
	f.t.Helper()
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: "ns", Name: name, UID: types.UID("uid-" + name),
			CreationTimestamp: metav1.NewTime(f.clock.Now()), Labels: map[string]string{"app": "web"},
		},
		Spec: v1.PodSpec{
			Containers:     []v1.Container{{Name: "app", Ports: []v1.ContainerPort{{Name: "http", ContainerPort: 8080}}}},
			ReadinessGates: []v1.PodReadinessGate{{ConditionType: GateConditionType}},
		},
		Status: v1.PodStatus{Phase: v1.PodRunning, PodIP: ip, Conditions: []v1.PodCondition{
			{Type: v1.ContainersReady, Status: v1.ConditionTrue},
			{Type: v1.PodReady, Status: v1.ConditionFalse, Reason: "ReadinessGatesNotReady"},
		}},
	}
	if _, err := f.client.CoreV1().Pods("ns").Create(f.ctx, pod, metav1.CreateOptions{}); err != nil {
		f.t.Fatal(err)
	}
	// The lister has the Pod before the handler sees it; a running worker
	// may have settled it already.
	f.waitUntil("the Pod is known to the worker", func() bool {
		_, err := f.w.podLister.Pods("ns").Get(name)
		return err == nil && (slices.Contains(f.w.waitingKeys(), "ns/"+name) || f.source.timesAsked(name) > 0)
	})
}

func (f *workerFixture) register(lbID, listenerID, ip string) {
	f.t.Helper()
	err := f.cloud.RegisterBackends(f.ctx, lbID, []cloud.ListenerBackend{{ListenerID: listenerID, Backend: cloud.Backend{IP: ip, Port: 8080, Weight: 10}}})
	if err != nil {
		f.t.Fatal(err)
	}
}

func (f *workerFixture) expectation(lbID, listenerID, ip string) Expectation {
	return Expectation{Services: []string{"ns/web"}, Targets: []Target{{
		LoadBalancerID: lbID, ListenerID: listenerID, Listener: "TCP:80", Service: "ns/web",
		IP: ip, Port: 8080, Registered: true, HealthCheck: "TCP",
	}}}
}

func (f *workerFixture) setHealth(ip string, healthy bool, detail string) {
	f.t.Helper()
	if !f.cloud.SetBackendHealth(f.lb.ID, f.listener.ID, cloud.BackendKey{IP: ip, Port: 8080}, healthy, detail) {
		f.t.Fatalf("backend %s not registered", ip)
	}
}

// round does what one tick of Run does, synchronously.
func (f *workerFixture) round() {
	f.w.round(f.ctx, f.w.waitingKeys())
}

func (f *workerFixture) waitUntil(what string, cond func() bool) {
	f.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			f.t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// condition reads the Pod's gate condition from the clientset.
func (f *workerFixture) condition(name string) *v1.PodCondition {
	f.t.Helper()
	pod, err := f.client.CoreV1().Pods("ns").Get(f.ctx, name, metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	return gateCondition(pod)
}

// synced waits until the informer's Pod carries the gate condition the
// clientset has, so that the next round starts from what was written.
func (f *workerFixture) synced(name string) {
	f.t.Helper()
	want := f.condition(name)
	f.waitUntil("the informer has "+name+"'s condition", func() bool {
		pod, err := f.w.podLister.Pods("ns").Get(name)
		if err != nil {
			return false
		}
		got := gateCondition(pod)
		return (got == nil && want == nil) || (got != nil && want != nil && *got == *want)
	})
}

func (f *workerFixture) expectCondition(name string, status v1.ConditionStatus, reason, message string) {
	f.t.Helper()
	c := f.condition(name)
	if c == nil {
		f.t.Fatalf("Pod %s has no gate condition", name)
	}
	if c.Status != status || c.Reason != reason || c.Message != message {
		f.t.Errorf("Pod %s gate condition:\n got  %s %s %q\n want %s %s %q", name, c.Status, c.Reason, c.Message, status, reason, message)
	}
}

// patches returns the Pod patches written so far, as "name/subresource type".
func (f *workerFixture) patches() []string {
	var out []string
	for _, a := range f.client.Actions() {
		p, ok := a.(k8stesting.PatchAction)
		if !ok || a.GetVerb() != "patch" {
			continue
		}
		out = append(out, fmt.Sprintf("%s %s/%s %s", a.GetResource().Resource, p.GetName(), a.GetSubresource(), p.GetPatchType()))
	}
	return out
}

func (f *workerFixture) healthCalls() []fake.Call {
	var out []fake.Call
	for _, c := range f.cloud.Calls() {
		if c.Action == describeHealth {
			out = append(out, c)
		}
	}
	return out
}

func (f *workerFixture) events() []string {
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

func (f *workerFixture) readyMessage() string {
	return fmt.Sprintf("registered and healthy on CLB %s listener TCP:80 (%s)", f.lb.ID, f.listener.ID)
}

func (f *workerFixture) deadMessage(ip, detail string) string {
	return fmt.Sprintf("registered, health check not passing on CLB %s listener TCP:80 (%s) → %s:8080, TCP check: %s", f.lb.ID, f.listener.ID, ip, detail)
}

func TestWorkerHealthyPodPasses(t *testing.T) {
	f := newWorkerFixture(t)
	f.addPod("a", "10.0.0.1")
	f.cloud.ResetCalls()
	f.round()

	if got, want := f.patches(), []string{"pods a/status application/strategic-merge-patch+json"}; !slices.Equal(got, want) {
		t.Fatalf("patches %q, want %q", got, want)
	}
	f.expectCondition("a", v1.ConditionTrue, ReasonReady, f.readyMessage())
	if c := f.condition("a"); !c.LastTransitionTime.Equal(&metav1.Time{Time: f.clock.Now()}) {
		t.Errorf("lastTransitionTime %v, want the clock's %v", c.LastTransitionTime, f.clock.Now())
	}
	// The kubelet's conditions are untouched.
	pod, err := f.client.CoreV1().Pods("ns").Get(f.ctx, "a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(pod.Status.Conditions) != 3 {
		t.Errorf("conditions %+v, want ContainersReady, Ready and the gate", pod.Status.Conditions)
	}
	if calls := f.healthCalls(); len(calls) != 1 || calls[0].LoadBalancerID != f.lb.ID || calls[0].Err != nil {
		t.Errorf("health calls %+v, want one for %s", calls, f.lb.ID)
	}
	if evs := f.events(); len(evs) != 0 {
		t.Errorf("events %q", evs)
	}
}

func TestWorkerUnhealthyPodWaitsThenPasses(t *testing.T) {
	f := newWorkerFixture(t)
	f.addPod("a", "10.0.0.1")
	f.setHealth("10.0.0.1", false, "Dead")
	f.round()
	f.expectCondition("a", v1.ConditionFalse, ReasonUnhealthy, f.deadMessage("10.0.0.1", "Dead"))
	if got := f.w.waitingKeys(); !slices.Equal(got, []string{"ns/a"}) {
		t.Errorf("waiting %q, want ns/a", got)
	}
	firstTransition := f.condition("a").LastTransitionTime
	f.synced("a")

	f.setHealth("10.0.0.1", true, "")
	f.clock.Step(testPollInterval)
	f.round()
	f.expectCondition("a", v1.ConditionTrue, ReasonReady, f.readyMessage())
	if c := f.condition("a"); !c.LastTransitionTime.Time.Equal(firstTransition.Add(testPollInterval)) {
		t.Errorf("lastTransitionTime %v, want %v", c.LastTransitionTime, firstTransition.Add(testPollInterval))
	}
	if got := len(f.patches()); got != 2 {
		t.Errorf("%d patches, want 2", got)
	}
}

func TestWorkerPollsOnlyForWaitingPodsOncePerCLB(t *testing.T) {
	f := newWorkerFixture(t)
	// Pods that do not wait: one gated and already True, one without the gate.
	for _, p := range []*v1.Pod{
		{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "done", UID: "uid-done"},
			Spec:   v1.PodSpec{ReadinessGates: []v1.PodReadinessGate{{ConditionType: GateConditionType}}},
			Status: v1.PodStatus{PodIP: "10.0.0.8", Conditions: []v1.PodCondition{{Type: GateConditionType, Status: v1.ConditionTrue}}}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "ungated", UID: "uid-ungated"},
			Status: v1.PodStatus{PodIP: "10.0.0.9"}},
	} {
		f.register(f.lb.ID, f.listener.ID, p.Status.PodIP)
		f.source.set(p.Name, f.expectation(f.lb.ID, f.listener.ID, p.Status.PodIP))
		if _, err := f.client.CoreV1().Pods("ns").Create(f.ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	f.waitUntil("the informer has both Pods", func() bool {
		pods, _ := f.w.podLister.List(labels.Everything())
		return len(pods) == 2
	})
	f.cloud.ResetCalls()

	ctx, cancel := context.WithCancel(f.ctx)
	done := make(chan struct{})
	go func() { defer close(done); f.w.Run(ctx) }()
	f.waitUntil("Run's ticker", f.clock.HasWaiters)
	for range 5 {
		f.clock.Step(testPollInterval)
	}
	f.w.Poke()
	cancel()
	<-done
	// Even told about them, a round leaves Pods that do not wait alone.
	f.w.round(f.ctx, []string{"ns/done", "ns/ungated"})
	if got := f.w.waitingKeys(); len(got) != 0 {
		t.Errorf("waiting %q, want none", got)
	}
	if n := f.cloud.CountCalls(describeHealth); n != 0 {
		t.Errorf("%d health calls with no Pod waiting, want 0", n)
	}
	if got := f.patches(); len(got) != 0 {
		t.Errorf("settled Pods patched: %q", got)
	}
	if f.source.timesAsked("done") != 0 || f.source.timesAsked("ungated") != 0 {
		t.Errorf("settled Pods looked at: %v", f.source.asked)
	}

	// Three waiting Pods on one CLB and one on another: one call per CLB.
	for i, ip := range []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"} {
		f.addPod(fmt.Sprintf("p%d", i), ip)
		f.setHealth(ip, false, "Dead")
	}
	other := f.cloud.AddLoadBalancer(cloud.LoadBalancer{Name: "api"})
	otherListener := f.cloud.AddListener(other.ID, cloud.ListenerSpec{Name: "api-tcp-80", Protocol: cloud.ProtocolTCP, Port: 80})
	f.prepare("q", "10.0.1.1", other.ID, otherListener.ID)
	f.create("q", "10.0.1.1")
	if got, want := f.w.waitingKeys(), []string{"ns/p0", "ns/p1", "ns/p2", "ns/q"}; !slices.Equal(got, want) {
		t.Fatalf("waiting %q, want %q", got, want)
	}
	f.cloud.ResetCalls()
	f.round()
	var lbs []string
	for _, c := range f.healthCalls() {
		lbs = append(lbs, c.LoadBalancerID)
	}
	want := []string{f.lb.ID, other.ID}
	slices.Sort(want)
	if !slices.Equal(lbs, want) {
		t.Errorf("health calls for %q, want one each for %q", lbs, want)
	}
	// q passed in the first round: its CLB is not asked again.
	f.synced("p0")
	f.round()
	if n := f.cloud.CountCalls(describeHealth); n != 3 {
		t.Errorf("%d health calls after two rounds, want 3 (both CLBs, then only %s)", n, f.lb.ID)
	}
	if calls := f.healthCalls(); calls[2].LoadBalancerID != f.lb.ID {
		t.Errorf("second round asked about %s, want %s", calls[2].LoadBalancerID, f.lb.ID)
	}
	f.expectCondition("q", v1.ConditionTrue, ReasonReady,
		fmt.Sprintf("registered and healthy on CLB %s listener TCP:80 (%s)", other.ID, otherListener.ID))
	f.expectCondition("p1", v1.ConditionFalse, ReasonUnhealthy, f.deadMessage("10.0.0.2", "Dead"))
}

func TestWorkerDoesNotRepatchAnUnchangedVerdict(t *testing.T) {
	f := newWorkerFixture(t)
	f.addPod("a", "10.0.0.1")
	f.setHealth("10.0.0.1", false, "Dead")
	f.round()
	f.synced("a")
	f.clock.Step(testPollInterval)
	f.round()
	if got := len(f.patches()); got != 1 {
		t.Errorf("%d patches over two rounds with the same verdict, want 1", got)
	}
	if n := f.cloud.CountCalls(describeHealth); n != 2 {
		t.Errorf("%d health calls, want 2", n)
	}

	// A new detail is a new message: patched, the transition time kept.
	first := f.condition("a").LastTransitionTime
	f.setHealth("10.0.0.1", false, "Timeout")
	f.clock.Step(testPollInterval)
	f.round()
	if got := len(f.patches()); got != 2 {
		t.Errorf("%d patches after the detail changed, want 2", got)
	}
	f.expectCondition("a", v1.ConditionFalse, ReasonUnhealthy, f.deadMessage("10.0.0.1", "Timeout"))
	if c := f.condition("a"); !c.LastTransitionTime.Equal(&first) {
		t.Errorf("lastTransitionTime moved from %v to %v without a status change", first, c.LastTransitionTime)
	}
}

func TestWorkerWarnsOncePerLatePod(t *testing.T) {
	f := newWorkerFixture(t)
	f.addPod("a", "10.0.0.1")
	f.addPod("b", "10.0.0.2")
	f.setHealth("10.0.0.1", false, "Dead")
	f.setHealth("10.0.0.2", false, "Dead")
	f.round()
	f.clock.Step(testTimeout - time.Second)
	f.round()
	if evs := f.events(); len(evs) != 0 {
		t.Fatalf("events before the timeout: %q", evs)
	}

	f.clock.Step(2 * time.Second)
	f.round()
	evs := f.events()
	if len(evs) != 2 {
		t.Fatalf("events %q, want one per late Pod", evs)
	}
	for i, ip := range []string{"10.0.0.1", "10.0.0.2"} {
		prefix := "Warning " + ReasonTimeout + " The CLB has not reported this Pod healthy after 1m1s (" + f.deadMessage(ip, "Dead") + ")."
		if !slices.ContainsFunc(evs, func(e string) bool { return strings.HasPrefix(e, prefix) }) {
			t.Errorf("event %d: no event starting %q among %q", i, prefix, evs)
		}
	}
	f.clock.Step(testPollInterval)
	f.round()
	if evs := f.events(); len(evs) != 0 {
		t.Errorf("warned again: %q", evs)
	}

	// A Pod created now has its own timeout.
	f.addPod("c", "10.0.0.3")
	f.setHealth("10.0.0.3", false, "Dead")
	f.round()
	if evs := f.events(); len(evs) != 0 {
		t.Errorf("a new Pod was warned at once: %q", evs)
	}
}

func TestWorkerForgetsAPodOnceTrue(t *testing.T) {
	f := newWorkerFixture(t)
	f.addPod("a", "10.0.0.1")
	f.round()
	f.expectCondition("a", v1.ConditionTrue, ReasonReady, f.readyMessage())
	// Forgotten at once, not only when the informer brings the patched Pod.
	if got := f.w.waitingKeys(); len(got) != 0 {
		t.Fatalf("still waiting after True: %q", got)
	}
	asked := f.source.timesAsked("a")

	f.setHealth("10.0.0.1", false, "Dead")
	f.clock.Step(testPollInterval)
	f.round()
	f.synced("a")
	f.w.Poke()
	f.round()
	// Even a round told about it explicitly skips it: it is not pending.
	f.w.round(f.ctx, []string{"ns/a"})
	if got := len(f.patches()); got != 1 {
		t.Errorf("%d patches, want 1: a flap after True must not patch the Pod", got)
	}
	f.expectCondition("a", v1.ConditionTrue, ReasonReady, f.readyMessage())
	if got := f.source.timesAsked("a"); got != asked {
		t.Errorf("the settled Pod was looked at %d more times", got-asked)
	}
	if got := f.w.waitingKeys(); len(got) != 0 {
		t.Errorf("waiting again: %q", got)
	}
	if n := f.cloud.CountCalls(describeHealth); n != 1 {
		t.Errorf("%d health calls, want only the first round's", n)
	}
}

func TestWorkerKeepsWaitingWhenHealthCannotBeRead(t *testing.T) {
	f := newWorkerFixture(t)
	f.addPod("a", "10.0.0.1")
	f.cloud.FailNext(describeHealth, 1, nil)
	f.round()
	if got := f.patches(); len(got) != 0 {
		t.Errorf("patched without a health report: %q", got)
	}
	if c := f.condition("a"); c != nil {
		t.Errorf("condition %+v written without a health report", c)
	}
	if got := f.w.waitingKeys(); !slices.Equal(got, []string{"ns/a"}) {
		t.Fatalf("waiting %q, want ns/a", got)
	}
	calls := f.healthCalls()
	if len(calls) != 1 || calls[0].Err == nil {
		t.Fatalf("health calls %+v, want one failed", calls)
	}

	f.clock.Step(testPollInterval)
	f.round()
	f.expectCondition("a", v1.ConditionTrue, ReasonReady, f.readyMessage())
	if n := f.cloud.CountCalls(describeHealth); n != 2 {
		t.Errorf("%d health calls, want 2", n)
	}
}

// TestWorkerKeepsTheLastVerdictWhenHealthCannotBeRead: an API failure does
// not turn "Dead" into "no report yet".
func TestWorkerKeepsTheLastVerdictWhenHealthCannotBeRead(t *testing.T) {
	f := newWorkerFixture(t)
	f.addPod("a", "10.0.0.1")
	f.setHealth("10.0.0.1", false, "Dead")
	f.round()
	f.synced("a")
	f.cloud.FailNext(describeHealth, 1, nil)
	f.round()
	if got := len(f.patches()); got != 1 {
		t.Errorf("%d patches, want 1", got)
	}
	f.expectCondition("a", v1.ConditionFalse, ReasonUnhealthy, f.deadMessage("10.0.0.1", "Dead"))
}

// TestWorkerRun drives the loop itself: a new waiting Pod wakes it at once,
// the ticker brings the next rounds, and a Pod that passed stops the polling.
func TestWorkerRun(t *testing.T) {
	f := newWorkerFixture(t)
	ctx, cancel := context.WithCancel(f.ctx)
	done := make(chan struct{})
	go func() { defer close(done); f.w.Run(ctx) }()
	defer func() { cancel(); <-done }()
	f.waitUntil("Run's ticker", f.clock.HasWaiters)

	f.prepare("a", "10.0.0.1", f.lb.ID, f.listener.ID)
	f.setHealth("10.0.0.1", false, "Dead")
	f.create("a", "10.0.0.1")
	// No clock step: the new waiting Pod wakes the loop.
	f.waitUntil("the first round patches the Pod", func() bool { return len(f.patches()) == 1 })
	f.expectCondition("a", v1.ConditionFalse, ReasonUnhealthy, f.deadMessage("10.0.0.1", "Dead"))
	f.synced("a")

	f.setHealth("10.0.0.1", true, "")
	f.clock.Step(testPollInterval)
	f.waitUntil("a tick patches the Pod True", func() bool { return len(f.patches()) == 2 })
	f.expectCondition("a", v1.ConditionTrue, ReasonReady, f.readyMessage())
	f.waitUntil("the Pod leaves the waiting set", func() bool { return len(f.w.waitingKeys()) == 0 })

	// Nothing waits: ticks cost nothing.
	calls := f.cloud.CountCalls(describeHealth)
	for range 3 {
		f.clock.Step(testPollInterval)
	}
	f.w.Poke()
	// A new waiting Pod proves the loop went through those ticks alive.
	f.addPod("b", "10.0.0.2")
	f.waitUntil("b is patched", func() bool { return len(f.patches()) == 3 })
	if got := f.cloud.CountCalls(describeHealth); got != calls+1 {
		t.Errorf("%d health calls since a passed, want 1 (for b only)", got-calls)
	}
}

func TestWorkerForgetsDeletedPods(t *testing.T) {
	f := newWorkerFixture(t)
	f.addPod("a", "10.0.0.1")
	f.setHealth("10.0.0.1", false, "Dead")
	f.clock.Step(2 * testTimeout)
	f.round()
	if evs := f.events(); len(evs) != 1 {
		t.Fatalf("events %q, want one warning", evs)
	}
	if err := f.client.CoreV1().Pods("ns").Delete(f.ctx, "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	f.waitUntil("the deleted Pod is forgotten", func() bool {
		f.w.mu.Lock()
		defer f.w.mu.Unlock()
		return len(f.w.waiting) == 0 && len(f.w.warned) == 0
	})
}

// An update event older than the True patch (the Pod as it was before)
// must not make a passed Pod wait again.
func TestWorkerIgnoresAStaleEventAfterTrue(t *testing.T) {
	f := newWorkerFixture(t)
	f.addPod("a", "10.0.0.1")
	stale, err := f.client.CoreV1().Pods("ns").Get(f.ctx, "a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f.round()
	f.expectCondition("a", v1.ConditionTrue, ReasonReady, f.readyMessage())
	f.w.track(stale)
	if got := f.w.waitingKeys(); len(got) != 0 {
		t.Errorf("a stale event put the passed Pod back to waiting: %q", got)
	}
}
