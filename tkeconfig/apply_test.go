package tkeconfig

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"clb-direct/cloud"
)

// onCLB is a listener as DescribeListeners reports one: a TCP check with the
// CLB's defaults, no session persistence, WRR.
func onCLB() cloud.ListenerSpec {
	return cloud.ListenerSpec{
		Name: "clb-direct-uid-TCP-80", Protocol: cloud.ProtocolTCP, Port: 80,
		HealthCheck: &cloud.HealthCheck{
			Enabled: true, IntervalSeconds: 5, TimeoutSeconds: 2, HealthyThreshold: 3, UnhealthyThreshold: 3, CheckType: "TCP",
		},
		Scheduler: "WRR",
	}
}

// with returns onCLB changed by f.
func with(f func(*cloud.ListenerSpec)) cloud.ListenerSpec {
	s := onCLB()
	f(&s)
	return s
}

func TestDesiredListenerSpec(t *testing.T) {
	disabled := with(func(s *cloud.ListenerSpec) { s.HealthCheck.Enabled = false })
	persistent := with(func(s *cloud.ListenerSpec) { s.SessionExpireSeconds = 600 })
	for _, tc := range []struct {
		name    string
		current cloud.ListenerSpec
		l       *L4Listener
		want    cloud.ListenerSpec
		changed bool
	}{
		{name: "no config", current: onCLB(), want: onCLB()},
		{name: "nothing declared", current: onCLB(), l: &L4Listener{Protocol: "TCP", Port: 80}, want: onCLB()},
		{
			name:    "empty blocks declare nothing",
			current: persistent,
			l:       &L4Listener{Protocol: "TCP", Port: 80, HealthCheck: &HealthCheck{}, Session: &Session{}},
			want:    persistent,
		},
		{
			name:    "declared values the CLB already has",
			current: onCLB(),
			l: &L4Listener{
				HealthCheck: &HealthCheck{Enable: ptr(true), IntervalTime: ptr[int64](5), CheckType: ptr("TCP")},
				Session:     &Session{Enable: ptr(false)}, Scheduler: ptr("WRR"),
			},
			want: onCLB(),
		},
		{
			name:    "health check, one field",
			current: onCLB(),
			l:       &L4Listener{HealthCheck: &HealthCheck{IntervalTime: ptr[int64](30)}},
			want:    with(func(s *cloud.ListenerSpec) { s.HealthCheck.IntervalSeconds = 30 }),
			changed: true,
		},
		{
			name:    "health check, every field",
			current: onCLB(),
			l: &L4Listener{HealthCheck: &HealthCheck{
				Enable: ptr(true), IntervalTime: ptr[int64](10), Timeout: ptr[int64](4), HealthNum: ptr[int64](2), UnHealthNum: ptr[int64](5),
				HTTPCode: ptr[int64](6), HTTPCheckPath: ptr("/healthz"), HTTPCheckDomain: ptr("example.com"),
				HTTPCheckMethod: ptr("GET"), CheckType: ptr("HTTP"), SourceIPType: ptr[int64](1),
			}},
			want: with(func(s *cloud.ListenerSpec) {
				s.HealthCheck = &cloud.HealthCheck{
					Enabled: true, IntervalSeconds: 10, TimeoutSeconds: 4, HealthyThreshold: 2, UnhealthyThreshold: 5,
					HTTPCode: 6, HTTPPath: "/healthz", HTTPDomain: "example.com", HTTPMethod: "GET", CheckType: "HTTP",
				}
			}),
			changed: true,
		},
		{
			name:    "disable the check, keeping its settings",
			current: onCLB(),
			l:       &L4Listener{HealthCheck: &HealthCheck{Enable: ptr(false)}},
			want:    disabled,
			changed: true,
		},
		{
			// ModifyListener sends a disabled check's switch only: applying
			// the interval would leave a difference no call can remove.
			name:    "disable the check: its other settings wait",
			current: onCLB(),
			l:       &L4Listener{HealthCheck: &HealthCheck{Enable: ptr(false), IntervalTime: ptr[int64](30)}},
			want:    disabled,
			changed: true,
		},
		{
			name:    "settings of a check the CLB has disabled wait",
			current: disabled,
			l:       &L4Listener{HealthCheck: &HealthCheck{IntervalTime: ptr[int64](30)}},
			want:    disabled,
		},
		{
			name:    "enable a disabled check with settings",
			current: disabled,
			l:       &L4Listener{HealthCheck: &HealthCheck{Enable: ptr(true), IntervalTime: ptr[int64](30)}},
			want:    with(func(s *cloud.ListenerSpec) { s.HealthCheck.IntervalSeconds = 30 }),
			changed: true,
		},
		{
			name:    "unknown check: the CLB's defaults are the base",
			current: with(func(s *cloud.ListenerSpec) { s.HealthCheck = nil }),
			l:       &L4Listener{HealthCheck: &HealthCheck{Timeout: ptr[int64](3)}},
			want: with(func(s *cloud.ListenerSpec) {
				s.HealthCheck = &cloud.HealthCheck{Enabled: true, IntervalSeconds: 5, TimeoutSeconds: 3, HealthyThreshold: 3, UnhealthyThreshold: 3}
			}),
			changed: true,
		},
		{
			name:    "session disabled",
			current: persistent,
			l:       &L4Listener{Session: &Session{Enable: ptr(false), SessionExpireTime: ptr[int64](300)}},
			want:    onCLB(),
			changed: true,
		},
		{
			name:    "session enabled without a time: the default",
			current: onCLB(),
			l:       &L4Listener{Session: &Session{Enable: ptr(true)}},
			want:    with(func(s *cloud.ListenerSpec) { s.SessionExpireSeconds = 30 }),
			changed: true,
		},
		{
			name:    "session enabled without a time, already on: the CLB's time stays",
			current: persistent,
			l:       &L4Listener{Session: &Session{Enable: ptr(true)}},
			want:    persistent,
		},
		{
			name:    "session enabled with a time",
			current: onCLB(),
			l:       &L4Listener{Session: &Session{Enable: ptr(true), SessionExpireTime: ptr[int64](300)}},
			want:    with(func(s *cloud.ListenerSpec) { s.SessionExpireSeconds = 300 }),
			changed: true,
		},
		{
			name:    "session time alone changes a persistent listener",
			current: persistent,
			l:       &L4Listener{Session: &Session{SessionExpireTime: ptr[int64](300)}},
			want:    with(func(s *cloud.ListenerSpec) { s.SessionExpireSeconds = 300 }),
			changed: true,
		},
		{
			name:    "session time alone does not enable persistence",
			current: onCLB(),
			l:       &L4Listener{Session: &Session{SessionExpireTime: ptr[int64](300)}},
			want:    onCLB(),
		},
		{
			name:    "scheduler",
			current: onCLB(),
			l:       &L4Listener{Scheduler: ptr("LEAST_CONN")},
			want:    with(func(s *cloud.ListenerSpec) { s.Scheduler = "LEAST_CONN" }),
			changed: true,
		},
		{
			name:    "scheduler over the CLB's unreported one",
			current: with(func(s *cloud.ListenerSpec) { s.Scheduler = "" }),
			l:       &L4Listener{Scheduler: ptr("WRR")},
			want:    onCLB(),
			changed: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := clone(tc.current)
			got, changed := DesiredListenerSpec(tc.current, tc.l)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("spec (-want +got):\n%s", diff)
			}
			if changed != tc.changed {
				t.Errorf("changed = %v, want %v", changed, tc.changed)
			}
			if diff := cmp.Diff(before, tc.current); diff != "" {
				t.Errorf("current was modified (-before +after):\n%s", diff)
			}
			// The result is the caller's to change.
			if got.HealthCheck != nil && got.HealthCheck == tc.current.HealthCheck {
				t.Error("the result shares current's health check")
			}
		})
	}
}

func clone(s cloud.ListenerSpec) cloud.ListenerSpec {
	if s.HealthCheck != nil {
		hc := *s.HealthCheck
		s.HealthCheck = &hc
	}
	return s
}

func TestAutoConfig(t *testing.T) {
	listeners := []cloud.Listener{
		{ID: "lbl-3", ListenerSpec: cloud.ListenerSpec{
			Protocol: cloud.ProtocolUDP, Port: 53, Scheduler: "WRR",
			HealthCheck: &cloud.HealthCheck{Enabled: false, IntervalSeconds: 5, TimeoutSeconds: 2, HealthyThreshold: 3, UnhealthyThreshold: 3},
		}},
		{ID: "lbl-1", ListenerSpec: cloud.ListenerSpec{
			Protocol: cloud.ProtocolTCP, Port: 443, SessionExpireSeconds: 300, Scheduler: "LEAST_CONN",
			HealthCheck: &cloud.HealthCheck{
				Enabled: true, IntervalSeconds: 10, TimeoutSeconds: 4, HealthyThreshold: 2, UnhealthyThreshold: 5,
				CheckType: "HTTP", HTTPCode: 2, HTTPPath: "/healthz", HTTPDomain: "example.com", HTTPMethod: "HEAD",
			},
		}},
		// What the schema would refuse (an unknown scheduler, values out
		// of range, a timeout above the interval, a lower-case method) is
		// left out rather than making the object unacceptable.
		{ID: "lbl-2", ListenerSpec: cloud.ListenerSpec{
			Protocol: cloud.ProtocolTCP, Port: 80, SessionExpireSeconds: 7200, Scheduler: "IP_HASH",
			HealthCheck: &cloud.HealthCheck{Enabled: true, IntervalSeconds: 5, TimeoutSeconds: 6, HealthyThreshold: 11, UnhealthyThreshold: 3, HTTPMethod: "get"},
		}},
		{ID: "lbl-4", ListenerSpec: cloud.ListenerSpec{Protocol: cloud.ProtocolTCP, Port: 8080}},
		{ID: "lbl-5", ListenerSpec: cloud.ListenerSpec{Protocol: "HTTPS", Port: 443}},
	}
	u := AutoConfig("ns", "echo", "svc-uid", listeners, 10)

	if u.GetName() != "echo-auto-service-config" || u.GetNamespace() != "ns" || u.GroupVersionKind() != GVK {
		t.Errorf("object %s %s/%s, want %s ns/echo-auto-service-config", u.GroupVersionKind(), u.GetNamespace(), u.GetName(), GVK)
	}
	if diff := cmp.Diff(map[string]string{"app.kubernetes.io/managed-by": "clb-direct"}, u.GetLabels()); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}
	wantOwners := []metav1.OwnerReference{{
		APIVersion: "v1", Kind: "Service", Name: "echo", UID: "svc-uid", Controller: ptr(true), BlockOwnerDeletion: ptr(false),
	}}
	if diff := cmp.Diff(wantOwners, u.GetOwnerReferences()); diff != "" {
		t.Errorf("ownerReferences (-want +got):\n%s", diff)
	}
	// Only JSON values: DeepCopy panics on others (an int32, say), and the
	// client would send them differently from what we compare.
	u = u.DeepCopy()

	got, err := FromUnstructured(u)
	if err != nil {
		t.Fatalf("AutoConfig's object does not read back: %v", err)
	}
	if errs := schemaErrors(t, u); len(errs) > 0 {
		t.Errorf("the CRD's schema refuses AutoConfig's object: %v", errs)
	}
	want := &TkeServiceConfig{Name: "echo-auto-service-config", Namespace: "ns", LoadBalancer: LoadBalancerConfig{
		InternetMaxBandwidthOut: ptr[int64](10),
		L4Listeners: []L4Listener{
			{
				Protocol: "TCP", Port: 80, Session: &Session{Enable: ptr(true)},
				HealthCheck: &HealthCheck{Enable: ptr(true), IntervalTime: ptr[int64](5), UnHealthNum: ptr[int64](3)},
			},
			{
				Protocol: "TCP", Port: 443, Session: &Session{Enable: ptr(true), SessionExpireTime: ptr[int64](300)},
				HealthCheck: &HealthCheck{
					Enable: ptr(true), IntervalTime: ptr[int64](10), Timeout: ptr[int64](4), HealthNum: ptr[int64](2), UnHealthNum: ptr[int64](5),
					CheckType: ptr("HTTP"), HTTPCode: ptr[int64](2), HTTPCheckPath: ptr("/healthz"), HTTPCheckDomain: ptr("example.com"),
					HTTPCheckMethod: ptr("HEAD"),
				},
				Scheduler: ptr("LEAST_CONN"),
			},
			{Protocol: "TCP", Port: 8080, Session: &Session{Enable: ptr(false)}},
			{
				Protocol: "UDP", Port: 53, Session: &Session{Enable: ptr(false)}, Scheduler: ptr("WRR"),
				HealthCheck: &HealthCheck{Enable: ptr(false), IntervalTime: ptr[int64](5), Timeout: ptr[int64](2), HealthNum: ptr[int64](3), UnHealthNum: ptr[int64](3)},
			},
		},
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("read back (-want +got):\n%s", diff)
	}

	// The auto config describes the CLB as it is: applying it changes
	// nothing, or the controller would modify listeners on every sync.
	for _, l := range listeners {
		cl := got.Listener(string(l.Protocol), l.Port)
		if spec, changed := DesiredListenerSpec(l.ListenerSpec, cl); changed {
			t.Errorf("listener %s %s:%d: applying the auto config changes it to %+v", l.ID, l.Protocol, l.Port, spec)
		}
	}
}

func TestAutoConfigBandwidth(t *testing.T) {
	for _, tc := range []struct {
		bandwidth int64
		want      *int64
	}{
		{0, nil}, // not reported, or an internal CLB
		{1, ptr[int64](1)},
		{2048, ptr[int64](2048)},
		{5000, nil}, // the schema would refuse the object
	} {
		got, err := FromUnstructured(AutoConfig("ns", "echo", "uid", nil, tc.bandwidth))
		if err != nil {
			t.Fatalf("bandwidth %d: %v", tc.bandwidth, err)
		}
		if diff := cmp.Diff(tc.want, got.LoadBalancer.InternetMaxBandwidthOut); diff != "" {
			t.Errorf("bandwidth %d: internetMaxBandwidthOut (-want +got):\n%s", tc.bandwidth, diff)
		}
		if len(got.LoadBalancer.L4Listeners) != 0 {
			t.Errorf("bandwidth %d: listeners %+v, want none", tc.bandwidth, got.LoadBalancer.L4Listeners)
		}
	}
}
