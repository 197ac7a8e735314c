package controller

import (
	"context"
	"encoding/binary"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"clb-direct/cloud"
	"clb-direct/cloud/fake"
	"clb-direct/tkeconfig"
)

// fuzzUID is the UID of the Service FuzzPlan builds state for.
const fuzzUID types.UID = "uid-fuzz"

// fuzzInput hands out the fuzzer's bytes as small choices; once they run
// out every choice is 0.
type fuzzInput struct{ data []byte }

func (in *fuzzInput) byte() byte {
	if len(in.data) == 0 {
		return 0
	}
	b := in.data[0]
	in.data = in.data[1:]
	return b
}

func (in *fuzzInput) pick(n int) int { return int(in.byte()) % n }
func (in *fuzzInput) bit() bool      { return in.byte()&1 == 1 }

func (in *fuzzInput) i32() int32 {
	var b [4]byte
	for i := range b {
		b[i] = in.byte()
	}
	return int32(binary.BigEndian.Uint32(b[:]))
}

func pickOf[T any](in *fuzzInput, values ...T) T { return values[in.pick(len(values))] }

// fuzzWorld is one moment of a Service: its ports, annotations' config, the
// Pods its selector matches and the TkeServiceConfig it names.
type fuzzWorld struct {
	svc  *v1.Service
	cfg  ServiceConfig
	pods []*v1.Pod
	tsc  *tkeconfig.TkeServiceConfig
	// apiValid is false when some port is outside 1..65535, which the API
	// server would have refused.
	apiValid bool
}

var (
	fuzzServicePorts = []int32{80, 443, 53, 8080, 1, 65535}
	fuzzTargetPorts  = []int32{8080, 9090, 53, 1, 65535}
	fuzzPortNames    = []string{"http", "dns", "metrics", ""}
	fuzzProtocols    = []v1.Protocol{"", v1.ProtocolTCP, v1.ProtocolUDP, v1.ProtocolSCTP}
	// Few addresses, so that Pods share them (a terminating Pod and its
	// successor) and generations share backends.
	fuzzPodIPs = []string{"", "10.0.0.1", "10.0.0.2", "10.0.0.3", "fd00::1"}
)

// genWorld derives a world from the input. Ports come from small pools of
// valid values, unless the input asks for raw ones (any int32).
func genWorld(in *fuzzInput) fuzzWorld {
	w := fuzzWorld{apiValid: true}
	raw := in.pick(8) == 0
	port := func(pool []int32) int32 {
		if !raw {
			return pickOf(in, pool...)
		}
		p := in.i32()
		if p < 1 || p > 65535 {
			w.apiValid = false
		}
		return p
	}

	w.svc = &v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "svc", UID: fuzzUID}}
	seen := map[ListenerKey]bool{}
	for range in.pick(5) {
		sp := v1.ServicePort{Protocol: pickOf(in, fuzzProtocols...), Port: port(fuzzServicePorts)}
		switch in.pick(3) {
		case 1:
			sp.TargetPort = intstr.FromInt32(port(fuzzTargetPorts))
		case 2:
			sp.TargetPort = intstr.FromString(pickOf(in, fuzzPortNames...))
		}
		// The API server refuses two ports with one protocol and number.
		key := ListenerKey{Protocol: cloud.Protocol(protocolOrTCP(sp.Protocol)), Port: sp.Port}
		if seen[key] {
			continue
		}
		seen[key] = true
		w.svc.Spec.Ports = append(w.svc.Spec.Ports, sp)
	}

	w.cfg = ServiceConfig{
		DirectAccess: true, BackendWeight: int32(in.pick(cloud.MaxWeight + 1)),
		GraceShutdown: in.bit(), GraceShutdownTKEx: in.bit(),
	}

	containerPorts := func() []v1.ContainerPort {
		var out []v1.ContainerPort
		for range in.pick(3) {
			out = append(out, v1.ContainerPort{
				Name: pickOf(in, fuzzPortNames...), ContainerPort: port(fuzzTargetPorts), Protocol: pickOf(in, fuzzProtocols...),
			})
		}
		return out
	}
	condition := func(pod *v1.Pod, typ v1.PodConditionType) {
		if s := pickOf(in, v1.ConditionStatus(""), v1.ConditionTrue, v1.ConditionTrue, v1.ConditionFalse, v1.ConditionUnknown); s != "" {
			pod.Status.Conditions = append(pod.Status.Conditions, v1.PodCondition{Type: typ, Status: s})
		}
	}
	for i := range in.pick(7) {
		pod := &v1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: fmt.Sprintf("pod-%d", i)},
			Spec: v1.PodSpec{
				Containers:  []v1.Container{{Name: "app", Ports: containerPorts()}},
				HostNetwork: in.pick(8) == 0,
			},
			Status: v1.PodStatus{
				PodIP: pickOf(in, fuzzPodIPs...),
				Phase: pickOf(in, v1.PodRunning, v1.PodPending, v1.PodSucceeded, v1.PodFailed, ""),
			},
		}
		if in.pick(4) == 0 {
			always := v1.ContainerRestartPolicyAlways
			sidecar := v1.Container{Name: "sidecar", Ports: containerPorts()}
			if in.bit() {
				sidecar.RestartPolicy = &always
			}
			pod.Spec.InitContainers = []v1.Container{sidecar}
		}
		if in.pick(4) == 0 {
			pod.DeletionTimestamp = &metav1.Time{Time: time.Unix(1700000000, 0)}
		}
		condition(pod, v1.PodReady)
		condition(pod, v1.ContainersReady)
		if in.bit() {
			pod.Spec.ReadinessGates = append(pod.Spec.ReadinessGates, v1.PodReadinessGate{ConditionType: ReadinessGate})
			condition(pod, ReadinessGate)
		}
		if in.pick(4) == 0 {
			pod.Spec.ReadinessGates = append(pod.Spec.ReadinessGates, v1.PodReadinessGate{ConditionType: "example.com/other"})
			condition(pod, "example.com/other")
		}
		w.pods = append(w.pods, pod)
	}

	if in.pick(3) == 0 {
		w.tsc = genServiceConfig(in, w.svc.Spec.Ports)
	}
	return w
}

// nextWorld derives the Service's next moment from w: mostly the same
// ports and Pods, with another weight, grace settings and TkeServiceConfig,
// some Pods terminating or gone; sometimes a world unrelated to w.
func nextWorld(in *fuzzInput, w fuzzWorld) fuzzWorld {
	if in.pick(4) == 0 {
		return genWorld(in)
	}
	next := w
	next.cfg.BackendWeight = int32(in.pick(cloud.MaxWeight + 1))
	next.cfg.GraceShutdown, next.cfg.GraceShutdownTKEx = in.bit(), in.bit()
	next.pods = nil
	for _, pod := range w.pods {
		switch in.pick(6) {
		case 0:
			continue
		case 1:
			pod = pod.DeepCopy()
			pod.DeletionTimestamp = &metav1.Time{Time: time.Unix(1700000000, 0)}
		case 2:
			pod = pod.DeepCopy()
			pod.Status.Conditions = nil
		}
		next.pods = append(next.pods, pod)
	}
	if in.bit() {
		next.tsc = genServiceConfig(in, next.svc.Spec.Ports)
	}
	return next
}

// genServiceConfig returns a TkeServiceConfig tuning some of the ports, or
// nil when what the input declares is invalid (FromUnstructured says so;
// the controller then leaves the CLB alone).
func genServiceConfig(in *fuzzInput, ports []v1.ServicePort) *tkeconfig.TkeServiceConfig {
	i64 := func(values ...int64) any {
		if in.bit() {
			return pickOf(in, values...)
		}
		return nil
	}
	set := func(m map[string]any, key string, v any) {
		if v != nil {
			m[key] = v
		}
	}
	lb := map[string]any{}
	set(lb, "internetMaxBandwidthOut", i64(1, 10, 2048))
	var listeners []any
	for _, p := range ports {
		if !in.bit() {
			continue
		}
		l := map[string]any{"protocol": string(protocolOrTCP(p.Protocol)), "port": int64(p.Port)}
		if in.bit() {
			s := map[string]any{}
			set(s, "enable", pickOf[any](in, nil, true, false))
			set(s, "sessionExpireTime", i64(30, 300, 3600))
			l["session"] = s
		}
		if in.bit() {
			hc := map[string]any{}
			set(hc, "enable", pickOf[any](in, nil, true, false))
			set(hc, "intervalTime", i64(5, 10, 300))
			set(hc, "timeout", i64(2, 5, 60))
			set(hc, "healthNum", i64(2, 10))
			set(hc, "unHealthNum", i64(2, 10))
			set(hc, "httpCode", i64(1, 31))
			set(hc, "httpCheckPath", pickOf[any](in, nil, "/", "/healthz"))
			set(hc, "httpCheckDomain", pickOf[any](in, nil, "example.com"))
			set(hc, "httpCheckMethod", pickOf[any](in, nil, "GET", "HEAD"))
			set(hc, "checkType", pickOf[any](in, nil, "TCP", "HTTP"))
			l["healthCheck"] = hc
		}
		set(l, "scheduler", pickOf[any](in, nil, "WRR", "LEAST_CONN"))
		listeners = append(listeners, l)
	}
	if listeners != nil {
		lb["l4Listeners"] = listeners
	}
	u := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{"loadBalancer": lb}}}
	u.SetGroupVersionKind(tkeconfig.GVK)
	u.SetNamespace("ns")
	u.SetName("cfg")
	tsc, err := tkeconfig.FromUnstructured(u)
	if err != nil {
		return nil
	}
	return tsc
}

// desiredFor is buildDesiredState with the world's TkeServiceConfig, as
// ensure combines them.
func desiredFor(w fuzzWorld, pods []*v1.Pod) DesiredState {
	return withSettings(buildDesiredState(w.svc, w.cfg, pods), w.tsc)
}

// checkDesired checks what holds of any desired state.
func checkDesired(t *testing.T, w fuzzWorld, d DesiredState) {
	t.Helper()
	ips := map[string]bool{}
	for _, p := range w.pods {
		ips[p.Status.PodIP] = true
	}
	for i, l := range d.Listeners {
		if i > 0 && compareListenerKeys(d.Listeners[i-1].ListenerKey, l.ListenerKey) >= 0 {
			t.Errorf("listeners not sorted or not unique: %s after %s", l.ListenerKey, d.Listeners[i-1].ListenerKey)
		}
		if l.Protocol != cloud.ProtocolTCP && l.Protocol != cloud.ProtocolUDP {
			t.Errorf("listener %s: protocol is neither TCP nor UDP", l.ListenerKey)
		}
		if l.Name != listenerName(fuzzUID, l.ListenerKey) || !ownsListener(fuzzUID, cloud.Listener{ListenerSpec: cloud.ListenerSpec{Name: l.Name}}) {
			t.Errorf("listener %s is named %q, which does not mark it as the Service's", l.ListenerKey, l.Name)
		}
		for j, b := range l.Backends {
			if j > 0 && compareBackends(l.Backends[j-1], b) >= 0 {
				t.Errorf("listener %s: backends not sorted or not unique: %+v after %+v", l.ListenerKey, b, l.Backends[j-1])
			}
			if b.IP == "" || !ips[b.IP] || b.InstanceID != "" {
				t.Errorf("listener %s: backend %+v is not a Pod IP", l.ListenerKey, b)
			}
			if w.apiValid && (b.Port < 1 || b.Port > 65535) {
				t.Errorf("listener %s: backend %+v has a port outside 1..65535", l.ListenerKey, b)
			}
			if b.Weight < 0 || b.Weight > cloud.MaxWeight {
				t.Errorf("listener %s: backend %+v has a weight outside 0..%d", l.ListenerKey, b, cloud.MaxWeight)
			}
		}
	}
}

// readObserved reads the CLB back, as observe does without a cache.
func readObserved(ctx context.Context, t *testing.T, c cloud.Interface, lbID string) ObservedState {
	t.Helper()
	lbs, err := c.DescribeLoadBalancers(ctx, cloud.LoadBalancerQuery{IDs: []string{lbID}})
	if err != nil || len(lbs) != 1 {
		t.Fatalf("DescribeLoadBalancers: %v, %v", lbs, err)
	}
	listeners, err := c.DescribeListeners(ctx, lbID)
	if err != nil {
		t.Fatal(err)
	}
	backends, err := c.DescribeBackends(ctx, lbID)
	if err != nil {
		t.Fatal(err)
	}
	return ObservedState{LoadBalancer: lbs[0], Listeners: listeners, Backends: backends}
}

// FuzzPlan derives two successive worlds of a Service (ports, Pods,
// annotations' config, TkeServiceConfig) from the fuzzer's bytes and runs
// them through buildDesiredState and planChanges against a fake CLB, which
// may already hold a listener someone else made. It checks that:
//   - neither panics, and both are deterministic: the same inputs, and the
//     same Pods in another order (listers have none), give the same output;
//   - every desired listener is TCP or UDP, named as the Service's, sorted
//     and unique; every backend has a Pod's IP, a port in 1..65535 (when the
//     Service and Pods are valid) and a weight in 0..100, sorted and unique;
//   - a plan touches only the Service's own listeners, and after the
//     controller applies it (Controller.apply, on the fake) planning again
//     gives an empty plan, both against the state apply recorded and against
//     the CLB read back: applying a plan's result makes the next plan empty;
//   - the foreign listener and its backend are never changed.
func FuzzPlan(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0})
	// One TCP port, two Ready Pods, plain.
	f.Add([]byte{1, 2, 1, 0, 0, 42, 0, 0, 2, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 1, 0, 0, 0})
	f.Add([]byte("\x04\x01\x01\x00\x02\x02\x00\x01\x03\x02\x01\x05\x0a\x01\x01\x06\x02\x00\x01\x02\x01\x01\x00\x01\x01\x01\x01\x01\x03\x00\x02\x01\x01"))
	f.Add([]byte("the quick brown fox jumps over the lazy dog, twice: the quick brown fox jumps over the lazy dog"))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{1, 8, 4, 1, 0x7f, 0xff, 0xff, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 6, 0xff, 0xff, 0, 0})
	f.Add([]byte{0, 4, 1, 0, 1, 1, 2, 0, 3, 1, 3, 2, 1, 6, 50, 1, 1, 2, 1, 0, 0, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		in := &fuzzInput{data: data}
		ctx := context.Background()
		clb := fake.New()
		lb, err := clb.CreateLoadBalancer(ctx, cloud.LoadBalancerSpec{Name: "fuzz"})
		if err != nil {
			t.Fatal(err)
		}
		// A listener made in the console, on a port the Service may want.
		var foreign []cloud.Listener
		var foreignBackends map[string][]cloud.Backend
		if in.bit() {
			l, err := clb.CreateListener(ctx, lb.ID, cloud.ListenerSpec{Name: "console-made", Protocol: cloud.ProtocolTCP, Port: pickOf(in, fuzzServicePorts...)})
			if err != nil {
				t.Fatal(err)
			}
			if err := clb.RegisterBackends(ctx, lb.ID, []cloud.ListenerBackend{{ListenerID: l.ID, Backend: cloud.Backend{IP: "10.0.0.1", Port: 80, Weight: 7}}}); err != nil {
				t.Fatal(err)
			}
			observed := readObserved(ctx, t, clb, lb.ID)
			foreign, foreignBackends = observed.Listeners, observed.Backends
		}
		c := &Controller{cloud: clb}
		observed := readObserved(ctx, t, clb, lb.ID)

		var w fuzzWorld
		for generation := range 2 {
			if generation == 0 {
				w = genWorld(in)
			} else {
				w = nextWorld(in, w)
			}
			desired := desiredFor(w, w.pods)
			if again := desiredFor(w, w.pods); !reflect.DeepEqual(desired, again) {
				t.Fatalf("buildDesiredState is not deterministic:\n%+v\n%+v", desired, again)
			}
			if len(w.pods) > 1 {
				shuffled := slices.Clone(w.pods)
				slices.Reverse(shuffled)
				shuffled = append(shuffled[1:], shuffled[0])
				if other := desiredFor(w, shuffled); !reflect.DeepEqual(desired, other) {
					t.Fatalf("buildDesiredState depends on the order of the Pods:\n%+v\n%+v", desired, other)
				}
			}
			checkDesired(t, w, desired)

			plan := planChanges(fuzzUID, desired, observed)
			if again := planChanges(fuzzUID, desired, observed); !reflect.DeepEqual(plan, again) {
				t.Fatalf("planChanges is not deterministic:\n%+v\n%+v", plan, again)
			}
			for _, l := range plan.ModifyListeners {
				if !ownsListener(fuzzUID, l.Listener) {
					t.Fatalf("the plan modifies listener %+v, which is not the Service's", l.Listener)
				}
			}
			for _, l := range plan.DeleteListeners {
				if !ownsListener(fuzzUID, l) {
					t.Fatalf("the plan deletes listener %+v, which is not the Service's", l)
				}
			}
			if !w.apiValid {
				// The fake, like the CLB, refuses such ports; what matters
				// here is that nothing panicked.
				return
			}

			if err := c.apply(ctx, &observed, plan); err != nil {
				t.Fatalf("generation %d: applying %+v: %v", generation, plan, err)
			}
			if next := planChanges(fuzzUID, desired, observed); !next.Empty() {
				t.Fatalf("generation %d: after applying\n%+v\nthe plan against the recorded state is not empty:\n%+v", generation, plan, next)
			}
			read := readObserved(ctx, t, clb, lb.ID)
			if next := planChanges(fuzzUID, desired, read); !next.Empty() {
				t.Fatalf("generation %d: after applying\n%+v\nthe plan against the CLB read back is not empty:\n%+v", generation, plan, next)
			}
		}

		if foreign != nil {
			after := readObserved(ctx, t, clb, lb.ID)
			i := slices.IndexFunc(after.Listeners, func(l cloud.Listener) bool { return l.ID == foreign[0].ID })
			if i < 0 || !reflect.DeepEqual(after.Listeners[i], foreign[0]) || !reflect.DeepEqual(after.Backends[foreign[0].ID], foreignBackends[foreign[0].ID]) {
				t.Fatalf("the foreign listener %+v (backends %v) changed", foreign[0], foreignBackends)
			}
		}
	})
}
