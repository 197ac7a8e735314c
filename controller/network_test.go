package controller

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// podENIRequest puts an extended resource in the requests (or the limits)
// of the Pod's first container.
func podENIRequest(name v1.ResourceName, limits bool) func(*v1.Pod) {
	return func(p *v1.Pod) {
		list := v1.ResourceList{name: resource.MustParse("1")}
		if limits {
			p.Spec.Containers[0].Resources.Limits = list
		} else {
			p.Spec.Containers[0].Resources.Requests = list
		}
	}
}

func podNetworks(value string) func(*v1.Pod) {
	return func(p *v1.Pod) {
		if p.Annotations == nil {
			p.Annotations = map[string]string{}
		}
		p.Annotations[AnnotationPodNetworks] = value
	}
}

// vpcPod is a Ready Pod in VPC-CNI mode, grPod one in GlobalRouter mode.
func vpcPod(name, ip string, opts ...func(*v1.Pod)) *v1.Pod {
	return mkPod(name, ip, append([]func(*v1.Pod){podENIRequest(ResourceENIIP, false)}, opts...)...)
}

func grPod(name, ip string, opts ...func(*v1.Pod)) *v1.Pod { return mkPod(name, ip, opts...) }

func TestPodNetworkMode(t *testing.T) {
	tests := []struct {
		name string
		pod  *v1.Pod
		want NetworkMode
	}{
		{"plain Pod is GlobalRouter", mkPod("p", "10.0.0.1"), NetworkModeGlobalRouter},
		{"eni-ip request", mkPod("p", "10.0.0.1", podENIRequest(ResourceENIIP, false)), NetworkModeVPCCNI},
		{"eni-ip limit", mkPod("p", "10.0.0.1", podENIRequest(ResourceENIIP, true)), NetworkModeVPCCNI},
		{"direct-eni request", mkPod("p", "10.0.0.1", podENIRequest(ResourceDirectENI, false)), NetworkModeVPCCNI},
		{"eni-ip in a later container", mkPod("p", "10.0.0.1", func(p *v1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, v1.Container{Name: "sidecar", Resources: v1.ResourceRequirements{
				Requests: v1.ResourceList{ResourceENIIP: resource.MustParse("1")},
			}})
		}), NetworkModeVPCCNI},
		{"eni-ip in an init container", mkPod("p", "10.0.0.1", func(p *v1.Pod) {
			p.Spec.InitContainers = []v1.Container{{Name: "init", Resources: v1.ResourceRequirements{
				Limits: v1.ResourceList{ResourceENIIP: resource.MustParse("1")},
			}}}
		}), NetworkModeVPCCNI},
		{"other extended resource", mkPod("p", "10.0.0.1", podENIRequest("nvidia.com/gpu", false)), NetworkModeGlobalRouter},
		{"cpu and memory only", mkPod("p", "10.0.0.1", func(p *v1.Pod) {
			p.Spec.Containers[0].Resources.Requests = v1.ResourceList{
				v1.ResourceCPU: resource.MustParse("1"), v1.ResourceMemory: resource.MustParse("1Gi"),
			}
		}), NetworkModeGlobalRouter},
		{"annotation tke-route-eni", mkPod("p", "10.0.0.1", podNetworks("tke-route-eni")), NetworkModeVPCCNI},
		{"annotation tke-direct-eni in a list", mkPod("p", "10.0.0.1", podNetworks("tke-direct-eni,flannel")), NetworkModeVPCCNI},
		{"annotation with spaces", mkPod("p", "10.0.0.1", podNetworks("flannel, tke-route-eni")), NetworkModeVPCCNI},
		{"annotation namespace/name", mkPod("p", "10.0.0.1", podNetworks("kube-system/tke-route-eni")), NetworkModeVPCCNI},
		{"annotation name@interface", mkPod("p", "10.0.0.1", podNetworks("tke-route-eni@eth1")), NetworkModeVPCCNI},
		{"annotation JSON", mkPod("p", "10.0.0.1", podNetworks(`[{"name":"tke-route-eni"}]`)), NetworkModeVPCCNI},
		{"annotation tke-bridge", mkPod("p", "10.0.0.1", podNetworks("tke-bridge")), NetworkModeGlobalRouter},
		{"annotation names a longer network", mkPod("p", "10.0.0.1", podNetworks("tke-route-eni-v2")), NetworkModeGlobalRouter},
		{"annotation empty", mkPod("p", "10.0.0.1", podNetworks("")), NetworkModeGlobalRouter},
		{"other annotation key", mkPod("p", "10.0.0.1", func(p *v1.Pod) {
			p.Annotations = map[string]string{"k8s.v1.cni.cncf.io/networks": "tke-route-eni"}
		}), NetworkModeGlobalRouter},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := podNetworkMode(tt.pod); got != tt.want {
				t.Errorf("podNetworkMode() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCheckNetworkModes(t *testing.T) {
	tests := []struct {
		name                string
		pods                []*v1.Pod
		globalRouterAllowed bool
		wantModes           map[NetworkMode]int
		wantBlocked         bool
		// wantProblem lists substrings the problem must contain; nil
		// means no problem.
		wantProblem []string
	}{
		{
			name:      "no Pods",
			wantModes: map[NetworkMode]int{},
		},
		{
			name:      "VPC-CNI only",
			pods:      []*v1.Pod{vpcPod("a", "10.0.0.1"), vpcPod("b", "10.0.0.2")},
			wantModes: map[NetworkMode]int{NetworkModeVPCCNI: 2},
		},
		{
			name:                "GlobalRouter allowed",
			pods:                []*v1.Pod{grPod("a", "172.16.0.1")},
			globalRouterAllowed: true,
			wantModes:           map[NetworkMode]int{NetworkModeGlobalRouter: 1},
		},
		{
			name:        "GlobalRouter not allowed blocks and names the prerequisites",
			pods:        []*v1.Pod{grPod("a", "172.16.0.1"), grPod("b", "172.16.0.2")},
			wantModes:   map[NetworkMode]int{NetworkModeGlobalRouter: 2},
			wantBlocked: true,
			wantProblem: []string{"2 Pod(s) run in GlobalRouter mode", `GlobalRouteDirectAccess: "true"`,
				"kube-system/tke-service-controller-config", "security groups", "CCN", "left unchanged"},
		},
		{
			name:                "mixed modes with GlobalRouter allowed warn without blocking",
			pods:                []*v1.Pod{vpcPod("a", "10.0.0.1"), grPod("b", "172.16.0.1")},
			globalRouterAllowed: true,
			wantModes:           map[NetworkMode]int{NetworkModeVPCCNI: 1, NetworkModeGlobalRouter: 1},
			wantProblem:         []string{"mix network modes (1 VPC-CNI, 1 GlobalRouter)", "exactly one network mode"},
		},
		{
			name:        "mixed modes with GlobalRouter not allowed block and warn of both",
			pods:        []*v1.Pod{vpcPod("a", "10.0.0.1"), vpcPod("b", "10.0.0.2"), grPod("c", "172.16.0.1")},
			wantModes:   map[NetworkMode]int{NetworkModeVPCCNI: 2, NetworkModeGlobalRouter: 1},
			wantBlocked: true,
			wantProblem: []string{"1 Pod(s) run in GlobalRouter mode", "mix network modes (2 VPC-CNI, 1 GlobalRouter)"},
		},
		{
			name: "Pods that cannot be registered do not count",
			pods: []*v1.Pod{
				vpcPod("a", "10.0.0.1"),
				grPod("no-ip", ""),
				grPod("host", "192.168.0.1", podHostNetwork),
				grPod("done", "172.16.0.2", podPhase(v1.PodSucceeded)),
				grPod("failed", "172.16.0.3", podPhase(v1.PodFailed)),
			},
			wantModes: map[NetworkMode]int{NetworkModeVPCCNI: 1},
		},
		{
			name:        "terminating and unready Pods count: they may stay registered",
			pods:        []*v1.Pod{grPod("old", "172.16.0.1", podTerminating), grPod("new", "172.16.0.2", podUnready)},
			wantModes:   map[NetworkMode]int{NetworkModeGlobalRouter: 2},
			wantBlocked: true,
			wantProblem: []string{"2 Pod(s) run in GlobalRouter mode"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			modes, problem, blocked := checkNetworkModes(tt.pods, tt.globalRouterAllowed)
			if diff := cmp.Diff(tt.wantModes, modes); diff != "" {
				t.Errorf("modes (-want +got):\n%s", diff)
			}
			if blocked != tt.wantBlocked {
				t.Errorf("blocked = %v, want %v", blocked, tt.wantBlocked)
			}
			if tt.wantProblem == nil && problem != "" {
				t.Errorf("problem = %q, want none", problem)
			}
			if tt.wantProblem != nil && problem == "" {
				t.Errorf("problem is empty, want one containing %q", tt.wantProblem)
			}
			for _, s := range tt.wantProblem {
				if !strings.Contains(problem, s) {
					t.Errorf("problem = %q, want it to contain %q", problem, s)
				}
			}
		})
	}
}

func TestGlobalRouteDirectAccess(t *testing.T) {
	cm := func(data map[string]string) *v1.ConfigMap {
		return &v1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: ServiceControllerConfigNamespace, Name: ServiceControllerConfigName},
			Data:       data,
		}
	}
	tests := []struct {
		name    string
		cm      *v1.ConfigMap
		want    bool
		wantErr string
	}{
		{name: "no ConfigMap", cm: nil},
		{name: "no data", cm: cm(nil)},
		{name: "other keys only", cm: cm(map[string]string{"Other": "true"})},
		{name: "true", cm: cm(map[string]string{"GlobalRouteDirectAccess": "true"}), want: true},
		{name: "true with spaces", cm: cm(map[string]string{"GlobalRouteDirectAccess": " true\n"}), want: true},
		{name: "TRUE", cm: cm(map[string]string{"GlobalRouteDirectAccess": "TRUE"}), want: true},
		{name: "false", cm: cm(map[string]string{"GlobalRouteDirectAccess": "false"})},
		{name: "key is case sensitive", cm: cm(map[string]string{"globalRouteDirectAccess": "true"})},
		{
			name:    "invalid",
			cm:      cm(map[string]string{"GlobalRouteDirectAccess": "yes"}),
			wantErr: `ConfigMap kube-system/tke-service-controller-config key GlobalRouteDirectAccess="yes"`,
		},
		{
			name:    "empty value is invalid",
			cm:      cm(map[string]string{"GlobalRouteDirectAccess": ""}),
			wantErr: `GlobalRouteDirectAccess=""`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := globalRouteDirectAccess(tt.cm)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("globalRouteDirectAccess() error = %v, want one containing %q", err, tt.wantErr)
				}
				if got {
					t.Errorf("globalRouteDirectAccess() = true with an error")
				}
				return
			}
			if err != nil {
				t.Fatalf("globalRouteDirectAccess() error = %v", err)
			}
			if got != tt.want {
				t.Errorf("globalRouteDirectAccess() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestDirectAccessSupportedVersion(t *testing.T) {
	tests := []struct {
		gitVersion string
		want       bool
		wantErr    string
	}{
		{gitVersion: "v1.34.2", want: true},
		{gitVersion: "v1.13.0", want: true},
		{gitVersion: "v1.13.0+abc", want: true},
		// ParseSemantic would rank this below 1.13.0, a pre-release.
		{gitVersion: "v1.13.0-tke.1", want: true},
		{gitVersion: "v1.30.5-gke.1014001", want: true},
		{gitVersion: "1.20.6", want: true},
		{gitVersion: "v2.0.0", want: true},
		{gitVersion: "v1.12.4-tke.3", want: false},
		{gitVersion: "v1.12.99", want: false},
		{gitVersion: "v1.10.5", want: false},
		{gitVersion: "v0.0.0-master+$Format:%H$", wantErr: "build without version information"},
		{gitVersion: "v0.0.0", wantErr: "needs Kubernetes 1.13 or newer"},
		{gitVersion: "", wantErr: "cannot tell the Kubernetes version"},
		{gitVersion: "master", wantErr: `from "master"`},
		{gitVersion: "v1", wantErr: "cannot tell"},
	}
	for _, tt := range tests {
		t.Run(tt.gitVersion, func(t *testing.T) {
			got, err := directAccessSupported(tt.gitVersion)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("directAccessSupported(%q) error = %v, want one containing %q", tt.gitVersion, err, tt.wantErr)
				}
				if got {
					t.Errorf("directAccessSupported(%q) = true with an error", tt.gitVersion)
				}
				return
			}
			if err != nil {
				t.Fatalf("directAccessSupported(%q) error = %v", tt.gitVersion, err)
			}
			if got != tt.want {
				t.Errorf("directAccessSupported(%q) = %v, want %v", tt.gitVersion, got, tt.want)
			}
		})
	}
}
