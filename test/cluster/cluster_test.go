package cluster

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"clb-direct/test/podsim"
)

// TestControlPlane exercises the whole harness: real control plane,
// simulated Pods serving on loopback, RBAC, and a clean teardown.
func TestControlPlane(t *testing.T) {
	if os.Getenv("CLB_DIRECT_E2E") != "1" {
		t.Skip("end-to-end test: set CLB_DIRECT_E2E=1 (the first run builds etcd and Kubernetes, several minutes)")
	}
	ctx := t.Context()

	began := time.Now()
	bins, err := EnsureBinaries(ctx, BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("binaries ready in %s", time.Since(began).Round(time.Millisecond))

	began = time.Now()
	c := StartForTest(t, Options{Binaries: &bins, AuditUsers: []string{"system:serviceaccount:e2e:nobody"}})
	t.Logf("cluster.Start took %s", time.Since(began).Round(time.Millisecond))

	cs, err := kubernetes.NewForConfig(c.AdminConfig())
	if err != nil {
		t.Fatal(err)
	}
	sim, err := podsim.Start(ctx, cs, podsim.Options{Nodes: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Stop)

	const ns = "e2e"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Pods are refused until the namespace's default ServiceAccount exists.
	poll(t, "default ServiceAccount in "+ns, func() (bool, error) {
		_, err := cs.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, ignoreNotFound(err)
	})

	t.Run("deployment", func(t *testing.T) { testDeployment(t, cs, sim, ns) })
	t.Run("readiness gate", func(t *testing.T) { testReadinessGate(t, cs, sim, ns) })
	t.Run("rbac", func(t *testing.T) { testRBAC(t, c, cs, ns) })

	// Teardown: every component gone, every port closed, files removed.
	pids := c.pids()
	ports := []string{c.host[len("https://"):], strings.TrimPrefix(c.etcdURL, "http://"), "127.0.0.1:" + strconv.Itoa(c.kcmPort)}
	sim.Stop()
	began = time.Now()
	c.Stop()
	t.Logf("cluster.Stop took %s", time.Since(began).Round(time.Millisecond))
	for _, pid := range pids {
		if processAlive(pid) {
			t.Errorf("component pid %d still alive after Stop", pid)
		}
	}
	if kids := childProcesses(t); len(kids) > 0 {
		t.Errorf("child processes left after Stop: %v", kids)
	}
	for _, addr := range ports {
		if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			conn.Close()
			t.Errorf("%s still accepts connections after Stop", addr)
		}
	}
	if _, err := os.Stat(c.dir); !os.IsNotExist(err) {
		t.Errorf("cluster directory %s not removed: %v", c.dir, err)
	}
}

// TestContextCancelStops checks that cancelling Start's context alone
// tears everything down.
func TestContextCancelStops(t *testing.T) {
	if os.Getenv("CLB_DIRECT_E2E") != "1" {
		t.Skip("end-to-end test: set CLB_DIRECT_E2E=1")
	}
	ctx, cancel := context.WithCancel(t.Context())
	c, err := Start(ctx, Options{Log: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	pids := c.pids()
	cancel()
	poll(t, "components to exit after cancel", func() (bool, error) {
		for _, pid := range pids {
			if processAlive(pid) {
				return false, nil
			}
		}
		_, err := os.Stat(c.dir)
		return os.IsNotExist(err), nil
	})
}

func testDeployment(t *testing.T, cs kubernetes.Interface, sim *podsim.Simulator, ns string) {
	ctx := t.Context()
	began := time.Now()
	labels := map[string]string{"app": "echo"}
	if _, err := cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "echo"},
		Spec: corev1.ServiceSpec{
			Selector: labels,
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "echo"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](3),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name:  "echo",
					Image: "registry.example/echo:1",
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
				}}},
			},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	var ready []discoveryv1.Endpoint
	poll(t, "3 ready endpoints in the EndpointSlices of echo", func() (bool, error) {
		slices, err := cs.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=echo"})
		if err != nil {
			return false, err
		}
		ready = ready[:0]
		for _, s := range slices.Items {
			for _, e := range s.Endpoints {
				if ptr.Deref(e.Conditions.Ready, false) {
					ready = append(ready, e)
				}
			}
		}
		return len(ready) == 3, nil
	})
	t.Logf("deployment to 3 ready endpoints in %s", time.Since(began).Round(time.Millisecond))

	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=echo"})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 3 {
		t.Fatalf("%d pods, want 3", len(pods.Items))
	}
	seen := map[string]bool{}
	for _, p := range pods.Items {
		if p.Status.Phase != corev1.PodRunning || p.Spec.NodeName == "" || !strings.HasPrefix(p.Status.PodIP, "127.1.") || p.Status.HostIP == "" {
			t.Errorf("pod %s: phase %s node %q podIP %q hostIP %q", p.Name, p.Status.Phase, p.Spec.NodeName, p.Status.PodIP, p.Status.HostIP)
		}
		if seen[p.Status.PodIP] {
			t.Errorf("pod IP %s given twice", p.Status.PodIP)
		}
		seen[p.Status.PodIP] = true
		base := "http://" + net.JoinHostPort(p.Status.PodIP, "8080")
		if code, body := get(t, base+"/"); code != http.StatusOK || body != p.Name {
			t.Errorf("GET %s/ = %d %q, want 200 %q", base, code, body, p.Name)
		}
		if code, _ := get(t, base+"/healthz"); code != http.StatusOK {
			t.Errorf("GET %s/healthz = %d, want 200", base, code)
		}
	}
	for _, e := range ready {
		if !seen[e.Addresses[0]] {
			t.Errorf("endpoint %v is not a pod IP", e.Addresses)
		}
	}

	// Settled Pods stay untouched: the simulator must not keep rewriting
	// a status it already wrote.
	time.Sleep(time.Second)
	for _, p := range pods.Items {
		now, err := cs.CoreV1().Pods(ns).Get(ctx, p.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if now.ResourceVersion != p.ResourceVersion {
			t.Errorf("pod %s changed after it settled (resourceVersion %s -> %s)", p.Name, p.ResourceVersion, now.ResourceVersion)
		}
	}

	victim := pods.Items[0]
	addr := net.JoinHostPort(victim.Status.PodIP, "8080")
	sim.SetHealthy(ns, victim.Name, false)
	if code, _ := get(t, "http://"+addr+"/healthz"); code != http.StatusServiceUnavailable {
		t.Errorf("unhealthy pod: GET /healthz = %d, want 503", code)
	}
	if got := sim.Requests(ns, victim.Name); got != 1 {
		t.Errorf("Requests(%s) = %d, want 1", victim.Name, got)
	}

	// A deleted Pod serves through its (capped) grace period, then goes.
	began = time.Now()
	if err := cs.CoreV1().Pods(ns).Delete(ctx, victim.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, "deleted pod to disappear", func() (bool, error) {
		_, err := cs.CoreV1().Pods(ns).Get(ctx, victim.Name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), ignoreNotFound(err)
	})
	t.Logf("pod deletion took %s", time.Since(began).Round(time.Millisecond))
	if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		conn.Close()
		t.Errorf("deleted pod's %s still accepts connections", addr)
	}
}

func testReadinessGate(t *testing.T, cs kubernetes.Interface, sim *podsim.Simulator, ns string) {
	ctx := t.Context()
	const gate = corev1.PodConditionType("example.com/lb-ready")
	pod, err := cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "gated"},
		Spec: corev1.PodSpec{
			ReadinessGates: []corev1.PodReadinessGate{{ConditionType: gate}},
			Containers: []corev1.Container{{
				Name: "app", Image: "registry.example/echo:1",
				Ports: []corev1.ContainerPort{{ContainerPort: 9000, Protocol: corev1.ProtocolUDP}},
			}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	condition := func(p *corev1.Pod, ct corev1.PodConditionType) corev1.ConditionStatus {
		for _, c := range p.Status.Conditions {
			if c.Type == ct {
				return c.Status
			}
		}
		return ""
	}
	poll(t, "gated pod running with containers ready", func() (bool, error) {
		pod, err = cs.CoreV1().Pods(ns).Get(ctx, "gated", metav1.GetOptions{})
		return err == nil && condition(pod, corev1.ContainersReady) == corev1.ConditionTrue, err
	})
	if got := condition(pod, corev1.PodReady); got != corev1.ConditionFalse {
		t.Fatalf("Ready = %q before the gate is set, want False", got)
	}

	// UDP echo answers with the pod name.
	conn, err := net.Dial("udp", net.JoinHostPort(pod.Status.PodIP, "9000"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 100)
	if _, err := conn.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if n, err := conn.Read(buf); err != nil || string(buf[:n]) != "gated" {
		t.Errorf("UDP echo = %q, %v; want \"gated\"", buf[:n], err)
	}

	// Another controller sets the gate; the simulator must keep it and
	// turn the Pod Ready.
	patch := fmt.Sprintf(`{"status":{"conditions":[{"type":%q,"status":"True"}]}}`, gate)
	if _, err := cs.CoreV1().Pods(ns).Patch(ctx, "gated", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}, "status"); err != nil {
		t.Fatal(err)
	}
	poll(t, "gated pod Ready", func() (bool, error) {
		pod, err = cs.CoreV1().Pods(ns).Get(ctx, "gated", metav1.GetOptions{})
		return err == nil && condition(pod, corev1.PodReady) == corev1.ConditionTrue, err
	})
	if got := condition(pod, gate); got != corev1.ConditionTrue {
		t.Errorf("gate condition = %q after the simulator's updates, want True", got)
	}

	// A failing readiness probe takes the Pod out, gate or not.
	sim.SetReady(ns, "gated", false)
	poll(t, "gated pod unready", func() (bool, error) {
		pod, err = cs.CoreV1().Pods(ns).Get(ctx, "gated", metav1.GetOptions{})
		return err == nil && condition(pod, corev1.PodReady) == corev1.ConditionFalse && condition(pod, corev1.ContainersReady) == corev1.ConditionFalse, err
	})
	if got := condition(pod, gate); got != corev1.ConditionTrue {
		t.Errorf("gate condition = %q after SetReady(false), want True", got)
	}
}

func testRBAC(t *testing.T, c *Cluster, cs kubernetes.Interface, ns string) {
	ctx := t.Context()
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "nobody"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg, token, err := c.ServiceAccountConfig(ctx, ns, "nobody")
	if err != nil {
		t.Fatal(err)
	}
	saClient, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Authenticated as the ServiceAccount (not anonymous)...
	review, err := saClient.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if want := "system:serviceaccount:" + ns + ":nobody"; review.Status.UserInfo.Username != want {
		t.Errorf("authenticated as %q, want %q", review.Status.UserInfo.Username, want)
	}
	// ...and refused what RBAC does not grant.
	_, err = saClient.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		t.Errorf("listing pods without permissions: %v, want Forbidden", err)
	}

	// The audit log has that ServiceAccount's requests, with the
	// authorizer's decision, and nobody else's.
	events, err := ReadAuditLog(c.AuditLogPath())
	if err != nil {
		t.Fatal(err)
	}
	var sawForbidden, sawAllowed bool
	for _, ev := range events {
		if ev.User.Username != "system:serviceaccount:"+ns+":nobody" {
			t.Errorf("audit log has a request of %q, want only the audited user's", ev.User.Username)
			continue
		}
		if ev.ObjectRef == nil || ev.ResponseStatus == nil {
			continue
		}
		switch {
		case ev.Verb == "list" && ev.ObjectRef.Resource == "pods" && ev.ObjectRef.Namespace == ns:
			sawForbidden = ev.Annotations[AuditDecision] == "forbid" && ev.ResponseStatus.Code == http.StatusForbidden
		case ev.Verb == "create" && ev.ObjectRef.Resource == "selfsubjectreviews":
			sawAllowed = ev.Annotations[AuditDecision] == "allow" && ev.ResponseStatus.Code == http.StatusCreated
		}
	}
	if !sawForbidden || !sawAllowed {
		t.Errorf("audit log %s: forbidden list of pods logged %v, allowed create of selfsubjectreviews logged %v; want both (%d events)",
			c.AuditLogPath(), sawForbidden, sawAllowed, len(events))
	}

	dir := t.TempDir()
	if err := c.WriteInClusterDir(ctx, ns, "nobody", dir); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"namespace": ns, "ca.crt": string(c.CAData())} {
		if got, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(got) != want {
			t.Errorf("%s = %q, %v", name, got, err)
		}
	}
	if got, err := os.ReadFile(filepath.Join(dir, "token")); err != nil || len(got) == 0 || string(got) == token {
		// A fresh token each time, as a kubelet rotates them.
		t.Errorf("token file: %d bytes, same as before: %v, %v", len(got), string(got) == token, err)
	}
}

func poll(t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		return cond()
	}); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func ignoreNotFound(err error) error {
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	client := http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		t.Errorf("GET %s: %v", url, err)
		return 0, ""
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// childProcesses lists live processes whose parent is this test binary.
func childProcesses(t *testing.T) []string {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	self := strconv.Itoa(os.Getpid())
	var kids []string
	for _, f := range stats {
		data, err := os.ReadFile(f)
		if err != nil {
			continue // exited meanwhile
		}
		// pid (comm) state ppid ...; comm may contain spaces.
		s := string(data)
		rest := s[strings.LastIndexByte(s, ')')+2:]
		fields := strings.Fields(rest)
		if len(fields) > 1 && fields[1] == self {
			kids = append(kids, strings.TrimSuffix(s[:strings.LastIndexByte(s, ')')+1], ""))
		}
	}
	return kids
}
