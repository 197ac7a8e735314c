package controller

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"clb-direct/cloud"
)

// fitQuota trims the desired state to what the account's quotas let the
// Service have on the CLB, and says what was left out. What fits is still
// applied. Listeners and backends the CLB already has are kept before new
// ones, so a quota never makes the controller swap one backend for another.
func fitQuota(desired DesiredState, observed ObservedState, serviceUID types.UID, quota cloud.Quota) (DesiredState, []string) {
	var problems []string
	existing := map[ListenerKey]cloud.Listener{}
	foreign := 0
	for _, l := range observed.Listeners {
		key := ListenerKey{Protocol: l.Protocol, Port: l.Port}
		if ownsListener(serviceUID, l) {
			existing[key] = l
		} else {
			foreign++
		}
	}
	out := desired
	out.Listeners = slices.Clone(desired.Listeners)
	if allowed := quota.ListenersPerLoadBalancer - foreign; quota.ListenersPerLoadBalancer > 0 && len(out.Listeners) > allowed {
		// Keep the listeners that exist, then new ones in port order.
		slices.SortStableFunc(out.Listeners, func(a, b DesiredListener) int {
			_, aExists := existing[a.ListenerKey]
			_, bExists := existing[b.ListenerKey]
			return boolOrder(aExists, bExists)
		})
		allowed = max(allowed, 0)
		var dropped []string
		for _, l := range out.Listeners[allowed:] {
			dropped = append(dropped, l.ListenerKey.String())
		}
		out.Listeners = out.Listeners[:allowed]
		slices.SortFunc(out.Listeners, func(a, b DesiredListener) int { return compareListenerKeys(a.ListenerKey, b.ListenerKey) })
		problems = append(problems, fmt.Sprintf("CLB %s allows %d listeners (account quota) and %d are not this Service's: ports %s get no listener",
			observed.LoadBalancer.ID, quota.ListenersPerLoadBalancer, foreign, summarize(dropped)))
	}
	for i, l := range out.Listeners {
		if quota.BackendsPerListener <= 0 || len(l.Backends) <= quota.BackendsPerListener {
			continue
		}
		registered := map[cloud.BackendKey]bool{}
		if el, ok := existing[l.ListenerKey]; ok {
			for _, b := range observed.Backends[el.ID] {
				registered[b.Key()] = true
			}
		}
		backends := slices.Clone(l.Backends)
		slices.SortStableFunc(backends, func(a, b cloud.Backend) int { return boolOrder(registered[a.Key()], registered[b.Key()]) })
		var dropped []string
		for _, b := range backends[quota.BackendsPerListener:] {
			dropped = append(dropped, b.Key().String())
		}
		backends = backends[:quota.BackendsPerListener]
		slices.SortFunc(backends, compareBackends)
		out.Listeners[i].Backends = backends
		problems = append(problems, fmt.Sprintf("listener %s allows %d backends (account quota): %s are not registered",
			l.ListenerKey, quota.BackendsPerListener, summarize(dropped)))
	}
	return out, problems
}

// boolOrder sorts true before false.
func boolOrder(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return -1
	}
	return 1
}

// exceedsDefaultQuota reports whether the desired state could run into the
// quotas most accounts have: only then is DescribeQuota worth a call.
func exceedsDefaultQuota(desired DesiredState) bool {
	if len(desired.Listeners) > cloud.DefaultListenersPerLoadBalancer {
		return true
	}
	return slices.ContainsFunc(desired.Listeners, func(l DesiredListener) bool { return len(l.Backends) > cloud.DefaultBackendsPerListener })
}

// quotaCache reads the account's quotas at most once per TTL, and only when
// a Service could exceed the usual ones or a write hit a quota.
type quotaCache struct {
	mu      sync.Mutex
	quota   cloud.Quota
	readAt  time.Time
	suspect bool
}

// invalidate makes the next sync read the quotas: a write was refused
// with LimitExceeded, so they are smaller than we thought.
func (q *quotaCache) invalidate() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.readAt, q.suspect = time.Time{}, true
}

// get returns the quotas the desired state must fit, and whether they
// matter at all (false: nothing to trim).
func (q *quotaCache) get(ctx context.Context, c *Controller, desired DesiredState) (cloud.Quota, bool, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.suspect && !exceedsDefaultQuota(desired) {
		return cloud.Quota{}, false, nil
	}
	now := c.opts.Clock.Now()
	if q.readAt.IsZero() || now.Sub(q.readAt) > c.opts.ResyncPeriod {
		quota, err := c.cloud.DescribeQuota(ctx)
		if err != nil {
			return cloud.Quota{}, false, fmt.Errorf("reading the account's CLB quotas: %w", err)
		}
		q.quota, q.readAt = quota, now
	}
	return q.quota, true, nil
}
