package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"clb-direct/readiness"
	"clb-direct/test/env"
)

func gateCondition(p *corev1.Pod) *corev1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == readiness.GateConditionType {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

// Bound: 10 new Pods get the gate from the webhook (called by the API server
// over TLS), and each turns True only after the CLB reported it healthy,
// within the poll interval (1 s) plus 1 s of that report; all within 60 s.
func TestReadinessGateFollowsCLBHealth(t *testing.T) {
	f := newFixture(t, env.ControllerOptions{})
	const replicas = 10
	f.createDeployment("web", replicas)
	f.createService("web", direct)

	healthyAt := map[string]time.Time{} // pod IP → first seen healthy on the CLB
	trueAt := map[string]time.Time{}    // pod IP → first seen gate True
	var violations []string
	f.waitFor(60*time.Second, "all Pods with the gate True", func() (bool, string) {
		now := time.Now()
		view := f.clb("web")
		if lb, ok := f.loadBalancer(view.id); ok {
			for _, l := range lb.Listeners {
				for _, b := range l.Backends {
					if _, seen := healthyAt[b.IP]; b.Healthy && !seen {
						healthyAt[b.IP] = now
					}
				}
			}
		}
		pods, err := e.Admin.CoreV1().Pods(f.ns).List(f.ctx, metav1.ListOptions{LabelSelector: labels.Set{"app": "web"}.String()})
		if err != nil {
			return false, err.Error()
		}
		var states []string
		for _, p := range pods.Items {
			c := gateCondition(&p)
			if c == nil {
				states = append(states, p.Name+": no gate condition")
				continue
			}
			states = append(states, fmt.Sprintf("%s: %s %s", p.Name, c.Status, c.Reason))
			if _, seen := trueAt[p.Status.PodIP]; c.Status == corev1.ConditionTrue && !seen {
				trueAt[p.Status.PodIP] = now
				if _, healthy := healthyAt[p.Status.PodIP]; !healthy {
					violations = append(violations, p.Name+" turned True before the CLB reported it healthy")
				}
				if c.Reason != readiness.ReasonReady || !strings.Contains(c.Message, view.id) {
					violations = append(violations, fmt.Sprintf("%s: reason %q message %q, want %s naming %s", p.Name, c.Reason, c.Message, readiness.ReasonReady, view.id))
				}
			}
		}
		return len(trueAt) == replicas, strings.Join(states, "; ")
	})
	for _, v := range violations {
		t.Error(v)
	}
	var delays []time.Duration
	for ip, at := range trueAt {
		delays = append(delays, at.Sub(healthyAt[ip]))
	}
	slices.Sort(delays)
	t.Logf("CLB healthy → gate True: %v (sampled every ~100 ms)", delays)
	if max := delays[len(delays)-1]; max > 2*time.Second {
		t.Errorf("gate turned True %s after the CLB reported healthy, want under poll interval + 1 s", max)
	}

	pods, err := e.Admin.CoreV1().Pods(f.ns).List(f.ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if n := countGates(&p); n != 1 {
			t.Errorf("Pod %s has the gate %d times, want exactly 1 (injected by the webhook)", p.Name, n)
		}
		if !podReady(&p) {
			t.Errorf("Pod %s is not Ready although its gate is True", p.Name)
		}
	}
}

// Bound: a Pod whose target port does not serve is registered, reported
// failing the health check with the port and listener, stays NotReady, and
// gets the timeout Warning event within --readiness-timeout (5 s) + 15 s.
func TestUnhealthyPodStaysNotReadyAndIsReported(t *testing.T) {
	f := newFixture(t, env.ControllerOptions{Args: []string{"--readiness-timeout", "5s"}})
	f.createDeployment("web", 1)
	f.createService("web", direct, func(s *corev1.Service) { s.Spec.Ports[0].TargetPort = intstr.FromInt32(9999) })

	var pod corev1.Pod
	f.waitFor(30*time.Second, "the gate says the health check fails", func() (bool, string) {
		pods, err := e.Admin.CoreV1().Pods(f.ns).List(f.ctx, metav1.ListOptions{})
		if err != nil || len(pods.Items) != 1 {
			return false, fmt.Sprintf("pods %v err %v", len(pods.Items), err)
		}
		pod = pods.Items[0]
		c := gateCondition(&pod)
		if c == nil {
			return false, "no gate condition yet"
		}
		ok := c.Status == corev1.ConditionFalse && c.Reason == readiness.ReasonUnhealthy && strings.Contains(c.Message, ":9999")
		return ok, fmt.Sprintf("%s %s: %s", c.Status, c.Reason, c.Message)
	})
	if podReady(&pod) {
		t.Errorf("Pod %s is Ready although the CLB health check fails", pod.Name)
	}
	f.waitFor(20*time.Second, "a Warning event on the Pod saying what to check", func() (bool, string) {
		evs, err := e.Admin.EventsV1().Events(f.ns).List(f.ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		var seen []string
		for _, ev := range evs.Items {
			if ev.Regarding.Name == pod.Name && ev.Reason == readiness.ReasonTimeout && ev.Type == corev1.EventTypeWarning &&
				strings.Contains(ev.Note, "security group") {
				return true, ""
			}
			seen = append(seen, ev.Regarding.Name+"/"+ev.Reason)
		}
		return false, fmt.Sprintf("events: %v", seen)
	})
	time.Sleep(2 * time.Second)
	p, err := e.Admin.CoreV1().Pods(f.ns).Get(f.ctx, pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if podReady(p) {
		t.Errorf("Pod %s turned Ready although the CLB health check still fails", p.Name)
	}
}
