// Package instrumented decorates a cloud.Interface with Prometheus metrics:
// every call is counted by its Tencent Cloud API action and result and
// timed, and the backends that batch calls changed are counted.
package instrumented

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"clb-direct/cloud"
)

// The Tencent Cloud API action of each cloud.Interface method.
const (
	actionDescribeLoadBalancers        = "DescribeLoadBalancers"
	actionCreateLoadBalancer           = "CreateLoadBalancer"
	actionDeleteLoadBalancer           = "DeleteLoadBalancer"
	actionModifyLoadBalancerAttributes = "ModifyLoadBalancerAttributes"
	actionDescribeListeners            = "DescribeListeners"
	actionCreateListener               = "CreateListener"
	actionModifyListener               = "ModifyListener"
	actionDeleteListener               = "DeleteListener"
	actionDescribeTargets              = "DescribeTargets"
	actionBatchRegisterTargets         = "BatchRegisterTargets"
	actionBatchDeregisterTargets       = "BatchDeregisterTargets"
	actionBatchModifyTargetWeight      = "BatchModifyTargetWeight"
	actionDescribeTargetHealth         = "DescribeTargetHealth"
	actionDescribeQuota                = "DescribeQuota"
)

var actions = []string{
	actionDescribeLoadBalancers, actionCreateLoadBalancer, actionDeleteLoadBalancer, actionModifyLoadBalancerAttributes,
	actionDescribeListeners, actionCreateListener, actionModifyListener, actionDeleteListener,
	actionDescribeTargets, actionBatchRegisterTargets, actionBatchDeregisterTargets, actionBatchModifyTargetWeight,
	actionDescribeTargetHealth, actionDescribeQuota,
}

// ResultOK is the result label of a call that succeeded; a failed call's is
// its error kind (cloud.KindOf) in lower case: transient, notfound,
// terminal or quota. A batch call that failed for some listeners only
// (*cloud.PartialFailure) is transient, as the controller treats it.
const ResultOK = "ok"

var results = []string{
	ResultOK,
	strings.ToLower(cloud.KindTransient.String()),
	strings.ToLower(cloud.KindNotFound.String()),
	strings.ToLower(cloud.KindTerminal.String()),
	strings.ToLower(cloud.KindQuota.String()),
}

// Operations of clbdirect_cloud_backends_total.
const (
	OperationRegister     = "register"
	OperationDeregister   = "deregister"
	OperationModifyWeight = "modify_weight"
)

// Cloud is a cloud.Interface that records metrics about the one it wraps.
type Cloud struct {
	inner    cloud.Interface
	calls    *prometheus.CounterVec
	duration *prometheus.HistogramVec
	backends *prometheus.CounterVec
}

var _ cloud.Interface = (*Cloud)(nil)

// New wraps inner, registering the metrics on reg:
//
//   - clbdirect_cloud_api_calls_total{action,result}
//   - clbdirect_cloud_api_call_duration_seconds{action}
//   - clbdirect_cloud_backends_total{operation}
//
// Every action and result starts at zero, so rates and alerts see a series
// before the first call.
func New(inner cloud.Interface, reg prometheus.Registerer) *Cloud {
	c := &Cloud{
		inner: inner,
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "clbdirect", Subsystem: "cloud", Name: "api_calls_total",
			Help: "CLB API calls by Tencent Cloud API action and result: ok, or the error kind (transient, notfound, terminal, quota).",
		}, []string{"action", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "clbdirect", Subsystem: "cloud", Name: "api_call_duration_seconds",
			Help: "Duration of CLB API calls by action, including the wait for a write's asynchronous task.",
			// Reads take tens of milliseconds; writes wait for their task,
			// seconds and sometimes a minute.
			Buckets: []float64{0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"action"}),
		backends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "clbdirect", Subsystem: "cloud", Name: "backends_total",
			Help: "Backends registered, deregistered or re-weighted by batch calls (operation register, deregister, modify_weight); " +
				"a partly failed call counts the backends of the listeners it changed.",
		}, []string{"operation"}),
	}
	reg.MustRegister(c.calls, c.duration, c.backends)
	for _, action := range actions {
		for _, result := range results {
			c.calls.WithLabelValues(action, result)
		}
		c.duration.WithLabelValues(action)
	}
	for _, op := range []string{OperationRegister, OperationDeregister, OperationModifyWeight} {
		c.backends.WithLabelValues(op)
	}
	return c
}

// resultOf is the result label of a call's error.
func resultOf(err error) string {
	if err == nil {
		return ResultOK
	}
	return strings.ToLower(cloud.KindOf(err).String())
}

// observe records one call of action that started at start.
func (c *Cloud) observe(action string, start time.Time, err error) {
	c.duration.WithLabelValues(action).Observe(time.Since(start).Seconds())
	c.calls.WithLabelValues(action, resultOf(err)).Inc()
}

// batch records a batch call: the backends on the listeners it changed are
// counted, those of the listeners a *cloud.PartialFailure names are not.
func (c *Cloud) batch(action, operation string, backends []cloud.ListenerBackend, start time.Time, err error) {
	c.observe(action, start, err)
	changed := len(backends)
	var partial *cloud.PartialFailure
	switch {
	case err == nil:
	case errors.As(err, &partial):
		for _, b := range backends {
			if partial.Failed(b.ListenerID) {
				changed--
			}
		}
	default:
		changed = 0
	}
	c.backends.WithLabelValues(operation).Add(float64(changed))
}

func (c *Cloud) DescribeLoadBalancers(ctx context.Context, query cloud.LoadBalancerQuery) ([]cloud.LoadBalancer, error) {
	start := time.Now()
	lbs, err := c.inner.DescribeLoadBalancers(ctx, query)
	c.observe(actionDescribeLoadBalancers, start, err)
	return lbs, err
}

func (c *Cloud) CreateLoadBalancer(ctx context.Context, spec cloud.LoadBalancerSpec) (cloud.LoadBalancer, error) {
	start := time.Now()
	lb, err := c.inner.CreateLoadBalancer(ctx, spec)
	c.observe(actionCreateLoadBalancer, start, err)
	return lb, err
}

func (c *Cloud) DeleteLoadBalancer(ctx context.Context, loadBalancerID string) error {
	start := time.Now()
	err := c.inner.DeleteLoadBalancer(ctx, loadBalancerID)
	c.observe(actionDeleteLoadBalancer, start, err)
	return err
}

func (c *Cloud) ModifyLoadBalancerAttributes(ctx context.Context, loadBalancerID string, attrs cloud.LoadBalancerAttributes) error {
	start := time.Now()
	err := c.inner.ModifyLoadBalancerAttributes(ctx, loadBalancerID, attrs)
	c.observe(actionModifyLoadBalancerAttributes, start, err)
	return err
}

func (c *Cloud) DescribeListeners(ctx context.Context, loadBalancerID string) ([]cloud.Listener, error) {
	start := time.Now()
	listeners, err := c.inner.DescribeListeners(ctx, loadBalancerID)
	c.observe(actionDescribeListeners, start, err)
	return listeners, err
}

func (c *Cloud) CreateListener(ctx context.Context, loadBalancerID string, spec cloud.ListenerSpec) (cloud.Listener, error) {
	start := time.Now()
	l, err := c.inner.CreateListener(ctx, loadBalancerID, spec)
	c.observe(actionCreateListener, start, err)
	return l, err
}

func (c *Cloud) ModifyListener(ctx context.Context, loadBalancerID, listenerID string, spec cloud.ListenerSpec) error {
	start := time.Now()
	err := c.inner.ModifyListener(ctx, loadBalancerID, listenerID, spec)
	c.observe(actionModifyListener, start, err)
	return err
}

func (c *Cloud) DeleteListener(ctx context.Context, loadBalancerID, listenerID string) error {
	start := time.Now()
	err := c.inner.DeleteListener(ctx, loadBalancerID, listenerID)
	c.observe(actionDeleteListener, start, err)
	return err
}

func (c *Cloud) DescribeBackends(ctx context.Context, loadBalancerID string) (map[string][]cloud.Backend, error) {
	start := time.Now()
	backends, err := c.inner.DescribeBackends(ctx, loadBalancerID)
	c.observe(actionDescribeTargets, start, err)
	return backends, err
}

func (c *Cloud) RegisterBackends(ctx context.Context, loadBalancerID string, backends []cloud.ListenerBackend) error {
	start := time.Now()
	err := c.inner.RegisterBackends(ctx, loadBalancerID, backends)
	c.batch(actionBatchRegisterTargets, OperationRegister, backends, start, err)
	return err
}

func (c *Cloud) DeregisterBackends(ctx context.Context, loadBalancerID string, backends []cloud.ListenerBackend) error {
	start := time.Now()
	err := c.inner.DeregisterBackends(ctx, loadBalancerID, backends)
	c.batch(actionBatchDeregisterTargets, OperationDeregister, backends, start, err)
	return err
}

func (c *Cloud) ModifyBackendWeights(ctx context.Context, loadBalancerID string, backends []cloud.ListenerBackend) error {
	start := time.Now()
	err := c.inner.ModifyBackendWeights(ctx, loadBalancerID, backends)
	c.batch(actionBatchModifyTargetWeight, OperationModifyWeight, backends, start, err)
	return err
}

func (c *Cloud) DescribeBackendHealth(ctx context.Context, loadBalancerIDs []string) ([]cloud.BackendHealth, error) {
	start := time.Now()
	health, err := c.inner.DescribeBackendHealth(ctx, loadBalancerIDs)
	c.observe(actionDescribeTargetHealth, start, err)
	return health, err
}

func (c *Cloud) DescribeQuota(ctx context.Context) (cloud.Quota, error) {
	start := time.Now()
	quota, err := c.inner.DescribeQuota(ctx)
	c.observe(actionDescribeQuota, start, err)
	return quota, err
}
