package tkeconfig

import (
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/kube-openapi/pkg/validation/spec"
	"k8s.io/kube-openapi/pkg/validation/strfmt"
	openapivalidate "k8s.io/kube-openapi/pkg/validation/validate"
)

const crdFile = "../deploy/crd/tkeserviceconfigs.yaml"

// crd mirrors the parts of a CustomResourceDefinition the file uses; the
// strict decoding into it fails on any other field, so a misspelt keyword
// (maximun) cannot silently drop a constraint. apiextensions-apiserver, which
// has the real type, is not a dependency of this module.
type crd struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name   string            `json:"name"`
		Labels map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		Group string `json:"group"`
		Scope string `json:"scope"`
		Names struct {
			Kind       string   `json:"kind"`
			ListKind   string   `json:"listKind"`
			Plural     string   `json:"plural"`
			Singular   string   `json:"singular"`
			ShortNames []string `json:"shortNames"`
		} `json:"names"`
		Versions []struct {
			Name                     string `json:"name"`
			Served                   bool   `json:"served"`
			Storage                  bool   `json:"storage"`
			AdditionalPrinterColumns []struct {
				Name     string `json:"name"`
				Type     string `json:"type"`
				JSONPath string `json:"jsonPath"`
			} `json:"additionalPrinterColumns"`
			Schema struct {
				OpenAPIV3Schema jsonSchema `json:"openAPIV3Schema"`
			} `json:"schema"`
		} `json:"versions"`
	} `json:"spec"`
}

// jsonSchema is the subset of JSONSchemaProps the schema may use.
type jsonSchema struct {
	Description  string                `json:"description"`
	Type         string                `json:"type"`
	Format       string                `json:"format"`
	Properties   map[string]jsonSchema `json:"properties"`
	Items        *jsonSchema           `json:"items"`
	Required     []string              `json:"required"`
	Enum         []string              `json:"enum"`
	Minimum      *int64                `json:"minimum"`
	Maximum      *int64                `json:"maximum"`
	MinLength    *int64                `json:"minLength"`
	ListType     string                `json:"x-kubernetes-list-type"`
	ListMapKeys  []string              `json:"x-kubernetes-list-map-keys"`
	PreserveUnk  bool                  `json:"x-kubernetes-preserve-unknown-fields"`
	XValidations []struct {
		Rule      string `json:"rule"`
		Message   string `json:"message"`
		FieldPath string `json:"fieldPath"`
	} `json:"x-kubernetes-validations"`
}

// at returns the schema at a path of property names, "[]" stepping into
// array items.
func (s jsonSchema) at(t *testing.T, path ...string) jsonSchema {
	t.Helper()
	for i, p := range path {
		var next *jsonSchema
		if p == "[]" {
			next = s.Items
		} else if c, ok := s.Properties[p]; ok {
			next = &c
		}
		if next == nil {
			t.Fatalf("the schema has no %s", strings.Join(path[:i+1], "."))
		}
		s = *next
	}
	return s
}

func readCRD(t *testing.T) []byte {
	t.Helper()
	data, err := os.ReadFile(crdFile)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func loadCRD(t *testing.T) crd {
	t.Helper()
	var c crd
	if err := yaml.UnmarshalStrict(readCRD(t), &c); err != nil {
		t.Fatalf("%s: %v", crdFile, err)
	}
	return c
}

func TestCRDNames(t *testing.T) {
	c := loadCRD(t)
	if c.APIVersion != "apiextensions.k8s.io/v1" || c.Kind != "CustomResourceDefinition" {
		t.Errorf("%s %s, want apiextensions.k8s.io/v1 CustomResourceDefinition", c.APIVersion, c.Kind)
	}
	n := c.Spec.Names
	if c.Metadata.Name != GVR.GroupResource().String() || c.Spec.Group != GVR.Group || n.Plural != GVR.Resource ||
		n.Kind != GVK.Kind || n.ListKind != GVK.Kind+"List" || n.Singular != "tkeserviceconfig" ||
		!slices.Equal(n.ShortNames, []string{"tsc"}) || c.Spec.Scope != "Namespaced" {
		t.Errorf("name %s, group %s, scope %s, names %+v: want %s, namespaced, kind %s, plural %s, singular tkeserviceconfig, short name tsc",
			c.Metadata.Name, c.Spec.Group, c.Spec.Scope, n, GVR.GroupResource(), GVK.Kind, GVR.Resource)
	}
	if len(c.Spec.Versions) != 1 {
		t.Fatalf("%d versions, want 1", len(c.Spec.Versions))
	}
	v := c.Spec.Versions[0]
	if v.Name != GVR.Version || !v.Served || !v.Storage {
		t.Errorf("version %s served %v storage %v, want %s served and stored", v.Name, v.Served, v.Storage, GVR.Version)
	}
	if !slices.ContainsFunc(v.AdditionalPrinterColumns, func(c struct {
		Name     string `json:"name"`
		Type     string `json:"type"`
		JSONPath string `json:"jsonPath"`
	}) bool {
		return c.Name == "Age" && c.Type == "date" && c.JSONPath == ".metadata.creationTimestamp"
	}) {
		t.Errorf("printer columns %+v have no Age", v.AdditionalPrinterColumns)
	}
}

// TestCRDSchemaIsStructural checks the rules of a structural schema that
// concern this one: every node has a type unless it preserves unknown
// fields, and every array has items.
func TestCRDSchemaIsStructural(t *testing.T) {
	var walk func(path string, s jsonSchema)
	walk = func(path string, s jsonSchema) {
		if s.Type == "" && !s.PreserveUnk {
			t.Errorf("%s: no type", path)
		}
		if s.Type == "array" && s.Items == nil {
			t.Errorf("%s: an array without items", path)
		}
		if s.Items != nil {
			walk(path+"[]", *s.Items)
		}
		for name, p := range s.Properties {
			walk(path+"."+name, p)
		}
	}
	walk("", loadCRD(t).Spec.Versions[0].Schema.OpenAPIV3Schema)
}

// TestCRDSchemaMatchesGoTypes fails when a field is added to the Go types
// and not to the schema (the API server would prune it from every object)
// or the other way round (FromUnstructured would refuse it).
func TestCRDSchemaMatchesGoTypes(t *testing.T) {
	root := loadCRD(t).Spec.Versions[0].Schema.OpenAPIV3Schema
	lb := root.at(t, "spec", "loadBalancer")
	for _, tc := range []struct {
		path   string
		schema jsonSchema
		typ    reflect.Type
		extra  []string // in the schema only, on purpose
	}{
		{"spec.loadBalancer", lb, reflect.TypeFor[LoadBalancerConfig](), []string{"l7Listeners"}},
		{"l4Listeners[]", lb.at(t, "l4Listeners", "[]"), reflect.TypeFor[L4Listener](), nil},
		{"l4Listeners[].session", lb.at(t, "l4Listeners", "[]", "session"), reflect.TypeFor[Session](), nil},
		{"l4Listeners[].healthCheck", lb.at(t, "l4Listeners", "[]", "healthCheck"), reflect.TypeFor[HealthCheck](), nil},
	} {
		var goFields []string
		for f := range tc.typ.Fields() {
			goFields = append(goFields, strings.Split(f.Tag.Get("json"), ",")[0])
		}
		var schemaFields []string
		for name := range tc.schema.Properties {
			if !slices.Contains(tc.extra, name) {
				schemaFields = append(schemaFields, name)
			}
		}
		slices.Sort(goFields)
		slices.Sort(schemaFields)
		if !slices.Equal(goFields, schemaFields) {
			t.Errorf("%s: the schema has %v, %s has %v", tc.path, schemaFields, tc.typ, goFields)
		}
	}
}

// TestCRDSchemaConstraints checks that the schema carries the constraints
// FromUnstructured checks, with the same values, so neither can be changed
// or dropped alone.
func TestCRDSchemaConstraints(t *testing.T) {
	lb := loadCRD(t).Spec.Versions[0].Schema.OpenAPIV3Schema.at(t, "spec", "loadBalancer")
	l4 := []string{"l4Listeners", "[]"}
	hc := append(slices.Clone(l4), "healthCheck")
	for _, tc := range []struct {
		path []string
		r    valueRange
	}{
		{[]string{"internetMaxBandwidthOut"}, bandwidthRange},
		{append(slices.Clone(l4), "port"), portRange},
		{append(slices.Clone(l4), "session", "sessionExpireTime"), sessionExpireTimeRange},
		{append(slices.Clone(hc), "intervalTime"), intervalTimeRange},
		{append(slices.Clone(hc), "healthNum"), healthNumRange},
		{append(slices.Clone(hc), "unHealthNum"), unHealthNumRange},
		{append(slices.Clone(hc), "timeout"), timeoutRange},
		{append(slices.Clone(hc), "httpCode"), httpCodeRange},
		{append(slices.Clone(hc), "sourceIpType"), sourceIPTypeRange},
	} {
		s := lb.at(t, tc.path...)
		if s.Type != "integer" || s.Minimum == nil || *s.Minimum != tc.r.Min || s.Maximum == nil || *s.Maximum != tc.r.Max {
			t.Errorf("%s: type %q minimum %v maximum %v, want integer %d..%d",
				strings.Join(tc.path, "."), s.Type, deref(s.Minimum), deref(s.Maximum), tc.r.Min, tc.r.Max)
		}
	}
	for _, tc := range []struct {
		path []string
		enum []string
	}{
		{append(slices.Clone(l4), "protocol"), protocols},
		{append(slices.Clone(l4), "scheduler"), schedulers},
		{append(slices.Clone(hc), "checkType"), checkTypes},
		{append(slices.Clone(hc), "httpCheckMethod"), httpMethods},
	} {
		if s := lb.at(t, tc.path...); s.Type != "string" || !slices.Equal(s.Enum, tc.enum) {
			t.Errorf("%s: type %q enum %v, want string %v", strings.Join(tc.path, "."), s.Type, s.Enum, tc.enum)
		}
	}
	for _, name := range []string{"httpCheckPath", "httpCheckDomain"} {
		if s := lb.at(t, append(slices.Clone(hc), name)...); s.Type != "string" || s.MinLength == nil || *s.MinLength != 1 {
			t.Errorf("%s: type %q minLength %v, want a non-empty string", name, s.Type, deref(s.MinLength))
		}
	}

	// One entry per listener: a list-map keyed by protocol and port, whose
	// keys must be required for the API server to accept the CRD.
	listeners := lb.at(t, "l4Listeners")
	keys := []string{"protocol", "port"}
	if listeners.ListType != "map" || !slices.Equal(listeners.ListMapKeys, keys) {
		t.Errorf("l4Listeners: list-type %q keys %v, want map keyed by %v", listeners.ListType, listeners.ListMapKeys, keys)
	}
	if req := listeners.Items.Required; !slices.Contains(req, "protocol") || !slices.Contains(req, "port") {
		t.Errorf("l4Listeners[]: required %v, want protocol and port", req)
	}

	const rule = "!has(self.timeout) || !has(self.intervalTime) || self.timeout <= self.intervalTime"
	if v := lb.at(t, hc...).XValidations; len(v) != 1 || v[0].Rule != rule || v[0].FieldPath != ".timeout" {
		t.Errorf("healthCheck: x-kubernetes-validations %+v, want the one rule %q on .timeout", v, rule)
	}
	if l7 := lb.at(t, "l7Listeners"); l7.Type != "array" || l7.Items == nil || !l7.Items.PreserveUnk {
		t.Errorf("l7Listeners: %+v, want an array of objects that keep unknown fields", l7)
	}
}

func deref[T any](p *T) any {
	if p == nil {
		return "unset"
	}
	return *p
}

var openAPISchema = sync.OnceValues(func() (*spec.Schema, error) {
	data, err := os.ReadFile(crdFile)
	if err != nil {
		return nil, err
	}
	var c struct {
		Spec struct {
			Versions []struct {
				Schema struct {
					OpenAPIV3Schema json.RawMessage `json:"openAPIV3Schema"`
				} `json:"schema"`
			} `json:"versions"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(data, &c); err != nil {
		return nil, err
	}
	s := &spec.Schema{}
	return s, s.UnmarshalJSON(c.Spec.Versions[0].Schema.OpenAPIV3Schema)
})

// schemaErrors validates u against the CRD's OpenAPI schema with the
// validator the API server uses for custom resources. It checks types,
// required fields, ranges, lengths and enumerations; not CEL rules, list-map
// uniqueness or unknown fields, which the API server handles elsewhere.
func schemaErrors(t *testing.T, u *unstructured.Unstructured) []error {
	t.Helper()
	s, err := openAPISchema()
	if err != nil {
		t.Fatalf("%s: %v", crdFile, err)
	}
	return openapivalidate.NewSchemaValidator(s, nil, "", strfmt.Default).Validate(u.Object).Errors
}

// TestExampleIsValid checks the example users copy against the schema and
// FromUnstructured (deploy's tests read it too, but only as a manifest).
func TestExampleIsValid(t *testing.T) {
	data, err := os.ReadFile("../deploy/examples/tkeserviceconfig.yaml")
	if err != nil {
		t.Fatal(err)
	}
	u := parse(t, string(data))
	if errs := schemaErrors(t, u); len(errs) > 0 {
		t.Errorf("the schema refuses the example: %v", errs)
	}
	cfg, err := FromUnstructured(u)
	if err != nil {
		t.Fatal(err)
	}
	l := cfg.Listener(ProtocolTCP, 80)
	if l == nil || l.HealthCheck == nil || deref(l.HealthCheck.HTTPCheckPath) != "/healthz" || deref(l.HealthCheck.IntervalTime) != int64(5) ||
		l.Session == nil || deref(l.Session.SessionExpireTime) != int64(300) || deref(l.Scheduler) != SchedulerWRR {
		t.Errorf("example listener TCP 80 is %+v, want an HTTP check of /healthz every 5 s, session 300 s, WRR", l)
	}
}
