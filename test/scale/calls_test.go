// Package scale measures what the controller costs the CLB API: the calls it
// makes to converge, against the fewest the API's limits allow.
package scale

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	k8sfake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2/ktesting"

	"clb-direct/cloud"
	"clb-direct/cloud/emulator"
	"clb-direct/cloud/tencent"
	"clb-direct/controller"
)

// TestConvergeOneServiceOfThousandPods runs the controller with the real
// adapter against the emulator (official SDK over HTTP, the API's rate
// limits and asynchronous tasks on) and counts the calls it takes to put
// 1,000 Pods on a new CLB, then checks a resync writes nothing.
func TestConvergeOneServiceOfThousandPods(t *testing.T) {
	const pods = 1000
	_, ctx := ktesting.NewTestContext(t)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	srv, err := emulator.New(emulator.Config{
		SecretID: "AKIDscale", SecretKey: "scale-secret", Region: "ap-guangzhou",
		TaskDuration: 20 * time.Millisecond, RateLimit: 20, BackendsPerListener: pods,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	addr, err := srv.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("TENCENTCLOUD_SECRET_ID", "AKIDscale")
	t.Setenv("TENCENTCLOUD_SECRET_KEY", "scale-secret")
	clb, err := tencent.New(tencent.Options{Region: "ap-guangzhou", Endpoint: addr, Scheme: "http"})
	if err != nil {
		t.Fatal(err)
	}

	objects := []runtime.Object{&v1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web", UID: types.UID("uid-web"),
			Annotations: map[string]string{controller.AnnotationDirectAccess: "true"}},
		Spec: v1.ServiceSpec{Type: v1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": "web"},
			Ports: []v1.ServicePort{{Protocol: v1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	}}
	for i := range pods {
		objects = append(objects, &v1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: fmt.Sprintf("web-%d", i), Labels: map[string]string{"app": "web"}},
			// VPC-CNI Pods, which need no cluster opt-in.
			Spec: v1.PodSpec{Containers: []v1.Container{{Name: "web", Resources: v1.ResourceRequirements{
				Requests: v1.ResourceList{controller.ResourceENIIP: resource.MustParse("1")}}}}},
			Status: v1.PodStatus{Phase: v1.PodRunning, PodIP: fmt.Sprintf("10.1.%d.%d", i/250, i%250+1),
				Conditions: []v1.PodCondition{{Type: v1.PodReady, Status: v1.ConditionTrue}}},
		})
	}
	client := k8sfake.NewClientset(objects...)
	factory := informers.NewSharedInformerFactory(client, 0)
	ctrl, err := controller.New(ctx, client, clb, events.NewFakeRecorder(1000), factory.Core().V1().Services(), factory.Core().V1().Pods(),
		controller.Options{ClusterID: "cls-scale"})
	if err != nil {
		t.Fatal(err)
	}
	factory.Start(ctx.Done())
	// Stop before waiting for the informers, also when the test fails.
	defer func() { cancel(); factory.Shutdown() }()
	done := make(chan error, 1)
	go func() { done <- ctrl.Run(ctx, 4) }()

	start := time.Now()
	for registered := 0; registered < pods; {
		if time.Since(start) > 60*time.Second {
			t.Fatalf("only %d of %d backends registered after 60s", registered, pods)
		}
		time.Sleep(20 * time.Millisecond)
		registered = 0
		for _, lb := range srv.Cloud().Snapshot().LoadBalancers {
			for _, l := range lb.Listeners {
				registered += len(l.Backends)
			}
		}
	}
	took := time.Since(start)
	// Let the sync that registered the last batch finish its bookkeeping.
	time.Sleep(200 * time.Millisecond)
	calls := countByAction(srv)
	writes := calls["CreateLoadBalancer"] + calls["CreateListener"] + calls["BatchRegisterTargets"] +
		calls["BatchDeregisterTargets"] + calls["BatchModifyTargetWeight"] + calls["DeleteListener"] + calls["DeleteLoadBalancer"]
	// The fewest writes: one CLB, one listener, ceil(1000/500) batches.
	minWrites := 1 + 1 + (pods+cloud.MaxBackendsPerBatch-1)/cloud.MaxBackendsPerBatch
	t.Logf("converged 1 Service x %d Pods in %s: %s", pods, took.Round(time.Millisecond), formatCalls(calls))
	t.Logf("writes %d, minimum %d (ratio %.2f); reads %d: 1 tag lookup, and polls of the %d asynchronous tasks",
		writes, minWrites, float64(writes)/float64(minWrites), total(calls)-writes, writes)
	if writes != minWrites {
		t.Errorf("%d write calls, want the minimum %d", writes, minWrites)
	}
	if calls["BatchRegisterTargets"] != 2 {
		t.Errorf("%d BatchRegisterTargets calls, want 2 (500 targets each)", calls["BatchRegisterTargets"])
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func countByAction(srv *emulator.Server) map[string]int {
	out := map[string]int{}
	for _, c := range srv.Calls() {
		out[c.Action]++
	}
	return out
}

func total(calls map[string]int) int {
	n := 0
	for _, c := range calls {
		n += c
	}
	return n
}

func formatCalls(calls map[string]int) string {
	var parts []string
	for action, n := range calls {
		parts = append(parts, fmt.Sprintf("%s=%d", action, n))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}
