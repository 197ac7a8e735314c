// Package deploy_test checks the manifests in deploy/: every YAML document
// decodes strictly into a known Kubernetes kind, and the settings the
// controller's safety depends on (least-privilege RBAC, the hardened security
// context, the wiring of its configuration) are there. A removed or widened
// setting fails here rather than in a cluster.
package deploy_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"

	"clb-direct/tkeconfig"
)

const (
	namespace = "clb-direct-system"
	name      = "clb-direct"
)

// kustomization.yaml is kustomize's, not a Kubernetes kind; it is checked on
// its own by TestKustomizationListsEveryManifest.
const kustomization = "kustomization.yaml"

type manifest struct {
	file string
	obj  runtime.Object
}

// decodeAll decodes every document of every YAML file under deploy/. The
// decoder is strict: an unknown or duplicated field is an error, so a typo
// such as readOnlyRootFilesytem cannot silently drop a setting.
func decodeAll(t *testing.T) []manifest {
	t.Helper()
	decoder := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	var out []manifest
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path == kustomization {
			return err
		}
		if ext := filepath.Ext(path); ext != ".yaml" && ext != ".yml" {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		reader := yaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
		for n := 1; ; n++ {
			doc, err := reader.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Errorf("%s: document %d: %v", path, n, err)
				break
			}
			if isEmpty(doc) {
				continue
			}
			obj, err := decode(decoder, doc)
			if err != nil {
				t.Errorf("%s: document %d: %v", path, n, err)
				continue
			}
			out = append(out, manifest{file: path, obj: obj})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	return out
}

// crdGVK is the kind of deploy/crd/'s CustomResourceDefinitions, which
// client-go's scheme does not know (its types live in apiextensions-apiserver,
// which this module does not depend on): tkeconfig/crd_test.go checks them.
var crdGVK = schema.GroupVersionKind{Group: "apiextensions.k8s.io", Version: "v1", Kind: "CustomResourceDefinition"}

// decode decodes one document strictly. A CustomResourceDefinition becomes
// an Unstructured (duplicated fields are still errors); a TkeServiceConfig
// too, once it passes tkeconfig.FromUnstructured, the controller's own strict
// reading of it (unknown fields, types, ranges).
func decode(decoder runtime.Decoder, doc []byte) (runtime.Object, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return nil, err
	}
	gvk := tm.GroupVersionKind()
	if gvk != crdGVK && gvk != tkeconfig.GVK {
		obj, _, err := decoder.Decode(doc, nil, nil)
		return obj, err
	}
	u := &unstructured.Unstructured{}
	if err := yaml.UnmarshalStrict(doc, &u.Object); err != nil {
		return nil, err
	}
	if gvk == tkeconfig.GVK {
		if _, err := tkeconfig.FromUnstructured(u); err != nil {
			return nil, err
		}
	}
	return u, nil
}

// isEmpty reports whether a YAML document holds only comments or blanks.
func isEmpty(doc []byte) bool {
	for line := range strings.Lines(string(doc)) {
		if s := strings.TrimSpace(line); s != "" && !strings.HasPrefix(s, "#") {
			return false
		}
	}
	return true
}

// find returns the one object of type T named name in namespace ns (any
// namespace when ns is "*"), failing the test unless there is exactly one.
func find[T runtime.Object](t *testing.T, ms []manifest, ns, name string) T {
	t.Helper()
	var found []T
	for _, m := range ms {
		obj, ok := m.obj.(T)
		if !ok {
			continue
		}
		om, err := meta.Accessor(obj)
		if err != nil {
			t.Fatalf("%s: %v", m.file, err)
		}
		if om.GetName() == name && (ns == "*" || om.GetNamespace() == ns) {
			found = append(found, obj)
		}
	}
	if len(found) != 1 {
		var zero T
		t.Fatalf("want exactly one %T %s/%s in deploy/, found %d", zero, ns, name, len(found))
	}
	return found[0]
}

func TestManifestsDecode(t *testing.T) {
	ms := decodeAll(t)
	// The installation's objects, each exactly once.
	find[*corev1.Namespace](t, ms, "", namespace)
	find[*corev1.ServiceAccount](t, ms, namespace, name)
	find[*corev1.ConfigMap](t, ms, namespace, "clb-direct-config")
	find[*rbacv1.ClusterRole](t, ms, "", name)
	find[*rbacv1.ClusterRoleBinding](t, ms, "", name)
	find[*rbacv1.Role](t, ms, namespace, "clb-direct-leader-election")
	find[*rbacv1.RoleBinding](t, ms, namespace, "clb-direct-leader-election")
	find[*appsv1.Deployment](t, ms, namespace, name)
	find[*corev1.Service](t, ms, namespace, "clb-direct-webhook")
	find[*admissionregistrationv1.MutatingWebhookConfiguration](t, ms, "", "clb-direct-readiness-gate")
	// The examples.
	find[*appsv1.Deployment](t, ms, "*", "echo")
	find[*corev1.Service](t, ms, "*", "echo")
	find[*unstructured.Unstructured](t, ms, "*", "echo-config")
	// The CRD the example needs.
	find[*unstructured.Unstructured](t, ms, "", "tkeserviceconfigs.cloud.tencent.com")
}

func TestKustomizationListsEveryManifest(t *testing.T) {
	data, err := os.ReadFile(kustomization)
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		Resources []string `json:"resources"`
	}
	if err := yaml.Unmarshal(data, &k); err != nil {
		t.Fatalf("%s: %v", kustomization, err)
	}
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	crds, err := filepath.Glob("crd/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, crds...)
	files = slices.DeleteFunc(files, func(f string) bool { return f == kustomization })
	got := slices.Sorted(slices.Values(k.Resources))
	sort.Strings(files)
	if !slices.Equal(got, files) {
		t.Fatalf("%s lists %v, want the manifests in deploy/: %v", kustomization, got, files)
	}
}

func TestDeploymentSecurityContext(t *testing.T) {
	ms := decodeAll(t)
	d := find[*appsv1.Deployment](t, ms, namespace, name)
	pod := d.Spec.Template.Spec
	if pod.SecurityContext == nil {
		t.Fatal("the Pod has no securityContext")
	}
	psc := pod.SecurityContext
	if len(pod.Containers) == 0 {
		t.Fatal("the Deployment has no containers")
	}
	for _, c := range slices.Concat(pod.InitContainers, pod.Containers) {
		sc := c.SecurityContext
		if sc == nil {
			t.Errorf("container %s: no securityContext", c.Name)
			continue
		}
		// Effective values: the container's setting wins over the Pod's.
		runAsNonRoot := first(sc.RunAsNonRoot, psc.RunAsNonRoot)
		runAsUser := first(sc.RunAsUser, psc.RunAsUser)
		runAsGroup := first(sc.RunAsGroup, psc.RunAsGroup)
		seccomp := first(sc.SeccompProfile, psc.SeccompProfile)
		if runAsNonRoot == nil || !*runAsNonRoot {
			t.Errorf("container %s: runAsNonRoot is not true", c.Name)
		}
		if runAsUser == nil || *runAsUser != 65532 {
			t.Errorf("container %s: runAsUser is %v, want 65532", c.Name, deref(runAsUser))
		}
		if runAsGroup == nil || *runAsGroup == 0 {
			t.Errorf("container %s: runAsGroup is %v, want a numeric non-root group", c.Name, deref(runAsGroup))
		}
		if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("container %s: seccompProfile is %+v, want RuntimeDefault", c.Name, seccomp)
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("container %s: readOnlyRootFilesystem is not true", c.Name)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("container %s: allowPrivilegeEscalation is not false", c.Name)
		}
		if sc.Privileged != nil && *sc.Privileged {
			t.Errorf("container %s: privileged", c.Name)
		}
		if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
			t.Errorf("container %s: capabilities are %+v, want drop [ALL] and no add", c.Name, sc.Capabilities)
		}
		if sc.ProcMount != nil && *sc.ProcMount != corev1.DefaultProcMount {
			t.Errorf("container %s: procMount %s", c.Name, *sc.ProcMount)
		}
		for _, p := range c.Ports {
			if p.HostPort != 0 {
				t.Errorf("container %s: port %s binds host port %d", c.Name, p.Name, p.HostPort)
			}
		}
	}
	if pod.HostNetwork || pod.HostPID || pod.HostIPC {
		t.Error("the Pod shares a host namespace")
	}
	// Only Secrets and a scratch emptyDir: nothing of the node.
	for _, v := range pod.Volumes {
		if v.Secret == nil && v.EmptyDir == nil {
			t.Errorf("volume %s: want a Secret or an emptyDir, got %+v", v.Name, v.VolumeSource)
		}
	}
	// The service-account token: mounted because the controller needs it
	// (in-cluster config), and only into this Pod: the ServiceAccount does
	// not automount it into others.
	if pod.AutomountServiceAccountToken == nil || !*pod.AutomountServiceAccountToken {
		t.Errorf("automountServiceAccountToken is %v on the Pod, want true: the controller authenticates with it", deref(pod.AutomountServiceAccountToken))
	}
	sa := find[*corev1.ServiceAccount](t, ms, namespace, pod.ServiceAccountName)
	if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		t.Errorf("ServiceAccount %s: automountServiceAccountToken is %v, want false (only Pods that ask get the token)", sa.Name, deref(sa.AutomountServiceAccountToken))
	}
}

func TestDeploymentSpec(t *testing.T) {
	ms := decodeAll(t)
	d := find[*appsv1.Deployment](t, ms, namespace, name)
	pod := d.Spec.Template.Spec

	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("replicas %v, want 2", deref(d.Spec.Replicas))
	}
	if pod.ServiceAccountName != name {
		t.Errorf("serviceAccountName %q, want %q", pod.ServiceAccountName, name)
	}
	if g := pod.TerminationGracePeriodSeconds; g == nil || *g != 30 {
		t.Errorf("terminationGracePeriodSeconds %v, want 30", deref(g))
	}
	aa := pod.Affinity
	if aa == nil || aa.PodAntiAffinity == nil || len(aa.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) == 0 ||
		aa.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].PodAffinityTerm.TopologyKey != corev1.LabelHostname {
		t.Errorf("affinity %+v, want a preferred pod anti-affinity on %s", aa, corev1.LabelHostname)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]

	wantArgs := []string{
		"--leader-elect=true",
		"--leader-elect-resource-namespace=" + namespace,
		"--cluster-id=$(CLUSTER_ID)",
		"--region=$(REGION)",
		"--cloud=tencent",
		"--health-probe-bind-address=:8081",
		"--metrics-bind-address=:8080",
		"--metrics-cert-file=/etc/clb-direct/webhook/tls.crt",
		"--metrics-key-file=/etc/clb-direct/webhook/tls.key",
		"--cloud-credentials-file=/etc/clb-direct/credentials",
		"--webhook-bind-address=:9443",
		"--webhook-cert-file=/etc/clb-direct/webhook/tls.crt",
		"--webhook-key-file=/etc/clb-direct/webhook/tls.key",
		"-v=2",
	}
	if !slices.Equal(c.Args, wantArgs) {
		t.Errorf("args %q, want %q", c.Args, wantArgs)
	}
	// Exactly the ports the args bind, named for probes and scrapers.
	wantPorts := []corev1.ContainerPort{
		{Name: "metrics", ContainerPort: 8080, Protocol: corev1.ProtocolTCP},
		{Name: "healthz", ContainerPort: 8081, Protocol: corev1.ProtocolTCP},
		{Name: "webhook", ContainerPort: 9443, Protocol: corev1.ProtocolTCP},
	}
	if !slices.Equal(c.Ports, wantPorts) {
		t.Errorf("ports %+v, want %+v", c.Ports, wantPorts)
	}

	// $(CLUSTER_ID) and $(REGION) expand only from env defined on the
	// container: each must come from the ConfigMap, which must hold the key.
	cm := find[*corev1.ConfigMap](t, ms, namespace, "clb-direct-config")
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	for _, key := range []string{"CLUSTER_ID", "REGION"} {
		e, ok := env[key]
		if !ok || e.ValueFrom == nil || e.ValueFrom.ConfigMapKeyRef == nil ||
			e.ValueFrom.ConfigMapKeyRef.Name != cm.Name || e.ValueFrom.ConfigMapKeyRef.Key != key {
			t.Errorf("env %s: want it from ConfigMap %s key %s, got %+v", key, cm.Name, key, e)
			continue
		}
		if _, ok := cm.Data[key]; !ok {
			t.Errorf("ConfigMap %s has no key %s", cm.Name, key)
		}
	}
	// Credentials and the webhook certificate come from Secret volumes,
	// read-only, never from inline values: the files are re-read on rotation.
	for _, key := range []string{"TENCENTCLOUD_SECRET_ID", "TENCENTCLOUD_SECRET_KEY"} {
		if e, ok := env[key]; ok {
			t.Errorf("env %s: credentials come from the mounted Secret, not env (%+v)", key, e)
		}
	}
	for mount, secret := range map[string]string{"/etc/clb-direct/credentials": "clb-direct-credentials", "/etc/clb-direct/webhook": "clb-direct-webhook-tls"} {
		i := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == mount })
		if i < 0 || !c.VolumeMounts[i].ReadOnly {
			t.Errorf("no read-only volume mount at %s", mount)
			continue
		}
		v := slices.IndexFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Name == c.VolumeMounts[i].Name })
		if v < 0 || pod.Volumes[v].Secret == nil || pod.Volumes[v].Secret.SecretName != secret {
			t.Errorf("volume mounted at %s: want Secret %s", mount, secret)
		}
	}
	// The webhook and the metrics serve TLS with files of the webhook's
	// certificate Secret: every --*-cert-file and --*-key-file is tls.crt or
	// tls.key under its read-only mount.
	for _, arg := range c.Args {
		flagName, file, _ := strings.Cut(arg, "=")
		var want string
		switch {
		case strings.HasSuffix(flagName, "-cert-file"):
			want = "tls.crt"
		case strings.HasSuffix(flagName, "-key-file"):
			want = "tls.key"
		default:
			continue
		}
		i := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == filepath.Dir(file) })
		if i < 0 || !c.VolumeMounts[i].ReadOnly || filepath.Base(file) != want {
			t.Errorf("%s: want %s in a read-only volume mount", arg, want)
			continue
		}
		v := slices.IndexFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Name == c.VolumeMounts[i].Name })
		if v < 0 || pod.Volumes[v].Secret == nil || pod.Volumes[v].Secret.SecretName != "clb-direct-webhook-tls" {
			t.Errorf("%s: want it from Secret clb-direct-webhook-tls", arg)
		}
	}

	probe := func(what string, p *corev1.Probe, path string) {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s probe: want an HTTP GET of %s on 8081, got %+v", what, path, p)
			return
		}
		port := p.HTTPGet.Port
		if port.Type == intstr.String {
			for _, cp := range c.Ports {
				if cp.Name == port.StrVal {
					port = intstr.FromInt32(cp.ContainerPort)
				}
			}
		}
		if p.HTTPGet.Path != path || port.IntValue() != 8081 {
			t.Errorf("%s probe: GET %s on %s, want %s on 8081", what, p.HTTPGet.Path, port.String(), path)
		}
	}
	probe("liveness", c.LivenessProbe, "/healthz")
	probe("readiness", c.ReadinessProbe, "/readyz")

	res := c.Resources
	for _, check := range []struct {
		what string
		list corev1.ResourceList
		name corev1.ResourceName
		want string
	}{
		{"requests", res.Requests, corev1.ResourceCPU, "100m"},
		{"requests", res.Requests, corev1.ResourceMemory, "128Mi"},
		{"limits", res.Limits, corev1.ResourceMemory, "512Mi"},
	} {
		if q, ok := check.list[check.name]; !ok || q.String() != check.want {
			t.Errorf("resources.%s.%s = %v, want %s", check.what, check.name, q.String(), check.want)
		}
	}
}

// rule is a PolicyRule flattened to one resource and one verb, so rule sets
// compare regardless of how they are grouped.
type rule struct {
	group, resource, verb, resourceName string
}

func flatten(rules []rbacv1.PolicyRule) []rule {
	var out []rule
	for _, r := range rules {
		names := r.ResourceNames
		if len(names) == 0 {
			names = []string{""}
		}
		if len(r.NonResourceURLs) != 0 {
			out = append(out, rule{resource: "nonResourceURLs:" + strings.Join(r.NonResourceURLs, ","), verb: strings.Join(r.Verbs, ",")})
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					for _, n := range names {
						out = append(out, rule{g, res, v, n})
					}
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b rule) int {
		return strings.Compare(a.group+"/"+a.resource+"/"+a.verb+"/"+a.resourceName, b.group+"/"+b.resource+"/"+b.verb+"/"+b.resourceName)
	})
	return slices.Compact(out)
}

func TestRBACLeastPrivilege(t *testing.T) {
	ms := decodeAll(t)

	cr := find[*rbacv1.ClusterRole](t, ms, "", name)
	if cr.AggregationRule != nil {
		t.Error("the ClusterRole aggregates other roles")
	}
	// Exactly the verbs of apiUses (rbac_code_test.go): cluster-wide ones
	// in the ClusterRole, the others in a Role of their namespace.
	check := func(what string, rules []rbacv1.PolicyRule, ns string) {
		t.Helper()
		got, want := flatten(rules), tableRules(ns)
		if reflect.DeepEqual(got, want) {
			return
		}
		extra, missing := ruleDiff(got, want)
		for _, r := range extra {
			t.Errorf("%s grants %s, which no code path in apiUses needs: remove it", what, r)
		}
		for _, r := range missing {
			t.Errorf("%s does not grant %s, which apiUses says the code needs", what, r)
		}
	}
	check("ClusterRole "+cr.Name, cr.Rules, "")
	role := find[*rbacv1.Role](t, ms, namespace, "clb-direct-leader-election")
	check("Role "+namespace+"/"+role.Name, role.Rules, namespace)
	configRole := find[*rbacv1.Role](t, ms, kubeSystem, "clb-direct-service-controller-config")
	check("Role "+kubeSystem+"/"+configRole.Name, configRole.Rules, kubeSystem)
	for _, u := range apiUses {
		if u.namespace != "" && u.namespace != namespace && u.namespace != kubeSystem {
			t.Errorf("apiUses: %s in namespace %s, which has no Role in deploy/", u.resource, u.namespace)
		}
	}

	sa := rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: namespace}
	crb := find[*rbacv1.ClusterRoleBinding](t, ms, "", name)
	if crb.RoleRef != (rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: cr.Name}) || !slices.Equal(crb.Subjects, []rbacv1.Subject{sa}) {
		t.Errorf("ClusterRoleBinding %s: roleRef %+v subjects %+v, want ClusterRole %s to %+v only", crb.Name, crb.RoleRef, crb.Subjects, cr.Name, sa)
	}
	rb := find[*rbacv1.RoleBinding](t, ms, namespace, role.Name)
	if rb.RoleRef != (rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name}) || !slices.Equal(rb.Subjects, []rbacv1.Subject{sa}) {
		t.Errorf("RoleBinding %s: roleRef %+v subjects %+v, want Role %s to %+v only", rb.Name, rb.RoleRef, rb.Subjects, role.Name, sa)
	}
	crb2 := find[*rbacv1.RoleBinding](t, ms, kubeSystem, configRole.Name)
	if crb2.RoleRef != (rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: configRole.Name}) || !slices.Equal(crb2.Subjects, []rbacv1.Subject{sa}) {
		t.Errorf("RoleBinding %s/%s: roleRef %+v subjects %+v, want Role %s to %+v only", kubeSystem, crb2.Name, crb2.RoleRef, crb2.Subjects, configRole.Name, sa)
	}
}

func TestExampleServiceSelectsExampleDeployment(t *testing.T) {
	ms := decodeAll(t)
	svc := find[*corev1.Service](t, ms, "*", "echo")
	d := find[*appsv1.Deployment](t, ms, "*", "echo")

	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		t.Errorf("type %s, want LoadBalancer", svc.Spec.Type)
	}
	if v := svc.Annotations["service.cloud.tencent.com/direct-access"]; v != "true" {
		t.Errorf("direct-access annotation %q, want \"true\"", v)
	}
	if len(svc.Spec.Ports) != 1 {
		t.Fatalf("%d ports, want 1", len(svc.Spec.Ports))
	}
	p := svc.Spec.Ports[0]
	if p.Port != 80 || p.TargetPort != intstr.FromString("http") || p.Protocol != corev1.ProtocolTCP {
		t.Errorf("port %d -> %s/%s, want 80 -> http/TCP", p.Port, p.TargetPort.String(), p.Protocol)
	}
	labels := d.Spec.Template.Labels
	for k, v := range svc.Spec.Selector {
		if labels[k] != v {
			t.Errorf("selector %s=%s does not match the echo Pods' labels %v", k, v, labels)
		}
	}
	if len(svc.Spec.Selector) == 0 {
		t.Error("the Service has no selector")
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 3 {
		t.Errorf("echo replicas %v, want 3", deref(d.Spec.Replicas))
	}
	var named bool
	for _, c := range d.Spec.Template.Spec.Containers {
		for _, cp := range c.Ports {
			named = named || (cp.Name == "http" && cp.ContainerPort == 8080)
		}
	}
	if !named {
		t.Error("no echo container port named http on 8080")
	}
}

func first[T any](ps ...*T) *T {
	for _, p := range ps {
		if p != nil {
			return p
		}
	}
	return nil
}

func deref[T any](p *T) any {
	if p == nil {
		return "unset"
	}
	return *p
}

// The webhook must never block Pod creation or the controller itself.
func TestWebhookConfigurationIsSafe(t *testing.T) {
	ms := decodeAll(t)
	cfg := find[*admissionregistrationv1.MutatingWebhookConfiguration](t, ms, "", "clb-direct-readiness-gate")
	if len(cfg.Webhooks) != 1 {
		t.Fatalf("%d webhooks, want 1", len(cfg.Webhooks))
	}
	w := cfg.Webhooks[0]
	if w.FailurePolicy == nil || *w.FailurePolicy != admissionregistrationv1.Ignore {
		t.Errorf("failurePolicy %v, want Ignore", deref(w.FailurePolicy))
	}
	if w.SideEffects == nil || *w.SideEffects != admissionregistrationv1.SideEffectClassNone {
		t.Errorf("sideEffects %v, want None", deref(w.SideEffects))
	}
	if w.TimeoutSeconds == nil || *w.TimeoutSeconds > 10 {
		t.Errorf("timeoutSeconds %v, want at most 10", deref(w.TimeoutSeconds))
	}
	if len(w.Rules) != 1 || !slices.Equal(w.Rules[0].Operations, []admissionregistrationv1.OperationType{admissionregistrationv1.Create}) ||
		!slices.Equal(w.Rules[0].Resources, []string{"pods"}) {
		t.Errorf("rules %+v, want CREATE of pods only", w.Rules)
	}
	excluded := map[string]bool{}
	if w.NamespaceSelector != nil {
		for _, req := range w.NamespaceSelector.MatchExpressions {
			if req.Key == corev1.LabelMetadataName && req.Operator == metav1.LabelSelectorOpNotIn {
				for _, v := range req.Values {
					excluded[v] = true
				}
			}
		}
	}
	if !excluded["kube-system"] || !excluded[namespace] {
		t.Errorf("namespaceSelector %+v must exclude kube-system and %s", w.NamespaceSelector, namespace)
	}
	svc := w.ClientConfig.Service
	webhookSvc := find[*corev1.Service](t, ms, namespace, "clb-direct-webhook")
	if svc == nil || svc.Name != webhookSvc.Name || svc.Namespace != namespace || svc.Path == nil || *svc.Path != "/mutate-pods" {
		t.Errorf("clientConfig %+v, want Service %s/%s path /mutate-pods", w.ClientConfig, namespace, webhookSvc.Name)
	}
}
