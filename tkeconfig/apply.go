package tkeconfig

import (
	"cmp"
	"fmt"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"clb-direct/cloud"
)

// ManagedByLabel marks the auto configs this controller writes, with value
// ManagedBy, so they can be listed and told from a user's.
const (
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedBy      = "clb-direct"
)

// clbDefaultHealthCheck is what the CLB checks when nobody says otherwise
// (as the API documents it): the base a config's health check changes when
// the listener's own is unknown.
var clbDefaultHealthCheck = cloud.HealthCheck{
	Enabled: true, IntervalSeconds: 5, TimeoutSeconds: 2, HealthyThreshold: 3, UnhealthyThreshold: 3,
}

// DesiredListenerSpec returns the listener current (as it is on the CLB)
// with what l declares applied, and whether that differs from current, so
// that ModifyListener is called only when it changes something. Attributes l
// does not declare keep current's values; a nil l declares nothing.
//
// Two rules make the result one that ModifyListener can reach, so a listener
// is not modified again on every sync:
//   - a health check that is (or is made) disabled takes only the switch:
//     the CLB keeps a disabled check's settings and the API sends it nothing
//     else, so the declared settings wait until the check is enabled;
//   - session persistence is one number, 0 for off: enable false makes it 0;
//     a sessionExpireTime alone changes it only while persistence is on; and
//     enable true without a time keeps the CLB's time if persistence is on,
//     or sets DefaultSessionExpireTime.
//
// l is assumed valid (FromUnstructured checked it).
func DesiredListenerSpec(current cloud.ListenerSpec, l *L4Listener) (cloud.ListenerSpec, bool) {
	out := current
	if current.HealthCheck != nil {
		// The result must not share the caller's health check.
		hc := *current.HealthCheck
		out.HealthCheck = &hc
	}
	if l == nil {
		return out, false
	}
	if l.HealthCheck != nil {
		out.HealthCheck = desiredHealthCheck(current.HealthCheck, l.HealthCheck)
	}
	if l.Session != nil {
		out.SessionExpireSeconds = desiredSessionExpire(current.SessionExpireSeconds, l.Session)
	}
	if l.Scheduler != nil {
		out.Scheduler = *l.Scheduler
	}
	return out, !specsEqual(current, out)
}

func desiredHealthCheck(current *cloud.HealthCheck, c *HealthCheck) *cloud.HealthCheck {
	out := clbDefaultHealthCheck
	if current != nil {
		out = *current
	}
	if c.Enable != nil {
		out.Enabled = *c.Enable
	}
	if !out.Enabled {
		return &out
	}
	for _, f := range []struct {
		dst *int64
		v   *int64
	}{
		{&out.IntervalSeconds, c.IntervalTime},
		{&out.TimeoutSeconds, c.Timeout},
		{&out.HealthyThreshold, c.HealthNum},
		{&out.UnhealthyThreshold, c.UnHealthNum},
		{&out.HTTPCode, c.HTTPCode},
	} {
		if f.v != nil {
			*f.dst = *f.v
		}
	}
	for _, f := range []struct {
		dst *string
		v   *string
	}{
		{&out.HTTPPath, c.HTTPCheckPath},
		{&out.HTTPDomain, c.HTTPCheckDomain},
		{&out.HTTPMethod, c.HTTPCheckMethod},
		{&out.CheckType, c.CheckType},
	} {
		if f.v != nil {
			*f.dst = *f.v
		}
	}
	return &out
}

func desiredSessionExpire(current int64, s *Session) int64 {
	enabled := current > 0
	if s.Enable != nil {
		enabled = *s.Enable
	}
	switch {
	case !enabled:
		return 0
	case s.SessionExpireTime != nil:
		return *s.SessionExpireTime
	case current > 0:
		return current
	default:
		return DefaultSessionExpireTime
	}
}

// specsEqual compares listener specs by value, health checks included.
func specsEqual(a, b cloud.ListenerSpec) bool {
	ha, hb := a.HealthCheck, b.HealthCheck
	a.HealthCheck, b.HealthCheck = nil, nil
	if a != b || (ha == nil) != (hb == nil) {
		return false
	}
	return ha == nil || *ha == *hb
}

// AutoConfig returns the <service>-auto-service-config object that
// service.cloud.tencent.com/tke-service-config-auto asks for: the current
// settings of the Service's CLB listeners and its bandwidth (0 when unknown
// or not applicable, as on an internal CLB), in TkeServiceConfig form.
//
// It is owned by the Service (controller reference) so that the garbage
// collector deletes it with the Service. blockOwnerDeletion is false: true
// would need update on services/finalizers, and nothing needs the Service's
// deletion to wait for the config's.
//
// Values the CRD's schema would refuse (listeners that are neither TCP nor
// UDP, a value outside its range, a timeout above the interval) are left
// out, so the API server accepts the object whatever the CLB reports.
// Listeners are sorted by protocol and port, so the same CLB state gives the
// same object and a caller can skip an update that changes nothing.
// Applying the result to the same listeners with DesiredListenerSpec
// changes nothing.
func AutoConfig(namespace, serviceName string, ownerUID types.UID, listeners []cloud.Listener, bandwidth int64) *unstructured.Unstructured {
	var lb LoadBalancerConfig
	for _, cl := range listeners {
		if l, ok := autoListener(cl.ListenerSpec); ok {
			lb.L4Listeners = append(lb.L4Listeners, l)
		}
	}
	slices.SortFunc(lb.L4Listeners, func(a, b L4Listener) int {
		return cmp.Or(cmp.Compare(a.Protocol, b.Protocol), cmp.Compare(a.Port, b.Port))
	})
	lb.InternetMaxBandwidthOut = inRange(bandwidth, bandwidthRange)

	spec, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&lb)
	if err != nil {
		// LoadBalancerConfig holds only strings, integers, bools and
		// pointers to them, which always convert.
		panic(fmt.Sprintf("tkeconfig: converting %+v: %v", lb, err))
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"spec": map[string]any{"loadBalancer": spec},
	}}
	u.SetGroupVersionKind(GVK)
	u.SetNamespace(namespace)
	u.SetName(AutoConfigName(serviceName))
	u.SetLabels(map[string]string{ManagedByLabel: ManagedBy})
	u.SetOwnerReferences([]metav1.OwnerReference{{
		APIVersion:         "v1",
		Kind:               "Service",
		Name:               serviceName,
		UID:                ownerUID,
		Controller:         ptr(true),
		BlockOwnerDeletion: ptr(false),
	}})
	return u
}

// autoListener is the config that declares a listener's current settings,
// or false for a listener a TkeServiceConfig cannot describe.
func autoListener(s cloud.ListenerSpec) (L4Listener, bool) {
	protocol := string(s.Protocol)
	if !slices.Contains(protocols, protocol) || !portRange.contains(int64(s.Port)) {
		return L4Listener{}, false
	}
	l := L4Listener{Protocol: protocol, Port: s.Port, Scheduler: oneOf(s.Scheduler, schedulers)}
	enabled := s.SessionExpireSeconds > 0
	l.Session = &Session{Enable: &enabled}
	if enabled {
		l.Session.SessionExpireTime = inRange(s.SessionExpireSeconds, sessionExpireTimeRange)
	}
	if hc := s.HealthCheck; hc != nil {
		h := &HealthCheck{
			Enable:          ptr(hc.Enabled),
			IntervalTime:    inRange(hc.IntervalSeconds, intervalTimeRange),
			HealthNum:       inRange(hc.HealthyThreshold, healthNumRange),
			UnHealthNum:     inRange(hc.UnhealthyThreshold, unHealthNumRange),
			Timeout:         inRange(hc.TimeoutSeconds, timeoutRange),
			HTTPCode:        inRange(hc.HTTPCode, httpCodeRange),
			HTTPCheckPath:   nonEmpty(hc.HTTPPath),
			HTTPCheckDomain: nonEmpty(hc.HTTPDomain),
			HTTPCheckMethod: oneOf(hc.HTTPMethod, httpMethods),
			CheckType:       oneOf(hc.CheckType, checkTypes),
		}
		if h.Timeout != nil && h.IntervalTime != nil && *h.Timeout > *h.IntervalTime {
			h.Timeout = nil
		}
		l.HealthCheck = h
	}
	return l, true
}

func ptr[T any](v T) *T { return &v }

func inRange(v int64, r valueRange) *int64 {
	if !r.contains(v) {
		return nil
	}
	return &v
}

func oneOf(v string, allowed []string) *string {
	if !slices.Contains(allowed, v) {
		return nil
	}
	return &v
}

func nonEmpty(v string) *string {
	if v == "" {
		return nil
	}
	return &v
}
