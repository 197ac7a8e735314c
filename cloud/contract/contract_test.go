// Package contract_test holds the contract of cloud.Interface as cases that
// every implementation must pass: cloud/fake in memory, which the
// controller's unit tests use, and cloud/tencent over the official SDK
// against cloud/emulator on the wire, which production code is. Both runs
// assert the same concrete values, so a case that passes on one and fails on
// the other is a disagreement between the model and the adapter.
//
// Each case gets a fresh account and the cloud.Interface in front of it; the
// account (*fake.Cloud) is the back door for what the interface cannot do:
// a CLB someone else made, a health verdict, an injected fault.
//
// What the contract promises beyond the doc comments of cloud.go:
//
//   - DescribeLoadBalancers of an unknown ID returns either no CLB or a
//     NotFound error; the controller accepts both.
//   - A write returns once its change is visible to the next read.
//   - A nil map or slice and an empty one are the same (the fake reports an
//     untagged CLB's Tags as nil, the adapter as empty).
//   - Transient errors may be retried inside the implementation: a call
//     that meets one either succeeds or returns a KindTransient error. The
//     fake never retries; the adapter retries throttling and busy CLBs, and
//     repeats no create after an InternalError.
//   - Extensive parameters that cannot be sent fail the same way in both,
//     with the same codes; the adapter refuses them before any call, the
//     fake in a logged call that creates nothing.
//   - A batch failing for some listeners changed the others. For
//     RegisterBackends and DeregisterBackends the error is a
//     *cloud.PartialFailure naming the failed ones in the batch's order;
//     ModifyBackendWeights fails as a whole with a transient
//     FailedOperation, since BatchModifyTargetWeight cannot name them.
package contract_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"clb-direct/cloud"
	"clb-direct/cloud/emulator"
	"clb-direct/cloud/fake"
	"clb-direct/cloud/tencent"
)

// taskDuration is how long every asynchronous write runs, in both runs, so
// that every write really waits for its task.
const taskDuration = 20 * time.Millisecond

// contractCase is one case of the contract. opts configure its account on
// top of the harness's (task duration, no rate limit, health checking off).
type contractCase struct {
	name string
	opts []fake.Option
	run  func(t *testing.T, c cloud.Interface, account *fake.Cloud)
}

// cases is the contract.
var cases = []contractCase{
	{name: "CreateLoadBalancer/ready with VIP, ClientToken returns the same CLB", run: testCreateLoadBalancer},
	{name: "CreateLoadBalancer/failed task leaves nothing and frees the token", run: testCreateLoadBalancerTaskFailure},
	{name: "CreateLoadBalancer/extensive parameters set the bandwidth", run: testExtensiveParameters},
	{name: "CreateLoadBalancer/refused extensive parameters create nothing", run: testExtensiveParametersRefused},
	{name: "ModifyLoadBalancerAttributes/changes the bandwidth", run: testModifyLoadBalancerAttributes},
	{name: "DescribeLoadBalancers/by IDs and by all tags", run: testDescribeLoadBalancers},
	{name: "DescribeLoadBalancers/unknown ID", run: testDescribeUnknownLoadBalancer},
	{name: "DescribeLoadBalancers/pages through 120", run: testDescribeLoadBalancersPages},
	{name: "CreateListener/TCP and UDP share a port, a duplicate is refused", run: testCreateListenerPorts},
	{name: "DescribeListeners/reports the spec as created with the defaults", run: testDescribeListeners},
	{name: "ModifyListener/changes health check, session and scheduler", run: testModifyListener},
	{name: "Backends/register, re-register, re-weight, deregister", run: testBackends},
	{name: "Backends/refused batches change nothing", run: testBackendsRefused},
	{name: "DescribeBackendHealth/reports the account's verdicts", run: testBackendHealth},
	{name: "DescribeQuota/defaults", run: testQuotaDefaults},
	{
		name: "Quota/listeners and backends",
		opts: []fake.Option{fake.WithLimits(fake.Limits{ListenersPerLoadBalancer: 2, BackendsPerListener: 3})},
		run:  testQuotaExceeded,
	},
	{name: "DeleteListener/removes its backends", run: testDeleteListener},
	{name: "DeleteLoadBalancer/then everything is NotFound", run: testDeleteLoadBalancer},
	{name: "NotFound/unknown CLB and listener", run: testNotFound},
	{name: "Faults/partial failure names the failed listeners", run: testPartialFailure},
	{name: "Faults/every listener failing", run: testPartialFailureOfAll},
	{name: "Faults/throttled once: retried inside or transient", run: testThrottledOnce},
	{name: "Faults/internal error on a create is not retried", run: testInternalErrorOnCreate},
}

// TestContractFake runs the contract against cloud/fake directly.
func TestContractFake(t *testing.T) {
	t.Parallel()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			account := fake.New(append([]fake.Option{fake.WithTaskDuration(taskDuration)}, tc.opts...)...)
			tc.run(t, account, account)
		})
	}
}

// Credentials the adapter signs with and the emulator checks.
const (
	secretID  = "AKIDcontract0123456789"
	secretKey = "contract-secret-key-0123456789"
	region    = "ap-guangzhou"
)

// TestContractTencentOverEmulator runs the contract against cloud/tencent,
// over HTTP with the official SDK, against an emulator in front of a fresh
// account per case.
func TestContractTencentOverEmulator(t *testing.T) {
	t.Parallel()
	// A credentials file rather than the environment: t.Setenv rules out
	// parallel subtests.
	credentials := filepath.Join(t.TempDir(), "credentials.json")
	data, err := json.Marshal(map[string]string{"secretId": secretID, "secretKey": secretKey})
	must(t, err)
	must(t, os.WriteFile(credentials, data, 0o600))

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv, err := emulator.New(emulator.Config{
				SecretID: secretID, SecretKey: secretKey, Region: region,
				TaskDuration: taskDuration,
				FakeOptions:  tc.opts,
			})
			must(t, err)
			t.Cleanup(func() {
				if err := srv.Close(); err != nil {
					t.Errorf("closing the emulator: %v", err)
				}
			})
			addr, err := srv.Start("127.0.0.1:0")
			must(t, err)
			c, err := tencent.New(tencent.Options{
				Region: region, Endpoint: addr, Scheme: "http",
				CredentialsFile: credentials,
				RateLimit:       -1,
				Timeout:         5 * time.Second,
				Retry: tencent.RetryPolicy{
					Throttled:   tencent.Backoff{Initial: time.Millisecond, Max: 4 * time.Millisecond, Attempts: 3},
					InOperating: tencent.Backoff{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond, Attempts: 6},
					Network:     tencent.Backoff{Initial: time.Millisecond, Max: 4 * time.Millisecond, Attempts: 3},
				},
				Poll: tencent.PollPolicy{Initial: 2 * time.Millisecond, Max: 10 * time.Millisecond, Factor: 2},
			})
			must(t, err)
			tc.run(t, c, srv.Cloud())
		})
	}
}

// --- load balancers ---

func ownershipTags(cluster, uid string) map[string]string {
	return map[string]string{cloud.TagCreatedBy: cloud.CreatedByValue, cloud.TagClusterID: cluster, cloud.TagServiceUUID: uid}
}

func testCreateLoadBalancer(t *testing.T, c cloud.Interface, account *fake.Cloud) {
	ctx := t.Context()
	tags := ownershipTags("cls-1", "uid-1")
	spec := cloud.LoadBalancerSpec{Name: "k8s_cls-1_ns_web", Tags: tags, ClientToken: "token-web"}
	lb, err := c.CreateLoadBalancer(ctx, spec)
	must(t, err)

	stored := loadBalancerState(t, account, lb.ID)
	if len(stored.VIPs) != 1 || stored.VIPs[0] == "" {
		t.Fatalf("the account holds CLB %s with VIPs %v, want one", lb.ID, stored.VIPs)
	}
	want := cloud.LoadBalancer{ID: stored.ID, Name: "k8s_cls-1_ns_web", VIPs: stored.VIPs, Tags: tags}
	diff(t, "created CLB", want, lb)
	if !lb.OwnedBy("cls-1", "uid-1") {
		t.Errorf("created CLB %+v is not owned by its tags", lb)
	}

	// The same token again: the same CLB, nothing new.
	again, err := c.CreateLoadBalancer(ctx, spec)
	must(t, err)
	diff(t, "CLB of the repeated create", want, again)
	if n := len(account.Snapshot().LoadBalancers); n != 1 {
		t.Fatalf("%d CLBs after creating twice with one token, want 1", n)
	}

	// Another token makes another CLB; a subnet makes it internal.
	internal, err := c.CreateLoadBalancer(ctx, cloud.LoadBalancerSpec{Name: "internal", SubnetID: "subnet-1", ClientToken: "token-internal"})
	must(t, err)
	stored = loadBalancerState(t, account, internal.ID)
	diff(t, "internal CLB", cloud.LoadBalancer{ID: stored.ID, Name: "internal", SubnetID: "subnet-1", VIPs: stored.VIPs}, internal)
	if internal.ID == lb.ID || len(internal.VIPs) != 1 || internal.VIPs[0] == lb.VIPs[0] {
		t.Errorf("second CLB %+v is not distinct from %+v", internal, lb)
	}

	got, err := c.DescribeLoadBalancers(ctx, cloud.LoadBalancerQuery{IDs: []string{lb.ID}})
	must(t, err)
	diff(t, "described CLB", []cloud.LoadBalancer{want}, got)
}

func testCreateLoadBalancerTaskFailure(t *testing.T, c cloud.Interface, account *fake.Cloud) {
	ctx := t.Context()
	spec := cloud.LoadBalancerSpec{Name: "web", Tags: ownershipTags("cls-1", "uid-1"), ClientToken: "token-web"}
	account.SetTaskFailureRate(1)
	_, err := c.CreateLoadBalancer(ctx, spec)
	wantError(t, err, cloud.KindTransient, cloud.CodeFailedOperation)
	if s := account.Snapshot(); len(s.LoadBalancers) != 0 {
		t.Fatalf("a failed creation left %+v", s.LoadBalancers)
	}
	lbs, err := c.DescribeLoadBalancers(ctx, cloud.LoadBalancerQuery{Tags: spec.Tags})
	must(t, err)
	diff(t, "CLBs after a failed creation", []cloud.LoadBalancer{}, lbs)

	account.ClearFaults()
	lb, err := c.CreateLoadBalancer(ctx, spec)
	must(t, err)
	if len(lb.VIPs) != 1 || loadBalancerState(t, account, lb.ID).ID != lb.ID {
		t.Fatalf("the retry with the failed creation's token made %+v", lb)
	}
}

// extensive parses an annotation's JSON as the controller does, so that
// numbers arrive as float64.
func extensive(t *testing.T, annotation string) map[string]any {
	t.Helper()
	var params map[string]any
	must(t, json.Unmarshal([]byte(annotation), &params))
	return params
}

func testExtensiveParameters(t *testing.T, c cloud.Interface, account *fake.Cloud) {
	ctx := t.Context()
	tags := ownershipTags("cls-1", "uid-1")
	lb, err := c.CreateLoadBalancer(ctx, cloud.LoadBalancerSpec{
		Name: "web", Tags: tags, ClientToken: "token-web",
		ExtensiveParameters: extensive(t, `{
			"InternetAccessible": {"InternetChargeType": "TRAFFIC_POSTPAID_BY_HOUR", "InternetMaxBandwidthOut": 30},
			"ZoneId": "ap-guangzhou-3", "AddressIPVersion": "IPV4", "ProjectId": 0}`),
	})
	must(t, err)
	stored := loadBalancerState(t, account, lb.ID)
	want := cloud.LoadBalancer{ID: stored.ID, Name: "web", VIPs: stored.VIPs, Tags: tags, InternetMaxBandwidthOut: 30}
	diff(t, "created CLB", want, lb)
	got, err := c.DescribeLoadBalancers(ctx, cloud.LoadBalancerQuery{IDs: []string{lb.ID}})
	must(t, err)
	diff(t, "described CLB", []cloud.LoadBalancer{want}, got)

	// The other parameters TKE users set are taken; a bandwidth package
	// CLB reports its cap too.
	pkg, err := c.CreateLoadBalancer(ctx, cloud.LoadBalancerSpec{
		Name: "pkg", ClientToken: "token-pkg",
		ExtensiveParameters: extensive(t, `{
			"InternetAccessible": {"InternetChargeType": "BANDWIDTH_PACKAGE", "InternetMaxBandwidthOut": 2048},
			"BandwidthPackageId": "bwp-1", "VipIsp": "CMCC",
			"MasterZoneId": "ap-guangzhou-3", "SlaveZoneId": "ap-guangzhou-4"}`),
	})
	must(t, err)
	if pkg.InternetMaxBandwidthOut != 2048 {
		t.Errorf("CLB with a bandwidth package: InternetMaxBandwidthOut %d, want 2048", pkg.InternetMaxBandwidthOut)
	}

	// An internal CLB has no internet bandwidth, whatever is asked.
	internal, err := c.CreateLoadBalancer(ctx, cloud.LoadBalancerSpec{
		Name: "internal", SubnetID: "subnet-1", ClientToken: "token-internal",
		ExtensiveParameters: extensive(t, `{"InternetAccessible": {"InternetMaxBandwidthOut": 10}}`),
	})
	must(t, err)
	if internal.InternetMaxBandwidthOut != 0 || loadBalancerState(t, account, internal.ID).InternetMaxBandwidthOut != 0 {
		t.Errorf("internal CLB %+v has an internet bandwidth", internal)
	}
}

func testExtensiveParametersRefused(t *testing.T, c cloud.Interface, account *fake.Cloud) {
	ctx := t.Context()
	for _, tc := range []struct {
		name, params string
		code         string
	}{
		// What the spec and the cluster decide cannot be overridden.
		{"VpcId", `{"VpcId": "vpc-other"}`, cloud.CodeInvalidParameter},
		{"LoadBalancerType", `{"LoadBalancerType": "INTERNAL", "ZoneId": "ap-guangzhou-3"}`, cloud.CodeInvalidParameter},
		{"SubnetId", `{"SubnetId": "subnet-other"}`, cloud.CodeInvalidParameter},
		{"Tags", `{"Tags": [{"TagKey": "tke-clusterId", "TagValue": "cls-other"}]}`, cloud.CodeInvalidParameter},
		{"ClientToken", `{"ClientToken": "other"}`, cloud.CodeInvalidParameter},
		{"LoadBalancerName", `{"LoadBalancerName": "other"}`, cloud.CodeInvalidParameter},
		{"Forward", `{"Forward": 0}`, cloud.CodeInvalidParameter},
		{"Number", `{"Number": 2}`, cloud.CodeInvalidParameter},
		// Names the API does not have, at the top or inside a parameter;
		// names are exact, so a reserved one cannot slip in another case.
		{"unknown", `{"Bandwidth": 10}`, cloud.CodeUnknownParameter},
		{"reserved in another case", `{"vpcId": "vpc-other"}`, cloud.CodeUnknownParameter},
		{"unknown inside", `{"InternetAccessible": {"MaxBandwidthOut": 10}}`, cloud.CodeUnknownParameter},
		{"wrong type", `{"InternetAccessible": {"InternetMaxBandwidthOut": "10"}}`, cloud.CodeInvalidParameter},
		{"bandwidth out of range", `{"InternetAccessible": {"InternetMaxBandwidthOut": 4096}}`, cloud.CodeInvalidParameterVal},
		{"unknown charge type", `{"InternetAccessible": {"InternetChargeType": "FREE"}}`, cloud.CodeInvalidParameterVal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.CreateLoadBalancer(ctx, cloud.LoadBalancerSpec{
				Name: "web", Tags: ownershipTags("cls-1", "uid-1"), ClientToken: "token-web",
				ExtensiveParameters: extensive(t, tc.params),
			})
			wantError(t, err, cloud.KindTerminal, tc.code)
			if s := account.Snapshot(); len(s.LoadBalancers) != 0 {
				t.Fatalf("a refused creation left %+v", s.LoadBalancers)
			}
		})
	}
}

func testModifyLoadBalancerAttributes(t *testing.T, c cloud.Interface, account *fake.Cloud) {
	ctx := t.Context()
	lb, err := c.CreateLoadBalancer(ctx, cloud.LoadBalancerSpec{
		Name: "web", ClientToken: "token-web",
		ExtensiveParameters: extensive(t, `{"InternetAccessible": {"InternetMaxBandwidthOut": 10}}`),
	})
	must(t, err)
	bandwidth := func() int64 {
		t.Helper()
		got, err := c.DescribeLoadBalancers(ctx, cloud.LoadBalancerQuery{IDs: []string{lb.ID}})
		must(t, err)
		if len(got) != 1 {
			t.Fatalf("DescribeLoadBalancers of %s = %+v", lb.ID, got)
		}
		return got[0].InternetMaxBandwidthOut
	}

	account.ResetCalls()
	must(t, c.ModifyLoadBalancerAttributes(ctx, lb.ID, cloud.LoadBalancerAttributes{InternetMaxBandwidthOut: new(int64(50))}))
	if got := bandwidth(); got != 50 {
		t.Errorf("bandwidth %d after setting 50", got)
	}
	if n := account.CountCalls("ModifyLoadBalancerAttributes"); n != 1 {
		t.Errorf("%d ModifyLoadBalancerAttributes calls, want 1", n)
	}
	// Nothing set leaves everything as it is.
	must(t, c.ModifyLoadBalancerAttributes(ctx, lb.ID, cloud.LoadBalancerAttributes{}))
	if got := bandwidth(); got != 50 {
		t.Errorf("bandwidth %d after setting nothing, want 50", got)
	}

	err = c.ModifyLoadBalancerAttributes(ctx, lb.ID, cloud.LoadBalancerAttributes{InternetMaxBandwidthOut: new(int64(cloud.MaxInternetBandwidthOut + 1))})
	wantError(t, err, cloud.KindTerminal, cloud.CodeInvalidParameterVal)
	err = c.ModifyLoadBalancerAttributes(ctx, lb.ID, cloud.LoadBalancerAttributes{InternetMaxBandwidthOut: new(int64(-1))})
	wantError(t, err, cloud.KindTerminal, cloud.CodeInvalidParameterVal)
	if got := bandwidth(); got != 50 {
		t.Errorf("bandwidth %d after refused changes, want 50", got)
	}

	internal, err := c.CreateLoadBalancer(ctx, cloud.LoadBalancerSpec{Name: "internal", SubnetID: "subnet-1", ClientToken: "token-internal"})
	must(t, err)
	err = c.ModifyLoadBalancerAttributes(ctx, internal.ID, cloud.LoadBalancerAttributes{InternetMaxBandwidthOut: new(int64(10))})
	wantError(t, err, cloud.KindTerminal, cloud.CodeInvalidParameterVal)
}

func testDescribeLoadBalancers(t *testing.T, c cloud.Interface, account *fake.Cloud) {
	ctx := t.Context()
	tags := ownershipTags("cls-1", "uid-1")
	ours, err := c.CreateLoadBalancer(ctx, cloud.LoadBalancerSpec{Name: "ours", Tags: tags, ClientToken: "t1"})
	must(t, err)
	// Someone else's CLBs: another cluster's, one with only some of our
	// tags, one without tags, and one with ours and more.
	otherCluster := account.AddLoadBalancer(cloud.LoadBalancer{Name: "other", Tags: ownershipTags("cls-2", "uid-1")})
	account.AddLoadBalancer(cloud.LoadBalancer{Name: "partial", Tags: map[string]string{cloud.TagCreatedBy: cloud.CreatedByValue, cloud.TagClusterID: "cls-1"}})
	untagged := account.AddLoadBalancer(cloud.LoadBalancer{Name: "untagged"})
	superset := account.AddLoadBalancer(cloud.LoadBalancer{Name: "superset", Tags: merge(tags, map[string]string{"team": "web"})})

	got, err := c.DescribeLoadBalancers(ctx, cloud.LoadBalancerQuery{Tags: tags})
	must(t, err)
	diff(t, "CLBs with our tags", []cloud.LoadBalancer{ours, superset}, sortedByID(got))

	got, err = c.DescribeLoadBalancers(ctx, cloud.LoadBalancerQuery{Tags: map[string]string{cloud.TagClusterID: "cls-2"}})
	must(t, err)
	diff(t, "CLBs of cluster cls-2", []cloud.LoadBalancer{otherCluster}, got)

	got, err = c.DescribeLoadBalancers(ctx, cloud.LoadBalancerQuery{Tags: ownershipTags("cls-1", "uid-nobody")})
	must(t, err)
	diff(t, "CLBs of a Service without one", []cloud.LoadBalancer{}, got)

	// IDs select regardless of tags.
	got, err = c.DescribeLoadBalancers(ctx, cloud.LoadBalancerQuery{IDs: []string{untagged.ID, ours.ID}})
	must(t, err)
	diff(t, "CLBs by ID", sortedByID([]cloud.LoadBalancer{ours, untagged}), sortedByID(got))
}

func testDescribeUnknownLoadBalancer(t *testing.T, c cloud.Interface, account *fake.Cloud) {
	ctx := t.Context()
	known := account.AddLoadBalancer(cloud.LoadBalancer{Name: "known"})
	// The controller's findLoadBalancer takes either answer.
	got, err := c.DescribeLoadBalancers(ctx, cloud.LoadBalancerQuery{IDs: []string{"lb-unknown"}})
	if err != nil && !cloud.IsNotFound(err) {
		t.Fatalf("DescribeLoadBalancers of an unknown ID: %v, want no CLB or NotFound", err)
	}
	if err == nil {
		diff(t, "CLBs of an unknown ID", []cloud.LoadBalancer{}, got)
	}
	got, err = c.DescribeLoadBalancers(ctx, cloud.LoadBalancerQuery{IDs: []string{"lb-unknown", known.ID}})
	if err != nil && !cloud.IsNotFound(err) {
		t.Fatalf("DescribeLoadBalancers of an unknown and a known ID: %v, want the known CLB or NotFound", err)
	}
	if err == nil {
		diff(t, "CLBs of an unknown and a known ID", []cloud.LoadBalancer{known}, got)
	}
}

func testDescribeLoadBalancersPages(t *testing.T, c cloud.Interface, account *fake.Cloud) {
	ctx := t.Context()
	const n = 120 // more than cloud.MaxDescribeLimit
	tags := map[string]string{cloud.TagClusterID: "cls-page"}
	var want []cloud.LoadBalancer
	var ids []string
	for i := range n {
		lb := account.AddLoadBalancer(cloud.LoadBalancer{Name: fmt.Sprintf("page-%03d", i), Tags: tags})
		want = append(want, lb)
		ids = append(ids, lb.ID)
		if i%20 == 0 {
			account.AddLoadBalancer(cloud.LoadBalancer{Name: fmt.Sprintf("other-%03d", i), Tags: map[string]string{cloud.TagClusterID: "cls-other"}})
		}
	}
	want = sortedByID(want)

	account.ResetCalls()
	got, err := c.DescribeLoadBalancers(ctx, cloud.LoadBalancerQuery{Tags: tags})
	must(t, err)
	diff(t, "CLBs by tag", want, sortedByID(got))
	if calls := account.CountCalls("DescribeLoadBalancers"); calls < 2 {
		t.Errorf("%d CLBs in %d DescribeLoadBalancers calls: the pages of at most %d were not all read",
			n, calls, cloud.MaxDescribeLimit)
	}

	got, err = c.DescribeLoadBalancers(ctx, cloud.LoadBalancerQuery{IDs: ids})
	must(t, err)
	diff(t, "CLBs by ID", want, sortedByID(got))
}

// --- listeners ---

// defaultHealthCheck is the health check a listener gets when its spec has
// none, and what fills the zero fields of an enabled one.
var defaultHealthCheck = cloud.HealthCheck{
	Enabled: true, IntervalSeconds: 5, TimeoutSeconds: 2, HealthyThreshold: 3, UnhealthyThreshold: 3,
}

func newLoadBalancer(t *testing.T, c cloud.Interface) cloud.LoadBalancer {
	t.Helper()
	lb, err := c.CreateLoadBalancer(t.Context(), cloud.LoadBalancerSpec{Name: "web", Tags: ownershipTags("cls-1", "uid-1"), ClientToken: "token-web"})
	must(t, err)
	return lb
}

func tcp(port int32) cloud.ListenerSpec {
	return cloud.ListenerSpec{Name: fmt.Sprintf("uid-1-tcp-%d", port), Protocol: cloud.ProtocolTCP, Port: port,
		HealthCheck: &cloud.HealthCheck{Enabled: true, IntervalSeconds: 5, TimeoutSeconds: 2, HealthyThreshold: 3, UnhealthyThreshold: 3}}
}

func udp(port int32) cloud.ListenerSpec {
	s := tcp(port)
	s.Name, s.Protocol = fmt.Sprintf("uid-1-udp-%d", port), cloud.ProtocolUDP
	return s
}

// withDefaults is what a listener created from spec holds: its spec with the
// CLB's defaults for what it leaves empty. A disabled check keeps the
// default settings, for when it is enabled again.
func withDefaults(id string, spec cloud.ListenerSpec) cloud.Listener {
	hc := defaultHealthCheck
	if spec.HealthCheck != nil {
		hc = *spec.HealthCheck
		if !hc.Enabled {
			hc = defaultHealthCheck
			hc.Enabled = false
		}
		for _, f := range []struct{ v, def *int64 }{
			{&hc.IntervalSeconds, &defaultHealthCheck.IntervalSeconds}, {&hc.TimeoutSeconds, &defaultHealthCheck.TimeoutSeconds},
			{&hc.HealthyThreshold, &defaultHealthCheck.HealthyThreshold}, {&hc.UnhealthyThreshold, &defaultHealthCheck.UnhealthyThreshold},
		} {
			if *f.v == 0 {
				*f.v = *f.def
			}
		}
	}
	spec.HealthCheck = &hc
	if spec.Scheduler == "" {
		spec.Scheduler = "WRR"
	}
	return cloud.Listener{ID: id, ListenerSpec: spec}
}

func createListener(t *testing.T, c cloud.Interface, lbID string, spec cloud.ListenerSpec) cloud.Listener {
	t.Helper()
	l, err := c.CreateListener(t.Context(), lbID, spec)
	must(t, err)
	if l.ID == "" {
		t.Fatalf("CreateListener(%+v) returned no ID", spec)
	}
	// The listener as it exists, which is what the caller records as
	// observed.
	diff(t, "created listener", withDefaults(l.ID, spec), l)
	return l
}

func testCreateListenerPorts(t *testing.T, c cloud.Interface, _ *fake.Cloud) {
	ctx := t.Context()
	lb := newLoadBalancer(t, c)
	l1 := createListener(t, c, lb.ID, tcp(80))
	l2 := createListener(t, c, lb.ID, udp(80))
	if l1.ID == l2.ID {
		t.Fatalf("TCP and UDP listeners on port 80 share ID %s", l1.ID)
	}
	_, err := c.CreateListener(ctx, lb.ID, tcp(80))
	wantError(t, err, cloud.KindTerminal, cloud.CodePortCheckFailed)
	other := tcp(80)
	other.Name = "someone-else"
	_, err = c.CreateListener(ctx, lb.ID, other)
	wantError(t, err, cloud.KindTerminal, cloud.CodePortCheckFailed)

	got, err := c.DescribeListeners(ctx, lb.ID)
	must(t, err)
	diff(t, "listeners", []cloud.Listener{l1, l2}, got)
}

func testDescribeListeners(t *testing.T, c cloud.Interface, _ *fake.Cloud) {
	ctx := t.Context()
	lb := newLoadBalancer(t, c)
	specs := []cloud.ListenerSpec{
		{
			Name: "uid-1-tcp-80", Protocol: cloud.ProtocolTCP, Port: 80,
			HealthCheck: &cloud.HealthCheck{
				Enabled: true, IntervalSeconds: 10, TimeoutSeconds: 4, HealthyThreshold: 5, UnhealthyThreshold: 2,
				CheckType: "HTTP", HTTPCode: 31, HTTPPath: "/healthz", HTTPDomain: "web.example.com", HTTPMethod: "HEAD",
			},
			SessionExpireSeconds: 60,
			Scheduler:            "LEAST_CONN",
		},
		// No name, health check or scheduler: the CLB's defaults.
		{Protocol: cloud.ProtocolUDP, Port: 53},
		// An enabled check that names nothing: the default intervals.
		{Name: "uid-1-tcp-443", Protocol: cloud.ProtocolTCP, Port: 443, HealthCheck: &cloud.HealthCheck{Enabled: true, CheckType: "TCP"}},
		// A disabled check: what it sets besides is not sent.
		{Name: "uid-1-udp-9000", Protocol: cloud.ProtocolUDP, Port: 9000, HealthCheck: &cloud.HealthCheck{IntervalSeconds: 30}, Scheduler: "WRR"},
	}
	var want []cloud.Listener
	for _, spec := range specs {
		want = append(want, createListener(t, c, lb.ID, spec))
	}
	got, err := c.DescribeListeners(ctx, lb.ID)
	must(t, err)
	diff(t, "listeners", want, got)
	// Spelled out, so that withDefaults cannot hide a wrong default.
	diff(t, "listener without settings", cloud.Listener{ID: got[1].ID, ListenerSpec: cloud.ListenerSpec{
		Protocol: cloud.ProtocolUDP, Port: 53, HealthCheck: &defaultHealthCheck, Scheduler: "WRR",
	}}, got[1])
	diff(t, "listener with a disabled check", &cloud.HealthCheck{
		IntervalSeconds: 5, TimeoutSeconds: 2, HealthyThreshold: 3, UnhealthyThreshold: 3,
	}, got[3].HealthCheck)
}

func testModifyListener(t *testing.T, c cloud.Interface, account *fake.Cloud) {
	ctx := t.Context()
	lb := newLoadBalancer(t, c)
	l := createListener(t, c, lb.ID, tcp(80))
	other := createListener(t, c, lb.ID, tcp(81))
	check := func(what string, want cloud.Listener) {
		t.Helper()
		got, err := c.DescribeListeners(ctx, lb.ID)
		must(t, err)
		diff(t, "listeners after "+what, []cloud.Listener{want, other}, got)
	}

	// Everything ModifyListener changes, changed; name, protocol and port
	// are not its to change.
	spec := cloud.ListenerSpec{
		Name: "ignored", Protocol: cloud.ProtocolUDP, Port: 90,
		HealthCheck: &cloud.HealthCheck{
			Enabled: true, IntervalSeconds: 15, TimeoutSeconds: 5, HealthyThreshold: 2, UnhealthyThreshold: 4,
			CheckType: "HTTP", HTTPCode: 2, HTTPPath: "/ready", HTTPDomain: "web.example.com", HTTPMethod: "GET",
		},
		SessionExpireSeconds: 300,
		Scheduler:            "LEAST_CONN",
	}
	must(t, c.ModifyListener(ctx, lb.ID, l.ID, spec))
	want := l
	hc := *spec.HealthCheck
	want.HealthCheck = &hc
	want.SessionExpireSeconds, want.Scheduler = 300, "LEAST_CONN"
	check("the modification", want)

	// As in the API, a health check changes what it sets and keeps the
	// rest; no scheduler keeps the listener's; the session is always set.
	must(t, c.ModifyListener(ctx, lb.ID, l.ID, cloud.ListenerSpec{
		HealthCheck:          &cloud.HealthCheck{Enabled: true, IntervalSeconds: 30, CheckType: "TCP"},
		SessionExpireSeconds: 60,
	}))
	hc.IntervalSeconds, hc.CheckType = 30, "TCP"
	want.SessionExpireSeconds = 60
	check("a partial modification", want)

	// No health check keeps it; session 0 turns persistence off.
	must(t, c.ModifyListener(ctx, lb.ID, l.ID, cloud.ListenerSpec{}))
	want.SessionExpireSeconds = 0
	check("an empty modification", want)

	// Disabling the check keeps its settings for when it is enabled again.
	must(t, c.ModifyListener(ctx, lb.ID, l.ID, cloud.ListenerSpec{HealthCheck: &cloud.HealthCheck{IntervalSeconds: 10}}))
	hc.Enabled = false
	check("disabling the check", want)
	must(t, c.ModifyListener(ctx, lb.ID, l.ID, cloud.ListenerSpec{HealthCheck: &cloud.HealthCheck{Enabled: true}}))
	hc.Enabled = true
	check("enabling the check", want)

	// Values out of the CLB's ranges are refused and change nothing.
	before := account.Snapshot()
	for name, bad := range map[string]cloud.ListenerSpec{
		"interval":  {HealthCheck: &cloud.HealthCheck{Enabled: true, IntervalSeconds: 1}},
		"session":   {SessionExpireSeconds: 10},
		"scheduler": {Scheduler: "RR"},
	} {
		err := c.ModifyListener(ctx, lb.ID, l.ID, bad)
		if err == nil || cloud.KindOf(err) != cloud.KindTerminal {
			t.Errorf("modification with a bad %s: %v, want a Terminal error", name, err)
		}
	}
	if after := account.Snapshot(); !cmp.Equal(before, after, cmpopts.EquateEmpty()) {
		t.Errorf("refused modifications changed the account:\n%s", cmp.Diff(before, after, cmpopts.EquateEmpty()))
	}
	check("refused modifications", want)
}

// --- backends ---

func pod(ip string, port, weight int32) cloud.Backend {
	return cloud.Backend{IP: ip, Port: port, Weight: weight}
}

func on(listenerID string, bs ...cloud.Backend) []cloud.ListenerBackend {
	var out []cloud.ListenerBackend
	for _, b := range bs {
		out = append(out, cloud.ListenerBackend{ListenerID: listenerID, Backend: b})
	}
	return out
}

func describeBackends(t *testing.T, c cloud.Interface, lbID string) map[string][]cloud.Backend {
	t.Helper()
	got, err := c.DescribeBackends(t.Context(), lbID)
	must(t, err)
	return got
}

func testBackends(t *testing.T, c cloud.Interface, account *fake.Cloud) {
	ctx := t.Context()
	// The Node's instance has a private IP, which DescribeTargets reports
	// with it; the Node is still its instance ID.
	account.SetInstanceAddress("ins-node1", "192.168.0.1")
	lb := newLoadBalancer(t, c)
	l80 := createListener(t, c, lb.ID, tcp(80))
	l53 := createListener(t, c, lb.ID, udp(53))
	empty := createListener(t, c, lb.ID, tcp(8443))
	a, b := pod("10.0.0.1", 8080, 10), pod("10.0.0.2", 8080, 20)
	node := cloud.Backend{InstanceID: "ins-node1", Port: 30053, Weight: 50}
	dns := pod("10.0.0.1", 5353, 0)

	// Three backends on two listeners in one call, a Node among them.
	must(t, c.RegisterBackends(ctx, lb.ID, append(on(l80.ID, a, b), on(l53.ID, dns, node)...)))
	want := map[string][]cloud.Backend{l80.ID: {a, b}, l53.ID: {dns, node}, empty.ID: {}}
	diff(t, "backends after registering", want, describeBackends(t, c, lb.ID))

	// Registering again changes nothing, weights included.
	heavierA := a
	heavierA.Weight = 90
	must(t, c.RegisterBackends(ctx, lb.ID, append(on(l80.ID, heavierA, b), on(l53.ID, node)...)))
	diff(t, "backends after registering again", want, describeBackends(t, c, lb.ID))

	// Weights change with ModifyBackendWeights, on several listeners at once.
	lighterNode := node
	lighterNode.Weight = 0
	must(t, c.ModifyBackendWeights(ctx, lb.ID, append(on(l80.ID, heavierA), on(l53.ID, lighterNode)...)))
	want = map[string][]cloud.Backend{l80.ID: {heavierA, b}, l53.ID: {dns, lighterNode}, empty.ID: {}}
	diff(t, "backends after re-weighting", want, describeBackends(t, c, lb.ID))

	// Deregistering matches by IP (or instance) and port, whatever the
	// weight; a backend that is not there is no error.
	must(t, c.DeregisterBackends(ctx, lb.ID, append(on(l80.ID, a), on(l53.ID, node, pod("10.9.9.9", 53, 10))...)))
	want = map[string][]cloud.Backend{l80.ID: {b}, l53.ID: {dns}, empty.ID: {}}
	diff(t, "backends after deregistering", want, describeBackends(t, c, lb.ID))
	must(t, c.DeregisterBackends(ctx, lb.ID, on(l80.ID, a)))
	diff(t, "backends after deregistering an absent one", want, describeBackends(t, c, lb.ID))
}

func testBackendsRefused(t *testing.T, c cloud.Interface, account *fake.Cloud) {
	ctx := t.Context()
	lb := newLoadBalancer(t, c)
	l1 := createListener(t, c, lb.ID, tcp(80))
	l2 := createListener(t, c, lb.ID, tcp(81))
	l3 := createListener(t, c, lb.ID, tcp(82))
	a := pod("10.0.0.1", 8080, 10)
	must(t, c.RegisterBackends(ctx, lb.ID, on(l1.ID, a)))
	before := account.Snapshot()

	// Spread over three listeners, within the quota of each.
	var tooMany []cloud.ListenerBackend
	for i := range cloud.MaxBackendsPerBatch + 1 {
		tooMany = append(tooMany, on([]string{l1.ID, l2.ID, l3.ID}[i%3], pod(fmt.Sprintf("10.1.%d.%d", i/250, i%250+1), 8080, 10))...)
	}
	for name, call := range map[string]func() error{
		"register 501":   func() error { return c.RegisterBackends(ctx, lb.ID, tooMany) },
		"deregister 501": func() error { return c.DeregisterBackends(ctx, lb.ID, tooMany) },
		"re-weight 501":  func() error { return c.ModifyBackendWeights(ctx, lb.ID, tooMany) },
		"register weight": func() error {
			return c.RegisterBackends(ctx, lb.ID, on(l2.ID, pod("10.0.0.2", 8080, cloud.MaxWeight+1)))
		},
		"re-weight 101": func() error {
			return c.ModifyBackendWeights(ctx, lb.ID, on(l1.ID, pod("10.0.0.1", 8080, cloud.MaxWeight+1)))
		},
		"register none": func() error { return c.RegisterBackends(ctx, lb.ID, nil) },
		"re-weight absent": func() error {
			return c.ModifyBackendWeights(ctx, lb.ID, on(l2.ID, pod("10.0.0.1", 8080, 50)))
		},
	} {
		err := call()
		if err == nil || cloud.KindOf(err) != cloud.KindTerminal {
			t.Errorf("%s: %v, want a Terminal error", name, err)
		}
	}
	if after := account.Snapshot(); !cmp.Equal(before, after, cmpopts.EquateEmpty()) {
		t.Errorf("refused batches changed the account:\n%s", cmp.Diff(before, after, cmpopts.EquateEmpty()))
	}
	// The most a batch may hold is fine.
	must(t, c.RegisterBackends(ctx, lb.ID, tooMany[:cloud.MaxBackendsPerBatch]))
	got := describeBackends(t, c, lb.ID)
	if n1, n2, n3 := len(got[l1.ID]), len(got[l2.ID]), len(got[l3.ID]); n1 != 168 || n2 != 167 || n3 != 166 {
		t.Errorf("%d, %d, %d backends after a batch of %d, want 168 (with the one before), 167, 166",
			n1, n2, n3, cloud.MaxBackendsPerBatch)
	}
}

func testBackendHealth(t *testing.T, c cloud.Interface, account *fake.Cloud) {
	ctx := t.Context()
	lb := newLoadBalancer(t, c)
	l80 := createListener(t, c, lb.ID, tcp(80))
	l53 := createListener(t, c, lb.ID, udp(53))
	a, b := pod("10.0.0.1", 8080, 10), pod("10.0.0.2", 8080, 10)
	dns := pod("10.0.0.1", 5353, 10)
	must(t, c.RegisterBackends(ctx, lb.ID, append(on(l80.ID, a, b), on(l53.ID, dns)...)))

	if !account.SetBackendHealth(lb.ID, l80.ID, b.Key(), false, "") ||
		!account.SetBackendHealth(lb.ID, l53.ID, dns.Key(), false, "Timeout") {
		t.Fatal("SetBackendHealth found no such backend")
	}
	got, err := c.DescribeBackendHealth(ctx, []string{lb.ID})
	must(t, err)
	want := []cloud.BackendHealth{
		{LoadBalancerID: lb.ID, ListenerID: l80.ID, IP: "10.0.0.1", Port: 8080, Healthy: true, Detail: "Alive"},
		{LoadBalancerID: lb.ID, ListenerID: l80.ID, IP: "10.0.0.2", Port: 8080, Healthy: false, Detail: "Dead"},
		{LoadBalancerID: lb.ID, ListenerID: l53.ID, IP: "10.0.0.1", Port: 5353, Healthy: false, Detail: "Timeout"},
	}
	diff(t, "backend health", want, got)

	// Several CLBs at once; one without backends reports none.
	bare := account.AddLoadBalancer(cloud.LoadBalancer{Name: "bare"})
	got, err = c.DescribeBackendHealth(ctx, []string{bare.ID, lb.ID})
	must(t, err)
	diff(t, "backend health of two CLBs", want, got)
}

func testQuotaDefaults(t *testing.T, c cloud.Interface, _ *fake.Cloud) {
	q, err := c.DescribeQuota(t.Context())
	must(t, err)
	diff(t, "quota", cloud.Quota{ListenersPerLoadBalancer: cloud.DefaultListenersPerLoadBalancer, BackendsPerListener: cloud.DefaultBackendsPerListener}, q)
}

func testQuotaExceeded(t *testing.T, c cloud.Interface, account *fake.Cloud) {
	ctx := t.Context()
	q, err := c.DescribeQuota(ctx)
	must(t, err)
	diff(t, "quota", cloud.Quota{ListenersPerLoadBalancer: 2, BackendsPerListener: 3}, q)

	lb := newLoadBalancer(t, c)
	l := createListener(t, c, lb.ID, tcp(80))
	createListener(t, c, lb.ID, udp(80))
	_, err = c.CreateListener(ctx, lb.ID, tcp(81))
	wantError(t, err, cloud.KindQuota, cloud.CodeLimitExceeded)

	ps := []cloud.Backend{pod("10.0.0.1", 80, 10), pod("10.0.0.2", 80, 10), pod("10.0.0.3", 80, 10), pod("10.0.0.4", 80, 10)}
	must(t, c.RegisterBackends(ctx, lb.ID, on(l.ID, ps[:2]...)))
	before := account.Snapshot()
	err = c.RegisterBackends(ctx, lb.ID, on(l.ID, ps[1:]...))
	wantError(t, err, cloud.KindQuota, cloud.CodeLimitExceeded)
	if after := account.Snapshot(); !cmp.Equal(before, after, cmpopts.EquateEmpty()) {
		t.Errorf("refused registration changed the account:\n%s", cmp.Diff(before, after, cmpopts.EquateEmpty()))
	}
	// Backends already there do not count twice.
	must(t, c.RegisterBackends(ctx, lb.ID, on(l.ID, ps[:3]...)))
	diff(t, "backends at the quota", ps[:3], describeBackends(t, c, lb.ID)[l.ID])
}

func testDeleteListener(t *testing.T, c cloud.Interface, _ *fake.Cloud) {
	ctx := t.Context()
	lb := newLoadBalancer(t, c)
	gone := createListener(t, c, lb.ID, tcp(80))
	kept := createListener(t, c, lb.ID, tcp(81))
	a := pod("10.0.0.1", 8080, 10)
	must(t, c.RegisterBackends(ctx, lb.ID, append(on(gone.ID, a), on(kept.ID, a)...)))

	must(t, c.DeleteListener(ctx, lb.ID, gone.ID))
	got, err := c.DescribeListeners(ctx, lb.ID)
	must(t, err)
	diff(t, "listeners", []cloud.Listener{kept}, got)
	diff(t, "backends", map[string][]cloud.Backend{kept.ID: {a}}, describeBackends(t, c, lb.ID))
	health, err := c.DescribeBackendHealth(ctx, []string{lb.ID})
	must(t, err)
	if len(health) != 1 || health[0].ListenerID != kept.ID {
		t.Errorf("health after deleting a listener: %+v, want the one backend of %s", health, kept.ID)
	}

	// Gone is gone: the controller takes NotFound as done.
	err = c.DeleteListener(ctx, lb.ID, gone.ID)
	wantError(t, err, cloud.KindNotFound, cloud.CodeListenerNotFound)
}

func testDeleteLoadBalancer(t *testing.T, c cloud.Interface, account *fake.Cloud) {
	ctx := t.Context()
	lb := newLoadBalancer(t, c)
	l := createListener(t, c, lb.ID, tcp(80))
	must(t, c.RegisterBackends(ctx, lb.ID, on(l.ID, pod("10.0.0.1", 8080, 10))))

	must(t, c.DeleteLoadBalancer(ctx, lb.ID))
	if s := account.Snapshot(); len(s.LoadBalancers) != 0 {
		t.Fatalf("the account holds %+v after the delete", s.LoadBalancers)
	}
	_, err := c.DescribeListeners(ctx, lb.ID)
	wantError(t, err, cloud.KindNotFound, "")
	_, err = c.DescribeBackends(ctx, lb.ID)
	wantError(t, err, cloud.KindNotFound, "")
	got, err := c.DescribeLoadBalancers(ctx, cloud.LoadBalancerQuery{Tags: lb.Tags})
	must(t, err)
	diff(t, "CLBs with its tags", []cloud.LoadBalancer{}, got)
	err = c.DeleteLoadBalancer(ctx, lb.ID)
	wantError(t, err, cloud.KindNotFound, "")

	// Its ClientToken is free again: a new create makes a new CLB.
	again := newLoadBalancer(t, c)
	if again.ID == lb.ID {
		t.Errorf("the token of a deleted CLB returned it again: %s", again.ID)
	}
}

func testNotFound(t *testing.T, c cloud.Interface, account *fake.Cloud) {
	ctx := t.Context()
	lb := newLoadBalancer(t, c)
	l := createListener(t, c, lb.ID, tcp(80))
	a := on(l.ID, pod("10.0.0.1", 8080, 10))
	const unknownLB, unknownListener = "lb-unknown", "lbl-unknown"
	before := account.Snapshot()

	for name, call := range map[string]func() error{
		"DeleteLoadBalancer": func() error { return c.DeleteLoadBalancer(ctx, unknownLB) },
		"ModifyLoadBalancerAttributes": func() error {
			return c.ModifyLoadBalancerAttributes(ctx, unknownLB, cloud.LoadBalancerAttributes{InternetMaxBandwidthOut: new(int64(10))})
		},
		"DescribeListeners": func() error {
			_, err := c.DescribeListeners(ctx, unknownLB)
			return err
		},
		"CreateListener": func() error {
			_, err := c.CreateListener(ctx, unknownLB, tcp(80))
			return err
		},
		"ModifyListener": func() error { return c.ModifyListener(ctx, unknownLB, l.ID, tcp(80)) },
		"DeleteListener": func() error { return c.DeleteListener(ctx, unknownLB, l.ID) },
		"DescribeBackends": func() error {
			_, err := c.DescribeBackends(ctx, unknownLB)
			return err
		},
		"RegisterBackends":     func() error { return c.RegisterBackends(ctx, unknownLB, a) },
		"DeregisterBackends":   func() error { return c.DeregisterBackends(ctx, unknownLB, a) },
		"ModifyBackendWeights": func() error { return c.ModifyBackendWeights(ctx, unknownLB, a) },
		"DescribeBackendHealth": func() error {
			_, err := c.DescribeBackendHealth(ctx, []string{unknownLB})
			return err
		},
	} {
		t.Run("unknown CLB/"+name, func(t *testing.T) {
			wantError(t, call(), cloud.KindNotFound, cloud.CodeLBNotFound)
		})
	}

	b := on(unknownListener, pod("10.0.0.1", 8080, 10))
	for name, call := range map[string]func() error{
		"ModifyListener":       func() error { return c.ModifyListener(ctx, lb.ID, unknownListener, tcp(80)) },
		"DeleteListener":       func() error { return c.DeleteListener(ctx, lb.ID, unknownListener) },
		"RegisterBackends":     func() error { return c.RegisterBackends(ctx, lb.ID, b) },
		"DeregisterBackends":   func() error { return c.DeregisterBackends(ctx, lb.ID, b) },
		"ModifyBackendWeights": func() error { return c.ModifyBackendWeights(ctx, lb.ID, b) },
	} {
		t.Run("unknown listener/"+name, func(t *testing.T) {
			wantError(t, call(), cloud.KindNotFound, cloud.CodeListenerNotFound)
		})
	}
	if after := account.Snapshot(); !cmp.Equal(before, after, cmpopts.EquateEmpty()) {
		t.Errorf("calls on unknown objects changed the account:\n%s", cmp.Diff(before, after, cmpopts.EquateEmpty()))
	}
}

// --- faults ---

func testPartialFailure(t *testing.T, c cloud.Interface, account *fake.Cloud) {
	ctx := t.Context()
	lb := newLoadBalancer(t, c)
	var ls []cloud.Listener
	var batch []cloud.ListenerBackend
	a := pod("10.0.0.1", 8080, 10)
	for port := int32(80); port < 88; port++ {
		l := createListener(t, c, lb.ID, tcp(port))
		ls = append(ls, l)
		batch = append(batch, on(l.ID, a)...)
	}
	// Each listener fails on its own with probability ½, from the account's
	// fixed seed: the same listeners in both runs.
	account.SetPartialFailureRate(0.5)

	err := c.RegisterBackends(ctx, lb.ID, batch)
	var pf *cloud.PartialFailure
	if !errors.As(err, &pf) {
		t.Fatalf("RegisterBackends = %v, want a *cloud.PartialFailure", err)
	}
	if pf.Action != "BatchRegisterTargets" || len(pf.FailedListenerIDs) == 0 || len(pf.FailedListenerIDs) == len(ls) {
		t.Fatalf("partial failure %+v: want BatchRegisterTargets failing some of %d listeners", pf, len(ls))
	}
	registered := map[string]bool{}
	got := describeBackends(t, c, lb.ID)
	for _, l := range ls {
		registered[l.ID] = len(got[l.ID]) == 1
		if registered[l.ID] == pf.Failed(l.ID) {
			t.Errorf("listener %s: registered %v, named failed %v", l.ID, registered[l.ID], pf.Failed(l.ID))
		}
	}

	err = c.DeregisterBackends(ctx, lb.ID, batch)
	if !errors.As(err, &pf) || pf.Action != "BatchDeregisterTargets" || len(pf.FailedListenerIDs) == 0 {
		t.Fatalf("DeregisterBackends = %v, want a *cloud.PartialFailure", err)
	}
	got = describeBackends(t, c, lb.ID)
	for _, l := range ls {
		want := registered[l.ID] && pf.Failed(l.ID)
		if has := len(got[l.ID]) == 1; has != want {
			t.Errorf("listener %s: registered %v after deregistering, want %v", l.ID, has, want)
		}
	}
}

func testPartialFailureOfAll(t *testing.T, c cloud.Interface, account *fake.Cloud) {
	ctx := t.Context()
	lb := newLoadBalancer(t, c)
	l1 := createListener(t, c, lb.ID, tcp(80))
	l2 := createListener(t, c, lb.ID, tcp(81))
	a := pod("10.0.0.1", 8080, 10)
	must(t, c.RegisterBackends(ctx, lb.ID, on(l1.ID, a)))
	before := account.Snapshot()
	account.SetPartialFailureRate(1)

	for action, call := range map[string]func() error{
		"BatchRegisterTargets":   func() error { return c.RegisterBackends(ctx, lb.ID, append(on(l2.ID, a), on(l1.ID, a)...)) },
		"BatchDeregisterTargets": func() error { return c.DeregisterBackends(ctx, lb.ID, append(on(l2.ID, a), on(l1.ID, a)...)) },
	} {
		err := call()
		var pf *cloud.PartialFailure
		if !errors.As(err, &pf) {
			t.Fatalf("%s = %v, want a *cloud.PartialFailure", action, err)
		}
		diff(t, action+" failure", &cloud.PartialFailure{Action: action, FailedListenerIDs: []string{l2.ID, l1.ID}}, pf)
	}
	// BatchModifyTargetWeight cannot name failed listeners: the whole call
	// fails, and may be repeated.
	heavier := a
	heavier.Weight = 50
	err := c.ModifyBackendWeights(ctx, lb.ID, on(l1.ID, heavier))
	wantError(t, err, cloud.KindTransient, cloud.CodeFailedOperation)

	if after := account.Snapshot(); !cmp.Equal(before, after, cmpopts.EquateEmpty()) {
		t.Errorf("batches that failed for every listener changed the account:\n%s", cmp.Diff(before, after, cmpopts.EquateEmpty()))
	}
}

// testThrottledOnce checks the contract of transient errors: an
// implementation may retry them inside, so the call either succeeds or
// returns a KindTransient error. The fake never retries: the caller sees
// the error. The adapter retries throttling: the caller sees success, and
// the account saw two calls.
func testThrottledOnce(t *testing.T, c cloud.Interface, account *fake.Cloud) {
	ctx := t.Context()
	lb := newLoadBalancer(t, c)
	l := createListener(t, c, lb.ID, tcp(80))
	a := pod("10.0.0.1", 8080, 10)
	_, retriesInside := c.(*tencent.Cloud)

	throttle := func(action string) {
		account.ResetCalls()
		account.FailNext(action, 1, cloud.NewError(action, cloud.CodeRequestLimitExceeded, "injected throttling", ""))
	}
	check := func(action string, err error, retry func() error) {
		t.Helper()
		calls := account.CountCalls(action)
		switch {
		case err == nil && retriesInside:
			if calls != 2 {
				t.Errorf("%s: succeeded after %d calls, want 2 (the throttled one and its retry)", action, calls)
			}
		case err != nil && !retriesInside:
			wantError(t, err, cloud.KindTransient, cloud.CodeRequestLimitExceeded)
			if calls != 1 {
				t.Errorf("%s: %d calls, want 1", action, calls)
			}
			// The caller's retry succeeds.
			must(t, retry())
		default:
			t.Fatalf("%s throttled once: %v after %d calls; want success for an implementation that retries (%v), else a Transient error",
				action, err, calls, retriesInside)
		}
	}

	throttle("DescribeListeners")
	var got []cloud.Listener
	describe := func() (err error) {
		got, err = c.DescribeListeners(ctx, lb.ID)
		return err
	}
	check("DescribeListeners", describe(), describe)
	diff(t, "listeners", []cloud.Listener{l}, got)

	throttle("BatchRegisterTargets")
	register := func() error { return c.RegisterBackends(ctx, lb.ID, on(l.ID, a)) }
	check("BatchRegisterTargets", register(), register)
	diff(t, "backends", map[string][]cloud.Backend{l.ID: {a}}, describeBackends(t, c, lb.ID))
}

// testInternalErrorOnCreate: an InternalError leaves unknown whether the
// call was applied, so a create that is not idempotent is not repeated by
// anyone but the caller.
func testInternalErrorOnCreate(t *testing.T, c cloud.Interface, account *fake.Cloud) {
	ctx := t.Context()
	lb := newLoadBalancer(t, c)
	account.FailNext("CreateListener", 1, nil)
	_, err := c.CreateListener(ctx, lb.ID, tcp(80))
	wantError(t, err, cloud.KindTransient, cloud.CodeInternalError)
	if n := account.CountCalls("CreateListener"); n != 1 {
		t.Errorf("%d CreateListener calls, want 1", n)
	}
	got, err := c.DescribeListeners(ctx, lb.ID)
	must(t, err)
	diff(t, "listeners", []cloud.Listener{}, got)
	l := createListener(t, c, lb.ID, tcp(80))
	got, err = c.DescribeListeners(ctx, lb.ID)
	must(t, err)
	diff(t, "listeners", []cloud.Listener{l}, got)
}

// --- helpers ---

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// wantError checks that err is a *cloud.Error of the kind and, unless code
// is empty, the code.
func wantError(t *testing.T, err error, kind cloud.Kind, code string) {
	t.Helper()
	var ce *cloud.Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T), want a *cloud.Error of kind %s", err, err, kind)
	}
	if ce.Kind != kind || (code != "" && ce.Code != code) {
		t.Fatalf("error %v is %s %s, want %s %s", err, ce.Kind, ce.Code, kind, code)
	}
}

// diff fails the test when got is not want; nil and empty maps and slices
// are equal.
func diff(t *testing.T, what string, want, got any) {
	t.Helper()
	if d := cmp.Diff(want, got, cmpopts.EquateEmpty()); d != "" {
		t.Fatalf("%s (-want +got):\n%s", what, d)
	}
}

func loadBalancerState(t *testing.T, account *fake.Cloud, id string) fake.LoadBalancerState {
	t.Helper()
	for _, lb := range account.Snapshot().LoadBalancers {
		if lb.ID == id {
			return lb
		}
	}
	t.Fatalf("the account has no CLB %s", id)
	return fake.LoadBalancerState{}
}

func sortedByID(lbs []cloud.LoadBalancer) []cloud.LoadBalancer {
	out := slices.Clone(lbs)
	slices.SortFunc(out, func(a, b cloud.LoadBalancer) int { return strings.Compare(a.ID, b.ID) })
	return out
}

func merge(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}
