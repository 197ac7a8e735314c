package fake

import (
	"context"
	"slices"

	"clb-direct/cloud"
)

// DescribeListeners returns the listeners of a CLB in order of creation.
func (c *Cloud) DescribeListeners(ctx context.Context, lbID string) ([]cloud.Listener, error) {
	r := c.begin(actionDescribeListeners, lbID, 0)
	var out []cloud.Listener
	err := c.run(ctx, r, func() error {
		lb, err := c.existing(lbID)
		if err != nil {
			return err
		}
		for _, l := range lb.listeners {
			out = append(out, l.export())
		}
		return nil
	})
	return out, c.end(r, err)
}

// CreateListener creates a listener, with the CLB's defaults for what spec
// leaves empty, and returns it once it exists.
func (c *Cloud) CreateListener(ctx context.Context, lbID string, spec cloud.ListenerSpec) (cloud.Listener, error) {
	var created cloud.Listener
	err := c.write(ctx, actionCreateListener, lbID, 0, func(r *request) (t *task, _ []string, err error) {
		created, t, err = c.createListener(r, lbID, spec)
		return t, nil, err
	})
	if err != nil {
		return cloud.Listener{}, err
	}
	return created, nil
}

// StartCreateListener starts creating a listener and returns its ID; it is
// listed once the task is done.
func (c *Cloud) StartCreateListener(ctx context.Context, lbID string, spec cloud.ListenerSpec) (listenerID, taskID string, err error) {
	taskID, _, err = c.start(ctx, actionCreateListener, lbID, 0, func(r *request) (*task, []string, error) {
		created, t, err := c.createListener(r, lbID, spec)
		listenerID = created.ID
		return t, nil, err
	})
	if err != nil {
		return "", "", err
	}
	return listenerID, taskID, nil
}

func (c *Cloud) createListener(r *request, lbID string, spec cloud.ListenerSpec) (cloud.Listener, *task, error) {
	lb, err := c.writable(lbID)
	if err != nil {
		return cloud.Listener{}, nil, err
	}
	spec, err = listenerToCreate(lb, spec)
	if err != nil {
		return cloud.Listener{}, nil, err
	}
	if len(lb.listeners) >= c.limits.ListenersPerLoadBalancer {
		return cloud.Listener{}, nil, apiError(cloud.CodeLimitExceeded,
			"LoadBalancer %s has %d listeners, the most it may have", lbID, len(lb.listeners))
	}
	l := &listener{Listener: cloud.Listener{ID: c.newListenerID(), ListenerSpec: spec}}
	r.call.ListenerID = l.ID
	t := c.startTask(r, lbID, func(succeeded bool) {
		if succeeded {
			lb.listeners = append(lb.listeners, l)
		}
	})
	return l.export(), t, nil
}

// ModifyListener changes a listener's health check, session persistence and
// scheduler to those of spec; a nil health check or an empty scheduler
// leaves the listener's own. As in the API, which changes only what a call
// names, the zero fields of an enabled health check keep the listener's
// values, and a disabled one keeps its settings.
func (c *Cloud) ModifyListener(ctx context.Context, lbID, listenerID string, spec cloud.ListenerSpec) error {
	return c.write(ctx, actionModifyListener, lbID, 0, func(r *request) (*task, []string, error) {
		t, err := c.modifyListener(r, lbID, listenerID, spec)
		return t, nil, err
	})
}

// StartModifyListener starts ModifyListener's change.
func (c *Cloud) StartModifyListener(ctx context.Context, lbID, listenerID string, spec cloud.ListenerSpec) (taskID string, err error) {
	taskID, _, err = c.start(ctx, actionModifyListener, lbID, 0, func(r *request) (*task, []string, error) {
		t, err := c.modifyListener(r, lbID, listenerID, spec)
		return t, nil, err
	})
	return taskID, err
}

func (c *Cloud) modifyListener(r *request, lbID, listenerID string, spec cloud.ListenerSpec) (*task, error) {
	r.call.ListenerID = listenerID
	lb, l, err := c.writableListener(lbID, listenerID)
	if err != nil {
		return nil, err
	}
	next, err := withSettings(l.ListenerSpec, spec)
	if err != nil {
		return nil, err
	}
	return c.startTask(r, lb.ID, func(succeeded bool) {
		if succeeded {
			l.ListenerSpec = next
		}
	}), nil
}

// DeleteListener deletes a listener with its backends.
func (c *Cloud) DeleteListener(ctx context.Context, lbID, listenerID string) error {
	return c.write(ctx, actionDeleteListener, lbID, 0, func(r *request) (*task, []string, error) {
		t, err := c.deleteListener(r, lbID, listenerID)
		return t, nil, err
	})
}

// StartDeleteListener starts deleting a listener; it is gone when the task
// is done.
func (c *Cloud) StartDeleteListener(ctx context.Context, lbID, listenerID string) (taskID string, err error) {
	taskID, _, err = c.start(ctx, actionDeleteListener, lbID, 0, func(r *request) (*task, []string, error) {
		t, err := c.deleteListener(r, lbID, listenerID)
		return t, nil, err
	})
	return taskID, err
}

func (c *Cloud) deleteListener(r *request, lbID, listenerID string) (*task, error) {
	r.call.ListenerID = listenerID
	lb, l, err := c.writableListener(lbID, listenerID)
	if err != nil {
		return nil, err
	}
	return c.startTask(r, lb.ID, func(succeeded bool) {
		if succeeded {
			lb.listeners = slices.DeleteFunc(lb.listeners, func(x *listener) bool { return x == l })
		}
	}), nil
}

// writableListener returns a listener that a write may change, and its CLB.
func (c *Cloud) writableListener(lbID, listenerID string) (*loadBalancer, *listener, error) {
	lb, err := c.writable(lbID)
	if err != nil {
		return nil, nil, err
	}
	l := lb.listener(listenerID)
	if l == nil {
		return nil, nil, apiError(cloud.CodeListenerNotFound, "listener %s not found on LoadBalancer %s", listenerID, lbID)
	}
	return lb, l, nil
}

// defaultHealthCheck is what the CLB checks when nobody says otherwise, and
// what fills the fields an enabled health check leaves zero.
var defaultHealthCheck = cloud.HealthCheck{
	Enabled:            true,
	IntervalSeconds:    5,
	TimeoutSeconds:     2,
	HealthyThreshold:   3,
	UnhealthyThreshold: 3,
}

// listenerToCreate validates spec for a new listener on lb, which must not
// share its port and protocol with another, and fills in the CLB's defaults.
func listenerToCreate(lb *loadBalancer, spec cloud.ListenerSpec) (cloud.ListenerSpec, error) {
	if spec.Protocol != cloud.ProtocolTCP && spec.Protocol != cloud.ProtocolUDP {
		return spec, apiError(cloud.CodeInvalidParameterVal, "Protocol %q: must be TCP or UDP", spec.Protocol)
	}
	if spec.Port < 1 || spec.Port > 65535 {
		return spec, apiError(cloud.CodeInvalidParameterVal, "Port %d: must be within 1..65535", spec.Port)
	}
	for _, l := range lb.listeners {
		if l.Port == spec.Port && l.Protocol == spec.Protocol {
			return spec, apiError(cloud.CodePortCheckFailed, "%s port %d is taken by listener %s", spec.Protocol, spec.Port, l.ID)
		}
	}
	hc := defaultHealthCheck
	base := cloud.ListenerSpec{Name: spec.Name, Protocol: spec.Protocol, Port: spec.Port, HealthCheck: &hc, Scheduler: "WRR"}
	return withSettings(base, spec)
}

// withSettings returns base with the health check, session persistence and
// scheduler of spec, validated as the CLB does; a nil health check or an
// empty scheduler keeps base's, and a health check changes base's only in
// what it sets (see healthCheckOver).
func withSettings(base, spec cloud.ListenerSpec) (cloud.ListenerSpec, error) {
	out := base
	if spec.HealthCheck != nil {
		current := defaultHealthCheck
		if base.HealthCheck != nil {
			current = *base.HealthCheck
		}
		hc, err := validHealthCheck(healthCheckOver(current, *spec.HealthCheck))
		if err != nil {
			return base, err
		}
		out.HealthCheck = &hc
	}
	switch spec.Scheduler {
	case "":
	case "WRR", "LEAST_CONN":
		out.Scheduler = spec.Scheduler
	default:
		return base, apiError(cloud.CodeInvalidParameterVal, "Scheduler %q: must be WRR or LEAST_CONN", spec.Scheduler)
	}
	if s := spec.SessionExpireSeconds; s != 0 && (s < 30 || s > 3600) {
		return base, apiError(cloud.CodeInvalidParameterVal, "SessionExpireTime %d: must be 0 or within 30..3600", s)
	}
	out.SessionExpireSeconds = spec.SessionExpireSeconds
	return out, nil
}

// healthCheckOver is base changed by a request naming hc, as the API
// changes a listener's check (and the adapter speaks to it, sending only
// what is set): a disabled hc turns the check off and keeps its settings;
// an enabled one sets the fields hc sets (non-zero) and keeps base's others.
func healthCheckOver(base, hc cloud.HealthCheck) cloud.HealthCheck {
	out := base
	out.Enabled = hc.Enabled
	if !hc.Enabled {
		return out
	}
	for _, f := range []struct{ dst, v *int64 }{
		{&out.IntervalSeconds, &hc.IntervalSeconds}, {&out.TimeoutSeconds, &hc.TimeoutSeconds},
		{&out.HealthyThreshold, &hc.HealthyThreshold}, {&out.UnhealthyThreshold, &hc.UnhealthyThreshold},
		{&out.HTTPCode, &hc.HTTPCode},
	} {
		if *f.v != 0 {
			*f.dst = *f.v
		}
	}
	for _, f := range []struct{ dst, v *string }{
		{&out.CheckType, &hc.CheckType}, {&out.HTTPPath, &hc.HTTPPath},
		{&out.HTTPDomain, &hc.HTTPDomain}, {&out.HTTPMethod, &hc.HTTPMethod},
	} {
		if *f.v != "" {
			*f.dst = *f.v
		}
	}
	return out
}

// validHealthCheck checks an enabled health check against the CLB's ranges
// and fills its zero fields with the defaults.
func validHealthCheck(hc cloud.HealthCheck) (cloud.HealthCheck, error) {
	if !hc.Enabled {
		return hc, nil
	}
	fields := []struct {
		name     string
		value    *int64
		def      int64
		min, max int64
	}{
		{"IntervalTime", &hc.IntervalSeconds, defaultHealthCheck.IntervalSeconds, 5, 300},
		{"TimeOut", &hc.TimeoutSeconds, defaultHealthCheck.TimeoutSeconds, 2, 60},
		{"HealthNum", &hc.HealthyThreshold, defaultHealthCheck.HealthyThreshold, 2, 10},
		{"UnHealthNum", &hc.UnhealthyThreshold, defaultHealthCheck.UnhealthyThreshold, 2, 10},
	}
	for _, f := range fields {
		switch {
		case *f.value == 0:
			*f.value = f.def
		case *f.value < f.min || *f.value > f.max:
			return hc, apiError(cloud.CodeInvalidParameterVal, "HealthCheck.%s %d: must be within %d..%d", f.name, *f.value, f.min, f.max)
		}
	}
	switch hc.CheckType {
	case "", "TCP", "HTTP", "CUSTOM":
	default:
		return hc, apiError(cloud.CodeInvalidParameterVal, "HealthCheck.CheckType %q: must be TCP, HTTP or CUSTOM", hc.CheckType)
	}
	return hc, nil
}
