package controller

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	v1 "k8s.io/api/core/v1"

	"clb-direct/cloud"
	"clb-direct/readiness"
)

// Annotations on Services, as TKE's documentation names them.
const (
	// AnnotationDirectAccess "true" registers the Service's Pods on its CLB.
	AnnotationDirectAccess = "service.cloud.tencent.com/direct-access"
	// AnnotationBackendWeight is the weight every backend gets (0-100).
	AnnotationBackendWeight = "service.cloud.tencent.com/lb-rs-weight"
	// AnnotationLoadBalancerID is written by the controller: the CLB in use.
	AnnotationLoadBalancerID = "service.kubernetes.io/loadbalance-id"
)

// Finalizer keeps a Service until its CLB resources are cleaned up.
const Finalizer = "service.cloud.tencent.com/clb-direct"

// ReadinessGate is the Pod condition type TKE's readiness gate uses: True
// once the CLB reports the Pod healthy on every listener that selects it.
const ReadinessGate = readiness.GateConditionType

// DefaultBackendWeight is the weight of a backend when the Service does not
// say otherwise; TKE's controller uses the same.
const DefaultBackendWeight int32 = 10

// ServiceConfig is what a Service's annotations ask of the controller.
type ServiceConfig struct {
	DirectAccess  bool
	BackendWeight int32
}

// parseServiceConfig reads the annotations the controller understands. Every
// invalid value is reported in one error so the user can fix them all at
// once; an error means the Service must be left as it is.
func parseServiceConfig(svc *v1.Service) (ServiceConfig, error) {
	cfg := ServiceConfig{BackendWeight: DefaultBackendWeight}
	var errs []error
	if v, ok := svc.Annotations[AnnotationDirectAccess]; ok {
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			errs = append(errs, fmt.Errorf("annotation %s=%q: want \"true\" or \"false\"", AnnotationDirectAccess, v))
		}
		cfg.DirectAccess = b
	}
	if v, ok := svc.Annotations[AnnotationBackendWeight]; ok {
		w, err := strconv.ParseInt(strings.TrimSpace(v), 10, 32)
		if err != nil || w < 0 || w > cloud.MaxWeight {
			errs = append(errs, fmt.Errorf("annotation %s=%q: want an integer from 0 to %d", AnnotationBackendWeight, v, cloud.MaxWeight))
		} else {
			cfg.BackendWeight = int32(w)
		}
	}
	return cfg, errors.Join(errs...)
}
