package readiness_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"clb-direct/controller"
	"clb-direct/readiness"
)

// TestTrimmedPodsGiveTheSameGateDecisions checks that the worker decides
// and patches the gate of a Pod from the controller's trimmed cache as it
// would from the whole Pod.
func TestTrimmedPodsGiveTheSameGateDecisions(t *testing.T) {
	t0 := metav1.NewTime(time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC))
	t1 := metav1.NewTime(time.Date(2026, 1, 1, 10, 0, 5, 0, time.UTC))
	whole := func(mutate ...func(*v1.Pod)) *v1.Pod {
		p := &v1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web-1", UID: "uid-web-1", ResourceVersion: "7", CreationTimestamp: t0,
				Labels: map[string]string{"app": "web"}, Annotations: map[string]string{"example.com/note": "x"},
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web", UID: "uid-rs", Controller: ptr.To(true)}},
				ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kubelet", Operation: metav1.ManagedFieldsOperationUpdate, Time: &t1}}},
			Spec: v1.PodSpec{
				Containers: []v1.Container{{Name: "app", Image: "app:1", Env: []v1.EnvVar{{Name: "A", Value: "b"}},
					Ports: []v1.ContainerPort{{Name: "http", ContainerPort: 8080}}}},
				ReadinessGates: []v1.PodReadinessGate{{ConditionType: "example.com/other"}, {ConditionType: readiness.GateConditionType}},
				NodeName:       "node-1",
			},
			Status: v1.PodStatus{Phase: v1.PodRunning, PodIP: "10.0.0.1", HostIP: "192.168.0.1", Conditions: []v1.PodCondition{
				{Type: v1.PodScheduled, Status: v1.ConditionTrue, LastTransitionTime: t0},
				{Type: "example.com/other", Status: v1.ConditionTrue, Reason: "Warm", Message: "warmed up", LastTransitionTime: t0, LastProbeTime: t1},
				{Type: readiness.GateConditionType, Status: v1.ConditionFalse, Reason: readiness.ReasonUnhealthy,
					Message: "registered, health check not passing", LastTransitionTime: t0, LastProbeTime: t1},
				{Type: v1.ContainersReady, Status: v1.ConditionTrue, LastTransitionTime: t1},
				{Type: v1.PodReady, Status: v1.ConditionFalse, Reason: "ReadinessGatesNotReady", LastTransitionTime: t0},
			}},
		}
		for _, m := range mutate {
			m(p)
		}
		return p
	}
	gate := func(status v1.ConditionStatus, reason string) func(*v1.Pod) {
		return func(p *v1.Pod) { p.Status.Conditions[2].Status, p.Status.Conditions[2].Reason = status, reason }
	}
	pods := map[string]*v1.Pod{
		"waiting":             whole(),
		"passed":              whole(gate(v1.ConditionTrue, readiness.ReasonReady)),
		"not registered":      whole(gate(v1.ConditionFalse, readiness.ReasonNotRegistered)),
		"no gate condition":   whole(func(p *v1.Pod) { p.Status.Conditions = append(p.Status.Conditions[:2], p.Status.Conditions[3:]...) }),
		"no transition time":  whole(func(p *v1.Pod) { p.Status.Conditions[2].LastTransitionTime = metav1.Time{} }),
		"without the gate":    whole(func(p *v1.Pod) { p.Spec.ReadinessGates = p.Spec.ReadinessGates[:1] }),
		"terminating":         whole(func(p *v1.Pod) { p.DeletionTimestamp = &t1 }),
		"gate condition only": whole(func(p *v1.Pod) { p.Status.Conditions = p.Status.Conditions[2:3] }),
	}
	verdicts := []readiness.Verdict{
		{Status: v1.ConditionTrue, Reason: readiness.ReasonReady, Message: "registered and healthy"},
		{Status: v1.ConditionFalse, Reason: readiness.ReasonUnhealthy, Message: "registered, health check not passing"},
		{Status: v1.ConditionFalse, Reason: readiness.ReasonNotRegistered, Message: "not yet registered"},
	}
	now := metav1.NewTime(time.Date(2026, 1, 1, 11, 0, 0, 0, time.UTC))
	for name, pod := range pods {
		t.Run(name, func(t *testing.T) {
			obj, err := controller.TrimForCache(pod)
			if err != nil {
				t.Fatal(err)
			}
			trimmed := obj.(*v1.Pod)
			type decisions struct {
				Pending      bool
				Gate         *v1.PodCondition
				Key          string
				UID          string
				Created      time.Time
				Patches      []string
				WouldPatches []bool
			}
			decide := func(p *v1.Pod) decisions {
				d := decisions{Pending: readiness.Pending(p), Gate: readiness.GateCondition(p), Key: cache.MetaObjectToName(p).String(),
					UID: string(p.UID), Created: p.CreationTimestamp.Time}
				for _, v := range verdicts {
					// As Worker.apply decides whether to patch, and what.
					current := readiness.GateCondition(p)
					d.WouldPatches = append(d.WouldPatches, current == nil || current.Status != v.Status || current.Reason != v.Reason || current.Message != v.Message)
					patch, err := readiness.ConditionPatch(p.UID, current, v, now)
					if err != nil {
						t.Fatal(err)
					}
					d.Patches = append(d.Patches, string(patch))
				}
				return d
			}
			// LastProbeTime is never read; the trimmed gate condition lacks it.
			ignoreProbeTime := cmp.Transformer("noProbeTime", func(c v1.PodCondition) v1.PodCondition { c.LastProbeTime = metav1.Time{}; return c })
			if diff := cmp.Diff(decide(pod), decide(trimmed), ignoreProbeTime); diff != "" {
				t.Errorf("gate decisions differ once trimmed (-whole +trimmed):\n%s", diff)
			}
		})
	}
}
