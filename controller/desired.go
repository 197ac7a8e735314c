package controller

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"clb-direct/cloud"
	"clb-direct/tkeconfig"
)

// ListenerKey identifies a listener by the Service port it serves.
type ListenerKey struct {
	Protocol cloud.Protocol
	Port     int32
}

func (k ListenerKey) String() string { return fmt.Sprintf("%s:%d", k.Protocol, k.Port) }

// DesiredListener is a listener the Service needs, with the backends it
// should have.
type DesiredListener struct {
	ListenerKey
	// Name marks the listener as this Service's (see listenerName).
	Name string
	// Backends are sorted by key.
	Backends []cloud.Backend
	// Settings are the listener attributes a TkeServiceConfig declares for
	// this port; nil leaves the CLB's as they are.
	Settings *tkeconfig.L4Listener
}

// DesiredState is what the Service's CLB should look like.
type DesiredState struct {
	// Listeners are sorted by key, one per Service port.
	Listeners []DesiredListener
	// Problems are things the user must fix; each leaves something out of
	// the desired state (a port, or a Pod on a port) without failing the rest.
	Problems []string
	// Bandwidth is the outbound bandwidth cap a TkeServiceConfig declares
	// (Mbit/s); nil leaves the CLB's as it is.
	Bandwidth *int64
}

// listenerName is the name of the listener that serves a Service port. The
// Service's UID in it is how the controller recognises its own listeners: a
// listener with another name is never changed or deleted.
func listenerName(serviceUID types.UID, key ListenerKey) string {
	return fmt.Sprintf("%s%s_%d", listenerNamePrefix(serviceUID), key.Protocol, key.Port)
}

func listenerNamePrefix(serviceUID types.UID) string {
	return "clbdirect_" + string(serviceUID) + "_"
}

// buildDesiredState computes the listeners and backends of a direct-access
// Service from the Pods its selector matches. It is pure: the same inputs
// always give the same output, in the same order.
//
// A Pod is a backend of a port when it is not terminating, has an IP, is not
// on the host network, exposes the port's target port, and is either Ready
// or has ready containers and waits only on our readiness gate (that gate
// turns True only once the Pod is registered and healthy, so waiting for
// Ready would deadlock). With graceful shutdown a terminating Pod, and with
// the TKEx variant a Pod that is not ready, stays a backend with weight 0:
// no new connections, the established ones drain. Pods without an IP are
// silently skipped: they are not running yet. hostNetwork Pods and Pods
// missing a named target port are reported as problems because only the
// user can fix them.
func buildDesiredState(svc *v1.Service, cfg ServiceConfig, pods []*v1.Pod) DesiredState {
	var state DesiredState
	type candidate struct {
		pod    *v1.Pod
		weight int32
	}
	candidates := make([]candidate, 0, len(pods))
	var hostNetwork []string
	for _, pod := range pods {
		weight, ok := backendWeight(pod, cfg)
		if !ok {
			continue
		}
		if pod.Spec.HostNetwork {
			hostNetwork = append(hostNetwork, pod.Name)
			continue
		}
		candidates = append(candidates, candidate{pod: pod, weight: weight})
	}
	if len(hostNetwork) > 0 {
		slices.Sort(hostNetwork)
		state.Problems = append(state.Problems, fmt.Sprintf(
			"hostNetwork Pods cannot be registered directly (their IP is their Node's): %s", summarize(hostNetwork)))
	}

	for _, port := range svc.Spec.Ports {
		protocol, ok := listenerProtocol(port.Protocol)
		if !ok {
			state.Problems = append(state.Problems, unsupportedProtocol(port))
			continue
		}
		key := ListenerKey{Protocol: protocol, Port: port.Port}
		listener := DesiredListener{ListenerKey: key, Name: listenerName(svc.UID, key)}
		var missingPort []string
		for _, c := range candidates {
			targetPort, ok := resolveTargetPort(port, c.pod)
			if !ok {
				missingPort = append(missingPort, c.pod.Name)
				continue
			}
			listener.Backends = append(listener.Backends, cloud.Backend{
				IP: c.pod.Status.PodIP, Port: targetPort, Weight: c.weight,
			})
		}
		if len(missingPort) > 0 {
			slices.Sort(missingPort)
			state.Problems = append(state.Problems, fmt.Sprintf(
				"port %d: target port %q is not a %s container port of Pods %s",
				port.Port, port.TargetPort.String(), protocolOrTCP(port.Protocol), summarize(missingPort)))
		}
		// Two Pods with one IP (a terminating one and its successor): the
		// higher weight, the live one, wins.
		slices.SortFunc(listener.Backends, func(a, b cloud.Backend) int {
			return cmp.Or(compareBackends(a, b), cmp.Compare(b.Weight, a.Weight))
		})
		listener.Backends = slices.CompactFunc(listener.Backends, func(a, b cloud.Backend) bool { return a.Key() == b.Key() })
		state.Listeners = append(state.Listeners, listener)
	}
	slices.SortFunc(state.Listeners, func(a, b DesiredListener) int { return compareListenerKeys(a.ListenerKey, b.ListenerKey) })
	// Two Service ports cannot share a protocol and port (the API server
	// refuses it), so no two desired listeners share a key.
	return state
}

// backendWeight says whether a Pod is a backend, before looking at its
// ports, and with what weight.
func backendWeight(pod *v1.Pod, cfg ServiceConfig) (int32, bool) {
	if pod.Status.PodIP == "" || pod.Status.Phase == v1.PodSucceeded || pod.Status.Phase == v1.PodFailed {
		return 0, false
	}
	switch {
	case pod.DeletionTimestamp != nil:
		return 0, cfg.GraceShutdown
	case podReadyOrWaitingOnlyForGate(pod):
		return cfg.BackendWeight, true
	default:
		return 0, cfg.GraceShutdownTKEx
	}
}

// isBackendCandidate says whether a Pod may carry traffic, before looking at
// its ports.
func isBackendCandidate(pod *v1.Pod) bool {
	if pod.DeletionTimestamp != nil || pod.Status.PodIP == "" {
		return false
	}
	if pod.Status.Phase == v1.PodSucceeded || pod.Status.Phase == v1.PodFailed {
		return false
	}
	return podReadyOrWaitingOnlyForGate(pod)
}

// podReadyOrWaitingOnlyForGate is true for a Ready Pod, and for a Pod whose
// containers are ready and whose only unmet readiness gate is ours.
func podReadyOrWaitingOnlyForGate(pod *v1.Pod) bool {
	if podConditionTrue(pod, v1.PodReady) {
		return true
	}
	if !podConditionTrue(pod, v1.ContainersReady) {
		return false
	}
	hasOurGate := false
	for _, gate := range pod.Spec.ReadinessGates {
		if gate.ConditionType == ReadinessGate {
			hasOurGate = true
			continue
		}
		if !podConditionTrue(pod, gate.ConditionType) {
			return false
		}
	}
	return hasOurGate
}

func podConditionTrue(pod *v1.Pod, conditionType v1.PodConditionType) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == conditionType {
			return c.Status == v1.ConditionTrue
		}
	}
	return false
}

// resolveTargetPort finds the port on the Pod that a Service port sends
// traffic to: a number as is, a name through the Pod's container ports of
// the same protocol (so each Pod may use a different number). Like the
// EndpointSlice controller, a name is looked up in the containers and then in
// the sidecars (init containers with restartPolicy Always).
func resolveTargetPort(port v1.ServicePort, pod *v1.Pod) (int32, bool) {
	switch {
	case port.TargetPort.Type == intstr.String && port.TargetPort.StrVal != "":
		find := func(containers []v1.Container, sidecarsOnly bool) (int32, bool) {
			for _, c := range containers {
				if sidecarsOnly && (c.RestartPolicy == nil || *c.RestartPolicy != v1.ContainerRestartPolicyAlways) {
					continue
				}
				for _, cp := range c.Ports {
					if cp.Name == port.TargetPort.StrVal && protocolOrTCP(cp.Protocol) == protocolOrTCP(port.Protocol) {
						return cp.ContainerPort, true
					}
				}
			}
			return 0, false
		}
		if p, ok := find(pod.Spec.Containers, false); ok {
			return p, true
		}
		return find(pod.Spec.InitContainers, true)
	case port.TargetPort.IntVal != 0:
		return port.TargetPort.IntVal, true
	default:
		// The API server defaults targetPort to port; an unset one is the
		// same thing.
		return port.Port, true
	}
}

func protocolOrTCP(p v1.Protocol) v1.Protocol {
	if p == "" {
		return v1.ProtocolTCP
	}
	return p
}

// unsupportedProtocol is the problem of a Service port that no CLB
// layer-4 listener serves.
func unsupportedProtocol(port v1.ServicePort) string {
	return fmt.Sprintf("port %d: protocol %s is not supported by CLB layer-4 listeners (TCP or UDP)", port.Port, port.Protocol)
}

func listenerProtocol(p v1.Protocol) (cloud.Protocol, bool) {
	switch protocolOrTCP(p) {
	case v1.ProtocolTCP:
		return cloud.ProtocolTCP, true
	case v1.ProtocolUDP:
		return cloud.ProtocolUDP, true
	}
	return "", false
}

func compareListenerKeys(a, b ListenerKey) int {
	return cmp.Or(cmp.Compare(a.Protocol, b.Protocol), cmp.Compare(a.Port, b.Port))
}

func compareBackends(a, b cloud.Backend) int {
	return cmp.Or(cmp.Compare(a.IP, b.IP), cmp.Compare(a.InstanceID, b.InstanceID), cmp.Compare(a.Port, b.Port))
}

// summarize lists names for a message, cutting long lists short so an event
// stays readable.
func summarize(names []string) string {
	const max = 5
	if len(names) <= max {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:max], ", "), len(names)-max)
}
