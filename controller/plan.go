package controller

import (
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"clb-direct/cloud"
	"clb-direct/tkeconfig"
)

// ObservedState is what the CLB holds, as last read (or as left by our own
// successful writes since).
type ObservedState struct {
	LoadBalancer cloud.LoadBalancer
	Listeners    []cloud.Listener
	// Backends by listener ID.
	Backends map[string][]cloud.Backend
	// auditListenersNext says which half of the CLB the next resync reads:
	// the listeners' settings, or else the targets.
	auditListenersNext bool
	// audited is when a resync last read the CLB.
	audited time.Time
}

// BackendChange is one backend to register, re-weight or deregister on the
// listener serving a Service port.
type BackendChange struct {
	Listener ListenerKey
	cloud.Backend
}

// Plan is the difference between desired and observed, in the order it must
// be applied: new listeners, then new backends, weights, old backends, old
// listeners. Registering before deregistering keeps a listener serving while
// its Pods are replaced.
type Plan struct {
	CreateListeners []cloud.ListenerSpec
	// ModifyListeners bring the Service's listeners to the attributes its
	// TkeServiceConfig declares.
	ModifyListeners []ListenerChange
	// Bandwidth is the CLB's new outbound bandwidth cap; nil: unchanged.
	Bandwidth       *int64
	Register        []BackendChange
	ModifyWeight    []BackendChange
	Deregister      []BackendChange
	DeleteListeners []cloud.Listener
	// Conflicts are Service ports whose protocol and port are taken on the
	// CLB by a listener that is not this Service's; they are left alone.
	Conflicts []ListenerKey
}

// ListenerChange is new settings for an existing listener.
type ListenerChange struct {
	Listener cloud.Listener
	Spec     cloud.ListenerSpec
}

// Empty reports whether applying the plan would write nothing.
func (p Plan) Empty() bool {
	return p.Bandwidth == nil && len(p.CreateListeners) == 0 && len(p.ModifyListeners) == 0 && len(p.Register) == 0 && len(p.ModifyWeight) == 0 &&
		len(p.Deregister) == 0 && len(p.DeleteListeners) == 0
}

// ownsListener reports whether the listener was created for the Service.
func ownsListener(serviceUID types.UID, l cloud.Listener) bool {
	return strings.HasPrefix(l.Name, listenerNamePrefix(serviceUID))
}

// planChanges diffs desired against observed. It only ever touches listeners
// the Service owns; the plan is deterministic (sorted like its inputs).
func planChanges(serviceUID types.UID, desired DesiredState, observed ObservedState) Plan {
	var plan Plan
	if desired.Bandwidth != nil && *desired.Bandwidth != observed.LoadBalancer.InternetMaxBandwidthOut {
		plan.Bandwidth = desired.Bandwidth
	}
	byKey := make(map[ListenerKey]cloud.Listener, len(observed.Listeners))
	for _, l := range observed.Listeners {
		byKey[ListenerKey{Protocol: l.Protocol, Port: l.Port}] = l
	}
	wanted := make(map[ListenerKey]bool, len(desired.Listeners))
	for _, dl := range desired.Listeners {
		wanted[dl.ListenerKey] = true
		existing, exists := byKey[dl.ListenerKey]
		switch {
		case !exists:
			spec, _ := tkeconfig.DesiredListenerSpec(defaultListenerSpec(dl), dl.Settings)
			plan.CreateListeners = append(plan.CreateListeners, spec)
			for _, b := range dl.Backends {
				plan.Register = append(plan.Register, BackendChange{Listener: dl.ListenerKey, Backend: b})
			}
		case !ownsListener(serviceUID, existing):
			plan.Conflicts = append(plan.Conflicts, dl.ListenerKey)
		default:
			if spec, changed := tkeconfig.DesiredListenerSpec(existing.ListenerSpec, dl.Settings); changed {
				plan.ModifyListeners = append(plan.ModifyListeners, ListenerChange{Listener: existing, Spec: spec})
			}
			diffBackends(&plan, dl, observed.Backends[existing.ID])
		}
	}
	for _, l := range observed.Listeners {
		key := ListenerKey{Protocol: l.Protocol, Port: l.Port}
		if !wanted[key] && ownsListener(serviceUID, l) {
			plan.DeleteListeners = append(plan.DeleteListeners, l)
		}
	}
	slices.SortFunc(plan.DeleteListeners, func(a, b cloud.Listener) int {
		return compareListenerKeys(ListenerKey{a.Protocol, a.Port}, ListenerKey{b.Protocol, b.Port})
	})
	return plan
}

func diffBackends(plan *Plan, dl DesiredListener, observed []cloud.Backend) {
	current := make(map[cloud.BackendKey]cloud.Backend, len(observed))
	for _, b := range observed {
		current[b.Key()] = b
	}
	for _, b := range dl.Backends {
		have, ok := current[b.Key()]
		switch {
		case !ok:
			plan.Register = append(plan.Register, BackendChange{Listener: dl.ListenerKey, Backend: b})
		case have.Weight != b.Weight:
			plan.ModifyWeight = append(plan.ModifyWeight, BackendChange{Listener: dl.ListenerKey, Backend: b})
		}
		delete(current, b.Key())
	}
	stale := make([]cloud.Backend, 0, len(current))
	for _, b := range current {
		stale = append(stale, b)
	}
	slices.SortFunc(stale, compareBackends)
	for _, b := range stale {
		plan.Deregister = append(plan.Deregister, BackendChange{Listener: dl.ListenerKey, Backend: b})
	}
}

// defaultListenerSpec is a new listener with a TCP health check towards its
// backends: Pod-level health checking is a reason users pick direct access,
// and the readiness gate relies on it.
func defaultListenerSpec(dl DesiredListener) cloud.ListenerSpec {
	return cloud.ListenerSpec{
		Name:     dl.Name,
		Protocol: dl.Protocol,
		Port:     dl.Port,
		HealthCheck: &cloud.HealthCheck{
			Enabled:            true,
			IntervalSeconds:    5,
			TimeoutSeconds:     2,
			HealthyThreshold:   3,
			UnhealthyThreshold: 3,
		},
	}
}
