package tencent

import (
	"context"

	clb "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/clb/v20180317"

	"clb-direct/cloud"
)

// DescribeListeners returns the CLB's listeners (one call: the API does not
// page listeners).
func (c *Cloud) DescribeListeners(ctx context.Context, loadBalancerID string) ([]cloud.Listener, error) {
	req := clb.NewDescribeListenersRequest()
	req.LoadBalancerId = str(loadBalancerID)
	resp, err := send(ctx, c, op{lbID: loadBalancerID, idempotent: true}, req, (*clb.Client).DescribeListeners)
	if err != nil {
		return nil, err
	}
	out := make([]cloud.Listener, 0, len(resp.Response.Listeners))
	for _, l := range resp.Response.Listeners {
		if l != nil {
			out = append(out, listenerFromAPI(l))
		}
	}
	return out, nil
}

func listenerFromAPI(l *clb.Listener) cloud.Listener {
	return cloud.Listener{
		ID: deref(l.ListenerId),
		ListenerSpec: cloud.ListenerSpec{
			Name:                 deref(l.ListenerName),
			Protocol:             cloud.Protocol(deref(l.Protocol)),
			Port:                 int32(deref(l.Port)),
			HealthCheck:          healthCheckFromAPI(l.HealthCheck),
			SessionExpireSeconds: deref(l.SessionExpireTime),
			Scheduler:            deref(l.Scheduler),
		},
	}
}

func healthCheckFromAPI(h *clb.HealthCheck) *cloud.HealthCheck {
	if h == nil {
		return nil
	}
	return &cloud.HealthCheck{
		Enabled:            deref(h.HealthSwitch) == 1,
		IntervalSeconds:    deref(h.IntervalTime),
		TimeoutSeconds:     deref(h.TimeOut),
		HealthyThreshold:   deref(h.HealthNum),
		UnhealthyThreshold: deref(h.UnHealthNum),
		CheckType:          deref(h.CheckType),
		HTTPCode:           deref(h.HttpCode),
		HTTPPath:           deref(h.HttpCheckPath),
		HTTPDomain:         deref(h.HttpCheckDomain),
		HTTPMethod:         deref(h.HttpCheckMethod),
	}
}

// healthCheckToAPI sends only what hc sets: zero fields keep the CLB's
// defaults, and a disabled check sends nothing but the switch.
func healthCheckToAPI(hc *cloud.HealthCheck) *clb.HealthCheck {
	if hc == nil {
		return nil
	}
	if !hc.Enabled {
		return &clb.HealthCheck{HealthSwitch: i64(0)}
	}
	optInt := func(n int64) *int64 {
		if n == 0 {
			return nil
		}
		return &n
	}
	return &clb.HealthCheck{
		HealthSwitch:    i64(1),
		IntervalTime:    optInt(hc.IntervalSeconds),
		TimeOut:         optInt(hc.TimeoutSeconds),
		HealthNum:       optInt(hc.HealthyThreshold),
		UnHealthNum:     optInt(hc.UnhealthyThreshold),
		CheckType:       optStr(hc.CheckType),
		HttpCode:        optInt(hc.HTTPCode),
		HttpCheckPath:   optStr(hc.HTTPPath),
		HttpCheckDomain: optStr(hc.HTTPDomain),
		HttpCheckMethod: optStr(hc.HTTPMethod),
	}
}

// CreateListener creates one listener and returns it once its task is done,
// as DescribeListeners would (see createdListener). It is not retried after
// a network failure: a second create of the same port would fail on the
// first one's listener.
func (c *Cloud) CreateListener(ctx context.Context, loadBalancerID string, spec cloud.ListenerSpec) (cloud.Listener, error) {
	req := clb.NewCreateListenerRequest()
	req.LoadBalancerId = str(loadBalancerID)
	req.Ports = []*int64{i64(spec.Port)}
	req.Protocol = str(string(spec.Protocol))
	if spec.Name != "" {
		req.ListenerNames = strs([]string{spec.Name})
	}
	req.HealthCheck = healthCheckToAPI(spec.HealthCheck)
	if spec.SessionExpireSeconds > 0 {
		req.SessionExpireTime = i64(spec.SessionExpireSeconds)
	}
	req.Scheduler = optStr(spec.Scheduler)
	resp, err := send(ctx, c, op{lbID: loadBalancerID}, req, (*clb.Client).CreateListener)
	if err != nil {
		return cloud.Listener{}, err
	}
	ids := derefs(resp.Response.ListenerIds)
	if len(ids) == 0 || ids[0] == "" {
		return cloud.Listener{}, cloud.NewError(req.GetAction(), CodeMalformedResponse, "no ListenerIds in the response", deref(resp.Response.RequestId))
	}
	if err := c.waitTask(ctx, req.GetAction(), loadBalancerID, resp.Response.RequestId); err != nil {
		return cloud.Listener{}, err
	}
	return createdListener(ids[0], spec), nil
}

// The CLB's defaults for what CreateListener leaves out, as the API
// documents them.
var (
	defaultHealthCheck = cloud.HealthCheck{
		Enabled: true, IntervalSeconds: 5, TimeoutSeconds: 2, HealthyThreshold: 3, UnhealthyThreshold: 3,
	}
	defaultScheduler = "WRR"
)

// createdListener is the listener CreateListener made from spec: what the
// request set (healthCheckToAPI sends an enabled check's non-zero fields, and
// only the switch of a disabled one) over the CLB's defaults. That is what
// the caller records as observed, without a call to read it back.
func createdListener(id string, spec cloud.ListenerSpec) cloud.Listener {
	hc := defaultHealthCheck
	if in := spec.HealthCheck; in != nil {
		hc.Enabled = in.Enabled
		if in.Enabled {
			for _, f := range []struct{ dst, v *int64 }{
				{&hc.IntervalSeconds, &in.IntervalSeconds}, {&hc.TimeoutSeconds, &in.TimeoutSeconds},
				{&hc.HealthyThreshold, &in.HealthyThreshold}, {&hc.UnhealthyThreshold, &in.UnhealthyThreshold},
				{&hc.HTTPCode, &in.HTTPCode},
			} {
				if *f.v != 0 {
					*f.dst = *f.v
				}
			}
			hc.CheckType, hc.HTTPPath, hc.HTTPDomain, hc.HTTPMethod = in.CheckType, in.HTTPPath, in.HTTPDomain, in.HTTPMethod
		}
	}
	spec.HealthCheck = &hc
	if spec.Scheduler == "" {
		spec.Scheduler = defaultScheduler
	}
	return cloud.Listener{ID: id, ListenerSpec: spec}
}

// ModifyListener sets the listener's health check (when spec has one),
// session persistence (0 turns it off) and scheduler (when set). Setting
// the same values again changes nothing, so it is retried like a read.
func (c *Cloud) ModifyListener(ctx context.Context, loadBalancerID, listenerID string, spec cloud.ListenerSpec) error {
	req := clb.NewModifyListenerRequest()
	req.LoadBalancerId = str(loadBalancerID)
	req.ListenerId = str(listenerID)
	req.HealthCheck = healthCheckToAPI(spec.HealthCheck)
	req.SessionExpireTime = i64(spec.SessionExpireSeconds)
	req.Scheduler = optStr(spec.Scheduler)
	resp, err := send(ctx, c, op{lbID: loadBalancerID, idempotent: true}, req, (*clb.Client).ModifyListener)
	if err != nil {
		return err
	}
	return c.waitTask(ctx, req.GetAction(), loadBalancerID, resp.Response.RequestId)
}

// DeleteListener deletes a listener with its backends and waits for the
// task.
func (c *Cloud) DeleteListener(ctx context.Context, loadBalancerID, listenerID string) error {
	req := clb.NewDeleteListenerRequest()
	req.LoadBalancerId = str(loadBalancerID)
	req.ListenerId = str(listenerID)
	resp, err := send(ctx, c, op{lbID: loadBalancerID}, req, (*clb.Client).DeleteListener)
	if err != nil {
		return err
	}
	return c.waitTask(ctx, req.GetAction(), loadBalancerID, resp.Response.RequestId)
}
