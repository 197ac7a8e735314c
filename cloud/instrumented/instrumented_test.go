package instrumented

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"clb-direct/cloud"
	"clb-direct/cloud/fake"
)

var ctx = context.Background()

func newCloud(t *testing.T) (*Cloud, *fake.Cloud) {
	t.Helper()
	inner := fake.New()
	return New(inner, prometheus.NewRegistry()), inner
}

func (c *Cloud) count(action, result string) float64 {
	return testutil.ToFloat64(c.calls.WithLabelValues(action, result))
}

func (c *Cloud) backendsCount(operation string) float64 {
	return testutil.ToFloat64(c.backends.WithLabelValues(operation))
}

func backends(listenerID string, ips ...string) []cloud.ListenerBackend {
	out := make([]cloud.ListenerBackend, len(ips))
	for i, ip := range ips {
		out[i] = cloud.ListenerBackend{ListenerID: listenerID, Backend: cloud.Backend{IP: ip, Port: 8080, Weight: 10}}
	}
	return out
}

// Every method is counted under the action the fake (like the API) logs
// for it.
func TestEveryMethodCountsItsAction(t *testing.T) {
	c, inner := newCloud(t)
	lb, err := c.CreateLoadBalancer(ctx, cloud.LoadBalancerSpec{Name: "a", ClientToken: "a"})
	if err != nil {
		t.Fatal(err)
	}
	l, err := c.CreateListener(ctx, lb.ID, cloud.ListenerSpec{Name: "l", Protocol: cloud.ProtocolTCP, Port: 80})
	if err != nil {
		t.Fatal(err)
	}
	bandwidth := int64(10)
	calls := []func() error{
		func() error {
			_, err := c.DescribeLoadBalancers(ctx, cloud.LoadBalancerQuery{IDs: []string{lb.ID}})
			return err
		},
		func() error {
			return c.ModifyLoadBalancerAttributes(ctx, lb.ID, cloud.LoadBalancerAttributes{InternetMaxBandwidthOut: &bandwidth})
		},
		func() error { _, err := c.DescribeListeners(ctx, lb.ID); return err },
		func() error { return c.ModifyListener(ctx, lb.ID, l.ID, l.ListenerSpec) },
		func() error { return c.RegisterBackends(ctx, lb.ID, backends(l.ID, "10.0.0.1")) },
		func() error { return c.ModifyBackendWeights(ctx, lb.ID, backends(l.ID, "10.0.0.1")) },
		func() error { _, err := c.DescribeBackends(ctx, lb.ID); return err },
		func() error { _, err := c.DescribeBackendHealth(ctx, []string{lb.ID}); return err },
		func() error { _, err := c.DescribeQuota(ctx); return err },
		func() error { return c.DeregisterBackends(ctx, lb.ID, backends(l.ID, "10.0.0.1")) },
		func() error { return c.DeleteListener(ctx, lb.ID, l.ID) },
		func() error { return c.DeleteLoadBalancer(ctx, lb.ID) },
	}
	for i, call := range calls {
		if err := call(); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}

	logged := map[string]float64{}
	for _, call := range inner.Calls() {
		logged[call.Action]++
	}
	for _, action := range actions {
		if got, want := c.count(action, ResultOK), logged[action]; got != want || got == 0 {
			t.Errorf("%s: counted %v ok calls, the fake logged %v (want one at least)", action, got, want)
		}
		if n := testutil.CollectAndCount(c.duration.WithLabelValues(action).(prometheus.Histogram)); n != 1 {
			t.Errorf("%s: no duration histogram", action)
		}
	}
	// Every action and result exists from the start.
	if got, want := testutil.CollectAndCount(c.calls), len(actions)*len(results); got != want {
		t.Errorf("%d call series, want %d", got, want)
	}
}

func TestResultIsTheErrorKind(t *testing.T) {
	c, inner := newCloud(t)
	lb := inner.AddLoadBalancer(cloud.LoadBalancer{Name: "a"})
	l := inner.AddListener(lb.ID, cloud.ListenerSpec{Name: "l", Protocol: cloud.ProtocolTCP, Port: 80})

	inner.FailNext(actionBatchRegisterTargets, 1, nil) // InternalError
	if err := c.RegisterBackends(ctx, lb.ID, backends(l.ID, "10.0.0.1", "10.0.0.2")); err == nil {
		t.Fatal("injected failure did not fail")
	}
	inner.FailNext(actionBatchRegisterTargets, 1, cloud.NewError(actionBatchRegisterTargets, cloud.CodeLimitExceeded, "full", ""))
	_ = c.RegisterBackends(ctx, lb.ID, backends(l.ID, "10.0.0.1"))
	inner.FailNext(actionBatchRegisterTargets, 1, cloud.NewError(actionBatchRegisterTargets, cloud.CodeUnauthorized, "no", ""))
	_ = c.RegisterBackends(ctx, lb.ID, backends(l.ID, "10.0.0.1"))
	if err := c.RegisterBackends(ctx, lb.ID, backends(l.ID, "10.0.0.1", "10.0.0.2", "10.0.0.3")); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteListener(ctx, lb.ID, "lbl-nope"); !cloud.IsNotFound(err) {
		t.Fatalf("deleting a missing listener: %v, want a not-found error", err)
	}

	for _, tc := range []struct {
		action, result string
		want           float64
	}{
		{actionBatchRegisterTargets, "ok", 1},
		{actionBatchRegisterTargets, "transient", 1},
		{actionBatchRegisterTargets, "quota", 1},
		{actionBatchRegisterTargets, "terminal", 1},
		{actionBatchRegisterTargets, "notfound", 0},
		{actionDeleteListener, "notfound", 1},
		{actionDeleteListener, "ok", 0},
	} {
		if got := c.count(tc.action, tc.result); got != tc.want {
			t.Errorf("calls_total{action=%q,result=%q} = %v, want %v", tc.action, tc.result, got, tc.want)
		}
	}
	// Only the backends of the call that succeeded count.
	if got := c.backendsCount(OperationRegister); got != 3 {
		t.Errorf("registered backends %v, want 3", got)
	}
	if got := testutil.CollectAndCount(c.duration); got != len(actions) {
		t.Errorf("%d duration series, want one per action (%d)", got, len(actions))
	}
}

// partial fails every batch for the listener it names.
type partial struct {
	cloud.Interface
	failed string
}

func (p partial) DeregisterBackends(_ context.Context, _ string, _ []cloud.ListenerBackend) error {
	return &cloud.PartialFailure{Action: actionBatchDeregisterTargets, FailedListenerIDs: []string{p.failed}}
}

func (p partial) ModifyBackendWeights(_ context.Context, _ string, _ []cloud.ListenerBackend) error {
	return nil
}

func TestPartialFailureCountsTheChangedBackends(t *testing.T) {
	c := New(partial{failed: "lbl-2"}, prometheus.NewRegistry())
	batch := append(backends("lbl-1", "10.0.0.1", "10.0.0.2"), backends("lbl-2", "10.0.0.1")...)
	if err := c.DeregisterBackends(ctx, "lb-1", batch); err == nil {
		t.Fatal("want the partial failure")
	}
	if err := c.ModifyBackendWeights(ctx, "lb-1", batch); err != nil {
		t.Fatal(err)
	}
	if got := c.backendsCount(OperationDeregister); got != 2 {
		t.Errorf("deregistered backends %v, want 2 (those of lbl-1)", got)
	}
	if got := c.backendsCount(OperationModifyWeight); got != 3 {
		t.Errorf("re-weighted backends %v, want 3", got)
	}
	if got := c.count(actionBatchDeregisterTargets, "transient"); got != 1 {
		t.Errorf("partly failed call counted %v times as transient, want 1", got)
	}
}
