package controller

import (
	"fmt"
	"math/rand"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"clb-direct/cloud"
)

// unitUID is the UID of the Service the unit tests build state for.
const unitUID types.UID = "uid-1"

// mkPod is a running Pod with the given IP whose containers are ready and
// which is Ready, with one container and no ports; opts change it.
func mkPod(name, ip string, opts ...func(*v1.Pod)) *v1.Pod {
	p := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name},
		Spec:       v1.PodSpec{Containers: []v1.Container{{Name: "app"}}},
		Status: v1.PodStatus{Phase: v1.PodRunning, PodIP: ip, Conditions: []v1.PodCondition{
			{Type: v1.ContainersReady, Status: v1.ConditionTrue},
			{Type: v1.PodReady, Status: v1.ConditionTrue},
		}},
	}
	for _, opt := range opts {
		opt(p)
	}
	return p
}

// podPort adds a named port to the Pod's first container.
func podPort(name string, port int32, protocol v1.Protocol) func(*v1.Pod) {
	return func(p *v1.Pod) {
		p.Spec.Containers[0].Ports = append(p.Spec.Containers[0].Ports,
			v1.ContainerPort{Name: name, ContainerPort: port, Protocol: protocol})
	}
}

// podInitPort adds an init container with a named port; sidecar makes it a
// native sidecar (restartPolicy Always).
func podInitPort(sidecar bool, name string, port int32, protocol v1.Protocol) func(*v1.Pod) {
	return func(p *v1.Pod) {
		c := v1.Container{Name: "init-" + name, Ports: []v1.ContainerPort{{Name: name, ContainerPort: port, Protocol: protocol}}}
		if sidecar {
			always := v1.ContainerRestartPolicyAlways
			c.RestartPolicy = &always
		}
		p.Spec.InitContainers = append(p.Spec.InitContainers, c)
	}
}

// podCondition sets a condition, replacing one of the same type.
func podCondition(conditionType v1.PodConditionType, status v1.ConditionStatus) func(*v1.Pod) {
	return func(p *v1.Pod) {
		for i := range p.Status.Conditions {
			if p.Status.Conditions[i].Type == conditionType {
				p.Status.Conditions[i].Status = status
				return
			}
		}
		p.Status.Conditions = append(p.Status.Conditions, v1.PodCondition{Type: conditionType, Status: status})
	}
}

// podGates declares readiness gates.
func podGates(gates ...v1.PodConditionType) func(*v1.Pod) {
	return func(p *v1.Pod) {
		for _, g := range gates {
			p.Spec.ReadinessGates = append(p.Spec.ReadinessGates, v1.PodReadinessGate{ConditionType: g})
		}
	}
}

// podUnready: neither the containers nor the Pod are ready.
func podUnready(p *v1.Pod) {
	podCondition(v1.ContainersReady, v1.ConditionFalse)(p)
	podCondition(v1.PodReady, v1.ConditionFalse)(p)
}

// podGatePending: containers ready, Pod not Ready (as while a readiness
// gate is unmet).
func podGatePending(p *v1.Pod) {
	podCondition(v1.ContainersReady, v1.ConditionTrue)(p)
	podCondition(v1.PodReady, v1.ConditionFalse)(p)
}

func podTerminating(p *v1.Pod) {
	now := metav1.Now()
	p.DeletionTimestamp = &now
}

func podHostNetwork(p *v1.Pod) { p.Spec.HostNetwork = true }

func podPhase(phase v1.PodPhase) func(*v1.Pod) {
	return func(p *v1.Pod) { p.Status.Phase = phase }
}

// mkService is a Service with unitUID and the given ports.
func mkService(ports ...v1.ServicePort) *v1.Service {
	return &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "svc", UID: unitUID},
		Spec:       v1.ServiceSpec{Type: v1.ServiceTypeLoadBalancer, Ports: ports},
	}
}

func svcPort(protocol v1.Protocol, port int32, target intstr.IntOrString) v1.ServicePort {
	return v1.ServicePort{Protocol: protocol, Port: port, TargetPort: target}
}

// mkBackend is a Pod backend with the default weight.
func mkBackend(ip string, port int32) cloud.Backend {
	return cloud.Backend{IP: ip, Port: port, Weight: DefaultBackendWeight}
}

// mkListener is the desired listener of unitUID on a port.
func mkListener(protocol cloud.Protocol, port int32, backends ...cloud.Backend) DesiredListener {
	key := ListenerKey{Protocol: protocol, Port: port}
	return DesiredListener{ListenerKey: key, Name: listenerName(unitUID, key), Backends: backends}
}

var (
	tcp80to8080 = svcPort(v1.ProtocolTCP, 80, intstr.FromInt32(8080))
	tcp80toHTTP = svcPort(v1.ProtocolTCP, 80, intstr.FromString("http"))
	defaultCfg  = ServiceConfig{DirectAccess: true, BackendWeight: DefaultBackendWeight}
)

func TestDesiredListenerNameAndOwnership(t *testing.T) {
	key := ListenerKey{Protocol: cloud.ProtocolUDP, Port: 53}
	if got, want := listenerName("uid-1", key), "clbdirect_uid-1_UDP_53"; got != want {
		t.Errorf("listenerName() = %q, want %q", got, want)
	}
	tests := []struct {
		name string
		want bool
	}{
		{listenerName("uid-1", key), true},
		{listenerName("uid-1", ListenerKey{Protocol: cloud.ProtocolTCP, Port: 80}), true},
		{listenerName("uid-2", key), false},
		// A UID that extends ours is another Service's.
		{listenerName("uid-10", key), false},
		{"clbdirect_uid-1", false},
		{"my-listener", false},
		{"", false},
	}
	for _, tt := range tests {
		l := cloud.Listener{ID: "lbl-1", ListenerSpec: cloud.ListenerSpec{Name: tt.name, Protocol: key.Protocol, Port: key.Port}}
		if got := ownsListener("uid-1", l); got != tt.want {
			t.Errorf("ownsListener(uid-1, %q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestBuildDesiredState(t *testing.T) {
	const otherGate v1.PodConditionType = "example.com/other-gate"
	tests := []struct {
		name string
		svc  *v1.Service    // nil: one TCP port 80 to 8080
		cfg  *ServiceConfig // nil: defaultCfg
		pods []*v1.Pod
		want []DesiredListener
		// wantProblems holds, for each problem in order, fragments it must
		// contain.
		wantProblems [][]string
	}{
		{
			name: "ready pod",
			pods: []*v1.Pod{mkPod("web-1", "10.0.0.1")},
			want: []DesiredListener{mkListener(cloud.ProtocolTCP, 80, mkBackend("10.0.0.1", 8080))},
		},
		{
			name: "no pods gives a listener without backends",
			want: []DesiredListener{mkListener(cloud.ProtocolTCP, 80)},
		},
		{
			name: "named target port resolves per pod",
			svc:  mkService(tcp80toHTTP),
			pods: []*v1.Pod{
				mkPod("web-2", "10.0.0.2", podPort("http", 9090, v1.ProtocolTCP)),
				mkPod("web-1", "10.0.0.1", podPort("metrics", 9100, v1.ProtocolTCP), podPort("http", 8080, v1.ProtocolTCP)),
			},
			want: []DesiredListener{mkListener(cloud.ProtocolTCP, 80, mkBackend("10.0.0.1", 8080), mkBackend("10.0.0.2", 9090))},
		},
		{
			name: "named port missing on one pod leaves it out of that port only",
			svc:  mkService(tcp80toHTTP, svcPort(v1.ProtocolTCP, 81, intstr.FromInt32(8081))),
			pods: []*v1.Pod{
				mkPod("web-1", "10.0.0.1", podPort("http", 8080, v1.ProtocolTCP)),
				mkPod("web-noport", "10.0.0.2"),
			},
			want: []DesiredListener{
				mkListener(cloud.ProtocolTCP, 80, mkBackend("10.0.0.1", 8080)),
				mkListener(cloud.ProtocolTCP, 81, mkBackend("10.0.0.1", 8081), mkBackend("10.0.0.2", 8081)),
			},
			wantProblems: [][]string{{"port 80", `"http"`, "TCP container port", "Pods web-noport"}},
		},
		{
			name: "container port without protocol is TCP",
			svc:  mkService(tcp80toHTTP),
			pods: []*v1.Pod{mkPod("web-1", "10.0.0.1", podPort("http", 8080, ""))},
			want: []DesiredListener{mkListener(cloud.ProtocolTCP, 80, mkBackend("10.0.0.1", 8080))},
		},
		{
			name: "service port without protocol is TCP",
			svc:  mkService(svcPort("", 80, intstr.FromString("http"))),
			pods: []*v1.Pod{
				mkPod("web-1", "10.0.0.1", podPort("http", 8080, v1.ProtocolTCP)),
				mkPod("web-2", "10.0.0.2", podPort("http", 8080, v1.ProtocolUDP)),
			},
			want:         []DesiredListener{mkListener(cloud.ProtocolTCP, 80, mkBackend("10.0.0.1", 8080))},
			wantProblems: [][]string{{"port 80", "not a TCP container port", "web-2"}},
		},
		{
			name: "many pods missing a port are summarized",
			svc:  mkService(tcp80toHTTP),
			pods: []*v1.Pod{
				mkPod("p7", "10.0.0.7"), mkPod("p1", "10.0.0.1"), mkPod("p3", "10.0.0.3"), mkPod("p2", "10.0.0.2"),
				mkPod("p6", "10.0.0.6"), mkPod("p5", "10.0.0.5"), mkPod("p4", "10.0.0.4"),
			},
			want:         []DesiredListener{mkListener(cloud.ProtocolTCP, 80)},
			wantProblems: [][]string{{"Pods p1, p2, p3, p4, p5 and 2 more"}},
		},
		{
			name: "multi-port service gives sorted listeners",
			svc: mkService(
				svcPort(v1.ProtocolUDP, 53, intstr.FromInt32(53)),
				svcPort(v1.ProtocolTCP, 443, intstr.FromInt32(8443)),
				tcp80to8080,
			),
			pods: []*v1.Pod{mkPod("web-1", "10.0.0.1")},
			want: []DesiredListener{
				mkListener(cloud.ProtocolTCP, 80, mkBackend("10.0.0.1", 8080)),
				mkListener(cloud.ProtocolTCP, 443, mkBackend("10.0.0.1", 8443)),
				mkListener(cloud.ProtocolUDP, 53, mkBackend("10.0.0.1", 53)),
			},
		},
		{
			name: "named UDP port does not match a TCP container port of the same name",
			svc:  mkService(svcPort(v1.ProtocolUDP, 53, intstr.FromString("dns"))),
			pods: []*v1.Pod{
				mkPod("web-tcp", "10.0.0.1", podPort("dns", 5353, v1.ProtocolTCP)),
				mkPod("web-udp", "10.0.0.2", podPort("dns", 5300, v1.ProtocolUDP)),
			},
			want:         []DesiredListener{mkListener(cloud.ProtocolUDP, 53, mkBackend("10.0.0.2", 5300))},
			wantProblems: [][]string{{"port 53", `"dns"`, "UDP container port", "Pods web-tcp"}},
		},
		{
			name:         "SCTP port is a problem and gets no listener",
			svc:          mkService(svcPort(v1.ProtocolSCTP, 9000, intstr.FromInt32(9000)), tcp80to8080),
			pods:         []*v1.Pod{mkPod("web-1", "10.0.0.1")},
			want:         []DesiredListener{mkListener(cloud.ProtocolTCP, 80, mkBackend("10.0.0.1", 8080))},
			wantProblems: [][]string{{"port 9000", "SCTP"}},
		},
		{
			name: "terminating pod is excluded",
			pods: []*v1.Pod{mkPod("web-1", "10.0.0.1"), mkPod("web-2", "10.0.0.2", podTerminating)},
			want: []DesiredListener{mkListener(cloud.ProtocolTCP, 80, mkBackend("10.0.0.1", 8080))},
		},
		{
			name: "grace shutdown keeps a terminating pod at weight 0",
			cfg:  &ServiceConfig{DirectAccess: true, BackendWeight: DefaultBackendWeight, GraceShutdown: true},
			pods: []*v1.Pod{mkPod("web-1", "10.0.0.1"), mkPod("web-2", "10.0.0.2", podTerminating), mkPod("web-3", "10.0.0.3", podUnready)},
			want: []DesiredListener{mkListener(cloud.ProtocolTCP, 80, mkBackend("10.0.0.1", 8080), weighted(mkBackend("10.0.0.2", 8080), 0))},
		},
		{
			name: "grace shutdown tkex keeps an unready pod at weight 0, not a terminating one",
			cfg:  &ServiceConfig{DirectAccess: true, BackendWeight: DefaultBackendWeight, GraceShutdownTKEx: true},
			pods: []*v1.Pod{mkPod("web-1", "10.0.0.1"), mkPod("web-2", "10.0.0.2", podTerminating), mkPod("web-3", "10.0.0.3", podUnready)},
			want: []DesiredListener{mkListener(cloud.ProtocolTCP, 80, mkBackend("10.0.0.1", 8080), weighted(mkBackend("10.0.0.3", 8080), 0))},
		},
		{
			name: "grace shutdown: a terminating pod and its successor on the same IP, the live one wins",
			cfg:  &ServiceConfig{DirectAccess: true, BackendWeight: DefaultBackendWeight, GraceShutdown: true},
			pods: []*v1.Pod{mkPod("old", "10.0.0.1", podTerminating), mkPod("new", "10.0.0.1")},
			want: []DesiredListener{mkListener(cloud.ProtocolTCP, 80, mkBackend("10.0.0.1", 8080))},
		},
		{
			name: "grace shutdown: a finished pod is gone, whatever its deletion state",
			cfg:  &ServiceConfig{DirectAccess: true, BackendWeight: DefaultBackendWeight, GraceShutdown: true, GraceShutdownTKEx: true},
			pods: []*v1.Pod{mkPod("done", "10.0.0.1", podTerminating, podPhase(v1.PodSucceeded)), mkPod("failed", "10.0.0.2", podPhase(v1.PodFailed))},
			want: []DesiredListener{mkListener(cloud.ProtocolTCP, 80)},
		},
		{
			name: "pod with unready containers is excluded",
			pods: []*v1.Pod{mkPod("web-1", "10.0.0.1", podUnready), mkPod("web-2", "10.0.0.2")},
			want: []DesiredListener{mkListener(cloud.ProtocolTCP, 80, mkBackend("10.0.0.2", 8080))},
		},
		{
			name: "pod with unready containers is excluded even with our gate",
			pods: []*v1.Pod{mkPod("web-1", "10.0.0.1", podUnready, podGates(ReadinessGate))},
			want: []DesiredListener{mkListener(cloud.ProtocolTCP, 80)},
		},
		{
			name: "pod waiting only on our gate is included",
			pods: []*v1.Pod{
				// Gate condition not reported yet.
				mkPod("web-1", "10.0.0.1", podGatePending, podGates(ReadinessGate)),
				// Gate condition reported False.
				mkPod("web-2", "10.0.0.2", podGatePending, podGates(ReadinessGate), podCondition(ReadinessGate, v1.ConditionFalse)),
				// Another gate, already met.
				mkPod("web-3", "10.0.0.3", podGatePending, podGates(otherGate, ReadinessGate), podCondition(otherGate, v1.ConditionTrue)),
			},
			want: []DesiredListener{mkListener(cloud.ProtocolTCP, 80,
				mkBackend("10.0.0.1", 8080), mkBackend("10.0.0.2", 8080), mkBackend("10.0.0.3", 8080))},
		},
		{
			name: "pod waiting on another gate besides ours is excluded",
			pods: []*v1.Pod{
				mkPod("web-1", "10.0.0.1", podGatePending, podGates(ReadinessGate, otherGate)),
				mkPod("web-2", "10.0.0.2", podGatePending, podGates(otherGate, ReadinessGate), podCondition(otherGate, v1.ConditionFalse)),
			},
			want: []DesiredListener{mkListener(cloud.ProtocolTCP, 80)},
		},
		{
			name: "pod not Ready without our gate is excluded",
			pods: []*v1.Pod{
				mkPod("web-1", "10.0.0.1", podGatePending),
				mkPod("web-2", "10.0.0.2", podGatePending, podGates(otherGate)),
			},
			want: []DesiredListener{mkListener(cloud.ProtocolTCP, 80)},
		},
		{
			name: "pod without IP is excluded silently",
			pods: []*v1.Pod{mkPod("web-1", ""), mkPod("web-2", "10.0.0.2")},
			want: []DesiredListener{mkListener(cloud.ProtocolTCP, 80, mkBackend("10.0.0.2", 8080))},
		},
		{
			name:         "hostNetwork pod is excluded with a problem",
			pods:         []*v1.Pod{mkPod("web-host", "192.168.0.5", podHostNetwork), mkPod("web-1", "10.0.0.1")},
			want:         []DesiredListener{mkListener(cloud.ProtocolTCP, 80, mkBackend("10.0.0.1", 8080))},
			wantProblems: [][]string{{"hostNetwork", "web-host"}},
		},
		{
			name: "succeeded and failed pods are excluded",
			pods: []*v1.Pod{
				mkPod("web-done", "10.0.0.1", podPhase(v1.PodSucceeded)),
				mkPod("web-failed", "10.0.0.2", podPhase(v1.PodFailed)),
				mkPod("web-1", "10.0.0.3"),
			},
			want: []DesiredListener{mkListener(cloud.ProtocolTCP, 80, mkBackend("10.0.0.3", 8080))},
		},
		{
			name: "weight from the config",
			cfg:  &ServiceConfig{DirectAccess: true, BackendWeight: 55},
			pods: []*v1.Pod{mkPod("web-1", "10.0.0.1"), mkPod("web-2", "10.0.0.2")},
			want: []DesiredListener{mkListener(cloud.ProtocolTCP, 80,
				cloud.Backend{IP: "10.0.0.1", Port: 8080, Weight: 55}, cloud.Backend{IP: "10.0.0.2", Port: 8080, Weight: 55})},
		},
		{
			name: "weight zero from the config",
			cfg:  &ServiceConfig{DirectAccess: true, BackendWeight: 0},
			pods: []*v1.Pod{mkPod("web-1", "10.0.0.1")},
			want: []DesiredListener{mkListener(cloud.ProtocolTCP, 80, cloud.Backend{IP: "10.0.0.1", Port: 8080, Weight: 0})},
		},
		{
			name: "unset target port is the service port",
			svc:  mkService(svcPort(v1.ProtocolTCP, 80, intstr.IntOrString{}), svcPort(v1.ProtocolTCP, 81, intstr.FromString(""))),
			pods: []*v1.Pod{mkPod("web-1", "10.0.0.1")},
			want: []DesiredListener{
				mkListener(cloud.ProtocolTCP, 80, mkBackend("10.0.0.1", 80)),
				mkListener(cloud.ProtocolTCP, 81, mkBackend("10.0.0.1", 81)),
			},
		},
		{
			name: "two pods with the same IP give one backend",
			pods: []*v1.Pod{mkPod("web-stale", "10.0.0.1"), mkPod("web-2", "10.0.0.2"), mkPod("web-1", "10.0.0.1")},
			want: []DesiredListener{mkListener(cloud.ProtocolTCP, 80, mkBackend("10.0.0.1", 8080), mkBackend("10.0.0.2", 8080))},
		},
		{
			name: "named port on a sidecar resolves, on a plain init container does not",
			svc:  mkService(tcp80toHTTP),
			pods: []*v1.Pod{
				mkPod("web-sidecar", "10.0.0.1", podInitPort(true, "http", 15001, v1.ProtocolTCP)),
				mkPod("web-init", "10.0.0.2", podInitPort(false, "http", 15001, v1.ProtocolTCP)),
				// The main containers win over a sidecar.
				mkPod("web-both", "10.0.0.3", podInitPort(true, "http", 15001, v1.ProtocolTCP), podPort("http", 8080, v1.ProtocolTCP)),
			},
			want:         []DesiredListener{mkListener(cloud.ProtocolTCP, 80, mkBackend("10.0.0.1", 15001), mkBackend("10.0.0.3", 8080))},
			wantProblems: [][]string{{"port 80", "Pods web-init"}},
		},
		{
			name: "problems in order: hostNetwork, then per port",
			svc:  mkService(tcp80toHTTP, svcPort(v1.ProtocolSCTP, 9000, intstr.FromInt32(9000))),
			pods: []*v1.Pod{mkPod("web-host-b", "192.168.0.6", podHostNetwork), mkPod("web-host-a", "192.168.0.5", podHostNetwork), mkPod("web-1", "10.0.0.1")},
			want: []DesiredListener{mkListener(cloud.ProtocolTCP, 80)},
			wantProblems: [][]string{
				{"hostNetwork", "web-host-a, web-host-b"},
				{"port 80", "Pods web-1"},
				{"port 9000", "SCTP"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := tt.svc
			if svc == nil {
				svc = mkService(tcp80to8080)
			}
			cfg := defaultCfg
			if tt.cfg != nil {
				cfg = *tt.cfg
			}
			got := buildDesiredState(svc, cfg, tt.pods)
			if diff := cmp.Diff(tt.want, got.Listeners, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("buildDesiredState() listeners (-want +got):\n%s", diff)
			}
			checkProblems(t, got.Problems, tt.wantProblems)
		})
	}
}

func checkProblems(t *testing.T, got []string, want [][]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("problems = %q, want %d problems containing %q", got, len(want), want)
	}
	for i, frags := range want {
		for _, frag := range frags {
			if !strings.Contains(got[i], frag) {
				t.Errorf("problem %d = %q, want it to contain %q", i, got[i], frag)
			}
		}
	}
}

// The output does not depend on the order the informer lists Pods in.
func TestBuildDesiredStateIsDeterministic(t *testing.T) {
	svc := mkService(tcp80toHTTP, svcPort(v1.ProtocolUDP, 53, intstr.FromInt32(5353)), tcp80to8080)
	svc.Spec.Ports[2].Port = 8000
	var pods []*v1.Pod
	for i := range 40 {
		ip := fmt.Sprintf("10.0.%d.%d", i%4, i)
		var opts []func(*v1.Pod)
		switch i % 5 {
		case 0:
			opts = append(opts, podPort("http", 8080, v1.ProtocolTCP))
		case 1:
			opts = append(opts, podPort("http", int32(9000+i), v1.ProtocolTCP))
		case 2: // no http port: a problem for port 80
		case 3:
			opts = append(opts, podHostNetwork)
		case 4:
			opts = append(opts, podPort("http", 8080, v1.ProtocolTCP), podGatePending, podGates(ReadinessGate))
		}
		pods = append(pods, mkPod(fmt.Sprintf("web-%02d", i), ip, opts...))
	}
	// Stale duplicates of some IPs, with and without the named port.
	pods = append(pods,
		mkPod("stale-1", pods[0].Status.PodIP, podPort("http", 8080, v1.ProtocolTCP)),
		mkPod("stale-2", pods[1].Status.PodIP, podPort("http", 7070, v1.ProtocolTCP)),
		mkPod("stale-3", pods[2].Status.PodIP))

	want := buildDesiredState(svc, defaultCfg, pods)
	if len(want.Listeners) != 3 || len(want.Problems) != 2 || len(want.Listeners[0].Backends) < 20 {
		t.Fatalf("fixture does not exercise enough: %+v", want)
	}
	rng := rand.New(rand.NewSource(1))
	for round := range 50 {
		shuffled := append([]*v1.Pod(nil), pods...)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		got := buildDesiredState(svc, defaultCfg, shuffled)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("round %d: output depends on Pod order (-first +shuffled):\n%s", round, diff)
		}
	}
}

func TestDesiredResolveTargetPort(t *testing.T) {
	pod := mkPod("web-1", "10.0.0.1",
		podPort("http", 8080, v1.ProtocolTCP),
		podPort("dns", 5353, v1.ProtocolUDP),
		podPort("plain", 7000, ""),
		podInitPort(true, "admin", 9901, v1.ProtocolTCP),
		podInitPort(false, "setup", 9902, v1.ProtocolTCP))
	tests := []struct {
		port   v1.ServicePort
		want   int32
		wantOK bool
	}{
		{svcPort(v1.ProtocolTCP, 80, intstr.FromInt32(8081)), 8081, true},
		{svcPort(v1.ProtocolTCP, 80, intstr.IntOrString{}), 80, true},
		{svcPort(v1.ProtocolTCP, 80, intstr.FromString("http")), 8080, true},
		{svcPort("", 80, intstr.FromString("http")), 8080, true},
		{svcPort(v1.ProtocolUDP, 80, intstr.FromString("http")), 0, false},
		{svcPort(v1.ProtocolUDP, 53, intstr.FromString("dns")), 5353, true},
		{svcPort(v1.ProtocolTCP, 53, intstr.FromString("dns")), 0, false},
		{svcPort(v1.ProtocolTCP, 70, intstr.FromString("plain")), 7000, true},
		{svcPort(v1.ProtocolTCP, 99, intstr.FromString("admin")), 9901, true},
		{svcPort(v1.ProtocolTCP, 99, intstr.FromString("setup")), 0, false},
		{svcPort(v1.ProtocolTCP, 80, intstr.FromString("nope")), 0, false},
	}
	for _, tt := range tests {
		got, ok := resolveTargetPort(tt.port, pod)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("resolveTargetPort(%s %d -> %s) = %d, %v; want %d, %v",
				tt.port.Protocol, tt.port.Port, tt.port.TargetPort.String(), got, ok, tt.want, tt.wantOK)
		}
	}
}
