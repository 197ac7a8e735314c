package tencent

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	clb "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/clb/v20180317"

	"clb-direct/cloud"
)

const (
	// maxIDsPerDescribe is the most LoadBalancerIds DescribeLoadBalancers
	// and DescribeTargetHealth take in one call.
	maxIDsPerDescribe = 20
	// lbStatusReady is DescribeLoadBalancers' Status of a CLB whose
	// creation is done (0 while it is being created).
	lbStatusReady = 1
	// createMisses is how many polls after CreateLoadBalancer may not list
	// the new CLB before its creation counts as failed: a failed creation
	// removes the CLB, while a listing may lag the create briefly.
	createMisses = 5
)

// DescribeLoadBalancers pages through DescribeLoadBalancers (Limit
// cloud.MaxDescribeLimit) until every match is read: by ID, in chunks of
// maxIDsPerDescribe IDs, or by tags, with one "tag:<key>" filter per tag.
// Tag matches are checked again here, so a CLB the API's filter let through
// without every tag is left out.
func (c *Cloud) DescribeLoadBalancers(ctx context.Context, query cloud.LoadBalancerQuery) ([]cloud.LoadBalancer, error) {
	var raw []*clb.LoadBalancer
	if len(query.IDs) > 0 {
		for ids := range slices.Chunk(query.IDs, maxIDsPerDescribe) {
			lbs, err := c.listLoadBalancers(ctx, ids, nil)
			if err != nil {
				return nil, err
			}
			raw = append(raw, lbs...)
		}
	} else {
		var err error
		if raw, err = c.listLoadBalancers(ctx, nil, tagFilters(query.Tags)); err != nil {
			return nil, err
		}
	}
	out := make([]cloud.LoadBalancer, 0, len(raw))
	for _, r := range raw {
		lb := loadBalancerFromAPI(r)
		if len(query.IDs) == 0 && !hasTags(lb, query.Tags) {
			continue
		}
		out = append(out, lb)
	}
	return out, nil
}

// listLoadBalancers reads every page of one DescribeLoadBalancers query.
func (c *Cloud) listLoadBalancers(ctx context.Context, ids []string, filters []*clb.Filter) ([]*clb.LoadBalancer, error) {
	var all []*clb.LoadBalancer
	for {
		req := clb.NewDescribeLoadBalancersRequest()
		req.LoadBalancerIds = strs(ids)
		req.Filters = filters
		req.Offset, req.Limit = i64(len(all)), i64(cloud.MaxDescribeLimit)
		resp, err := send(ctx, c, op{lbID: single(ids), idempotent: true}, req, (*clb.Client).DescribeLoadBalancers)
		if err != nil {
			return nil, err
		}
		page := resp.Response.LoadBalancerSet
		all = append(all, page...)
		total := resp.Response.TotalCount
		// A missing TotalCount ends the listing at the first short page.
		if len(page) == 0 || (total != nil && uint64(len(all)) >= *total) ||
			(total == nil && len(page) < cloud.MaxDescribeLimit) {
			return all, nil
		}
	}
}

func tagFilters(tags map[string]string) []*clb.Filter {
	var filters []*clb.Filter
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		filters = append(filters, &clb.Filter{Name: str("tag:" + k), Values: strs([]string{tags[k]})})
	}
	return filters
}

func hasTags(lb cloud.LoadBalancer, want map[string]string) bool {
	for k, v := range want {
		if got, ok := lb.Tags[k]; !ok || got != v {
			return false
		}
	}
	return true
}

func loadBalancerFromAPI(r *clb.LoadBalancer) cloud.LoadBalancer {
	lb := cloud.LoadBalancer{
		ID:   deref(r.LoadBalancerId),
		Name: deref(r.LoadBalancerName),
		VIPs: derefs(r.LoadBalancerVips),
		Tags: map[string]string{},
	}
	// A public CLB may report its VPC's subnet too; only an internal one
	// lives in it. Likewise only a public one has an internet bandwidth.
	if deref(r.LoadBalancerType) != "OPEN" {
		lb.SubnetID = deref(r.SubnetId)
	} else if na := r.NetworkAttributes; na != nil {
		lb.InternetMaxBandwidthOut = deref(na.InternetMaxBandwidthOut)
	}
	for _, t := range r.Tags {
		if t != nil && t.TagKey != nil {
			lb.Tags[*t.TagKey] = deref(t.TagValue)
		}
	}
	return lb
}

// CreateLoadBalancer creates a CLB (public, or internal in spec.SubnetID)
// forwarding at layer 4 and 7 as TKE's do, with spec.ExtensiveParameters
// laid over the request, and returns it once DescribeLoadBalancers reports
// it running, with its VIPs. Its ClientToken makes the call idempotent,
// which is also what lets it be retried after a network failure.
func (c *Cloud) CreateLoadBalancer(ctx context.Context, spec cloud.LoadBalancerSpec) (cloud.LoadBalancer, error) {
	req, err := c.createLoadBalancerRequest(spec)
	if err != nil {
		return cloud.LoadBalancer{}, err
	}
	resp, err := send(ctx, c, op{idempotent: spec.ClientToken != ""}, req, (*clb.Client).CreateLoadBalancer)
	if err != nil {
		return cloud.LoadBalancer{}, err
	}
	ids := derefs(resp.Response.LoadBalancerIds)
	if len(ids) == 0 || ids[0] == "" {
		return cloud.LoadBalancer{}, cloud.NewError(req.GetAction(), CodeMalformedResponse, "no LoadBalancerIds in the response", deref(resp.Response.RequestId))
	}
	return c.waitLoadBalancerReady(ctx, ids[0], deref(resp.Response.RequestId))
}

// createLoadBalancerRequest builds the request for spec. Extensive
// parameters are merged as TKE merges them: the request as JSON, the
// parameters laid over it, and the result decoded back. The decoding is
// strict where the SDK's FromJsonString is not: it names an unknown
// parameter, and refuses one nested in another (a typo in
// InternetAccessible would otherwise vanish unnoticed); see
// cloud.DecodeParameters. So a map the API cannot take fails here, with a
// Terminal error and before any call.
func (c *Cloud) createLoadBalancerRequest(spec cloud.LoadBalancerSpec) (*clb.CreateLoadBalancerRequest, error) {
	req := clb.NewCreateLoadBalancerRequest()
	req.LoadBalancerType = str("OPEN")
	if spec.SubnetID != "" {
		req.LoadBalancerType, req.SubnetId = str("INTERNAL"), str(spec.SubnetID)
	}
	req.Forward = i64(1)
	req.LoadBalancerName = optStr(spec.Name)
	req.VpcId = optStr(c.vpcID)
	req.ClientToken = optStr(spec.ClientToken)
	for _, k := range slices.Sorted(maps.Keys(spec.Tags)) {
		req.Tags = append(req.Tags, &clb.TagInfo{TagKey: str(k), TagValue: str(spec.Tags[k])})
	}
	if len(spec.ExtensiveParameters) == 0 {
		return req, nil
	}
	// Refused first, so that the overlay below cannot replace what we set.
	if err := cloud.CheckExtensiveParameters(spec.ExtensiveParameters); err != nil {
		return nil, err
	}
	var merged map[string]any
	if err := json.Unmarshal([]byte(req.ToJsonString()), &merged); err != nil {
		return nil, fmt.Errorf("%s: encoding the request: %w", req.GetAction(), err)
	}
	maps.Copy(merged, spec.ExtensiveParameters)
	out := clb.NewCreateLoadBalancerRequest()
	if err := cloud.DecodeParameters(out.GetAction(), merged, out); err != nil {
		return nil, err
	}
	return out, nil
}

// waitLoadBalancerReady polls DescribeLoadBalancers until the new CLB runs.
func (c *Cloud) waitLoadBalancerReady(ctx context.Context, id, requestID string) (cloud.LoadBalancer, error) {
	const action = "CreateLoadBalancer"
	var ready cloud.LoadBalancer
	misses := 0
	err := c.pollUntil(ctx, action, "load balancer "+id, func(ctx context.Context) (bool, error) {
		lbs, err := c.listLoadBalancers(ctx, []string{id}, nil)
		if err != nil && !cloud.IsNotFound(err) {
			return false, fmt.Errorf("%s: waiting for load balancer %s: %w", action, id, err)
		}
		i := slices.IndexFunc(lbs, func(lb *clb.LoadBalancer) bool { return deref(lb.LoadBalancerId) == id })
		if i < 0 {
			if misses++; misses >= createMisses {
				return false, cloud.NewError(action, cloud.CodeFailedOperation,
					fmt.Sprintf("load balancer %s is not listed: its creation failed", id), requestID)
			}
			return false, nil
		}
		misses = 0
		if lbs[i].Status == nil || *lbs[i].Status != lbStatusReady {
			return false, nil
		}
		ready = loadBalancerFromAPI(lbs[i])
		return true, nil
	})
	return ready, err
}

// DeleteLoadBalancer deletes a CLB and waits for the task.
func (c *Cloud) DeleteLoadBalancer(ctx context.Context, loadBalancerID string) error {
	req := clb.NewDeleteLoadBalancerRequest()
	req.LoadBalancerIds = strs([]string{loadBalancerID})
	resp, err := send(ctx, c, op{lbID: loadBalancerID}, req, (*clb.Client).DeleteLoadBalancer)
	if err != nil {
		return err
	}
	return c.waitTask(ctx, req.GetAction(), loadBalancerID, resp.Response.RequestId)
}

// ModifyLoadBalancerAttributes sends what attrs sets (the bandwidth as
// InternetChargeInfo.InternetMaxBandwidthOut) and waits for the task.
// Setting the same attributes twice changes nothing, so it may be retried.
func (c *Cloud) ModifyLoadBalancerAttributes(ctx context.Context, loadBalancerID string, attrs cloud.LoadBalancerAttributes) error {
	req := clb.NewModifyLoadBalancerAttributesRequest()
	req.LoadBalancerId = str(loadBalancerID)
	if bw := attrs.InternetMaxBandwidthOut; bw != nil {
		req.InternetChargeInfo = &clb.InternetAccessible{InternetMaxBandwidthOut: i64(*bw)}
	}
	resp, err := send(ctx, c, op{lbID: loadBalancerID, idempotent: true}, req, (*clb.Client).ModifyLoadBalancerAttributes)
	if err != nil {
		return err
	}
	return c.waitTask(ctx, req.GetAction(), loadBalancerID, resp.Response.RequestId)
}

// DescribeQuota reads the account's listener and backend quotas, keeping
// cloud's defaults for those the API does not report.
func (c *Cloud) DescribeQuota(ctx context.Context) (cloud.Quota, error) {
	resp, err := send(ctx, c, op{idempotent: true}, clb.NewDescribeQuotaRequest(), (*clb.Client).DescribeQuota)
	if err != nil {
		return cloud.Quota{}, err
	}
	q := cloud.Quota{
		ListenersPerLoadBalancer: cloud.DefaultListenersPerLoadBalancer,
		BackendsPerListener:      cloud.DefaultBackendsPerListener,
	}
	for _, item := range resp.Response.QuotaSet {
		if item == nil || item.QuotaLimit == nil || *item.QuotaLimit <= 0 {
			continue
		}
		switch deref(item.QuotaId) {
		case "TOTAL_LISTENER_QUOTA":
			q.ListenersPerLoadBalancer = int(*item.QuotaLimit)
		case "TOTAL_TARGET_BIND_QUOTA":
			q.BackendsPerListener = int(*item.QuotaLimit)
		}
	}
	return q, nil
}
