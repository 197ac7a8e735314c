package tencent

import (
	"context"
	"fmt"
	"slices"
	"strings"

	clb "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/clb/v20180317"

	"clb-direct/cloud"
)

// targetTypeCVM is the Type DescribeTargets gives an instance; anything else
// (ENI) is a backend by IP.
const targetTypeCVM = "CVM"

// DescribeBackends is DescribeTargets: the backends of every layer-4
// listener of the CLB, with an entry for each listener even when it has
// none. A Node is identified by instance ID, anything else by its IP, as
// RegisterBackends registers them.
func (c *Cloud) DescribeBackends(ctx context.Context, loadBalancerID string) (map[string][]cloud.Backend, error) {
	req := clb.NewDescribeTargetsRequest()
	req.LoadBalancerId = str(loadBalancerID)
	resp, err := send(ctx, c, op{lbID: loadBalancerID, idempotent: true}, req, (*clb.Client).DescribeTargets)
	if err != nil {
		return nil, err
	}
	out := make(map[string][]cloud.Backend, len(resp.Response.Listeners))
	for _, l := range resp.Response.Listeners {
		if l == nil || l.ListenerId == nil {
			continue
		}
		bs := make([]cloud.Backend, 0, len(l.Targets))
		for _, t := range l.Targets {
			if t != nil {
				bs = append(bs, backendFromAPI(t))
			}
		}
		out[*l.ListenerId] = bs
	}
	return out, nil
}

func backendFromAPI(t *clb.Backend) cloud.Backend {
	b := cloud.Backend{Port: int32(deref(t.Port)), Weight: int32(deref(t.Weight))}
	ips := derefs(t.PrivateIpAddresses)
	switch {
	case deref(t.Type) == targetTypeCVM && deref(t.InstanceId) != "", len(ips) == 0:
		b.InstanceID = deref(t.InstanceId)
	default:
		b.IP = ips[0]
	}
	return b
}

// RegisterBackends is one BatchRegisterTargets call. Registering a backend
// that is there already changes nothing, so the call is retried like a
// read.
func (c *Cloud) RegisterBackends(ctx context.Context, loadBalancerID string, backends []cloud.ListenerBackend) error {
	req := clb.NewBatchRegisterTargetsRequest()
	if err := checkBatch(req.GetAction(), backends); err != nil {
		return err
	}
	req.LoadBalancerId = str(loadBalancerID)
	req.Targets = batchTargets(backends, true)
	resp, err := send(ctx, c, op{lbID: loadBalancerID, idempotent: true}, req, (*clb.Client).BatchRegisterTargets)
	if err != nil {
		return err
	}
	return c.finishBatch(ctx, req.GetAction(), loadBalancerID, backends, resp.Response.RequestId, resp.Response.FailListenerIdSet)
}

// DeregisterBackends is one BatchDeregisterTargets call; like registering,
// it is idempotent.
func (c *Cloud) DeregisterBackends(ctx context.Context, loadBalancerID string, backends []cloud.ListenerBackend) error {
	req := clb.NewBatchDeregisterTargetsRequest()
	if err := checkBatch(req.GetAction(), backends); err != nil {
		return err
	}
	req.LoadBalancerId = str(loadBalancerID)
	req.Targets = batchTargets(backends, false)
	resp, err := send(ctx, c, op{lbID: loadBalancerID, idempotent: true}, req, (*clb.Client).BatchDeregisterTargets)
	if err != nil {
		return err
	}
	return c.finishBatch(ctx, req.GetAction(), loadBalancerID, backends, resp.Response.RequestId, resp.Response.FailListenerIdSet)
}

// ModifyBackendWeights is one BatchModifyTargetWeight call, the backends
// grouped by listener; setting a weight twice is the same as once.
func (c *Cloud) ModifyBackendWeights(ctx context.Context, loadBalancerID string, backends []cloud.ListenerBackend) error {
	req := clb.NewBatchModifyTargetWeightRequest()
	if err := checkBatch(req.GetAction(), backends); err != nil {
		return err
	}
	req.LoadBalancerId = str(loadBalancerID)
	req.ModifyList = weightRules(backends)
	resp, err := send(ctx, c, op{lbID: loadBalancerID, idempotent: true}, req, (*clb.Client).BatchModifyTargetWeight)
	if err != nil {
		return err
	}
	return c.waitTask(ctx, req.GetAction(), loadBalancerID, resp.Response.RequestId)
}

// checkBatch refuses, without a call, a batch the API would refuse: the
// caller splits its work with cloud.Batches.
func checkBatch(action string, backends []cloud.ListenerBackend) error {
	switch n := len(backends); {
	case n == 0:
		return cloud.NewError(action, cloud.CodeMissingParameter, "no targets given", "")
	case n > cloud.MaxBackendsPerBatch:
		return cloud.NewError(action, cloud.CodeInvalidParameterVal,
			fmt.Sprintf("%d targets given, at most %d per call: split them with cloud.Batches", n, cloud.MaxBackendsPerBatch), "")
	}
	return nil
}

// batchTargets converts backends: a Pod by EniIp, a Node by InstanceId.
func batchTargets(backends []cloud.ListenerBackend, withWeight bool) []*clb.BatchTarget {
	out := make([]*clb.BatchTarget, 0, len(backends))
	for _, b := range backends {
		t := &clb.BatchTarget{ListenerId: str(b.ListenerID), Port: i64(b.Port)}
		t.EniIp, t.InstanceId = optStr(b.IP), optStr(b.InstanceID)
		if withWeight {
			t.Weight = i64(b.Weight)
		}
		out = append(out, t)
	}
	return out
}

func weightRules(backends []cloud.ListenerBackend) []*clb.RsWeightRule {
	var rules []*clb.RsWeightRule
	byListener := map[string]*clb.RsWeightRule{}
	for _, b := range backends {
		rule, ok := byListener[b.ListenerID]
		if !ok {
			rule = &clb.RsWeightRule{ListenerId: str(b.ListenerID)}
			byListener[b.ListenerID] = rule
			rules = append(rules, rule)
		}
		rule.Targets = append(rule.Targets, &clb.Target{
			Port: i64(b.Port), EniIp: optStr(b.IP), InstanceId: optStr(b.InstanceID), Weight: i64(b.Weight),
		})
	}
	return rules
}

// finishBatch waits for the task of the listeners a batch call did not fail
// for, then reports those it failed for as a *cloud.PartialFailure.
func (c *Cloud) finishBatch(ctx context.Context, action, lbID string, backends []cloud.ListenerBackend, taskID *string, failSet []*string) error {
	failed := derefs(failSet)
	allFailed := true
	for _, b := range backends {
		allFailed = allFailed && slices.Contains(failed, b.ListenerID)
	}
	// When every listener failed nothing runs, and there is no task to wait
	// for.
	if !allFailed {
		if err := c.waitTask(ctx, action, lbID, taskID); err != nil {
			return err
		}
	}
	if len(failed) > 0 {
		return &cloud.PartialFailure{Action: action, FailedListenerIDs: failed}
	}
	return nil
}

// DescribeBackendHealth is DescribeTargetHealth. The API takes at most
// maxIDsPerDescribe CLBs a call, so more IDs take one call per chunk of
// that many; otherwise it is one call.
func (c *Cloud) DescribeBackendHealth(ctx context.Context, loadBalancerIDs []string) ([]cloud.BackendHealth, error) {
	var out []cloud.BackendHealth
	for ids := range slices.Chunk(loadBalancerIDs, maxIDsPerDescribe) {
		req := clb.NewDescribeTargetHealthRequest()
		req.LoadBalancerIds = strs(ids)
		resp, err := send(ctx, c, op{lbID: single(ids), idempotent: true}, req, (*clb.Client).DescribeTargetHealth)
		if err != nil {
			return nil, err
		}
		out = append(out, healthFromAPI(resp.Response.LoadBalancers)...)
	}
	return out, nil
}

func healthFromAPI(lbs []*clb.LoadBalancerHealth) []cloud.BackendHealth {
	var out []cloud.BackendHealth
	for _, lb := range lbs {
		if lb == nil {
			continue
		}
		for _, l := range lb.Listeners {
			if l == nil {
				continue
			}
			for _, r := range l.Rules {
				if r == nil {
					continue
				}
				for _, t := range r.Targets {
					if t == nil {
						continue
					}
					h := cloud.BackendHealth{
						LoadBalancerID: deref(lb.LoadBalancerId),
						ListenerID:     deref(l.ListenerId),
						IP:             deref(t.IP),
						Port:           int32(deref(t.Port)),
						Healthy:        deref(t.HealthStatus),
						// The SDK's (and the API's) spelling.
						Detail: deref(t.HealthStatusDetial),
					}
					// A CVM target is named by its instance ID: that, not its
					// IP, is how it was registered.
					if id := deref(t.TargetId); strings.HasPrefix(id, "ins-") {
						h.InstanceID, h.IP = id, ""
					}
					out = append(out, h)
				}
			}
		}
	}
	return out
}
