package controller

import (
	"errors"
	"slices"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"clb-direct/cloud/fake"
)

func readyNode(name, instance string) *v1.Node {
	return &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       v1.NodeSpec{ProviderID: "qcloud:///800002/" + instance},
		Status:     v1.NodeStatus{Conditions: []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue}}},
	}
}

// classicService is the test Service in classic mode, with NodePorts.
func classicService(mutate ...func(*v1.Service)) *v1.Service {
	return directService(append([]func(*v1.Service){func(s *v1.Service) {
		delete(s.Annotations, AnnotationDirectAccess)
		s.Spec.Ports[0].NodePort = 30080
		s.Spec.Ports[1].NodePort = 30053
	}}, mutate...)...)
}

// setHealth marks every backend of the given kind healthy or not.
func (f *fixture) setHealth(nodes, healthy bool) {
	for _, lb := range f.cloud.Snapshot().LoadBalancers {
		for _, l := range lb.Listeners {
			for _, b := range l.Backends {
				if isNode(b.Backend) == nodes {
					f.cloud.SetBackendHealth(lb.ID, l.ID, b.Key(), healthy, "")
				}
			}
		}
	}
}

func TestClassicModeRegistersNodesOnTheirNodePorts(t *testing.T) {
	notReady := readyNode("n3", "ins-3")
	notReady.Status.Conditions[0].Status = v1.ConditionFalse
	f := newFixture(t, nil, classicService(), readyNode("n1", "ins-1"), readyNode("n2", "ins-2"), notReady, readyPod("a", "10.0.0.1"))
	f.mustSync()
	want := []string{"53/UDP ins-1:30053 w10", "53/UDP ins-2:30053 w10", "80/TCP ins-1:30080 w10", "80/TCP ins-2:30080 w10"}
	if got := f.backends(f.loadBalancerID()); !slices.Equal(got, want) {
		t.Errorf("backends:\n got  %q\n want %q", got, want)
	}
}

func TestSwitchingModesKeepsTheOldBackendsUntilTheNewAreHealthy(t *testing.T) {
	clb := fake.New(fake.WithDefaultHealthy(false))
	f := newFixture(t, clb, classicService(), readyNode("n1", "ins-1"), readyPod("a", "10.0.0.1"))
	f.mustSync()
	lbID := f.loadBalancerID()
	f.setHealth(true, true)

	// Classic → direct: the Pod is registered, the Node stays.
	f.updateService(func(s *v1.Service) { s.Annotations[AnnotationDirectAccess] = "true" })
	var pending *requeueAfter
	if err := f.sync(); !errors.As(err, &pending) {
		t.Fatalf("sync: %v, want a requeue while the new backends are not healthy", err)
	}
	f.expectActions("DescribeTargetHealth", "BatchRegisterTargets:2")
	both := []string{"53/UDP 10.0.0.1:5353 w10", "53/UDP ins-1:30053 w10", "80/TCP 10.0.0.1:8080 w10", "80/TCP ins-1:30080 w10"}
	if got := f.backends(lbID); !slices.Equal(got, both) {
		t.Fatalf("during the switch:\n got  %q\n want %q", got, both)
	}
	// Still unhealthy: nothing deregistered.
	if err := f.sync(); !errors.As(err, &pending) {
		t.Fatalf("sync: %v, want another requeue", err)
	}
	f.expectActions("DescribeTargetHealth")
	// Healthy: the Nodes go.
	f.setHealth(false, true)
	f.mustSync()
	f.expectActions("DescribeTargetHealth", "BatchDeregisterTargets:2")
	if got := f.backends(lbID); !slices.Equal(got, []string{"53/UDP 10.0.0.1:5353 w10", "80/TCP 10.0.0.1:8080 w10"}) {
		t.Errorf("after the switch: %q", got)
	}

	// Direct → classic, with Nodes that never turn healthy: after the
	// timeout the switch happens anyway, with a Warning.
	f.updateService(func(s *v1.Service) { s.Annotations[AnnotationDirectAccess] = "false" })
	if err := f.sync(); !errors.As(err, &pending) {
		t.Fatalf("sync: %v, want a requeue", err)
	}
	f.clock.Step(2 * time.Minute)
	f.mustSync()
	f.expectEvent("Warning ModeSwitchTimeout")
	if got := f.backends(lbID); !slices.Equal(got, []string{"53/UDP ins-1:30053 w10", "80/TCP ins-1:30080 w10"}) {
		t.Errorf("after the timed-out switch: %q", got)
	}
}
