package controller

import (
	"fmt"
	"math/rand"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"k8s.io/apimachinery/pkg/types"

	"clb-direct/cloud"
)

// otherUID is another Service sharing the CLB.
const otherUID types.UID = "uid-2"

// listenerOf is a listener that uid's controller created.
func listenerOf(uid types.UID, id string, protocol cloud.Protocol, port int32) cloud.Listener {
	return foreignListener(id, listenerName(uid, ListenerKey{Protocol: protocol, Port: port}), protocol, port)
}

// foreignListener is a listener with any name, e.g. one made in the console.
func foreignListener(id, name string, protocol cloud.Protocol, port int32) cloud.Listener {
	return cloud.Listener{ID: id, ListenerSpec: cloud.ListenerSpec{Name: name, Protocol: protocol, Port: port}}
}

func mkObserved(listeners []cloud.Listener, backends map[string][]cloud.Backend) ObservedState {
	return ObservedState{LoadBalancer: cloud.LoadBalancer{ID: "lb-1"}, Listeners: listeners, Backends: backends}
}

func mkDesired(listeners ...DesiredListener) DesiredState {
	return DesiredState{Listeners: listeners}
}

// wantSpec is the listener planChanges creates for unitUID on a port.
func wantSpec(protocol cloud.Protocol, port int32) cloud.ListenerSpec {
	return cloud.ListenerSpec{
		Name:     fmt.Sprintf("clbdirect_%s_%s_%d", unitUID, protocol, port),
		Protocol: protocol,
		Port:     port,
		HealthCheck: &cloud.HealthCheck{
			Enabled: true, IntervalSeconds: 5, TimeoutSeconds: 2, HealthyThreshold: 3, UnhealthyThreshold: 3,
		},
	}
}

func change(protocol cloud.Protocol, port int32, b cloud.Backend) BackendChange {
	return BackendChange{Listener: ListenerKey{Protocol: protocol, Port: port}, Backend: b}
}

func weighted(b cloud.Backend, weight int32) cloud.Backend {
	b.Weight = weight
	return b
}

func TestPlanChanges(t *testing.T) {
	const tcp, udp = cloud.ProtocolTCP, cloud.ProtocolUDP
	var (
		a = mkBackend("10.0.0.1", 8080)
		b = mkBackend("10.0.0.2", 8080)
		c = mkBackend("10.0.0.3", 8080)
		d = mkBackend("10.0.0.4", 8080)
		e = mkBackend("10.0.0.5", 8080)
		// Same IP as a, another port: a distinct backend.
		a9 = mkBackend("10.0.0.1", 9090)
	)
	type backends = map[string][]cloud.Backend
	tests := []struct {
		name     string
		desired  DesiredState
		observed ObservedState
		want     Plan
	}{
		{
			name:     "from nothing creates listeners and registers everything",
			desired:  mkDesired(mkListener(tcp, 80, a, b), mkListener(tcp, 443, a9), mkListener(udp, 53, c)),
			observed: mkObserved(nil, nil),
			want: Plan{
				CreateListeners: []cloud.ListenerSpec{wantSpec(tcp, 80), wantSpec(tcp, 443), wantSpec(udp, 53)},
				Register:        []BackendChange{change(tcp, 80, a), change(tcp, 80, b), change(tcp, 443, a9), change(udp, 53, c)},
			},
		},
		{
			name:     "new listener without backends",
			desired:  mkDesired(mkListener(tcp, 80)),
			observed: mkObserved(nil, nil),
			want:     Plan{CreateListeners: []cloud.ListenerSpec{wantSpec(tcp, 80)}},
		},
		{
			name:    "nothing changed",
			desired: mkDesired(mkListener(tcp, 80, a, b), mkListener(udp, 53, c)),
			observed: mkObserved(
				[]cloud.Listener{listenerOf(unitUID, "lbl-53", udp, 53), listenerOf(unitUID, "lbl-80", tcp, 80)},
				backends{"lbl-80": {b, a}, "lbl-53": {c}}),
			want: Plan{},
		},
		{
			name:     "backend added",
			desired:  mkDesired(mkListener(tcp, 80, a, b, c)),
			observed: mkObserved([]cloud.Listener{listenerOf(unitUID, "lbl-80", tcp, 80)}, backends{"lbl-80": {b}}),
			want:     Plan{Register: []BackendChange{change(tcp, 80, a), change(tcp, 80, c)}},
		},
		{
			name:     "existing listener whose backends were never read registers all",
			desired:  mkDesired(mkListener(tcp, 80, a)),
			observed: mkObserved([]cloud.Listener{listenerOf(unitUID, "lbl-80", tcp, 80)}, nil),
			want:     Plan{Register: []BackendChange{change(tcp, 80, a)}},
		},
		{
			name:     "backend removed",
			desired:  mkDesired(mkListener(tcp, 80, b)),
			observed: mkObserved([]cloud.Listener{listenerOf(unitUID, "lbl-80", tcp, 80)}, backends{"lbl-80": {c, b, a}}),
			want:     Plan{Deregister: []BackendChange{change(tcp, 80, a), change(tcp, 80, c)}},
		},
		{
			name:     "all backends removed",
			desired:  mkDesired(mkListener(tcp, 80)),
			observed: mkObserved([]cloud.Listener{listenerOf(unitUID, "lbl-80", tcp, 80)}, backends{"lbl-80": {a}}),
			want:     Plan{Deregister: []BackendChange{change(tcp, 80, a)}},
		},
		{
			name:     "weight changed",
			desired:  mkDesired(mkListener(tcp, 80, weighted(a, 50), b)),
			observed: mkObserved([]cloud.Listener{listenerOf(unitUID, "lbl-80", tcp, 80)}, backends{"lbl-80": {a, b}}),
			want:     Plan{ModifyWeight: []BackendChange{change(tcp, 80, weighted(a, 50))}},
		},
		{
			name:    "added, re-weighted and removed on two listeners, in listener then backend order",
			desired: mkDesired(mkListener(tcp, 80, weighted(a, 0), c, e), mkListener(udp, 53, a, b)),
			observed: mkObserved(
				[]cloud.Listener{listenerOf(unitUID, "lbl-53", udp, 53), listenerOf(unitUID, "lbl-80", tcp, 80)},
				backends{"lbl-80": {e, d, b, a}, "lbl-53": {weighted(b, 99), d, c}}),
			want: Plan{
				Register:     []BackendChange{change(tcp, 80, c), change(udp, 53, a)},
				ModifyWeight: []BackendChange{change(tcp, 80, weighted(a, 0)), change(udp, 53, b)},
				Deregister:   []BackendChange{change(tcp, 80, b), change(tcp, 80, d), change(udp, 53, c), change(udp, 53, d)},
			},
		},
		{
			name:    "port change moves a backend to a new port",
			desired: mkDesired(mkListener(tcp, 80, a9)),
			observed: mkObserved([]cloud.Listener{listenerOf(unitUID, "lbl-80", tcp, 80)},
				backends{"lbl-80": {a}}),
			want: Plan{Register: []BackendChange{change(tcp, 80, a9)}, Deregister: []BackendChange{change(tcp, 80, a)}},
		},
		{
			name:    "our listeners for removed ports are deleted, sorted",
			desired: mkDesired(mkListener(tcp, 80, a)),
			observed: mkObserved(
				[]cloud.Listener{
					listenerOf(unitUID, "lbl-53", udp, 53),
					listenerOf(unitUID, "lbl-80", tcp, 80),
					listenerOf(unitUID, "lbl-8443", tcp, 8443),
					listenerOf(unitUID, "lbl-443", tcp, 443),
				},
				backends{"lbl-80": {a}, "lbl-443": {a, b}, "lbl-53": {c}}),
			want: Plan{DeleteListeners: []cloud.Listener{
				listenerOf(unitUID, "lbl-443", tcp, 443),
				listenerOf(unitUID, "lbl-8443", tcp, 8443),
				listenerOf(unitUID, "lbl-53", udp, 53),
			}},
		},
		{
			name:     "no ports left deletes every listener of ours",
			desired:  mkDesired(),
			observed: mkObserved([]cloud.Listener{listenerOf(unitUID, "lbl-80", tcp, 80)}, backends{"lbl-80": {a}}),
			want:     Plan{DeleteListeners: []cloud.Listener{listenerOf(unitUID, "lbl-80", tcp, 80)}},
		},
		{
			name:    "a listener not ours on a desired port is a conflict and left alone",
			desired: mkDesired(mkListener(tcp, 80, a, b), mkListener(tcp, 443, a)),
			observed: mkObserved(
				[]cloud.Listener{foreignListener("lbl-80", "console-http", tcp, 80), listenerOf(unitUID, "lbl-443", tcp, 443)},
				backends{"lbl-80": {c, d}, "lbl-443": {a}}),
			want: Plan{Conflicts: []ListenerKey{{Protocol: tcp, Port: 80}}},
		},
		{
			name:    "foreign listeners on other ports are untouched",
			desired: mkDesired(mkListener(tcp, 80, a)),
			observed: mkObserved(
				[]cloud.Listener{
					foreignListener("lbl-8080", "console-http", tcp, 8080),
					foreignListener("lbl-9000", "", udp, 9000),
					listenerOf(unitUID, "lbl-80", tcp, 80),
				},
				backends{"lbl-80": {a}, "lbl-8080": {c}, "lbl-9000": {d}}),
			want: Plan{},
		},
		{
			name:    "another Service's listeners: conflict on our port, kept on theirs",
			desired: mkDesired(mkListener(tcp, 80, a), mkListener(udp, 53, c)),
			observed: mkObserved(
				[]cloud.Listener{
					listenerOf(otherUID, "lbl-80", tcp, 80),
					listenerOf(otherUID, "lbl-443", tcp, 443),
					listenerOf(otherUID, "lbl-53", udp, 53),
				},
				backends{"lbl-80": {b}, "lbl-443": {b}, "lbl-53": {d}}),
			want: Plan{Conflicts: []ListenerKey{{Protocol: tcp, Port: 80}, {Protocol: udp, Port: 53}}},
		},
		{
			name:     "conflicts do not stop the other ports",
			desired:  mkDesired(mkListener(tcp, 80, a), mkListener(tcp, 443, a)),
			observed: mkObserved([]cloud.Listener{foreignListener("lbl-80", "x", tcp, 80)}, nil),
			want: Plan{
				CreateListeners: []cloud.ListenerSpec{wantSpec(tcp, 443)},
				Register:        []BackendChange{change(tcp, 443, a)},
				Conflicts:       []ListenerKey{{Protocol: tcp, Port: 80}},
			},
		},
		{
			name:     "UDP on the port of an existing TCP listener is a new listener",
			desired:  mkDesired(mkListener(tcp, 80, a), mkListener(udp, 80, b)),
			observed: mkObserved([]cloud.Listener{listenerOf(unitUID, "lbl-tcp", tcp, 80)}, backends{"lbl-tcp": {a}}),
			want: Plan{
				CreateListeners: []cloud.ListenerSpec{wantSpec(udp, 80)},
				Register:        []BackendChange{change(udp, 80, b)},
			},
		},
		{
			name:    "switching a port from UDP to TCP replaces the listener",
			desired: mkDesired(mkListener(tcp, 53, a)),
			observed: mkObserved(
				[]cloud.Listener{listenerOf(unitUID, "lbl-udp", udp, 53)},
				backends{"lbl-udp": {a}}),
			want: Plan{
				CreateListeners: []cloud.ListenerSpec{wantSpec(tcp, 53)},
				Register:        []BackendChange{change(tcp, 53, a)},
				DeleteListeners: []cloud.Listener{listenerOf(unitUID, "lbl-udp", udp, 53)},
			},
		},
		{
			name:    "a foreign UDP listener does not conflict with our TCP one on the same port",
			desired: mkDesired(mkListener(tcp, 80, a)),
			observed: mkObserved(
				[]cloud.Listener{foreignListener("lbl-udp", "console-udp", udp, 80), listenerOf(unitUID, "lbl-tcp", tcp, 80)},
				backends{"lbl-tcp": {a}, "lbl-udp": {b}}),
			want: Plan{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := planChanges(unitUID, tt.desired, tt.observed)
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("planChanges() (-want +got):\n%s", diff)
			}
			wantEmpty := len(tt.want.CreateListeners)+len(tt.want.Register)+len(tt.want.ModifyWeight)+
				len(tt.want.Deregister)+len(tt.want.DeleteListeners) == 0
			if got.Empty() != wantEmpty {
				t.Errorf("Plan.Empty() = %v, want %v", got.Empty(), wantEmpty)
			}
		})
	}
}

// The plan does not depend on the order the CLB lists listeners and
// backends in.
func TestPlanChangesIsDeterministic(t *testing.T) {
	desired := mkDesired(
		mkListener(cloud.ProtocolTCP, 80, benchBackends(0, 30)...),
		mkListener(cloud.ProtocolTCP, 443, benchBackends(10, 30)...),
		mkListener(cloud.ProtocolUDP, 80, benchBackends(20, 30)...),
	)
	listeners := []cloud.Listener{
		listenerOf(unitUID, "lbl-1", cloud.ProtocolTCP, 80),
		listenerOf(unitUID, "lbl-2", cloud.ProtocolTCP, 443),
		foreignListener("lbl-3", "console", cloud.ProtocolUDP, 80),
		listenerOf(unitUID, "lbl-4", cloud.ProtocolUDP, 8080),
		listenerOf(unitUID, "lbl-5", cloud.ProtocolTCP, 8080),
		listenerOf(otherUID, "lbl-6", cloud.ProtocolTCP, 9090),
	}
	reweighted := benchBackends(0, 30)
	reweighted[15].Weight = 1
	observedBackends := map[string][]cloud.Backend{"lbl-1": benchBackends(5, 30), "lbl-2": reweighted}
	want := planChanges(unitUID, desired, mkObserved(listeners, observedBackends))
	if len(want.Register) == 0 || len(want.Deregister) == 0 || len(want.ModifyWeight) == 0 ||
		len(want.DeleteListeners) != 2 || len(want.Conflicts) != 1 {
		t.Fatalf("fixture does not exercise every part of the plan: %+v", want)
	}
	rng := rand.New(rand.NewSource(1))
	shuffle := func(s []cloud.Backend) []cloud.Backend {
		s = slices.Clone(s)
		rng.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
		return s
	}
	for round := range 50 {
		ls := slices.Clone(listeners)
		rng.Shuffle(len(ls), func(i, j int) { ls[i], ls[j] = ls[j], ls[i] })
		bs := map[string][]cloud.Backend{}
		for id, b := range observedBackends {
			bs[id] = shuffle(b)
		}
		got := planChanges(unitUID, desired, mkObserved(ls, bs))
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("round %d: plan depends on the observed order (-first +shuffled):\n%s", round, diff)
		}
	}
}

// benchBackends are n Pod backends with distinct IPs from the from-th on,
// sorted as buildDesiredState sorts them.
func benchBackends(from, n int) []cloud.Backend {
	out := make([]cloud.Backend, 0, n)
	for i := from; i < from+n; i++ {
		out = append(out, mkBackend(fmt.Sprintf("10.%d.%d.%d", i>>16&0xff, i>>8&0xff, i&0xff), 8080))
	}
	slices.SortFunc(out, compareBackends)
	return out
}

// planBenchStates is one listener with n desired backends, observed with
// about 1% of them different: some missing, some with another weight, and
// as many stale ones. The observed backends are in the CLB's (any) order.
func planBenchStates(n int) (DesiredState, ObservedState) {
	const tcp = cloud.ProtocolTCP
	wanted := benchBackends(0, n)
	have := make([]cloud.Backend, 0, n+n/100+1)
	for i, b := range wanted {
		switch {
		case i%300 == 0: // registered next
		case i%300 == 150:
			have = append(have, weighted(b, b.Weight+1))
		default:
			have = append(have, b)
		}
	}
	have = append(have, benchBackends(n, max(1, n/300))...)
	rand.New(rand.NewSource(int64(n))).Shuffle(len(have), func(i, j int) { have[i], have[j] = have[j], have[i] })
	return mkDesired(mkListener(tcp, 80, wanted...)),
		mkObserved([]cloud.Listener{listenerOf(unitUID, "lbl-80", tcp, 80)}, map[string][]cloud.Backend{"lbl-80": have})
}

var benchSizes = []int{10, 1000, 10000}

func BenchmarkPlanChanges(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("backends=%d", n), func(b *testing.B) {
			desired, observed := planBenchStates(n)
			plan := planChanges(unitUID, desired, observed)
			if len(plan.Register) == 0 || len(plan.Deregister) == 0 || len(plan.Register)+len(plan.ModifyWeight)+len(plan.Deregister) > max(3, n/50) {
				b.Fatalf("setup: plan of %d changes for %d backends, want about 1%%", len(plan.Register)+len(plan.ModifyWeight)+len(plan.Deregister), n)
			}
			b.ReportAllocs()
			for b.Loop() {
				planChanges(unitUID, desired, observed)
			}
		})
	}
}

// Planning allocates at most linearly in the number of backends: ten times
// the backends, at most ten times the allocations.
func TestPlanChangesAllocationsGrowAtMostLinearly(t *testing.T) {
	allocs := make(map[int]float64)
	for _, n := range benchSizes {
		desired, observed := planBenchStates(n)
		allocs[n] = testing.AllocsPerRun(5, func() { planChanges(unitUID, desired, observed) })
	}
	if allocs[10000] > 10*allocs[1000] {
		t.Errorf("allocations per plan: %v; 10x the backends took more than 10x the allocations", allocs)
	}
}
