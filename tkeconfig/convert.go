package tkeconfig

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// ErrInvalid is wrapped by every error FromUnstructured returns for a config
// that is wrong as written, so the controller can tell the user (an event)
// instead of retrying what cannot succeed until the object changes.
var ErrInvalid = errors.New("invalid TkeServiceConfig")

// valueRange is an inclusive range of an integer field.
type valueRange struct{ Min, Max int64 }

func (r valueRange) contains(v int64) bool { return r.Min <= v && v <= r.Max }

// The ranges and enumerations the CRD's schema enforces. The API server
// refuses objects outside them, and FromUnstructured checks them again
// because the installed CRD may be older than this code, or TKE's own.
// crd_test.go fails when the schema and these drift apart.
var (
	portRange              = valueRange{1, 65535}
	sessionExpireTimeRange = valueRange{30, 3600}
	intervalTimeRange      = valueRange{5, 300}
	healthNumRange         = valueRange{2, 10}
	unHealthNumRange       = valueRange{2, 10}
	timeoutRange           = valueRange{2, 60}
	httpCodeRange          = valueRange{1, 31}
	sourceIPTypeRange      = valueRange{0, 1}
	bandwidthRange         = valueRange{1, 2048}

	protocols   = []string{ProtocolTCP, ProtocolUDP}
	schedulers  = []string{SchedulerWRR, SchedulerLeastConn}
	checkTypes  = []string{CheckTypeTCP, CheckTypeHTTP, CheckTypeCustom}
	httpMethods = []string{HTTPMethodHEAD, HTTPMethodGET}
)

// object is the wire form of the resource minus metadata, for the strict
// conversion: every key it does not name is an unknown field.
type object struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Spec       struct {
		LoadBalancer struct {
			LoadBalancerConfig `json:",inline"`
			// L7Listeners is here so that strict conversion accepts it;
			// it configures Ingresses, not Services.
			L7Listeners []any `json:"l7Listeners,omitempty"`
		} `json:"loadBalancer"`
	} `json:"spec"`
}

// FromUnstructured converts a TkeServiceConfig read from the API server,
// strictly: an unknown field, a value of the wrong type, a value outside the
// schema's ranges and enumerations, a missing protocol or port and two
// listeners for the same protocol and port are errors (wrapping ErrInvalid)
// that name every bad field.
func FromUnstructured(u *unstructured.Unstructured) (*TkeServiceConfig, error) {
	if u == nil {
		return nil, fmt.Errorf("%w: nil object", ErrInvalid)
	}
	ref := u.GetNamespace() + "/" + u.GetName()
	if gvk := u.GroupVersionKind(); gvk != GVK {
		return nil, fmt.Errorf("%w %s: apiVersion %q kind %q, want %s %s", ErrInvalid, ref, u.GetAPIVersion(), u.GetKind(), GVK.GroupVersion(), GVK.Kind)
	}
	// Metadata is the API server's, not the user's: it is read through the
	// accessors, so that a field a newer API server adds cannot make every
	// config invalid.
	content := make(map[string]any, len(u.Object))
	for k, v := range u.Object {
		if k != "metadata" {
			content[k] = v
		}
	}
	var obj object
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(content, &obj, true); err != nil {
		return nil, fmt.Errorf("%w %s: %v", ErrInvalid, ref, err)
	}
	cfg := &TkeServiceConfig{
		Name:         u.GetName(),
		Namespace:    u.GetNamespace(),
		UID:          u.GetUID(),
		LoadBalancer: obj.Spec.LoadBalancer.LoadBalancerConfig,
	}
	if problems := validate(cfg.LoadBalancer, rawPorts(u)); len(problems) > 0 {
		return nil, fmt.Errorf("%w %s: %s", ErrInvalid, ref, strings.Join(problems, "; "))
	}
	return cfg, nil
}

// rawPorts returns the l4Listeners' ports as written, by index. The
// converter narrows an integer to int32 without checking that it fits, so a
// port of 4294967376 would silently become 80; validate checks these instead.
// A whole number may also come as a float64 (written 4294967376.0, or
// decoded by a decoder that makes every number one), which the converter
// narrows the same way.
func rawPorts(u *unstructured.Unstructured) map[int]int64 {
	listeners, _, _ := unstructured.NestedSlice(u.Object, "spec", "loadBalancer", "l4Listeners")
	out := make(map[int]int64, len(listeners))
	for i, l := range listeners {
		if m, ok := l.(map[string]any); ok {
			switch p := m["port"].(type) {
			case int64:
				out[i] = p
			case float64:
				switch {
				case p != math.Trunc(p):
					// The converter refuses a fraction itself.
				case p >= math.MaxInt64:
					out[i] = math.MaxInt64
				case p <= math.MinInt64:
					out[i] = math.MinInt64
				default:
					out[i] = int64(p)
				}
			}
		}
	}
	return out
}

// validate returns one problem per bad field of lb, each naming the field's
// path. ports holds the listeners' ports as written, where known.
func validate(lb LoadBalancerConfig, ports map[int]int64) []string {
	var v validator
	path := field.NewPath("spec", "loadBalancer")
	v.rangeOf(path.Child("internetMaxBandwidthOut"), lb.InternetMaxBandwidthOut, bandwidthRange)

	seen := make(map[string]int, len(lb.L4Listeners))
	for i, l := range lb.L4Listeners {
		lp := path.Child("l4Listeners").Index(i)
		if l.Protocol == "" {
			v.addf(lp.Child("protocol"), "required, one of %s", strings.Join(protocols, ", "))
		} else {
			v.oneOf(lp.Child("protocol"), &l.Protocol, protocols)
		}
		port, ok := ports[i]
		if !ok {
			port = int64(l.Port)
		}
		if port == 0 {
			v.addf(lp.Child("port"), "required, %d..%d", portRange.Min, portRange.Max)
		} else {
			v.rangeOf(lp.Child("port"), &port, portRange)
		}
		// The CLB has one listener per protocol and port, so two entries
		// for it would contradict each other.
		if l.Protocol != "" && port != 0 {
			key := fmt.Sprintf("%s %d", l.Protocol, port)
			if j, dup := seen[key]; dup {
				v.addf(lp, "duplicate of l4Listeners[%d] (%s)", j, key)
			} else {
				seen[key] = i
			}
		}

		if s := l.Session; s != nil {
			v.rangeOf(lp.Child("session", "sessionExpireTime"), s.SessionExpireTime, sessionExpireTimeRange)
		}
		if hc := l.HealthCheck; hc != nil {
			hp := lp.Child("healthCheck")
			v.rangeOf(hp.Child("intervalTime"), hc.IntervalTime, intervalTimeRange)
			v.rangeOf(hp.Child("healthNum"), hc.HealthNum, healthNumRange)
			v.rangeOf(hp.Child("unHealthNum"), hc.UnHealthNum, unHealthNumRange)
			v.rangeOf(hp.Child("timeout"), hc.Timeout, timeoutRange)
			if hc.Timeout != nil && hc.IntervalTime != nil && *hc.Timeout > *hc.IntervalTime {
				v.addf(hp.Child("timeout"), "%d exceeds intervalTime %d", *hc.Timeout, *hc.IntervalTime)
			}
			v.rangeOf(hp.Child("httpCode"), hc.HTTPCode, httpCodeRange)
			// An empty path or domain could never be applied (the CLB API
			// keeps its value when sent an empty one), so the listener
			// would be modified again on every sync.
			v.nonEmpty(hp.Child("httpCheckPath"), hc.HTTPCheckPath)
			v.nonEmpty(hp.Child("httpCheckDomain"), hc.HTTPCheckDomain)
			v.oneOf(hp.Child("httpCheckMethod"), hc.HTTPCheckMethod, httpMethods)
			v.rangeOf(hp.Child("sourceIpType"), hc.SourceIPType, sourceIPTypeRange)
			v.oneOf(hp.Child("checkType"), hc.CheckType, checkTypes)
		}
		v.oneOf(lp.Child("scheduler"), l.Scheduler, schedulers)
	}
	return v.problems
}

// validator collects problems as "<path>: <what is wrong>".
type validator struct{ problems []string }

func (v *validator) addf(p *field.Path, format string, args ...any) {
	v.problems = append(v.problems, p.String()+": "+fmt.Sprintf(format, args...))
}

func (v *validator) rangeOf(p *field.Path, value *int64, r valueRange) {
	if value != nil && !r.contains(*value) {
		v.addf(p, "%d is out of range %d..%d", *value, r.Min, r.Max)
	}
}

func (v *validator) oneOf(p *field.Path, value *string, allowed []string) {
	if value != nil && !slices.Contains(allowed, *value) {
		v.addf(p, "%q is not one of %s", *value, strings.Join(allowed, ", "))
	}
}

func (v *validator) nonEmpty(p *field.Path, value *string) {
	if value != nil && *value == "" {
		v.addf(p, "must not be empty")
	}
}
