package fake

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	clb "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/clb/v20180317"

	"clb-direct/cloud"
)

// jsonNames returns the JSON names of a struct's own exported fields.
func jsonNames(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous || !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// The fake takes exactly the extensive parameters the SDK's request has,
// so that it refuses what the adapter refuses.
func TestCreateParametersAreTheSDKs(t *testing.T) {
	var want []string
	for _, name := range jsonNames(reflect.TypeFor[clb.CreateLoadBalancerRequest]()) {
		if !cloud.IsReservedCreateParameter(name) {
			want = append(want, name)
		}
	}
	if got := jsonNames(reflect.TypeFor[createParameters]()); !slices.Equal(got, want) {
		t.Errorf("createParameters has %v, want the SDK's unreserved %v", got, want)
	}
	if got, want := jsonNames(reflect.TypeFor[internetAccessible]()), jsonNames(reflect.TypeFor[clb.InternetAccessible]()); !slices.Equal(got, want) {
		t.Errorf("internetAccessible has %v, want the SDK's %v", got, want)
	}
}

func TestExtensiveParameters(t *testing.T) {
	c := New()
	// Go values work as well as those parsed from JSON.
	bandwidth := map[string]any{"InternetAccessible": map[string]any{"InternetMaxBandwidthOut": 20}, "ProjectId": 3}
	public, err := c.CreateLoadBalancer(ctx, cloud.LoadBalancerSpec{Name: "a", ClientToken: "a", ExtensiveParameters: bandwidth})
	mustNoErr(t, err)
	if public.InternetMaxBandwidthOut != 20 {
		t.Errorf("public CLB %+v, want InternetMaxBandwidthOut 20", public)
	}
	internal, err := c.CreateLoadBalancer(ctx, cloud.LoadBalancerSpec{Name: "b", SubnetID: "subnet-1", ExtensiveParameters: bandwidth})
	mustNoErr(t, err)
	if internal.InternetMaxBandwidthOut != 0 {
		t.Errorf("internal CLB %+v has an internet bandwidth", internal)
	}
	var parsed map[string]any
	mustNoErr(t, json.Unmarshal([]byte(`{"InternetAccessible": {"InternetMaxBandwidthOut": 2048}, "SnatIps": [{"SubnetId": "subnet-1"}]}`), &parsed))
	most, err := c.CreateLoadBalancer(ctx, cloud.LoadBalancerSpec{Name: "c", ExtensiveParameters: parsed})
	mustNoErr(t, err)
	if most.InternetMaxBandwidthOut != cloud.MaxInternetBandwidthOut {
		t.Errorf("CLB %+v, want InternetMaxBandwidthOut %d", most, cloud.MaxInternetBandwidthOut)
	}

	c.ResetCalls()
	before := c.Snapshot()
	for _, tc := range []struct {
		params map[string]any
		code   string
	}{
		{map[string]any{"VpcId": "vpc-2"}, cloud.CodeInvalidParameter},
		{map[string]any{"InternetMaxBandwidthOut": 10}, cloud.CodeUnknownParameter},
		{map[string]any{"InternetAccessible": map[string]any{"InternetMaxBandwidthOut": -1}}, cloud.CodeInvalidParameterVal},
		{map[string]any{"InternetAccessible": map[string]any{"InternetMaxBandwidthOut": true}}, cloud.CodeInvalidParameter},
	} {
		// The parameters are checked before the ClientToken is looked up:
		// a repeated create does not hide them.
		_, err := c.CreateLoadBalancer(ctx, cloud.LoadBalancerSpec{Name: "a", ClientToken: "a", ExtensiveParameters: tc.params})
		wantCode(t, err, tc.code, cloud.KindTerminal)
	}
	if !reflect.DeepEqual(c.Snapshot(), before) {
		t.Errorf("refused creations changed the account")
	}
	for _, call := range c.Calls() {
		if call.Action != actionCreateLoadBalancer || call.Err == nil || call.LoadBalancerID != "" {
			t.Errorf("call %+v, want a failed CreateLoadBalancer about no CLB", call)
		}
	}
}

func TestModifyLoadBalancerAttributes(t *testing.T) {
	fc := newClock()
	c := New(WithClock(fc), WithTaskDuration(10*time.Second))
	lb := c.AddLoadBalancer(cloud.LoadBalancer{Name: "a", InternetMaxBandwidthOut: 10})
	internal := c.AddLoadBalancer(cloud.LoadBalancer{Name: "b", SubnetID: "subnet-1"})
	bandwidth := func() int64 {
		t.Helper()
		lbs, err := c.DescribeLoadBalancers(ctx, cloud.LoadBalancerQuery{IDs: []string{lb.ID}})
		mustNoErr(t, err)
		return lbs[0].InternetMaxBandwidthOut
	}

	fifty := int64(50)
	taskID, err := c.StartModifyLoadBalancerAttributes(ctx, lb.ID, cloud.LoadBalancerAttributes{InternetMaxBandwidthOut: &fifty})
	mustNoErr(t, err)
	fifty = 60 // the task has its own copy
	if got := bandwidth(); got != 10 {
		t.Errorf("bandwidth %d while the task runs, want 10", got)
	}
	_, err = c.StartModifyLoadBalancerAttributes(ctx, lb.ID, cloud.LoadBalancerAttributes{})
	wantCode(t, err, cloud.CodeResourceInOperating, cloud.KindTransient)
	_, _, err = c.StartCreateListener(ctx, lb.ID, tcp(80))
	wantCode(t, err, cloud.CodeResourceInOperating, cloud.KindTransient)
	fc.Step(10 * time.Second)
	if s, err := c.TaskStatus(ctx, taskID); err != nil || s != TaskDone {
		t.Fatalf("task status %d, %v; want done", s, err)
	}
	if got := bandwidth(); got != 50 {
		t.Errorf("bandwidth %d after the task, want 50", got)
	}

	// A failed task changes nothing.
	c.SetTaskFailureRate(1)
	taskID, err = c.StartModifyLoadBalancerAttributes(ctx, lb.ID, cloud.LoadBalancerAttributes{InternetMaxBandwidthOut: new(int64(70))})
	mustNoErr(t, err)
	fc.Step(10 * time.Second)
	if s, err := c.TaskStatus(ctx, taskID); err != nil || s != TaskFailed {
		t.Fatalf("task status %d, %v; want failed", s, err)
	}
	if got := bandwidth(); got != 50 {
		t.Errorf("bandwidth %d after a failed task, want 50", got)
	}
	c.ClearFaults()

	for _, tc := range []struct {
		lbID string
		mbps int64
		code string
	}{
		{lb.ID, cloud.MaxInternetBandwidthOut + 1, cloud.CodeInvalidParameterVal},
		{lb.ID, -1, cloud.CodeInvalidParameterVal},
		{internal.ID, 10, cloud.CodeInvalidParameterVal},
		{"lb-nope", 10, cloud.CodeLBNotFound},
	} {
		err := c.ModifyLoadBalancerAttributes(ctx, tc.lbID, cloud.LoadBalancerAttributes{InternetMaxBandwidthOut: &tc.mbps})
		wantCode(t, err, tc.code, cloud.KindOfCode(tc.code))
	}

	c.ResetCalls()
	errc := make(chan error, 1)
	go func() {
		errc <- c.ModifyLoadBalancerAttributes(ctx, lb.ID, cloud.LoadBalancerAttributes{InternetMaxBandwidthOut: new(int64(0))})
	}()
	waitForTimer(t, fc)
	notReturned(t, errc)
	fc.Step(10 * time.Second)
	mustNoErr(t, result(t, errc))
	calls := c.Calls()
	if len(calls) != 1 || calls[0].Action != "ModifyLoadBalancerAttributes" || calls[0].LoadBalancerID != lb.ID || calls[0].Err != nil {
		t.Errorf("call log %+v, want one ModifyLoadBalancerAttributes of %s", calls, lb.ID)
	}
	if n := len(c.WriteCalls()); n != 1 {
		t.Errorf("%d write calls, want 1", n)
	}
	if got := c.Snapshot().LoadBalancers[0].InternetMaxBandwidthOut; got != 0 {
		t.Errorf("bandwidth %d, want 0", got)
	}
}
