// Package readiness drives the readiness gate of direct-access Pods: a Pod
// carrying the gate becomes Ready only once the CLB reports it healthy on
// every listener whose Service selects it, so a rolling update never
// removes old Pods before the load balancer sends traffic to new ones.
package readiness

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	v1 "k8s.io/api/core/v1"

	"clb-direct/cloud"
)

// GateConditionType is the condition TKE's readiness gate uses; Pods list
// it in spec.readinessGates.
const GateConditionType v1.PodConditionType = "cloud.tencent.com/load-balancer-backendgroup-ready"

// Reasons of the gate condition.
const (
	// ReasonReady: registered and healthy on every listener (TKE's reason).
	ReasonReady = "LoadBalancerNetworkGroupReady"
	// ReasonNotSelected: no direct-access Service selects the Pod, so
	// nothing can make it more ready than its containers.
	ReasonNotSelected = "NoDirectAccessService"
	// ReasonNotRegistered: a listener does not have the Pod yet.
	ReasonNotRegistered = "LoadBalancerNotRegistered"
	// ReasonUnhealthy: registered, but the CLB's health check does not pass.
	ReasonUnhealthy = "LoadBalancerHealthCheckFailing"
)

// Target is one listener the Pod must be registered and healthy on.
type Target struct {
	LoadBalancerID string
	// ListenerID is empty while the listener does not exist yet.
	ListenerID string
	// Listener is "TCP:80", for people.
	Listener string
	// Service is namespace/name of the Service that wants the Pod there.
	Service string
	IP      string
	Port    int32
	// Registered says the CLB has the Pod on the listener.
	Registered bool
	// HealthCheck describes the check ("TCP", "HTTP GET /healthz"), for
	// messages telling the user what to look at.
	HealthCheck string
}

// Expectation is what the controller knows of a Pod: which direct-access
// Services select it and where each wants it.
type Expectation struct {
	Services []string
	// Targets are every listener the Pod should be on; a Service that
	// selects the Pod but wants it on no listener (no matching port) leaves
	// it with no target, which keeps the gate False.
	Targets []Target
}

// Source is the controller's side: it computes expectations from the same
// desired state it registers.
type Source interface {
	Expect(pod *v1.Pod) Expectation
	// HasSynced reports whether the caches Expect reads are synced: before
	// that, a Pod would look selected by no Service and pass its gate.
	HasSynced() bool
}

// HealthKey identifies a backend's health report.
type HealthKey struct {
	LoadBalancerID, ListenerID, IP string
	Port                           int32
}

func healthKeyOf(h cloud.BackendHealth) HealthKey {
	return HealthKey{LoadBalancerID: h.LoadBalancerID, ListenerID: h.ListenerID, IP: h.IP, Port: h.Port}
}

func healthKeyFor(t Target) HealthKey {
	return HealthKey{LoadBalancerID: t.LoadBalancerID, ListenerID: t.ListenerID, IP: t.IP, Port: t.Port}
}

// Verdict is the condition the gate should have.
type Verdict struct {
	Status  v1.ConditionStatus
	Reason  string
	Message string
}

// evaluate decides the gate of a Pod from what the controller expects and
// what the CLB's health check says. It is pure; messages carry no times so
// that an unchanged situation never needs a new patch.
func evaluate(exp Expectation, health map[HealthKey]cloud.BackendHealth) Verdict {
	if len(exp.Services) == 0 {
		return Verdict{Status: v1.ConditionTrue, Reason: ReasonNotSelected,
			Message: "no direct-access Service selects this Pod; the gate has nothing to wait for"}
	}
	if len(exp.Targets) == 0 {
		return Verdict{Status: v1.ConditionFalse, Reason: ReasonNotRegistered,
			Message: fmt.Sprintf("selected by %s but on none of its CLB listeners (does the Pod expose the Service's target ports?)", strings.Join(exp.Services, ", "))}
	}
	targets := slices.Clone(exp.Targets)
	slices.SortFunc(targets, func(a, b Target) int {
		// A total order: targets of two Services can tie on the rest (two
		// CLBs not created yet, both on TCP:80), and the message must not
		// depend on the order the controller found the Services in.
		return cmp.Or(cmp.Compare(a.LoadBalancerID, b.LoadBalancerID), cmp.Compare(a.Listener, b.Listener), cmp.Compare(a.Port, b.Port),
			cmp.Compare(a.Service, b.Service), cmp.Compare(a.ListenerID, b.ListenerID), cmp.Compare(a.IP, b.IP))
	})
	var unregistered, unhealthy []string
	for _, t := range targets {
		if !t.Registered || t.ListenerID == "" {
			unregistered = append(unregistered, fmt.Sprintf("%s listener %s (Service %s)", clbName(t), t.Listener, t.Service))
			continue
		}
		h, reported := health[healthKeyFor(t)]
		if !reported || !h.Healthy {
			detail := "no report yet"
			if reported && h.Detail != "" {
				detail = h.Detail
			} else if reported {
				detail = "unhealthy"
			}
			unhealthy = append(unhealthy, fmt.Sprintf("%s listener %s (%s) → %s:%d, %s check: %s",
				clbName(t), t.Listener, t.ListenerID, t.IP, t.Port, orDefault(t.HealthCheck, "TCP"), detail))
		}
	}
	switch {
	case len(unregistered) > 0:
		return Verdict{Status: v1.ConditionFalse, Reason: ReasonNotRegistered,
			Message: "not yet registered on " + strings.Join(unregistered, "; ")}
	case len(unhealthy) > 0:
		return Verdict{Status: v1.ConditionFalse, Reason: ReasonUnhealthy,
			Message: "registered, health check not passing on " + strings.Join(unhealthy, "; ")}
	}
	var on []string
	for _, t := range targets {
		on = append(on, fmt.Sprintf("%s listener %s (%s)", clbName(t), t.Listener, t.ListenerID))
	}
	return Verdict{Status: v1.ConditionTrue, Reason: ReasonReady, Message: "registered and healthy on " + strings.Join(slices.Compact(on), "; ")}
}

func clbName(t Target) string {
	if t.LoadBalancerID == "" {
		return "the Service's CLB (not created yet)"
	}
	return "CLB " + t.LoadBalancerID
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// hasGate reports whether the Pod declares our readiness gate.
func hasGate(pod *v1.Pod) bool {
	return slices.ContainsFunc(pod.Spec.ReadinessGates, func(g v1.PodReadinessGate) bool { return g.ConditionType == GateConditionType })
}

// gateCondition returns the Pod's gate condition, if any.
func gateCondition(pod *v1.Pod) *v1.PodCondition {
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == GateConditionType {
			return &pod.Status.Conditions[i]
		}
	}
	return nil
}

// pending reports whether the worker still has to decide the Pod's gate:
// it has the gate, the gate is not True, and the Pod is not going away.
// Once True the gate stays True for the Pod's life: after that, the
// kubelet's readiness probe is what takes a sick Pod out of rotation.
func pending(pod *v1.Pod) bool {
	if !hasGate(pod) || pod.DeletionTimestamp != nil {
		return false
	}
	c := gateCondition(pod)
	return c == nil || c.Status != v1.ConditionTrue
}
