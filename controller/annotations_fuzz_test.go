package controller

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"clb-direct/cloud"
)

// fuzzedAnnotations are the annotations parseServiceConfig reads, in the
// order of FuzzParseServiceConfig's value arguments; bit i of its mask says
// whether fuzzedAnnotations[i] is on the Service at all (absent and empty
// are different inputs).
var fuzzedAnnotations = []string{
	AnnotationDirectAccess,
	AnnotationBackendWeight,
	AnnotationGraceShutdown,
	AnnotationGraceShutdownTKEx,
	AnnotationExistingLoadBalancer,
	AnnotationInternalSubnet,
	AnnotationExtensiveParameters,
	AnnotationTkeServiceConfig,
	AnnotationTkeServiceConfigAuto,
}

// FuzzParseServiceConfig feeds arbitrary values to every annotation the
// controller reads. Besides never panicking, parseServiceConfig must:
//   - be deterministic (its map iteration must not leak into the result);
//   - on success, return only values that passed their checks: a weight in
//     0..100, IDs matching their patterns, a TkeServiceConfig name that is a
//     valid object name, extensive parameters that are a JSON object without
//     reserved parameters;
//   - treat annotations independently: the result of all of them together
//     is the result of each alone, and the error is exactly the errors of
//     the annotations that fail alone, one per line, sorted, so every error
//     names the annotation at fault (and hence one the Service has).
func FuzzParseServiceConfig(f *testing.F) {
	const all = 1<<9 - 1
	f.Add(uint16(0), "", "", "", "", "", "", "", "", "")
	f.Add(uint16(all), "true", "42", "true", "false", "lb-abc123", "subnet-0a1b", `{"VipIsp":"CMCC"}`, "my-config", "true")
	f.Add(uint16(all), "", "", "", "", "", "", "", "", "")
	f.Add(uint16(all), " True ", " 0 ", "1", "0", " lb-x ", " subnet-y ", ` {"InternetAccessible":{"InternetMaxBandwidthOut":10}} `, "a.b-c", "F")
	f.Add(uint16(all), "yes", "101", "on", "1x", "my-lb", "vpc-1", `{VipIsp:CMCC}`, "Not_Valid", "maybe")
	f.Add(uint16(0b10), "", "-1", "", "", "", "", "", "", "")
	f.Add(uint16(0b10), "", "9223372036854775808", "", "", "", "", "", "", "")
	f.Add(uint16(0b10), "", "4294967306", "", "", "", "", "", "", "")
	f.Add(uint16(0b10), "", "+100", "", "", "", "", "", "", "")
	f.Add(uint16(0b10), "", "0x10", "", "", "", "", "", "", "")
	f.Add(uint16(0b10), "", "1e2", "", "", "", "", "", "", "")
	f.Add(uint16(0b10), "", "٤٢", "", "", "", "", "", "", "") // Arabic-Indic digits
	f.Add(uint16(0b1000000), "", "", "", "", "", "", "null", "", "")
	f.Add(uint16(0b1000000), "", "", "", "", "", "", `["a"]`, "", "")
	f.Add(uint16(0b1000000), "", "", "", "", "", "", `"{}"`, "", "")
	f.Add(uint16(0b1000000), "", "", "", "", "", "", `{}`, "", "")
	f.Add(uint16(0b1000000), "", "", "", "", "", "", `{"a":{"b":{"c":[1,{"d":null}]}}}`, "", "")
	f.Add(uint16(0b1000000), "", "", "", "", "", "", `{"a":1e999}`, "", "")
	f.Add(uint16(0b1000000), "", "", "", "", "", "", `{"LoadBalancerType":"INTERNAL","SubnetId":"subnet-1"}`, "", "")
	f.Add(uint16(0b1000000), "", "", "", "", "", "", `{"a":1}{"b":2}`, "", "")
	f.Add(uint16(0b1000000), "", "", "", "", "", "", "{\"\xff\":1}", "", "")
	f.Add(uint16(0b1000000), "", "", "", "", "", "", `{"k\n":"v"}`, "", "")
	f.Add(uint16(0b10000000), "", "", "", "", "", "", "", strings.Repeat("a", 254), "")
	f.Add(uint16(0b10000000), "", "", "", "", "", "", "", "コンフィグ", "")
	f.Add(uint16(0b110000), "", "", "", "", "lb-\u00e9", "subnet-\n1", "", "", "")
	f.Add(uint16(0b110000), "", "", "", "", "lb-abc\n", "\tsubnet-abc", "", "", "")
	f.Add(uint16(0b1), "\x00", "", "", "", "", "", "", "", "")
	f.Fuzz(func(t *testing.T, mask uint16, direct, weight, grace, graceTKEx, lbID, subnet, extensive, tsc, auto string) {
		values := []string{direct, weight, grace, graceTKEx, lbID, subnet, extensive, tsc, auto}
		annotations := map[string]string{"unrelated.example.com/annotation": "x"}
		var given []string
		for i, name := range fuzzedAnnotations {
			if mask&(1<<i) != 0 {
				annotations[name] = values[i]
				given = append(given, name)
			}
		}
		svc := &v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "svc", Annotations: annotations}}

		cfg, err := parseServiceConfig(svc)
		cfg2, err2 := parseServiceConfig(svc)
		if cfg != cfg2 || errString(err) != errString(err2) {
			t.Fatalf("not deterministic: %+v, %v; then %+v, %v", cfg, err, cfg2, err2)
		}

		// Each annotation alone.
		var wantErrs []string
		alone := make(map[string]ServiceConfig, len(given))
		for _, name := range given {
			c, e := parseServiceConfig(&v1.Service{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{name: annotations[name]}}})
			alone[name] = c
			if e == nil {
				continue
			}
			msg := e.Error()
			if !strings.HasPrefix(msg, "annotation "+name+"=") && !strings.HasPrefix(msg, "annotation "+name+":") {
				t.Errorf("the error for %s=%q does not start by naming it: %q", name, annotations[name], msg)
			}
			wantErrs = append(wantErrs, msg)
		}
		slices.Sort(wantErrs)
		if got, want := errString(err), strings.Join(wantErrs, "\n"); got != want {
			t.Fatalf("with annotations %q the error is\n%s\nwant the errors of each annotation alone:\n%s", given, got, want)
		}
		if err != nil {
			if !slices.ContainsFunc(given, func(name string) bool { return strings.Contains(err.Error(), name) }) {
				t.Fatalf("error %q names none of the annotations given %q", err, given)
			}
			return
		}

		if cfg.BackendWeight < 0 || cfg.BackendWeight > cloud.MaxWeight {
			t.Errorf("weight %d is outside 0..%d", cfg.BackendWeight, cloud.MaxWeight)
		}
		if id := cfg.ExistingLoadBalancerID; id != "" && !loadBalancerIDPattern.MatchString(id) {
			t.Errorf("ExistingLoadBalancerID %q does not match %s", id, loadBalancerIDPattern)
		}
		if id := cfg.InternalSubnetID; id != "" && !subnetIDPattern.MatchString(id) {
			t.Errorf("InternalSubnetID %q does not match %s", id, subnetIDPattern)
		}
		if name := cfg.TkeServiceConfig; name != "" && len(validation.IsDNS1123Subdomain(name)) > 0 {
			t.Errorf("TkeServiceConfig %q is not a valid object name", name)
		}
		if p := cfg.ExtensiveParameters; p != "" {
			var params map[string]any
			if err := json.Unmarshal([]byte(p), &params); err != nil || params == nil {
				t.Errorf("ExtensiveParameters %q is not a JSON object (%v)", p, err)
			} else if err := cloud.CheckExtensiveParameters(params); err != nil {
				t.Errorf("ExtensiveParameters %q: %v", p, err)
			}
		}

		// Every field is what its annotation alone gives (or the default).
		want := ServiceConfig{BackendWeight: DefaultBackendWeight}
		for name, c := range alone {
			switch name {
			case AnnotationDirectAccess:
				want.DirectAccess = c.DirectAccess
			case AnnotationBackendWeight:
				want.BackendWeight = c.BackendWeight
			case AnnotationGraceShutdown:
				want.GraceShutdown = c.GraceShutdown
			case AnnotationGraceShutdownTKEx:
				want.GraceShutdownTKEx = c.GraceShutdownTKEx
			case AnnotationExistingLoadBalancer:
				want.ExistingLoadBalancerID = c.ExistingLoadBalancerID
			case AnnotationInternalSubnet:
				want.InternalSubnetID = c.InternalSubnetID
			case AnnotationExtensiveParameters:
				want.ExtensiveParameters = c.ExtensiveParameters
			case AnnotationTkeServiceConfig:
				want.TkeServiceConfig = c.TkeServiceConfig
			case AnnotationTkeServiceConfigAuto:
				want.AutoServiceConfig = c.AutoServiceConfig
			}
		}
		if cfg != want {
			t.Fatalf("with annotations %q the config is %+v, want %+v (each annotation alone)", given, cfg, want)
		}
	})
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
