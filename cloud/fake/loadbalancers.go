package fake

import (
	"context"
	"encoding/json"
	"maps"
	"slices"

	"clb-direct/cloud"
)

const (
	// defaultDescribeLimit is the page size of a Describe call that names
	// no Limit.
	defaultDescribeLimit = 20
	// maxNameLength bounds a CLB's name.
	maxNameLength = 60
)

// DescribeLoadBalancers pages through ListLoadBalancers, one logged
// DescribeLoadBalancers call per page, as a client of the real API must.
func (c *Cloud) DescribeLoadBalancers(ctx context.Context, query cloud.LoadBalancerQuery) ([]cloud.LoadBalancer, error) {
	var all []cloud.LoadBalancer
	for {
		page, total, err := c.ListLoadBalancers(ctx, query, len(all), c.limits.DescribeLimit)
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
		if len(page) == 0 || len(all) >= total {
			return all, nil
		}
	}
}

// ListLoadBalancers is one DescribeLoadBalancers call: the page at offset of
// the CLBs matching query, in order of creation, and how many match in all.
// Limit 0 means the API's default page of 20; a limit beyond
// Limits.DescribeLimit is an InvalidParameterValue. A CLB whose creation is
// still running is listed without VIPs.
func (c *Cloud) ListLoadBalancers(ctx context.Context, query cloud.LoadBalancerQuery, offset, limit int) (page []cloud.LoadBalancer, total int, err error) {
	r := c.begin(actionDescribeLoadBalancers, "", 0)
	err = c.run(ctx, r, func() error {
		if limit == 0 {
			limit = min(defaultDescribeLimit, c.limits.DescribeLimit)
		}
		if offset < 0 || limit < 0 || limit > c.limits.DescribeLimit {
			return apiError(cloud.CodeInvalidParameterVal, "Offset %d, Limit %d: Offset must be >= 0 and Limit within 1..%d",
				offset, limit, c.limits.DescribeLimit)
		}
		var matched []*loadBalancer
		for _, lb := range c.loadBalancersInOrder() {
			if matches(query, lb) {
				matched = append(matched, lb)
			}
		}
		total = len(matched)
		// Not offset+limit, which overflows for an offset near MaxInt.
		start := min(offset, total)
		for _, lb := range matched[start : start+min(limit, total-start)] {
			page = append(page, lb.export())
		}
		return nil
	})
	return page, total, c.end(r, err)
}

// CreateLoadBalancer creates a CLB and returns it once it is ready.
func (c *Cloud) CreateLoadBalancer(ctx context.Context, spec cloud.LoadBalancerSpec) (cloud.LoadBalancer, error) {
	var lb *loadBalancer
	err := c.write(ctx, actionCreateLoadBalancer, "", 0, func(r *request) (t *task, _ []string, err error) {
		lb, t, err = c.createLoadBalancer(r, spec)
		return t, nil, err
	})
	if err != nil {
		return cloud.LoadBalancer{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return lb.export(), nil
}

// StartCreateLoadBalancer starts creating a CLB and returns its ID and the
// task that makes it ready; the CLB is listed, without VIPs, from now on.
// Called again with the same ClientToken while that CLB exists, it creates
// nothing and returns the same CLB and task.
func (c *Cloud) StartCreateLoadBalancer(ctx context.Context, spec cloud.LoadBalancerSpec) (lbID, taskID string, err error) {
	taskID, _, err = c.start(ctx, actionCreateLoadBalancer, "", 0, func(r *request) (*task, []string, error) {
		lb, t, err := c.createLoadBalancer(r, spec)
		if err != nil {
			return nil, nil, err
		}
		lbID = lb.ID
		return t, nil, nil
	})
	if err != nil {
		return "", "", err
	}
	return lbID, taskID, nil
}

func (c *Cloud) createLoadBalancer(r *request, spec cloud.LoadBalancerSpec) (*loadBalancer, *task, error) {
	// Parameters are checked before the ClientToken is looked at, as the
	// API checks a request before running it.
	params, err := createParametersOf(spec.ExtensiveParameters)
	if err != nil {
		return nil, nil, err
	}
	if id, ok := c.tokens[spec.ClientToken]; ok && spec.ClientToken != "" {
		lb := c.lbs[id]
		r.call.LoadBalancerID = id
		return lb, lb.created, nil
	}
	if len(spec.Name) > maxNameLength {
		return nil, nil, apiError(cloud.CodeInvalidParameterVal, "LoadBalancerName longer than %d characters", maxNameLength)
	}
	lb := c.newLoadBalancer("", cloud.LoadBalancer{Name: spec.Name, SubnetID: spec.SubnetID, Tags: maps.Clone(spec.Tags)})
	// As the API documents, the bandwidth applies to public CLBs only.
	if ia := params.InternetAccessible; ia != nil && ia.InternetMaxBandwidthOut != nil && spec.SubnetID == "" {
		lb.InternetMaxBandwidthOut = *ia.InternetMaxBandwidthOut
	}
	r.call.LoadBalancerID = lb.ID
	if spec.ClientToken != "" {
		lb.clientToken = spec.ClientToken
		c.tokens[spec.ClientToken] = lb.ID
	}
	address := c.vipFor(lb.seq, spec.SubnetID != "")
	lb.created = c.startTask(r, lb.ID, func(succeeded bool) {
		if !succeeded {
			c.removeLoadBalancer(lb)
			return
		}
		lb.VIPs = []string{address}
	})
	return lb, lb.created, nil
}

// DeleteLoadBalancer deletes a CLB with its listeners and backends.
func (c *Cloud) DeleteLoadBalancer(ctx context.Context, lbID string) error {
	return c.write(ctx, actionDeleteLoadBalancer, lbID, 0, func(r *request) (*task, []string, error) {
		t, err := c.deleteLoadBalancer(r, lbID)
		return t, nil, err
	})
}

// StartDeleteLoadBalancer starts deleting a CLB; it is gone when the task
// is done.
func (c *Cloud) StartDeleteLoadBalancer(ctx context.Context, lbID string) (taskID string, err error) {
	taskID, _, err = c.start(ctx, actionDeleteLoadBalancer, lbID, 0, func(r *request) (*task, []string, error) {
		t, err := c.deleteLoadBalancer(r, lbID)
		return t, nil, err
	})
	return taskID, err
}

func (c *Cloud) deleteLoadBalancer(r *request, lbID string) (*task, error) {
	lb, err := c.writable(lbID)
	if err != nil {
		return nil, err
	}
	return c.startTask(r, lbID, func(succeeded bool) {
		if succeeded {
			c.removeLoadBalancer(lb)
		}
	}), nil
}

// createParameters are the parameters of CreateLoadBalancer that
// LoadBalancerSpec.ExtensiveParameters may set: all but the reserved ones,
// by the API's names and with its types (SDK v1.0.162). The fake keeps the
// bandwidth and checks the charge type; the rest it takes and forgets, as
// they change nothing it models.
type createParameters struct {
	ProjectID          *int64              `json:"ProjectId"`
	AddressIPVersion   *string             `json:"AddressIPVersion"`
	MasterZoneID       *string             `json:"MasterZoneId"`
	ZoneID             *string             `json:"ZoneId"`
	SlaveZoneID        *string             `json:"SlaveZoneId"`
	InternetAccessible *internetAccessible `json:"InternetAccessible"`
	VipIsp             *string             `json:"VipIsp"`
	Vip                *string             `json:"Vip"`
	BandwidthPackageID *string             `json:"BandwidthPackageId"`
	ExclusiveCluster   json.RawMessage     `json:"ExclusiveCluster"`
	SnatPro            *bool               `json:"SnatPro"`
	SnatIps            json.RawMessage     `json:"SnatIps"`
	ClusterTag         *string             `json:"ClusterTag"`
	EipAddressID       *string             `json:"EipAddressId"`
}

// internetAccessible is the API's InternetAccessible: how a public CLB's
// traffic is billed and capped.
type internetAccessible struct {
	InternetChargeType      *string `json:"InternetChargeType"`
	InternetMaxBandwidthOut *int64  `json:"InternetMaxBandwidthOut"`
	BandwidthpkgSubType     *string `json:"BandwidthpkgSubType"`
}

// internetChargeTypes are the values InternetAccessible.InternetChargeType
// takes.
var internetChargeTypes = []string{"TRAFFIC_POSTPAID_BY_HOUR", "BANDWIDTH_POSTPAID_BY_HOUR", "BANDWIDTH_PACKAGE"}

// createParametersOf reads extensive parameters as the adapter and the API
// together would: the reserved ones and names or types the API does not
// have are refused, as are values out of range.
func createParametersOf(extensive map[string]any) (createParameters, error) {
	var p createParameters
	if len(extensive) == 0 {
		return p, nil
	}
	if err := cloud.CheckExtensiveParameters(extensive); err != nil {
		return p, err
	}
	if err := cloud.DecodeParameters(actionCreateLoadBalancer, extensive, &p); err != nil {
		return p, err
	}
	if ia := p.InternetAccessible; ia != nil {
		if ct := ia.InternetChargeType; ct != nil && !slices.Contains(internetChargeTypes, *ct) {
			return p, apiError(cloud.CodeInvalidParameterVal, "InternetAccessible.InternetChargeType %q: must be one of %v", *ct, internetChargeTypes)
		}
		if bw := ia.InternetMaxBandwidthOut; bw != nil {
			if err := checkBandwidth("InternetAccessible.InternetMaxBandwidthOut", *bw); err != nil {
				return p, err
			}
		}
	}
	return p, nil
}

// checkBandwidth checks an outbound bandwidth against the API's range.
func checkBandwidth(name string, mbps int64) error {
	if mbps < 0 || mbps > cloud.MaxInternetBandwidthOut {
		return apiError(cloud.CodeInvalidParameterVal, "%s %d: must be within 0..%d Mbps", name, mbps, cloud.MaxInternetBandwidthOut)
	}
	return nil
}

// ModifyLoadBalancerAttributes changes what attrs sets on a CLB once its
// task is done. A public CLB's bandwidth is within
// 0..cloud.MaxInternetBandwidthOut; an internal CLB has none to set.
func (c *Cloud) ModifyLoadBalancerAttributes(ctx context.Context, lbID string, attrs cloud.LoadBalancerAttributes) error {
	return c.write(ctx, actionModifyLBAttributes, lbID, 0, func(r *request) (*task, []string, error) {
		t, err := c.modifyLoadBalancerAttributes(r, lbID, attrs)
		return t, nil, err
	})
}

// StartModifyLoadBalancerAttributes starts ModifyLoadBalancerAttributes'
// change.
func (c *Cloud) StartModifyLoadBalancerAttributes(ctx context.Context, lbID string, attrs cloud.LoadBalancerAttributes) (taskID string, err error) {
	taskID, _, err = c.start(ctx, actionModifyLBAttributes, lbID, 0, func(r *request) (*task, []string, error) {
		t, err := c.modifyLoadBalancerAttributes(r, lbID, attrs)
		return t, nil, err
	})
	return taskID, err
}

func (c *Cloud) modifyLoadBalancerAttributes(r *request, lbID string, attrs cloud.LoadBalancerAttributes) (*task, error) {
	lb, err := c.writable(lbID)
	if err != nil {
		return nil, err
	}
	// The value, not the caller's pointer: the task may finish later.
	var bandwidth *int64
	if bw := attrs.InternetMaxBandwidthOut; bw != nil {
		if lb.SubnetID != "" {
			return nil, apiError(cloud.CodeInvalidParameterVal,
				"InternetChargeInfo: LoadBalancer %s is internal, and only a public CLB has an internet bandwidth", lbID)
		}
		if err := checkBandwidth("InternetChargeInfo.InternetMaxBandwidthOut", *bw); err != nil {
			return nil, err
		}
		bandwidth = new(*bw)
	}
	return c.startTask(r, lbID, func(succeeded bool) {
		if succeeded && bandwidth != nil {
			lb.InternetMaxBandwidthOut = *bandwidth
		}
	}), nil
}

// existing returns the CLB, or the error of a call naming an unknown one.
func (c *Cloud) existing(lbID string) (*loadBalancer, error) {
	lb, ok := c.lbs[lbID]
	if !ok {
		return nil, apiError(cloud.CodeLBNotFound, "LoadBalancer %s not found", lbID)
	}
	return lb, nil
}

// writable returns the CLB a write may change: one that exists and runs no
// task.
func (c *Cloud) writable(lbID string) (*loadBalancer, error) {
	lb, err := c.existing(lbID)
	if err != nil {
		return nil, err
	}
	if t := c.busy[lbID]; t != nil {
		return nil, apiError(cloud.CodeResourceInOperating, "LoadBalancer %s is running task %s", lbID, t.id)
	}
	return lb, nil
}

// DescribeQuota returns the account's quotas.
func (c *Cloud) DescribeQuota(ctx context.Context) (cloud.Quota, error) {
	r := c.begin(actionDescribeQuota, "", 0)
	err := c.run(ctx, r, func() error { return nil })
	if err != nil {
		return cloud.Quota{}, c.end(r, err)
	}
	return cloud.Quota{
		ListenersPerLoadBalancer: c.limits.ListenersPerLoadBalancer,
		BackendsPerListener:      c.limits.BackendsPerListener,
	}, c.end(r, nil)
}

// matches reports whether the query selects the CLB: by ID if it names
// IDs, otherwise by carrying all its tags.
func matches(q cloud.LoadBalancerQuery, lb *loadBalancer) bool {
	if len(q.IDs) > 0 {
		return slices.Contains(q.IDs, lb.ID)
	}
	for k, v := range q.Tags {
		if got, ok := lb.Tags[k]; !ok || got != v {
			return false
		}
	}
	return true
}
