package controller

import (
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// annotated is a Service carrying the given annotations (key, value pairs).
func annotated(kv ...string) *v1.Service {
	if len(kv)%2 != 0 {
		panic("annotated: odd number of arguments")
	}
	svc := &v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "svc"}}
	if len(kv) > 0 {
		svc.Annotations = map[string]string{}
	}
	for i := 0; i < len(kv); i += 2 {
		svc.Annotations[kv[i]] = kv[i+1]
	}
	return svc
}

func TestParseServiceConfig(t *testing.T) {
	const (
		direct = AnnotationDirectAccess
		weight = AnnotationBackendWeight
	)
	tests := []struct {
		name string
		svc  *v1.Service
		want ServiceConfig
		// wantErr lists fragments the error must contain; nil means no error.
		wantErr []string
	}{
		{name: "no annotations", svc: annotated(), want: ServiceConfig{DirectAccess: false, BackendWeight: 10}},
		{name: "unrelated annotation", svc: annotated("foo", "bar"), want: ServiceConfig{BackendWeight: 10}},
		{name: "direct true", svc: annotated(direct, "true"), want: ServiceConfig{DirectAccess: true, BackendWeight: 10}},
		{name: "direct false", svc: annotated(direct, "false"), want: ServiceConfig{DirectAccess: false, BackendWeight: 10}},
		{name: "direct True", svc: annotated(direct, "True"), want: ServiceConfig{DirectAccess: true, BackendWeight: 10}},
		{name: "direct padded", svc: annotated(direct, " true "), want: ServiceConfig{DirectAccess: true, BackendWeight: 10}},
		{name: "direct yes", svc: annotated(direct, "yes"), wantErr: []string{direct, `"yes"`}},
		{name: "direct empty", svc: annotated(direct, ""), wantErr: []string{direct, `""`}},
		{name: "weight 0", svc: annotated(direct, "true", weight, "0"), want: ServiceConfig{DirectAccess: true, BackendWeight: 0}},
		{name: "weight 100", svc: annotated(weight, "100"), want: ServiceConfig{BackendWeight: 100}},
		{name: "weight padded", svc: annotated(weight, " 42 "), want: ServiceConfig{BackendWeight: 42}},
		{name: "weight 101", svc: annotated(weight, "101"), wantErr: []string{weight, `"101"`, "0 to 100"}},
		{name: "weight -1", svc: annotated(weight, "-1"), wantErr: []string{weight, `"-1"`}},
		{name: "weight abc", svc: annotated(weight, "abc"), wantErr: []string{weight, `"abc"`}},
		{name: "weight overflows int32", svc: annotated(weight, "4294967306"), wantErr: []string{weight}},
		{name: "weight empty", svc: annotated(weight, ""), wantErr: []string{weight}},
		{name: "both invalid", svc: annotated(direct, "yes", weight, "abc"), wantErr: []string{direct, `"yes"`, weight, `"abc"`}},
		{name: "grace shutdown", svc: annotated(AnnotationGraceShutdown, "true"), want: ServiceConfig{BackendWeight: 10, GraceShutdown: true}},
		{name: "grace shutdown tkex", svc: annotated(AnnotationGraceShutdownTKEx, "true"), want: ServiceConfig{BackendWeight: 10, GraceShutdownTKEx: true}},
		{name: "grace shutdown invalid", svc: annotated(AnnotationGraceShutdown, "on"), wantErr: []string{AnnotationGraceShutdown, `"on"`}},
		{name: "existing CLB", svc: annotated(AnnotationExistingLoadBalancer, "lb-abc123"), want: ServiceConfig{BackendWeight: 10, ExistingLoadBalancerID: "lb-abc123"}},
		{name: "existing CLB invalid", svc: annotated(AnnotationExistingLoadBalancer, "my-lb"), wantErr: []string{AnnotationExistingLoadBalancer, `"my-lb"`, "lb-xxxxxxxx"}},
		{name: "internal subnet", svc: annotated(AnnotationInternalSubnet, "subnet-0a1b"), want: ServiceConfig{BackendWeight: 10, InternalSubnetID: "subnet-0a1b"}},
		{name: "internal subnet invalid", svc: annotated(AnnotationInternalSubnet, "vpc-1"), wantErr: []string{AnnotationInternalSubnet, `"vpc-1"`}},
		{name: "extensive parameters", svc: annotated(AnnotationExtensiveParameters, `{"VipIsp":"CMCC"}`), want: ServiceConfig{BackendWeight: 10, ExtensiveParameters: `{"VipIsp":"CMCC"}`}},
		{name: "extensive parameters not JSON", svc: annotated(AnnotationExtensiveParameters, `{VipIsp:CMCC}`), wantErr: []string{AnnotationExtensiveParameters, "JSON object"}},
		{name: "extensive parameters not an object", svc: annotated(AnnotationExtensiveParameters, `["a"]`), wantErr: []string{AnnotationExtensiveParameters}},
		{name: "extensive parameters null", svc: annotated(AnnotationExtensiveParameters, `null`), wantErr: []string{AnnotationExtensiveParameters}},
		{name: "grace shutdown tkex invalid", svc: annotated(AnnotationGraceShutdownTKEx, "1x"), wantErr: []string{AnnotationGraceShutdownTKEx, `"1x"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseServiceConfig(tt.svc)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("parseServiceConfig() error = %v, want none", err)
				}
				if got != tt.want {
					t.Errorf("parseServiceConfig() = %+v, want %+v", got, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("parseServiceConfig() = %+v, nil; want an error containing %q", got, tt.wantErr)
			}
			for _, frag := range tt.wantErr {
				if !strings.Contains(err.Error(), frag) {
					t.Errorf("parseServiceConfig() error %q does not contain %q", err, frag)
				}
			}
		})
	}
}

// Two invalid annotations are reported together, one per line of a single
// error, so the user can fix both at once.
func TestParseServiceConfigReportsEveryInvalidAnnotationInOneError(t *testing.T) {
	_, err := parseServiceConfig(annotated(AnnotationDirectAccess, "yes", AnnotationBackendWeight, "101"))
	if err == nil {
		t.Fatal("parseServiceConfig() error = nil, want one error naming both annotations")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 2 {
		t.Fatalf("error has %d parts, want 2: %q", len(lines), err)
	}
	if !strings.Contains(lines[0], AnnotationDirectAccess) || !strings.Contains(lines[1], AnnotationBackendWeight) {
		t.Errorf("error = %q, want the direct-access problem then the weight problem", err)
	}
}
