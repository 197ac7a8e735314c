package e2e

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"

	"clb-direct/test/cluster"
	"clb-direct/test/env"
)

// The RBAC check runs after the whole suite, from TestMain: the API
// server's audit log (env.Options.AuditController) then holds every request
// the controller's ServiceAccount made in every test, in-cluster mode and
// failovers included, with the authorizer's decision. Compared with what
// deploy/rbac*.yaml grants:
//
//   - no request was denied by the authorizer (a missing grant);
//   - no request was allowed by something other than deploy/'s RBAC (the
//     controller would depend on a cluster's default roles);
//   - every granted verb was used at least once (else the grant is
//     superfluous), and a cluster-wide grant was used cluster-wide or in the
//     users' namespaces, the tests' (else a Role in the namespaces it was
//     used in would do).
//
// The last point needs the whole suite, passed: with -run or -skip, or
// after a failure, only the first two are checked.

// grant is one verb on one resource that deploy/'s RBAC gives the
// controller.
type grant struct {
	group, resource, verb string // resource is "name" or "name/subresource"
	namespace             string // "": cluster-wide (a ClusterRoleBinding)
	name                  string // "": any (no resourceNames)
}

func (g grant) String() string {
	s := fmt.Sprintf("%s %s", g.verb, groupResource(g.group, g.resource))
	if g.name != "" {
		s += " named " + g.name
	}
	if g.namespace == "" {
		return s + " (cluster-wide)"
	}
	return s + " in namespace " + g.namespace
}

func groupResource(group, resource string) string {
	if group == "" {
		return resource
	}
	return resource + "." + group
}

// request is one resource request of the controller, as the audit log
// names it.
type request struct {
	group, resource, verb, namespace, name string
}

func (r request) String() string {
	s := fmt.Sprintf("%s %s", r.verb, groupResource(r.group, r.resource))
	if r.name != "" {
		s += " " + r.name
	}
	if r.namespace != "" {
		s += " in namespace " + r.namespace
	} else {
		s += " (cluster-wide)"
	}
	return s
}

func (g grant) covers(r request) bool {
	return g.group == r.group && g.resource == r.resource && g.verb == r.verb &&
		(g.namespace == "" || g.namespace == r.namespace) && (g.name == "" || g.name == r.name)
}

// deployGrants reads what deploy/rbac*.yaml grants the controller's
// ServiceAccount, through its ClusterRoleBindings and RoleBindings.
func deployGrants(repo string) ([]grant, error) {
	files, err := filepath.Glob(filepath.Join(repo, "deploy", "rbac*.yaml"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("no deploy/rbac*.yaml (%v)", err)
	}
	clusterRoles := map[string]*rbacv1.ClusterRole{}
	roles := map[string]*rbacv1.Role{} // by namespace/name
	var crbs []*rbacv1.ClusterRoleBinding
	var rbs []*rbacv1.RoleBinding
	for _, file := range files {
		objs, err := decodeYAML(file)
		if err != nil {
			return nil, err
		}
		for _, obj := range objs {
			switch o := obj.(type) {
			case *rbacv1.ClusterRole:
				clusterRoles[o.Name] = o
			case *rbacv1.Role:
				roles[o.Namespace+"/"+o.Name] = o
			case *rbacv1.ClusterRoleBinding:
				crbs = append(crbs, o)
			case *rbacv1.RoleBinding:
				rbs = append(rbs, o)
			}
		}
	}
	isController := func(subjects []rbacv1.Subject) bool {
		return slices.ContainsFunc(subjects, func(s rbacv1.Subject) bool {
			return s.Kind == rbacv1.ServiceAccountKind && s.Namespace == env.ControllerNamespace && s.Name == env.ControllerServiceAccount
		})
	}
	var out []grant
	add := func(rules []rbacv1.PolicyRule, namespace string) {
		for _, r := range rules {
			names := r.ResourceNames
			if len(names) == 0 {
				names = []string{""}
			}
			for _, g := range r.APIGroups {
				for _, res := range r.Resources {
					for _, v := range r.Verbs {
						for _, n := range names {
							out = append(out, grant{group: g, resource: res, verb: v, namespace: namespace, name: n})
						}
					}
				}
			}
		}
	}
	for _, b := range crbs {
		if !isController(b.Subjects) {
			continue
		}
		cr, ok := clusterRoles[b.RoleRef.Name]
		if b.RoleRef.Kind != "ClusterRole" || !ok {
			return nil, fmt.Errorf("ClusterRoleBinding %s refers to %s %s, not a ClusterRole of deploy/", b.Name, b.RoleRef.Kind, b.RoleRef.Name)
		}
		add(cr.Rules, "")
	}
	for _, b := range rbs {
		if !isController(b.Subjects) {
			continue
		}
		switch b.RoleRef.Kind {
		case "Role":
			r, ok := roles[b.Namespace+"/"+b.RoleRef.Name]
			if !ok {
				return nil, fmt.Errorf("RoleBinding %s/%s refers to Role %s, not in deploy/", b.Namespace, b.Name, b.RoleRef.Name)
			}
			add(r.Rules, b.Namespace)
		case "ClusterRole":
			cr, ok := clusterRoles[b.RoleRef.Name]
			if !ok {
				return nil, fmt.Errorf("RoleBinding %s/%s refers to ClusterRole %s, not in deploy/", b.Namespace, b.Name, b.RoleRef.Name)
			}
			add(cr.Rules, b.Namespace)
		}
	}
	return out, nil
}

func decodeYAML(path string) ([]runtime.Object, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var objs []runtime.Object
	decoder := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		var raw runtime.RawExtension
		if err := decoder.Decode(&raw); err == io.EOF {
			return objs, nil
		} else if err != nil {
			return nil, fmt.Errorf("decoding %s: %w", path, err)
		}
		if len(bytes.TrimSpace(raw.Raw)) == 0 {
			continue
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(raw.Raw, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("decoding %s: %w", path, err)
		}
		objs = append(objs, obj)
	}
}

// isTestNamespace says whether a namespace is one of newFixture's: where
// users' Services live, any namespace to the controller.
func isTestNamespace(ns string) bool { return strings.HasPrefix(ns, "e2e-") }

// wholeSuiteRan says whether every test of the package was selected.
func wholeSuiteRan() bool {
	for _, name := range []string{"test.run", "test.skip", "test.list"} {
		if f := flag.Lookup(name); f != nil && f.Value.String() != "" {
			return false
		}
	}
	return true
}

// checkRBACAgainstAuditLog compares the controller's requests in the audit
// log with deploy/'s grants. It returns a report of what was used, and the
// problems; complete adds the checks that need the whole suite.
func checkRBACAgainstAuditLog(repo, auditLog string, complete bool) (report, problems []string, err error) {
	grants, err := deployGrants(repo)
	if err != nil {
		return nil, nil, err
	}
	if len(grants) == 0 {
		return nil, nil, fmt.Errorf("deploy/ grants the ServiceAccount %s nothing", env.ControllerUser)
	}
	events, err := cluster.ReadAuditLog(auditLog)
	if err != nil {
		return nil, nil, err
	}
	uses := map[grant]int{}
	namespaces := map[grant]map[string]bool{} // "" for a cluster-wide request
	denied := map[string]int{}
	notGranted := map[string]int{}
	refusedLater := map[string]int{} // allowed by RBAC, then 403 (admission)
	nonResource := map[string]int{}
	seen := map[string]bool{}
	controllerEvents := 0
	for _, ev := range events {
		if ev.User.Username != env.ControllerUser || seen[ev.AuditID+ev.Stage] {
			continue
		}
		seen[ev.AuditID+ev.Stage] = true
		// A watch is logged when it starts and when it ends; count one.
		if ev.Stage == "ResponseStarted" && seen[ev.AuditID+"ResponseComplete"] ||
			ev.Stage == "ResponseComplete" && seen[ev.AuditID+"ResponseStarted"] {
			continue
		}
		controllerEvents++
		decision := ev.Annotations[cluster.AuditDecision]
		var code int32
		if ev.ResponseStatus != nil {
			code = ev.ResponseStatus.Code
		}
		if ev.ObjectRef == nil {
			path, _, _ := strings.Cut(ev.RequestURI, "?")
			what := ev.Verb + " " + path
			nonResource[what]++
			if decision == "forbid" {
				denied[what+" (non-resource URL)"]++
			}
			continue
		}
		ref := ev.ObjectRef
		resource := ref.Resource
		if ref.Subresource != "" {
			resource += "/" + ref.Subresource
		}
		r := request{group: ref.APIGroup, resource: resource, verb: ev.Verb, namespace: ref.Namespace, name: ref.Name}
		if decision == "forbid" {
			what := r.String()
			if reason := ev.Annotations[cluster.AuditReason]; reason != "" {
				what += ": " + reason
			}
			denied[what]++
			continue
		}
		i := slices.IndexFunc(grants, func(g grant) bool { return g.covers(r) })
		if i < 0 {
			notGranted[fmt.Sprintf("%s, allowed by %q", r, ev.Annotations[cluster.AuditReason])]++
			continue
		}
		if code == http.StatusForbidden {
			refusedLater[r.String()+": "+ev.ResponseStatus.Reason]++
		}
		// Every grant that covers it is used (rules may overlap).
		for _, g := range grants {
			if g.covers(r) {
				uses[g]++
				if namespaces[g] == nil {
					namespaces[g] = map[string]bool{}
				}
				namespaces[g][r.namespace] = true
			}
		}
	}
	if controllerEvents == 0 && complete {
		return nil, nil, fmt.Errorf("the audit log %s has no request of %s: is auditing on?", auditLog, env.ControllerUser)
	}

	width := 0
	for _, g := range grants {
		width = max(width, len(g.String()))
	}
	for _, g := range grants {
		scope := "unused"
		if ns := namespaces[g]; len(ns) > 0 {
			var cluster, namespaced int
			for n := range ns {
				if n == "" {
					cluster++
				} else {
					namespaced++
				}
			}
			scope = fmt.Sprintf("cluster-wide requests: %v, namespaces: %d", cluster > 0, namespaced)
		}
		report = append(report, fmt.Sprintf("%-*s %6d requests; %s", width, g, uses[g], scope))
	}
	for _, what := range slices.Sorted(maps.Keys(nonResource)) {
		report = append(report, fmt.Sprintf("%-*s %6d requests (non-resource URL: the default discovery roles)", width, what, nonResource[what]))
	}
	for _, what := range slices.Sorted(maps.Keys(refusedLater)) {
		report = append(report, fmt.Sprintf("allowed by RBAC, then refused with 403 by admission %d times (not an RBAC matter): %s", refusedLater[what], what))
	}

	for _, what := range slices.Sorted(maps.Keys(denied)) {
		problems = append(problems, fmt.Sprintf("denied by the authorizer %d times: %s", denied[what], what))
	}
	for _, what := range slices.Sorted(maps.Keys(notGranted)) {
		problems = append(problems, fmt.Sprintf("used %d times, but not granted by deploy/: %s", notGranted[what], what))
	}
	if complete {
		for _, g := range grants {
			ns := namespaces[g]
			switch {
			case uses[g] == 0:
				problems = append(problems, fmt.Sprintf("deploy/ grants %s, which the controller never used in the whole suite: superfluous", g))
			case g.namespace == "" && !ns[""] && !slices.ContainsFunc(slices.Collect(maps.Keys(ns)), isTestNamespace):
				problems = append(problems, fmt.Sprintf("deploy/ grants %s, used only in namespaces %v: a Role there would do", g, slices.Sorted(maps.Keys(ns))))
			}
		}
	}
	return report, problems, nil
}

// rbacCheck runs checkRBACAgainstAuditLog after the suite and prints the
// outcome; it returns false on a problem.
func rbacCheck(w io.Writer, suitePassed bool) bool {
	if f := flag.Lookup("test.list"); f != nil && f.Value.String() != "" {
		return true // go test -list: nothing ran
	}
	complete := suitePassed && wholeSuiteRan()
	fmt.Fprintln(w, "=== RBAC: the controller's requests in the API server's audit log against deploy/rbac*.yaml")
	report, problems, err := checkRBACAgainstAuditLog(e.Repo, e.Cluster.AuditLogPath(), complete)
	if err != nil {
		fmt.Fprintln(w, "--- FAIL: RBAC:", err)
		return false
	}
	for _, line := range report {
		fmt.Fprintln(w, "    "+line)
	}
	if !complete {
		fmt.Fprintln(w, "    (not the whole suite, or a test failed: unused grants are not checked)")
	}
	if len(problems) > 0 {
		fmt.Fprintln(w, "--- FAIL: RBAC")
		for _, p := range problems {
			fmt.Fprintln(w, "    "+p)
		}
		return false
	}
	fmt.Fprintln(w, "--- PASS: RBAC")
	return true
}

// The check itself, on a made-up audit log: it must name a denied request,
// a request deploy/ does not grant, an unused grant, and a cluster-wide
// grant used only in the controller's own namespace.
func TestRBACAuditCheckNamesEachProblem(t *testing.T) {
	repo, err := cluster.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	grants, err := deployGrants(repo)
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	id := 0
	add := func(r request, decision string, code int) {
		id++
		resource, subresource, _ := strings.Cut(r.resource, "/")
		data, _ := json.Marshal(map[string]any{
			"auditID": fmt.Sprint(id), "stage": "ResponseComplete", "verb": r.verb,
			"user":           map[string]any{"username": env.ControllerUser},
			"objectRef":      map[string]any{"resource": resource, "subresource": subresource, "namespace": r.namespace, "name": r.name, "apiGroup": r.group},
			"responseStatus": map[string]any{"code": code},
			"annotations":    map[string]any{cluster.AuditDecision: decision, cluster.AuditReason: "test"},
		})
		log.Write(append(data, '\n'))
	}
	// Another user's requests are not the controller's.
	log.WriteString(`{"auditID":"x","stage":"ResponseComplete","verb":"get","user":{"username":"someone"},"objectRef":{"resource":"secrets"},"annotations":{"authorization.k8s.io/decision":"forbid"}}` + "\n")
	var unused, ownNamespaceOnly grant
	for _, g := range grants {
		switch {
		case unused == (grant{}) && g.namespace == "" && g.verb == "patch":
			unused = g // never used
			continue
		case ownNamespaceOnly == (grant{}) && g.namespace == "" && g.verb == "watch":
			ownNamespaceOnly = g
			add(request{g.group, g.resource, g.verb, env.ControllerNamespace, g.name}, "allow", 200)
			continue
		}
		ns := g.namespace
		if ns == "" {
			ns = "e2e-1-test"
		}
		add(request{g.group, g.resource, g.verb, ns, g.name}, "allow", 200)
	}
	add(request{"", "secrets", "get", "e2e-1-test", "creds"}, "forbid", 403)
	add(request{"", "configmaps", "list", "kube-system", "other"}, "allow", 200)
	path := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(path, log.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}

	_, problems, err := checkRBACAgainstAuditLog(repo, path, true)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"denied by the authorizer 1 times: get secrets creds in namespace e2e-1-test",
		"used 1 times, but not granted by deploy/: list configmaps other in namespace kube-system",
		"deploy/ grants " + unused.String() + ", which the controller never used",
		"deploy/ grants " + ownNamespaceOnly.String() + ", used only in namespaces [" + env.ControllerNamespace + "]",
	}
	if len(problems) != len(want) {
		t.Errorf("%d problems, want %d:\n%s", len(problems), len(want), strings.Join(problems, "\n"))
	}
	for _, w := range want {
		if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, w) }) {
			t.Errorf("no problem says %q; problems:\n%s", w, strings.Join(problems, "\n"))
		}
	}

	// Not the whole suite: only what any subset must satisfy.
	_, problems, err = checkRBACAgainstAuditLog(repo, path, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) != 2 {
		t.Errorf("partial run: %d problems, want the denial and the use beyond deploy/:\n%s", len(problems), strings.Join(problems, "\n"))
	}
}
