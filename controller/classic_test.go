package controller

import (
	"fmt"
	"math/rand"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/sets"

	"clb-direct/cloud"
)

// classicNode is a Ready, schedulable Node of instance ins-<name>; opts
// change it.
func classicNode(name string, opts ...func(*v1.Node)) *v1.Node {
	n := &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       v1.NodeSpec{ProviderID: "qcloud:///800002/ins-" + name},
		Status: v1.NodeStatus{Conditions: []v1.NodeCondition{
			{Type: v1.NodeMemoryPressure, Status: v1.ConditionFalse},
			{Type: v1.NodeReady, Status: v1.ConditionTrue},
		}},
	}
	for _, opt := range opts {
		opt(n)
	}
	return n
}

func nodeUnschedulable(n *v1.Node) { n.Spec.Unschedulable = true }

func nodeReady(status v1.ConditionStatus) func(*v1.Node) {
	return func(n *v1.Node) { n.Status.Conditions[1].Status = status }
}

func nodeNoReadyCondition(n *v1.Node) { n.Status.Conditions = n.Status.Conditions[:1] }

func nodeDeleting(n *v1.Node) {
	now := metav1.Now()
	n.DeletionTimestamp = &now
}

func nodeLabel(key, value string) func(*v1.Node) {
	return func(n *v1.Node) { n.Labels = map[string]string{key: value} }
}

func nodeProviderID(id string) func(*v1.Node) {
	return func(n *v1.Node) { n.Spec.ProviderID = id }
}

// nodePortOf is a Service port with a nodePort.
func nodePortOf(protocol v1.Protocol, port, nodePort int32) v1.ServicePort {
	p := svcPort(protocol, port, intstr.FromInt32(port))
	p.NodePort = nodePort
	return p
}

func localPolicy(svc *v1.Service) *v1.Service {
	svc.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
	return svc
}

// nodeBackend is a Node backend with the default weight.
func nodeBackend(instanceID string, port int32) cloud.Backend {
	return cloud.Backend{InstanceID: instanceID, Port: port, Weight: DefaultBackendWeight}
}

func TestBuildClassicDesiredState(t *testing.T) {
	tcp80 := nodePortOf(v1.ProtocolTCP, 80, 30080)
	tests := []struct {
		name      string
		svc       *v1.Service
		cfg       ServiceConfig
		nodes     []*v1.Node
		endpoints sets.Set[string]
		want      DesiredState
	}{
		{
			name:  "every schedulable Ready Node on the nodePort",
			svc:   mkService(tcp80),
			cfg:   defaultCfg,
			nodes: []*v1.Node{classicNode("b"), classicNode("a")},
			want: DesiredState{Listeners: []DesiredListener{
				mkListener(cloud.ProtocolTCP, 80, nodeBackend("ins-a", 30080), nodeBackend("ins-b", 30080)),
			}},
		},
		{
			name: "Nodes that cannot take traffic are left out",
			svc:  mkService(tcp80),
			cfg:  defaultCfg,
			nodes: []*v1.Node{
				classicNode("ok"),
				classicNode("cordoned", nodeUnschedulable),
				classicNode("notready", nodeReady(v1.ConditionFalse)),
				classicNode("unknown", nodeReady(v1.ConditionUnknown)),
				classicNode("noreadycondition", nodeNoReadyCondition),
				classicNode("deleting", nodeDeleting),
				classicNode("excluded", nodeLabel(v1.LabelNodeExcludeBalancers, "true")),
				// The label's presence excludes, whatever its value.
				classicNode("excludedfalse", nodeLabel(v1.LabelNodeExcludeBalancers, "false")),
				classicNode("otherlabel", nodeLabel("node.kubernetes.io/instance-type", "S5")),
			},
			want: DesiredState{Listeners: []DesiredListener{
				mkListener(cloud.ProtocolTCP, 80, nodeBackend("ins-ok", 30080), nodeBackend("ins-otherlabel", 30080)),
			}},
		},
		{
			name:      "externalTrafficPolicy Local keeps only Nodes with a ready endpoint",
			svc:       localPolicy(mkService(tcp80)),
			cfg:       defaultCfg,
			nodes:     []*v1.Node{classicNode("a"), classicNode("b"), classicNode("c"), classicNode("d", nodeUnschedulable)},
			endpoints: sets.New("a", "c", "d", "gone"),
			want: DesiredState{Listeners: []DesiredListener{
				mkListener(cloud.ProtocolTCP, 80, nodeBackend("ins-a", 30080), nodeBackend("ins-c", 30080)),
			}},
		},
		{
			name:      "externalTrafficPolicy Cluster ignores endpoints",
			svc:       mkService(tcp80),
			cfg:       defaultCfg,
			nodes:     []*v1.Node{classicNode("a"), classicNode("b")},
			endpoints: sets.New("a"),
			want: DesiredState{Listeners: []DesiredListener{
				mkListener(cloud.ProtocolTCP, 80, nodeBackend("ins-a", 30080), nodeBackend("ins-b", 30080)),
			}},
		},
		{
			name:  "externalTrafficPolicy Local without endpoints keeps the listener empty",
			svc:   localPolicy(mkService(tcp80)),
			cfg:   defaultCfg,
			nodes: []*v1.Node{classicNode("a")},
			want:  DesiredState{Listeners: []DesiredListener{mkListener(cloud.ProtocolTCP, 80)}},
		},
		{
			name: "each port on its own nodePort, UDP too, listeners sorted",
			svc: mkService(
				nodePortOf(v1.ProtocolUDP, 53, 30053),
				nodePortOf(v1.ProtocolTCP, 443, 30443),
				nodePortOf("", 80, 30080),
			),
			cfg:   defaultCfg,
			nodes: []*v1.Node{classicNode("a"), classicNode("b")},
			want: DesiredState{Listeners: []DesiredListener{
				mkListener(cloud.ProtocolTCP, 80, nodeBackend("ins-a", 30080), nodeBackend("ins-b", 30080)),
				mkListener(cloud.ProtocolTCP, 443, nodeBackend("ins-a", 30443), nodeBackend("ins-b", 30443)),
				mkListener(cloud.ProtocolUDP, 53, nodeBackend("ins-a", 30053), nodeBackend("ins-b", 30053)),
			}},
		},
		{
			name:  "weight from the config",
			svc:   mkService(tcp80),
			cfg:   ServiceConfig{BackendWeight: 42},
			nodes: []*v1.Node{classicNode("a")},
			want: DesiredState{Listeners: []DesiredListener{
				mkListener(cloud.ProtocolTCP, 80, cloud.Backend{InstanceID: "ins-a", Port: 30080, Weight: 42}),
			}},
		},
		{
			name:  "weight 0 is kept",
			svc:   mkService(tcp80),
			cfg:   ServiceConfig{BackendWeight: 0},
			nodes: []*v1.Node{classicNode("a")},
			want: DesiredState{Listeners: []DesiredListener{
				mkListener(cloud.ProtocolTCP, 80, cloud.Backend{InstanceID: "ins-a", Port: 30080, Weight: 0}),
			}},
		},
		{
			name: "Nodes without an instance in providerID are a problem",
			svc:  mkService(tcp80),
			cfg:  defaultCfg,
			nodes: []*v1.Node{
				classicNode("a"),
				classicNode("z-empty", nodeProviderID("")),
				classicNode("y-aws", nodeProviderID("aws:///us-east-1a/i-0123456789")),
				// Not a candidate anyway: not reported.
				classicNode("x-cordoned", nodeProviderID(""), nodeUnschedulable),
			},
			want: DesiredState{
				Listeners: []DesiredListener{mkListener(cloud.ProtocolTCP, 80, nodeBackend("ins-a", 30080))},
				Problems: []string{
					"Nodes without a CVM instance in spec.providerID (want qcloud:///<zone>/ins-...) cannot be registered: y-aws, z-empty",
				},
			},
		},
		{
			name:      "with Local only Nodes with endpoints are checked for an instance",
			svc:       localPolicy(mkService(tcp80)),
			cfg:       defaultCfg,
			nodes:     []*v1.Node{classicNode("a"), classicNode("b", nodeProviderID(""))},
			endpoints: sets.New("a"),
			want: DesiredState{Listeners: []DesiredListener{
				mkListener(cloud.ProtocolTCP, 80, nodeBackend("ins-a", 30080)),
			}},
		},
		{
			name:  "a port without nodePort is a problem and left out",
			svc:   mkService(nodePortOf(v1.ProtocolTCP, 80, 0), nodePortOf(v1.ProtocolTCP, 81, 30081)),
			cfg:   defaultCfg,
			nodes: []*v1.Node{classicNode("a")},
			want: DesiredState{
				Listeners: []DesiredListener{mkListener(cloud.ProtocolTCP, 81, nodeBackend("ins-a", 30081))},
				Problems: []string{
					"port 80: no nodePort is allocated (spec.allocateLoadBalancerNodePorts is false), " +
						"and without direct access the load balancer forwards to Nodes' NodePorts",
				},
			},
		},
		{
			name:  "SCTP is a problem",
			svc:   mkService(nodePortOf(v1.ProtocolSCTP, 9000, 30900), tcp80),
			cfg:   defaultCfg,
			nodes: []*v1.Node{classicNode("a")},
			want: DesiredState{
				Listeners: []DesiredListener{mkListener(cloud.ProtocolTCP, 80, nodeBackend("ins-a", 30080))},
				Problems:  []string{"port 9000: protocol SCTP is not supported by CLB layer-4 listeners (TCP or UDP)"},
			},
		},
		{
			name:  "two Nodes of one instance are one backend",
			svc:   mkService(tcp80),
			cfg:   defaultCfg,
			nodes: []*v1.Node{classicNode("a"), classicNode("a2", nodeProviderID("qcloud:///800002/ins-a"))},
			want: DesiredState{Listeners: []DesiredListener{
				mkListener(cloud.ProtocolTCP, 80, nodeBackend("ins-a", 30080)),
			}},
		},
		{
			name: "no Nodes: listeners without backends",
			svc:  mkService(tcp80),
			cfg:  defaultCfg,
			want: DesiredState{Listeners: []DesiredListener{mkListener(cloud.ProtocolTCP, 80)}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := buildClassicDesiredState(tt.svc, tt.cfg, tt.nodes, tt.endpoints)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("buildClassicDesiredState() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBuildClassicDesiredStateListenersMatchDirectAccess(t *testing.T) {
	// Switching a Service between modes must keep its listeners (names and
	// keys), changing only their backends.
	svc := mkService(nodePortOf(v1.ProtocolUDP, 53, 30053), nodePortOf(v1.ProtocolTCP, 80, 30080))
	direct := buildDesiredState(svc, defaultCfg, nil)
	classic := buildClassicDesiredState(svc, defaultCfg, nil, nil)
	strip := func(ls []DesiredListener) []DesiredListener {
		var out []DesiredListener
		for _, l := range ls {
			out = append(out, DesiredListener{ListenerKey: l.ListenerKey, Name: l.Name})
		}
		return out
	}
	if diff := cmp.Diff(strip(direct.Listeners), strip(classic.Listeners)); diff != "" {
		t.Errorf("listeners differ between direct access and classic (-direct +classic):\n%s", diff)
	}
}

func TestBuildClassicDesiredStateIsDeterministic(t *testing.T) {
	svc := localPolicy(mkService(
		nodePortOf(v1.ProtocolTCP, 443, 30443), nodePortOf(v1.ProtocolUDP, 53, 30053), nodePortOf(v1.ProtocolTCP, 80, 30080),
		nodePortOf(v1.ProtocolTCP, 81, 0),
	))
	var nodes []*v1.Node
	endpoints := sets.New[string]()
	for i := range 40 {
		name := fmt.Sprintf("n%02d", i)
		switch {
		case i%7 == 0:
			nodes = append(nodes, classicNode(name, nodeProviderID("")))
		case i%5 == 0:
			nodes = append(nodes, classicNode(name, nodeUnschedulable))
		default:
			nodes = append(nodes, classicNode(name))
		}
		if i%3 != 0 {
			endpoints.Insert(name)
		}
	}
	want := buildClassicDesiredState(svc, defaultCfg, nodes, endpoints)
	if len(want.Listeners) != 3 || len(want.Listeners[0].Backends) == 0 || len(want.Problems) != 2 {
		t.Fatalf("fixture does not exercise enough: %+v", want)
	}
	rng := rand.New(rand.NewSource(1))
	for range 20 {
		shuffled := append([]*v1.Node(nil), nodes...)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		shuffledSvc := svc.DeepCopy()
		rng.Shuffle(len(shuffledSvc.Spec.Ports), func(i, j int) {
			shuffledSvc.Spec.Ports[i], shuffledSvc.Spec.Ports[j] = shuffledSvc.Spec.Ports[j], shuffledSvc.Spec.Ports[i]
		})
		got := buildClassicDesiredState(shuffledSvc, defaultCfg, shuffled, endpoints)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("output depends on input order (-first +shuffled):\n%s", diff)
		}
	}
}

func TestInstanceIDFromProviderID(t *testing.T) {
	tests := []struct {
		providerID string
		want       string
		wantOK     bool
	}{
		{"qcloud:///800002/ins-3sdp8v2a", "ins-3sdp8v2a", true},
		{"qcloud:///100003/ins-abc", "ins-abc", true},
		// The zone is not needed to register the instance.
		{"qcloud:///ins-3sdp8v2a", "ins-3sdp8v2a", true},
		{"", "", false},
		{"ins-3sdp8v2a", "", false},
		{"qcloud:///800002/", "", false},
		{"qcloud:///800002/ins-", "", false},
		{"qcloud:///800002", "", false},
		{"qcloud:///800002/ins-3sdp8v2a/", "", false},
		{"qcloud:///800002/ins-3sdp8v2a/extra", "", false},
		{"qcloud:///800002/ins-3SDP8V2A", "", false},
		{"qcloud:///800002/ins-3sdp 8v2a", "", false},
		{"qcloud:///800002/eks-abc", "", false},
		{"aws:///us-east-1a/i-0123456789abcdef0", "", false},
		{"kind://docker/kind/kind-worker", "", false},
		{"QCLOUD:///800002/ins-abc", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.providerID, func(t *testing.T) {
			got, ok := instanceIDFromProviderID(tt.providerID)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("instanceIDFromProviderID(%q) = %q, %v, want %q, %v", tt.providerID, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestClassicReadyEndpointNodes(t *testing.T) {
	onNode := func(node string) func(*v1.Pod) { return func(p *v1.Pod) { p.Spec.NodeName = node } }
	pods := []*v1.Pod{
		mkPod("ready", "10.0.0.1", onNode("n-ready")),
		mkPod("ready-twin", "10.0.0.2", onNode("n-ready")),
		mkPod("gate", "10.0.0.3", onNode("n-gate"), podGates(ReadinessGate), podGatePending),
		mkPod("hostnet", "192.168.0.5", onNode("n-hostnet"), podHostNetwork),
		mkPod("unready", "10.0.0.4", onNode("n-unready"), podUnready),
		mkPod("other-gate", "10.0.0.5", onNode("n-other-gate"), podGates("example.com/gate"), podGatePending),
		mkPod("terminating", "10.0.0.6", onNode("n-terminating"), podTerminating),
		mkPod("no-ip", "", onNode("n-no-ip")),
		mkPod("done", "10.0.0.7", onNode("n-done"), podPhase(v1.PodSucceeded)),
		mkPod("unscheduled", "10.0.0.8"),
	}
	got := readyEndpointNodes(pods)
	want := sets.New("n-ready", "n-gate", "n-hostnet")
	if !got.Equal(want) {
		t.Errorf("readyEndpointNodes() = %v, want %v", sets.List(got), sets.List(want))
	}
	if got := readyEndpointNodes(nil); got == nil || got.Len() != 0 {
		t.Errorf("readyEndpointNodes(nil) = %v, want an empty set", got)
	}
}
