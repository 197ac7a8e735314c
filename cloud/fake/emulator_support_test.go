package fake

import (
	"fmt"
	"reflect"
	"testing"

	"clb-direct/cloud"
)

// The options and setters the emulator relies on.

func TestWithVIPs(t *testing.T) {
	var asked []string
	c := New(WithVIPs(func(seq int, internal bool) string {
		asked = append(asked, fmt.Sprint(seq, internal))
		return fmt.Sprintf("127.2.0.%d", seq)
	}))
	lb, err := c.CreateLoadBalancer(ctx, cloud.LoadBalancerSpec{Name: "a"})
	mustNoErr(t, err)
	if len(lb.VIPs) != 1 || lb.VIPs[0] != "127.2.0.1" {
		t.Errorf("created CLB VIPs %v, want [127.2.0.1]", lb.VIPs)
	}
	added := c.AddLoadBalancer(cloud.LoadBalancer{SubnetID: "subnet-1"})
	if len(added.VIPs) != 1 || added.VIPs[0] != "127.2.0.2" {
		t.Errorf("added CLB VIPs %v, want [127.2.0.2]", added.VIPs)
	}
	if want := []string{"1 false", "2 true"}; fmt.Sprint(asked) != fmt.Sprint(want) {
		t.Errorf("vipFor called with %v, want %v", asked, want)
	}
}

func TestWithDefaultHealthDetail(t *testing.T) {
	c := New(WithDefaultHealthy(false), WithDefaultHealthDetail("Unknown"))
	lb, l := setup(t, c)
	mustNoErr(t, c.RegisterBackends(ctx, lb.ID, on(l.ID, pod("10.0.0.1", 10))))
	got, err := c.DescribeBackendHealth(ctx, []string{lb.ID})
	mustNoErr(t, err)
	if len(got) != 1 || got[0].Healthy || got[0].Detail != "Unknown" {
		t.Errorf("health of a new backend: %+v, want unhealthy Unknown", got)
	}
}

func TestClearFaults(t *testing.T) {
	c := New()
	c.FailNext(AnyAction, 5, nil)
	c.SetErrorRate(actionDescribeQuota, 1, cloud.CodeInternalError)
	c.SetLatency(AnyAction, 1)
	c.SetTaskFailureRate(1)
	c.SetPartialFailureRate(1)
	c.ClearFaults()

	if _, err := c.DescribeQuota(ctx); err != nil {
		t.Fatalf("DescribeQuota after ClearFaults: %v", err)
	}
	lb, l := setup(t, c) // would fail with a task failure rate of 1
	if err := c.RegisterBackends(ctx, lb.ID, on(l.ID, pod("10.0.0.1", 10))); err != nil {
		t.Fatalf("RegisterBackends after ClearFaults: %v", err)
	}
}

func TestInstanceAddresses(t *testing.T) {
	c := New()
	if _, ok := c.InstanceAddress("ins-1"); ok || c.Snapshot().Instances != nil {
		t.Fatalf("a new account knows instance addresses: %v", c.Snapshot().Instances)
	}
	c.SetInstanceAddress("ins-1", "10.0.1.1")
	c.SetInstanceAddress("ins-2", "10.0.1.2")
	c.SetInstanceAddress("ins-2", "10.0.1.22")
	if ip, ok := c.InstanceAddress("ins-2"); !ok || ip != "10.0.1.22" {
		t.Errorf("InstanceAddress(ins-2) = %q, %v; want the latest, 10.0.1.22", ip, ok)
	}
	s := c.Snapshot()
	if want := map[string]string{"ins-1": "10.0.1.1", "ins-2": "10.0.1.22"}; !reflect.DeepEqual(s.Instances, want) {
		t.Errorf("Snapshot().Instances = %v, want %v", s.Instances, want)
	}
	s.Instances["ins-1"] = "changed"
	c.SetInstanceAddress("ins-2", "")
	if got, want := c.Snapshot().Instances, map[string]string{"ins-1": "10.0.1.1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("after forgetting ins-2 and changing the snapshot: %v, want %v", got, want)
	}

	for _, bad := range [][2]string{{"", "10.0.0.1"}, {"ins-1", "not-an-ip"}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("SetInstanceAddress(%q, %q) did not panic", bad[0], bad[1])
				}
			}()
			c.SetInstanceAddress(bad[0], bad[1])
		}()
	}
}
