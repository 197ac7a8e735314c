// Package tkeconfig reads TKE's TkeServiceConfig custom resource
// (cloud.tencent.com/v1alpha1), which tunes the CLB listeners of the Service
// that names it in service.cloud.tencent.com/tke-service-config, and writes
// the <service>-auto-service-config object that
// service.cloud.tencent.com/tke-service-config-auto asks for.
//
// The package is pure: it converts, validates and compares; reading and
// writing the objects and calling the CLB are the controller's job. Its Go
// types mirror the CRD's schema (deploy/crd/tkeserviceconfigs.yaml) with
// pointer fields, because TKE's rule is that an attribute a config does not
// declare is left as it is on the CLB: "not declared" must stay distinct from
// "declared as the zero value".
package tkeconfig

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// The resource's API coordinates, as deploy/crd/tkeserviceconfigs.yaml
// defines them.
const (
	Group    = "cloud.tencent.com"
	Version  = "v1alpha1"
	Kind     = "TkeServiceConfig"
	Resource = "tkeserviceconfigs"
)

// GVR is what the dynamic client and informers need to read the resource.
var GVR = schema.GroupVersionResource{Group: Group, Version: Version, Resource: Resource}

// GVK is the kind of the objects FromUnstructured accepts and AutoConfig
// writes.
var GVK = schema.GroupVersionKind{Group: Group, Version: Version, Kind: Kind}

// Values of the enumerated fields, as the CLB API spells them.
const (
	ProtocolTCP = "TCP"
	ProtocolUDP = "UDP"

	SchedulerWRR       = "WRR"
	SchedulerLeastConn = "LEAST_CONN"

	CheckTypeTCP    = "TCP"
	CheckTypeHTTP   = "HTTP"
	CheckTypeCustom = "CUSTOM"

	HTTPMethodHEAD = "HEAD"
	HTTPMethodGET  = "GET"
)

// DefaultSessionExpireTime is the session persistence time, in seconds, a
// config that enables persistence without a time gets: the CLB's minimum and
// TKE's default.
const DefaultSessionExpireTime = 30

// TkeServiceConfig is one TkeServiceConfig object: its identity and
// spec.loadBalancer.
type TkeServiceConfig struct {
	Name      string
	Namespace string
	UID       types.UID
	// LoadBalancer is spec.loadBalancer.
	LoadBalancer LoadBalancerConfig
}

// LoadBalancerConfig is spec.loadBalancer. Its l7Listeners (HTTP/HTTPS
// rules, which TKE reads for Ingresses) are accepted and ignored: a Service's
// CLB has layer-4 listeners only.
type LoadBalancerConfig struct {
	// L4Listeners are unique by protocol and port.
	L4Listeners []L4Listener `json:"l4Listeners,omitempty"`
	// InternetMaxBandwidthOut is the public CLB's bandwidth cap in Mbit/s.
	InternetMaxBandwidthOut *int64 `json:"internetMaxBandwidthOut,omitempty"`
}

// L4Listener tunes the CLB listener of one Service port, found by protocol
// and port. Nil fields are not declared and leave the CLB's value alone.
type L4Listener struct {
	// Protocol is TCP or UDP.
	Protocol string `json:"protocol"`
	// Port is the Service port, which is the listener's port.
	Port        int32        `json:"port"`
	Session     *Session     `json:"session,omitempty"`
	HealthCheck *HealthCheck `json:"healthCheck,omitempty"`
	// Scheduler is WRR or LEAST_CONN.
	Scheduler *string `json:"scheduler,omitempty"`
}

// Session is a listener's session persistence.
type Session struct {
	Enable *bool `json:"enable,omitempty"`
	// SessionExpireTime is in seconds, 30..3600.
	SessionExpireTime *int64 `json:"sessionExpireTime,omitempty"`
}

// HealthCheck is a listener's health check towards its backends, in the
// CLB API's words. Times are in seconds.
type HealthCheck struct {
	Enable       *bool  `json:"enable,omitempty"`
	IntervalTime *int64 `json:"intervalTime,omitempty"`
	// HealthNum and UnHealthNum are how many checks in a row make a backend
	// healthy or unhealthy.
	HealthNum   *int64 `json:"healthNum,omitempty"`
	UnHealthNum *int64 `json:"unHealthNum,omitempty"`
	Timeout     *int64 `json:"timeout,omitempty"`
	// HTTPCode is a bit mask of the status classes that count as healthy:
	// 1 for 1xx, 2 for 2xx, 4 for 3xx, 8 for 4xx, 16 for 5xx.
	HTTPCode        *int64  `json:"httpCode,omitempty"`
	HTTPCheckPath   *string `json:"httpCheckPath,omitempty"`
	HTTPCheckDomain *string `json:"httpCheckDomain,omitempty"`
	// HTTPCheckMethod is HEAD or GET.
	HTTPCheckMethod *string `json:"httpCheckMethod,omitempty"`
	// SourceIPType is the checks' source address: 0 the CLB's VIP, 1 an
	// address of 100.64.0.0/10. It is validated but not applied: the cloud
	// package's HealthCheck has no such field yet.
	SourceIPType *int64 `json:"sourceIpType,omitempty"`
	// CheckType is TCP, HTTP or CUSTOM.
	CheckType *string `json:"checkType,omitempty"`
}

// Listener returns the config's listener for protocol and port, or nil when
// the config does not tune that listener. Protocols compare as the CLB
// spells them (upper case).
func (c *TkeServiceConfig) Listener(protocol string, port int32) *L4Listener {
	if c == nil {
		return nil
	}
	for i := range c.LoadBalancer.L4Listeners {
		if l := &c.LoadBalancer.L4Listeners[i]; l.Protocol == protocol && l.Port == port {
			return l
		}
	}
	return nil
}

// AutoConfigName is the name of the TkeServiceConfig that
// service.cloud.tencent.com/tke-service-config-auto makes for a Service.
func AutoConfigName(serviceName string) string {
	return serviceName + "-auto-service-config"
}
