package fake

import (
	"context"
	"net"
	"slices"

	"clb-direct/cloud"
)

// DescribeBackends is DescribeTargets: the backends of every listener of
// the CLB, in order of registration, with an entry for each listener even
// when it has none.
func (c *Cloud) DescribeBackends(ctx context.Context, lbID string) (map[string][]cloud.Backend, error) {
	r := c.begin(actionDescribeTargets, lbID, 0)
	var out map[string][]cloud.Backend
	err := c.run(ctx, r, func() error {
		lb, err := c.existing(lbID)
		if err != nil {
			return err
		}
		out = make(map[string][]cloud.Backend, len(lb.listeners))
		for _, l := range lb.listeners {
			bs := make([]cloud.Backend, 0, len(l.backends))
			for _, b := range l.backends {
				bs = append(bs, b.Backend)
			}
			out[l.ID] = bs
		}
		return nil
	})
	return out, c.end(r, err)
}

// RegisterBackends is BatchRegisterTargets. A backend already on its
// listener stays as it is, weight included: registering is idempotent, and
// only ModifyBackendWeights changes a weight.
func (c *Cloud) RegisterBackends(ctx context.Context, lbID string, backends []cloud.ListenerBackend) error {
	return c.write(ctx, actionBatchRegisterTargets, lbID, len(backends), c.batch(lbID, backends))
}

// StartRegisterBackends starts RegisterBackends's change. failedListenerIDs
// are the listeners of the batch that failed at once (the API's
// FailListenerIdSet); the task applies the batch to the others.
func (c *Cloud) StartRegisterBackends(ctx context.Context, lbID string, backends []cloud.ListenerBackend) (taskID string, failedListenerIDs []string, err error) {
	return c.start(ctx, actionBatchRegisterTargets, lbID, len(backends), c.batch(lbID, backends))
}

// DeregisterBackends is BatchDeregisterTargets; a backend that is not on its
// listener is no error.
func (c *Cloud) DeregisterBackends(ctx context.Context, lbID string, backends []cloud.ListenerBackend) error {
	return c.write(ctx, actionBatchDeregisterTargets, lbID, len(backends), c.batch(lbID, backends))
}

// StartDeregisterBackends starts DeregisterBackends's change, failing at
// once for failedListenerIDs as StartRegisterBackends does.
func (c *Cloud) StartDeregisterBackends(ctx context.Context, lbID string, backends []cloud.ListenerBackend) (taskID string, failedListenerIDs []string, err error) {
	return c.start(ctx, actionBatchDeregisterTargets, lbID, len(backends), c.batch(lbID, backends))
}

// ModifyBackendWeights is BatchModifyTargetWeight; every backend must be on
// its listener, or the whole call is an InvalidParameter. The API cannot
// name the listeners it failed for, so a partial failure (see
// SetPartialFailureRate) fails the whole call with a FailedOperation at
// once, while the task changes the other listeners.
func (c *Cloud) ModifyBackendWeights(ctx context.Context, lbID string, backends []cloud.ListenerBackend) error {
	return c.write(ctx, actionBatchModifyWeight, lbID, len(backends), c.batch(lbID, backends))
}

// StartModifyBackendWeights starts ModifyBackendWeights's change, failing at
// once for failedListenerIDs as StartRegisterBackends does.
func (c *Cloud) StartModifyBackendWeights(ctx context.Context, lbID string, backends []cloud.ListenerBackend) (taskID string, failedListenerIDs []string, err error) {
	return c.start(ctx, actionBatchModifyWeight, lbID, len(backends), c.batch(lbID, backends))
}

// batch returns the start of a batch call, whose action is the request's.
// The call is validated as a whole (a batch beyond the limit is an
// InvalidParameterValue, since no quota can make it pass, and a listener
// quota overflow a LimitExceeded); only then may single listeners fail.
func (c *Cloud) batch(lbID string, backends []cloud.ListenerBackend) startFunc {
	return func(r *request) (*task, []string, error) {
		action := r.call.Action
		lb, err := c.writable(lbID)
		if err != nil {
			return nil, nil, err
		}
		if len(backends) == 0 {
			return nil, nil, apiError(cloud.CodeMissingParameter, "Targets: no target given")
		}
		if len(backends) > c.limits.BackendsPerBatch {
			return nil, nil, apiError(cloud.CodeInvalidParameterVal, "Targets: %d given, at most %d per call", len(backends), c.limits.BackendsPerBatch)
		}

		// The listeners in the order the batch names them first.
		var order []*listener
		groups := map[*listener][]cloud.Backend{}
		for _, b := range backends {
			l := lb.listener(b.ListenerID)
			if l == nil {
				return nil, nil, apiError(cloud.CodeListenerNotFound, "listener %s not found on LoadBalancer %s", b.ListenerID, lbID)
			}
			if err := validBackend(b.Backend, action != actionBatchDeregisterTargets); err != nil {
				return nil, nil, err
			}
			if _, seen := groups[l]; !seen {
				order = append(order, l)
			}
			groups[l] = append(groups[l], b.Backend)
		}
		for _, l := range order {
			if err := c.checkBatch(action, l, groups[l]); err != nil {
				return nil, nil, err
			}
		}

		var failed []string
		var applied []*listener
		for _, l := range order {
			if c.chance(c.partialFailureRate) {
				failed = append(failed, l.ID)
			} else {
				applied = append(applied, l)
			}
		}
		t := c.startTask(r, lbID, func(succeeded bool) {
			if !succeeded {
				return
			}
			for _, l := range applied {
				c.applyBatch(action, l, groups[l])
			}
		})
		return t, failed, nil
	}
}

// checkBatch checks what the batch would do to one listener against its
// current backends.
func (c *Cloud) checkBatch(action string, l *listener, bs []cloud.Backend) error {
	switch action {
	case actionBatchRegisterTargets:
		added := map[cloud.BackendKey]bool{}
		for _, b := range bs {
			if l.backend(b.Key()) == nil {
				added[b.Key()] = true
			}
		}
		if n := len(l.backends) + len(added); n > c.limits.BackendsPerListener {
			return apiError(cloud.CodeLimitExceeded, "listener %s would have %d targets, more than the quota of %d",
				l.ID, n, c.limits.BackendsPerListener)
		}
	case actionBatchModifyWeight:
		for _, b := range bs {
			if l.backend(b.Key()) == nil {
				return apiError(cloud.CodeInvalidParameter, "target %s is not bound to listener %s", b.Key(), l.ID)
			}
		}
	}
	return nil
}

func (c *Cloud) applyBatch(action string, l *listener, bs []cloud.Backend) {
	switch action {
	case actionBatchRegisterTargets:
		for _, b := range bs {
			if l.backend(b.Key()) == nil {
				l.backends = append(l.backends, &backend{Backend: b, healthy: c.defaultHealthy, detail: healthDetail(c.defaultHealthy, c.defaultHealthDetail)})
			}
		}
	case actionBatchDeregisterTargets:
		gone := map[cloud.BackendKey]bool{}
		for _, b := range bs {
			gone[b.Key()] = true
		}
		l.backends = slices.DeleteFunc(l.backends, func(b *backend) bool { return gone[b.Key()] })
	case actionBatchModifyWeight:
		for _, b := range bs {
			l.backend(b.Key()).Weight = b.Weight
		}
	}
}

// validBackend checks a target as the API does: an ENI IP or an instance,
// a port, and, where it matters, a weight.
func validBackend(b cloud.Backend, checkWeight bool) error {
	switch {
	case b.IP == "" && b.InstanceID == "":
		return apiError(cloud.CodeMissingParameter, "target %s: EniIp or InstanceId is required", b.Key())
	case b.IP != "" && b.InstanceID != "":
		return apiError(cloud.CodeInvalidParameter, "target %s: EniIp and InstanceId are exclusive", b.Key())
	case b.IP != "" && net.ParseIP(b.IP) == nil:
		return apiError(cloud.CodeInvalidParameterVal, "target %s: EniIp is not an IP address", b.Key())
	case b.Port < 1 || b.Port > 65535:
		return apiError(cloud.CodeInvalidParameterVal, "target %s: Port must be within 1..65535", b.Key())
	case checkWeight && (b.Weight < 0 || b.Weight > cloud.MaxWeight):
		return apiError(cloud.CodeInvalidParameterVal, "target %s: Weight %d must be within 0..%d", b.Key(), b.Weight, cloud.MaxWeight)
	}
	return nil
}

// DescribeBackendHealth is DescribeTargetHealth: the health of every
// backend registered on the given CLBs, which must all exist.
func (c *Cloud) DescribeBackendHealth(ctx context.Context, lbIDs []string) ([]cloud.BackendHealth, error) {
	var callLB string
	if len(lbIDs) == 1 {
		callLB = lbIDs[0]
	}
	r := c.begin(actionDescribeTargetHealth, callLB, 0)
	var out []cloud.BackendHealth
	err := c.run(ctx, r, func() error {
		if len(lbIDs) == 0 {
			return apiError(cloud.CodeMissingParameter, "LoadBalancerIds: none given")
		}
		for _, id := range lbIDs {
			lb, err := c.existing(id)
			if err != nil {
				return err
			}
			for _, l := range lb.listeners {
				for _, b := range l.backends {
					out = append(out, cloud.BackendHealth{
						LoadBalancerID: lb.ID, ListenerID: l.ID, IP: b.IP, InstanceID: b.InstanceID, Port: b.Port,
						Healthy: b.healthy, Detail: b.detail,
					})
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, c.end(r, err)
	}
	return out, c.end(r, nil)
}
