package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"clb-direct/controller"
	"clb-direct/readiness"
	"clb-direct/test/env"
)

var direct = map[string]string{controller.AnnotationDirectAccess: "true"}

// Bound: the CLB and every Pod registered within 30 s; traffic reaches all
// Pods; scaling converges within 30 s each way.
func TestServiceGetsCLBAndTrafficReachesPods(t *testing.T) {
	f := newFixture(t, env.ControllerOptions{})
	f.createDeployment("web", 3)
	f.createService("web", direct)
	took := f.expectBackends("web", "web", 3, 30*time.Second)
	t.Logf("3 Pods registered in %s", took)

	view := f.clb("web")
	svc := f.service("web")
	if len(svc.Status.LoadBalancer.Ingress) != 1 || svc.Status.LoadBalancer.Ingress[0].IP != view.vip {
		t.Errorf("status ingress %v, want the CLB VIP %q", svc.Status.LoadBalancer.Ingress, view.vip)
	}
	if !slices.Contains(svc.Finalizers, controller.Finalizer) {
		t.Errorf("finalizer missing: %v", svc.Finalizers)
	}
	seen := map[string]bool{}
	f.waitFor(30*time.Second, "requests through the VIP reach all 3 Pods", func() (bool, string) {
		name, err := httpGet(vipAddr(view))
		if err == nil {
			seen[name] = true
		}
		return len(seen) == 3, fmt.Sprintf("reached %v (last error %v)", seen, err)
	})

	f.scale("web", 6)
	took = f.expectBackends("web", "web", 6, 30*time.Second)
	t.Logf("scale 3→6 converged in %s", took)
	f.scale("web", 2)
	took = f.expectBackends("web", "web", 2, 30*time.Second)
	t.Logf("scale 6→2 converged in %s", took)
}

// Bound: converges within 30 s when run with the in-cluster environment
// (service-account token and CA at the fixed paths, KUBERNETES_SERVICE_*).
func TestInClusterMode(t *testing.T) {
	f := newFixture(t, env.ControllerOptions{InCluster: true})
	f.createDeployment("web", 2)
	f.createService("web", direct)
	took := f.expectBackends("web", "web", 2, 30*time.Second)
	t.Logf("in-cluster controller registered 2 Pods in %s", took)
}

// rollout replaces every Pod of a 10-replica Deployment (maxUnavailable 0)
// under continuous load through the CLB, and reports how long it took, the
// requests served and failed, and the fewest healthy backends the CLB had.
func rollout(t *testing.T, f *fixture) (took time.Duration, ok, failed int64, errs []string, minHealthy int) {
	f.createDeployment("web", 10, func(d *appsv1.Deployment) {
		d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType, RollingUpdate: &appsv1.RollingUpdateDeployment{
			MaxUnavailable: ptr.To(intstr.FromInt32(0)), MaxSurge: ptr.To(intstr.FromInt32(2)),
		}}
	})
	f.createService("web", direct)
	f.expectBackends("web", "web", 10, 60*time.Second)
	view := f.clb("web")
	f.waitFor(30*time.Second, "all 10 backends healthy", func() (bool, string) {
		v := f.clb("web")
		return v.healthy["TCP:80"] == 10, v.String()
	})

	f.waitForTraffic(vipAddr(view))
	l := startLoad(vipAddr(view), 4)
	fewestHealthy := f.sampleHealthy("web")
	start := time.Now()
	patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{"rollout":"%d"}}}}}`, time.Now().UnixNano())
	if _, err := e.Admin.AppsV1().Deployments(f.ns).Patch(f.ctx, "web", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	f.waitFor(180*time.Second, "rollout complete", func() (bool, string) {
		d, err := e.Admin.AppsV1().Deployments(f.ns).Get(f.ctx, "web", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		s := d.Status
		done := d.Generation == s.ObservedGeneration && s.UpdatedReplicas == 10 && s.AvailableReplicas == 10 && s.Replicas == 10
		return done, fmt.Sprintf("%+v", s)
	})
	took = time.Since(start)
	f.expectBackends("web", "web", 10, 30*time.Second)
	time.Sleep(time.Second) // requests in flight during the last changes
	minHealthy = fewestHealthy()
	ok, failed, errs = l.finish()
	if ok == 0 {
		t.Errorf("no request succeeded: the load generator did not run")
	}
	return took, ok, failed, errs, minHealthy
}

// Bound: with the readiness gate (the default), the 10-replica rollout
// completes within 180 s with zero failed requests, and every sample of the
// CLB shows a healthy backend. Without the gate the same rollout is faster
// by about the CLB health-check time, and may fail requests: both figures
// are printed, only the gated run is held to zero failures.
func TestRollingUpdateUnderLoad(t *testing.T) {
	var gated, ungated time.Duration
	t.Run("with readiness gate", func(t *testing.T) {
		f := newFixture(t, env.ControllerOptions{})
		took, ok, failed, errs, minHealthy := rollout(t, f)
		gated = took
		t.Logf("with gate: rollout of 10 replicas took %s; requests ok %d, failed %d; fewest healthy backends %d", took, ok, failed, minHealthy)
		if failed != 0 {
			t.Errorf("%d requests failed during the rollout: %v", failed, errs)
		}
		if minHealthy == 0 {
			t.Errorf("the CLB had no healthy backend at some moment of the rollout")
		}
		pods, err := e.Admin.CoreV1().Pods(f.ns).List(f.ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pods.Items {
			if n := countGates(&p); n != 1 {
				t.Errorf("Pod %s has the readiness gate %d times, want 1", p.Name, n)
			}
		}
	})
	t.Run("without readiness gate", func(t *testing.T) {
		f := newFixture(t, env.ControllerOptions{NoWebhook: true})
		took, ok, failed, _, minHealthy := rollout(t, f)
		ungated = took
		t.Logf("without gate: rollout of 10 replicas took %s; requests ok %d, failed %d; fewest healthy backends %d", took, ok, failed, minHealthy)
	})
	if gated > 0 && ungated > 0 {
		t.Logf("rollout with gate %s, without %s: the gate costs %s (the CLB health check: 3 probes at the scaled 500 ms interval per surge step)",
			gated.Round(time.Millisecond), ungated.Round(time.Millisecond), (gated - ungated).Round(time.Millisecond))
	}
}

func countGates(p *corev1.Pod) int {
	n := 0
	for _, g := range p.Spec.ReadinessGates {
		if g.ConditionType == readiness.GateConditionType {
			n++
		}
	}
	return n
}

// Bound: cleanup (targets, listener, CLB, finalizer) within 30 s for each
// way a Service stops wanting a CLB. (Turning direct access off switches
// the Service to the classic mode instead: TestSwitchModesUnderLoad.)
func TestServiceThatStopsWantingCLBIsCleanedUp(t *testing.T) {
	f := newFixture(t, env.ControllerOptions{})
	f.createDeployment("web", 2)
	for _, tc := range []struct {
		name   string
		mutate func(*corev1.Service)
		remove bool
	}{
		{name: "type ClusterIP", mutate: func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeClusterIP
			for i := range s.Spec.Ports {
				s.Spec.Ports[i].NodePort = 0
			}
			s.Spec.AllocateLoadBalancerNodePorts = nil
			s.Spec.ExternalTrafficPolicy = ""
		}},
		{name: "deleted", remove: true},
	} {
		f.createService("web", map[string]string{controller.AnnotationDirectAccess: "true"})
		f.expectBackends("web", "web", 2, 30*time.Second)
		lbID := f.clb("web").id
		if tc.remove {
			if err := e.Admin.CoreV1().Services(f.ns).Delete(f.ctx, "web", metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		} else {
			f.updateService("web", tc.mutate)
		}
		took := f.waitFor(30*time.Second, tc.name+": CLB and finalizer gone", func() (bool, string) {
			if lb, ok := f.loadBalancer(lbID); ok {
				return false, fmt.Sprintf("CLB %s still has %d listeners", lbID, len(lb.Listeners))
			}
			svc, err := e.Admin.CoreV1().Services(f.ns).Get(f.ctx, "web", metav1.GetOptions{})
			if tc.remove {
				return err != nil, "Service still there (finalizer not removed)"
			}
			if err != nil {
				return false, err.Error()
			}
			clean := !slices.Contains(svc.Finalizers, controller.Finalizer) && svc.Annotations[controller.AnnotationLoadBalancerID] == "" && len(svc.Status.LoadBalancer.Ingress) == 0
			return clean, fmt.Sprintf("finalizers %v annotations %v ingress %v", svc.Finalizers, svc.Annotations, svc.Status.LoadBalancer.Ingress)
		})
		t.Logf("%s: cleaned up in %s", tc.name, took)
		if !tc.remove {
			if err := e.Admin.CoreV1().Services(f.ns).Delete(f.ctx, "web", metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			f.waitFor(10*time.Second, "Service deleted", func() (bool, string) {
				_, err := e.Admin.CoreV1().Services(f.ns).Get(f.ctx, "web", metav1.GetOptions{})
				return err != nil, "still there"
			})
		}
	}
}

// Bound: the Warning event within 15 s; the CLB unchanged 3 s after a Pod
// change that would otherwise have been applied.
func TestInvalidAnnotationWarnsAndChangesNothing(t *testing.T) {
	f := newFixture(t, env.ControllerOptions{})
	f.createDeployment("web", 2)
	f.createService("web", direct)
	f.expectBackends("web", "web", 2, 30*time.Second)
	before := f.clb("web")

	f.updateService("web", func(s *corev1.Service) { s.Annotations[controller.AnnotationDirectAccess] = "yes" })
	f.scale("web", 4)
	f.waitFor(15*time.Second, "a Warning event naming the annotation", func() (bool, string) {
		evs, err := e.Admin.EventsV1().Events(f.ns).List(f.ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		var reasons []string
		for _, ev := range evs.Items {
			if ev.Regarding.Name == "web" && ev.Reason == controller.ReasonInvalidConfig && ev.Type == corev1.EventTypeWarning &&
				strings.Contains(ev.Note, controller.AnnotationDirectAccess) {
				return true, ""
			}
			reasons = append(reasons, ev.Reason)
		}
		return false, fmt.Sprintf("events seen: %v", reasons)
	})
	f.waitFor(30*time.Second, "4 Pods ready", func() (bool, string) {
		n := len(f.registrablePodEndpoints("web"))
		return n == 4, fmt.Sprintf("%d ready", n)
	})
	time.Sleep(3 * time.Second)
	if after := f.clb("web"); after.backends() != before.backends() {
		t.Errorf("the CLB changed under an invalid annotation:\n before %s\n after  %s", before, after)
	}
	// Fixing the annotation applies what was held back.
	f.updateService("web", func(s *corev1.Service) { s.Annotations[controller.AnnotationDirectAccess] = "true" })
	f.expectBackends("web", "web", 4, 30*time.Second)
}

// Bound: after a SIGKILL in the middle of a scale-up (some new Pods
// registered, not all) and a restart, the CLB matches the Pods within 30 s
// of the kill (the new process waits out the dead one's lease first).
func TestControllerKilledMidRolloutConverges(t *testing.T) {
	f := newFixture(t, env.ControllerOptions{})
	f.createDeployment("web", 2)
	f.createService("web", direct)
	f.expectBackends("web", "web", 2, 30*time.Second)

	f.scale("web", 12)
	partial := 0
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if n := len(f.clb("web").listeners["TCP:80"]); n > 2 && n < 12 {
			partial = n
			break
		}
	}
	killed := time.Now()
	f.ctrl.Kill()
	t.Logf("killed the controller with %d of 12 backends registered", partial)
	f.ctrl = f.startController(env.ControllerOptions{Name: f.ns + "-restarted"})
	f.expectBackends("web", "web", 12, 30*time.Second)
	t.Logf("converged %s after the kill", time.Since(killed).Round(time.Millisecond))
	if partial == 0 {
		t.Log("the scale-up finished before a partial state could be caught; the restart still had to take over cleanly")
	}
}

// Bound: with two replicas exactly one leads; after the leader is killed
// the other takes over and applies a change in under 20 s.
func TestLeaderElectionFailover(t *testing.T) {
	f := newFixture(t, env.ControllerOptions{})
	standby := f.startController(env.ControllerOptions{Name: f.ns + "-standby"})
	t.Cleanup(func() {
		// Once it took over, the fixture's cleanup needs it and stops it.
		if f.ctrl != standby {
			standby.Stop(30 * time.Second)
		}
	})
	f.createDeployment("web", 2)
	f.createService("web", direct)
	f.expectBackends("web", "web", 2, 30*time.Second)

	leader, err := e.Admin.CoordinationV1().Leases(env.ControllerNamespace).Get(f.ctx, "clb-direct", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(env.Tail(standby.LogPath, 1000), "Became leader") {
		t.Fatalf("both replicas lead; lease holder %q", ptr.Deref(leader.Spec.HolderIdentity, ""))
	}
	// Each replica's /metrics says which one leads, and the leader's what
	// it did.
	f.expectMetric(f.ctrl, "clbdirect_leader", "= 1", equal(1))
	f.expectMetric(standby, "clbdirect_leader", "= 0", equal(0))
	f.expectMetric(f.ctrl, `clbdirect_cloud_api_calls_total{action="BatchRegisterTargets",result="ok"}`, "> 0", positive)
	f.expectMetric(f.ctrl, `clbdirect_cloud_backends_total{operation="register"}`, "> 0", positive)
	f.expectMetric(f.ctrl, `workqueue_adds_total{name="clb-direct"}`, "> 0", positive)
	f.expectMetric(f.ctrl, `clbdirect_sync_duration_seconds_count{result="ok"}`, "> 0", positive)
	f.expectMetric(f.ctrl, "clbdirect_backend_registration_latency_seconds_count", "> 0", positive)

	start := time.Now()
	f.ctrl.Kill()
	f.scale("web", 4)
	f.expectBackends("web", "web", 4, 20*time.Second)
	took := time.Since(start)
	t.Logf("standby took over and applied a scale-up %s after the leader was killed", took)
	if took > 20*time.Second {
		t.Errorf("failover took %s, want under 20s", took)
	}
	f.expectMetric(standby, "clbdirect_leader", "= 1", equal(1))
	f.ctrl = standby
}
