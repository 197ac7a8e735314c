package controller

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"

	"clb-direct/cloud"
)

// A Service switching between direct access (Pods by IP) and the classic
// mode (Nodes by instance ID) keeps the previous mode's backends on each
// listener until the new mode's are all healthy on it, so the switch never
// leaves a listener without a backend that serves. It waits at most
// switchTimeout, then switches anyway and says so.

// switchPollInterval is how soon a Service waiting on the new backends'
// health is synced again.
const switchPollInterval = 2 * time.Second

// requeueAfter is a sync that did everything it could for now and must
// look again later: not a failure, no backoff, no event.
type requeueAfter struct {
	after  time.Duration
	reason string
}

func (r *requeueAfter) Error() string { return r.reason }

// switchTracker remembers when each Service's switch began.
type switchTracker struct {
	mu      sync.Mutex
	started map[string]time.Time
}

func (s *switchTracker) begin(key string, now time.Time) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started == nil {
		s.started = map[string]time.Time{}
	}
	if t, ok := s.started[key]; ok {
		return t
	}
	s.started[key] = now
	return now
}

func (s *switchTracker) end(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.started, key)
}

// isNode tells a Node backend (classic mode) from a Pod backend.
func isNode(b cloud.Backend) bool { return b.InstanceID != "" }

// holdSwitch takes out of the plan the deregistration of the previous
// mode's backends from listeners whose new-mode backends are not all
// healthy yet. It reports whether something is held.
func (c *Controller) holdSwitch(ctx context.Context, key string, svc *v1.Service, direct bool, observed *ObservedState, desired DesiredState, plan *Plan) (bool, error) {
	previousMode := func(ch BackendChange) bool { return isNode(ch.Backend) == direct }
	if !slices.ContainsFunc(plan.Deregister, previousMode) {
		c.switches.end(key)
		return false, nil
	}
	started := c.switches.begin(key, c.opts.Clock.Now())
	if waited := c.opts.Clock.Since(started); waited > c.opts.SwitchTimeout {
		c.recorder.Eventf(svc, nil, v1.EventTypeWarning, ReasonSwitchTimeout, actionSync,
			"The new backends of CLB %s are not all healthy after %s; switching anyway", observed.LoadBalancer.ID, waited.Round(time.Second))
		c.switches.end(key)
		return false, nil
	}
	ready, err := c.listenersReadyForSwitch(ctx, observed, desired)
	if err != nil {
		return false, err
	}
	held := false
	plan.Deregister = slices.DeleteFunc(plan.Deregister, func(ch BackendChange) bool {
		hold := previousMode(ch) && !ready[ch.Listener]
		held = held || hold
		return hold
	})
	return held, nil
}

// listenersReadyForSwitch reports, per listener, whether every desired
// backend is registered and healthy.
func (c *Controller) listenersReadyForSwitch(ctx context.Context, observed *ObservedState, desired DesiredState) (map[ListenerKey]bool, error) {
	reports, err := c.cloud.DescribeBackendHealth(ctx, []string{observed.LoadBalancer.ID})
	if err != nil {
		return nil, fmt.Errorf("reading target health of CLB %s: %w", observed.LoadBalancer.ID, err)
	}
	type target struct {
		listenerID string
		key        cloud.BackendKey
	}
	healthy := map[target]bool{}
	for _, h := range reports {
		healthy[target{h.ListenerID, cloud.BackendKey{IP: h.IP, InstanceID: h.InstanceID, Port: h.Port}}] = h.Healthy
	}
	ids := map[ListenerKey]string{}
	for _, l := range observed.Listeners {
		ids[ListenerKey{Protocol: l.Protocol, Port: l.Port}] = l.ID
	}
	ready := map[ListenerKey]bool{}
	for _, dl := range desired.Listeners {
		id := ids[dl.ListenerKey]
		ready[dl.ListenerKey] = id != "" && !slices.ContainsFunc(dl.Backends, func(b cloud.Backend) bool {
			return !healthy[target{id, b.Key()}]
		})
	}
	return ready, nil
}
