package tkeconfig

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
)

// configObject returns a TkeServiceConfig ns/cfg whose spec.loadBalancer is lb,
// in YAML (flow style keeps a case on one line). Numbers come out as int64,
// as they do from the API server.
func configObject(t *testing.T, lb string) *unstructured.Unstructured {
	t.Helper()
	return parse(t, "apiVersion: cloud.tencent.com/v1alpha1\nkind: TkeServiceConfig\n"+
		"metadata: {name: cfg, namespace: ns, uid: uid-1}\nspec:\n  loadBalancer: "+lb+"\n")
}

func parse(t *testing.T, doc string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := yaml.UnmarshalStrict([]byte(doc), &u.Object); err != nil {
		t.Fatalf("test input does not parse: %v\n%s", err, doc)
	}
	return u
}

// fullConfig declares every field.
const fullConfig = `apiVersion: cloud.tencent.com/v1alpha1
kind: TkeServiceConfig
metadata:
  name: cfg
  namespace: ns
  uid: uid-1
  resourceVersion: "42"
  creationTimestamp: "2025-01-02T03:04:05Z"
  labels: {team: a}
  managedFields:
    - manager: kubectl
      operation: Apply
      apiVersion: cloud.tencent.com/v1alpha1
      fieldsType: FieldsV1
      fieldsV1: {f:spec: {}}
spec:
  loadBalancer:
    internetMaxBandwidthOut: 100
    l7Listeners:
      - protocol: HTTPS
        port: 443
        domains: [{domain: example.com, rules: [{url: /}]}]
    l4Listeners:
      - protocol: TCP
        port: 80
        session: {enable: true, sessionExpireTime: 300}
        healthCheck:
          enable: true
          intervalTime: 10
          healthNum: 2
          unHealthNum: 3
          timeout: 5
          httpCode: 2
          httpCheckPath: /healthz
          httpCheckDomain: example.com
          httpCheckMethod: GET
          sourceIpType: 1
          checkType: HTTP
        scheduler: LEAST_CONN
      - protocol: UDP
        port: 80
        session: {enable: false}
`

func TestFromUnstructuredValid(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   *unstructured.Unstructured
		want LoadBalancerConfig
	}{
		{
			name: "every field",
			in:   parse(t, fullConfig),
			want: LoadBalancerConfig{
				InternetMaxBandwidthOut: ptr[int64](100),
				L4Listeners: []L4Listener{
					{
						Protocol: "TCP", Port: 80,
						Session: &Session{Enable: ptr(true), SessionExpireTime: ptr[int64](300)},
						HealthCheck: &HealthCheck{
							Enable: ptr(true), IntervalTime: ptr[int64](10), HealthNum: ptr[int64](2), UnHealthNum: ptr[int64](3),
							Timeout: ptr[int64](5), HTTPCode: ptr[int64](2), HTTPCheckPath: ptr("/healthz"),
							HTTPCheckDomain: ptr("example.com"), HTTPCheckMethod: ptr("GET"), SourceIPType: ptr[int64](1),
							CheckType: ptr("HTTP"),
						},
						Scheduler: ptr("LEAST_CONN"),
					},
					{Protocol: "UDP", Port: 80, Session: &Session{Enable: ptr(false)}},
				},
			},
		},
		{name: "no spec", in: parse(t, "apiVersion: cloud.tencent.com/v1alpha1\nkind: TkeServiceConfig\nmetadata: {name: cfg, namespace: ns, uid: uid-1}\n")},
		{name: "empty loadBalancer", in: configObject(t, "{}")},
		{
			name: "lower bounds",
			in:   configObject(t, "{internetMaxBandwidthOut: 1, l4Listeners: [{protocol: TCP, port: 1, session: {sessionExpireTime: 30}, healthCheck: {intervalTime: 5, healthNum: 2, unHealthNum: 2, timeout: 2, httpCode: 1, sourceIpType: 0}}]}"),
			want: LoadBalancerConfig{
				InternetMaxBandwidthOut: ptr[int64](1),
				L4Listeners: []L4Listener{{
					Protocol: "TCP", Port: 1, Session: &Session{SessionExpireTime: ptr[int64](30)},
					HealthCheck: &HealthCheck{
						IntervalTime: ptr[int64](5), HealthNum: ptr[int64](2), UnHealthNum: ptr[int64](2),
						Timeout: ptr[int64](2), HTTPCode: ptr[int64](1), SourceIPType: ptr[int64](0),
					},
				}},
			},
		},
		{
			name: "upper bounds",
			in:   configObject(t, "{internetMaxBandwidthOut: 2048, l4Listeners: [{protocol: UDP, port: 65535, session: {sessionExpireTime: 3600}, healthCheck: {intervalTime: 300, healthNum: 10, unHealthNum: 10, timeout: 60, httpCode: 31, sourceIpType: 1}}]}"),
			want: LoadBalancerConfig{
				InternetMaxBandwidthOut: ptr[int64](2048),
				L4Listeners: []L4Listener{{
					Protocol: "UDP", Port: 65535, Session: &Session{SessionExpireTime: ptr[int64](3600)},
					HealthCheck: &HealthCheck{
						IntervalTime: ptr[int64](300), HealthNum: ptr[int64](10), UnHealthNum: ptr[int64](10),
						Timeout: ptr[int64](60), HTTPCode: ptr[int64](31), SourceIPType: ptr[int64](1),
					},
				}},
			},
		},
		{
			name: "timeout equal to the interval",
			in:   configObject(t, "{l4Listeners: [{protocol: TCP, port: 80, healthCheck: {intervalTime: 5, timeout: 5}}]}"),
			want: LoadBalancerConfig{L4Listeners: []L4Listener{{
				Protocol: "TCP", Port: 80, HealthCheck: &HealthCheck{IntervalTime: ptr[int64](5), Timeout: ptr[int64](5)},
			}}},
		},
		{
			name: "a declared false is kept apart from undeclared",
			in:   configObject(t, "{l4Listeners: [{protocol: TCP, port: 80, healthCheck: {enable: false}}]}"),
			want: LoadBalancerConfig{L4Listeners: []L4Listener{{
				Protocol: "TCP", Port: 80, HealthCheck: &HealthCheck{Enable: ptr(false)},
			}}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := FromUnstructured(tc.in)
			if err != nil {
				t.Fatalf("FromUnstructured: %v", err)
			}
			want := &TkeServiceConfig{Name: "cfg", Namespace: "ns", UID: "uid-1", LoadBalancer: tc.want}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("FromUnstructured (-want +got):\n%s", diff)
			}
			if errs := schemaErrors(t, tc.in); len(errs) > 0 {
				t.Errorf("the CRD's schema refuses what FromUnstructured accepts: %v", errs)
			}
		})
	}
}

// invalidCase is an object FromUnstructured must refuse, with the error
// naming wantErrs. notBySchema says why the OpenAPI schema alone does not
// refuse it (the API server still does, by the means named); empty means
// the schema must refuse it too.
type invalidCase struct {
	name        string
	in          *unstructured.Unstructured
	wantErrs    []string
	notBySchema string
}

func invalidCases(t *testing.T) []invalidCase {
	cases := []invalidCase{
		{
			name: "every range at once, each named",
			in: configObject(t, `{internetMaxBandwidthOut: 0, l4Listeners: [{protocol: TCP, port: 70000,
				session: {sessionExpireTime: 29}, scheduler: RR,
				healthCheck: {intervalTime: 3, healthNum: 11, unHealthNum: 1, timeout: 61, httpCode: 32, sourceIpType: 2,
					httpCheckMethod: POST, checkType: PING, httpCheckPath: "", httpCheckDomain: ""}}]}`),
			wantErrs: []string{
				"spec.loadBalancer.internetMaxBandwidthOut: 0 is out of range 1..2048",
				"spec.loadBalancer.l4Listeners[0].port: 70000 is out of range 1..65535",
				"spec.loadBalancer.l4Listeners[0].session.sessionExpireTime: 29 is out of range 30..3600",
				"spec.loadBalancer.l4Listeners[0].healthCheck.intervalTime: 3 is out of range 5..300",
				"spec.loadBalancer.l4Listeners[0].healthCheck.healthNum: 11 is out of range 2..10",
				"spec.loadBalancer.l4Listeners[0].healthCheck.unHealthNum: 1 is out of range 2..10",
				"spec.loadBalancer.l4Listeners[0].healthCheck.timeout: 61 is out of range 2..60",
				"spec.loadBalancer.l4Listeners[0].healthCheck.httpCode: 32 is out of range 1..31",
				"spec.loadBalancer.l4Listeners[0].healthCheck.sourceIpType: 2 is out of range 0..1",
				`spec.loadBalancer.l4Listeners[0].healthCheck.httpCheckMethod: "POST" is not one of HEAD, GET`,
				`spec.loadBalancer.l4Listeners[0].healthCheck.checkType: "PING" is not one of TCP, HTTP, CUSTOM`,
				"spec.loadBalancer.l4Listeners[0].healthCheck.httpCheckPath: must not be empty",
				"spec.loadBalancer.l4Listeners[0].healthCheck.httpCheckDomain: must not be empty",
				`spec.loadBalancer.l4Listeners[0].scheduler: "RR" is not one of WRR, LEAST_CONN`,
			},
		},
		{
			name:     "protocol not TCP or UDP",
			in:       configObject(t, "{l4Listeners: [{protocol: SCTP, port: 80}]}"),
			wantErrs: []string{`spec.loadBalancer.l4Listeners[0].protocol: "SCTP" is not one of TCP, UDP`},
		},
		{
			name:     "protocol in lower case",
			in:       configObject(t, "{l4Listeners: [{protocol: tcp, port: 80}]}"),
			wantErrs: []string{`spec.loadBalancer.l4Listeners[0].protocol: "tcp" is not one of TCP, UDP`},
		},
		{
			name:     "missing protocol",
			in:       configObject(t, "{l4Listeners: [{port: 80}]}"),
			wantErrs: []string{"spec.loadBalancer.l4Listeners[0].protocol: required"},
		},
		{
			name:     "missing port",
			in:       configObject(t, "{l4Listeners: [{protocol: TCP}]}"),
			wantErrs: []string{"spec.loadBalancer.l4Listeners[0].port: required"},
		},
		{
			name:     "missing both, in the second listener",
			in:       configObject(t, "{l4Listeners: [{protocol: TCP, port: 80}, {scheduler: WRR}]}"),
			wantErrs: []string{"spec.loadBalancer.l4Listeners[1].protocol: required", "spec.loadBalancer.l4Listeners[1].port: required"},
		},
		{
			// The converter narrows to int32 without a check: 2^32+80
			// would become 80.
			name:     "port that wraps around int32",
			in:       configObject(t, "{l4Listeners: [{protocol: TCP, port: 4294967376}]}"),
			wantErrs: []string{"spec.loadBalancer.l4Listeners[0].port: 4294967376 is out of range 1..65535"},
		},
		{
			name:        "duplicate listener",
			in:          configObject(t, "{l4Listeners: [{protocol: TCP, port: 80}, {protocol: UDP, port: 80}, {protocol: TCP, port: 80, scheduler: WRR}]}"),
			wantErrs:    []string{"spec.loadBalancer.l4Listeners[2]: duplicate of l4Listeners[0] (TCP 80)"},
			notBySchema: "x-kubernetes-list-type: map",
		},
		{
			name:        "timeout above the interval",
			in:          configObject(t, "{l4Listeners: [{protocol: TCP, port: 80, healthCheck: {intervalTime: 5, timeout: 6}}]}"),
			wantErrs:    []string{"spec.loadBalancer.l4Listeners[0].healthCheck.timeout: 6 exceeds intervalTime 5"},
			notBySchema: "x-kubernetes-validations (CEL)",
		},
		{
			name:        "unknown field in a health check",
			in:          configObject(t, "{l4Listeners: [{protocol: TCP, port: 80, healthCheck: {intervalTme: 10}}]}"),
			wantErrs:    []string{"intervalTme"},
			notBySchema: "pruning, or refusal under fieldValidation=Strict (kubectl's default)",
		},
		{
			name:        "unknown field in loadBalancer",
			in:          configObject(t, "{l4listeners: [{protocol: TCP, port: 80}]}"),
			wantErrs:    []string{"l4listeners"},
			notBySchema: "pruning, or refusal under fieldValidation=Strict (kubectl's default)",
		},
		{
			name:        "unknown top-level field",
			in:          parse(t, "apiVersion: cloud.tencent.com/v1alpha1\nkind: TkeServiceConfig\nmetadata: {name: cfg, namespace: ns}\nstatus: {ready: true}\n"),
			wantErrs:    []string{"status"},
			notBySchema: "pruning, or refusal under fieldValidation=Strict (kubectl's default)",
		},
		{
			name:     "port as a string",
			in:       configObject(t, `{l4Listeners: [{protocol: TCP, port: "80"}]}`),
			wantErrs: []string{"ns/cfg"},
		},
		{
			name:     "fractional number",
			in:       configObject(t, "{l4Listeners: [{protocol: TCP, port: 80, healthCheck: {intervalTime: 5.5}}]}"),
			wantErrs: []string{"ns/cfg"},
		},
		{
			name:     "bool as a string",
			in:       configObject(t, `{l4Listeners: [{protocol: TCP, port: 80, session: {enable: "true"}}]}`),
			wantErrs: []string{"ns/cfg"},
		},
		{
			name:     "object where a list belongs",
			in:       configObject(t, "{l4Listeners: {protocol: TCP, port: 80}}"),
			wantErrs: []string{"ns/cfg"},
		},
		{
			name:     "list where an object belongs",
			in:       configObject(t, "{l4Listeners: [{protocol: TCP, port: 80, healthCheck: [{enable: true}]}]}"),
			wantErrs: []string{"ns/cfg"},
		},
		{
			name:        "another kind",
			in:          parse(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg, namespace: ns}\n"),
			wantErrs:    []string{`apiVersion "v1" kind "ConfigMap"`},
			notBySchema: "the kind is the URL's",
		},
	}
	// Both sides of every range, one field at a time.
	for _, r := range []struct {
		field    string
		lb       string // with %d for the value
		min, max int64
	}{
		{"l4Listeners[0].port", "{l4Listeners: [{protocol: TCP, port: %d}]}", 1, 65535},
		{"l4Listeners[0].session.sessionExpireTime", "{l4Listeners: [{protocol: TCP, port: 80, session: {sessionExpireTime: %d}}]}", 30, 3600},
		{"l4Listeners[0].healthCheck.intervalTime", "{l4Listeners: [{protocol: TCP, port: 80, healthCheck: {intervalTime: %d}}]}", 5, 300},
		{"l4Listeners[0].healthCheck.healthNum", "{l4Listeners: [{protocol: TCP, port: 80, healthCheck: {healthNum: %d}}]}", 2, 10},
		{"l4Listeners[0].healthCheck.unHealthNum", "{l4Listeners: [{protocol: TCP, port: 80, healthCheck: {unHealthNum: %d}}]}", 2, 10},
		{"l4Listeners[0].healthCheck.timeout", "{l4Listeners: [{protocol: TCP, port: 80, healthCheck: {intervalTime: 300, timeout: %d}}]}", 2, 60},
		{"l4Listeners[0].healthCheck.httpCode", "{l4Listeners: [{protocol: TCP, port: 80, healthCheck: {httpCode: %d}}]}", 1, 31},
		{"l4Listeners[0].healthCheck.sourceIpType", "{l4Listeners: [{protocol: TCP, port: 80, healthCheck: {sourceIpType: %d}}]}", 0, 1},
		{"internetMaxBandwidthOut", "{internetMaxBandwidthOut: %d}", 1, 2048},
	} {
		for _, v := range []int64{r.min - 1, r.max + 1} {
			want := fmt.Sprintf("spec.loadBalancer.%s: %d is out of range %d..%d", r.field, v, r.min, r.max)
			if r.field == "l4Listeners[0].port" && v == 0 {
				want = "spec.loadBalancer.l4Listeners[0].port: required, 1..65535"
			}
			cases = append(cases, invalidCase{
				name:     fmt.Sprintf("%s %d", r.field, v),
				in:       configObject(t, fmt.Sprintf(r.lb, v)),
				wantErrs: []string{want},
			})
		}
	}
	return cases
}

func TestFromUnstructuredInvalid(t *testing.T) {
	for _, tc := range invalidCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			got, err := FromUnstructured(tc.in)
			if err == nil {
				t.Fatalf("FromUnstructured accepted it: %+v", got)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %q does not wrap ErrInvalid", err)
			}
			for _, want := range tc.wantErrs {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if tc.notBySchema == "" {
				if errs := schemaErrors(t, tc.in); len(errs) == 0 {
					t.Error("the CRD's schema accepts what FromUnstructured refuses")
				}
			}
		})
	}
}

func TestFromUnstructuredNil(t *testing.T) {
	if _, err := FromUnstructured(nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("FromUnstructured(nil) = %v, want ErrInvalid", err)
	}
}

func TestListener(t *testing.T) {
	cfg, err := FromUnstructured(configObject(t, "{l4Listeners: [{protocol: TCP, port: 80, scheduler: WRR}, {protocol: UDP, port: 80, scheduler: LEAST_CONN}]}"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		protocol      string
		port          int32
		wantScheduler string // empty: no listener
	}{
		{"TCP", 80, "WRR"},
		{"UDP", 80, "LEAST_CONN"},
		{"TCP", 81, ""},
		{"tcp", 80, ""},
	} {
		l := cfg.Listener(tc.protocol, tc.port)
		switch {
		case tc.wantScheduler == "" && l != nil:
			t.Errorf("Listener(%s, %d) = %+v, want nil", tc.protocol, tc.port, l)
		case tc.wantScheduler != "" && (l == nil || *l.Scheduler != tc.wantScheduler):
			t.Errorf("Listener(%s, %d) = %+v, want the one with scheduler %s", tc.protocol, tc.port, l, tc.wantScheduler)
		}
	}
	// The controller may look a listener up before any config is found.
	var none *TkeServiceConfig
	if l := none.Listener("TCP", 80); l != nil {
		t.Errorf("nil config: Listener = %+v, want nil", l)
	}
}

func TestAutoConfigName(t *testing.T) {
	if got, want := AutoConfigName("echo"), "echo-auto-service-config"; got != want {
		t.Errorf("AutoConfigName(echo) = %q, want %q", got, want)
	}
}
