package emulator

import (
	"errors"
	"net/http"
	"slices"
	"testing"
	"time"

	clb "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/clb/v20180317"
	sdkerrors "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/errors"
	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/profile"

	"clb-direct/cloud"
)

func postFaults(t *testing.T, addr string, f FaultSettings) {
	t.Helper()
	if code := adminDo(t, addr, http.MethodPost, "/admin/faults", f, nil); code != http.StatusOK {
		t.Fatalf("POST /admin/faults %s: %d", jsonOf(f), code)
	}
}

func injected(t *testing.T, addr string) map[string]int64 {
	t.Helper()
	var counts map[string]int64
	if code := adminDo(t, addr, http.MethodGet, "/admin/injected", nil, &counts); code != http.StatusOK {
		t.Fatalf("GET /admin/injected: %d", code)
	}
	return counts
}

// networkError checks that err is the SDK's failure to get any response.
func networkError(t *testing.T, err error) {
	t.Helper()
	var sdkErr *sdkerrors.TencentCloudSDKError
	if !errors.As(err, &sdkErr) || sdkErr.Code != "ClientError.NetworkError" {
		t.Fatalf("error %v, want the SDK's ClientError.NetworkError", err)
	}
}

func TestErrorMix(t *testing.T) {
	_, addr := start(t, nil)
	c := newClient(t, addr, testID, testKey)
	codes := []string{cloud.CodeInternalError, cloud.CodeRequestLimitExceeded, cloud.CodeResourceInOperating}
	postFaults(t, addr, FaultSettings{Action: "DescribeQuota", ErrorMix: &ErrorMix{Rate: 1, Codes: codes}})
	seen := map[string]int{}
	for range 60 {
		_, err := c.DescribeQuota(nil)
		var sdkErr *sdkerrors.TencentCloudSDKError
		if !errors.As(err, &sdkErr) {
			t.Fatalf("DescribeQuota with an error mix of rate 1: %v", err)
		}
		seen[sdkErr.Code]++
	}
	for _, code := range codes {
		if seen[code] == 0 {
			t.Errorf("code %s never drawn in 60 calls: %v", code, seen)
		}
	}
	if _, err := c.DescribeLoadBalancers(nil); err != nil {
		t.Errorf("an action without the mix failed: %v", err)
	}
	counts := injected(t, addr)
	for _, code := range codes {
		if counts[InjectedErrorPrefix+code] != int64(seen[code]) {
			t.Errorf("GET /admin/injected %v, want %v for the codes drawn", counts, seen)
		}
	}
	// Calls failed on the wire never reach the account.
	var records []CallRecord
	adminDo(t, addr, http.MethodGet, "/admin/calls?action=DescribeQuota", nil, &records)
	if len(records) != 0 {
		t.Errorf("%d DescribeQuota calls in the call log, want none", len(records))
	}
	adminDo(t, addr, http.MethodDelete, "/admin/faults", nil, nil)
	if _, err := c.DescribeQuota(nil); err != nil {
		t.Errorf("after DELETE /admin/faults: %v", err)
	}
	adminDo(t, addr, http.MethodDelete, "/admin/injected", nil, nil)
	if counts := injected(t, addr); len(counts) != 0 {
		t.Errorf("after DELETE /admin/injected: %v", counts)
	}
}

// A dropped response: the write is done, the client hears nothing.
func TestDropResponse(t *testing.T) {
	srv, addr := start(t, nil)
	c := newClient(t, addr, testID, testKey)
	lb := mustCreateLB(t, c, "drop")
	postFaults(t, addr, FaultSettings{Action: "CreateListener", DropResponseRate: ptr(1.0)})
	req := clb.NewCreateListenerRequest()
	req.LoadBalancerId = lb.LoadBalancerId
	req.Protocol = ptr("TCP")
	req.Ports = []*int64{ptr(int64(80))}
	_, err := c.CreateListener(req)
	networkError(t, err)
	eventually(t, 5*time.Second, "the listener created all the same", func() (bool, string) {
		lbState, _ := findLoadBalancer(srv.Cloud().Snapshot(), *lb.LoadBalancerId)
		return len(lbState.Listeners) == 1, jsonOf(lbState)
	})
	if n := injected(t, addr)[InjectedDropResponse]; n != 1 {
		t.Errorf("%d dropped responses counted, want 1", n)
	}
}

// A held response: the call is served, its answer waits until the client
// gives up; the next call is answered.
func TestHoldNext(t *testing.T) {
	srv, addr := start(t, nil)
	c := newClient(t, addr, testID, testKey)
	lb := mustCreateLB(t, c, "hold")
	postFaults(t, addr, FaultSettings{HoldNext: &HoldNext{Action: "CreateListener", Count: 1}})
	impatient := newClient(t, addr, testID, testKey, func(p *profile.ClientProfile) { p.HttpProfile.ReqTimeout = 1 })
	done := make(chan error, 1)
	go func() {
		req := clb.NewCreateListenerRequest()
		req.LoadBalancerId = lb.LoadBalancerId
		req.Protocol = ptr("TCP")
		req.Ports = []*int64{ptr(int64(80))}
		_, err := impatient.CreateListener(req)
		done <- err
	}()
	eventually(t, 5*time.Second, "the call held", func() (bool, string) {
		var held []HeldCall
		adminDo(t, addr, http.MethodGet, "/admin/held", nil, &held)
		return len(held) == 1 && held[0].Action == "CreateListener" && held[0].Client == testID, jsonOf(held)
	})
	lbState, _ := findLoadBalancer(srv.Cloud().Snapshot(), *lb.LoadBalancerId)
	if len(lbState.Listeners) != 1 {
		t.Errorf("while its response is held, the CLB has %d listeners, want the 1 created", len(lbState.Listeners))
	}
	select {
	case err := <-done:
		networkError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the held call did not time out on the client")
	}
	eventually(t, 5*time.Second, "nothing held", func() (bool, string) {
		var held []HeldCall
		adminDo(t, addr, http.MethodGet, "/admin/held", nil, &held)
		return len(held) == 0, jsonOf(held)
	})
	mustCreateListener(t, c, *lb.LoadBalancerId, "TCP", 81, nil)
	if n := injected(t, addr)[InjectedHoldResponse]; n != 1 {
		t.Errorf("%d held responses counted, want 1", n)
	}
}

// An API outage refuses or hangs every API request, not the admin API, and
// ends on time or when told.
func TestAPIDown(t *testing.T) {
	_, addr := start(t, nil)
	c := newClient(t, addr, testID, testKey)
	postFaults(t, addr, FaultSettings{APIDown: &APIDown{Mode: APIDownRefuse, DurationMs: 60000}})
	began := time.Now()
	_, err := c.DescribeLoadBalancers(nil)
	networkError(t, err)
	if took := time.Since(began); took > 2*time.Second {
		t.Errorf("a refused call took %s", took)
	}
	if code := adminDo(t, addr, http.MethodGet, "/admin/healthz", nil, nil); code != http.StatusOK {
		t.Errorf("the admin API during the outage: %d", code)
	}
	postFaults(t, addr, FaultSettings{APIDown: &APIDown{DurationMs: 0}})
	if _, err := c.DescribeLoadBalancers(nil); err != nil {
		t.Errorf("after the outage was ended: %v", err)
	}

	postFaults(t, addr, FaultSettings{APIDown: &APIDown{Mode: APIDownHang, DurationMs: 700}})
	began = time.Now()
	_, err = c.DescribeLoadBalancers(nil)
	networkError(t, err)
	if took := time.Since(began); took < 500*time.Millisecond {
		t.Errorf("a hung call came back after %s, before the outage ended", took)
	}
	if _, err := c.DescribeLoadBalancers(nil); err != nil {
		t.Errorf("after the outage: %v", err)
	}
	counts := injected(t, addr)
	if counts[InjectedAPIDownRefused] != 1 || counts[InjectedAPIDownHung] != 1 {
		t.Errorf("GET /admin/injected %v, want one refused and one hung request", counts)
	}
}

// The batch log names every target, with its listener's name, and counts
// partly failed batches and failed tasks.
func TestBatchLogAndCounts(t *testing.T) {
	_, addr := start(t, func(c *Config) { c.TaskDuration = 0 })
	c := newClient(t, addr, testID, testKey)
	lb := mustCreateLB(t, c, "batches")
	lbID := *lb.LoadBalancerId
	listenerID := mustCreateListener(t, c, lbID, "TCP", 80, nil)
	register(t, c, lbID, listenerID, map[string]int64{"10.0.0.1:8080": 5, "10.0.0.2:8080": 6})
	dereg := clb.NewBatchDeregisterTargetsRequest()
	dereg.LoadBalancerId = &lbID
	dereg.Targets = []*clb.BatchTarget{{ListenerId: &listenerID, EniIp: ptr("10.0.0.2"), Port: ptr(int64(8080))}}
	resp, err := c.BatchDeregisterTargets(dereg)
	must(t, err)
	waitTask(t, c, *resp.Response.RequestId)

	var all []BatchRecord
	adminDo(t, addr, http.MethodGet, "/admin/batches", nil, &all)
	if len(all) != 2 {
		t.Fatalf("%d batch records, want 2: %s", len(all), jsonOf(all))
	}
	want := BatchTargetRecord{ListenerID: listenerID, ListenerName: "test_TCP_80", IP: "10.0.0.2", Port: 8080, Weight: 10}
	last := all[1]
	if last.Action != "BatchDeregisterTargets" || last.Client != testID || last.LoadBalancerID != lbID ||
		!slices.Equal(last.Targets, []BatchTargetRecord{want}) || last.Seq != 2 || last.TaskID == "" {
		t.Errorf("deregistration logged as %s, want its one target %s", jsonOf(last), jsonOf(want))
	}
	if len(all[0].Targets) != 2 || all[0].Targets[0].Weight != 5 {
		t.Errorf("registration logged as %s", jsonOf(all[0]))
	}
	var since []BatchRecord
	adminDo(t, addr, http.MethodGet, "/admin/batches?since=2", nil, &since)
	if len(since) != 1 || since[0].Seq != 2 {
		t.Errorf("?since=2 returned %s", jsonOf(since))
	}

	postFaults(t, addr, FaultSettings{PartialFailureRate: ptr(1.0)})
	reg := clb.NewBatchRegisterTargetsRequest()
	reg.LoadBalancerId = &lbID
	reg.Targets = []*clb.BatchTarget{{ListenerId: &listenerID, EniIp: ptr("10.0.0.3"), Port: ptr(int64(8080))}}
	regResp, err := c.BatchRegisterTargets(reg)
	must(t, err)
	waitTask(t, c, *regResp.Response.RequestId)
	postFaults(t, addr, FaultSettings{PartialFailureRate: ptr(0.0), TaskFailureRate: ptr(1.0)})
	regResp, err = c.BatchRegisterTargets(reg)
	must(t, err)
	for range 3 { // the same task counts once
		st := clb.NewDescribeTaskStatusRequest()
		st.TaskId = regResp.Response.RequestId
		_, err := c.DescribeTaskStatus(st)
		must(t, err)
	}
	adminDo(t, addr, http.MethodGet, "/admin/batches?since=3", nil, &since)
	if len(since) != 2 || !slices.Equal(since[0].FailedListenerIDs, []string{listenerID}) || since[1].ErrorCode != "" {
		t.Errorf("the partly failed batch and the one whose task fails logged as %s", jsonOf(since))
	}
	counts := injected(t, addr)
	if counts[InjectedPartialFailure] != 1 || counts[InjectedTaskFailure] != 1 {
		t.Errorf("GET /admin/injected %v, want 1 partial failure and 1 task failure", counts)
	}
	adminDo(t, addr, http.MethodDelete, "/admin/batches", nil, nil)
	adminDo(t, addr, http.MethodGet, "/admin/batches", nil, &all)
	if len(all) != 0 {
		t.Errorf("after DELETE /admin/batches: %s", jsonOf(all))
	}
}

func TestWireFaultSettingsAreChecked(t *testing.T) {
	_, addr := start(t, nil)
	for _, f := range []FaultSettings{
		{ErrorMix: &ErrorMix{Rate: 2, Codes: []string{"InternalError"}}},
		{ErrorMix: &ErrorMix{Rate: 0.5}},
		{ErrorMix: &ErrorMix{Rate: 0.5, Codes: []string{""}}},
		{DropResponseRate: ptr(-0.1)},
		{HoldNext: &HoldNext{Count: -1}},
		{APIDown: &APIDown{Mode: "sometimes", DurationMs: 10}},
		{APIDown: &APIDown{DurationMs: -1}},
	} {
		if code := adminDo(t, addr, http.MethodPost, "/admin/faults", f, nil); code != http.StatusBadRequest {
			t.Errorf("POST /admin/faults %s: %d, want 400", jsonOf(f), code)
		}
	}
}
