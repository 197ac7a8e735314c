package fake

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	testingclock "k8s.io/utils/clock/testing"

	"clb-direct/cloud"
)

var ctx = context.Background()

func tcp(port int32) cloud.ListenerSpec {
	return cloud.ListenerSpec{Name: fmt.Sprintf("tcp-%d", port), Protocol: cloud.ProtocolTCP, Port: port}
}

func pod(ip string, weight int32) cloud.Backend {
	return cloud.Backend{IP: ip, Port: 8080, Weight: weight}
}

// on puts backends on a listener, as a batch.
func on(listenerID string, bs ...cloud.Backend) []cloud.ListenerBackend {
	out := make([]cloud.ListenerBackend, len(bs))
	for i, b := range bs {
		out[i] = cloud.ListenerBackend{ListenerID: listenerID, Backend: b}
	}
	return out
}

// pods returns n backends with distinct IPs.
func pods(n int) []cloud.Backend {
	out := make([]cloud.Backend, n)
	for i := range out {
		out[i] = pod(fmt.Sprintf("10.1.%d.%d", i/250, i%250+1), 10)
	}
	return out
}

func mustNoErr(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantCode(t *testing.T, err error, code string, kind cloud.Kind) {
	t.Helper()
	if !cloud.HasCode(err, code) {
		t.Fatalf("error %v, want code %s", err, code)
	}
	if got := cloud.KindOf(err); got != kind {
		t.Fatalf("error %v is of kind %v, want %v", err, got, kind)
	}
}

func newClock() *testingclock.FakeClock {
	return testingclock.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
}

// waitForTimer returns once a call is waiting on the fake clock.
func waitForTimer(t *testing.T, fc *testingclock.FakeClock) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !fc.HasWaiters() {
		if time.Now().After(deadline) {
			t.Fatal("no call is waiting on the clock")
		}
		time.Sleep(time.Millisecond)
	}
}

// result waits for a call running in a goroutine.
func result(t *testing.T, errc <-chan error) error {
	t.Helper()
	select {
	case err := <-errc:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("call did not return")
		return nil
	}
}

func notReturned(t *testing.T, errc <-chan error) {
	t.Helper()
	select {
	case err := <-errc:
		t.Fatalf("call returned early with %v", err)
	case <-time.After(20 * time.Millisecond):
	}
}

// setup makes a CLB with one listener through the API.
func setup(t *testing.T, c *Cloud) (cloud.LoadBalancer, cloud.Listener) {
	t.Helper()
	lb, err := c.CreateLoadBalancer(ctx, cloud.LoadBalancerSpec{Name: "svc"})
	mustNoErr(t, err)
	l, err := c.CreateListener(ctx, lb.ID, tcp(80))
	mustNoErr(t, err)
	return lb, l
}

func backendsOf(t *testing.T, c *Cloud, lbID, listenerID string) []cloud.Backend {
	t.Helper()
	m, err := c.DescribeBackends(ctx, lbID)
	mustNoErr(t, err)
	bs, ok := m[listenerID]
	if !ok {
		t.Fatalf("no listener %s in DescribeBackends", listenerID)
	}
	return bs
}

func TestCreateLoadBalancer(t *testing.T) {
	c := New()
	tags := map[string]string{cloud.TagCreatedBy: cloud.CreatedByValue}
	public, err := c.CreateLoadBalancer(ctx, cloud.LoadBalancerSpec{Name: "a", Tags: tags})
	mustNoErr(t, err)
	internal, err := c.CreateLoadBalancer(ctx, cloud.LoadBalancerSpec{Name: "b", SubnetID: "subnet-1"})
	mustNoErr(t, err)

	if public.ID != "lb-00000001" || internal.ID != "lb-00000002" {
		t.Errorf("IDs %s, %s; want lb-00000001, lb-00000002", public.ID, internal.ID)
	}
	if len(public.VIPs) != 1 || !strings.HasPrefix(public.VIPs[0], "198.18.") {
		t.Errorf("public VIPs %v", public.VIPs)
	}
	if len(internal.VIPs) != 1 || !strings.HasPrefix(internal.VIPs[0], "10.") || internal.SubnetID != "subnet-1" {
		t.Errorf("internal CLB %+v", internal)
	}
	tags["other"] = "x" // the CLB keeps its own copy
	got, err := c.DescribeLoadBalancers(ctx, cloud.LoadBalancerQuery{})
	mustNoErr(t, err)
	if want := []cloud.LoadBalancer{public, internal}; !reflect.DeepEqual(got, want) {
		t.Errorf("DescribeLoadBalancers = %+v, want %+v", got, want)
	}

	_, err = c.CreateLoadBalancer(ctx, cloud.LoadBalancerSpec{Name: strings.Repeat("n", 61)})
	wantCode(t, err, cloud.CodeInvalidParameterVal, cloud.KindTerminal)
}

func TestClientTokenIsIdempotent(t *testing.T) {
	fc := newClock()
	c := New(WithClock(fc), WithTaskDuration(time.Second))

	id1, task1, err := c.StartCreateLoadBalancer(ctx, cloud.LoadBalancerSpec{Name: "a", ClientToken: "tok"})
	mustNoErr(t, err)
	id2, task2, err := c.StartCreateLoadBalancer(ctx, cloud.LoadBalancerSpec{Name: "a", ClientToken: "tok"})
	mustNoErr(t, err)
	if id1 != id2 || task1 != task2 {
		t.Errorf("retry returned %s/%s, first call %s/%s", id2, task2, id1, task1)
	}
	fc.Step(time.Second)

	id3, task3, err := c.StartCreateLoadBalancer(ctx, cloud.LoadBalancerSpec{Name: "a", ClientToken: "tok"})
	mustNoErr(t, err)
	if id3 != id1 || task3 != task1 {
		t.Errorf("retry after the task returned %s/%s, want %s/%s", id3, task3, id1, task1)
	}
	if s, err := c.TaskStatus(ctx, task3); err != nil || s != TaskDone {
		t.Errorf("TaskStatus = %d, %v; want done", s, err)
	}
	if n := len(c.Snapshot().LoadBalancers); n != 1 {
		t.Errorf("%d CLBs after three creates with one token, want 1", n)
	}

	other, _, err := c.StartCreateLoadBalancer(ctx, cloud.LoadBalancerSpec{Name: "a", ClientToken: "tok2"})
	mustNoErr(t, err)
	if other == id1 {
		t.Error("another token returned the same CLB")
	}

	// The token lives as long as its CLB.
	_, err = c.StartDeleteLoadBalancer(ctx, id1)
	mustNoErr(t, err)
	fc.Step(time.Second)
	again, _, err := c.StartCreateLoadBalancer(ctx, cloud.LoadBalancerSpec{Name: "a", ClientToken: "tok"})
	mustNoErr(t, err)
	if again == id1 {
		t.Error("token of a deleted CLB returned the deleted CLB")
	}
}

func TestDescribeLoadBalancersQuery(t *testing.T) {
	c := New()
	c.AddLoadBalancer(cloud.LoadBalancer{Name: "both", Tags: map[string]string{"a": "1", "b": "2"}})
	onlyA := c.AddLoadBalancer(cloud.LoadBalancer{Name: "a", Tags: map[string]string{"a": "1"}})
	c.AddLoadBalancer(cloud.LoadBalancer{Name: "wrong b", Tags: map[string]string{"a": "1", "b": "3"}})
	untagged := c.AddLoadBalancer(cloud.LoadBalancer{Name: "none"})

	names := func(q cloud.LoadBalancerQuery) []string {
		t.Helper()
		lbs, err := c.DescribeLoadBalancers(ctx, q)
		mustNoErr(t, err)
		var out []string
		for _, lb := range lbs {
			out = append(out, lb.Name)
		}
		return out
	}
	for _, tc := range []struct {
		query cloud.LoadBalancerQuery
		want  []string
	}{
		{cloud.LoadBalancerQuery{}, []string{"both", "a", "wrong b", "none"}},
		{cloud.LoadBalancerQuery{Tags: map[string]string{"a": "1"}}, []string{"both", "a", "wrong b"}},
		{cloud.LoadBalancerQuery{Tags: map[string]string{"a": "1", "b": "2"}}, []string{"both"}},
		{cloud.LoadBalancerQuery{Tags: map[string]string{"c": ""}}, nil},
		// By ID, in order of creation; unknown IDs are left out.
		{cloud.LoadBalancerQuery{IDs: []string{untagged.ID, "lb-nope", onlyA.ID}}, []string{"a", "none"}},
	} {
		if got := names(tc.query); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("query %+v: got %q, want %q", tc.query, got, tc.want)
		}
	}
}

func TestListLoadBalancersPages(t *testing.T) {
	c := New(WithLimits(Limits{DescribeLimit: 2}))
	var ids []string
	for i := range 5 {
		ids = append(ids, c.AddLoadBalancer(cloud.LoadBalancer{Name: fmt.Sprint(i)}).ID)
	}
	q := cloud.LoadBalancerQuery{}
	for _, tc := range []struct {
		offset, limit int
		want          []string
	}{
		{0, 2, ids[0:2]},
		{2, 2, ids[2:4]},
		{4, 2, ids[4:]},
		{5, 2, nil},
		{0, 1, ids[0:1]},
		{0, 0, ids[0:2]}, // the default page, capped by the limit
	} {
		page, total, err := c.ListLoadBalancers(ctx, q, tc.offset, tc.limit)
		mustNoErr(t, err)
		var got []string
		for _, lb := range page {
			got = append(got, lb.ID)
		}
		if total != 5 || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("offset %d limit %d: page %v total %d, want %v total 5", tc.offset, tc.limit, got, total, tc.want)
		}
	}
	_, _, err := c.ListLoadBalancers(ctx, q, 0, 3)
	wantCode(t, err, cloud.CodeInvalidParameterVal, cloud.KindTerminal)
	_, _, err = c.ListLoadBalancers(ctx, q, -1, 2)
	wantCode(t, err, cloud.CodeInvalidParameterVal, cloud.KindTerminal)

	c.ResetCalls()
	all, err := c.DescribeLoadBalancers(ctx, q)
	mustNoErr(t, err)
	if len(all) != 5 {
		t.Errorf("DescribeLoadBalancers returned %d CLBs, want 5", len(all))
	}
	if n := c.CountCalls("DescribeLoadBalancers"); n != 3 {
		t.Errorf("DescribeLoadBalancers made %d calls for 5 CLBs in pages of 2, want 3", n)
	}
}

func TestListenerLimits(t *testing.T) {
	c := New(WithLimits(Limits{ListenersPerLoadBalancer: 2}))
	lb, _ := setup(t, c) // TCP 80

	_, err := c.CreateListener(ctx, lb.ID, tcp(80))
	wantCode(t, err, cloud.CodePortCheckFailed, cloud.KindTerminal)
	udp := tcp(80)
	udp.Protocol = cloud.ProtocolUDP
	_, err = c.CreateListener(ctx, lb.ID, udp)
	mustNoErr(t, err) // another protocol may share the port
	_, err = c.CreateListener(ctx, lb.ID, tcp(81))
	wantCode(t, err, cloud.CodeLimitExceeded, cloud.KindQuota)

	other := c.AddLoadBalancer(cloud.LoadBalancer{Name: "other"})
	bad := []cloud.ListenerSpec{
		{Protocol: cloud.ProtocolTCP, Port: 0},
		{Protocol: cloud.ProtocolTCP, Port: 65536},
		{Protocol: "HTTP", Port: 80},
		{Protocol: cloud.ProtocolTCP, Port: 80, Scheduler: "RR"},
		{Protocol: cloud.ProtocolTCP, Port: 80, SessionExpireSeconds: 10},
		{Protocol: cloud.ProtocolTCP, Port: 80, HealthCheck: &cloud.HealthCheck{Enabled: true, IntervalSeconds: 301}},
		{Protocol: cloud.ProtocolTCP, Port: 80, HealthCheck: &cloud.HealthCheck{Enabled: true, HealthyThreshold: 1}},
		{Protocol: cloud.ProtocolTCP, Port: 80, HealthCheck: &cloud.HealthCheck{Enabled: true, CheckType: "PING"}},
	}
	for _, spec := range bad {
		_, err := c.CreateListener(ctx, other.ID, spec)
		wantCode(t, err, cloud.CodeInvalidParameterVal, cloud.KindTerminal)
	}
	if n := len(c.Snapshot().LoadBalancers[1].Listeners); n != 0 {
		t.Errorf("refused creates left %d listeners", n)
	}

	_, err = c.CreateListener(ctx, "lb-nope", tcp(80))
	wantCode(t, err, cloud.CodeLBNotFound, cloud.KindNotFound)
	err = c.ModifyListener(ctx, lb.ID, "lbl-nope", tcp(80))
	wantCode(t, err, cloud.CodeListenerNotFound, cloud.KindNotFound)
	err = c.DeleteListener(ctx, lb.ID, "lbl-nope")
	wantCode(t, err, cloud.CodeListenerNotFound, cloud.KindNotFound)
}

func TestModifyListener(t *testing.T) {
	c := New()
	lb, l := setup(t, c)
	if l.HealthCheck == nil || *l.HealthCheck != defaultHealthCheck || l.Scheduler != "WRR" {
		t.Fatalf("new listener has health check %+v, scheduler %q; want the defaults", l.HealthCheck, l.Scheduler)
	}

	spec := cloud.ListenerSpec{
		Name: "renamed", Protocol: cloud.ProtocolUDP, Port: 90, // not ModifyListener's to change
		HealthCheck:          &cloud.HealthCheck{Enabled: true, IntervalSeconds: 10, CheckType: "HTTP", HTTPPath: "/healthz"},
		SessionExpireSeconds: 30,
		Scheduler:            "LEAST_CONN",
	}
	mustNoErr(t, c.ModifyListener(ctx, lb.ID, l.ID, spec))
	want := l
	want.HealthCheck = &cloud.HealthCheck{Enabled: true, IntervalSeconds: 10, TimeoutSeconds: 2, HealthyThreshold: 3,
		UnhealthyThreshold: 3, CheckType: "HTTP", HTTPPath: "/healthz"}
	want.SessionExpireSeconds = 30
	want.Scheduler = "LEAST_CONN"
	ls, err := c.DescribeListeners(ctx, lb.ID)
	mustNoErr(t, err)
	if len(ls) != 1 || !reflect.DeepEqual(ls[0], want) {
		t.Fatalf("after modify: %+v, want %+v", ls, want)
	}

	// Nil health check and empty scheduler leave them; session 0 disables.
	mustNoErr(t, c.ModifyListener(ctx, lb.ID, l.ID, cloud.ListenerSpec{}))
	want.SessionExpireSeconds = 0
	ls, err = c.DescribeListeners(ctx, lb.ID)
	mustNoErr(t, err)
	if !reflect.DeepEqual(ls[0], want) {
		t.Errorf("after empty modify: %+v, want %+v", ls[0], want)
	}
}

func TestBackendLimits(t *testing.T) {
	t.Run("batch size", func(t *testing.T) {
		c := New()
		lb, l1 := setup(t, c)
		l2, err := c.CreateListener(ctx, lb.ID, tcp(81))
		mustNoErr(t, err)
		l3, err := c.CreateListener(ctx, lb.ID, tcp(82))
		mustNoErr(t, err)
		ps := pods(cloud.MaxBackendsPerBatch + 1)
		var batch []cloud.ListenerBackend
		for i, p := range ps {
			batch = append(batch, on([]string{l1.ID, l2.ID, l3.ID}[i%3], p)...)
		}

		err = c.RegisterBackends(ctx, lb.ID, batch)
		wantCode(t, err, cloud.CodeInvalidParameterVal, cloud.KindTerminal)
		if n := len(backendsOf(t, c, lb.ID, l1.ID)); n != 0 {
			t.Fatalf("refused batch registered %d backends", n)
		}
		mustNoErr(t, c.RegisterBackends(ctx, lb.ID, batch[:cloud.MaxBackendsPerBatch]))
		err = c.DeregisterBackends(ctx, lb.ID, batch)
		wantCode(t, err, cloud.CodeInvalidParameterVal, cloud.KindTerminal)
		err = c.ModifyBackendWeights(ctx, lb.ID, batch)
		wantCode(t, err, cloud.CodeInvalidParameterVal, cloud.KindTerminal)
		err = c.RegisterBackends(ctx, lb.ID, nil)
		wantCode(t, err, cloud.CodeMissingParameter, cloud.KindTerminal)
	})

	t.Run("per listener", func(t *testing.T) {
		c := New(WithLimits(Limits{BackendsPerListener: 3}))
		lb, l := setup(t, c)
		ps := pods(4)
		mustNoErr(t, c.RegisterBackends(ctx, lb.ID, on(l.ID, ps[0], ps[1])))
		err := c.RegisterBackends(ctx, lb.ID, on(l.ID, ps[1], ps[2], ps[3]))
		wantCode(t, err, cloud.CodeLimitExceeded, cloud.KindQuota)
		if got := backendsOf(t, c, lb.ID, l.ID); !reflect.DeepEqual(got, ps[:2]) {
			t.Fatalf("refused batch changed the backends to %v", got)
		}
		// Already registered backends do not count twice.
		mustNoErr(t, c.RegisterBackends(ctx, lb.ID, on(l.ID, ps[0], ps[1], ps[2])))
		if got := backendsOf(t, c, lb.ID, l.ID); !reflect.DeepEqual(got, ps[:3]) {
			t.Fatalf("backends %v, want %v", got, ps[:3])
		}
	})

	t.Run("targets", func(t *testing.T) {
		c := New()
		lb, l := setup(t, c)
		for _, b := range []cloud.Backend{
			{IP: "10.0.0.1", Port: 80, Weight: cloud.MaxWeight + 1},
			{IP: "10.0.0.1", Port: 80, Weight: -1},
			{IP: "10.0.0.1", Port: 0},
			{IP: "not-an-ip", Port: 80},
		} {
			err := c.RegisterBackends(ctx, lb.ID, on(l.ID, b))
			wantCode(t, err, cloud.CodeInvalidParameterVal, cloud.KindTerminal)
		}
		err := c.RegisterBackends(ctx, lb.ID, on(l.ID, cloud.Backend{Port: 80}))
		wantCode(t, err, cloud.CodeMissingParameter, cloud.KindTerminal)
		err = c.RegisterBackends(ctx, lb.ID, on(l.ID, cloud.Backend{IP: "10.0.0.1", InstanceID: "ins-1", Port: 80}))
		wantCode(t, err, cloud.CodeInvalidParameter, cloud.KindTerminal)
		err = c.RegisterBackends(ctx, lb.ID, on("lbl-nope", pod("10.0.0.1", 1)))
		wantCode(t, err, cloud.CodeListenerNotFound, cloud.KindNotFound)
		err = c.RegisterBackends(ctx, "lb-nope", on(l.ID, pod("10.0.0.1", 1)))
		wantCode(t, err, cloud.CodeLBNotFound, cloud.KindNotFound)
		if n := len(backendsOf(t, c, lb.ID, l.ID)); n != 0 {
			t.Fatalf("refused calls registered %d backends", n)
		}
	})

	t.Run("idempotent register and deregister", func(t *testing.T) {
		c := New()
		lb, l := setup(t, c)
		a, b := pod("10.0.0.1", 10), pod("10.0.0.2", 20)
		mustNoErr(t, c.RegisterBackends(ctx, lb.ID, on(l.ID, a, a)))
		heavierA := a
		heavierA.Weight = 50
		mustNoErr(t, c.RegisterBackends(ctx, lb.ID, on(l.ID, heavierA)))
		if got := backendsOf(t, c, lb.ID, l.ID); !reflect.DeepEqual(got, []cloud.Backend{a}) {
			t.Fatalf("after registering twice: %v, want %v once with its first weight", got, a)
		}
		mustNoErr(t, c.DeregisterBackends(ctx, lb.ID, on(l.ID, b)))
		if got := backendsOf(t, c, lb.ID, l.ID); !reflect.DeepEqual(got, []cloud.Backend{a}) {
			t.Fatalf("deregistering an absent backend changed the backends to %v", got)
		}
		heavierA.Weight = 0 // deregistration matches by key, whatever the weight
		mustNoErr(t, c.DeregisterBackends(ctx, lb.ID, on(l.ID, heavierA)))
		if got := backendsOf(t, c, lb.ID, l.ID); len(got) != 0 {
			t.Fatalf("after deregistering: %v", got)
		}
	})

	t.Run("modify weights", func(t *testing.T) {
		c := New()
		lb, l := setup(t, c)
		a, b := pod("10.0.0.1", 10), pod("10.0.0.2", 20)
		mustNoErr(t, c.RegisterBackends(ctx, lb.ID, on(l.ID, a)))
		b.Weight = 0
		err := c.ModifyBackendWeights(ctx, lb.ID, on(l.ID, b))
		wantCode(t, err, cloud.CodeInvalidParameter, cloud.KindTerminal)
		a.Weight = 0
		mustNoErr(t, c.ModifyBackendWeights(ctx, lb.ID, on(l.ID, a)))
		if got := backendsOf(t, c, lb.ID, l.ID); !reflect.DeepEqual(got, []cloud.Backend{a}) {
			t.Fatalf("after modify: %v, want %v", got, a)
		}
		a.Weight = cloud.MaxWeight + 1
		err = c.ModifyBackendWeights(ctx, lb.ID, on(l.ID, a))
		wantCode(t, err, cloud.CodeInvalidParameterVal, cloud.KindTerminal)
	})
}

func TestResourceInOperatingWhileTaskRuns(t *testing.T) {
	fc := newClock()
	c := New(WithClock(fc), WithTaskDuration(10*time.Second))
	lb := c.AddLoadBalancer(cloud.LoadBalancer{Name: "a"})
	l := c.AddListener(lb.ID, tcp(80))
	other := c.AddLoadBalancer(cloud.LoadBalancer{Name: "b"})
	ol := c.AddListener(other.ID, tcp(80))
	a := pod("10.0.0.1", 10)

	taskID, failed, err := c.StartRegisterBackends(ctx, lb.ID, on(l.ID, a))
	mustNoErr(t, err)
	if taskID == "" || failed != nil {
		t.Fatalf("task %q, failed %v", taskID, failed)
	}
	status := func(id string) int {
		t.Helper()
		s, err := c.TaskStatus(ctx, id)
		mustNoErr(t, err)
		return s
	}
	if s := status(taskID); s != TaskRunning {
		t.Fatalf("status %d, want running", s)
	}
	if got := backendsOf(t, c, lb.ID, l.ID); len(got) != 0 {
		t.Fatalf("backends %v before the task is done", got)
	}

	_, err = c.StartDeleteListener(ctx, lb.ID, l.ID)
	wantCode(t, err, cloud.CodeResourceInOperating, cloud.KindTransient)
	_, _, err = c.StartRegisterBackends(ctx, lb.ID, on(l.ID, pod("10.0.0.2", 10)))
	wantCode(t, err, cloud.CodeResourceInOperating, cloud.KindTransient)
	_, err = c.StartDeleteLoadBalancer(ctx, lb.ID)
	wantCode(t, err, cloud.CodeResourceInOperating, cloud.KindTransient)
	otherTask, _, err := c.StartRegisterBackends(ctx, other.ID, on(ol.ID, a))
	mustNoErr(t, err) // one task per CLB, not per account

	fc.Step(9 * time.Second)
	if s := status(taskID); s != TaskRunning {
		t.Fatalf("status %d after 9s of 10s, want running", s)
	}
	fc.Step(time.Second)
	if s := status(taskID); s != TaskDone {
		t.Fatalf("status %d after 10s, want done", s)
	}
	if got := backendsOf(t, c, lb.ID, l.ID); !reflect.DeepEqual(got, []cloud.Backend{a}) {
		t.Fatalf("backends %v after the task, want %v", got, a)
	}
	if s := status(otherTask); s != TaskDone {
		t.Fatalf("other CLB's task status %d, want done", s)
	}
	_, err = c.StartDeleteListener(ctx, lb.ID, l.ID)
	mustNoErr(t, err)

	_, err = c.TaskStatus(ctx, "no-such-task")
	wantCode(t, err, cloud.CodeInvalidParameterVal, cloud.KindTerminal)
}

func TestNewLoadBalancerNotReadyUntilTaskDone(t *testing.T) {
	fc := newClock()
	c := New(WithClock(fc), WithTaskDuration(5*time.Second))
	lbID, taskID, err := c.StartCreateLoadBalancer(ctx, cloud.LoadBalancerSpec{Name: "a"})
	mustNoErr(t, err)

	lbs, err := c.DescribeLoadBalancers(ctx, cloud.LoadBalancerQuery{IDs: []string{lbID}})
	mustNoErr(t, err)
	if len(lbs) != 1 || len(lbs[0].VIPs) != 0 {
		t.Fatalf("CLB being created: %+v, want listed without VIPs", lbs)
	}
	_, _, err = c.StartCreateListener(ctx, lbID, tcp(80))
	wantCode(t, err, cloud.CodeResourceInOperating, cloud.KindTransient)

	fc.Step(5 * time.Second)
	if s, err := c.TaskStatus(ctx, taskID); err != nil || s != TaskDone {
		t.Fatalf("TaskStatus = %d, %v; want done", s, err)
	}
	lbs, err = c.DescribeLoadBalancers(ctx, cloud.LoadBalancerQuery{IDs: []string{lbID}})
	mustNoErr(t, err)
	if len(lbs) != 1 || len(lbs[0].VIPs) != 1 {
		t.Fatalf("created CLB: %+v, want one VIP", lbs)
	}
	listenerID, _, err := c.StartCreateListener(ctx, lbID, tcp(80))
	mustNoErr(t, err)
	if ls, err := c.DescribeListeners(ctx, lbID); err != nil || len(ls) != 0 {
		t.Fatalf("listeners %v, %v while their creation runs; want none", ls, err)
	}
	fc.Step(5 * time.Second)
	if ls, err := c.DescribeListeners(ctx, lbID); err != nil || len(ls) != 1 || ls[0].ID != listenerID {
		t.Fatalf("listeners %v, %v after the task; want %s", ls, err, listenerID)
	}
}

func TestInterfaceWaitsForTask(t *testing.T) {
	fc := newClock()
	c := New(WithClock(fc), WithTaskDuration(10*time.Second))
	lb := c.AddLoadBalancer(cloud.LoadBalancer{Name: "a"})
	l := c.AddListener(lb.ID, tcp(80))
	a := pod("10.0.0.1", 10)

	errc := make(chan error, 1)
	go func() { errc <- c.RegisterBackends(ctx, lb.ID, on(l.ID, a)) }()
	waitForTimer(t, fc)
	notReturned(t, errc)
	fc.Step(10 * time.Second)
	mustNoErr(t, result(t, errc))
	if got := backendsOf(t, c, lb.ID, l.ID); !reflect.DeepEqual(got, []cloud.Backend{a}) {
		t.Fatalf("backends %v, want %v", got, a)
	}
	if n := c.CountCalls("DescribeTaskStatus"); n != 0 {
		t.Errorf("waiting logged %d DescribeTaskStatus calls, want none", n)
	}

	// Cancelled while waiting: the call fails, the task goes on.
	cctx, cancel := context.WithCancel(ctx)
	go func() { errc <- c.DeregisterBackends(cctx, lb.ID, on(l.ID, a)) }()
	waitForTimer(t, fc)
	cancel()
	if err := result(t, errc); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled wait returned %v, want context.Canceled", err)
	}
	calls := c.Calls()
	if last := calls[len(calls)-1]; last.Action != "BatchDeregisterTargets" || !errors.Is(last.Err, context.Canceled) {
		t.Errorf("last call %+v, want the cancelled BatchDeregisterTargets", last)
	}
	fc.Step(10 * time.Second)
	if got := backendsOf(t, c, lb.ID, l.ID); len(got) != 0 {
		t.Fatalf("backends %v after the abandoned task completed, want none", got)
	}
}

func TestTaskFailureLeavesStateUnchanged(t *testing.T) {
	c := New()
	lb, l := setup(t, c)
	mustNoErr(t, c.RegisterBackends(ctx, lb.ID, on(l.ID, pod("10.0.0.1", 10))))
	before := c.Snapshot()

	c.SetTaskFailureRate(1)
	modified := tcp(80)
	modified.Scheduler = "LEAST_CONN"
	writes := map[string]func() error{
		"register":   func() error { return c.RegisterBackends(ctx, lb.ID, on(l.ID, pod("10.0.0.2", 10))) },
		"deregister": func() error { return c.DeregisterBackends(ctx, lb.ID, on(l.ID, pod("10.0.0.1", 10))) },
		"weights":    func() error { return c.ModifyBackendWeights(ctx, lb.ID, on(l.ID, pod("10.0.0.1", 0))) },
		"modify":     func() error { return c.ModifyListener(ctx, lb.ID, l.ID, modified) },
		"create listener": func() error {
			_, err := c.CreateListener(ctx, lb.ID, tcp(81))
			return err
		},
		"delete listener": func() error { return c.DeleteListener(ctx, lb.ID, l.ID) },
		"delete lb":       func() error { return c.DeleteLoadBalancer(ctx, lb.ID) },
		"create lb": func() error {
			_, err := c.CreateLoadBalancer(ctx, cloud.LoadBalancerSpec{Name: "b", ClientToken: "tok"})
			return err
		},
	}
	for name, write := range writes {
		wantCode(t, write(), cloud.CodeFailedOperation, cloud.KindTransient)
		if after := c.Snapshot(); !reflect.DeepEqual(after, before) {
			t.Errorf("failed %s changed the state to %+v", name, after)
		}
	}
	taskID, _, err := c.StartRegisterBackends(ctx, lb.ID, on(l.ID, pod("10.0.0.2", 10)))
	mustNoErr(t, err)
	if s, err := c.TaskStatus(ctx, taskID); err != nil || s != TaskFailed {
		t.Errorf("TaskStatus = %d, %v; want failed", s, err)
	}

	// A failed create frees its ClientToken.
	c.SetTaskFailureRate(0)
	created, err := c.CreateLoadBalancer(ctx, cloud.LoadBalancerSpec{Name: "b", ClientToken: "tok"})
	mustNoErr(t, err)
	if len(created.VIPs) == 0 || len(c.Snapshot().LoadBalancers) != 2 {
		t.Errorf("retry of a failed create returned %+v", created)
	}
}

func TestFailedCreateIsListedUntilItsTaskFails(t *testing.T) {
	fc := newClock()
	c := New(WithClock(fc), WithTaskDuration(time.Second))
	c.SetTaskFailureRate(1)
	lbID, taskID, err := c.StartCreateLoadBalancer(ctx, cloud.LoadBalancerSpec{Name: "a"})
	mustNoErr(t, err)
	if page, _, err := c.ListLoadBalancers(ctx, cloud.LoadBalancerQuery{}, 0, 10); err != nil || len(page) != 1 || page[0].ID != lbID {
		t.Fatalf("while creating: %v, %v; want %s listed", page, err, lbID)
	}
	fc.Step(time.Second)
	if s, err := c.TaskStatus(ctx, taskID); err != nil || s != TaskFailed {
		t.Fatalf("TaskStatus = %d, %v; want failed", s, err)
	}
	if page, total, err := c.ListLoadBalancers(ctx, cloud.LoadBalancerQuery{}, 0, 10); err != nil || total != 0 {
		t.Fatalf("after the failed create: %v, %v", page, err)
	}
}

func TestPartialFailure(t *testing.T) {
	c := New(WithSeed(7))
	lb := c.AddLoadBalancer(cloud.LoadBalancer{Name: "a"})
	var ls []cloud.Listener
	var batch []cloud.ListenerBackend
	a := pod("10.0.0.1", 10)
	for port := int32(1); port <= 20; port++ {
		l := c.AddListener(lb.ID, tcp(port))
		ls = append(ls, l)
		batch = append(batch, on(l.ID, a)...)
	}
	c.SetPartialFailureRate(0.5)

	err := c.RegisterBackends(ctx, lb.ID, batch)
	var pf *cloud.PartialFailure
	if !errors.As(err, &pf) {
		t.Fatalf("RegisterBackends = %v, want a partial failure", err)
	}
	if n := len(pf.FailedListenerIDs); n == 0 || n == len(ls) {
		t.Fatalf("%d of %d listeners failed; the seed should fail some", n, len(ls))
	}
	calls := c.Calls()
	if last := calls[len(calls)-1]; last.Err != err {
		t.Errorf("logged error %v, want %v", last.Err, err)
	}
	registered := map[string]bool{}
	all, err := c.DescribeBackends(ctx, lb.ID)
	mustNoErr(t, err)
	for _, l := range ls {
		registered[l.ID] = len(all[l.ID]) == 1
		if registered[l.ID] == pf.Failed(l.ID) {
			t.Errorf("listener %s: registered %v, failed %v", l.ID, registered[l.ID], pf.Failed(l.ID))
		}
	}

	// The Start form reports the failed listeners and applies the rest.
	taskID, failed, err := c.StartDeregisterBackends(ctx, lb.ID, batch)
	mustNoErr(t, err)
	if taskID == "" || len(failed) == 0 || len(failed) == len(ls) {
		t.Fatalf("task %q, %d failed listeners", taskID, len(failed))
	}
	calls = c.Calls()
	if last := calls[len(calls)-1]; !errors.As(last.Err, &pf) || !reflect.DeepEqual(pf.FailedListenerIDs, failed) {
		t.Errorf("logged error %v, want a partial failure of %v", last.Err, failed)
	}
	all, err = c.DescribeBackends(ctx, lb.ID)
	mustNoErr(t, err)
	for _, l := range ls {
		want := registered[l.ID] && slices.Contains(failed, l.ID)
		if got := len(all[l.ID]) == 1; got != want {
			t.Errorf("listener %s: registered %v after deregistering, want %v", l.ID, got, want)
		}
	}

	// Every listener failing is still a partial failure, naming them all
	// in the order of the batch, and changes nothing.
	c.SetPartialFailureRate(1)
	before := c.Snapshot()
	err = c.RegisterBackends(ctx, lb.ID, append(on(ls[1].ID, a), on(ls[0].ID, a)...))
	if !errors.As(err, &pf) || !reflect.DeepEqual(pf.FailedListenerIDs, []string{ls[1].ID, ls[0].ID}) {
		t.Errorf("RegisterBackends = %v, want a partial failure of %s,%s", err, ls[1].ID, ls[0].ID)
	}
	if after := c.Snapshot(); !reflect.DeepEqual(after, before) {
		t.Error("a batch that failed for every listener changed the state")
	}
}

func TestFailNext(t *testing.T) {
	c := New()
	lb, l := setup(t, c)
	boom := errors.New("boom")
	c.FailNext("DescribeListeners", 2, boom)
	for i := range 2 {
		if _, err := c.DescribeListeners(ctx, lb.ID); !errors.Is(err, boom) {
			t.Fatalf("call %d: %v, want boom", i, err)
		}
	}
	if _, err := c.DescribeListeners(ctx, lb.ID); err != nil {
		t.Fatalf("third call: %v", err)
	}
	if n := c.CountCalls("DescribeListeners"); n != 3 {
		t.Errorf("%d DescribeListeners logged, want 3", n)
	}

	// A failed write changes nothing; nil means InternalError.
	c.FailNext("BatchRegisterTargets", 1, nil)
	err := c.RegisterBackends(ctx, lb.ID, on(l.ID, pod("10.0.0.1", 1)))
	wantCode(t, err, cloud.CodeInternalError, cloud.KindTransient)
	if got := backendsOf(t, c, lb.ID, l.ID); len(got) != 0 {
		t.Fatalf("failed call registered %v", got)
	}

	// An action's own setting goes first, then AnyAction's.
	other := errors.New("other")
	c.FailNext(AnyAction, 1, boom)
	c.FailNext("DescribeQuota", 1, other)
	for i, want := range []error{other, boom, nil} {
		if _, err := c.DescribeQuota(ctx); !errors.Is(err, want) {
			t.Errorf("DescribeQuota %d: %v, want %v", i, err, want)
		}
	}
}

func TestErrorRate(t *testing.T) {
	c := New(WithSeed(3))
	c.SetErrorRate("DescribeQuota", 1, cloud.CodeRequestLimitExceeded)
	_, err := c.DescribeQuota(ctx)
	wantCode(t, err, cloud.CodeRequestLimitExceeded, cloud.KindTransient)

	c.SetErrorRate("DescribeQuota", 0.3, cloud.CodeInternalError)
	failures := 0
	for range 1000 {
		if _, err := c.DescribeQuota(ctx); err != nil {
			failures++
		}
	}
	if failures < 200 || failures > 400 {
		t.Errorf("%d of 1000 calls failed at rate 0.3", failures)
	}

	c.SetErrorRate(AnyAction, 1, cloud.CodeInternalError)
	c.SetErrorRate("DescribeQuota", 0, "")
	_, err = c.DescribeListeners(ctx, "lb-any")
	wantCode(t, err, cloud.CodeInternalError, cloud.KindTransient)
	if _, err := c.DescribeQuota(ctx); err != nil {
		t.Errorf("DescribeQuota with its own rate 0: %v", err)
	}
}

func TestLatency(t *testing.T) {
	fc := newClock()
	c := New(WithClock(fc))
	c.SetLatency("DescribeQuota", 2*time.Second)

	errc := make(chan error, 1)
	go func() {
		_, err := c.DescribeQuota(ctx)
		errc <- err
	}()
	waitForTimer(t, fc)
	notReturned(t, errc)
	fc.Step(2 * time.Second)
	mustNoErr(t, result(t, errc))

	c.SetLatency(AnyAction, time.Minute)
	cctx, cancel := context.WithCancel(ctx)
	go func() {
		_, err := c.DescribeListeners(cctx, "lb-any")
		errc <- err
	}()
	waitForTimer(t, fc)
	cancel()
	if err := result(t, errc); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled call returned %v", err)
	}
}

func TestRateLimit(t *testing.T) {
	fc := newClock()
	c := New(WithClock(fc), WithLimits(Limits{RequestsPerSecond: 2}))
	quota := func() error {
		_, err := c.DescribeQuota(ctx)
		return err
	}
	mustNoErr(t, quota())
	mustNoErr(t, quota())
	wantCode(t, quota(), cloud.CodeRequestLimitExceeded, cloud.KindTransient)
	if _, err := c.DescribeLoadBalancers(ctx, cloud.LoadBalancerQuery{}); err != nil {
		t.Fatalf("another action was throttled: %v", err)
	}
	fc.Step(500 * time.Millisecond)
	mustNoErr(t, quota())
	wantCode(t, quota(), cloud.CodeRequestLimitExceeded, cloud.KindTransient)
	fc.Step(10 * time.Second) // the bucket holds one second's worth
	mustNoErr(t, quota())
	mustNoErr(t, quota())
	wantCode(t, quota(), cloud.CodeRequestLimitExceeded, cloud.KindTransient)
}

func TestCallLog(t *testing.T) {
	c := New()
	foreign := c.AddLoadBalancer(cloud.LoadBalancer{Name: "not ours"})
	c.AddListener(foreign.ID, tcp(80))
	if n := c.CountCalls(); n != 0 {
		t.Fatalf("test helpers logged %d calls", n)
	}

	leader, standby := c.WithClient("leader"), c.WithClient("standby")
	_, err := standby.DescribeLoadBalancers(ctx, cloud.LoadBalancerQuery{})
	mustNoErr(t, err)
	lb, err := leader.CreateLoadBalancer(ctx, cloud.LoadBalancerSpec{Name: "svc"})
	mustNoErr(t, err)
	l, err := leader.CreateListener(ctx, lb.ID, tcp(80))
	mustNoErr(t, err)
	bs := on(l.ID, pods(3)...)
	mustNoErr(t, leader.RegisterBackends(ctx, lb.ID, bs))
	taskID, _, err := leader.StartModifyBackendWeights(ctx, lb.ID, bs[:1])
	mustNoErr(t, err)
	_, err = leader.TaskStatus(ctx, taskID)
	mustNoErr(t, err)
	_, err = leader.DescribeBackends(ctx, lb.ID)
	mustNoErr(t, err)
	_, err = leader.DescribeBackendHealth(ctx, []string{lb.ID, foreign.ID})
	mustNoErr(t, err)
	mustNoErr(t, leader.ModifyListener(ctx, lb.ID, l.ID, tcp(80)))
	mustNoErr(t, leader.DeregisterBackends(ctx, lb.ID, bs[1:]))
	mustNoErr(t, leader.DeleteListener(ctx, lb.ID, l.ID))
	mustNoErr(t, leader.DeleteLoadBalancer(ctx, lb.ID))
	err = leader.DeleteLoadBalancer(ctx, lb.ID)
	lbGone := err
	wantCode(t, err, cloud.CodeLBNotFound, cloud.KindNotFound)

	type entry struct {
		Action, Client, LB, Listener string
		Backends                     int
		Err                          error
	}
	want := []entry{
		{"DescribeLoadBalancers", "standby", "", "", 0, nil},
		{"CreateLoadBalancer", "leader", lb.ID, "", 0, nil},
		{"CreateListener", "leader", lb.ID, l.ID, 0, nil},
		{"BatchRegisterTargets", "leader", lb.ID, "", 3, nil},
		{"BatchModifyTargetWeight", "leader", lb.ID, "", 1, nil},
		{"DescribeTaskStatus", "leader", lb.ID, "", 0, nil},
		{"DescribeTargets", "leader", lb.ID, "", 0, nil},
		{"DescribeTargetHealth", "leader", "", "", 0, nil},
		{"ModifyListener", "leader", lb.ID, l.ID, 0, nil},
		{"BatchDeregisterTargets", "leader", lb.ID, "", 2, nil},
		{"DeleteListener", "leader", lb.ID, l.ID, 0, nil},
		{"DeleteLoadBalancer", "leader", lb.ID, "", 0, nil},
		{"DeleteLoadBalancer", "leader", lb.ID, "", 0, lbGone},
	}
	var got []entry
	for _, call := range c.Calls() {
		if call.Time.IsZero() {
			t.Errorf("call %s has no time", call.Action)
		}
		got = append(got, entry{call.Action, call.Client, call.LoadBalancerID, call.ListenerID, call.Backends, call.Err})
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("call log:\n%+v\nwant:\n%+v", got, want)
	}

	for _, call := range c.WriteCalls() {
		if call.Client != "leader" || strings.HasPrefix(call.Action, "Describe") {
			t.Errorf("WriteCalls has %+v", call)
		}
	}
	if n := len(c.WriteCalls()); n != 9 {
		t.Errorf("%d write calls, want 9", n)
	}
	if n := c.CountCalls("DeleteLoadBalancer", "DeleteListener"); n != 3 {
		t.Errorf("CountCalls(deletes) = %d, want 3", n)
	}
	c.ResetCalls()
	if n := c.CountCalls(); n != 0 {
		t.Errorf("%d calls after ResetCalls", n)
	}
}

func TestHealth(t *testing.T) {
	c := New()
	lb, l := setup(t, c)
	a, b := pod("10.0.0.1", 10), pod("10.0.0.2", 10)
	mustNoErr(t, c.RegisterBackends(ctx, lb.ID, on(l.ID, a, b)))
	other, ol := setup(t, c)
	mustNoErr(t, c.RegisterBackends(ctx, other.ID, on(ol.ID, a)))

	if !c.SetBackendHealth(lb.ID, l.ID, b.Key(), false, "") {
		t.Fatal("SetBackendHealth did not find a registered backend")
	}
	if !c.SetBackendHealth(other.ID, ol.ID, a.Key(), false, "Timeout") {
		t.Fatal("SetBackendHealth did not find a registered backend")
	}
	if c.SetBackendHealth(lb.ID, l.ID, pod("10.0.0.9", 0).Key(), true, "") {
		t.Error("SetBackendHealth found a backend that is not registered")
	}
	// Health survives a weight change.
	a.Weight = 0
	mustNoErr(t, c.ModifyBackendWeights(ctx, lb.ID, on(l.ID, a)))

	got, err := c.DescribeBackendHealth(ctx, []string{lb.ID, other.ID})
	mustNoErr(t, err)
	want := []cloud.BackendHealth{
		{LoadBalancerID: lb.ID, ListenerID: l.ID, IP: a.IP, Port: a.Port, Healthy: true, Detail: "Alive"},
		{LoadBalancerID: lb.ID, ListenerID: l.ID, IP: b.IP, Port: b.Port, Healthy: false, Detail: "Dead"},
		{LoadBalancerID: other.ID, ListenerID: ol.ID, IP: a.IP, Port: a.Port, Healthy: false, Detail: "Timeout"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("health:\n%+v\nwant:\n%+v", got, want)
	}
	_, err = c.DescribeBackendHealth(ctx, []string{lb.ID, "lb-nope"})
	wantCode(t, err, cloud.CodeLBNotFound, cloud.KindNotFound)
	_, err = c.DescribeBackendHealth(ctx, nil)
	wantCode(t, err, cloud.CodeMissingParameter, cloud.KindTerminal)

	sick := New(WithDefaultHealthy(false))
	lb, l = setup(t, sick)
	mustNoErr(t, sick.RegisterBackends(ctx, lb.ID, on(l.ID, a)))
	got, err = sick.DescribeBackendHealth(ctx, []string{lb.ID})
	mustNoErr(t, err)
	if len(got) != 1 || got[0].Healthy || got[0].Detail != "Dead" {
		t.Errorf("health with unhealthy default: %+v", got)
	}
}

func TestSnapshotIsDeepCopy(t *testing.T) {
	c := New()
	lb, err := c.CreateLoadBalancer(ctx, cloud.LoadBalancerSpec{Name: "a", Tags: map[string]string{"k": "v"}})
	mustNoErr(t, err)
	l, err := c.CreateListener(ctx, lb.ID, tcp(80))
	mustNoErr(t, err)
	mustNoErr(t, c.RegisterBackends(ctx, lb.ID, on(l.ID, pod("10.0.0.1", 10))))

	s := c.Snapshot()
	want := State{LoadBalancers: []LoadBalancerState{{
		LoadBalancer: lb,
		Listeners: []ListenerState{{
			Listener: l,
			Backends: []BackendState{{Backend: pod("10.0.0.1", 10), Healthy: true, HealthDetail: "Alive"}},
		}},
	}}}
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("snapshot %+v, want %+v", s, want)
	}
	s.LoadBalancers[0].Tags["k"] = "changed"
	s.LoadBalancers[0].VIPs[0] = "changed"
	s.LoadBalancers[0].Listeners[0].HealthCheck.IntervalSeconds = 99
	s.LoadBalancers[0].Listeners[0].Backends[0].Weight = 99
	lb.Tags["k"] = "changed"
	l.HealthCheck.IntervalSeconds = 99
	if again := c.Snapshot(); !reflect.DeepEqual(again.LoadBalancers[0].Tags, map[string]string{"k": "v"}) ||
		again.LoadBalancers[0].VIPs[0] == "changed" ||
		again.LoadBalancers[0].Listeners[0].HealthCheck.IntervalSeconds != defaultHealthCheck.IntervalSeconds ||
		again.LoadBalancers[0].Listeners[0].Backends[0].Weight != 10 {
		t.Errorf("changing returned values changed the account: %+v", again)
	}
}

func TestAddLoadBalancerIDs(t *testing.T) {
	c := New()
	added := c.AddLoadBalancer(cloud.LoadBalancer{ID: "lb-00000002", Name: "foreign"})
	if added.ID != "lb-00000002" || len(added.VIPs) != 1 {
		t.Fatalf("added %+v", added)
	}
	first, err := c.CreateLoadBalancer(ctx, cloud.LoadBalancerSpec{Name: "a"})
	mustNoErr(t, err)
	if first.ID == added.ID {
		t.Fatalf("created CLB took the added CLB's ID %s", first.ID)
	}
	defer func() {
		if recover() == nil {
			t.Error("adding a taken ID did not panic")
		}
	}()
	c.AddLoadBalancer(cloud.LoadBalancer{ID: first.ID})
}

func TestDeleteLoadBalancer(t *testing.T) {
	c := New()
	lb, l := setup(t, c)
	mustNoErr(t, c.RegisterBackends(ctx, lb.ID, on(l.ID, pod("10.0.0.1", 10))))
	kept := c.AddLoadBalancer(cloud.LoadBalancer{Name: "kept"})
	mustNoErr(t, c.DeleteLoadBalancer(ctx, lb.ID))

	s := c.Snapshot()
	if len(s.LoadBalancers) != 1 || s.LoadBalancers[0].ID != kept.ID {
		t.Fatalf("after delete: %+v", s)
	}
	_, err := c.DescribeListeners(ctx, lb.ID)
	wantCode(t, err, cloud.CodeLBNotFound, cloud.KindNotFound)
	_, err = c.DescribeBackends(ctx, lb.ID)
	wantCode(t, err, cloud.CodeLBNotFound, cloud.KindNotFound)
}

func TestDescribeQuota(t *testing.T) {
	c := New(WithLimits(Limits{BackendsPerListener: 7}))
	q, err := c.DescribeQuota(ctx)
	mustNoErr(t, err)
	if want := (cloud.Quota{ListenersPerLoadBalancer: cloud.DefaultListenersPerLoadBalancer, BackendsPerListener: 7}); q != want {
		t.Errorf("quota %+v, want %+v", q, want)
	}
}

// TestConcurrentWriters races writers on one CLB, with real task durations:
// every write either lands or is refused as ResourceInOperating, and the
// account ends consistent.
func TestConcurrentWriters(t *testing.T) {
	c := New(WithTaskDuration(2 * time.Millisecond))
	lb, l := setup(t, c)
	const writers = 8
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.WithClient(fmt.Sprint(i)).RegisterBackends(ctx, lb.ID, on(l.ID, pod(fmt.Sprintf("10.0.0.%d", i+1), 10)))
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 20 {
			c.Snapshot()
			c.Calls()
			c.SetLatency("DescribeQuota", 0)
		}
	}()
	wg.Wait()

	succeeded := 0
	for _, err := range errs {
		switch {
		case err == nil:
			succeeded++
		case !cloud.HasCode(err, cloud.CodeResourceInOperating):
			t.Errorf("writer failed with %v", err)
		}
	}
	if got := len(backendsOf(t, c, lb.ID, l.ID)); succeeded == 0 || got != succeeded {
		t.Errorf("%d writers succeeded, %d backends registered", succeeded, got)
	}
}
