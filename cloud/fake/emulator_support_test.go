package fake

import (
	"fmt"
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
