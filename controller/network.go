package controller

import (
	"fmt"
	"strconv"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/version"
)

// NetworkMode is the container network a Pod runs in. It decides whether the
// CLB can reach the Pod's IP at all: an ENI IP (VPC-CNI) is a VPC address the
// CLB reaches natively, a GlobalRouter Pod IP is reachable only when the
// cluster has opted in and routes and security groups allow it.
type NetworkMode string

const (
	NetworkModeVPCCNI       NetworkMode = "VPC-CNI"
	NetworkModeGlobalRouter NetworkMode = "GlobalRouter"
)

// Signals TKE uses to put a Pod on an ENI (VPC-CNI mode).
const (
	// ResourceENIIP is the extended resource a VPC-CNI (route ENI, shared)
	// Pod requests; TKE's webhook adds it to Pods that ask for the mode.
	ResourceENIIP v1.ResourceName = "tke.cloud.tencent.com/eni-ip"
	// ResourceDirectENI is the extended resource of the exclusive ENI
	// variant (one ENI per Pod).
	ResourceDirectENI v1.ResourceName = "tke.cloud.tencent.com/direct-eni"
	// AnnotationPodNetworks lists the networks a Pod attaches to (TKE's
	// multus-style annotation), e.g. "tke-route-eni" or
	// "tke-direct-eni,flannel".
	AnnotationPodNetworks = "tke.cloud.tencent.com/networks"
	// NetworkRouteENI and NetworkDirectENI are the network names in
	// AnnotationPodNetworks that mean VPC-CNI.
	NetworkRouteENI  = "tke-route-eni"
	NetworkDirectENI = "tke-direct-eni"
)

// The ConfigMap by which a cluster opts in to direct access for
// GlobalRouter Pods.
const (
	ServiceControllerConfigNamespace = "kube-system"
	ServiceControllerConfigName      = "tke-service-controller-config"
	GlobalRouteDirectAccessKey       = "GlobalRouteDirectAccess"
)

// podNetworkMode tells which container network a Pod runs in, from what TKE
// itself looks at when it wires the Pod:
//
//   - the extended resource tke.cloud.tencent.com/eni-ip (shared ENI) or
//     tke.cloud.tencent.com/direct-eni (exclusive ENI) in the requests or
//     limits of any container or init container;
//   - the annotation tke.cloud.tencent.com/networks naming tke-route-eni or
//     tke-direct-eni among its networks.
//
// Either makes the Pod VPC-CNI. Everything else is GlobalRouter, the
// cluster's default network. The resource is the stronger signal (the ENI
// IPAM allocates by it), the annotation covers Pods created before the
// webhook added the resource. Network names are matched whole, so that
// "tke-bridge" or a name merely containing "tke-route-eni" does not count.
// hostNetwork Pods are reported as GlobalRouter too: they are no ENI Pods,
// and callers exclude them before asking (see checkNetworkModes).
func podNetworkMode(pod *v1.Pod) NetworkMode {
	hasENIResource := func(containers []v1.Container) bool {
		for _, c := range containers {
			for _, list := range []v1.ResourceList{c.Resources.Requests, c.Resources.Limits} {
				if _, ok := list[ResourceENIIP]; ok {
					return true
				}
				if _, ok := list[ResourceDirectENI]; ok {
					return true
				}
			}
		}
		return false
	}
	if hasENIResource(pod.Spec.Containers) || hasENIResource(pod.Spec.InitContainers) {
		return NetworkModeVPCCNI
	}
	// The value is a comma-separated list of names, possibly
	// "namespace/name" or "name@interface", or a JSON list of objects with a
	// "name": splitting on everything a network name cannot contain finds
	// the names in each form.
	networks := strings.FieldsFunc(pod.Annotations[AnnotationPodNetworks], func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.')
	})
	for _, n := range networks {
		if n == NetworkRouteENI || n == NetworkDirectENI {
			return NetworkModeVPCCNI
		}
	}
	return NetworkModeGlobalRouter
}

// checkNetworkModes counts the network modes of the Pods that could become
// backends and says whether direct access may proceed.
//
// blocked is true when GlobalRouter Pods exist but the cluster has not
// opted in (globalRouterAllowed false): the CLB could not reach them, so the
// caller must leave the CLB as it is and warn with problem rather than
// register unreachable backends. A mix of VPC-CNI and GlobalRouter Pods is a
// problem but does not block: TKE supports one network mode per workload,
// and the user must fix the workload, but the Pods themselves may work.
//
// Only Pods buildDesiredState could register count: with an IP, not
// finished, not on the host network (those are reported there). Terminating
// Pods count, since grace shutdown keeps them registered while they drain.
func checkNetworkModes(pods []*v1.Pod, globalRouterAllowed bool) (modes map[NetworkMode]int, problem string, blocked bool) {
	modes = make(map[NetworkMode]int)
	for _, pod := range pods {
		if pod.Status.PodIP == "" || pod.Spec.HostNetwork ||
			pod.Status.Phase == v1.PodSucceeded || pod.Status.Phase == v1.PodFailed {
			continue
		}
		modes[podNetworkMode(pod)]++
	}
	var problems []string
	if n := modes[NetworkModeGlobalRouter]; n > 0 && !globalRouterAllowed {
		blocked = true
		problems = append(problems, fmt.Sprintf(
			"%d Pod(s) run in GlobalRouter mode, which direct access supports only once the cluster opts in: "+
				"set %s: \"true\" in ConfigMap %s/%s, open the Pod ports in the security groups, "+
				"and route the VPC to the Pod CIDRs (CCN is recommended); the load balancer is left unchanged until then",
			n, GlobalRouteDirectAccessKey, ServiceControllerConfigNamespace, ServiceControllerConfigName))
	}
	if modes[NetworkModeVPCCNI] > 0 && modes[NetworkModeGlobalRouter] > 0 {
		problems = append(problems, fmt.Sprintf(
			"the Service's Pods mix network modes (%d VPC-CNI, %d GlobalRouter): a workload runs in exactly one network mode",
			modes[NetworkModeVPCCNI], modes[NetworkModeGlobalRouter]))
	}
	return modes, strings.Join(problems, "; "), blocked
}

// globalRouteDirectAccess reads whether the cluster allows direct access to
// GlobalRouter Pods. A missing ConfigMap (nil) or key means it does not:
// opting in is the user's decision. An unparsable value is an error rather
// than false, so that a typo is reported instead of silently blocking.
func globalRouteDirectAccess(cm *v1.ConfigMap) (bool, error) {
	if cm == nil {
		return false, nil
	}
	v, ok := cm.Data[GlobalRouteDirectAccessKey]
	if !ok {
		return false, nil
	}
	b, err := strconv.ParseBool(strings.TrimSpace(v))
	if err != nil {
		return false, fmt.Errorf("ConfigMap %s/%s key %s=%q: want \"true\" or \"false\"",
			cm.Namespace, cm.Name, GlobalRouteDirectAccessKey, v)
	}
	return b, nil
}

// minDirectAccessVersion is the oldest Kubernetes minor version direct
// access works with: TKE requires a cluster newer than 1.12.
var minDirectAccessVersion = version.MajorMinor(1, 13)

// directAccessSupported says whether an API server reporting gitVersion
// (version.Info.GitVersion) is new enough for direct access.
//
// It parses with ParseGeneric, which ignores what follows the numbers:
// vendor builds carry suffixes ("v1.12.4-tke.3", "v1.30.5-gke.1") that
// ParseSemantic reads as pre-releases, which would rank "v1.13.0-tke.1"
// below 1.13.0.
//
// An error means the version is unknown: unparsable, or v0.0.0, which is
// what an API server built from source without version ldflags reports
// ("v0.0.0-master+$Format:%H$"). Such a server may be anything, so it is
// refused with a message saying why rather than treated as old.
func directAccessSupported(gitVersion string) (bool, error) {
	v, err := version.ParseGeneric(gitVersion)
	if err != nil {
		return false, fmt.Errorf("cannot tell the Kubernetes version from %q: %w", gitVersion, err)
	}
	if v.Major() == 0 && v.Minor() == 0 && v.Patch() == 0 {
		return false, fmt.Errorf("the API server reports version %q, as a build without version information does; "+
			"direct access needs Kubernetes %s or newer, so build it with its real version (-ldflags -X k8s.io/component-base/version.gitVersion=...)",
			gitVersion, minDirectAccessVersion)
	}
	return v.AtLeast(minDirectAccessVersion), nil
}
