package tencent

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"clb-direct/cloud"
)

var testHealthCheck = &cloud.HealthCheck{
	Enabled: true, IntervalSeconds: 10, TimeoutSeconds: 4, HealthyThreshold: 3, UnhealthyThreshold: 2,
	CheckType: "HTTP", HTTPCode: 2, HTTPPath: "/healthz", HTTPDomain: "example.com", HTTPMethod: "GET",
}

var testHealthCheckJSON = map[string]any{
	"HealthSwitch": 1.0, "IntervalTime": 10.0, "TimeOut": 4.0, "HealthNum": 3.0, "UnHealthNum": 2.0,
	"CheckType": "HTTP", "HttpCode": 2.0, "HttpCheckPath": "/healthz", "HttpCheckDomain": "example.com", "HttpCheckMethod": "GET",
}

func TestDescribeListeners(t *testing.T) {
	f := newFakeAPI(t)
	f.handle("DescribeListeners", func(map[string]any, int) any {
		return map[string]any{"TotalCount": 2, "Listeners": []any{
			map[string]any{"ListenerId": "lbl-1", "ListenerName": "svc-80", "Protocol": "TCP", "Port": 80,
				"HealthCheck": testHealthCheckJSON, "SessionExpireTime": 60, "Scheduler": "LEAST_CONN"},
			map[string]any{"ListenerId": "lbl-2", "Protocol": "UDP", "Port": 53, "HealthCheck": map[string]any{"HealthSwitch": 0}, "Scheduler": "WRR"},
		}}
	})
	c := newTestCloud(t, f, nil)
	got, err := c.DescribeListeners(t.Context(), "lb-1")
	if err != nil {
		t.Fatal(err)
	}
	want := []cloud.Listener{
		{ID: "lbl-1", ListenerSpec: cloud.ListenerSpec{Name: "svc-80", Protocol: cloud.ProtocolTCP, Port: 80,
			HealthCheck: testHealthCheck, SessionExpireSeconds: 60, Scheduler: "LEAST_CONN"}},
		{ID: "lbl-2", ListenerSpec: cloud.ListenerSpec{Protocol: cloud.ProtocolUDP, Port: 53,
			HealthCheck: &cloud.HealthCheck{}, Scheduler: "WRR"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("listeners (-want +got):\n%s", diff)
	}
}

func TestCreateListener(t *testing.T) {
	f := newFakeAPI(t)
	f.handle("CreateListener", func(map[string]any, int) any { return map[string]any{"ListenerIds": []string{"lbl-9"}} })
	f.handle("DescribeTaskStatus", func(_ map[string]any, n int) any {
		return map[string]any{"Status": []int{taskRunning, taskDone}[min(n, 1)]}
	})
	c := newTestCloud(t, f, nil)
	spec := cloud.ListenerSpec{Name: "svc-80", Protocol: cloud.ProtocolTCP, Port: 80, HealthCheck: testHealthCheck, SessionExpireSeconds: 30, Scheduler: "WRR"}

	l, err := c.CreateListener(t.Context(), "lb-1", spec)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(cloud.Listener{ID: "lbl-9", ListenerSpec: spec}, l); diff != "" {
		t.Errorf("listener (-want +got):\n%s", diff)
	}
	want := map[string]any{
		"LoadBalancerId": "lb-1", "Ports": []any{80.0}, "Protocol": "TCP", "ListenerNames": []any{"svc-80"},
		"HealthCheck": testHealthCheckJSON, "SessionExpireTime": 30.0, "Scheduler": "WRR",
	}
	if diff := cmp.Diff(want, f.callsOf("CreateListener")[0].Body); diff != "" {
		t.Errorf("request (-want +got):\n%s", diff)
	}
	if n := len(f.callsOf("DescribeTaskStatus")); n != 2 {
		t.Errorf("%d polls, want 2", n)
	}
}

func TestModifyListener(t *testing.T) {
	f := newFakeAPI(t)
	f.handle("ModifyListener", ok)
	c := newTestCloud(t, f, nil)
	for _, tc := range []struct {
		spec cloud.ListenerSpec
		want map[string]any
	}{
		{
			cloud.ListenerSpec{HealthCheck: testHealthCheck, SessionExpireSeconds: 120, Scheduler: "LEAST_CONN"},
			map[string]any{"HealthCheck": testHealthCheckJSON, "SessionExpireTime": 120.0, "Scheduler": "LEAST_CONN"},
		},
		{
			// No health check or scheduler: the listener keeps its own;
			// session persistence 0 turns it off.
			cloud.ListenerSpec{},
			map[string]any{"SessionExpireTime": 0.0},
		},
		{
			cloud.ListenerSpec{HealthCheck: &cloud.HealthCheck{Enabled: false, IntervalSeconds: 10}},
			map[string]any{"HealthCheck": map[string]any{"HealthSwitch": 0.0}, "SessionExpireTime": 0.0},
		},
	} {
		before := len(f.callsOf("ModifyListener"))
		if err := c.ModifyListener(t.Context(), "lb-1", "lbl-1", tc.spec); err != nil {
			t.Fatal(err)
		}
		calls := f.callsOf("ModifyListener")
		tc.want["LoadBalancerId"], tc.want["ListenerId"] = "lb-1", "lbl-1"
		if diff := cmp.Diff(tc.want, calls[before].Body); diff != "" {
			t.Errorf("request for %+v (-want +got):\n%s", tc.spec, diff)
		}
	}
	if n := len(f.callsOf("DescribeTaskStatus")); n != 3 {
		t.Errorf("%d polls, want one per call", n)
	}
}
