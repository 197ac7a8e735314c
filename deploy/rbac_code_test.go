package deploy_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// apiUse is one way the controller's code uses the Kubernetes API: the
// verbs it needs on one resource, and the code path that needs them (a
// piece of a line of file). TestRBACLeastPrivilege checks that deploy/'s
// RBAC grants exactly the verbs of this table, and TestAPIUsesAreTheCode
// that every code path of the table is there and every API call of the code
// is in the table. The end-to-end suite checks the same grants against the
// requests the controller really made (test/e2e/rbac_audit_test.go).
type apiUse struct {
	group, resource string // resource is "name" or "name/subresource"
	verbs           []string
	// namespace is the only namespace the code uses it in ("" for any:
	// a ClusterRole), name the only object (resourceNames), if so.
	namespace, name string
	file, code      string
	// also must be in file too: what restricts the use to name.
	also string
	why  string
}

const kubeSystem = "kube-system"

var apiUses = []apiUse{
	{"", "services", []string{"list", "watch"}, "", "",
		"main.go", "factory.Core().V1().Services()", "", "the Service informer; no get: Services are read from its cache"},
	{"", "services", []string{"patch"}, "", "",
		"controller/sync.go", ".Services(svc.Namespace).Patch(ctx", "", "merge patches of the finalizer and the loadbalance-id annotation"},
	{"", "services/status", []string{"patch"}, "", "",
		"controller/sync.go", `c.patchService(ctx, svc, patch, "status")`, "", "the CLB's VIPs in status.loadBalancer.ingress"},
	{"", "pods", []string{"list"}, "", "",
		"controller/podcache.go", "client.CoreV1().Pods(metav1.NamespaceAll).List(ctx, options)", "", "the Pod informer's pages (controller and readiness worker)"},
	{"", "pods", []string{"watch"}, "", "",
		"controller/podcache.go", "client.CoreV1().Pods(metav1.NamespaceAll).Watch(ctx, options)", "", "the Pod informer's watch (controller and readiness worker)"},
	{"", "pods/status", []string{"patch"}, "", "",
		"readiness/worker.go", `.Pods(pod.Namespace).Patch(ctx, pod.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")`, "", "the readiness gate's condition"},
	{"", "nodes", []string{"list", "watch"}, "", "",
		"main.go", "factory.Core().V1().Nodes()", "", "the Node informer: classic mode's backends"},
	{"events.k8s.io", "events", []string{"create", "patch"}, "", "",
		"main.go", "events.NewBroadcaster(&events.EventSinkImpl{Interface: client.EventsV1()})", "", "events; patch counts a repeated one (its series)"},
	{"cloud.tencent.com", "tkeserviceconfigs", []string{"list", "watch"}, "", "",
		"main.go", "ForResource(tkeconfig.GVR)", "", "the TkeServiceConfig informer"},
	{"cloud.tencent.com", "tkeserviceconfigs", []string{"create"}, "", "",
		"controller/tkeserviceconfig.go", "client.Create(ctx, want, metav1.CreateOptions{})", "", "a Service's <service>-auto-service-config"},
	{"cloud.tencent.com", "tkeserviceconfigs", []string{"update"}, "", "",
		"controller/tkeserviceconfig.go", "client.Update(ctx, updated, metav1.UpdateOptions{})", "", "the auto config following the CLB"},
	{"coordination.k8s.io", "leases", []string{"get", "update"}, namespace, name,
		"main.go", "resourcelock.New(resourcelock.LeasesResourceLock", "", "leader election on the Lease clb-direct"},
	{"coordination.k8s.io", "leases", []string{"create"}, namespace, "",
		"main.go", "resourcelock.New(resourcelock.LeasesResourceLock", "", "the Lease's creation (resourceNames cannot restrict create)"},
	{"", "configmaps", []string{"list", "watch"}, kubeSystem, "tke-service-controller-config",
		"main.go", "serviceControllerConfig.Core().V1().ConfigMaps()",
		`fields.OneTermEqualSelector("metadata.name", controller.ServiceControllerConfigName)`, "the GlobalRouter opt-in: one ConfigMap, by a field selector"},
	// Non-resource URLs that every authenticated user may read (the
	// default roles system:discovery and system:public-info-viewer): no
	// grant in deploy/.
	{"", "", nil, "", "",
		"main.go", "client.Discovery().ServerVersion()", "", "GET /version: VPC-CNI needs a cluster newer than 1.12"},
	{"", "", nil, "", "",
		"main.go", "client.Discovery().ServerResourcesForGroupVersion(", "", "GET /apis/cloud.tencent.com/v1alpha1: is the CRD installed"},
}

// tableRules flattens the table's uses in namespace ("" for cluster-wide).
func tableRules(namespace string) []rule {
	var out []rule
	for _, u := range apiUses {
		if u.namespace != namespace {
			continue
		}
		for _, v := range u.verbs {
			out = append(out, rule{u.group, u.resource, v, u.name})
		}
	}
	slices.SortFunc(out, func(a, b rule) int {
		return strings.Compare(a.group+"/"+a.resource+"/"+a.verb+"/"+a.resourceName, b.group+"/"+b.resource+"/"+b.verb+"/"+b.resourceName)
	})
	return slices.Compact(out)
}

// apiCall finds what, in the controller's code, reaches the Kubernetes API:
// a client call with a context, an informer of a typed or dynamic
// resource, the leader election lock, the event sink, discovery.
var apiCall = regexp.MustCompile(`\.(Get|List|Watch|Create|Update|UpdateStatus|Patch|Delete|DeleteCollection|Apply|ApplyStatus)\(ctx\b` +
	`|\.V1\(\)\.[A-Z]\w*\(\)|ForResource\(|resourcelock\.New\(|NewBroadcaster\(|Discovery\(\)\.\w+\(`)

// controllerSources are the Go files of the controller binary, tests left out.
func controllerSources(t *testing.T) []string {
	t.Helper()
	files := []string{"../main.go"}
	for _, dir := range []string{"controller", "readiness", "metrics", "tkeconfig", "cloud"} {
		err := filepath.WalkDir(filepath.Join("..", dir), func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			files = append(files, path)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return files
}

func TestAPIUsesAreTheCode(t *testing.T) {
	for _, u := range apiUses {
		data, err := os.ReadFile(filepath.Join("..", u.file))
		if err != nil {
			t.Errorf("%s %v: %v", u.resource, u.verbs, err)
			continue
		}
		if u.also != "" && !strings.Contains(string(data), u.also) {
			t.Errorf("%s %s %v (%s): %q is no longer in %s: is the use still limited to %s?", u.group, u.resource, u.verbs, u.why, u.also, u.file, u.name)
		}
		if !strings.Contains(string(data), u.code) {
			t.Errorf("%s %s %v (%s): the code path %q is no longer in %s; if the code no longer needs it, remove the grant from deploy/rbac.yaml, else update apiUses",
				u.group, u.resource, u.verbs, u.why, u.code, u.file)
		}
	}
	for _, path := range controllerSources(t) {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		file := strings.TrimPrefix(filepath.ToSlash(path), "../")
		for n, line := range strings.Split(string(data), "\n") {
			for _, m := range apiCall.FindAllString(line, -1) {
				known := slices.ContainsFunc(apiUses, func(u apiUse) bool {
					return u.file == file && strings.Contains(u.code, m) && strings.Contains(line, u.code)
				})
				if !known {
					t.Errorf("%s:%d: %s reaches the Kubernetes API but is not in apiUses: add its verbs there and to deploy/rbac.yaml\n\t%s",
						file, n+1, m, strings.TrimSpace(line))
				}
			}
		}
	}
}

func (r rule) String() string {
	s := fmt.Sprintf("%s %s", r.verb, r.resource)
	if r.group != "" {
		s = fmt.Sprintf("%s %s.%s", r.verb, r.resource, r.group)
	}
	if r.resourceName != "" {
		s += " named " + r.resourceName
	}
	return s
}

// ruleDiff names what got has that want has not, and the reverse.
func ruleDiff(got, want []rule) (extra, missing []rule) {
	for _, r := range got {
		if !slices.Contains(want, r) {
			extra = append(extra, r)
		}
	}
	for _, r := range want {
		if !slices.Contains(got, r) {
			missing = append(missing, r)
		}
	}
	return extra, missing
}
