package tencent

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"clb-direct/cloud"
)

func podBackend(listener, ip string, port, weight int32) cloud.ListenerBackend {
	return cloud.ListenerBackend{ListenerID: listener, Backend: cloud.Backend{IP: ip, Port: port, Weight: weight}}
}

func nodeBackend(listener, instance string, port, weight int32) cloud.ListenerBackend {
	return cloud.ListenerBackend{ListenerID: listener, Backend: cloud.Backend{InstanceID: instance, Port: port, Weight: weight}}
}

func ok(map[string]any, int) any { return map[string]any{} }

func TestBatchRequests(t *testing.T) {
	f := newFakeAPI(t)
	for _, a := range []string{"BatchRegisterTargets", "BatchDeregisterTargets", "BatchModifyTargetWeight"} {
		f.handle(a, ok)
	}
	c := newTestCloud(t, f, nil)
	backends := []cloud.ListenerBackend{
		podBackend("lbl-1", "10.0.0.1", 8080, 10),
		nodeBackend("lbl-2", "ins-1", 30080, 50),
		podBackend("lbl-1", "10.0.0.2", 8080, 0),
	}
	ctx := t.Context()
	if err := c.RegisterBackends(ctx, "lb-1", backends); err != nil {
		t.Fatalf("RegisterBackends: %v", err)
	}
	if err := c.DeregisterBackends(ctx, "lb-1", backends); err != nil {
		t.Fatalf("DeregisterBackends: %v", err)
	}
	if err := c.ModifyBackendWeights(ctx, "lb-1", backends); err != nil {
		t.Fatalf("ModifyBackendWeights: %v", err)
	}

	wantRegister := map[string]any{"LoadBalancerId": "lb-1", "Targets": []any{
		map[string]any{"ListenerId": "lbl-1", "EniIp": "10.0.0.1", "Port": 8080.0, "Weight": 10.0},
		map[string]any{"ListenerId": "lbl-2", "InstanceId": "ins-1", "Port": 30080.0, "Weight": 50.0},
		map[string]any{"ListenerId": "lbl-1", "EniIp": "10.0.0.2", "Port": 8080.0, "Weight": 0.0},
	}}
	wantDeregister := map[string]any{"LoadBalancerId": "lb-1", "Targets": []any{
		map[string]any{"ListenerId": "lbl-1", "EniIp": "10.0.0.1", "Port": 8080.0},
		map[string]any{"ListenerId": "lbl-2", "InstanceId": "ins-1", "Port": 30080.0},
		map[string]any{"ListenerId": "lbl-1", "EniIp": "10.0.0.2", "Port": 8080.0},
	}}
	wantWeights := map[string]any{"LoadBalancerId": "lb-1", "ModifyList": []any{
		map[string]any{"ListenerId": "lbl-1", "Targets": []any{
			map[string]any{"EniIp": "10.0.0.1", "Port": 8080.0, "Weight": 10.0},
			map[string]any{"EniIp": "10.0.0.2", "Port": 8080.0, "Weight": 0.0},
		}},
		map[string]any{"ListenerId": "lbl-2", "Targets": []any{
			map[string]any{"InstanceId": "ins-1", "Port": 30080.0, "Weight": 50.0},
		}},
	}}
	for action, want := range map[string]map[string]any{
		"BatchRegisterTargets": wantRegister, "BatchDeregisterTargets": wantDeregister, "BatchModifyTargetWeight": wantWeights,
	} {
		calls := f.callsOf(action)
		if len(calls) != 1 {
			t.Errorf("%s: %d calls, want 1", action, len(calls))
			continue
		}
		if diff := cmp.Diff(want, calls[0].Body); diff != "" {
			t.Errorf("%s request (-want +got):\n%s", action, diff)
		}
	}
	// Each write waited for its own task.
	var tasks []any
	for _, call := range f.callsOf("DescribeTaskStatus") {
		tasks = append(tasks, call.Body["TaskId"])
	}
	if want := []any{"req-BatchRegisterTargets-0", "req-BatchDeregisterTargets-0", "req-BatchModifyTargetWeight-0"}; !slices.Equal(tasks, want) {
		t.Errorf("tasks polled %v, want %v", tasks, want)
	}
}

func TestBatchLimitsAreCheckedBeforeCalling(t *testing.T) {
	f := newFakeAPI(t)
	c := newTestCloud(t, f, nil)
	var tooMany []cloud.ListenerBackend
	for i := range cloud.MaxBackendsPerBatch + 1 {
		tooMany = append(tooMany, podBackend("lbl-1", fmt.Sprintf("10.0.%d.%d", i/256, i%256), 80, 10))
	}
	for name, call := range map[string]func([]cloud.ListenerBackend) error{
		"RegisterBackends":     func(b []cloud.ListenerBackend) error { return c.RegisterBackends(t.Context(), "lb-1", b) },
		"DeregisterBackends":   func(b []cloud.ListenerBackend) error { return c.DeregisterBackends(t.Context(), "lb-1", b) },
		"ModifyBackendWeights": func(b []cloud.ListenerBackend) error { return c.ModifyBackendWeights(t.Context(), "lb-1", b) },
	} {
		t.Run(name, func(t *testing.T) {
			wantCloudError(t, call(tooMany), cloud.CodeInvalidParameterVal, cloud.KindTerminal)
			wantCloudError(t, call(nil), cloud.CodeMissingParameter, cloud.KindTerminal)
		})
	}
	if n := len(f.callsOf("")); n != 0 {
		t.Errorf("%d HTTP calls, want none", n)
	}
}

func TestPartialBatchFailure(t *testing.T) {
	backends := []cloud.ListenerBackend{
		podBackend("lbl-1", "10.0.0.1", 80, 10),
		podBackend("lbl-2", "10.0.0.1", 81, 10),
		podBackend("lbl-3", "10.0.0.1", 82, 10),
	}
	for _, tc := range []struct {
		name      string
		failed    []string
		wantPolls int
	}{
		{"some listeners", []string{"lbl-2", "lbl-3"}, 1},
		// Nothing ran: there is no task to wait for.
		{"every listener", []string{"lbl-1", "lbl-2", "lbl-3"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeAPI(t)
			answer := func(map[string]any, int) any { return map[string]any{"FailListenerIdSet": tc.failed} }
			f.handle("BatchRegisterTargets", answer)
			f.handle("BatchDeregisterTargets", answer)
			c := newTestCloud(t, f, nil)
			for action, call := range map[string]func() error{
				"BatchRegisterTargets":   func() error { return c.RegisterBackends(t.Context(), "lb-1", backends) },
				"BatchDeregisterTargets": func() error { return c.DeregisterBackends(t.Context(), "lb-1", backends) },
			} {
				err := call()
				var pf *cloud.PartialFailure
				if !errors.As(err, &pf) {
					t.Fatalf("%s: error %v, want a *cloud.PartialFailure", action, err)
				}
				if pf.Action != action || !slices.Equal(pf.FailedListenerIDs, tc.failed) || pf.Failed("lbl-1") != slices.Contains(tc.failed, "lbl-1") {
					t.Errorf("%s: %+v, want action %s and listeners %v", action, pf, action, tc.failed)
				}
			}
			if n := len(f.callsOf("DescribeTaskStatus")); n != 2*tc.wantPolls {
				t.Errorf("%d task polls, want %d", n, 2*tc.wantPolls)
			}
		})
	}
}

func TestPartialFailureWaitsForTheTaskOfTheRest(t *testing.T) {
	f := newFakeAPI(t)
	f.handle("BatchRegisterTargets", func(map[string]any, int) any { return map[string]any{"FailListenerIdSet": []string{"lbl-2"}} })
	f.handle("DescribeTaskStatus", func(map[string]any, int) any { return map[string]any{"Status": taskFailed} })
	c := newTestCloud(t, f, nil)
	// The task of lbl-1 failed too: the whole batch failed, not a part.
	err := c.RegisterBackends(t.Context(), "lb-1", []cloud.ListenerBackend{podBackend("lbl-1", "10.0.0.1", 80, 1), podBackend("lbl-2", "10.0.0.1", 80, 1)})
	wantCloudError(t, err, cloud.CodeFailedOperation, cloud.KindTransient)
}

func TestDescribeBackends(t *testing.T) {
	f := newFakeAPI(t)
	f.handle("DescribeTargets", func(map[string]any, int) any {
		return map[string]any{"Listeners": []any{
			map[string]any{"ListenerId": "lbl-1", "Protocol": "TCP", "Port": 80, "Targets": []any{
				map[string]any{"Type": "ENI", "InstanceId": "eni-1", "Port": 8080, "Weight": 10, "PrivateIpAddresses": []string{"10.0.0.1"}},
				map[string]any{"Type": "CVM", "InstanceId": "ins-1", "Port": 30080, "Weight": 50, "PrivateIpAddresses": []string{"192.168.0.1"}},
			}},
			map[string]any{"ListenerId": "lbl-2", "Protocol": "UDP", "Port": 53},
		}}
	})
	c := newTestCloud(t, f, nil)
	got, err := c.DescribeBackends(t.Context(), "lb-1")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]cloud.Backend{
		"lbl-1": {{IP: "10.0.0.1", Port: 8080, Weight: 10}, {InstanceID: "ins-1", Port: 30080, Weight: 50}},
		"lbl-2": {},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("backends (-want +got):\n%s", diff)
	}
	if body := f.callsOf("DescribeTargets")[0].Body; body["LoadBalancerId"] != "lb-1" {
		t.Errorf("request %v", body)
	}
}

func TestDescribeBackendHealth(t *testing.T) {
	f := newFakeAPI(t)
	f.handle("DescribeTargetHealth", func(body map[string]any, _ int) any {
		var lbs []any
		for _, id := range body["LoadBalancerIds"].([]any) {
			lbs = append(lbs, map[string]any{"LoadBalancerId": id, "Listeners": []any{
				map[string]any{"ListenerId": "lbl-" + id.(string), "Rules": []any{map[string]any{"Targets": []any{
					map[string]any{"IP": "10.0.0.1", "Port": 8080, "HealthStatus": true, "HealthStatusDetial": "Alive"},
					map[string]any{"IP": "10.0.0.2", "Port": 8080, "HealthStatus": false, "HealthStatusDetial": "Dead"},
				}}}},
			}})
		}
		return map[string]any{"LoadBalancers": lbs}
	})
	c := newTestCloud(t, f, nil)
	var ids []string
	for i := range 45 {
		ids = append(ids, fmt.Sprintf("lb-%d", i))
	}
	got, err := c.DescribeBackendHealth(t.Context(), ids)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 90 {
		t.Fatalf("%d health entries, want 90", len(got))
	}
	want := []cloud.BackendHealth{
		{LoadBalancerID: "lb-0", ListenerID: "lbl-lb-0", IP: "10.0.0.1", Port: 8080, Healthy: true, Detail: "Alive"},
		{LoadBalancerID: "lb-0", ListenerID: "lbl-lb-0", IP: "10.0.0.2", Port: 8080, Healthy: false, Detail: "Dead"},
	}
	if diff := cmp.Diff(want, got[:2]); diff != "" {
		t.Errorf("health (-want +got):\n%s", diff)
	}
	var sizes []int
	for _, call := range f.callsOf("DescribeTargetHealth") {
		sizes = append(sizes, len(call.Body["LoadBalancerIds"].([]any)))
	}
	if !slices.Equal(sizes, []int{20, 20, 5}) {
		t.Errorf("calls of %v IDs, want 20, 20, 5", sizes)
	}
}
