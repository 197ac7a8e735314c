package controller

import (
	"fmt"
	"slices"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"

	"clb-direct/cloud"
)

// providerIDScheme is the scheme of TKE Nodes' spec.providerID.
const providerIDScheme = "qcloud://"

// buildClassicDesiredState computes the listeners and backends of a Service
// in classic mode, where the CLB forwards to the Nodes' NodePorts and
// kube-proxy takes it from there. Listeners are the same as in direct
// access (same keys, same names), so switching modes only swaps backends.
//
// A Node is a backend when it can take traffic: schedulable, Ready, not
// being deleted, and not labelled node.kubernetes.io/exclude-from-external-load-balancers
// (any value, as the Kubernetes service controller reads it). With
// externalTrafficPolicy Local only the Nodes in readyEndpointNodes qualify:
// kube-proxy drops traffic on the others to keep the client source IP.
// Nodes are registered by instance ID, on each port's nodePort, with the
// Service's backend weight.
//
// A qualifying Node whose providerID names no instance, and a port without
// a nodePort (allocateLoadBalancerNodePorts false), are problems: only the
// user can fix them, and they leave out that Node or that port. Like
// buildDesiredState it is pure and its output sorted.
func buildClassicDesiredState(svc *v1.Service, cfg ServiceConfig, nodes []*v1.Node, readyEndpointNodes sets.Set[string]) DesiredState {
	var state DesiredState
	local := svc.Spec.ExternalTrafficPolicy == v1.ServiceExternalTrafficPolicyLocal

	var instanceIDs, noInstance []string
	for _, node := range nodes {
		if !nodeTakesTraffic(node) || (local && !readyEndpointNodes.Has(node.Name)) {
			continue
		}
		id, ok := instanceIDFromProviderID(node.Spec.ProviderID)
		if !ok {
			noInstance = append(noInstance, node.Name)
			continue
		}
		instanceIDs = append(instanceIDs, id)
	}
	if len(noInstance) > 0 {
		slices.Sort(noInstance)
		state.Problems = append(state.Problems, fmt.Sprintf(
			"Nodes without a CVM instance in spec.providerID (want %s/<zone>/ins-...) cannot be registered: %s",
			providerIDScheme, summarize(noInstance)))
	}
	// Two Node objects for one instance (a Node re-registered under a new
	// name) are one backend.
	slices.Sort(instanceIDs)
	instanceIDs = slices.Compact(instanceIDs)

	for _, port := range svc.Spec.Ports {
		protocol, ok := listenerProtocol(port.Protocol)
		if !ok {
			state.Problems = append(state.Problems, unsupportedProtocol(port))
			continue
		}
		if port.NodePort == 0 {
			state.Problems = append(state.Problems, fmt.Sprintf(
				"port %d: no nodePort is allocated (spec.allocateLoadBalancerNodePorts is false), "+
					"and without direct access the load balancer forwards to Nodes' NodePorts", port.Port))
			continue
		}
		key := ListenerKey{Protocol: protocol, Port: port.Port}
		listener := DesiredListener{ListenerKey: key, Name: listenerName(svc.UID, key)}
		for _, id := range instanceIDs {
			listener.Backends = append(listener.Backends, cloud.Backend{
				InstanceID: id, Port: port.NodePort, Weight: cfg.BackendWeight,
			})
		}
		// instanceIDs are sorted and the port is one: the backends already
		// are in compareBackends order.
		state.Listeners = append(state.Listeners, listener)
	}
	slices.SortFunc(state.Listeners, func(a, b DesiredListener) int { return compareListenerKeys(a.ListenerKey, b.ListenerKey) })
	return state
}

// nodeTakesTraffic says whether a Node may be a classic-mode backend.
func nodeTakesTraffic(node *v1.Node) bool {
	if node.Spec.Unschedulable || node.DeletionTimestamp != nil {
		return false
	}
	if _, excluded := node.Labels[v1.LabelNodeExcludeBalancers]; excluded {
		return false
	}
	for _, c := range node.Status.Conditions {
		if c.Type == v1.NodeReady {
			return c.Status == v1.ConditionTrue
		}
	}
	return false
}

// instanceIDFromProviderID extracts the CVM instance ID from a TKE Node's
// spec.providerID, "qcloud:///<zone-id>/ins-xxxxxxxx". The instance is the
// last path segment; the zone is not needed to register it. Anything else
// (another cloud's ID, an empty one, a path not ending in an instance ID)
// is not ours to guess at.
func instanceIDFromProviderID(providerID string) (string, bool) {
	rest, ok := strings.CutPrefix(providerID, providerIDScheme)
	if !ok {
		return "", false
	}
	id := rest[strings.LastIndexByte(rest, '/')+1:]
	suffix, ok := strings.CutPrefix(id, "ins-")
	if !ok || suffix == "" {
		return "", false
	}
	for _, r := range suffix {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9') {
			return "", false
		}
	}
	return id, true
}

// readyEndpointNodes names the Nodes that host a ready endpoint among pods,
// the Nodes an externalTrafficPolicy Local Service may send traffic to. A
// Pod counts when isBackendCandidate says so: like direct access, a Pod
// waiting only on our readiness gate counts, or a gate left over from direct
// access could never pass (the CLB's health check on the NodePort keeps
// traffic away from it until kube-proxy serves it).
func readyEndpointNodes(pods []*v1.Pod) sets.Set[string] {
	nodes := sets.New[string]()
	for _, pod := range pods {
		if pod.Spec.NodeName != "" && isBackendCandidate(pod) {
			nodes.Insert(pod.Spec.NodeName)
		}
	}
	return nodes
}
