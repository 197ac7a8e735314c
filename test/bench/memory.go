package bench

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"clb-direct/controller"
	"clb-direct/readiness"
	"clb-direct/test/env"
	"clb-direct/test/stubapi"
)

// MemoryConfig is one run of MeasureMemory.
type MemoryConfig struct {
	// ControllerBin and EmulatorBin are built binaries of the controller
	// (go build -o <dir>/clb-direct .) and of the CLB emulator (go build -o
	// <dir>/clb-emulator ./cmd/clb-emulator); env.BuildBinaries builds both.
	ControllerBin, EmulatorBin string
	// Services are direct-access LoadBalancer Services, spread over
	// Namespaces namespaces (default 20), each selecting Pods/Services of
	// the Pods (the first ones one more when it does not divide).
	Services, Pods int
	// Namespaces default to 20 (fewer when there are fewer Services).
	Namespaces int
	// Nodes the Pods run on; default one per 50 Pods, at least one.
	Nodes int
	// Dir holds the logs and the kubeconfig. Required.
	Dir string
	// ControllerArgs are appended to the controller's flags.
	ControllerArgs []string
	// Timeout bounds the wait for the sync; default 15 minutes.
	Timeout time.Duration
	// Log receives progress lines; nil: none.
	Log io.Writer
}

// MemoryResult is what MeasureMemory measured.
type MemoryResult struct {
	Services, Pods, Nodes int
	// Targets are the CLB targets the emulator holds at the end.
	Targets int
	// PodBytes is the size of a generated Pod in JSON, on average.
	PodBytes int
	// SyncTime runs from the controller's start until every Service has
	// its ingress and the emulator holds every target. The controller's own
	// limits set it: 20 CLB calls a second per action (--cloud-rate-limit),
	// which makes about 10 new Services a second, and 50 Kubernetes
	// requests a second (--kube-api-qps).
	SyncTime time.Duration
	// RSSBytes is the largest VmRSS of the controller over about 5 s after
	// the sync; RSSSamples are all of them.
	RSSBytes   int64
	RSSSamples []int64
	// HeapInuseBytes is go_memstats_heap_inuse_bytes from the controller's
	// /metrics after the last sample; 0 when it could not be read.
	HeapInuseBytes int64
	// CPUTime is the controller's user and system CPU time until then.
	CPUTime time.Duration
	// Unhandled are the API requests the stub did not serve (the
	// TkeServiceConfig CRD's group is expected there).
	Unhandled []string
	// LogErrors are the error lines of the controller's log (at most 20).
	LogErrors []string
}

func (r MemoryResult) String() string {
	return fmt.Sprintf("%d Services × %d Pods (%d B of JSON each) on %d Nodes: %d targets in %s; RSS %.1f MiB, heap in use %.1f MiB, %s of CPU",
		r.Services, r.Pods, r.PodBytes, r.Nodes, r.Targets, r.SyncTime.Round(100*time.Millisecond),
		float64(r.RSSBytes)/(1<<20), float64(r.HeapInuseBytes)/(1<<20), r.CPUTime.Round(10*time.Millisecond))
}

const (
	benchClusterID = "cls-bench"
	benchRegion    = "ap-guangzhou"
)

// MeasureMemory runs the controller binary (no leader election, -v=2,
// cfg.ControllerArgs last) against an in-process stub of the Kubernetes
// API (test/stubapi) holding cfg.Services direct-access LoadBalancer
// Services and cfg.Pods VPC-CNI Pods, realistic ones of Deployments, and
// the CLB emulator (no rate limit, instant tasks, every target healthy);
// waits until every Service has status.loadBalancer.ingress and the
// emulator holds every Pod as a target; then samples the controller's RSS
// (VmRSS) five times over about 5 s and reports the largest. The stub's
// own memory is the calling process's, not the controller's.
//
//	bins, _ := env.BuildBinaries(ctx, repoRoot, dir)
//	res, err := bench.MeasureMemory(ctx, bench.MemoryConfig{
//		ControllerBin: bins.Controller, EmulatorBin: bins.Emulator,
//		Services: 2000, Pods: 50000, Dir: dir, Timeout: 15 * time.Minute,
//	})
func MeasureMemory(ctx context.Context, cfg MemoryConfig) (res MemoryResult, err error) {
	if cfg.ControllerBin == "" || cfg.EmulatorBin == "" || cfg.Dir == "" {
		return res, errors.New("bench: MemoryConfig needs ControllerBin, EmulatorBin and Dir")
	}
	if cfg.Services <= 0 || cfg.Pods < cfg.Services {
		return res, fmt.Errorf("bench: want at least one Service and one Pod per Service, not %d and %d", cfg.Services, cfg.Pods)
	}
	if cfg.Namespaces <= 0 {
		cfg.Namespaces = 20
	}
	cfg.Namespaces = min(cfg.Namespaces, cfg.Services)
	if cfg.Nodes <= 0 {
		cfg.Nodes = max(1, cfg.Pods/50)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 15 * time.Minute
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return res, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	res = MemoryResult{Services: cfg.Services, Pods: cfg.Pods, Nodes: cfg.Nodes}

	api := stubapi.Start(stubapi.Options{})
	defer api.Close()
	start := time.Now()
	objs, podBytes, err := clusterObjects(cfg)
	if err != nil {
		return res, err
	}
	res.PodBytes = podBytes
	if err := api.Add(objs...); err != nil {
		return res, err
	}
	objs = nil
	fmt.Fprintf(cfg.Log, "bench: %d Services, %d Pods (%d B each in JSON), %d Nodes in the stub API in %s\n",
		cfg.Services, cfg.Pods, podBytes, cfg.Nodes, time.Since(start).Round(time.Millisecond))
	kubeconfig := filepath.Join(cfg.Dir, "kubeconfig")
	if err := api.WriteKubeconfig(kubeconfig); err != nil {
		return res, err
	}

	emulator, err := startEmulator(ctx, cfg)
	if err != nil {
		return res, err
	}
	defer func() { _ = emulator.Process.Stop(5 * time.Second) }()

	healthAddr, err := env.FreeAddr()
	if err != nil {
		return res, err
	}
	metricsAddr, err := env.FreeAddr()
	if err != nil {
		return res, err
	}
	args := append([]string{
		"--kubeconfig", kubeconfig, "--leader-elect=false",
		"--health-probe-bind-address", healthAddr, "--metrics-bind-address", metricsAddr,
		"--cloud", "tencent", "--cloud-endpoint", emulator.Addr, "--cloud-endpoint-scheme", "http",
		"--cluster-id", benchClusterID, "--region", benchRegion, "-v=2",
	}, cfg.ControllerArgs...)
	credentials := []string{"TENCENTCLOUD_SECRET_ID=" + emulator.SecretID, "TENCENTCLOUD_SECRET_KEY=" + emulator.SecretKey}
	logPath := filepath.Join(cfg.Dir, "clb-direct.log")
	start = time.Now()
	ctrl, err := env.StartProcess(ctx, "clb-direct", logPath, "", credentials, cfg.ControllerBin, args...)
	if err != nil {
		return res, err
	}
	defer func() {
		_ = ctrl.Stop(20 * time.Second)
		res.LogErrors = logErrors(logPath, 20)
		res.Unhandled = api.Unhandled()
		if err != nil {
			err = fmt.Errorf("%w; the controller's log %s ends with:\n%s", err, logPath, env.Tail(logPath, 20))
		}
	}()

	// Synced: every Service has its ingress, then the emulator every target.
	fmt.Fprintf(cfg.Log, "bench: controller started (pid %d); waiting for %d Services and %d targets\n", ctrl.Pid(), cfg.Services, cfg.Pods)
	lastReport := time.Now()
	for {
		withIngress, err := servicesWithIngress(api)
		if err != nil {
			return res, err
		}
		if withIngress == cfg.Services {
			if res.Targets, err = targets(ctx, emulator); err != nil {
				return res, err
			}
			if res.Targets == cfg.Pods {
				break
			}
		}
		if time.Since(lastReport) > 10*time.Second {
			fmt.Fprintf(cfg.Log, "bench: after %s, %d of %d Services have their ingress, the emulator holds %d of %d targets\n",
				time.Since(start).Round(time.Second), withIngress, cfg.Services, res.Targets, cfg.Pods)
			lastReport = time.Now()
		}
		select {
		case <-ctrl.Done():
			return res, fmt.Errorf("the controller exited before it synced: %v", ctrl.Err())
		case <-ctx.Done():
			return res, fmt.Errorf("not synced: %d of %d Services have their ingress, the emulator holds %d of %d targets: %w",
				withIngress, cfg.Services, res.Targets, cfg.Pods, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
	res.SyncTime = time.Since(start)
	fmt.Fprintf(cfg.Log, "bench: synced in %s; sampling the RSS\n", res.SyncTime.Round(100*time.Millisecond))

	for i := range 5 {
		if i > 0 {
			select {
			case <-ctx.Done():
				return res, ctx.Err()
			case <-time.After(time.Second):
			}
		}
		rss, err := vmRSS(ctrl.Pid())
		if err != nil {
			return res, err
		}
		res.RSSSamples = append(res.RSSSamples, rss)
		res.RSSBytes = max(res.RSSBytes, rss)
	}
	const heapInuse = "go_memstats_heap_inuse_bytes"
	if m, err := scrape(ctx, "http://"+metricsAddr+"/metrics", heapInuse); err == nil {
		res.HeapInuseBytes = int64(m[heapInuse])
	}
	if res.CPUTime, err = cpuTime(ctrl.Pid()); err != nil {
		return res, err
	}
	return res, nil
}

func startEmulator(ctx context.Context, cfg MemoryConfig) (*env.Emulator, error) {
	addr, err := env.FreeAddr()
	if err != nil {
		return nil, err
	}
	em := &env.Emulator{Addr: addr, SecretID: "AKIDbench" + randomHex(8), SecretKey: randomHex(16), Region: benchRegion}
	startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	em.Process, err = env.StartProcess(startCtx, "clb-emulator", filepath.Join(cfg.Dir, "clb-emulator.log"), "listening on", nil, cfg.EmulatorBin,
		"--listen", addr, "--secret-id", em.SecretID, "--secret-key", em.SecretKey, "--region", em.Region,
		"--rate-limit", "0", "--task-duration", "0", "--health-check=false", "--backends-per-listener", "100")
	if err != nil {
		return nil, err
	}
	return em, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func servicesWithIngress(api *stubapi.Server) (int, error) {
	svcs, err := api.Services()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, svc := range svcs {
		if len(svc.Status.LoadBalancer.Ingress) > 0 {
			n++
		}
	}
	return n, nil
}

func targets(ctx context.Context, em *env.Emulator) (int, error) {
	state, err := em.State(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, lb := range state.LoadBalancers {
		for _, l := range lb.Listeners {
			n += len(l.Backends)
		}
	}
	return n, nil
}

// vmRSS reads a process's resident set size from /proc.
func vmRSS(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parsing %q: %w", line, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// cpuTime reads a process's user and system CPU time from /proc, in the
// kernel's USER_HZ ticks, which are 1/100 s on Linux.
func cpuTime(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The fields after the command, which is in parentheses and may hold
	// spaces: state is the 3rd field of the line, utime the 14th.
	_, rest, ok := strings.Cut(string(data), ") ")
	fields := strings.Fields(rest)
	if !ok || len(fields) < 13 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat: %q", pid, data)
	}
	var ticks int64
	for _, f := range fields[11:13] {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("unexpected /proc/%d/stat: %q", pid, data)
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond, nil
}

// scrape reads unlabelled samples from a Prometheus text endpoint,
// uncompressed: gzip would cost the process a compressor after every
// garbage collection and blur the allocations measured.
func scrape(ctx context.Context, url string, names ...string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := plainClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	scanner := bufio.NewScanner(resp.Body)
	for scanner.Scan() {
		name, value, _ := strings.Cut(scanner.Text(), " ")
		if slices.Contains(names, name) {
			if out[name], err = strconv.ParseFloat(value, 64); err != nil {
				return nil, fmt.Errorf("%s at %s: %w", name, url, err)
			}
		}
	}
	if err := scanner.Err(); err != nil {
		return nil, err
	}
	for _, name := range names {
		if _, ok := out[name]; !ok {
			return nil, fmt.Errorf("%s not found at %s", name, url)
		}
	}
	return out, nil
}

var plainClient = &http.Client{Transport: &http.Transport{DisableCompression: true}}

// logErrors returns up to n error lines (klog's "E" lines) of a log.
func logErrors(path string, n int) []string {
	data, err := os.ReadFile(path)
	if err != nil {
		return []string{err.Error()}
	}
	var out []string
	for line := range strings.Lines(string(data)) {
		if strings.HasPrefix(line, "E") && len(out) < n {
			out = append(out, strings.TrimSpace(line))
		}
	}
	return out
}

// clusterObjects makes the cluster: Nodes, then per Service its Pods, as
// the API server would hold them. It returns the average Pod size in JSON.
func clusterObjects(cfg MemoryConfig) ([]runtime.Object, int, error) {
	objs := make([]runtime.Object, 0, cfg.Nodes+cfg.Services+cfg.Pods)
	for i := range cfg.Nodes {
		objs = append(objs, benchNode(i))
	}
	podBytes := 0
	pod := 0
	for i := range cfg.Services {
		svc := benchService(i, cfg.Namespaces)
		objs = append(objs, svc)
		n := cfg.Pods / cfg.Services
		if i < cfg.Pods%cfg.Services {
			n++
		}
		for j := range n {
			p := benchPod(svc, j, pod, cfg.Nodes)
			if pod < 100 {
				data, err := json.Marshal(p)
				if err != nil {
					return nil, 0, err
				}
				podBytes += len(data)
			}
			objs = append(objs, p)
			pod++
		}
	}
	return objs, podBytes / min(pod, 100), nil
}

var (
	benchCreated = metav1.NewTime(time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC))
	benchStarted = metav1.NewTime(time.Date(2026, 1, 1, 9, 0, 4, 0, time.UTC))
	benchReady   = metav1.NewTime(time.Date(2026, 1, 1, 9, 0, 12, 0, time.UTC))
)

func benchService(i, namespaces int) *corev1.Service {
	name := fmt.Sprintf("svc-%04d", i)
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: fmt.Sprintf("bench-%02d", i%namespaces), Name: name, UID: types.UID(fmt.Sprintf("00000000-0000-4000-8000-%012d", i)),
			CreationTimestamp: benchCreated,
			Labels:            map[string]string{"app": name, "app.kubernetes.io/managed-by": "Helm"},
			Annotations: map[string]string{
				controller.AnnotationDirectAccess: "true",
				"meta.helm.sh/release-name":       name, "meta.helm.sh/release-namespace": "default",
			},
		},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Selector: map[string]string{"app": name},
			Ports: []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80,
				TargetPort: intstr.FromString("http"), NodePort: int32(30000 + i%2700)}},
			ClusterIP: fmt.Sprintf("172.16.%d.%d", i/250, i%250+1), ClusterIPs: []string{fmt.Sprintf("172.16.%d.%d", i/250, i%250+1)},
			SessionAffinity:       corev1.ServiceAffinityNone,
			ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyCluster,
			IPFamilies:            []corev1.IPFamily{corev1.IPv4Protocol}, IPFamilyPolicy: ptr.To(corev1.IPFamilyPolicySingleStack),
			AllocateLoadBalancerNodePorts: ptr.To(true), InternalTrafficPolicy: ptr.To(corev1.ServiceInternalTrafficPolicyCluster),
		},
	}
}

// benchPod is the j-th Pod of a Service's Deployment, the n-th Pod of the
// cluster: Running and Ready on a VPC-CNI ENI IP, with two containers, the
// readiness gate passed, and everything else a real Pod carries.
func benchPod(svc *corev1.Service, j, n, nodes int) *corev1.Pod {
	app := svc.Spec.Selector["app"]
	hash := fmt.Sprintf("%010x", uint64(n/100)*2654435761%(1<<40))[:10]
	name := fmt.Sprintf("%s-%s-%05x", app, hash, j*7919+n)
	ip := fmt.Sprintf("10.%d.%d.%d", 64+n/65536, n/256%256, n%256)
	node := fmt.Sprintf("node-%04d", n%nodes)
	hostIP := fmt.Sprintf("192.168.%d.%d", n%nodes/250, n%nodes%250+1)
	uid := types.UID(fmt.Sprintf("%08x-0000-4000-8000-%012x", n, n))
	env := []corev1.EnvVar{
		{Name: "APP_ENV", Value: "production"}, {Name: "LOG_LEVEL", Value: "info"}, {Name: "HTTP_PORT", Value: "8080"},
		{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "status.podIP"}}},
		{Name: "DB_PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: app + "-db"}, Key: "password"}}},
	}
	mounts := []corev1.VolumeMount{{Name: "config", MountPath: "/etc/" + app, ReadOnly: true}, {Name: "data", MountPath: "/var/lib/" + app},
		{Name: "kube-api-access-x7k2p", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true}}
	resources := func(cpu, memory string, eni bool) corev1.ResourceRequirements {
		r := corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(memory)},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse(memory)},
		}
		if eni {
			r.Requests[controller.ResourceENIIP] = resource.MustParse("1")
			r.Limits[controller.ResourceENIIP] = resource.MustParse("1")
		}
		return r
	}
	probe := func(path string) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromString("http"), Scheme: corev1.URISchemeHTTP}},
			TimeoutSeconds: 1, PeriodSeconds: 10, SuccessThreshold: 1, FailureThreshold: 3}
	}
	containerStatus := func(name, image string) corev1.ContainerStatus {
		return corev1.ContainerStatus{Name: name, Ready: true, Started: ptr.To(true), Image: image,
			ImageID:     image + "@sha256:4bf9d2b1c3a0e5f6d7c8b9a0e1f2d3c4b5a69788c7d6e5f4a3b2c1d0e9f8a7b6",
			ContainerID: "containerd://" + fmt.Sprintf("%064x", n*2+len(name)),
			State:       corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: benchStarted}},
		}
	}
	appImage := "ccr.ccs.tencentyun.com/shop/" + app + ":v1.24.3"
	logImage := "ccr.ccs.tencentyun.com/infra/fluent-bit:3.1.9"
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: svc.Namespace, Name: name, GenerateName: app + "-" + hash + "-", UID: uid, CreationTimestamp: benchCreated,
			Labels: map[string]string{"app": app, "pod-template-hash": hash, "app.kubernetes.io/name": app,
				"app.kubernetes.io/part-of": "shop", "version": "v1.24.3", "tier": "backend"},
			Annotations: map[string]string{
				"kubectl.kubernetes.io/restartedAt": "2026-01-01T08:55:00+08:00",
				"prometheus.io/scrape":              "true", "prometheus.io/port": "9100",
				"tke.cloud.tencent.com/networks-status": `[{"name":"tke-route-eni","interface":"eth0","ips":["` + ip +
					`"],"mac":"20:90:6f:` + fmt.Sprintf("%02x:%02x:%02x", n/65536%256, n/256%256, n%256) + `","default":true,"dns":{}}]`,
			},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: app + "-" + hash,
				UID: types.UID(fmt.Sprintf("rs-%08x-0000-4000-8000-000000000000", n/100)), Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}},
			ManagedFields: []metav1.ManagedFieldsEntry{
				{Manager: "kube-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1", Time: &benchCreated, FieldsType: "FieldsV1",
					FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:metadata":{"f:generateName":{},"f:labels":{".":{},"f:app":{},"f:pod-template-hash":{}},"f:ownerReferences":{}},"f:spec":{"f:containers":{},"f:readinessGates":{},"f:volumes":{}}}`)}},
				{Manager: "kubelet", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1", Time: &benchReady, FieldsType: "FieldsV1", Subresource: "status",
					FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:status":{"f:conditions":{},"f:containerStatuses":{},"f:hostIP":{},"f:phase":{},"f:podIP":{},"f:podIPs":{},"f:startTime":{}}}`)}},
			},
		},
		Spec: corev1.PodSpec{
			Volumes: []corev1.Volume{
				{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
					LocalObjectReference: corev1.LocalObjectReference{Name: app + "-config"}, DefaultMode: ptr.To[int32](420)}}},
				{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "kube-api-access-x7k2p", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{DefaultMode: ptr.To[int32](420),
					Sources: []corev1.VolumeProjection{
						{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: ptr.To[int64](3607)}},
						{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"},
							Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
					}}}},
			},
			Containers: []corev1.Container{{
				Name: "app", Image: appImage, ImagePullPolicy: corev1.PullIfNotPresent,
				Command: []string{"/usr/local/bin/" + app}, Args: []string{"--config=/etc/" + app + "/config.yaml"},
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP},
					{Name: "metrics", ContainerPort: 9100, Protocol: corev1.ProtocolTCP}},
				Env: env, Resources: resources("250m", "256Mi", true), VolumeMounts: mounts,
				ReadinessProbe:         probe("/ready"),
				TerminationMessagePath: "/dev/termination-log", TerminationMessagePolicy: corev1.TerminationMessageReadFile,
			}, {
				Name: "log", Image: logImage, ImagePullPolicy: corev1.PullIfNotPresent,
				Resources:              resources("50m", "64Mi", false),
				VolumeMounts:           mounts[1:2],
				TerminationMessagePath: "/dev/termination-log", TerminationMessagePolicy: corev1.TerminationMessageReadFile,
			}},
			RestartPolicy: corev1.RestartPolicyAlways, TerminationGracePeriodSeconds: ptr.To[int64](30), DNSPolicy: corev1.DNSClusterFirst,
			ServiceAccountName: app, DeprecatedServiceAccount: app, NodeName: node,
			SecurityContext: &corev1.PodSecurityContext{FSGroup: ptr.To[int64](1000)},
			SchedulerName:   corev1.DefaultSchedulerName,
			Tolerations: []corev1.Toleration{
				{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](300)},
				{Key: "node.kubernetes.io/unreachable", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](300)},
			},
			Priority: ptr.To[int32](0), EnableServiceLinks: ptr.To(true), PreemptionPolicy: ptr.To(corev1.PreemptLowerPriority),
			ReadinessGates: []corev1.PodReadinessGate{{ConditionType: readiness.GateConditionType}},
		},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning,
			Conditions: []corev1.PodCondition{
				{Type: corev1.PodReadyToStartContainers, Status: corev1.ConditionTrue, LastTransitionTime: benchStarted},
				{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: benchCreated},
				{Type: readiness.GateConditionType, Status: corev1.ConditionTrue, Reason: readiness.ReasonReady, LastTransitionTime: benchReady,
					Message: "registered and healthy on CLB lb-" + fmt.Sprintf("%08x", n/100) + " listener TCP:80 (lbl-" + fmt.Sprintf("%08x", n/100) + ")"},
				{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: benchReady},
				{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: benchStarted},
				{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: benchCreated},
			},
			HostIP: hostIP, HostIPs: []corev1.HostIP{{IP: hostIP}},
			PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}},
			StartTime: &benchCreated, QOSClass: corev1.PodQOSBurstable,
			ContainerStatuses: []corev1.ContainerStatus{containerStatus("app", appImage), containerStatus("log", logImage)},
		},
	}
}

// benchNode is a Ready TKE Node with the status a kubelet reports.
func benchNode(i int) *corev1.Node {
	name := fmt.Sprintf("node-%04d", i)
	ip := fmt.Sprintf("192.168.%d.%d", i/250, i%250+1)
	var images []corev1.ContainerImage
	for k := range 20 {
		images = append(images, corev1.ContainerImage{
			Names:     []string{fmt.Sprintf("ccr.ccs.tencentyun.com/shop/image-%02d@sha256:%064x", k, k), fmt.Sprintf("ccr.ccs.tencentyun.com/shop/image-%02d:v1.%d", k, k)},
			SizeBytes: int64(20_000_000 + k*1_000_000),
		})
	}
	conditions := []corev1.NodeCondition{}
	for _, c := range []struct {
		t              corev1.NodeConditionType
		status         corev1.ConditionStatus
		reason, detail string
	}{
		{corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory", "kubelet has sufficient memory available"},
		{corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure", "kubelet has no disk pressure"},
		{corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID", "kubelet has sufficient PID available"},
		{corev1.NodeReady, corev1.ConditionTrue, "KubeletReady", "kubelet is posting ready status"},
	} {
		conditions = append(conditions, corev1.NodeCondition{Type: c.t, Status: c.status, Reason: c.reason, Message: c.detail,
			LastHeartbeatTime: benchReady, LastTransitionTime: benchCreated})
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, UID: types.UID(fmt.Sprintf("node-%08x-0000-4000-8000-000000000000", i)), CreationTimestamp: benchCreated,
			Labels: map[string]string{"kubernetes.io/hostname": ip, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
				"node.kubernetes.io/instance-type": "SA5.2XLARGE16", "topology.kubernetes.io/region": "gz", "topology.kubernetes.io/zone": "100003",
				"cloud.tencent.com/node-instance-id": fmt.Sprintf("ins-%08x", i)},
			Annotations: map[string]string{"node.alpha.kubernetes.io/ttl": "0", "volumes.kubernetes.io/controller-managed-attach-detach": "true"},
		},
		Spec: corev1.NodeSpec{PodCIDR: fmt.Sprintf("10.%d.%d.0/24", 32+i/256, i%256), PodCIDRs: []string{fmt.Sprintf("10.%d.%d.0/24", 32+i/256, i%256)},
			ProviderID: fmt.Sprintf("qcloud:///100003/ins-%08x", i)},
		Status: corev1.NodeStatus{
			Capacity: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("8"), corev1.ResourceMemory: resource.MustParse("16Gi"),
				corev1.ResourcePods: resource.MustParse("110"), controller.ResourceENIIP: resource.MustParse("60")},
			Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("7900m"), corev1.ResourceMemory: resource.MustParse("14Gi"),
				corev1.ResourcePods: resource.MustParse("110"), controller.ResourceENIIP: resource.MustParse("60")},
			Conditions: conditions,
			Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}, {Type: corev1.NodeHostName, Address: ip}},
			NodeInfo: corev1.NodeSystemInfo{MachineID: fmt.Sprintf("%032x", i), SystemUUID: fmt.Sprintf("%032x", i), BootID: fmt.Sprintf("%032x", i),
				KernelVersion: "5.4.241-1-tlinux4-0017.7", OSImage: "TencentOS Server 3.1 (Final)", ContainerRuntimeVersion: "containerd://1.6.9-tke.5",
				KubeletVersion: "v1.34.2", OperatingSystem: "linux", Architecture: "amd64"},
			Images: images,
		},
	}
}
