package tkeconfig

import (
	stdjson "encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/json"

	"clb-direct/cloud"
)

// Where FuzzFromUnstructured puts the fuzzed document.
const (
	// placeObject: the document is the object; apiVersion, kind and
	// metadata are then set on it.
	placeObject = iota
	// placeSpec, placeLoadBalancer, placeListener: the document is spec,
	// spec.loadBalancer or the one entry of spec.loadBalancer.l4Listeners,
	// so that the fuzzer reaches the deep fields sooner.
	placeSpec
	placeLoadBalancer
	placeListener
	// placeRaw: the document is the whole object, metadata and type as
	// written (a wrong kind, a metadata that is not an object).
	placeRaw
	places
)

// fuzzObject builds the unstructured object for a fuzzed document, or nil
// when the document is not a JSON object (or value, for a listener).
// float64Numbers decodes numbers as encoding/json does (all float64)
// instead of as the API machinery does (int64 when integral).
func fuzzObject(doc []byte, place uint8, float64Numbers bool) *unstructured.Unstructured {
	var v any
	var err error
	if float64Numbers {
		err = stdjson.Unmarshal(doc, &v)
	} else {
		err = json.Unmarshal(doc, &v)
	}
	if err != nil {
		return nil
	}
	var obj map[string]any
	switch place % places {
	case placeObject, placeRaw:
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		obj = m
	case placeSpec:
		obj = map[string]any{"spec": v}
	case placeLoadBalancer:
		obj = map[string]any{"spec": map[string]any{"loadBalancer": v}}
	case placeListener:
		obj = map[string]any{"spec": map[string]any{"loadBalancer": map[string]any{"l4Listeners": []any{v}}}}
	}
	if obj == nil {
		obj = map[string]any{}
	}
	u := &unstructured.Unstructured{Object: obj}
	if place%places != placeRaw {
		u.SetAPIVersion(GVK.GroupVersion().String())
		u.SetKind(GVK.Kind)
		u.Object["metadata"] = map[string]any{"name": "cfg", "namespace": "ns", "uid": "uid-1", "resourceVersion": "7"}
	}
	return u
}

// fuzzCurrents are listeners as a CLB may hold them, for
// DesiredListenerSpec to change: the controller's default (which it
// creates), none of the optional settings, a disabled check with settings,
// session persistence on, and values outside the config's ranges.
func fuzzCurrents(protocol string, port int32) []cloud.ListenerSpec {
	base := cloud.ListenerSpec{Name: "clbdirect_uid_" + protocol, Protocol: cloud.Protocol(protocol), Port: port}
	withHC := func(s cloud.ListenerSpec, hc cloud.HealthCheck) cloud.ListenerSpec {
		s.HealthCheck = &hc
		return s
	}
	session := base
	session.SessionExpireSeconds, session.Scheduler = 300, SchedulerLeastConn
	odd := withHC(base, cloud.HealthCheck{Enabled: true, IntervalSeconds: 1, TimeoutSeconds: 1000, HealthyThreshold: -1, CheckType: "PING", HTTPCode: 64})
	odd.SessionExpireSeconds, odd.Scheduler = 5, "RR"
	return []cloud.ListenerSpec{
		withHC(base, cloud.HealthCheck{Enabled: true, IntervalSeconds: 5, TimeoutSeconds: 2, HealthyThreshold: 3, UnhealthyThreshold: 3}),
		base,
		withHC(base, cloud.HealthCheck{Enabled: false, IntervalSeconds: 10, TimeoutSeconds: 4, HealthyThreshold: 2, UnhealthyThreshold: 2, CheckType: CheckTypeHTTP, HTTPPath: "/x", HTTPCode: 2}),
		session,
		odd,
	}
}

// rawNumber is an integer field as written in the document, for either
// decoding of numbers.
func rawNumber(v any) (float64, bool) {
	switch n := v.(type) {
	case int64:
		return float64(n), true
	case float64:
		return n, true
	}
	return 0, false
}

// FuzzFromUnstructured feeds arbitrary JSON documents to FromUnstructured
// (as the object, or as its spec, loadBalancer or one listener). It checks
// that:
//   - it never panics, and every error wraps ErrInvalid;
//   - what it accepts is within the schema's ranges (checked here
//     independently of validate), with listeners unique by protocol and port
//     and each port what the document says (no integer narrowed into
//     range), found by Listener;
//   - DesiredListenerSpec never panics on a default (and other) listener,
//     never changes what it must not (name, protocol, port), does not share
//     the caller's health check, and is idempotent: applying its output again
//     reports no change;
//   - AutoConfig of the result is accepted by FromUnstructured and, applied
//     to the same listener, changes nothing.
func FuzzFromUnstructured(f *testing.F) {
	for _, seed := range []struct {
		doc   string
		place uint8
	}{
		{"", placeObject},
		{"{}", placeObject},
		{"null", placeSpec},
		{"[]", placeObject},
		{`{"spec":{"loadBalancer":{"internetMaxBandwidthOut":100,"l7Listeners":[{"protocol":"HTTPS","port":443}],"l4Listeners":[` +
			`{"protocol":"TCP","port":80,"session":{"enable":true,"sessionExpireTime":300},"healthCheck":{"enable":true,"intervalTime":10,` +
			`"healthNum":2,"unHealthNum":3,"timeout":5,"httpCode":2,"httpCheckPath":"/healthz","httpCheckDomain":"example.com",` +
			`"httpCheckMethod":"GET","sourceIpType":1,"checkType":"HTTP"},"scheduler":"LEAST_CONN"},` +
			`{"protocol":"UDP","port":80,"session":{"enable":false}}]}}}`, placeObject},
		{`{"loadBalancer":{"l4Listeners":[{"protocol":"TCP","port":80},{"protocol":"TCP","port":80}]}}`, placeSpec},
		{`{"l4Listeners":[{"protocol":"TCP","port":4294967376}]}`, placeLoadBalancer},
		{`{"l4Listeners":[{"protocol":"TCP","port":4294967376.0}]}`, placeLoadBalancer},
		{`{"l4Listeners":[{"protocol":"TCP","port":80.5}]}`, placeLoadBalancer},
		{`{"l4Listeners":[{"protocol":"TCP","port":1e400}]}`, placeLoadBalancer},
		{`{"l4Listeners":[{"protocol":"TCP","port":-0}]}`, placeLoadBalancer},
		{`{"l4Listeners":null,"internetMaxBandwidthOut":null}`, placeLoadBalancer},
		{`{"protocol":"TCP","port":80,"healthCheck":{"enable":false,"intervalTime":300,"timeout":60}}`, placeListener},
		{`{"protocol":"UDP","port":65535,"healthCheck":{"enable":true,"timeout":10}}`, placeListener},
		{`{"protocol":"TCP","port":1,"session":{"sessionExpireTime":3600}}`, placeListener},
		{`{"protocol":"TCP","port":1,"session":{"enable":true}}`, placeListener},
		{`{"protocol":"tcp","port":"80","scheduler":null}`, placeListener},
		{`{"protocol":"TCP","port":80,"healthCheck":{"httpCheckPath":"","httpCheckDomain":"ドメイン"}}`, placeListener},
		{`{"protocol":"TCP","port":80,"extra":{"a":[{"b":{"c":[[[[]]]]}}]}}`, placeListener},
		{`{"protocol":"TCP","port":80,"Protocol":"UDP"}`, placeListener},
		{`{"protocol":"TCP","port":9223372036854775807,"session":{"sessionExpireTime":-9223372036854775808}}`, placeListener},
		{`"TCP"`, placeListener},
		{`{"apiVersion":"v1","kind":"Pod","metadata":"x"}`, placeRaw},
		{`{"apiVersion":"cloud.tencent.com/v1alpha1","kind":"TkeServiceConfig","metadata":{"name":5,"uid":["x"]},"spec":{}}`, placeRaw},
		{`{"apiVersion":"cloud.tencent.com/v1alpha1","kind":"TkeServiceConfig","status":{}}`, placeRaw},
	} {
		f.Add([]byte(seed.doc), seed.place, false)
	}
	f.Add([]byte(`{"l4Listeners":[{"protocol":"TCP","port":4294967376}]}`), uint8(placeLoadBalancer), true)
	f.Add([]byte(`{"protocol":"TCP","port":80,"healthCheck":{"intervalTime":5.0,"timeout":2}}`), uint8(placeListener), true)
	f.Fuzz(func(t *testing.T, doc []byte, place uint8, float64Numbers bool) {
		u := fuzzObject(doc, place, float64Numbers)
		if u == nil {
			return
		}
		in := u.DeepCopy()
		cfg, err := FromUnstructured(u)
		if !reflect.DeepEqual(in.Object, u.Object) {
			t.Fatalf("FromUnstructured changed its input")
		}
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		checkAccepted(t, u, cfg)
		for _, l := range cfg.LoadBalancer.L4Listeners {
			checkDesiredListenerSpec(t, l)
		}
	})
}

func checkAccepted(t *testing.T, u *unstructured.Unstructured, cfg *TkeServiceConfig) {
	t.Helper()
	if cfg.Name != u.GetName() || cfg.Namespace != u.GetNamespace() || cfg.UID != u.GetUID() {
		t.Errorf("identity %s/%s %s, want the object's %s/%s %s", cfg.Namespace, cfg.Name, cfg.UID, u.GetNamespace(), u.GetName(), u.GetUID())
	}
	inRange := func(what string, v *int64, r valueRange) {
		if v != nil && !r.contains(*v) {
			t.Errorf("accepted %s %d outside %d..%d", what, *v, r.Min, r.Max)
		}
	}
	oneOf := func(what string, v *string, allowed []string) {
		if v != nil && !slices.Contains(allowed, *v) {
			t.Errorf("accepted %s %q, not one of %v", what, *v, allowed)
		}
	}
	inRange("internetMaxBandwidthOut", cfg.LoadBalancer.InternetMaxBandwidthOut, bandwidthRange)
	written, _, _ := unstructured.NestedSlice(u.Object, "spec", "loadBalancer", "l4Listeners")
	seen := map[string]bool{}
	for i, l := range cfg.LoadBalancer.L4Listeners {
		key := fmt.Sprintf("%s %d", l.Protocol, l.Port)
		if seen[key] {
			t.Errorf("accepted two listeners for %s", key)
		}
		seen[key] = true
		oneOf("protocol", &l.Protocol, protocols)
		if !portRange.contains(int64(l.Port)) {
			t.Errorf("accepted port %d", l.Port)
		}
		if i < len(written) {
			if m, ok := written[i].(map[string]any); ok {
				if n, ok := rawNumber(m["port"]); !ok || n != float64(l.Port) {
					t.Errorf("l4Listeners[%d].port is written %v (%T) but read %d", i, m["port"], m["port"], l.Port)
				}
			}
		}
		if got := cfg.Listener(l.Protocol, l.Port); got == nil || !reflect.DeepEqual(*got, l) {
			t.Errorf("Listener(%s, %d) = %+v, want %+v", l.Protocol, l.Port, got, l)
		}
		if s := l.Session; s != nil {
			inRange("sessionExpireTime", s.SessionExpireTime, sessionExpireTimeRange)
		}
		if hc := l.HealthCheck; hc != nil {
			inRange("intervalTime", hc.IntervalTime, intervalTimeRange)
			inRange("healthNum", hc.HealthNum, healthNumRange)
			inRange("unHealthNum", hc.UnHealthNum, unHealthNumRange)
			inRange("timeout", hc.Timeout, timeoutRange)
			inRange("httpCode", hc.HTTPCode, httpCodeRange)
			inRange("sourceIpType", hc.SourceIPType, sourceIPTypeRange)
			if hc.Timeout != nil && hc.IntervalTime != nil && *hc.Timeout > *hc.IntervalTime {
				t.Errorf("accepted timeout %d above intervalTime %d", *hc.Timeout, *hc.IntervalTime)
			}
			oneOf("httpCheckMethod", hc.HTTPCheckMethod, httpMethods)
			oneOf("checkType", hc.CheckType, checkTypes)
			for what, v := range map[string]*string{"httpCheckPath": hc.HTTPCheckPath, "httpCheckDomain": hc.HTTPCheckDomain} {
				if v != nil && *v == "" {
					t.Errorf("accepted an empty %s", what)
				}
			}
		}
		oneOf("scheduler", l.Scheduler, schedulers)
	}
}

func checkDesiredListenerSpec(t *testing.T, l L4Listener) {
	t.Helper()
	for _, current := range fuzzCurrents(l.Protocol, l.Port) {
		before := current
		var hcBefore cloud.HealthCheck
		if current.HealthCheck != nil {
			hcBefore = *current.HealthCheck
		}

		if same, changed := DesiredListenerSpec(current, nil); changed || !specsEqual(same, current) {
			t.Errorf("DesiredListenerSpec(%+v, nil) = %+v, %v; want it unchanged", current, same, changed)
		}
		out, _ := DesiredListenerSpec(current, &l)
		if current != before || (current.HealthCheck != nil && *current.HealthCheck != hcBefore) {
			t.Fatalf("DesiredListenerSpec changed its input %+v", before)
		}
		if out.HealthCheck != nil && out.HealthCheck == current.HealthCheck {
			t.Errorf("DesiredListenerSpec shares the caller's health check")
		}
		if out.Name != current.Name || out.Protocol != current.Protocol || out.Port != current.Port {
			t.Errorf("DesiredListenerSpec changed the listener's identity: %+v → %+v", current, out)
		}
		again, changed := DesiredListenerSpec(out, &l)
		if changed || !specsEqual(again, out) {
			t.Fatalf("not idempotent for %s:\ncurrent %+v\nonce    %+v\ntwice   %+v (changed %v)", describe(l), describeSpec(current), describeSpec(out), describeSpec(again), changed)
		}

		// The auto config showing that listener must be accepted, and
		// applying it must change nothing.
		auto := AutoConfig("ns", "svc", "uid-1", []cloud.Listener{{ID: "lbl-1", ListenerSpec: out}}, 0)
		autoCfg, err := FromUnstructured(auto)
		if err != nil {
			t.Fatalf("AutoConfig of %+v is refused: %v", describeSpec(out), err)
		}
		if al := autoCfg.Listener(l.Protocol, l.Port); al == nil {
			t.Errorf("AutoConfig of %+v has no listener %s %d", describeSpec(out), l.Protocol, l.Port)
		} else if again, changed := DesiredListenerSpec(out, al); changed {
			t.Errorf("AutoConfig of %+v, applied to it, changes it to %+v", describeSpec(out), describeSpec(again))
		}
	}
}

func describe(l L4Listener) string {
	data, err := stdjson.Marshal(l)
	if err != nil {
		return fmt.Sprintf("%+v", l)
	}
	return string(data)
}

func describeSpec(s cloud.ListenerSpec) string {
	if s.HealthCheck == nil {
		return fmt.Sprintf("%+v", s)
	}
	hc := *s.HealthCheck
	s.HealthCheck = nil
	return fmt.Sprintf("%+v HealthCheck:%+v", s, hc)
}
