package emulator

import (
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	clb "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/clb/v20180317"

	"clb-direct/cloud"
	"clb-direct/cloud/fake"
)

// TestFaultInjection sets faults through POST /admin/faults, as a script or
// an end-to-end test does, and observes them from the SDK.
func TestFaultInjection(t *testing.T) {
	_, addr := start(t, func(c *Config) { c.TaskDuration = 10 * time.Millisecond })
	c := newClient(t, addr, testID, testKey)
	lb := mustCreateLB(t, c, "faults")
	lbID := *lb.LoadBalancerId
	listenerID := mustCreateListener(t, c, lbID, "TCP", 80, nil)
	faults := func(body string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/admin/faults", strings.NewReader(body))
		must(t, err)
		resp, err := http.DefaultClient.Do(req)
		must(t, err)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST /admin/faults %s: %s", body, resp.Status)
		}
	}
	registerOne := func(ip string) (*clb.BatchRegisterTargetsResponse, error) {
		req := clb.NewBatchRegisterTargetsRequest()
		req.LoadBalancerId = &lbID
		req.Targets = []*clb.BatchTarget{{ListenerId: &listenerID, EniIp: &ip, Port: ptr(int64(8080))}}
		return c.BatchRegisterTargets(req)
	}

	// An error rate of 1 on one action.
	faults(`{"action":"DescribeQuota","errorRate":1,"code":"InternalError"}`)
	_, err := c.DescribeQuota(nil)
	wantCode(t, err, cloud.CodeInternalError)
	if _, err := c.DescribeLoadBalancers(nil); err != nil {
		t.Errorf("an action without the fault failed: %v", err)
	}

	// The next 2 calls of an action fail with the code given.
	faults(`{"failNext":{"action":"BatchRegisterTargets","count":2,"code":"RequestLimitExceeded"}}`)
	for range 2 {
		_, err := registerOne("10.0.0.1")
		wantCode(t, err, cloud.CodeRequestLimitExceeded)
	}
	resp, err := registerOne("10.0.0.1")
	must(t, err)
	waitTask(t, c, *resp.Response.RequestId)

	// Partial failure: the listener is in FailListenerIdSet.
	faults(`{"partialFailureRate":1}`)
	resp, err = registerOne("10.0.0.2")
	must(t, err)
	if failed := strs(resp.Response.FailListenerIdSet); len(failed) != 1 || failed[0] != listenerID {
		t.Errorf("FailListenerIdSet %v, want [%s]", failed, listenerID)
	}
	waitTask(t, c, *resp.Response.RequestId)

	// Task failure: DescribeTaskStatus says 1 and nothing changes.
	faults(`{"partialFailureRate":0,"taskFailureRate":1}`)
	resp, err = registerOne("10.0.0.3")
	must(t, err)
	eventually(t, 5*time.Second, "the task to fail", func() (bool, string) {
		req := clb.NewDescribeTaskStatusRequest()
		req.TaskId = resp.Response.RequestId
		st, err := c.DescribeTaskStatus(req)
		must(t, err)
		return *st.Response.Status == 1, "status " + jsonOf(st.Response.Status)
	})

	// Latency.
	faults(`{"action":"DescribeLoadBalancers","latencyMs":150}`)
	began := time.Now()
	_, err = c.DescribeLoadBalancers(nil)
	must(t, err)
	if took := time.Since(began); took < 150*time.Millisecond {
		t.Errorf("DescribeLoadBalancers took %s with 150ms latency injected", took)
	}

	var settings []FaultSettings
	if code := adminDo(t, addr, http.MethodGet, "/admin/faults", nil, &settings); code != http.StatusOK || len(settings) != 5 {
		t.Errorf("GET /admin/faults: %d, %d settings, want 5", code, len(settings))
	}

	// DELETE clears everything.
	if code := adminDo(t, addr, http.MethodDelete, "/admin/faults", nil, nil); code != http.StatusNoContent {
		t.Fatalf("DELETE /admin/faults: %d", code)
	}
	_, err = c.DescribeQuota(nil)
	must(t, err)
	resp, err = registerOne("10.0.0.4")
	must(t, err)
	waitTask(t, c, *resp.Response.RequestId)
	dt := clb.NewDescribeTargetsRequest()
	dt.LoadBalancerId = &lbID
	targets, err := c.DescribeTargets(dt)
	must(t, err)
	var ips []string
	for _, tg := range targets.Response.Listeners[0].Targets {
		ips = append(ips, *tg.PrivateIpAddresses[0])
	}
	if want := []string{"10.0.0.1", "10.0.0.4"}; !reflect.DeepEqual(ips, want) {
		t.Errorf("targets %v, want %v: the partly and the wholly failed registrations must not have applied", ips, want)
	}

	// Calls that failed are logged with their code.
	var records []CallRecord
	adminDo(t, addr, http.MethodGet, "/admin/calls?action=BatchRegisterTargets", nil, &records)
	var codes []string
	for _, r := range records {
		codes = append(codes, r.ErrorCode+strings.Join(r.FailedListenerIDs, ","))
	}
	if want := []string{"RequestLimitExceeded", "RequestLimitExceeded", "", listenerID, "", ""}; !reflect.DeepEqual(codes, want) {
		t.Errorf("BatchRegisterTargets outcomes in the call log %q, want %q", codes, want)
	}
}

func TestFaultSettingsAreChecked(t *testing.T) {
	_, addr := start(t, nil)
	for _, body := range []string{`{"errorRate":2}`, `{"latencyMs":-1}`, `{"errorrate":0.5,"bogus":1}`, `{`} {
		req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/admin/faults", strings.NewReader(body))
		must(t, err)
		resp, err := http.DefaultClient.Do(req)
		must(t, err)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("POST /admin/faults %s: %s, want 400", body, resp.Status)
		}
	}
}

func TestAdminState(t *testing.T) {
	srv, addr := start(t, func(c *Config) { c.TaskDuration = 0 })
	c := newClient(t, addr, testID, testKey)
	lb := mustCreateLB(t, c, "state")
	listenerID := mustCreateListener(t, c, *lb.LoadBalancerId, "UDP", 53, nil)
	register(t, c, *lb.LoadBalancerId, listenerID, map[string]int64{"10.0.0.1:53": 7})

	var state fake.State
	if code := adminDo(t, addr, http.MethodGet, "/admin/state", nil, &state); code != http.StatusOK {
		t.Fatalf("GET /admin/state: %d", code)
	}
	if want := srv.Cloud().Snapshot(); !reflect.DeepEqual(state, want) {
		t.Errorf("GET /admin/state:\n%+v\nwant the snapshot:\n%+v", state, want)
	}
	var dp []ForwarderStatus
	if code := adminDo(t, addr, http.MethodGet, "/admin/dataplane", nil, &dp); code != http.StatusOK || len(dp) != 0 {
		t.Errorf("GET /admin/dataplane with the data plane off: %d %v", code, dp)
	}
	if code := adminDo(t, addr, http.MethodDelete, "/admin/calls", nil, nil); code != http.StatusNoContent || srv.Cloud().CountCalls() != 0 {
		t.Errorf("DELETE /admin/calls: %d, %d calls left", code, srv.Cloud().CountCalls())
	}
	if code := adminDo(t, addr, http.MethodPost, "/admin/health", HealthSetting{LoadBalancerID: "lb-nope"}, nil); code != http.StatusNotFound {
		t.Errorf("POST /admin/health for an unknown target: %d, want 404", code)
	}
}

func TestAdminIsLoopbackOnly(t *testing.T) {
	srv := newServer(t, nil)
	for remote, want := range map[string]int{"10.1.2.3:5555": http.StatusForbidden, "127.0.0.1:5555": http.StatusOK, "[::1]:5555": http.StatusOK} {
		req := httptest.NewRequest(http.MethodGet, "/admin/healthz", nil)
		req.RemoteAddr = remote
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("admin request from %s: %d, want %d", remote, rec.Code, want)
		}
	}
}
