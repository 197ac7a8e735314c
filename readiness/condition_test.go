package readiness

import (
	"encoding/json"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/strategicpatch"

	"clb-direct/cloud"
)

// target is a registered target of Service ns/web on CLB lb-1.
func target(listener, listenerID string, port int32, mutate ...func(*Target)) Target {
	t := Target{
		LoadBalancerID: "lb-1", ListenerID: listenerID, Listener: listener, Service: "ns/web",
		IP: "10.0.0.1", Port: port, Registered: true, HealthCheck: "TCP",
	}
	for _, m := range mutate {
		m(&t)
	}
	return t
}

func healthOf(healthy bool, detail string, targets ...Target) map[HealthKey]cloud.BackendHealth {
	out := map[HealthKey]cloud.BackendHealth{}
	for _, t := range targets {
		out[healthKeyFor(t)] = cloud.BackendHealth{
			LoadBalancerID: t.LoadBalancerID, ListenerID: t.ListenerID, IP: t.IP, Port: t.Port, Healthy: healthy, Detail: detail,
		}
	}
	return out
}

func merge(ms ...map[HealthKey]cloud.BackendHealth) map[HealthKey]cloud.BackendHealth {
	out := map[HealthKey]cloud.BackendHealth{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

func TestEvaluate(t *testing.T) {
	tcp := target("TCP:80", "lbl-tcp", 8080)
	udp := target("UDP:53", "lbl-udp", 5353)
	unregistered := target("UDP:53", "lbl-udp", 5353, func(t *Target) { t.Registered = false })
	noListener := target("UDP:53", "", 5353, func(t *Target) { t.Registered = false })
	noCLB := target("TCP:80", "", 8080, func(t *Target) { t.LoadBalancerID = ""; t.Registered = false })
	httpCheck := target("TCP:80", "lbl-tcp", 8080, func(t *Target) { t.HealthCheck = "HTTP GET /healthz" })
	other := target("TCP:443", "lbl-other", 8443, func(t *Target) { t.LoadBalancerID = "lb-2"; t.Service = "ns/api" })

	tests := []struct {
		name   string
		exp    Expectation
		health map[HealthKey]cloud.BackendHealth
		want   Verdict
	}{
		{
			name: "not selected",
			exp:  Expectation{},
			want: Verdict{Status: v1.ConditionTrue, Reason: ReasonNotSelected,
				Message: "no direct-access Service selects this Pod; the gate has nothing to wait for"},
		},
		{
			name:   "not selected, stray targets ignored",
			exp:    Expectation{Targets: []Target{tcp}},
			health: healthOf(false, "Dead", tcp),
			want: Verdict{Status: v1.ConditionTrue, Reason: ReasonNotSelected,
				Message: "no direct-access Service selects this Pod; the gate has nothing to wait for"},
		},
		{
			name: "selected, no targets",
			exp:  Expectation{Services: []string{"ns/api", "ns/web"}},
			want: Verdict{Status: v1.ConditionFalse, Reason: ReasonNotRegistered,
				Message: "selected by ns/api, ns/web but on none of its CLB listeners (does the Pod expose the Service's target ports?)"},
		},
		{
			name:   "one target unregistered, one registered and healthy",
			exp:    Expectation{Services: []string{"ns/web"}, Targets: []Target{tcp, unregistered}},
			health: healthOf(true, "Alive", tcp),
			want: Verdict{Status: v1.ConditionFalse, Reason: ReasonNotRegistered,
				Message: "not yet registered on CLB lb-1 listener UDP:53 (Service ns/web)"},
		},
		{
			name:   "listener not created yet",
			exp:    Expectation{Services: []string{"ns/web"}, Targets: []Target{tcp, noListener}},
			health: healthOf(true, "Alive", tcp),
			want: Verdict{Status: v1.ConditionFalse, Reason: ReasonNotRegistered,
				Message: "not yet registered on CLB lb-1 listener UDP:53 (Service ns/web)"},
		},
		{
			name: "listener ID empty even if marked registered",
			exp: Expectation{Services: []string{"ns/web"}, Targets: []Target{
				target("UDP:53", "", 5353)}},
			want: Verdict{Status: v1.ConditionFalse, Reason: ReasonNotRegistered,
				Message: "not yet registered on CLB lb-1 listener UDP:53 (Service ns/web)"},
		},
		{
			name: "CLB not created yet",
			exp:  Expectation{Services: []string{"ns/web"}, Targets: []Target{noCLB}},
			want: Verdict{Status: v1.ConditionFalse, Reason: ReasonNotRegistered,
				Message: "not yet registered on the Service's CLB (not created yet) listener TCP:80 (Service ns/web)"},
		},
		{
			name:   "unregistered wins over unhealthy",
			exp:    Expectation{Services: []string{"ns/web"}, Targets: []Target{tcp, unregistered}},
			health: healthOf(false, "Dead", tcp),
			want: Verdict{Status: v1.ConditionFalse, Reason: ReasonNotRegistered,
				Message: "not yet registered on CLB lb-1 listener UDP:53 (Service ns/web)"},
		},
		{
			name: "registered, no health report",
			exp:  Expectation{Services: []string{"ns/web"}, Targets: []Target{tcp}},
			want: Verdict{Status: v1.ConditionFalse, Reason: ReasonUnhealthy,
				Message: "registered, health check not passing on CLB lb-1 listener TCP:80 (lbl-tcp) → 10.0.0.1:8080, TCP check: no report yet"},
		},
		{
			name:   "report for another port is no report",
			exp:    Expectation{Services: []string{"ns/web"}, Targets: []Target{tcp}},
			health: healthOf(true, "Alive", target("TCP:80", "lbl-tcp", 9090)),
			want: Verdict{Status: v1.ConditionFalse, Reason: ReasonUnhealthy,
				Message: "registered, health check not passing on CLB lb-1 listener TCP:80 (lbl-tcp) → 10.0.0.1:8080, TCP check: no report yet"},
		},
		{
			name:   "registered, unhealthy with detail",
			exp:    Expectation{Services: []string{"ns/web"}, Targets: []Target{httpCheck}},
			health: healthOf(false, "Dead", httpCheck),
			want: Verdict{Status: v1.ConditionFalse, Reason: ReasonUnhealthy,
				Message: "registered, health check not passing on CLB lb-1 listener TCP:80 (lbl-tcp) → 10.0.0.1:8080, HTTP GET /healthz check: Dead"},
		},
		{
			name:   "registered, unhealthy without detail, no check description",
			exp:    Expectation{Services: []string{"ns/web"}, Targets: []Target{target("TCP:80", "lbl-tcp", 8080, func(t *Target) { t.HealthCheck = "" })}},
			health: healthOf(false, "", tcp),
			want: Verdict{Status: v1.ConditionFalse, Reason: ReasonUnhealthy,
				Message: "registered, health check not passing on CLB lb-1 listener TCP:80 (lbl-tcp) → 10.0.0.1:8080, TCP check: unhealthy"},
		},
		{
			name:   "one healthy, one unhealthy: only the unhealthy one is named",
			exp:    Expectation{Services: []string{"ns/web"}, Targets: []Target{tcp, udp}},
			health: merge(healthOf(true, "Alive", tcp), healthOf(false, "Dead", udp)),
			want: Verdict{Status: v1.ConditionFalse, Reason: ReasonUnhealthy,
				Message: "registered, health check not passing on CLB lb-1 listener UDP:53 (lbl-udp) → 10.0.0.1:5353, TCP check: Dead"},
		},
		{
			name:   "two Services, three listeners, all healthy",
			exp:    Expectation{Services: []string{"ns/api", "ns/web"}, Targets: []Target{udp, other, tcp}},
			health: healthOf(true, "Alive", tcp, udp, other),
			want: Verdict{Status: v1.ConditionTrue, Reason: ReasonReady,
				Message: "registered and healthy on CLB lb-1 listener TCP:80 (lbl-tcp); CLB lb-1 listener UDP:53 (lbl-udp); CLB lb-2 listener TCP:443 (lbl-other)"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, evaluate(tc.exp, tc.health)); diff != "" {
				t.Errorf("evaluate (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEvaluateUnhealthyMessageNamesWhatToCheck(t *testing.T) {
	tg := target("TCP:80", "lbl-abc", 8080, func(t *Target) { t.HealthCheck = "HTTP GET /healthz" })
	v := evaluate(Expectation{Services: []string{"ns/web"}, Targets: []Target{tg}}, healthOf(false, "Dead", tg))
	for _, want := range []string{"10.0.0.1:8080", "TCP:80", "lbl-abc", "lb-1", "HTTP GET /healthz", "Dead"} {
		if !strings.Contains(v.Message, want) {
			t.Errorf("message %q does not mention %q", v.Message, want)
		}
	}
}

// TestEvaluateIsDeterministic: the controller finds a Pod's Services in map
// order, so the targets come in any order; a different message for the same
// situation would patch the Pod on every round.
func TestEvaluateIsDeterministic(t *testing.T) {
	var targets []Target
	for _, svc := range []string{"ns/a", "ns/b", "ns/c"} {
		// CLBs not created yet: every field but the Service ties.
		targets = append(targets, Target{Listener: "TCP:80", Service: svc, IP: "10.0.0.1", Port: 8080})
	}
	for i, lb := range []string{"lb-2", "lb-1", "lb-3"} {
		targets = append(targets, target("TCP:80", "lbl-"+lb, 8080, func(t *Target) {
			t.LoadBalancerID = lb
			t.Service = []string{"ns/x", "ns/y", "ns/z"}[i]
		}))
	}
	exp := Expectation{Services: []string{"ns/a", "ns/b", "ns/c", "ns/x", "ns/y", "ns/z"}, Targets: targets}
	want := evaluate(exp, nil)
	if want.Reason != ReasonNotRegistered || want.Message != "not yet registered on "+
		"the Service's CLB (not created yet) listener TCP:80 (Service ns/a); "+
		"the Service's CLB (not created yet) listener TCP:80 (Service ns/b); "+
		"the Service's CLB (not created yet) listener TCP:80 (Service ns/c)" {
		t.Fatalf("unexpected verdict %+v", want)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 50 {
		shuffled := slices.Clone(targets)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if got := evaluate(Expectation{Services: exp.Services, Targets: shuffled}, nil); got != want {
			t.Fatalf("shuffle %d: %+v, want %+v", i, got, want)
		}
	}
	if !slices.Equal(exp.Targets, targets) {
		t.Errorf("evaluate reordered the caller's targets")
	}

	// All healthy: the same, on a True verdict.
	healthy := targets[3:]
	wantReady := evaluate(Expectation{Services: []string{"ns/x", "ns/y", "ns/z"}, Targets: healthy}, healthOf(true, "Alive", healthy...))
	if wantReady.Message != "registered and healthy on CLB lb-1 listener TCP:80 (lbl-lb-1); CLB lb-2 listener TCP:80 (lbl-lb-2); CLB lb-3 listener TCP:80 (lbl-lb-3)" {
		t.Fatalf("unexpected verdict %+v", wantReady)
	}
	for i := range 20 {
		shuffled := slices.Clone(healthy)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if got := evaluate(Expectation{Services: []string{"ns/x", "ns/y", "ns/z"}, Targets: shuffled}, healthOf(true, "Alive", healthy...)); got != wantReady {
			t.Fatalf("shuffle %d: %+v, want %+v", i, got, wantReady)
		}
	}
}

func gatedPod(conditions ...v1.PodCondition) *v1.Pod {
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p"},
		Spec: v1.PodSpec{ReadinessGates: []v1.PodReadinessGate{
			{ConditionType: "example.com/other"}, {ConditionType: GateConditionType},
		}},
		Status: v1.PodStatus{Conditions: conditions},
	}
}

func TestPending(t *testing.T) {
	terminating := gatedPod()
	now := metav1.Now()
	terminating.DeletionTimestamp = &now
	noGate := gatedPod()
	noGate.Spec.ReadinessGates = noGate.Spec.ReadinessGates[:1]
	tests := []struct {
		name string
		pod  *v1.Pod
		want bool
	}{
		{"no gate", noGate, false},
		{"no gate, condition False", func() *v1.Pod {
			p := noGate.DeepCopy()
			p.Status.Conditions = []v1.PodCondition{{Type: GateConditionType, Status: v1.ConditionFalse}}
			return p
		}(), false},
		{"gate without condition", gatedPod(), true},
		{"gate, only other conditions True", gatedPod(
			v1.PodCondition{Type: v1.PodReady, Status: v1.ConditionTrue},
			v1.PodCondition{Type: "example.com/other", Status: v1.ConditionTrue}), true},
		{"gate False", gatedPod(v1.PodCondition{Type: GateConditionType, Status: v1.ConditionFalse}), true},
		{"gate Unknown", gatedPod(v1.PodCondition{Type: GateConditionType, Status: v1.ConditionUnknown}), true},
		{"gate True", gatedPod(v1.PodCondition{Type: v1.PodReady, Status: v1.ConditionFalse},
			v1.PodCondition{Type: GateConditionType, Status: v1.ConditionTrue}), false},
		{"terminating", terminating, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := pending(tc.pod); got != tc.want {
				t.Errorf("pending = %v, want %v", got, tc.want)
			}
		})
	}
}

var (
	t0 = metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	t1 = metav1.NewTime(time.Date(2026, 1, 1, 0, 5, 0, 0, time.UTC))
)

func TestConditionPatch(t *testing.T) {
	unhealthy := Verdict{Status: v1.ConditionFalse, Reason: ReasonUnhealthy, Message: "Dead"}
	tests := []struct {
		name    string
		current *v1.PodCondition
		verdict Verdict
		want    string
	}{
		{
			name:    "first condition",
			verdict: unhealthy,
			want: `{"metadata":{"uid":"uid-1"},"status":{"conditions":[{"type":"cloud.tencent.com/load-balancer-backendgroup-ready","status":"False","lastProbeTime":null,` +
				`"lastTransitionTime":"2026-01-01T00:05:00Z","reason":"LoadBalancerHealthCheckFailing","message":"Dead"}]}}`,
		},
		{
			name:    "status unchanged keeps the transition time",
			current: &v1.PodCondition{Type: GateConditionType, Status: v1.ConditionFalse, Reason: ReasonNotRegistered, Message: "x", LastTransitionTime: t0},
			verdict: unhealthy,
			want: `{"metadata":{"uid":"uid-1"},"status":{"conditions":[{"type":"cloud.tencent.com/load-balancer-backendgroup-ready","status":"False","lastProbeTime":null,` +
				`"lastTransitionTime":"2026-01-01T00:00:00Z","reason":"LoadBalancerHealthCheckFailing","message":"Dead"}]}}`,
		},
		{
			name:    "status unchanged without a transition time sets one",
			current: &v1.PodCondition{Type: GateConditionType, Status: v1.ConditionFalse},
			verdict: unhealthy,
			want: `{"metadata":{"uid":"uid-1"},"status":{"conditions":[{"type":"cloud.tencent.com/load-balancer-backendgroup-ready","status":"False","lastProbeTime":null,` +
				`"lastTransitionTime":"2026-01-01T00:05:00Z","reason":"LoadBalancerHealthCheckFailing","message":"Dead"}]}}`,
		},
		{
			name:    "status changed moves the transition time",
			current: &v1.PodCondition{Type: GateConditionType, Status: v1.ConditionFalse, Reason: ReasonUnhealthy, Message: "Dead", LastTransitionTime: t0},
			verdict: Verdict{Status: v1.ConditionTrue, Reason: ReasonReady, Message: "ok"},
			want: `{"metadata":{"uid":"uid-1"},"status":{"conditions":[{"type":"cloud.tencent.com/load-balancer-backendgroup-ready","status":"True","lastProbeTime":null,` +
				`"lastTransitionTime":"2026-01-01T00:05:00Z","reason":"LoadBalancerNetworkGroupReady","message":"ok"}]}}`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := conditionPatch("uid-1", tc.current, tc.verdict, t1)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("patch:\n got  %s\n want %s", got, tc.want)
			}
		})
	}
}

// TestConditionPatchMergesByType applies the patch as the API server does
// (strategic merge, conditions keyed by type): the kubelet's conditions
// stay as they are, ours is replaced or added.
func TestConditionPatchMergesByType(t *testing.T) {
	kubelet := []v1.PodCondition{
		{Type: v1.PodReady, Status: v1.ConditionFalse, Reason: "ReadinessGatesNotReady", Message: "gate not met", LastTransitionTime: t0},
		{Type: v1.ContainersReady, Status: v1.ConditionTrue, LastTransitionTime: t0},
	}
	ready := Verdict{Status: v1.ConditionTrue, Reason: ReasonReady, Message: "registered and healthy on CLB lb-1 listener TCP:80 (lbl-1)"}
	want := func(gate v1.PodCondition) []v1.PodCondition {
		return []v1.PodCondition{kubelet[0], kubelet[1], gate}
	}
	for _, tc := range []struct {
		name    string
		current *v1.PodCondition
		want    []v1.PodCondition
	}{
		{
			name: "no gate condition yet",
			want: want(v1.PodCondition{Type: GateConditionType, Status: v1.ConditionTrue, Reason: ReasonReady, Message: ready.Message, LastTransitionTime: t1}),
		},
		{
			name:    "gate condition replaced",
			current: &v1.PodCondition{Type: GateConditionType, Status: v1.ConditionFalse, Reason: ReasonUnhealthy, Message: "Dead", LastTransitionTime: t0},
			want:    want(v1.PodCondition{Type: GateConditionType, Status: v1.ConditionTrue, Reason: ReasonReady, Message: ready.Message, LastTransitionTime: t1}),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := v1.Pod{
				ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p"},
				Status:     v1.PodStatus{Phase: v1.PodRunning, PodIP: "10.0.0.1", Conditions: slices.Clone(kubelet)},
			}
			if tc.current != nil {
				pod.Status.Conditions = append(pod.Status.Conditions, *tc.current)
			}
			original, err := json.Marshal(pod)
			if err != nil {
				t.Fatal(err)
			}
			patch, err := conditionPatch(pod.UID, tc.current, ready, t1)
			if err != nil {
				t.Fatal(err)
			}
			patched, err := strategicpatch.StrategicMergePatch(original, patch, v1.Pod{})
			if err != nil {
				t.Fatalf("StrategicMergePatch: %v", err)
			}
			var got v1.Pod
			if err := json.Unmarshal(patched, &got); err != nil {
				t.Fatal(err)
			}
			// The merge may put a new item first: order is not meaning.
			byType := cmpopts.SortSlices(func(a, b v1.PodCondition) bool { return a.Type < b.Type })
			if diff := cmp.Diff(tc.want, got.Status.Conditions, byType); diff != "" {
				t.Errorf("conditions (-want +got):\n%s", diff)
			}
			if got.Status.PodIP != "10.0.0.1" || got.Status.Phase != v1.PodRunning || got.Name != "p" {
				t.Errorf("the patch touched more than the conditions: %+v", got)
			}
		})
	}
}
