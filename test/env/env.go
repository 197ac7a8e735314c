// Package env assembles a whole clb-direct installation on one machine: a
// real control plane (test/cluster) with deploy/'s RBAC applied, the Pod
// simulator (test/podsim), the CLB emulator and controller binaries. The
// end-to-end tests and the sandbox both use it, so what the tests prove is
// what a newcomer runs.
package env

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mathrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"clb-direct/cloud/emulator"
	"clb-direct/cloud/fake"
	"clb-direct/test/cluster"
	"clb-direct/test/podsim"
)

// The controller's identity in deploy/.
const (
	ControllerNamespace      = "clb-direct-system"
	ControllerServiceAccount = "clb-direct"
	ClusterID                = "cls-sandbox"
	Region                   = "ap-guangzhou"
)

// ControllerUser is the user name the API server knows the controller by.
const ControllerUser = "system:serviceaccount:" + ControllerNamespace + ":" + ControllerServiceAccount

// Binaries are the project's own programs, built from this checkout.
type Binaries struct {
	Controller, Emulator string
}

// BuildBinaries builds the controller and the emulator into dir.
func BuildBinaries(ctx context.Context, repoRoot, dir string) (Binaries, error) {
	b := Binaries{Controller: filepath.Join(dir, "clb-direct"), Emulator: filepath.Join(dir, "clb-emulator")}
	for out, pkg := range map[string]string{b.Controller: ".", b.Emulator: "./cmd/clb-emulator"} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
		cmd.Dir = repoRoot
		if output, err := cmd.CombinedOutput(); err != nil {
			return Binaries{}, fmt.Errorf("go build %s: %w\n%s", pkg, err, output)
		}
	}
	return b, nil
}

// Options configure Start.
type Options struct {
	// Dir holds logs, kubeconfigs and state. Required.
	Dir string
	// Log receives progress lines. Default os.Stderr.
	Log io.Writer
	// Nodes the Pod simulator creates. Default 3.
	Nodes int
	// EmulatorArgs are appended to the emulator's defaults.
	EmulatorArgs []string
	// AuditController writes every request of ControllerUser to the API
	// server's audit log (Env.Cluster.AuditLogPath()), at Metadata level.
	AuditController bool
	// APIServerFlags are appended to the API server's flags.
	APIServerFlags []string
	// Controllers run in kube-controller-manager; nil means
	// cluster.DefaultControllers.
	Controllers []string
}

// Env is a running installation, less the controller (StartController).
type Env struct {
	Dir      string
	Repo     string
	Bins     Binaries
	Cluster  *cluster.Cluster
	Admin    kubernetes.Interface
	Sim      *podsim.Simulator
	Emulator *Emulator
	log      io.Writer
	stopSim  context.CancelFunc
	// netID picks the 127.x networks of this installation.
	netID int
}

// Start builds what is missing and starts the control plane, deploy/'s
// namespace, ServiceAccount and RBAC, the Pod simulator and the emulator.
func Start(ctx context.Context, opts Options) (_ *Env, err error) {
	if opts.Log == nil {
		opts.Log = os.Stderr
	}
	repo, err := cluster.RepoRoot()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, err
	}
	e := &Env{Dir: opts.Dir, Repo: repo, log: opts.Log}
	defer func() {
		if err != nil {
			e.Stop()
		}
	}()
	fmt.Fprintln(opts.Log, "Building clb-direct and clb-emulator...")
	if e.Bins, err = BuildBinaries(ctx, repo, filepath.Join(opts.Dir, "bin")); err != nil {
		return nil, err
	}
	fmt.Fprintln(opts.Log, "Starting etcd, kube-apiserver and kube-controller-manager...")
	// The cluster lives until Stop; ctx only bounds the start.
	clusterOpts := cluster.Options{LogDir: filepath.Join(opts.Dir, "logs"), Log: opts.Log, APIServerFlags: opts.APIServerFlags,
		Controllers: opts.Controllers}
	if opts.AuditController {
		clusterOpts.AuditUsers = []string{ControllerUser}
	}
	if e.Cluster, err = cluster.Start(context.WithoutCancel(ctx), clusterOpts); err != nil {
		return nil, err
	}
	if e.Admin, err = kubernetes.NewForConfig(e.Cluster.AdminConfig()); err != nil {
		return nil, err
	}
	if err := ApplyManifests(ctx, e.Admin, filepath.Join(repo, "deploy", "namespace.yaml"),
		filepath.Join(repo, "deploy", "serviceaccount.yaml"), filepath.Join(repo, "deploy", "rbac.yaml")); err != nil {
		return nil, err
	}
	if err := e.installCRD(ctx, filepath.Join(repo, "deploy", "crd", "tkeserviceconfigs.yaml")); err != nil {
		return nil, err
	}
	// The simulated Pods carry no ENI resource: they are GlobalRouter Pods,
	// and the cluster opts in to direct access for them, as a TKE cluster
	// in GlobalRouter mode must.
	if err := e.SetGlobalRouteDirectAccess(ctx, true); err != nil {
		return nil, err
	}
	simCtx, stopSim := context.WithCancel(context.WithoutCancel(ctx))
	e.stopSim = stopSim
	// Pod IPs and VIPs from ranges of this installation's own, so that a
	// sandbox and a test run side by side never bind the same address.
	e.netID = 10 + mathrand.IntN(100)
	podCIDR := fmt.Sprintf("127.%d.0.0/16", e.netID)
	if e.Sim, err = podsim.Start(simCtx, e.Admin, podsim.Options{Nodes: opts.Nodes, PodCIDR: podCIDR, NodePorts: true}); err != nil {
		return nil, fmt.Errorf("starting the Pod simulator: %w", err)
	}
	fmt.Fprintln(opts.Log, "Starting the CLB emulator...")
	if e.Emulator, err = e.StartEmulator(ctx, opts.EmulatorArgs...); err != nil {
		return nil, err
	}
	// The CLB reaches a Node registered by instance ID at its private IP,
	// as in the cloud: tell the emulator which is which.
	if err := e.registerInstances(ctx); err != nil {
		return nil, err
	}
	return e, nil
}

// registerInstances gives the emulator each simulated Node's instance ID
// (from spec.providerID) and address.
func (e *Env) registerInstances(ctx context.Context) error {
	nodes, err := e.Admin.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	instances := map[string]string{}
	for _, n := range nodes.Items {
		id := n.Spec.ProviderID[strings.LastIndex(n.Spec.ProviderID, "/")+1:]
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				instances[id] = a.Address
			}
		}
	}
	return e.Emulator.admin(ctx, http.MethodPost, "/admin/instances", instances, nil)
}

// Stop ends everything Start started (and any controller still running is
// killed with its process group when the parent exits).
func (e *Env) Stop() {
	if e.Emulator != nil {
		_ = e.Emulator.Process.Stop(5 * time.Second)
	}
	if e.stopSim != nil {
		e.stopSim()
		e.Sim.Stop()
	}
	if e.Cluster != nil {
		e.Cluster.Stop()
	}
}

// Emulator is a running clb-emulator.
type Emulator struct {
	Process   *Process
	Addr      string
	SecretID  string
	SecretKey string
	Region    string
}

// StartEmulator starts a fresh emulator (empty account) with health checks
// and the data plane on; extra flags are appended. Health checks run ten
// times faster than configured (a 5 s interval probes every 500 ms) so a
// test waits on them for seconds, not minutes, with the same thresholds.
func (e *Env) StartEmulator(ctx context.Context, extra ...string) (*Emulator, error) {
	addr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	em := &Emulator{Addr: addr, SecretID: "AKIDsandbox" + randomHex(8), SecretKey: randomHex(16), Region: Region}
	args := append([]string{"--listen", addr, "--secret-id", em.SecretID, "--secret-key", em.SecretKey, "--region", em.Region,
		"--data-plane", "--vip-cidr", fmt.Sprintf("127.%d.%d.0/24", e.netID+100, mathrand.IntN(256)),
		"--health-check-time-scale", "0.1", "--task-duration", "100ms"}, extra...)
	startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	logPath := filepath.Join(e.Dir, "logs", "clb-emulator-"+strconv.FormatInt(time.Now().UnixNano(), 36)+".log")
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return nil, err
	}
	em.Process, err = startProcess(startCtx, "clb-emulator", logPath, "listening on", nil, e.Bins.Emulator, args...)
	if err != nil {
		return nil, err
	}
	return em, nil
}

// State reads the emulator's whole account.
func (em *Emulator) State(ctx context.Context) (fake.State, error) {
	var state fake.State
	err := em.admin(ctx, http.MethodGet, "/admin/state", nil, &state)
	return state, err
}

// Calls reads the emulator's call log.
func (em *Emulator) Calls(ctx context.Context) ([]emulator.CallRecord, error) {
	var calls []emulator.CallRecord
	err := em.admin(ctx, http.MethodGet, "/admin/calls", nil, &calls)
	return calls, err
}

// SetFaults posts a fault setting to the emulator's admin endpoint.
func (em *Emulator) SetFaults(ctx context.Context, faults any) error {
	return em.admin(ctx, http.MethodPost, "/admin/faults", faults, nil)
}

func (em *Emulator) admin(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+em.Addr+path, body)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("emulator %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("emulator %s %s: %s: %s", method, path, resp.Status, msg)
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// Controller is a running clb-direct.
type Controller struct {
	*Process
	HealthAddr string
	// MetricsAddr serves /metrics.
	MetricsAddr string
	// credentialsDir is the Secret volume stand-in of
	// ControllerOptions.CredentialsFile.
	credentialsDir string
}

// ControllerOptions choose how a controller runs.
type ControllerOptions struct {
	// Name tells replicas apart in logs.
	Name string
	// InCluster runs it with the in-cluster environment (token, CA and
	// KUBERNETES_SERVICE_HOST/PORT in a private mount namespace) instead
	// of a kubeconfig. Both authenticate as deploy/'s ServiceAccount.
	InCluster bool
	// NoWebhook leaves the readiness-gate webhook out; by default the
	// controller serves it over TLS and the API server calls it.
	NoWebhook bool
	// Args are appended to the defaults (a later flag wins).
	Args []string
	// Emulator is the CLB API it uses; nil: the environment's.
	Emulator *Emulator
	// SecretID and SecretKey sign its CLB API calls, SessionToken goes
	// with them if set; empty: the emulator's own credentials. Start the
	// emulator with --extra-credential id:key to accept another pair.
	SecretID, SecretKey, SessionToken string
	// CredentialsFile passes the credentials as deploy/ does: a directory
	// laid out as the kubelet mounts the Secret clb-direct-credentials,
	// named by --cloud-credentials-file and re-read by the controller
	// (Controller.RotateCredentials changes them). False: the
	// TENCENTCLOUD_* environment variables.
	CredentialsFile bool
}

// StartController starts clb-direct against the cluster and the emulator,
// authenticated as deploy/'s ServiceAccount, so deploy/'s RBAC is what it
// gets, and waits until it serves /readyz.
func (e *Env) StartController(ctx context.Context, opts ControllerOptions) (*Controller, error) {
	if opts.Name == "" {
		opts.Name = "clb-direct"
	}
	healthAddr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	// Replicas share the machine: none may take the default :8080.
	metricsAddr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(e.Dir, "controllers", opts.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	em := opts.Emulator
	if em == nil {
		em = e.Emulator
	}
	args := []string{
		"--cluster-id", ClusterID, "--region", em.Region,
		"--cloud", "tencent", "--cloud-endpoint", em.Addr, "--cloud-endpoint-scheme", "http",
		"--leader-elect-resource-namespace", ControllerNamespace,
		"--leader-elect-lease-duration", "4s", "--leader-elect-renew-deadline", "3s", "--leader-elect-retry-period", "500ms",
		"--health-probe-bind-address", healthAddr, "--metrics-bind-address", metricsAddr, "--resync-period", "30s", "-v", "4",
	}
	var webhookAddr string
	var caPEM []byte
	if !opts.NoWebhook {
		var certFile, keyFile string
		if caPEM, certFile, keyFile, err = webhookCert(dir); err != nil {
			return nil, err
		}
		if webhookAddr, err = FreeAddr(); err != nil {
			return nil, err
		}
		args = append(args, "--webhook-bind-address", webhookAddr, "--webhook-cert-file", certFile, "--webhook-key-file", keyFile)
	}
	secretID, secretKey := opts.SecretID, opts.SecretKey
	if secretID == "" && secretKey == "" {
		secretID, secretKey = em.SecretID, em.SecretKey
	}
	var env []string
	var credentialsDir string
	if opts.CredentialsFile {
		credentialsDir = filepath.Join(dir, "credentials")
		if err := writeSecretVolume(credentialsDir, credentialFiles(secretID, secretKey, opts.SessionToken)); err != nil {
			return nil, err
		}
		args = append(args, "--cloud-credentials-file", credentialsDir)
	} else {
		env = []string{"TENCENTCLOUD_SECRET_ID=" + secretID, "TENCENTCLOUD_SECRET_KEY=" + secretKey}
		if opts.SessionToken != "" {
			env = append(env, "TENCENTCLOUD_SESSION_TOKEN="+opts.SessionToken)
		}
	}
	bin := e.Bins.Controller
	if opts.InCluster {
		saDir := filepath.Join(dir, "serviceaccount")
		if err := e.Cluster.WriteInClusterDir(ctx, ControllerNamespace, ControllerServiceAccount, saDir); err != nil {
			return nil, err
		}
		env = append(env, e.Cluster.InClusterEnv()...)
		// A private mount namespace gives this one process the fixed
		// service-account paths without touching the machine.
		script := "mount -t tmpfs tmpfs /run && mkdir -p /run/secrets/kubernetes.io/serviceaccount && " +
			"mount --bind \"$0\" /run/secrets/kubernetes.io/serviceaccount && exec \"$@\""
		args = append([]string{"-m", "sh", "-c", script, saDir, bin}, append(args, opts.Args...)...)
		bin = "unshare"
	} else {
		kubeconfig, err := e.serviceAccountKubeconfig(ctx, dir)
		if err != nil {
			return nil, err
		}
		args = append(append(args, "--kubeconfig", kubeconfig), opts.Args...)
	}
	p, err := startProcess(ctx, opts.Name, filepath.Join(dir, "controller.log"), "", env, bin, args...)
	if err != nil {
		return nil, err
	}
	c := &Controller{Process: p, HealthAddr: healthAddr, MetricsAddr: metricsAddr, credentialsDir: credentialsDir}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + healthAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				if webhookAddr != "" {
					if err := e.registerWebhook(ctx, webhookAddr, caPEM); err != nil {
						p.Kill()
						return nil, err
					}
				}
				return c, nil
			}
		}
		select {
		case <-p.Done():
			return nil, fmt.Errorf("controller %s exited (%v); log %s ends with:\n%s", opts.Name, p.Err(), p.LogPath, Tail(p.LogPath, 30))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.Kill()
			return nil, fmt.Errorf("controller %s not ready in 30s; log ends with:\n%s", opts.Name, Tail(p.LogPath, 30))
		}
	}
}

// RotateCredentials replaces the credentials of a controller started with
// ControllerOptions.CredentialsFile, at once for all files, as the kubelet
// updates a Secret volume; the controller picks them up on its next re-read.
func (c *Controller) RotateCredentials(secretID, secretKey, sessionToken string) error {
	if c.credentialsDir == "" {
		return errors.New("the controller reads its credentials from the environment: start it with CredentialsFile")
	}
	return writeSecretVolume(c.credentialsDir, credentialFiles(secretID, secretKey, sessionToken))
}

func credentialFiles(secretID, secretKey, sessionToken string) map[string]string {
	files := map[string]string{"TENCENTCLOUD_SECRET_ID": secretID, "TENCENTCLOUD_SECRET_KEY": secretKey}
	if sessionToken != "" {
		files["TENCENTCLOUD_SESSION_TOKEN"] = sessionToken
	}
	return files
}

// writeSecretVolume lays files out in dir as the kubelet does for a Secret
// volume: they live in a timestamped directory that the symlink ..data
// points to, switched atomically by a rename, and each key is a symlink
// through ..data. A reader never sees half of an update.
func writeSecretVolume(dir string, files map[string]string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	version, err := os.MkdirTemp(dir, ".."+time.Now().UTC().Format("2006_01_02_15_04_05."))
	if err != nil {
		return err
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(version, name), []byte(content), 0o600); err != nil {
			return err
		}
	}
	tmp := filepath.Join(dir, "..data_tmp")
	_ = os.Remove(tmp)
	if err := os.Symlink(filepath.Base(version), tmp); err != nil {
		return err
	}
	old, _ := os.Readlink(filepath.Join(dir, "..data"))
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		return err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, ent := range entries {
		name := ent.Name()
		if strings.HasPrefix(name, "..") {
			continue
		}
		if _, ok := files[name]; !ok {
			_ = os.Remove(filepath.Join(dir, name))
		}
	}
	for name := range files {
		link := filepath.Join(dir, name)
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
			return err
		}
	}
	if old != "" && old != filepath.Base(version) {
		return os.RemoveAll(filepath.Join(dir, old))
	}
	return nil
}

// serviceAccountKubeconfig writes a kubeconfig that authenticates as
// deploy/'s ServiceAccount.
func (e *Env) serviceAccountKubeconfig(ctx context.Context, dir string) (string, error) {
	token, err := e.Cluster.ServiceAccountToken(ctx, ControllerNamespace, ControllerServiceAccount)
	if err != nil {
		return "", err
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["sandbox"] = &clientcmdapi.Cluster{Server: e.Cluster.Host(), CertificateAuthorityData: e.Cluster.CAData()}
	cfg.AuthInfos["clb-direct"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["clb-direct"] = &clientcmdapi.Context{Cluster: "sandbox", AuthInfo: "clb-direct"}
	cfg.CurrentContext = "clb-direct"
	path := filepath.Join(dir, "kubeconfig")
	return path, clientcmd.WriteToFile(*cfg, path)
}

// ApplyManifests creates the objects of YAML files (several documents per
// file), leaving existing ones as they are.
func ApplyManifests(ctx context.Context, client kubernetes.Interface, paths ...string) error {
	objs, err := decodeManifests(paths...)
	if err != nil {
		return err
	}
	for _, obj := range objs {
		// Like kubectl, put namespaced objects without one in "default".
		if accessor, err := meta.Accessor(obj); err == nil && accessor.GetNamespace() == "" && namespaced(obj) {
			accessor.SetNamespace(metav1.NamespaceDefault)
		}
		if err := create(ctx, client, obj); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating %T: %w", obj, err)
		}
	}
	return nil
}

// decodeManifests reads the objects of YAML files, several documents each.
func decodeManifests(paths ...string) ([]runtime.Object, error) {
	var objs []runtime.Object
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		decoder := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			var raw runtime.RawExtension
			if err := decoder.Decode(&raw); err == io.EOF {
				break
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
	return objs, nil
}

func namespaced(obj runtime.Object) bool {
	switch obj.(type) {
	case *corev1.Namespace, *rbacv1.ClusterRole, *rbacv1.ClusterRoleBinding:
		return false
	}
	return true
}

func create(ctx context.Context, c kubernetes.Interface, obj runtime.Object) error {
	opts := metav1.CreateOptions{}
	var err error
	switch o := obj.(type) {
	case *corev1.Namespace:
		_, err = c.CoreV1().Namespaces().Create(ctx, o, opts)
	case *corev1.ServiceAccount:
		_, err = c.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, o, opts)
	case *corev1.ConfigMap:
		_, err = c.CoreV1().ConfigMaps(o.Namespace).Create(ctx, o, opts)
	case *corev1.Service:
		_, err = c.CoreV1().Services(o.Namespace).Create(ctx, o, opts)
	case *rbacv1.ClusterRole:
		_, err = c.RbacV1().ClusterRoles().Create(ctx, o, opts)
	case *rbacv1.ClusterRoleBinding:
		_, err = c.RbacV1().ClusterRoleBindings().Create(ctx, o, opts)
	case *rbacv1.Role:
		_, err = c.RbacV1().Roles(o.Namespace).Create(ctx, o, opts)
	case *rbacv1.RoleBinding:
		_, err = c.RbacV1().RoleBindings(o.Namespace).Create(ctx, o, opts)
	case *appsv1.Deployment:
		_, err = c.AppsV1().Deployments(o.Namespace).Create(ctx, o, opts)
	default:
		return fmt.Errorf("unsupported kind %T", obj)
	}
	return err
}

// FreeAddr returns a loopback address with a port nobody listens on.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// SetGlobalRouteDirectAccess writes the cluster's GlobalRouter opt-in,
// kube-system/tke-service-controller-config.
func (e *Env) SetGlobalRouteDirectAccess(ctx context.Context, allowed bool) error {
	cms := e.Admin.CoreV1().ConfigMaps("kube-system")
	cm, err := cms.Get(ctx, "tke-service-controller-config", metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "tke-service-controller-config"}}
		cm.Data = map[string]string{"GlobalRouteDirectAccess": strconv.FormatBool(allowed)}
		_, err = cms.Create(ctx, cm, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	cm.Data["GlobalRouteDirectAccess"] = strconv.FormatBool(allowed)
	_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
	return err
}

var crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// installCRD creates a CustomResourceDefinition from deploy/ and waits until
// the API server serves it.
func (e *Env) installCRD(ctx context.Context, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var crd unstructured.Unstructured
	if err := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096).Decode(&crd.Object); err != nil {
		return fmt.Errorf("decoding %s: %w", path, err)
	}
	dyn, err := dynamic.NewForConfig(e.Cluster.AdminConfig())
	if err != nil {
		return err
	}
	client := dyn.Resource(crdResource)
	if _, err := client.Create(ctx, &crd, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating the CRD of %s: %w", path, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := client.Get(ctx, crd.GetName(), metav1.GetOptions{})
		if err == nil {
			conditions, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
			for _, c := range conditions {
				if m, ok := c.(map[string]any); ok && m["type"] == "Established" && m["status"] == "True" {
					return nil
				}
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("CRD %s not established in 30s (last error %v)", crd.GetName(), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
