package controller

import (
	"slices"
	"strconv"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"

	"clb-direct/cloud"
	"clb-direct/readiness"
)

// Expect tells the readiness worker where a Pod should be registered, with
// the same functions that decide where it is registered: the Services that
// select it, each port's listener and the Pod's resolved target port, and
// whether the CLB has it there as last read or written.
func (c *Controller) Expect(pod *v1.Pod) readiness.Expectation {
	var exp readiness.Expectation
	for _, svc := range c.servicesSelecting(pod) {
		if !c.asksForDirectAccess(svc) {
			continue
		}
		key := cache.MetaObjectToName(svc).String()
		exp.Services = append(exp.Services, key)
		observed := c.observed.get(key, svc.UID)
		for _, port := range svc.Spec.Ports {
			protocol, ok := listenerProtocol(port.Protocol)
			if !ok {
				continue
			}
			targetPort, ok := resolveTargetPort(port, pod)
			if !ok {
				continue
			}
			lk := ListenerKey{Protocol: protocol, Port: port.Port}
			target := readiness.Target{Service: key, Listener: lk.String(), IP: pod.Status.PodIP, Port: targetPort}
			if observed != nil {
				fillRegistration(&target, observed, svc, lk)
			}
			exp.Targets = append(exp.Targets, target)
		}
	}
	slices.Sort(exp.Services)
	return exp
}

// fillRegistration completes a target from the observed CLB: the listener
// this Service owns on that port, and whether the Pod is on it.
func fillRegistration(t *readiness.Target, observed *ObservedState, svc *v1.Service, lk ListenerKey) {
	t.LoadBalancerID = observed.LoadBalancer.ID
	for _, l := range observed.Listeners {
		if l.Protocol != lk.Protocol || l.Port != lk.Port || !ownsListener(svc.UID, l) {
			continue
		}
		t.ListenerID = l.ID
		t.HealthCheck = describeHealthCheck(l.Protocol, l.HealthCheck)
		want := cloud.BackendKey{IP: t.IP, Port: t.Port}
		t.Registered = slices.ContainsFunc(observed.Backends[l.ID], func(b cloud.Backend) bool { return b.Key() == want })
		return
	}
}

func describeHealthCheck(protocol cloud.Protocol, hc *cloud.HealthCheck) string {
	if hc == nil || !hc.Enabled {
		return "no health check (always healthy)"
	}
	check := strings.ToUpper(hc.CheckType)
	if check == "" {
		// The listener protocol's default: a UDP listener is not checked
		// over TCP.
		check = string(protocol)
	}
	if check == "HTTP" {
		method := hc.HTTPMethod
		if method == "" {
			method = "GET"
		}
		return "HTTP " + strings.ToUpper(method) + " " + hc.HTTPPath
	}
	return check
}

// wantsDirectAccess reports whether the controller registers the Service's
// Pods: a direct-access LoadBalancer of our class, not being deleted, with
// valid annotations.
func (c *Controller) wantsDirectAccess(svc *v1.Service) bool {
	if !c.wantsLoadBalancer(svc) {
		return false
	}
	cfg, err := parseServiceConfig(svc)
	return err == nil && cfg.DirectAccess
}

// SelectedByDirectAccess tells the webhook whether a new Pod needs the
// readiness gate.
func (c *Controller) SelectedByDirectAccess(pod *v1.Pod) bool {
	return slices.ContainsFunc(c.servicesSelecting(pod), c.asksForDirectAccess)
}

// asksForDirectAccess is wantsDirectAccess for the readiness gate: a
// Service whose direct-access annotation says true keeps its Pods' gates
// closed even while another of its annotations is invalid. Its CLB is then
// left as it is, so its new Pods are not registered, and opening their gates
// would let a rollout delete the old Pods that still serve.
func (c *Controller) asksForDirectAccess(svc *v1.Service) bool {
	if !c.wantsLoadBalancer(svc) {
		return false
	}
	direct, err := strconv.ParseBool(strings.TrimSpace(svc.Annotations[AnnotationDirectAccess]))
	return err == nil && direct
}

// HasSynced reports whether every cache Expect reads is synced.
func (c *Controller) HasSynced() bool {
	for _, synced := range c.cachesSynced {
		if !synced() {
			return false
		}
	}
	return true
}
