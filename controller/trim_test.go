package controller

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"clb-direct/cloud"
	"clb-direct/readiness"
)

// The trimming tests build whole objects, as the API server sends them
// (every field a real Deployment Pod, LoadBalancer Service or Node has, and
// then some), and check two things: every decision the controller, the
// readiness worker and the webhook's lookup make from a trimmed object is
// the one they make from the whole object, and what is dropped is gone.

var (
	trimT0 = metav1.NewTime(time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC))
	trimT1 = metav1.NewTime(time.Date(2026, 1, 1, 10, 0, 7, 0, time.UTC))
	trimT2 = metav1.NewTime(time.Date(2026, 1, 1, 10, 0, 9, 0, time.UTC))
)

const otherTrimGate v1.PodConditionType = "example.com/warmed-up"

func managedFields() []metav1.ManagedFieldsEntry {
	return []metav1.ManagedFieldsEntry{{
		Manager: "kube-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1", Time: &trimT0,
		FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:metadata":{"f:labels":{".":{},"f:app":{}}}}`)},
	}, {
		Manager: "kubelet", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1", Time: &trimT1, Subresource: "status",
		FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:status":{"f:conditions":{}}}`)},
	}}
}

// wholeContainer is a container as a Deployment's template makes it, with
// the named port "http" on httpPort (0: no named port), an unnamed port, and
// resources that name the ENI resource when eni.
func wholeContainer(name string, httpPort int32, eni bool) v1.Container {
	c := v1.Container{
		Name: name, Image: "registry.example.com/team/" + name + ":v1.2.3", ImagePullPolicy: v1.PullIfNotPresent,
		Command: []string{"/bin/" + name}, Args: []string{"--port=8080", "--log-level=info"}, WorkingDir: "/srv",
		Ports: []v1.ContainerPort{{ContainerPort: 9100, Protocol: v1.ProtocolTCP}},
		Env: []v1.EnvVar{{Name: "MODE", Value: "production"}, {Name: "POD_IP", ValueFrom: &v1.EnvVarSource{
			FieldRef: &v1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "status.podIP"}}}},
		EnvFrom: []v1.EnvFromSource{{ConfigMapRef: &v1.ConfigMapEnvSource{LocalObjectReference: v1.LocalObjectReference{Name: "settings"}}}},
		Resources: v1.ResourceRequirements{
			Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("100m"), v1.ResourceMemory: resource.MustParse("128Mi")},
			Limits:   v1.ResourceList{v1.ResourceCPU: resource.MustParse("1"), v1.ResourceMemory: resource.MustParse("512Mi")},
		},
		VolumeMounts: []v1.VolumeMount{{Name: "config", MountPath: "/etc/app", ReadOnly: true},
			{Name: "kube-api-access", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true}},
		ReadinessProbe: &v1.Probe{ProbeHandler: v1.ProbeHandler{HTTPGet: &v1.HTTPGetAction{Path: "/ready", Port: intstr.FromInt32(8080)}},
			PeriodSeconds: 5},
		LivenessProbe: &v1.Probe{ProbeHandler: v1.ProbeHandler{TCPSocket: &v1.TCPSocketAction{Port: intstr.FromInt32(8080)}}},
		Lifecycle:     &v1.Lifecycle{PreStop: &v1.LifecycleHandler{Sleep: &v1.SleepAction{Seconds: 5}}},
		SecurityContext: &v1.SecurityContext{RunAsNonRoot: ptr.To(true), ReadOnlyRootFilesystem: ptr.To(true),
			Capabilities: &v1.Capabilities{Drop: []v1.Capability{"ALL"}}},
		TerminationMessagePath: "/dev/termination-log", TerminationMessagePolicy: v1.TerminationMessageReadFile,
	}
	if httpPort != 0 {
		c.Ports = append(c.Ports, v1.ContainerPort{Name: "http", ContainerPort: httpPort, Protocol: v1.ProtocolTCP, HostIP: "0.0.0.0"},
			v1.ContainerPort{Name: "dns", ContainerPort: 5353, Protocol: v1.ProtocolUDP})
	}
	if eni {
		c.Resources.Requests[ResourceENIIP] = resource.MustParse("1")
		c.Resources.Limits[ResourceENIIP] = resource.MustParse("1")
	}
	return c
}

// wholePod is a Running, Ready VPC-CNI Pod of a Deployment with every field
// set; opts change it.
func wholePod(name, ip string, opts ...func(*v1.Pod)) *v1.Pod {
	always := v1.ContainerRestartPolicyAlways
	sidecar := wholeContainer("proxy", 0, false)
	sidecar.RestartPolicy = &always
	sidecar.Ports = append(sidecar.Ports, v1.ContainerPort{Name: "proxy", ContainerPort: 15001, Protocol: v1.ProtocolTCP})
	p := &v1.Pod{
		TypeMeta: metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{
			Namespace: "ns", Name: name, GenerateName: "web-7d9f8b6c5d-", UID: types.UID("uid-" + name), ResourceVersion: "4711",
			Generation: 1, CreationTimestamp: trimT0,
			Labels: map[string]string{"app": "web", "pod-template-hash": "7d9f8b6c5d", "tier": "frontend",
				"app.kubernetes.io/version": "1.2.3", "app.kubernetes.io/part-of": "shop"},
			Annotations: map[string]string{"kubectl.kubernetes.io/restartedAt": "2026-01-01T09:00:00Z",
				"prometheus.io/scrape": "true", "cni.projectcalico.org/podIP": ip + "/32", AnnotationPodNetworks: "tke-route-eni"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-7d9f8b6c5d",
				UID: "uid-rs", Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}},
			Finalizers:    []string{"example.com/cleanup"},
			ManagedFields: managedFields(),
		},
		Spec: v1.PodSpec{
			Volumes: []v1.Volume{{Name: "config", VolumeSource: v1.VolumeSource{ConfigMap: &v1.ConfigMapVolumeSource{
				LocalObjectReference: v1.LocalObjectReference{Name: "web-config"}}}},
				{Name: "kube-api-access", VolumeSource: v1.VolumeSource{Projected: &v1.ProjectedVolumeSource{Sources: []v1.VolumeProjection{
					{ServiceAccountToken: &v1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: ptr.To[int64](3607)}}}}}}},
			InitContainers:                []v1.Container{wholeContainer("migrate", 0, false), sidecar},
			Containers:                    []v1.Container{wholeContainer("app", 8080, true), wholeContainer("logger", 0, false)},
			RestartPolicy:                 v1.RestartPolicyAlways,
			TerminationGracePeriodSeconds: ptr.To[int64](30),
			DNSPolicy:                     v1.DNSClusterFirst,
			NodeSelector:                  map[string]string{"kubernetes.io/os": "linux"},
			ServiceAccountName:            "web", NodeName: "node-1",
			SecurityContext: &v1.PodSecurityContext{FSGroup: ptr.To[int64](2000)},
			Affinity: &v1.Affinity{PodAntiAffinity: &v1.PodAntiAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []v1.WeightedPodAffinityTerm{{
				Weight: 100, PodAffinityTerm: v1.PodAffinityTerm{TopologyKey: "kubernetes.io/hostname",
					LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}}}}},
			SchedulerName: "default-scheduler",
			Tolerations: []v1.Toleration{{Key: "node.kubernetes.io/not-ready", Operator: v1.TolerationOpExists,
				Effect: v1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](300)}},
			Priority: ptr.To[int32](0), EnableServiceLinks: ptr.To(true), PreemptionPolicy: ptr.To(v1.PreemptLowerPriority),
			ReadinessGates: []v1.PodReadinessGate{{ConditionType: readiness.GateConditionType}},
		},
		Status: v1.PodStatus{
			Phase: v1.PodRunning,
			Conditions: []v1.PodCondition{
				{Type: v1.PodReadyToStartContainers, Status: v1.ConditionTrue, LastTransitionTime: trimT0},
				{Type: v1.PodInitialized, Status: v1.ConditionTrue, LastTransitionTime: trimT0},
				{Type: readiness.GateConditionType, Status: v1.ConditionTrue, Reason: readiness.ReasonReady,
					Message: "registered and healthy on CLB lb-1 listener TCP:80 (lbl-1)", LastTransitionTime: trimT2, LastProbeTime: trimT2},
				{Type: v1.PodReady, Status: v1.ConditionTrue, LastTransitionTime: trimT2, ObservedGeneration: 1},
				{Type: v1.ContainersReady, Status: v1.ConditionTrue, LastTransitionTime: trimT1, ObservedGeneration: 1},
				{Type: v1.PodScheduled, Status: v1.ConditionTrue, LastTransitionTime: trimT0},
			},
			HostIP: "192.168.0.10", HostIPs: []v1.HostIP{{IP: "192.168.0.10"}},
			PodIP: ip, PodIPs: []v1.PodIP{{IP: ip}},
			StartTime: &trimT0, QOSClass: v1.PodQOSBurstable,
			InitContainerStatuses: []v1.ContainerStatus{{Name: "migrate", Ready: true, ImageID: "sha256:aaaa",
				State: v1.ContainerState{Terminated: &v1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed"}}}},
			ContainerStatuses: []v1.ContainerStatus{{Name: "app", Ready: true, Started: ptr.To(true), RestartCount: 0,
				Image: "registry.example.com/team/app:v1.2.3", ImageID: "sha256:bbbb", ContainerID: "containerd://cccc",
				State: v1.ContainerState{Running: &v1.ContainerStateRunning{StartedAt: trimT0}}}},
		},
	}
	for _, opt := range opts {
		opt(p)
	}
	return p
}

// Variations of wholePod that change decisions.

func setCondition(conditionType v1.PodConditionType, status v1.ConditionStatus) func(*v1.Pod) {
	return func(p *v1.Pod) {
		for i := range p.Status.Conditions {
			if p.Status.Conditions[i].Type == conditionType {
				p.Status.Conditions[i].Status = status
				p.Status.Conditions[i].Reason, p.Status.Conditions[i].Message = "Changed", "status is "+string(status)
				return
			}
		}
		p.Status.Conditions = append(p.Status.Conditions, v1.PodCondition{Type: conditionType, Status: status, LastTransitionTime: trimT1})
	}
}

func removeCondition(conditionType v1.PodConditionType) func(*v1.Pod) {
	return func(p *v1.Pod) {
		var kept []v1.PodCondition
		for _, c := range p.Status.Conditions {
			if c.Type != conditionType {
				kept = append(kept, c)
			}
		}
		p.Status.Conditions = kept
	}
}

func noENI(p *v1.Pod) {
	for _, cs := range [][]v1.Container{p.Spec.Containers, p.Spec.InitContainers} {
		for i := range cs {
			delete(cs[i].Resources.Requests, ResourceENIIP)
			delete(cs[i].Resources.Limits, ResourceENIIP)
		}
	}
	delete(p.Annotations, AnnotationPodNetworks)
}

// podVariants are whole Pods that differ in everything the decisions read.
func podVariants() []*v1.Pod {
	i := 0
	ip := func() string { i++; return fmt.Sprintf("10.0.%d.%d", i/200, i%200+1) }
	httpInSidecar := func(p *v1.Pod) {
		p.Spec.Containers[0].Ports = p.Spec.Containers[0].Ports[:1]
		p.Spec.InitContainers[1].Ports = append(p.Spec.InitContainers[1].Ports, v1.ContainerPort{Name: "http", ContainerPort: 8181})
	}
	httpInInit := func(p *v1.Pod) {
		p.Spec.Containers[0].Ports = p.Spec.Containers[0].Ports[:1]
		p.Spec.InitContainers[0].Ports = append(p.Spec.InitContainers[0].Ports, v1.ContainerPort{Name: "http", ContainerPort: 8282})
	}
	return []*v1.Pod{
		wholePod("ready", ip()),
		wholePod("second-pod-same-ip", "10.0.0.2", func(p *v1.Pod) { p.Status.PodIP = "10.0.0.2" }),
		wholePod("unready", ip(), setCondition(v1.PodReady, v1.ConditionFalse), setCondition(v1.ContainersReady, v1.ConditionFalse)),
		wholePod("gate-pending", ip(), setCondition(v1.PodReady, v1.ConditionFalse), removeCondition(readiness.GateConditionType)),
		wholePod("gate-false", ip(), setCondition(v1.PodReady, v1.ConditionFalse), setCondition(readiness.GateConditionType, v1.ConditionFalse)),
		wholePod("other-gate-false", ip(), setCondition(v1.PodReady, v1.ConditionFalse), setCondition(readiness.GateConditionType, v1.ConditionFalse),
			func(p *v1.Pod) {
				p.Spec.ReadinessGates = append(p.Spec.ReadinessGates, v1.PodReadinessGate{ConditionType: otherTrimGate})
			}, setCondition(otherTrimGate, v1.ConditionFalse)),
		wholePod("other-gate-true", ip(), setCondition(v1.PodReady, v1.ConditionFalse), setCondition(readiness.GateConditionType, v1.ConditionFalse),
			func(p *v1.Pod) {
				p.Spec.ReadinessGates = append(p.Spec.ReadinessGates, v1.PodReadinessGate{ConditionType: otherTrimGate})
			}, setCondition(otherTrimGate, v1.ConditionTrue)),
		wholePod("gated-on-scheduled", ip(), setCondition(v1.PodReady, v1.ConditionFalse), func(p *v1.Pod) {
			p.Spec.ReadinessGates = []v1.PodReadinessGate{{ConditionType: v1.PodScheduled}, {ConditionType: readiness.GateConditionType}}
		}),
		wholePod("no-gate", ip(), func(p *v1.Pod) { p.Spec.ReadinessGates = nil }, setCondition(v1.PodReady, v1.ConditionFalse)),
		wholePod("no-ready-condition", ip(), removeCondition(v1.PodReady), removeCondition(v1.ContainersReady)),
		wholePod("terminating", ip(), func(p *v1.Pod) { p.DeletionTimestamp = &trimT2; p.DeletionGracePeriodSeconds = ptr.To[int64](30) }),
		wholePod("no-ip", "", func(p *v1.Pod) { p.Status.PodIPs = nil }),
		wholePod("pending-phase", ip(), func(p *v1.Pod) { p.Status.Phase = v1.PodPending }),
		wholePod("failed", ip(), func(p *v1.Pod) { p.Status.Phase = v1.PodFailed }),
		wholePod("succeeded", ip(), func(p *v1.Pod) { p.Status.Phase = v1.PodSucceeded }),
		wholePod("host-network", ip(), func(p *v1.Pod) { p.Spec.HostNetwork = true }),
		wholePod("http-in-sidecar", ip(), httpInSidecar),
		wholePod("http-in-plain-init", ip(), httpInInit),
		wholePod("http-as-udp", ip(), func(p *v1.Pod) { p.Spec.Containers[0].Ports[1].Protocol = v1.ProtocolUDP }),
		wholePod("http-twice", ip(), func(p *v1.Pod) {
			p.Spec.Containers[1].Ports = append(p.Spec.Containers[1].Ports, v1.ContainerPort{Name: "http", ContainerPort: 9999})
		}),
		wholePod("no-named-ports", ip(), func(p *v1.Pod) {
			p.Spec.Containers[0].Ports = p.Spec.Containers[0].Ports[:1]
			p.Spec.InitContainers[1].Ports = p.Spec.InitContainers[1].Ports[:1]
		}),
		wholePod("global-router", ip(), noENI),
		wholePod("eni-by-annotation", ip(), noENI, func(p *v1.Pod) { p.Annotations[AnnotationPodNetworks] = `[{"name":"tke-direct-eni"}]` }),
		wholePod("eni-in-init-limits", ip(), noENI, func(p *v1.Pod) {
			p.Spec.InitContainers[0].Resources.Limits[ResourceENIIP] = resource.MustParse("1")
		}),
		wholePod("direct-eni", ip(), noENI, func(p *v1.Pod) {
			p.Spec.Containers[1].Resources.Requests[ResourceDirectENI] = resource.MustParse("1")
		}),
		wholePod("other-node", ip(), func(p *v1.Pod) { p.Spec.NodeName = "node-2" }),
		wholePod("unscheduled", ip(), func(p *v1.Pod) { p.Spec.NodeName = "" }),
		wholePod("other-app", ip(), func(p *v1.Pod) { p.Labels = map[string]string{"app": "api", "tier": "frontend"} }),
		wholePod("no-labels", ip(), func(p *v1.Pod) { p.Labels = nil }),
		wholePod("other-namespace", ip(), func(p *v1.Pod) { p.Namespace = "other" }),
		wholePod("no-container-ready-time", ip(), func(p *v1.Pod) {
			for i := range p.Status.Conditions {
				p.Status.Conditions[i].LastTransitionTime = metav1.Time{}
			}
		}),
	}
}

// wholeService is a direct-access LoadBalancer Service with every field
// set; opts change it.
func wholeService(name string, opts ...func(*v1.Service)) *v1.Service {
	s := &v1.Service{
		TypeMeta: metav1.TypeMeta{Kind: "Service", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{
			Namespace: "ns", Name: name, UID: types.UID("uid-" + name), ResourceVersion: "99", Generation: 1, CreationTimestamp: trimT0,
			Labels: map[string]string{"app": "web", "team": "shop"},
			Annotations: map[string]string{
				AnnotationDirectAccess: "true", AnnotationBackendWeight: "30", AnnotationLoadBalancerID: "lb-12345678",
				AnnotationPreviousLoadBalancers:                    "lb-aaaa,lb-bbbb",
				"kubectl.kubernetes.io/last-applied-configuration": `{"apiVersion":"v1","kind":"Service","metadata":{"name":"` + name + `"}}`,
				"meta.helm.sh/release-name":                        "shop",
			},
			Finalizers:    []string{Finalizer, "example.com/other"},
			ManagedFields: managedFields(),
		},
		Spec: v1.ServiceSpec{
			Type:     v1.ServiceTypeLoadBalancer,
			Selector: map[string]string{"app": "web", "tier": "frontend"},
			Ports: []v1.ServicePort{
				{Name: "http", Protocol: v1.ProtocolTCP, AppProtocol: ptr.To("http"), Port: 80, TargetPort: intstr.FromString("http"), NodePort: 30080},
				{Name: "metrics", Protocol: v1.ProtocolTCP, Port: 9100, TargetPort: intstr.FromInt32(9100), NodePort: 30091},
				{Name: "dns", Protocol: v1.ProtocolUDP, Port: 53, TargetPort: intstr.FromString("dns"), NodePort: 30053},
				{Name: "proxy", Protocol: v1.ProtocolTCP, Port: 15001, TargetPort: intstr.FromString("proxy"), NodePort: 31501},
				{Name: "sctp", Protocol: v1.ProtocolSCTP, Port: 36412, NodePort: 31412},
				{Name: "defaulted", Port: 8443, NodePort: 31443},
			},
			ClusterIP: "172.16.0.10", ClusterIPs: []string{"172.16.0.10"},
			SessionAffinity:       v1.ServiceAffinityNone,
			ExternalTrafficPolicy: v1.ServiceExternalTrafficPolicyCluster,
			IPFamilies:            []v1.IPFamily{v1.IPv4Protocol}, IPFamilyPolicy: ptr.To(v1.IPFamilyPolicySingleStack),
			AllocateLoadBalancerNodePorts: ptr.To(true), InternalTrafficPolicy: ptr.To(v1.ServiceInternalTrafficPolicyCluster),
		},
		Status: v1.ServiceStatus{LoadBalancer: v1.LoadBalancerStatus{Ingress: []v1.LoadBalancerIngress{
			{IP: "203.0.113.7", IPMode: ptr.To(v1.LoadBalancerIPModeVIP), Ports: []v1.PortStatus{{Port: 80, Protocol: v1.ProtocolTCP}}},
		}}},
	}
	for _, opt := range opts {
		opt(s)
	}
	return s
}

func annotate(kv ...string) func(*v1.Service) {
	return func(s *v1.Service) {
		for i := 0; i < len(kv); i += 2 {
			s.Annotations[kv[i]] = kv[i+1]
		}
	}
}

func serviceVariants() []*v1.Service {
	return []*v1.Service{
		wholeService("direct"),
		wholeService("grace", annotate(AnnotationGraceShutdown, "true")),
		wholeService("grace-tkex", annotate(AnnotationGraceShutdownTKEx, "true")),
		wholeService("classic", annotate(AnnotationDirectAccess, "false")),
		wholeService("classic-local", annotate(AnnotationDirectAccess, "false"), func(s *v1.Service) {
			s.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
		}),
		wholeService("no-node-ports", annotate(AnnotationDirectAccess, "false"), func(s *v1.Service) {
			for i := range s.Spec.Ports {
				s.Spec.Ports[i].NodePort = 0
			}
		}),
		wholeService("invalid", annotate(AnnotationBackendWeight, "heavy", AnnotationExistingLoadBalancer, "nope")),
		wholeService("existing", annotate(AnnotationExistingLoadBalancer, "lb-87654321", AnnotationInternalSubnet, "subnet-1234",
			AnnotationExtensiveParameters, `{"VipIsp":"CMCC"}`, AnnotationTkeServiceConfig, "tuned", AnnotationTkeServiceConfigAuto, "true")),
		wholeService("other-class", func(s *v1.Service) { s.Spec.LoadBalancerClass = ptr.To("example.com/lb") }),
		wholeService("cluster-ip", func(s *v1.Service) { s.Spec.Type = v1.ServiceTypeClusterIP }),
		wholeService("deleting", func(s *v1.Service) { s.DeletionTimestamp = &trimT2 }),
		wholeService("no-finalizer", func(s *v1.Service) { s.Finalizers = []string{"example.com/other"} }),
		wholeService("no-selector", func(s *v1.Service) { s.Spec.Selector = nil }),
		wholeService("no-ingress", func(s *v1.Service) { s.Status.LoadBalancer.Ingress = nil }),
		wholeService("other-app", func(s *v1.Service) { s.Spec.Selector = map[string]string{"app": "api"} }),
	}
}

// wholeNode is a Ready TKE Node with every field set; opts change it.
func wholeNode(name string, opts ...func(*v1.Node)) *v1.Node {
	n := &v1.Node{
		TypeMeta: metav1.TypeMeta{Kind: "Node", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{
			Name: name, UID: types.UID("uid-" + name), ResourceVersion: "12", CreationTimestamp: trimT0,
			Labels: map[string]string{"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
				"node.kubernetes.io/instance-type": "SA2.MEDIUM4", "topology.kubernetes.io/zone": "ap-guangzhou-3"},
			Annotations:   map[string]string{"node.alpha.kubernetes.io/ttl": "0", "volumes.kubernetes.io/controller-managed-attach-detach": "true"},
			ManagedFields: managedFields(),
		},
		Spec: v1.NodeSpec{
			PodCIDR: "10.1.0.0/24", PodCIDRs: []string{"10.1.0.0/24"}, ProviderID: "qcloud:///100003/ins-" + name,
			Taints: []v1.Taint{{Key: "example.com/dedicated", Value: "web", Effect: v1.TaintEffectPreferNoSchedule}},
		},
		Status: v1.NodeStatus{
			Capacity:    v1.ResourceList{v1.ResourceCPU: resource.MustParse("2"), v1.ResourceMemory: resource.MustParse("4Gi")},
			Allocatable: v1.ResourceList{v1.ResourceCPU: resource.MustParse("1930m"), v1.ResourceMemory: resource.MustParse("3Gi")},
			Conditions: []v1.NodeCondition{
				{Type: v1.NodeMemoryPressure, Status: v1.ConditionFalse, LastHeartbeatTime: trimT1, LastTransitionTime: trimT0, Reason: "KubeletHasSufficientMemory"},
				{Type: v1.NodeReady, Status: v1.ConditionTrue, LastHeartbeatTime: trimT1, LastTransitionTime: trimT0, Reason: "KubeletReady", Message: "kubelet is posting ready status"},
			},
			Addresses: []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: "192.168.0.10"}, {Type: v1.NodeHostName, Address: name}},
			NodeInfo:  v1.NodeSystemInfo{KubeletVersion: "v1.34.2", OSImage: "TencentOS Server 3.1", ContainerRuntimeVersion: "containerd://1.7.0"},
			Images:    []v1.ContainerImage{{Names: []string{"registry.example.com/team/app:v1.2.3"}, SizeBytes: 123456789}},
		},
	}
	for _, opt := range opts {
		opt(n)
	}
	return n
}

func nodeVariants() []*v1.Node {
	setReady := func(status v1.ConditionStatus) func(*v1.Node) {
		return func(n *v1.Node) { n.Status.Conditions[1].Status = status }
	}
	return []*v1.Node{
		wholeNode("node-1"),
		wholeNode("node-2"),
		wholeNode("cordoned", func(n *v1.Node) { n.Spec.Unschedulable = true }),
		wholeNode("not-ready", setReady(v1.ConditionFalse)),
		wholeNode("unknown", setReady(v1.ConditionUnknown)),
		wholeNode("no-ready-condition", func(n *v1.Node) { n.Status.Conditions = n.Status.Conditions[:1] }),
		wholeNode("excluded", func(n *v1.Node) { n.Labels[v1.LabelNodeExcludeBalancers] = "" }),
		wholeNode("deleting", func(n *v1.Node) { n.DeletionTimestamp = &trimT2 }),
		wholeNode("no-provider-id", func(n *v1.Node) { n.Spec.ProviderID = "" }),
		wholeNode("other-cloud", func(n *v1.Node) { n.Spec.ProviderID = "aws:///us-east-1a/i-0123" }),
		wholeNode("heartbeat", func(n *v1.Node) { n.Status.Conditions[1].LastHeartbeatTime = trimT2 }),
	}
}

func trimmed[T any](t *testing.T, obj T) T {
	t.Helper()
	out, err := TrimForCache(obj)
	if err != nil {
		t.Fatalf("TrimForCache: %v", err)
	}
	return out.(T)
}

func trimAll[T any](t *testing.T, objs []T) []T {
	out := make([]T, len(objs))
	for i, o := range objs {
		out[i] = trimmed(t, o)
	}
	return out
}

// same fails the test when a decision from trimmed objects differs.
func same(t *testing.T, what string, whole, trim any) {
	t.Helper()
	if diff := gocmp.Diff(whole, trim); diff != "" {
		t.Errorf("%s differs once trimmed (-whole +trimmed):\n%s", what, diff)
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestTrimmedPodsAndServicesGiveTheSameDesiredStateAndPlan(t *testing.T) {
	pods := podVariants()
	trimmedPods := trimAll(t, pods)
	nodes := nodeVariants()
	trimmedNodes := trimAll(t, nodes)
	// A CLB that has some of the Pods, one stale backend and a listener of
	// another Service, so plans register, re-weight and deregister.
	observed := func(svc *v1.Service) ObservedState {
		key := ListenerKey{Protocol: cloud.ProtocolTCP, Port: 80}
		return ObservedState{
			LoadBalancer: cloud.LoadBalancer{ID: "lb-12345678"},
			Listeners: []cloud.Listener{
				{ID: "lbl-1", ListenerSpec: cloud.ListenerSpec{Name: listenerName(svc.UID, key), Protocol: key.Protocol, Port: key.Port}},
				{ID: "lbl-2", ListenerSpec: cloud.ListenerSpec{Name: "theirs", Protocol: cloud.ProtocolTCP, Port: 9100}},
			},
			Backends: map[string][]cloud.Backend{"lbl-1": {
				{IP: pods[0].Status.PodIP, Port: 8080, Weight: 1}, {IP: "10.9.9.9", Port: 8080, Weight: 10},
			}},
		}
	}
	for _, svc := range serviceVariants() {
		t.Run(svc.Name, func(t *testing.T) {
			trimSvc := trimmed(t, svc)
			cfg, err := parseServiceConfig(svc)
			trimCfg, trimErr := parseServiceConfig(trimSvc)
			same(t, "parseServiceConfig", cfg, trimCfg)
			same(t, "parseServiceConfig error", errText(err), errText(trimErr))

			c := &Controller{opts: Options{ClusterID: testClusterID}}
			for _, name := range []struct {
				what string
				f    func(*v1.Service) any
			}{
				{"wantsLoadBalancer", func(s *v1.Service) any { return c.wantsLoadBalancer(s) }},
				{"wantsDirectAccess", func(s *v1.Service) any { return c.wantsDirectAccess(s) }},
				{"asksForDirectAccess", func(s *v1.Service) any { return c.asksForDirectAccess(s) }},
				{"has finalizer", func(s *v1.Service) any { return s.Finalizers }},
				{"previousLoadBalancers", func(s *v1.Service) any { return previousLoadBalancers(s) }},
				{"recorded CLB", func(s *v1.Service) any { return s.Annotations[AnnotationLoadBalancerID] }},
				{"clientToken", func(s *v1.Service) any { return clientToken(s) }},
				{"loadBalancerName", func(s *v1.Service) any { return loadBalancerName(testClusterID, s) }},
				{"ownershipTags", func(s *v1.Service) any { return c.ownershipTags(s) }},
				{"ingress", func(s *v1.Service) any {
					return ingressEqual(s.Status.LoadBalancer.Ingress, []v1.LoadBalancerIngress{{IP: "203.0.113.7"}})
				}},
				{"selector index", func(s *v1.Service) any { keys, _ := serviceSelectorIndexFunc(s); return keys }},
				{"TkeServiceConfig index", func(s *v1.Service) any { keys, _ := serviceConfigIndexFunc(s); return keys }},
			} {
				same(t, name.what, name.f(svc), name.f(trimSvc))
			}

			for _, allowed := range []bool{false, true} {
				modes, problem, blocked := checkNetworkModes(pods, allowed)
				trimModes, trimProblem, trimBlocked := checkNetworkModes(trimmedPods, allowed)
				same(t, fmt.Sprintf("checkNetworkModes(allowed %v)", allowed), []any{modes, problem, blocked}, []any{trimModes, trimProblem, trimBlocked})
			}
			desired := buildDesiredState(svc, cfg, pods)
			trimDesired := buildDesiredState(trimSvc, trimCfg, trimmedPods)
			same(t, "buildDesiredState", desired, trimDesired)
			same(t, "planChanges", planChanges(svc.UID, desired, observed(svc)), planChanges(trimSvc.UID, trimDesired, observed(trimSvc)))

			classic := buildClassicDesiredState(svc, cfg, nodes, readyEndpointNodes(pods))
			trimClassic := buildClassicDesiredState(trimSvc, trimCfg, trimmedNodes, readyEndpointNodes(trimmedPods))
			same(t, "buildClassicDesiredState", classic, trimClassic)
			same(t, "planChanges (classic)", planChanges(svc.UID, classic, observed(svc)), planChanges(trimSvc.UID, trimClassic, observed(trimSvc)))

			for i, pod := range pods {
				for _, port := range svc.Spec.Ports {
					p, ok := resolveTargetPort(port, pod)
					tp, tok := resolveTargetPort(port, trimmedPods[i])
					same(t, fmt.Sprintf("resolveTargetPort(%s, %s)", port.TargetPort.String(), pod.Name), []any{p, ok}, []any{tp, tok})
				}
				w, ok := backendWeight(pod, cfg)
				tw, tok := backendWeight(trimmedPods[i], trimCfg)
				same(t, "backendWeight of "+pod.Name, []any{w, ok}, []any{tw, tok})
			}
		})
	}
}

func TestTrimmedPodsGiveTheSamePodDecisions(t *testing.T) {
	pods := podVariants()
	trimmedPods := trimAll(t, pods)
	for i, pod := range pods {
		trim := trimmedPods[i]
		for _, d := range []struct {
			what string
			f    func(*v1.Pod) any
		}{
			{"isBackendCandidate", func(p *v1.Pod) any { return isBackendCandidate(p) }},
			{"podReadyOrWaitingOnlyForGate", func(p *v1.Pod) any { return podReadyOrWaitingOnlyForGate(p) }},
			{"podNetworkMode", func(p *v1.Pod) any { return podNetworkMode(p) }},
			{"registrableSince", func(p *v1.Pod) any { return registrableSince(p) }},
			{"key", func(p *v1.Pod) any { return cache.MetaObjectToName(p).String() }},
			{"UID", func(p *v1.Pod) any { return p.UID }},
			{"labels", func(p *v1.Pod) any { return p.Labels }},
		} {
			same(t, d.what+" of "+pod.Name, d.f(pod), d.f(trim))
		}
		for j, other := range pods {
			same(t, fmt.Sprintf("podChangeMatters(%s, %s)", pod.Name, other.Name),
				podChangeMatters(pod, other), podChangeMatters(trim, trimmedPods[j]))
		}
	}
	same(t, "podRegistrableTimes", podRegistrableTimes(pods), podRegistrableTimes(trimmedPods))
}

func TestTrimmedNodesGiveTheSameNodeDecisions(t *testing.T) {
	nodes := nodeVariants()
	trimmedNodes := trimAll(t, nodes)
	for i, node := range nodes {
		same(t, "nodeTakesTraffic of "+node.Name, nodeTakesTraffic(node), nodeTakesTraffic(trimmedNodes[i]))
		id, ok := instanceIDFromProviderID(node.Spec.ProviderID)
		tid, tok := instanceIDFromProviderID(trimmedNodes[i].Spec.ProviderID)
		same(t, "instance of "+node.Name, []any{id, ok}, []any{tid, tok})
		for j, other := range nodes {
			same(t, fmt.Sprintf("nodeChangeMatters(%s, %s)", node.Name, other.Name),
				nodeChangeMatters(node, other), nodeChangeMatters(trimmedNodes[i], trimmedNodes[j]))
		}
	}
}

// TestTrimmedServicesGiveTheSameExpectationsAndWebhookAnswers compares what
// the readiness worker (Expect) and the webhook (SelectedByDirectAccess)
// learn from a controller whose Service cache holds trimmed Services with
// what they learn from one holding whole Services, for trimmed and whole
// Pods.
func TestTrimmedServicesGiveTheSameExpectationsAndWebhookAnswers(t *testing.T) {
	svcs := serviceVariants()
	withCache := func(svcs []*v1.Service) *Controller {
		indexer := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{selectorIndex: serviceSelectorIndexFunc})
		for _, s := range svcs {
			if err := indexer.Add(s); err != nil {
				t.Fatal(err)
			}
		}
		c := &Controller{serviceIndexer: indexer, observed: observedCache{entries: map[string]observedEntry{}}, opts: Options{ClusterID: testClusterID}}
		key := ListenerKey{Protocol: cloud.ProtocolTCP, Port: 80}
		c.observed.set("ns/direct", "uid-direct", &ObservedState{
			LoadBalancer: cloud.LoadBalancer{ID: "lb-12345678"},
			Listeners: []cloud.Listener{{ID: "lbl-1", ListenerSpec: cloud.ListenerSpec{Name: listenerName("uid-direct", key),
				Protocol: key.Protocol, Port: key.Port, HealthCheck: &cloud.HealthCheck{Enabled: true, CheckType: "HTTP", HTTPPath: "/healthz"}}}},
			Backends: map[string][]cloud.Backend{"lbl-1": {{IP: "10.0.0.2", Port: 8080, Weight: 10}}},
		})
		return c
	}
	whole, trim := withCache(svcs), withCache(trimAll(t, svcs))
	pods := podVariants()
	for i, pod := range pods {
		trimPod := trimmed(t, pods[i])
		// Targets come in the order the Services were found, which map
		// order decides.
		same(t, "Expect of "+pod.Name, byServiceAndListener(whole.Expect(pod)), byServiceAndListener(trim.Expect(trimPod)))
		// The webhook looks up the Pod of the admission review (whole) in
		// the trimmed cache.
		same(t, "SelectedByDirectAccess of "+pod.Name, whole.SelectedByDirectAccess(pod), trim.SelectedByDirectAccess(pod))
		var names, trimNames []string
		for _, s := range whole.servicesSelecting(pod) {
			names = append(names, s.Name)
		}
		for _, s := range trim.servicesSelecting(trimPod) {
			trimNames = append(trimNames, s.Name)
		}
		slices.Sort(names)
		slices.Sort(trimNames)
		same(t, "servicesSelecting of "+pod.Name, names, trimNames)
	}
}

func byServiceAndListener(exp readiness.Expectation) readiness.Expectation {
	slices.SortFunc(exp.Targets, func(a, b readiness.Target) int {
		return cmp.Or(strings.Compare(a.Service, b.Service), strings.Compare(a.Listener, b.Listener))
	})
	return exp
}

func TestTrimForCacheKeepsOnlyWhatIsRead(t *testing.T) {
	always := v1.ContainerRestartPolicyAlways
	tests := []struct {
		name        string
		whole, want any
	}{{
		name:  "pod",
		whole: wholePod("web-1", "10.0.0.1"),
		want: &v1.Pod{
			TypeMeta: metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web-1", UID: "uid-web-1", ResourceVersion: "4711", CreationTimestamp: trimT0,
				Labels: map[string]string{"app": "web", "pod-template-hash": "7d9f8b6c5d", "tier": "frontend",
					"app.kubernetes.io/version": "1.2.3", "app.kubernetes.io/part-of": "shop"},
				Annotations: map[string]string{AnnotationPodNetworks: "tke-route-eni"},
			},
			Spec: v1.PodSpec{
				InitContainers: []v1.Container{{Name: "proxy", RestartPolicy: &always,
					Ports: []v1.ContainerPort{{Name: "proxy", ContainerPort: 15001, Protocol: v1.ProtocolTCP}}}},
				Containers: []v1.Container{{Name: "app",
					Ports:     []v1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: v1.ProtocolTCP}, {Name: "dns", ContainerPort: 5353, Protocol: v1.ProtocolUDP}},
					Resources: v1.ResourceRequirements{Requests: v1.ResourceList{ResourceENIIP: resource.MustParse("1")}}}},
				NodeName:       "node-1",
				ReadinessGates: []v1.PodReadinessGate{{ConditionType: readiness.GateConditionType}},
			},
			Status: v1.PodStatus{
				Phase: v1.PodRunning, PodIP: "10.0.0.1",
				Conditions: []v1.PodCondition{
					{Type: readiness.GateConditionType, Status: v1.ConditionTrue, Reason: readiness.ReasonReady,
						Message: "registered and healthy on CLB lb-1 listener TCP:80 (lbl-1)", LastTransitionTime: trimT2},
					{Type: v1.PodReady, Status: v1.ConditionTrue, LastTransitionTime: trimT2},
					{Type: v1.ContainersReady, Status: v1.ConditionTrue, LastTransitionTime: trimT1},
				},
			},
		},
	}, {
		name: "pod with its ENI resource in an init container's limits and another gate",
		whole: wholePod("web-2", "10.0.0.2", noENI, func(p *v1.Pod) {
			p.Spec.InitContainers[0].Resources.Limits[ResourceENIIP] = resource.MustParse("1")
			p.Spec.Containers[1].Resources.Requests[ResourceDirectENI] = resource.MustParse("1")
			p.Spec.ReadinessGates = []v1.PodReadinessGate{{ConditionType: v1.PodScheduled}}
			p.Labels = nil
		}),
		want: &v1.Pod{
			TypeMeta:   metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web-2", UID: "uid-web-2", ResourceVersion: "4711", CreationTimestamp: trimT0},
			Spec: v1.PodSpec{
				InitContainers: []v1.Container{{Name: "proxy", RestartPolicy: &always,
					Ports: []v1.ContainerPort{{Name: "proxy", ContainerPort: 15001, Protocol: v1.ProtocolTCP}}}},
				Containers: []v1.Container{
					{Name: "app", Ports: []v1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: v1.ProtocolTCP}, {Name: "dns", ContainerPort: 5353, Protocol: v1.ProtocolUDP}}},
					// The first ENI resource found, as podNetworkMode looks:
					// containers first.
					{Name: "logger", Resources: v1.ResourceRequirements{Requests: v1.ResourceList{ResourceDirectENI: resource.MustParse("1")}}},
				},
				NodeName:       "node-1",
				ReadinessGates: []v1.PodReadinessGate{{ConditionType: v1.PodScheduled}},
			},
			Status: v1.PodStatus{
				Phase: v1.PodRunning, PodIP: "10.0.0.2",
				Conditions: []v1.PodCondition{
					{Type: readiness.GateConditionType, Status: v1.ConditionTrue, Reason: readiness.ReasonReady,
						Message: "registered and healthy on CLB lb-1 listener TCP:80 (lbl-1)", LastTransitionTime: trimT2},
					{Type: v1.PodReady, Status: v1.ConditionTrue, LastTransitionTime: trimT2},
					{Type: v1.ContainersReady, Status: v1.ConditionTrue, LastTransitionTime: trimT1},
					{Type: v1.PodScheduled, Status: v1.ConditionTrue},
				},
			},
		},
	}, {
		name:  "service",
		whole: wholeService("web", annotate(AnnotationTkeServiceConfig, "tuned")),
		want: &v1.Service{
			TypeMeta: metav1.TypeMeta{Kind: "Service", APIVersion: "v1"},
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web", UID: "uid-web", ResourceVersion: "99",
				Annotations: map[string]string{AnnotationDirectAccess: "true", AnnotationBackendWeight: "30", AnnotationLoadBalancerID: "lb-12345678",
					AnnotationPreviousLoadBalancers: "lb-aaaa,lb-bbbb", AnnotationTkeServiceConfig: "tuned"},
				Finalizers: []string{Finalizer, "example.com/other"},
			},
			Spec: v1.ServiceSpec{
				Type:     v1.ServiceTypeLoadBalancer,
				Selector: map[string]string{"app": "web", "tier": "frontend"},
				Ports: []v1.ServicePort{
					{Protocol: v1.ProtocolTCP, Port: 80, TargetPort: intstr.FromString("http"), NodePort: 30080},
					{Protocol: v1.ProtocolTCP, Port: 9100, TargetPort: intstr.FromInt32(9100), NodePort: 30091},
					{Protocol: v1.ProtocolUDP, Port: 53, TargetPort: intstr.FromString("dns"), NodePort: 30053},
					{Protocol: v1.ProtocolTCP, Port: 15001, TargetPort: intstr.FromString("proxy"), NodePort: 31501},
					{Protocol: v1.ProtocolSCTP, Port: 36412, NodePort: 31412},
					{Port: 8443, NodePort: 31443},
				},
				ExternalTrafficPolicy: v1.ServiceExternalTrafficPolicyCluster,
			},
			Status: v1.ServiceStatus{LoadBalancer: v1.LoadBalancerStatus{Ingress: []v1.LoadBalancerIngress{{IP: "203.0.113.7"}}}},
		},
	}, {
		name:  "node",
		whole: wholeNode("node-1", func(n *v1.Node) { n.Labels[v1.LabelNodeExcludeBalancers] = "true"; n.Spec.Unschedulable = true }),
		want: &v1.Node{
			TypeMeta: metav1.TypeMeta{Kind: "Node", APIVersion: "v1"},
			ObjectMeta: metav1.ObjectMeta{Name: "node-1", UID: "uid-node-1", ResourceVersion: "12",
				Labels: map[string]string{v1.LabelNodeExcludeBalancers: "true"}},
			Spec:   v1.NodeSpec{ProviderID: "qcloud:///100003/ins-node-1", Unschedulable: true},
			Status: v1.NodeStatus{Conditions: []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue}}},
		},
	}, {
		name: "configmap",
		whole: &v1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: ServiceControllerConfigNamespace, Name: ServiceControllerConfigName, UID: "uid-cm",
				ResourceVersion: "5", Labels: map[string]string{"a": "b"}, ManagedFields: managedFields()},
			Data:       map[string]string{GlobalRouteDirectAccessKey: "true", "Other": strings.Repeat("x", 1000)},
			BinaryData: map[string][]byte{"blob": make([]byte, 1000)},
		},
		want: &v1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: ServiceControllerConfigNamespace, Name: ServiceControllerConfigName, UID: "uid-cm", ResourceVersion: "5"},
			Data:       map[string]string{GlobalRouteDirectAccessKey: "true"},
		},
	}, {
		name: "anything else loses only its managed fields",
		whole: &v1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web", Labels: map[string]string{"a": "b"}, ManagedFields: managedFields()},
			Data: map[string][]byte{"key": []byte("value")}},
		want: &v1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web", Labels: map[string]string{"a": "b"}},
			Data: map[string][]byte{"key": []byte("value")}},
	}, {
		name:  "a tombstone passes through",
		whole: cache.DeletedFinalStateUnknown{Key: "ns/web-1", Obj: wholePod("web-1", "10.0.0.1")},
		want:  cache.DeletedFinalStateUnknown{Key: "ns/web-1", Obj: wholePod("web-1", "10.0.0.1")},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := TrimForCache(tt.whole)
			if err != nil {
				t.Fatal(err)
			}
			if diff := gocmp.Diff(tt.want, got); diff != "" {
				t.Errorf("TrimForCache (-want +got):\n%s", diff)
			}
			again, err := TrimForCache(got)
			if err != nil {
				t.Fatal(err)
			}
			if diff := gocmp.Diff(got, again); diff != "" {
				t.Errorf("TrimForCache is not idempotent (-once +twice):\n%s", diff)
			}
		})
	}
}

func TestTrimForCacheLeavesItsInputAlone(t *testing.T) {
	for _, obj := range []interface {
		DeepCopyObject() runtime.Object
	}{wholePod("web-1", "10.0.0.1"), wholeService("web"), wholeNode("node-1")} {
		before := obj.DeepCopyObject()
		if _, err := TrimForCache(obj); err != nil {
			t.Fatal(err)
		}
		if diff := gocmp.Diff(before, obj); diff != "" {
			t.Errorf("TrimForCache changed its input (-before +after):\n%s", diff)
		}
	}
}

// TestTrimForCacheKeepsEveryServiceAnnotation checks the prefixes cover
// every Service annotation the controller reads or writes, and that a
// Pod keeps the one annotation read from it.
func TestTrimForCacheKeepsEveryAnnotationTheControllerUses(t *testing.T) {
	all := []string{AnnotationDirectAccess, AnnotationBackendWeight, AnnotationGraceShutdown, AnnotationGraceShutdownTKEx,
		AnnotationExistingLoadBalancer, AnnotationInternalSubnet, AnnotationExtensiveParameters, AnnotationTkeServiceConfig,
		AnnotationTkeServiceConfigAuto, AnnotationPreviousLoadBalancers, AnnotationLoadBalancerID}
	svc := &v1.Service{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{"example.com/foreign": "x"}}}
	for _, a := range all {
		svc.Annotations[a] = "v"
	}
	got := trimmed(t, svc).Annotations
	for _, a := range all {
		if _, ok := got[a]; !ok {
			t.Errorf("annotation %s is dropped from Services", a)
		}
	}
	if _, ok := got["example.com/foreign"]; ok {
		t.Errorf("a foreign annotation is kept")
	}
}

// TestTrimForCacheShrinksAPod reports how much smaller a Pod gets; the
// bound only catches a trim that stopped trimming.
func TestTrimForCacheShrinksAPod(t *testing.T) {
	whole := wholePod("web-1", "10.0.0.1")
	wholeJSON, err := json.Marshal(whole)
	if err != nil {
		t.Fatal(err)
	}
	trimJSON, err := json.Marshal(trimmed(t, whole))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("a Pod of %d bytes of JSON keeps %d", len(wholeJSON), len(trimJSON))
	if len(trimJSON)*3 > len(wholeJSON) {
		t.Errorf("the trimmed Pod is %d bytes of JSON, more than a third of the whole Pod's %d", len(trimJSON), len(wholeJSON))
	}
}
