package emulator

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	clb "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/clb/v20180317"

	"clb-direct/cloud"
	"clb-direct/cloud/fake"
)

// TestRoundTrip drives a CLB's whole life through the SDK, with real health
// checks against local servers: a 5 s interval runs in 200 ms.
func TestRoundTrip(t *testing.T) {
	_, addr := start(t, func(c *Config) {
		c.TaskDuration = 20 * time.Millisecond
		c.HealthCheck = true
		c.HealthCheckTimeScale = 0.04
	})
	c := newClient(t, addr, testID, testKey)

	// Create, idempotently, and wait for Status 1.
	create := clb.NewCreateLoadBalancerRequest()
	create.LoadBalancerType = ptr("INTERNAL")
	create.SubnetId = ptr("subnet-1")
	create.VpcId = ptr("vpc-1") // accepted, ignored
	create.LoadBalancerName = ptr("round-trip")
	create.ClientToken = ptr("token-1")
	create.Tags = []*clb.TagInfo{{TagKey: ptr(cloud.TagCreatedBy), TagValue: ptr(cloud.CreatedByValue)}}
	created, err := c.CreateLoadBalancer(create)
	must(t, err)
	lbID := *created.Response.LoadBalancerIds[0]
	again, err := c.CreateLoadBalancer(create)
	must(t, err)
	if id := *again.Response.LoadBalancerIds[0]; id != lbID {
		t.Errorf("a retried create with the same ClientToken made %s, want %s", id, lbID)
	}
	lb := waitReady(t, c, lbID)
	if *lb.LoadBalancerName != "round-trip" || *lb.LoadBalancerType != "INTERNAL" || deref(lb.SubnetId) != "subnet-1" ||
		len(lb.LoadBalancerVips) != 1 || len(lb.Tags) != 1 || *lb.Tags[0].TagKey != cloud.TagCreatedBy {
		t.Errorf("CLB %s", jsonOf(lb))
	}

	// A TCP listener with a TCP health check: HealthNum 3, UnHealthNum 2.
	tcpHC := &clb.HealthCheck{HealthSwitch: ptr(int64(1)), IntervalTime: ptr(int64(5)), TimeOut: ptr(int64(2)),
		HealthNum: ptr(int64(3)), UnHealthNum: ptr(int64(2))}
	tcpListener := mustCreateListener(t, c, lbID, "TCP", 18080, tcpHC)
	dl := clb.NewDescribeListenersRequest()
	dl.LoadBalancerId = &lbID
	listeners, err := c.DescribeListeners(dl)
	must(t, err)
	if n := len(listeners.Response.Listeners); n != 1 || *listeners.Response.TotalCount != 1 {
		t.Fatalf("%d listeners, want 1", n)
	}
	l := listeners.Response.Listeners[0]
	if *l.ListenerId != tcpListener || *l.ListenerName != "test_TCP_18080" || *l.Protocol != "TCP" || *l.Port != 18080 ||
		*l.Scheduler != "WRR" || *l.SessionExpireTime != 0 ||
		*l.HealthCheck.HealthSwitch != 1 || *l.HealthCheck.HealthNum != 3 || *l.HealthCheck.UnHealthNum != 2 {
		t.Errorf("listener %s", jsonOf(l))
	}

	// Targets: a server that accepts, a closed port, and a CVM.
	good := tcpBackend(t, "127.0.0.2", "good")
	closed := freeClosedPort(t, "tcp", "127.0.0.3")
	register(t, c, lbID, tcpListener, map[string]int64{good: 10, closed: 20})
	cvm := clb.NewBatchRegisterTargetsRequest()
	cvm.LoadBalancerId = &lbID
	cvm.Targets = []*clb.BatchTarget{{ListenerId: &tcpListener, InstanceId: ptr("ins-1"), Port: ptr(int64(80))}}
	cvmResp, err := c.BatchRegisterTargets(cvm)
	must(t, err)
	waitTask(t, c, *cvmResp.Response.RequestId)
	registered := time.Now()

	// New targets are Unknown until HealthNum probes (400 ms here) passed.
	h := targetHealth(t, c, lbID)
	if h[good] == "Alive/true" && time.Since(registered) < 300*time.Millisecond {
		t.Errorf("the good target is Alive %s after registration, before 3 probes", time.Since(registered))
	}
	eventually(t, 5*time.Second, "verdicts", func() (bool, string) {
		h := targetHealth(t, c, lbID)
		return h[good] == "Alive/true" && h[closed] == "Dead/false" && h["ins-1:80"] == healthNoAddress+"/false", fmt.Sprint(h)
	})
	if took := time.Since(registered); took < 350*time.Millisecond {
		t.Errorf("the good target became Alive %s after registration, before 3 probes 200ms apart", took)
	}

	// DescribeTargets: ENI targets by PrivateIpAddresses, the CVM by InstanceId.
	dt := clb.NewDescribeTargetsRequest()
	dt.LoadBalancerId = &lbID
	targets, err := c.DescribeTargets(dt)
	must(t, err)
	wantTargets := []string{
		"ENI " + strings.Replace(good, ":", " ", 1) + " 10",
		"ENI " + strings.Replace(closed, ":", " ", 1) + " 20",
		"CVM ins-1 80 10",
	}
	if got := describeTargetsSummary(targets); !slices.Equal(got, wantTargets) {
		t.Errorf("DescribeTargets %v, want %v\n%s", got, wantTargets, jsonOf(targets))
	}
	if tl := targets.Response.Listeners[0]; *tl.ListenerId != tcpListener || *tl.Protocol != "TCP" || *tl.Port != 18080 {
		t.Errorf("DescribeTargets listener %s", jsonOf(tl))
	}

	// An HTTP check: 2xx is healthy; then ModifyListener makes 5xx healthy.
	ok200 := httpBackend(t, "127.0.0.4", http.StatusOK)
	fail500 := httpBackend(t, "127.0.0.5", http.StatusInternalServerError)
	httpListener := mustCreateListener(t, c, lbID, "TCP", 18081, &clb.HealthCheck{
		CheckType: ptr("HTTP"), HttpCheckPath: ptr("/healthz"), HttpCode: ptr(int64(2)), HttpCheckMethod: ptr("GET"),
		HttpVersion: ptr("HTTP/1.1"), HealthNum: ptr(int64(2)), UnHealthNum: ptr(int64(2)),
	})
	register(t, c, lbID, httpListener, map[string]int64{ok200: 10, fail500: 10})
	eventually(t, 5*time.Second, "HTTP verdicts", func() (bool, string) {
		h := targetHealth(t, c, lbID)
		return h[ok200] == "Alive/true" && h[fail500] == "Dead/false", fmt.Sprint(h)
	})
	modify := clb.NewModifyListenerRequest()
	modify.LoadBalancerId, modify.ListenerId = &lbID, &httpListener
	modify.HealthCheck = &clb.HealthCheck{HttpCode: ptr(int64(16))}
	modify.SessionExpireTime = ptr(int64(60))
	modResp, err := c.ModifyListener(modify)
	must(t, err)
	waitTask(t, c, *modResp.Response.RequestId)
	eventually(t, 5*time.Second, "HTTP verdicts after HttpCode 16", func() (bool, string) {
		h := targetHealth(t, c, lbID)
		return h[ok200] == "Dead/false" && h[fail500] == "Alive/true", fmt.Sprint(h)
	})
	dl.ListenerIds = []*string{&httpListener}
	listeners, err = c.DescribeListeners(dl)
	must(t, err)
	if hc := listeners.Response.Listeners[0].HealthCheck; *hc.HttpCode != 16 || *hc.HttpCheckPath != "/healthz" ||
		*hc.CheckType != "HTTP" || *hc.HealthNum != 2 || *listeners.Response.Listeners[0].SessionExpireTime != 60 {
		t.Errorf("ModifyListener changed more than HttpCode and SessionExpireTime: %s", jsonOf(listeners.Response.Listeners[0]))
	}

	// Weights: one rule weight for a target, another target's own weight.
	goodIP, goodPort := splitAddr(t, good)
	closedIP, closedPort := splitAddr(t, closed)
	weights := clb.NewBatchModifyTargetWeightRequest()
	weights.LoadBalancerId = &lbID
	weights.ModifyList = []*clb.RsWeightRule{
		{ListenerId: &tcpListener, Weight: ptr(int64(0)), Targets: []*clb.Target{{EniIp: &goodIP, Port: &goodPort}}},
		{ListenerId: &tcpListener, Weight: ptr(int64(1)), Targets: []*clb.Target{{EniIp: &closedIP, Port: &closedPort, Weight: ptr(int64(55))}}},
	}
	wResp, err := c.BatchModifyTargetWeight(weights)
	must(t, err)
	waitTask(t, c, *wResp.Response.RequestId)

	// Deregister the closed port.
	dereg := clb.NewBatchDeregisterTargetsRequest()
	dereg.LoadBalancerId = &lbID
	dereg.Targets = []*clb.BatchTarget{{ListenerId: &tcpListener, EniIp: &closedIP, Port: &closedPort}}
	dResp, err := c.BatchDeregisterTargets(dereg)
	must(t, err)
	waitTask(t, c, *dResp.Response.RequestId)
	dt.ListenerIds = []*string{&tcpListener}
	targets, err = c.DescribeTargets(dt)
	must(t, err)
	wantTargets = []string{"ENI " + strings.Replace(good, ":", " ", 1) + " 0", "CVM ins-1 80 10"}
	if got := describeTargetsSummary(targets); !slices.Equal(got, wantTargets) {
		t.Errorf("DescribeTargets after weights and deregistration %v, want %v", got, wantTargets)
	}

	// Delete a listener, then the CLB.
	delL := clb.NewDeleteListenerRequest()
	delL.LoadBalancerId, delL.ListenerId = &lbID, &httpListener
	delLResp, err := c.DeleteListener(delL)
	must(t, err)
	waitTask(t, c, *delLResp.Response.RequestId)
	delLB := clb.NewDeleteLoadBalancerRequest()
	delLB.LoadBalancerIds = []*string{&lbID}
	delLBResp, err := c.DeleteLoadBalancer(delLB)
	must(t, err)
	waitTask(t, c, *delLBResp.Response.RequestId)
	dl.ListenerIds = nil
	_, err = c.DescribeListeners(dl)
	wantCode(t, err, cloud.CodeLBNotFound)
}

// describeTargetsSummary flattens DescribeTargets to "Type id port weight".
func describeTargetsSummary(resp *clb.DescribeTargetsResponse) []string {
	var out []string
	for _, l := range resp.Response.Listeners {
		for _, tg := range l.Targets {
			id := deref(tg.InstanceId)
			if *tg.Type == targetTypeENI {
				if len(tg.PrivateIpAddresses) != 1 || tg.InstanceId != nil {
					return []string{"bad ENI target " + fmt.Sprint(tg)}
				}
				id = *tg.PrivateIpAddresses[0]
			}
			out = append(out, fmt.Sprintf("%s %s %d %d", *tg.Type, id, *tg.Port, *tg.Weight))
		}
	}
	return out
}

// httpBackend answers /healthz with status.
func httpBackend(t *testing.T, ip string, status int) string {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	must(t, err)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(status)
	}))
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return ln.Addr().String()
}

func TestWritesAreTasks(t *testing.T) {
	_, addr := start(t, func(c *Config) { c.TaskDuration = 300 * time.Millisecond })
	c := newClient(t, addr, testID, testKey)
	req := clb.NewCreateLoadBalancerRequest()
	req.LoadBalancerType = ptr("OPEN")
	resp, err := c.CreateLoadBalancer(req)
	must(t, err)
	lbID, taskID := *resp.Response.LoadBalancerIds[0], *resp.Response.RequestId

	status := clb.NewDescribeTaskStatusRequest()
	status.TaskId = &taskID
	st, err := c.DescribeTaskStatus(status)
	must(t, err)
	if *st.Response.Status != 2 {
		t.Errorf("task status %d right after the call, want 2 (running)", *st.Response.Status)
	}
	describe := clb.NewDescribeLoadBalancersRequest()
	describe.LoadBalancerIds = []*string{&lbID}
	lbs, err := c.DescribeLoadBalancers(describe)
	must(t, err)
	if lb := lbs.Response.LoadBalancerSet[0]; *lb.Status != 0 || len(lb.LoadBalancerVips) != 0 {
		t.Errorf("CLB being created: %s, want Status 0 and no VIP", jsonOf(lb))
	}
	listener := clb.NewCreateListenerRequest()
	listener.LoadBalancerId, listener.Protocol, listener.Ports = &lbID, ptr("TCP"), []*int64{ptr(int64(80))}
	_, err = c.CreateListener(listener)
	wantCode(t, err, cloud.CodeResourceInOperating)
	waitTask(t, c, taskID)
	waitReady(t, c, lbID)

	status.TaskId = ptr("no-such-task")
	_, err = c.DescribeTaskStatus(status)
	wantCode(t, err, cloud.CodeInvalidParameterVal)
}

func TestParameterChecks(t *testing.T) {
	_, addr := start(t, nil)
	c := newClient(t, addr, testID, testKey)
	lb := mustCreateLB(t, c, "checks")
	lbID := *lb.LoadBalancerId
	listenerID := mustCreateListener(t, c, lbID, "TCP", 80, nil)

	cases := []struct {
		name string
		call func() error
		code string
	}{
		{"internal without subnet", func() error {
			req := clb.NewCreateLoadBalancerRequest()
			req.LoadBalancerType = ptr("INTERNAL")
			_, err := c.CreateLoadBalancer(req)
			return err
		}, cloud.CodeMissingParameter},
		{"no type", func() error {
			_, err := c.CreateLoadBalancer(clb.NewCreateLoadBalancerRequest())
			return err
		}, cloud.CodeMissingParameter},
		{"two listeners in one call", func() error {
			req := clb.NewCreateListenerRequest()
			req.LoadBalancerId, req.Protocol, req.Ports = &lbID, ptr("TCP"), []*int64{ptr(int64(81)), ptr(int64(82))}
			_, err := c.CreateListener(req)
			return err
		}, cloud.CodeInvalidParameterVal},
		{"HTTP listener", func() error {
			req := clb.NewCreateListenerRequest()
			req.LoadBalancerId, req.Protocol, req.Ports = &lbID, ptr("HTTP"), []*int64{ptr(int64(81))}
			_, err := c.CreateListener(req)
			return err
		}, cloud.CodeInvalidParameterVal},
		{"port taken", func() error {
			req := clb.NewCreateListenerRequest()
			req.LoadBalancerId, req.Protocol, req.Ports = &lbID, ptr("TCP"), []*int64{ptr(int64(80))}
			_, err := c.CreateListener(req)
			return err
		}, cloud.CodePortCheckFailed},
		{"health check out of range", func() error {
			req := clb.NewCreateListenerRequest()
			req.LoadBalancerId, req.Protocol, req.Ports = &lbID, ptr("TCP"), []*int64{ptr(int64(81))}
			req.HealthCheck = &clb.HealthCheck{IntervalTime: ptr(int64(1))}
			_, err := c.CreateListener(req)
			return err
		}, cloud.CodeInvalidParameterVal},
		{"rename", func() error {
			req := clb.NewModifyListenerRequest()
			req.LoadBalancerId, req.ListenerId, req.ListenerName = &lbID, &listenerID, ptr("other")
			_, err := c.ModifyListener(req)
			return err
		}, cloud.CodeInvalidParameter},
		{"unknown listener", func() error {
			req := clb.NewDeleteListenerRequest()
			req.LoadBalancerId, req.ListenerId = &lbID, ptr("lbl-nope")
			_, err := c.DeleteListener(req)
			return err
		}, cloud.CodeListenerNotFound},
		{"target without address", func() error {
			req := clb.NewBatchRegisterTargetsRequest()
			req.LoadBalancerId = &lbID
			req.Targets = []*clb.BatchTarget{{ListenerId: &listenerID, Port: ptr(int64(80))}}
			_, err := c.BatchRegisterTargets(req)
			return err
		}, cloud.CodeMissingParameter},
		{"weight out of range", func() error {
			req := clb.NewBatchRegisterTargetsRequest()
			req.LoadBalancerId = &lbID
			req.Targets = []*clb.BatchTarget{{ListenerId: &listenerID, EniIp: ptr("10.0.0.1"), Port: ptr(int64(80)), Weight: ptr(int64(101))}}
			_, err := c.BatchRegisterTargets(req)
			return err
		}, cloud.CodeInvalidParameterVal},
		{"weight of a target not registered", func() error {
			req := clb.NewBatchModifyTargetWeightRequest()
			req.LoadBalancerId = &lbID
			req.ModifyList = []*clb.RsWeightRule{{ListenerId: &listenerID, Weight: ptr(int64(5)),
				Targets: []*clb.Target{{EniIp: ptr("10.0.0.9"), Port: ptr(int64(80))}}}}
			_, err := c.BatchModifyTargetWeight(req)
			return err
		}, cloud.CodeInvalidParameter},
		{"weight missing", func() error {
			req := clb.NewBatchModifyTargetWeightRequest()
			req.LoadBalancerId = &lbID
			req.ModifyList = []*clb.RsWeightRule{{ListenerId: &listenerID, Targets: []*clb.Target{{EniIp: ptr("10.0.0.9"), Port: ptr(int64(80))}}}}
			_, err := c.BatchModifyTargetWeight(req)
			return err
		}, cloud.CodeMissingParameter},
		{"two CLBs deleted at once", func() error {
			req := clb.NewDeleteLoadBalancerRequest()
			req.LoadBalancerIds = []*string{&lbID, &lbID}
			_, err := c.DeleteLoadBalancer(req)
			return err
		}, cloud.CodeInvalidParameterVal},
		{"health of an unknown CLB", func() error {
			req := clb.NewDescribeTargetHealthRequest()
			req.LoadBalancerIds = []*string{ptr("lb-nope")}
			_, err := c.DescribeTargetHealth(req)
			return err
		}, cloud.CodeLBNotFound},
		{"billing change", func() error {
			req := clb.NewModifyLoadBalancerAttributesRequest()
			req.LoadBalancerId = &lbID
			req.InternetChargeInfo = &clb.InternetAccessible{InternetChargeType: ptr("BANDWIDTH_PACKAGE"), InternetMaxBandwidthOut: ptr(int64(10))}
			_, err := c.ModifyLoadBalancerAttributes(req)
			return err
		}, cloud.CodeInvalidParameter},
		{"bandwidth missing", func() error {
			req := clb.NewModifyLoadBalancerAttributesRequest()
			req.LoadBalancerId, req.InternetChargeInfo = &lbID, &clb.InternetAccessible{}
			_, err := c.ModifyLoadBalancerAttributes(req)
			return err
		}, cloud.CodeMissingParameter},
		{"bandwidth out of range", func() error {
			req := clb.NewModifyLoadBalancerAttributesRequest()
			req.LoadBalancerId = &lbID
			req.InternetChargeInfo = &clb.InternetAccessible{InternetMaxBandwidthOut: ptr(int64(cloud.MaxInternetBandwidthOut + 1))}
			_, err := c.ModifyLoadBalancerAttributes(req)
			return err
		}, cloud.CodeInvalidParameterVal},
		{"CLB renamed", func() error {
			req := clb.NewModifyLoadBalancerAttributesRequest()
			req.LoadBalancerId, req.LoadBalancerName = &lbID, ptr("other")
			_, err := c.ModifyLoadBalancerAttributes(req)
			return err
		}, cloud.CodeInvalidParameter},
		{"create with a bandwidth out of range", func() error {
			req := clb.NewCreateLoadBalancerRequest()
			req.LoadBalancerType = ptr("OPEN")
			req.InternetAccessible = &clb.InternetAccessible{InternetMaxBandwidthOut: ptr(int64(-1))}
			_, err := c.CreateLoadBalancer(req)
			return err
		}, cloud.CodeInvalidParameterVal},
		{"filter not implemented", func() error {
			req := clb.NewDescribeLoadBalancersRequest()
			req.Filters = []*clb.Filter{{Name: ptr("vip-isp"), Values: []*string{ptr("BGP")}}}
			_, err := c.DescribeLoadBalancers(req)
			return err
		}, cloud.CodeInvalidParameterVal},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { wantCode(t, tc.call(), tc.code) })
	}
}

// TestBandwidth sets a CLB's bandwidth at creation and changes it, with the
// other parameters TKE users pass accepted.
func TestBandwidth(t *testing.T) {
	_, addr := start(t, func(c *Config) { c.TaskDuration = 20 * time.Millisecond })
	c := newClient(t, addr, testID, testKey)
	create := clb.NewCreateLoadBalancerRequest()
	create.LoadBalancerType = ptr("OPEN")
	create.InternetAccessible = &clb.InternetAccessible{InternetChargeType: ptr("TRAFFIC_POSTPAID_BY_HOUR"), InternetMaxBandwidthOut: ptr(int64(30))}
	create.ZoneId, create.VipIsp, create.ProjectId = ptr("ap-guangzhou-3"), ptr("CMCC"), ptr(int64(0))
	create.SnatIps = []*clb.SnatIp{{SubnetId: ptr("subnet-1")}}
	created, err := c.CreateLoadBalancer(create)
	must(t, err)
	lbID := *created.Response.LoadBalancerIds[0]
	if lb := waitReady(t, c, lbID); lb.NetworkAttributes == nil || deref(lb.NetworkAttributes.InternetMaxBandwidthOut) != 30 {
		t.Errorf("created CLB %s, want NetworkAttributes.InternetMaxBandwidthOut 30", jsonOf(lb))
	}

	modify := clb.NewModifyLoadBalancerAttributesRequest()
	modify.LoadBalancerId = &lbID
	modify.InternetChargeInfo = &clb.InternetAccessible{InternetMaxBandwidthOut: ptr(int64(100))}
	modified, err := c.ModifyLoadBalancerAttributes(modify)
	must(t, err)
	waitTask(t, c, *modified.Response.RequestId)
	if lb := waitReady(t, c, lbID); deref(lb.NetworkAttributes.InternetMaxBandwidthOut) != 100 {
		t.Errorf("modified CLB %s, want NetworkAttributes.InternetMaxBandwidthOut 100", jsonOf(lb))
	}
}

// TestCreateTakesEveryParameter: the action table hands every parameter of
// CreateLoadBalancer to the fake, which decides what it takes.
func TestCreateTakesEveryParameter(t *testing.T) {
	a := actionTable()["CreateLoadBalancer"]
	for name := range a.known {
		if !a.supported[name] && !a.ignored[name] {
			t.Errorf("CreateLoadBalancer refuses its parameter %s", name)
		}
	}
}

func TestPagination(t *testing.T) {
	srv, addr := start(t, nil)
	c := newClient(t, addr, testID, testKey)
	var all, teamA []string
	for i := range 230 {
		tags := map[string]string{"n": strconv.Itoa(i)}
		if i%2 == 0 {
			tags["team"] = "a"
		}
		lb := srv.Cloud().AddLoadBalancer(cloud.LoadBalancer{Name: fmt.Sprintf("lb-%d", i), Tags: tags})
		all = append(all, lb.ID)
		if i%2 == 0 {
			teamA = append(teamA, lb.ID)
		}
	}
	pages := func(filters []*clb.Filter, ids []string, limit int64) (got []string, totals []uint64) {
		for offset := int64(0); ; offset += limit {
			req := clb.NewDescribeLoadBalancersRequest()
			req.Offset, req.Limit, req.Filters, req.LoadBalancerIds = &offset, &limit, filters, strPtrs(ids)
			resp, err := c.DescribeLoadBalancers(req)
			must(t, err)
			totals = append(totals, *resp.Response.TotalCount)
			for _, lb := range resp.Response.LoadBalancerSet {
				got = append(got, *lb.LoadBalancerId)
			}
			if len(resp.Response.LoadBalancerSet) < int(limit) {
				return got, totals
			}
		}
	}

	got, totals := pages(nil, nil, 100)
	if !slices.Equal(got, all) || !slices.Equal(totals, []uint64{230, 230, 230}) {
		t.Errorf("pages of 100: %d CLBs with totals %v, want all 230 in order of creation, totals 230", len(got), totals)
	}
	teamFilter := []*clb.Filter{{Name: ptr("tag:team"), Values: []*string{ptr("a")}}}
	got, totals = pages(teamFilter, nil, 50)
	if !slices.Equal(got, teamA) || totals[0] != 115 {
		t.Errorf("tag:team=a in pages of 50: %d CLBs, total %d; want 115", len(got), totals[0])
	}
	// IDs and a filter: both must match.
	got, totals = pages(teamFilter, all[:5], 2)
	if want := []string{all[0], all[2], all[4]}; !slices.Equal(got, want) || totals[0] != 3 {
		t.Errorf("IDs and filter: %v (total %d), want %v", got, totals[0], want)
	}

	resp, err := c.DescribeLoadBalancers(clb.NewDescribeLoadBalancersRequest())
	must(t, err)
	if n := len(resp.Response.LoadBalancerSet); n != 20 {
		t.Errorf("a Describe without Limit returned %d, want the default page of 20", n)
	}
	tooMany := clb.NewDescribeLoadBalancersRequest()
	tooMany.Limit = ptr(int64(101))
	_, err = c.DescribeLoadBalancers(tooMany)
	wantCode(t, err, cloud.CodeInvalidParameterVal)
}

func TestRateLimit(t *testing.T) {
	_, addr := start(t, func(c *Config) { c.RateLimit = 5 })
	c := newClient(t, addr, testID, testKey)
	ok, limited := 0, 0
	for range 20 {
		_, err := c.DescribeQuota(nil)
		if err == nil {
			ok++
			continue
		}
		wantCode(t, err, cloud.CodeRequestLimitExceeded)
		limited++
	}
	if ok < 5 || limited == 0 {
		t.Errorf("%d calls admitted, %d limited; want the burst of 5 admitted, then RequestLimitExceeded", ok, limited)
	}
	// The limit is per action.
	if _, err := c.DescribeLoadBalancers(nil); err != nil {
		t.Errorf("another action was limited too: %v", err)
	}
}

// TestCallLogNamesTheClient shows how a test proves that a standby replica
// never writes: each call is logged under the SecretId that signed it.
func TestCallLogNamesTheClient(t *testing.T) {
	srv, addr := start(t, func(c *Config) { c.ExtraCredentials = map[string]string{"AKIDstandby": "standby-key"} })
	leader := newClient(t, addr, testID, testKey)
	standby := newClient(t, addr, "AKIDstandby", "standby-key")
	lb := mustCreateLB(t, leader, "logged")
	_, err := standby.DescribeLoadBalancers(nil)
	must(t, err)
	_, err = standby.DescribeQuota(nil)
	must(t, err)

	for _, call := range srv.Cloud().WriteCalls() {
		if call.Client != testID {
			t.Errorf("write %s by %q, want only %s writing", call.Action, call.Client, testID)
		}
	}
	// The admin API's log decodes into the fake's own type.
	var calls []fake.Call
	if code := adminDo(t, addr, http.MethodGet, "/admin/calls?client=AKIDstandby", nil, &calls); code != http.StatusOK {
		t.Fatalf("GET /admin/calls: %d", code)
	}
	var actions []string
	for _, call := range calls {
		actions = append(actions, call.Action+" by "+call.Client)
	}
	want := []string{"DescribeLoadBalancers by AKIDstandby", "DescribeQuota by AKIDstandby"}
	if !reflect.DeepEqual(actions, want) {
		t.Errorf("the standby's calls: %v, want %v", actions, want)
	}
	var records []CallRecord
	adminDo(t, addr, http.MethodGet, "/admin/calls?action=CreateLoadBalancer", nil, &records)
	if len(records) != 1 || records[0].LoadBalancerID != *lb.LoadBalancerId || records[0].Client != testID || records[0].ErrorCode != "" {
		t.Errorf("CreateLoadBalancer calls: %+v", records)
	}
}
