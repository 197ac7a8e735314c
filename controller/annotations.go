package controller

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"clb-direct/cloud"
	"clb-direct/readiness"
)

// Annotations on Services, as TKE's documentation names them.
const (
	// AnnotationDirectAccess "true" registers the Service's Pods on its CLB.
	AnnotationDirectAccess = "service.cloud.tencent.com/direct-access"
	// AnnotationBackendWeight is the weight every backend gets (0-100).
	AnnotationBackendWeight = "service.cloud.tencent.com/lb-rs-weight"
	// AnnotationGraceShutdown "true" keeps a terminating Pod registered
	// with weight 0 until it is gone, so its connections drain.
	AnnotationGraceShutdown = "service.cloud.tencent.com/enable-grace-shutdown"
	// AnnotationGraceShutdownTKEx "true" gives a Pod that is not ready
	// weight 0 instead of deregistering it.
	AnnotationGraceShutdownTKEx = "service.cloud.tencent.com/enable-grace-shutdown-tkex"
	// AnnotationExistingLoadBalancer names a CLB the user made: it is used
	// as it is, never deleted, and only listeners we create on it change.
	AnnotationExistingLoadBalancer = "service.kubernetes.io/tke-existed-lbid"
	// AnnotationInternalSubnet makes a new CLB internal, in that subnet.
	AnnotationInternalSubnet = "service.kubernetes.io/qcloud-loadbalancer-internal-subnetid"
	// AnnotationExtensiveParameters is a JSON object merged into the
	// CreateLoadBalancer request (bandwidth, ISP, zones...).
	AnnotationExtensiveParameters = "service.kubernetes.io/service.extensiveParameters"
	// AnnotationTkeServiceConfig names a TkeServiceConfig in the Service's
	// namespace that tunes the CLB's listeners and bandwidth.
	AnnotationTkeServiceConfig = "service.cloud.tencent.com/tke-service-config"
	// AnnotationTkeServiceConfigAuto "true" makes the controller keep a
	// TkeServiceConfig <service>-auto-service-config that shows the CLB's
	// current listener settings.
	AnnotationTkeServiceConfigAuto = "service.cloud.tencent.com/tke-service-config-auto"
	// AnnotationPreviousLoadBalancers is the controller's own bookkeeping:
	// CLBs the Service used before and that are still to be released.
	AnnotationPreviousLoadBalancers = "service.cloud.tencent.com/clb-direct-previous-lbids"
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
	// GraceShutdown keeps terminating Pods at weight 0 until they are gone.
	GraceShutdown bool
	// GraceShutdownTKEx keeps Pods that are not ready at weight 0.
	GraceShutdownTKEx bool
	// ExistingLoadBalancerID is the user's CLB to use instead of our own.
	ExistingLoadBalancerID string
	// InternalSubnetID makes the CLB we create internal.
	InternalSubnetID string
	// ExtensiveParameters is the validated JSON object for CreateLoadBalancer.
	ExtensiveParameters string
	// TkeServiceConfig is the name of the TkeServiceConfig to apply.
	TkeServiceConfig string
	// AutoServiceConfig asks for <service>-auto-service-config.
	AutoServiceConfig bool
}

var (
	loadBalancerIDPattern = regexp.MustCompile(`^lb-[0-9a-z]+$`)
	subnetIDPattern       = regexp.MustCompile(`^subnet-[0-9a-z]+$`)
)

// parseServiceConfig reads the annotations the controller understands. Every
// invalid value is reported in one error so the user can fix them all at
// once; an error means the Service must be left as it is.
func parseServiceConfig(svc *v1.Service) (ServiceConfig, error) {
	cfg := ServiceConfig{BackendWeight: DefaultBackendWeight}
	var errs []error
	for annotation, field := range map[string]*bool{
		AnnotationDirectAccess:         &cfg.DirectAccess,
		AnnotationGraceShutdown:        &cfg.GraceShutdown,
		AnnotationGraceShutdownTKEx:    &cfg.GraceShutdownTKEx,
		AnnotationTkeServiceConfigAuto: &cfg.AutoServiceConfig,
	} {
		v, ok := svc.Annotations[annotation]
		if !ok {
			continue
		}
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			errs = append(errs, fmt.Errorf("annotation %s=%q: want \"true\" or \"false\"", annotation, v))
		}
		*field = b
	}
	if v, ok := svc.Annotations[AnnotationBackendWeight]; ok {
		w, err := strconv.ParseInt(strings.TrimSpace(v), 10, 32)
		if err != nil || w < 0 || w > cloud.MaxWeight {
			errs = append(errs, fmt.Errorf("annotation %s=%q: want an integer from 0 to %d", AnnotationBackendWeight, v, cloud.MaxWeight))
		} else {
			cfg.BackendWeight = int32(w)
		}
	}
	for _, id := range []struct {
		annotation string
		pattern    *regexp.Regexp
		example    string
		field      *string
	}{
		{AnnotationExistingLoadBalancer, loadBalancerIDPattern, "lb-xxxxxxxx", &cfg.ExistingLoadBalancerID},
		{AnnotationInternalSubnet, subnetIDPattern, "subnet-xxxxxxxx", &cfg.InternalSubnetID},
	} {
		v, ok := svc.Annotations[id.annotation]
		if !ok {
			continue
		}
		if v = strings.TrimSpace(v); !id.pattern.MatchString(v) {
			errs = append(errs, fmt.Errorf("annotation %s=%q: want an ID like %s", id.annotation, v, id.example))
			continue
		}
		*id.field = v
	}
	if v, ok := svc.Annotations[AnnotationTkeServiceConfig]; ok {
		if problems := validation.IsDNS1123Subdomain(v); len(problems) > 0 {
			errs = append(errs, fmt.Errorf("annotation %s=%q: not a valid object name: %s", AnnotationTkeServiceConfig, v, strings.Join(problems, "; ")))
		} else {
			cfg.TkeServiceConfig = v
		}
	}
	if v, ok := svc.Annotations[AnnotationExtensiveParameters]; ok {
		var params map[string]any
		err := json.Unmarshal([]byte(v), &params)
		if err == nil && params == nil {
			err = errors.New("null")
		}
		if err == nil {
			err = cloud.CheckExtensiveParameters(params)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("annotation %s: want a JSON object of CreateLoadBalancer parameters, e.g. {\"InternetAccessible\":{\"InternetMaxBandwidthOut\":10}}: %w", AnnotationExtensiveParameters, err))
		} else {
			cfg.ExtensiveParameters = v
		}
	}
	// Map order is random; the message must not be.
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return cfg, errors.Join(errs...)
}
