package tencent

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"clb-direct/cloud"
)

// lbJSON is a CLB as DescribeLoadBalancers lists it.
func lbJSON(id string, status int, tags map[string]string, vips ...string) map[string]any {
	var tagList []any
	for k, v := range tags {
		tagList = append(tagList, map[string]any{"TagKey": k, "TagValue": v})
	}
	return map[string]any{
		"LoadBalancerId": id, "LoadBalancerName": "name-" + id, "LoadBalancerType": "OPEN",
		"Status": status, "LoadBalancerVips": vips, "Tags": tagList,
	}
}

// pagedLoadBalancers serves DescribeLoadBalancers over lbs as the API does:
// Offset and Limit (at most 100) over the whole set.
func pagedLoadBalancers(t *testing.T, lbs []map[string]any) handler {
	return func(body map[string]any, _ int) any {
		offset, _ := body["Offset"].(float64)
		limit, _ := body["Limit"].(float64)
		if limit < 1 || limit > 100 {
			t.Errorf("Limit %v, want 1..100", body["Limit"])
			return apiError{Code: cloud.CodeInvalidParameterVal, Message: "Limit"}
		}
		lo, hi := min(int(offset), len(lbs)), min(int(offset+limit), len(lbs))
		return map[string]any{"TotalCount": len(lbs), "LoadBalancerSet": lbs[lo:hi]}
	}
}

func TestDescribeLoadBalancersReadsEveryPage(t *testing.T) {
	want := map[string]string{cloud.TagClusterID: "cls-1", cloud.TagCreatedBy: cloud.CreatedByValue}
	var lbs []map[string]any
	for i := range 250 {
		lbs = append(lbs, lbJSON(fmt.Sprintf("lb-%03d", i), 1, want, fmt.Sprintf("1.1.%d.%d", i/256, i%256)))
	}
	// The API's filter let through a CLB that lacks one of the tags.
	lbs[17] = lbJSON("lb-017", 1, map[string]string{cloud.TagClusterID: "cls-1"})
	f := newFakeAPI(t)
	f.handle("DescribeLoadBalancers", pagedLoadBalancers(t, lbs))
	c := newTestCloud(t, f, nil)

	got, err := c.DescribeLoadBalancers(t.Context(), cloud.LoadBalancerQuery{Tags: want})
	if err != nil {
		t.Fatalf("DescribeLoadBalancers: %v", err)
	}
	if len(got) != 249 || slices.ContainsFunc(got, func(lb cloud.LoadBalancer) bool { return lb.ID == "lb-017" }) {
		t.Errorf("%d CLBs, want 249 (all but lb-017)", len(got))
	}
	if got[0].ID != "lb-000" || got[0].Name != "name-lb-000" || !slices.Equal(got[0].VIPs, []string{"1.1.0.0"}) ||
		!cmp.Equal(got[0].Tags, want) || got[0].SubnetID != "" {
		t.Errorf("first CLB %+v", got[0])
	}
	calls := f.callsOf("DescribeLoadBalancers")
	var offsets []float64
	for _, call := range calls {
		offsets = append(offsets, call.Body["Offset"].(float64))
		wantFilters := []any{
			map[string]any{"Name": "tag:" + cloud.TagCreatedBy, "Values": []any{cloud.CreatedByValue}},
			map[string]any{"Name": "tag:" + cloud.TagClusterID, "Values": []any{"cls-1"}},
		}
		if diff := cmp.Diff(wantFilters, call.Body["Filters"], cmp.Transformer("sort", sortFilters)); diff != "" {
			t.Errorf("filters (-want +got):\n%s", diff)
		}
	}
	if !slices.Equal(offsets, []float64{0, 100, 200}) {
		t.Errorf("offsets %v, want 0, 100, 200", offsets)
	}
}

func sortFilters(fs []any) []string {
	var out []string
	for _, f := range fs {
		out = append(out, fmt.Sprint(f))
	}
	slices.Sort(out)
	return out
}

func TestDescribeLoadBalancersByIDInChunks(t *testing.T) {
	f := newFakeAPI(t)
	f.handle("DescribeLoadBalancers", func(body map[string]any, _ int) any {
		ids := body["LoadBalancerIds"].([]any)
		var set []map[string]any
		for _, id := range ids {
			set = append(set, lbJSON(id.(string), 1, nil))
		}
		return map[string]any{"TotalCount": len(set), "LoadBalancerSet": set}
	})
	c := newTestCloud(t, f, nil)
	var ids []string
	for i := range 25 {
		ids = append(ids, fmt.Sprintf("lb-%d", i))
	}
	got, err := c.DescribeLoadBalancers(t.Context(), cloud.LoadBalancerQuery{IDs: ids})
	if err != nil {
		t.Fatal(err)
	}
	var sizes []int
	for _, call := range f.callsOf("DescribeLoadBalancers") {
		sizes = append(sizes, len(call.Body["LoadBalancerIds"].([]any)))
	}
	if len(got) != 25 || !slices.Equal(sizes, []int{20, 5}) {
		t.Errorf("%d CLBs in calls of %v IDs, want 25 in calls of 20 and 5", len(got), sizes)
	}
}

func TestCreateLoadBalancer(t *testing.T) {
	for _, tc := range []struct {
		name, subnet, wantType string
	}{
		{"public", "", "OPEN"},
		{"internal", "subnet-1", "INTERNAL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeAPI(t)
			f.handle("CreateLoadBalancer", func(map[string]any, int) any {
				return map[string]any{"LoadBalancerIds": []string{"lb-new"}}
			})
			f.handle("DescribeLoadBalancers", func(_ map[string]any, n int) any {
				switch {
				case n == 0: // not listed yet
					return map[string]any{"TotalCount": 0}
				case n < 3: // being created, no VIP yet
					return map[string]any{"TotalCount": 1, "LoadBalancerSet": []any{lbJSON("lb-new", 0, nil)}}
				}
				lb := lbJSON("lb-new", 1, map[string]string{"k": "v"}, "10.1.2.3")
				lb["LoadBalancerType"], lb["SubnetId"] = tc.wantType, tc.subnet
				return map[string]any{"TotalCount": 1, "LoadBalancerSet": []any{lb}}
			})
			c := newTestCloud(t, f, func(o *Options) { o.VpcID = "vpc-1" })

			lb, err := c.CreateLoadBalancer(t.Context(), cloud.LoadBalancerSpec{
				Name: "svc", SubnetID: tc.subnet, Tags: map[string]string{"k": "v", "a": "b"}, ClientToken: "uid-1",
			})
			if err != nil {
				t.Fatalf("CreateLoadBalancer: %v", err)
			}
			want := cloud.LoadBalancer{ID: "lb-new", Name: "name-lb-new", SubnetID: tc.subnet, VIPs: []string{"10.1.2.3"}, Tags: map[string]string{"k": "v"}}
			if diff := cmp.Diff(want, lb); diff != "" {
				t.Errorf("CLB (-want +got):\n%s", diff)
			}
			if n := len(f.callsOf("DescribeLoadBalancers")); n != 4 {
				t.Errorf("%d polls, want 4", n)
			}
			body := f.callsOf("CreateLoadBalancer")[0].Body
			wantBody := map[string]any{
				"LoadBalancerType": tc.wantType, "Forward": float64(1), "LoadBalancerName": "svc", "VpcId": "vpc-1", "ClientToken": "uid-1",
				"Tags": []any{map[string]any{"TagKey": "a", "TagValue": "b"}, map[string]any{"TagKey": "k", "TagValue": "v"}},
			}
			if tc.subnet != "" {
				wantBody["SubnetId"] = tc.subnet
			}
			if diff := cmp.Diff(wantBody, body); diff != "" {
				t.Errorf("request (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCreateLoadBalancerThatVanishes(t *testing.T) {
	f := newFakeAPI(t)
	f.handle("CreateLoadBalancer", func(map[string]any, int) any { return map[string]any{"LoadBalancerIds": []string{"lb-new"}} })
	f.handle("DescribeLoadBalancers", func(map[string]any, int) any { return map[string]any{"TotalCount": 0} })
	c := newTestCloud(t, f, nil)

	_, err := c.CreateLoadBalancer(t.Context(), cloud.LoadBalancerSpec{Name: "svc"})
	wantCloudError(t, err, cloud.CodeFailedOperation, cloud.KindTransient)
	if n := len(f.callsOf("DescribeLoadBalancers")); n != createMisses {
		t.Errorf("%d polls, want %d", n, createMisses)
	}
}

func TestDescribeQuota(t *testing.T) {
	f := newFakeAPI(t)
	f.handle("DescribeQuota", func(_ map[string]any, n int) any {
		if n == 0 {
			return map[string]any{"QuotaSet": []any{
				map[string]any{"QuotaId": "TOTAL_OPEN_CLB_QUOTA", "QuotaLimit": 100},
				map[string]any{"QuotaId": "TOTAL_LISTENER_QUOTA", "QuotaLimit": 30},
				map[string]any{"QuotaId": "TOTAL_TARGET_BIND_QUOTA", "QuotaLimit": 500},
			}}
		}
		return map[string]any{"QuotaSet": []any{}}
	})
	c := newTestCloud(t, f, nil)
	for _, want := range []cloud.Quota{
		{ListenersPerLoadBalancer: 30, BackendsPerListener: 500},
		{ListenersPerLoadBalancer: cloud.DefaultListenersPerLoadBalancer, BackendsPerListener: cloud.DefaultBackendsPerListener},
	} {
		q, err := c.DescribeQuota(t.Context())
		if err != nil || q != want {
			t.Errorf("DescribeQuota = %+v, %v; want %+v", q, err, want)
		}
	}
}

func TestDescribeLoadBalancersReadsTheBandwidth(t *testing.T) {
	f := newFakeAPI(t)
	f.handle("DescribeLoadBalancers", func(map[string]any, int) any {
		public := lbJSON("lb-public", 1, nil)
		public["NetworkAttributes"] = map[string]any{"InternetChargeType": "TRAFFIC_POSTPAID_BY_HOUR", "InternetMaxBandwidthOut": 20}
		// An internal CLB may report network attributes too; it has no
		// internet bandwidth.
		internal := lbJSON("lb-internal", 1, nil)
		internal["LoadBalancerType"], internal["SubnetId"] = "INTERNAL", "subnet-1"
		internal["NetworkAttributes"] = map[string]any{"InternetMaxBandwidthOut": 10}
		return map[string]any{"TotalCount": 3, "LoadBalancerSet": []any{public, internal, lbJSON("lb-unsaid", 1, nil)}}
	})
	c := newTestCloud(t, f, nil)
	got, err := c.DescribeLoadBalancers(t.Context(), cloud.LoadBalancerQuery{IDs: []string{"lb-public", "lb-internal", "lb-unsaid"}})
	if err != nil {
		t.Fatal(err)
	}
	bandwidths := map[string]int64{}
	for _, lb := range got {
		bandwidths[lb.ID] = lb.InternetMaxBandwidthOut
	}
	if want := map[string]int64{"lb-public": 20, "lb-internal": 0, "lb-unsaid": 0}; !cmp.Equal(bandwidths, want) {
		t.Errorf("bandwidths %v, want %v", bandwidths, want)
	}
}

func TestCreateLoadBalancerWithExtensiveParameters(t *testing.T) {
	f := newFakeAPI(t)
	f.handle("CreateLoadBalancer", func(map[string]any, int) any {
		return map[string]any{"LoadBalancerIds": []string{"lb-new"}}
	})
	f.handle("DescribeLoadBalancers", func(map[string]any, int) any {
		lb := lbJSON("lb-new", 1, nil, "1.2.3.4")
		lb["NetworkAttributes"] = map[string]any{"InternetMaxBandwidthOut": 30}
		return map[string]any{"TotalCount": 1, "LoadBalancerSet": []any{lb}}
	})
	c := newTestCloud(t, f, func(o *Options) { o.VpcID = "vpc-1" })

	lb, err := c.CreateLoadBalancer(t.Context(), cloud.LoadBalancerSpec{
		Name: "svc", ClientToken: "uid-1", Tags: map[string]string{"k": "v"},
		ExtensiveParameters: map[string]any{
			// As parsed from the annotation's JSON, and as Go code would
			// write it: both encode alike.
			"InternetAccessible": map[string]any{"InternetChargeType": "TRAFFIC_POSTPAID_BY_HOUR", "InternetMaxBandwidthOut": 30.0},
			"ProjectId":          int64(7),
			"VipIsp":             "CMCC",
			"ZoneId":             "ap-guangzhou-3",
		},
	})
	if err != nil {
		t.Fatalf("CreateLoadBalancer: %v", err)
	}
	if lb.InternetMaxBandwidthOut != 30 {
		t.Errorf("CLB %+v, want InternetMaxBandwidthOut 30", lb)
	}
	want := map[string]any{
		"LoadBalancerType": "OPEN", "Forward": 1.0, "LoadBalancerName": "svc", "VpcId": "vpc-1", "ClientToken": "uid-1",
		"Tags":               []any{map[string]any{"TagKey": "k", "TagValue": "v"}},
		"InternetAccessible": map[string]any{"InternetChargeType": "TRAFFIC_POSTPAID_BY_HOUR", "InternetMaxBandwidthOut": 30.0},
		"ProjectId":          7.0, "VipIsp": "CMCC", "ZoneId": "ap-guangzhou-3",
	}
	if diff := cmp.Diff(want, f.callsOf("CreateLoadBalancer")[0].Body); diff != "" {
		t.Errorf("request (-want +got):\n%s", diff)
	}
}

func TestExtensiveParametersRefusedBeforeAnyCall(t *testing.T) {
	for _, tc := range []struct {
		name   string
		params map[string]any
		code   string
		// inMessage must appear in the error: what the user has to fix.
		inMessage string
	}{
		{"reserved", map[string]any{"VpcId": "vpc-2", "Tags": []any{}, "ZoneId": "ap-guangzhou-3"}, cloud.CodeInvalidParameter, "Tags, VpcId"},
		{"unknown", map[string]any{"Bandwidth": 10, "Zone": "x"}, cloud.CodeUnknownParameter, "Bandwidth, Zone"},
		{"reserved in another case", map[string]any{"vpcid": "vpc-2"}, cloud.CodeUnknownParameter, "vpcid"},
		{"unknown inside", map[string]any{"InternetAccessible": map[string]any{"MaxBandwidthOut": 10}}, cloud.CodeUnknownParameter, "MaxBandwidthOut"},
		{"wrong type", map[string]any{"InternetAccessible": map[string]any{"InternetMaxBandwidthOut": "10"}}, cloud.CodeInvalidParameter,
			"InternetAccessible.InternetMaxBandwidthOut"},
		{"not a number", map[string]any{"ProjectId": 1.5}, cloud.CodeInvalidParameter, "ProjectId"},
		{"not JSON", map[string]any{"ZoneId": func() {}}, cloud.CodeInvalidParameter, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeAPI(t)
			c := newTestCloud(t, f, nil)
			_, err := c.CreateLoadBalancer(t.Context(), cloud.LoadBalancerSpec{Name: "svc", ExtensiveParameters: tc.params})
			ce := wantCloudError(t, err, tc.code, cloud.KindTerminal)
			if ce.Action != "CreateLoadBalancer" || !strings.Contains(ce.Message, tc.inMessage) {
				t.Errorf("error %v: want action CreateLoadBalancer and a message naming %q", err, tc.inMessage)
			}
			if calls := f.callsOf(""); len(calls) != 0 {
				t.Errorf("%d API calls, want none", len(calls))
			}
		})
	}
}

func TestModifyLoadBalancerAttributes(t *testing.T) {
	f := newFakeAPI(t)
	f.handle("ModifyLoadBalancerAttributes", func(map[string]any, int) any { return map[string]any{} })
	f.handle("DescribeTaskStatus", func(_ map[string]any, n int) any {
		return map[string]any{"Status": []int{taskRunning, taskDone}[min(n, 1)]}
	})
	c := newTestCloud(t, f, nil)

	if err := c.ModifyLoadBalancerAttributes(t.Context(), "lb-1", cloud.LoadBalancerAttributes{InternetMaxBandwidthOut: new(int64(20))}); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"LoadBalancerId": "lb-1", "InternetChargeInfo": map[string]any{"InternetMaxBandwidthOut": 20.0}}
	if diff := cmp.Diff(want, f.callsOf("ModifyLoadBalancerAttributes")[0].Body); diff != "" {
		t.Errorf("request (-want +got):\n%s", diff)
	}
	polls := f.callsOf("DescribeTaskStatus")
	if len(polls) != 2 || polls[0].Body["TaskId"] != "req-ModifyLoadBalancerAttributes-0" {
		t.Errorf("task polls %+v, want 2 for the call's RequestId", polls)
	}

	// Nothing to set is still the one call, which changes nothing.
	if err := c.ModifyLoadBalancerAttributes(t.Context(), "lb-1", cloud.LoadBalancerAttributes{}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]any{"LoadBalancerId": "lb-1"}, f.callsOf("ModifyLoadBalancerAttributes")[1].Body); diff != "" {
		t.Errorf("request (-want +got):\n%s", diff)
	}
}
