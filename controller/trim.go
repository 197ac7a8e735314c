package controller

import (
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"clb-direct/readiness"
)

// TrimForCache is the transform of the informers the controller, the
// readiness worker and the webhook's Service lookup read from (pass it to
// informers.WithTransform). It keeps only the fields they read and drops
// everything else, so that a cluster's Pods cost the controller a fraction
// of their API size:
//
//   - Pod: name, namespace, UID, resource version, creation and deletion
//     timestamps, labels, the annotation tke.cloud.tencent.com/networks;
//     spec.nodeName, hostNetwork, readinessGates; of the containers and
//     native sidecars only their named ports (a named targetPort is
//     resolved through them), of init containers that are no sidecars
//     nothing, and the first tke.cloud.tencent.com/eni-ip or direct-eni
//     request or limit (its presence makes the Pod VPC-CNI); a container
//     left with none of these is dropped. status.phase, podIP, and the
//     conditions Ready, ContainersReady (type, status, transition time),
//     the readiness gate's (also reason and message, which the worker
//     compares before patching) and those another readiness gate names
//     (type and status).
//   - Service: name, namespace, UID, resource version, deletion timestamp,
//     finalizers, the annotations under service.cloud.tencent.com/ and
//     service.kubernetes.io/ (every annotation the controller reads or
//     writes is there); spec.type, selector, loadBalancerClass,
//     externalTrafficPolicy, each port's protocol, port, targetPort and
//     nodePort; the IPs and hostnames of status.loadBalancer.ingress.
//   - Node: name, UID, resource version, deletion timestamp, the label
//     node.kubernetes.io/exclude-from-external-load-balancers;
//     spec.providerID and unschedulable; the type and status of the Ready
//     condition.
//   - ConfigMap: name, namespace, UID, resource version and the
//     GlobalRouteDirectAccess key (the controller watches only
//     kube-system/tke-service-controller-config).
//
// Anything else only loses its managed fields. A tombstone
// (cache.DeletedFinalStateUnknown) passes through unchanged.
//
// The informer calls a transform with objects it has just decoded and owns:
// nothing else refers to them yet (client-go never passes a cached object
// or a tombstone through it), so they may be modified in place. Rather than
// clearing what is not needed, TrimForCache copies what is needed into a
// fresh object, sharing the kept strings and maps with the decoded one: a
// field added to the API later is then dropped by default, not kept by
// default. It is idempotent: trimming a trimmed object changes nothing.
//
// A new field read from a cached Pod, Service, Node or ConfigMap must be
// kept here too, or it reads as empty; trim_test.go checks that the
// decisions made from trimmed objects are those made from whole ones.
func TrimForCache(obj any) (any, error) {
	switch o := obj.(type) {
	case *v1.Pod:
		return trimPod(o), nil
	case *v1.Service:
		return trimService(o), nil
	case *v1.Node:
		return trimNode(o), nil
	case *v1.ConfigMap:
		return trimConfigMap(o), nil
	case cache.DeletedFinalStateUnknown:
		return obj, nil
	}
	if accessor, err := meta.Accessor(obj); err == nil {
		accessor.SetManagedFields(nil)
	}
	return obj, nil
}

// Service annotations under these prefixes are kept: TKE's, which are all
// the controller reads and writes.
var serviceAnnotationPrefixes = []string{"service.cloud.tencent.com/", "service.kubernetes.io/"}

func trimPod(in *v1.Pod) *v1.Pod {
	out := &v1.Pod{
		TypeMeta: in.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name: in.Name, Namespace: in.Namespace, UID: in.UID, ResourceVersion: in.ResourceVersion,
			CreationTimestamp: in.CreationTimestamp, DeletionTimestamp: in.DeletionTimestamp,
			Labels: in.Labels,
			Annotations: keepKeys(in.Annotations, func(key string) bool {
				return key == AnnotationPodNetworks
			}),
		},
		Spec: v1.PodSpec{
			NodeName:       in.Spec.NodeName,
			HostNetwork:    in.Spec.HostNetwork,
			ReadinessGates: in.Spec.ReadinessGates,
		},
		Status: v1.PodStatus{
			Phase:      in.Status.Phase,
			PodIP:      in.Status.PodIP,
			Conditions: trimPodConditions(in.Status.Conditions, in.Spec.ReadinessGates),
		},
	}
	eniKept := false
	out.Spec.Containers = trimContainers(in.Spec.Containers, false, &eniKept)
	out.Spec.InitContainers = trimContainers(in.Spec.InitContainers, true, &eniKept)
	return out
}

// trimContainers keeps of each container what resolveTargetPort and
// podNetworkMode read: the named ports (for init containers only those of
// native sidecars, with the restart policy that makes them one), and the
// first ENI resource of the Pod (eniKept says whether an earlier container
// has it). A container left with nothing is dropped: the order of the rest
// is kept, so a name still resolves to the same port.
func trimContainers(containers []v1.Container, init bool, eniKept *bool) []v1.Container {
	var out []v1.Container
	for i := range containers {
		c := &containers[i]
		kept := v1.Container{Name: c.Name}
		sidecar := c.RestartPolicy != nil && *c.RestartPolicy == v1.ContainerRestartPolicyAlways
		if !init || sidecar {
			kept.Ports = namedPorts(c.Ports)
			if init && len(kept.Ports) > 0 {
				kept.RestartPolicy = c.RestartPolicy
			}
		}
		if !*eniKept {
			kept.Resources, *eniKept = eniResource(c.Resources)
		}
		if len(kept.Ports) == 0 && kept.Resources.Requests == nil && kept.Resources.Limits == nil {
			continue
		}
		if out == nil {
			out = make([]v1.Container, 0, len(containers)-i)
		}
		out = append(out, kept)
	}
	return out
}

func namedPorts(ports []v1.ContainerPort) []v1.ContainerPort {
	n := 0
	for _, p := range ports {
		if p.Name != "" {
			n++
		}
	}
	if n == 0 {
		return nil
	}
	out := make([]v1.ContainerPort, 0, n)
	for _, p := range ports {
		if p.Name != "" {
			out = append(out, v1.ContainerPort{Name: p.Name, ContainerPort: p.ContainerPort, Protocol: p.Protocol})
		}
	}
	return out
}

// eniResource returns the container's first ENI request or limit alone,
// and whether there was one.
func eniResource(r v1.ResourceRequirements) (v1.ResourceRequirements, bool) {
	for _, name := range []v1.ResourceName{ResourceENIIP, ResourceDirectENI} {
		if q, ok := r.Requests[name]; ok {
			return v1.ResourceRequirements{Requests: v1.ResourceList{name: q}}, true
		}
		if q, ok := r.Limits[name]; ok {
			return v1.ResourceRequirements{Limits: v1.ResourceList{name: q}}, true
		}
	}
	return v1.ResourceRequirements{}, false
}

// trimPodConditions keeps the conditions a decision reads, in their order
// (the first of a type is the one read).
func trimPodConditions(conditions []v1.PodCondition, gates []v1.PodReadinessGate) []v1.PodCondition {
	read := func(t v1.PodConditionType) bool {
		if t == v1.PodReady || t == v1.ContainersReady || t == readiness.GateConditionType {
			return true
		}
		for _, g := range gates {
			if g.ConditionType == t {
				return true
			}
		}
		return false
	}
	n := 0
	for _, c := range conditions {
		if read(c.Type) {
			n++
		}
	}
	if n == 0 {
		return nil
	}
	out := make([]v1.PodCondition, 0, n)
	for _, c := range conditions {
		switch {
		case c.Type == readiness.GateConditionType:
			out = append(out, v1.PodCondition{Type: c.Type, Status: c.Status, Reason: c.Reason, Message: c.Message, LastTransitionTime: c.LastTransitionTime})
		case c.Type == v1.PodReady || c.Type == v1.ContainersReady:
			out = append(out, v1.PodCondition{Type: c.Type, Status: c.Status, LastTransitionTime: c.LastTransitionTime})
		case read(c.Type):
			out = append(out, v1.PodCondition{Type: c.Type, Status: c.Status})
		}
	}
	return out
}

func trimService(in *v1.Service) *v1.Service {
	out := &v1.Service{
		TypeMeta: in.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name: in.Name, Namespace: in.Namespace, UID: in.UID, ResourceVersion: in.ResourceVersion,
			DeletionTimestamp: in.DeletionTimestamp, Finalizers: in.Finalizers,
			Annotations: keepKeys(in.Annotations, func(key string) bool {
				for _, prefix := range serviceAnnotationPrefixes {
					if strings.HasPrefix(key, prefix) {
						return true
					}
				}
				return false
			}),
		},
		Spec: v1.ServiceSpec{
			Type:                  in.Spec.Type,
			Selector:              in.Spec.Selector,
			LoadBalancerClass:     in.Spec.LoadBalancerClass,
			ExternalTrafficPolicy: in.Spec.ExternalTrafficPolicy,
		},
	}
	if len(in.Spec.Ports) > 0 {
		out.Spec.Ports = make([]v1.ServicePort, len(in.Spec.Ports))
		for i, p := range in.Spec.Ports {
			out.Spec.Ports[i] = v1.ServicePort{Protocol: p.Protocol, Port: p.Port, TargetPort: p.TargetPort, NodePort: p.NodePort}
		}
	}
	if ingress := in.Status.LoadBalancer.Ingress; len(ingress) > 0 {
		out.Status.LoadBalancer.Ingress = make([]v1.LoadBalancerIngress, len(ingress))
		for i, in := range ingress {
			out.Status.LoadBalancer.Ingress[i] = v1.LoadBalancerIngress{IP: in.IP, Hostname: in.Hostname}
		}
	}
	return out
}

func trimNode(in *v1.Node) *v1.Node {
	out := &v1.Node{
		TypeMeta: in.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name: in.Name, UID: in.UID, ResourceVersion: in.ResourceVersion, DeletionTimestamp: in.DeletionTimestamp,
			Labels: keepKeys(in.Labels, func(key string) bool { return key == v1.LabelNodeExcludeBalancers }),
		},
		Spec: v1.NodeSpec{ProviderID: in.Spec.ProviderID, Unschedulable: in.Spec.Unschedulable},
	}
	// nodeTakesTraffic reads the first Ready condition.
	for _, c := range in.Status.Conditions {
		if c.Type == v1.NodeReady {
			out.Status.Conditions = []v1.NodeCondition{{Type: c.Type, Status: c.Status}}
			break
		}
	}
	return out
}

func trimConfigMap(in *v1.ConfigMap) *v1.ConfigMap {
	return &v1.ConfigMap{
		TypeMeta: in.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name: in.Name, Namespace: in.Namespace, UID: in.UID, ResourceVersion: in.ResourceVersion,
		},
		Data: keepKeys(in.Data, func(key string) bool { return key == GlobalRouteDirectAccessKey }),
	}
}

// keepKeys returns the entries of m whose key keep accepts: m itself
// when that is all of them, nil when none.
func keepKeys(m map[string]string, keep func(string) bool) map[string]string {
	n := 0
	for k := range m {
		if keep(k) {
			n++
		}
	}
	switch n {
	case 0:
		return nil
	case len(m):
		return m
	}
	out := make(map[string]string, n)
	for k, v := range m {
		if keep(k) {
			out[k] = v
		}
	}
	return out
}
