// Package cluster runs a real Kubernetes control plane (etcd,
// kube-apiserver, kube-controller-manager) on loopback for end-to-end
// tests. There is no scheduler and no kubelet: package podsim stands in
// for them.
//
// The binaries are built from source on first use (EnsureBinaries, or
// hack/build-control-plane.sh) with one deliberate change: Endpoints and
// EndpointSlices may hold loopback addresses, because the simulated Pods
// have nothing else. Everything else is stock Kubernetes.
//
// Typical use:
//
//	c := cluster.StartForTest(t, cluster.Options{})
//	cs := kubernetes.NewForConfigOrDie(c.AdminConfig())
//	sim, err := podsim.Start(t.Context(), cs, podsim.Options{})
package cluster

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
)

// DefaultControllers are the kube-controller-manager controllers a
// controller test needs: Deployments down to Pods, EndpointSlices, the
// per-namespace default ServiceAccount (without which Pods are refused),
// tokens, and namespace/garbage cleanup.
var DefaultControllers = []string{
	"deployment", "replicaset", "endpointslice", "serviceaccount",
	"serviceaccount-token", "namespace", "garbagecollector",
}

// ServiceClusterIPRange is the range Services get ClusterIPs from. It only
// exists inside the API server: nothing routes to it.
const ServiceClusterIPRange = "10.96.0.0/16"

// Options configure Start. The zero value is usable.
type Options struct {
	// LogDir receives one log file per component. Empty means a directory
	// inside the cluster's temporary directory, removed by Stop; Start's
	// error includes the end of the failing component's log either way.
	LogDir string
	// Log receives progress lines (builds, start-up). Default: os.Stderr.
	Log io.Writer
	// Binaries to run. Nil means EnsureBinaries with default options.
	Binaries *Binaries
	// Controllers for kube-controller-manager. Default: DefaultControllers.
	Controllers []string
	// AuditUsers, when set, turns on the API server's audit log for the
	// requests of these users (e.g. system:serviceaccount:<ns>:<name>), at
	// Metadata level, into AuditLogName in the log directory: which
	// resources and verbs they used and what the authorizer decided.
	AuditUsers []string
	// Extra flags, appended after ours (a later flag wins).
	APIServerFlags         []string
	ControllerManagerFlags []string
	// StartTimeout bounds the start-up after the binaries exist.
	// Default: 2 minutes.
	StartTimeout time.Duration
}

// Cluster is a running control plane. Stop it when done; cancelling the
// context passed to Start stops it too.
type Cluster struct {
	dir        string // removed by Stop
	logDir     string
	log        io.Writer
	pki        *pki
	host       string
	port       int
	etcdURL    string
	kcmPort    int
	adminToken string
	kubeconfig string
	auditLog   string

	mu       sync.Mutex
	procs    []*process // in start order
	stopping bool
	stopOnce sync.Once
	stopped  chan struct{}
}

// Start starts etcd, kube-apiserver and kube-controller-manager on free
// loopback ports and returns once the API server is ready and the default
// ServiceAccount of namespace default exists (so Pods can be created).
func Start(ctx context.Context, opts Options) (c *Cluster, err error) {
	if opts.Log == nil {
		opts.Log = os.Stderr
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 2 * time.Minute
	}
	if len(opts.Controllers) == 0 {
		opts.Controllers = DefaultControllers
	}
	bins := opts.Binaries
	if bins == nil {
		b, err := EnsureBinaries(ctx, BuildOptions{Log: opts.Log})
		if err != nil {
			return nil, err
		}
		bins = &b
	}
	sweepStaleDirs()

	begin := time.Now()
	dir, err := os.MkdirTemp("", tempPrefix)
	if err != nil {
		return nil, err
	}
	// The owner's pid lets a later run remove this directory if we are
	// killed before Stop runs.
	if err := os.WriteFile(filepath.Join(dir, "owner.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	c = &Cluster{dir: dir, logDir: opts.LogDir, log: opts.Log, stopped: make(chan struct{})}
	if c.logDir == "" {
		c.logDir = filepath.Join(dir, "logs")
	}
	register(c)
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	if err := os.MkdirAll(c.logDir, 0o755); err != nil {
		return nil, err
	}
	if c.pki, err = newPKI(dir); err != nil {
		return nil, err
	}

	startCtx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()
	if err := c.startEtcd(startCtx, bins.Etcd); err != nil {
		return nil, err
	}
	apiServerFlags := opts.APIServerFlags
	if len(opts.AuditUsers) > 0 {
		audit, err := c.auditFlags(opts.AuditUsers)
		if err != nil {
			return nil, err
		}
		apiServerFlags = append(audit, apiServerFlags...)
	}
	if err := c.startAPIServer(startCtx, bins.KubeAPIServer, apiServerFlags); err != nil {
		return nil, err
	}
	if err := c.startControllerManager(startCtx, bins.KubeControllerManager, opts.Controllers, opts.ControllerManagerFlags); err != nil {
		return nil, err
	}
	fmt.Fprintf(c.log, "[cluster] ready at %s in %s (logs in %s)\n", c.host, time.Since(begin).Round(time.Millisecond), c.logDir)

	go func() {
		select {
		case <-ctx.Done():
			c.Stop()
		case <-c.stopped:
		}
	}()
	return c, nil
}

const tempPrefix = "clb-direct-cluster-"

func (c *Cluster) startEtcd(ctx context.Context, bin string) error {
	dataDir := filepath.Join(c.dir, "etcd")
	return c.startWithRetry(ctx, "etcd", func() (*process, error) {
		ports, err := freePorts(2)
		if err != nil {
			return nil, err
		}
		client := "http://127.0.0.1:" + itoa(ports[0])
		peer := "http://127.0.0.1:" + itoa(ports[1])
		c.etcdURL = client
		// A failed attempt may leave a half-initialized data dir behind.
		os.RemoveAll(dataDir)
		return startProcess("etcd", bin, []string{
			"--name=e2e",
			"--data-dir=" + dataDir,
			"--listen-client-urls=" + client,
			"--advertise-client-urls=" + client,
			"--listen-peer-urls=" + peer,
			"--initial-advertise-peer-urls=" + peer,
			"--initial-cluster=e2e=" + peer,
			// Durability is worthless for a throw-away cluster; fsync
			// dominates etcd latency on shared disks.
			"--unsafe-no-fsync",
			"--log-level=warn",
		}, filepath.Join(c.logDir, "etcd.log"))
	}, func(ctx context.Context, p *process) error {
		return waitFor(ctx, p, "etcd health", func() (bool, error) {
			resp, err := http.Get(c.etcdURL + "/health")
			if err != nil {
				return false, nil
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK && strings.Contains(string(body), `"health":"true"`), nil
		})
	})
}

func (c *Cluster) startAPIServer(ctx context.Context, bin string, extra []string) error {
	c.adminToken = randomToken()
	tokens := filepath.Join(c.dir, "tokens.csv")
	// token,user,uid,"groups": the static token is the same admin as the
	// client certificate, for tools that find a bearer token simpler.
	if err := os.WriteFile(tokens, []byte(c.adminToken+`,clb-direct-admin,clb-direct-admin,"system:masters"`+"\n"), 0o600); err != nil {
		return err
	}
	return c.startWithRetry(ctx, "kube-apiserver", func() (*process, error) {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		c.port = port
		c.host = "https://127.0.0.1:" + itoa(port)
		args := []string{
			"--etcd-servers=" + c.etcdURL,
			"--bind-address=127.0.0.1",
			"--advertise-address=127.0.0.1",
			"--secure-port=" + itoa(port),
			"--cert-dir=" + filepath.Join(c.dir, "apiserver"),
			"--tls-cert-file=" + c.pki.serving.certFile,
			"--tls-private-key-file=" + c.pki.serving.keyFile,
			"--client-ca-file=" + c.pki.caFile,
			"--token-auth-file=" + tokens,
			// The front-proxy settings a real control plane has: without
			// them every delegating component (the controller manager's
			// own server) logs a missing-CA error forever.
			"--requestheader-client-ca-file=" + c.pki.caFile,
			"--requestheader-allowed-names=front-proxy-client",
			"--requestheader-username-headers=X-Remote-User",
			"--requestheader-group-headers=X-Remote-Group",
			"--requestheader-extra-headers-prefix=X-Remote-Extra-",
			"--proxy-client-cert-file=" + c.pki.frontProxy.certFile,
			"--proxy-client-key-file=" + c.pki.frontProxy.keyFile,
			"--authorization-mode=Node,RBAC",
			"--service-account-key-file=" + c.pki.saPub,
			"--service-account-signing-key-file=" + c.pki.saKey,
			"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
			"--service-cluster-ip-range=" + ServiceClusterIPRange,
			// The kubernetes Service's endpoints would be 127.0.0.1, which
			// the reconciler keeps failing to write; nothing here needs them.
			"--endpoint-reconciler-type=none",
			"--allow-privileged=true",
			"--profiling=false",
			"--v=2",
		}
		return startProcess("kube-apiserver", bin, append(args, extra...), filepath.Join(c.logDir, "kube-apiserver.log"))
	}, func(ctx context.Context, p *process) error {
		client, err := c.adminHTTPClient()
		if err != nil {
			return err
		}
		return waitFor(ctx, p, "kube-apiserver /readyz", func() (bool, error) {
			resp, err := client.Get(c.host + "/readyz")
			if err != nil {
				return false, nil
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK, nil
		})
	})
}

func (c *Cluster) startControllerManager(ctx context.Context, bin string, controllers, extra []string) error {
	if err := c.writeKubeconfigs(); err != nil {
		return err
	}
	kcmKubeconfig := filepath.Join(c.dir, "kube-controller-manager.kubeconfig")
	cs, err := kubernetes.NewForConfig(c.AdminConfig())
	if err != nil {
		return err
	}
	return c.startWithRetry(ctx, "kube-controller-manager", func() (*process, error) {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		c.kcmPort = port
		args := []string{
			"--kubeconfig=" + kcmKubeconfig,
			"--authentication-kubeconfig=" + kcmKubeconfig,
			"--authorization-kubeconfig=" + kcmKubeconfig,
			"--bind-address=127.0.0.1",
			"--secure-port=" + itoa(port),
			"--cert-dir=" + filepath.Join(c.dir, "kube-controller-manager"),
			"--leader-elect=false",
			"--controllers=" + strings.Join(controllers, ","),
			// Each controller acts as its own ServiceAccount, as in a real
			// cluster, so RBAC between controllers is real too.
			"--use-service-account-credentials=true",
			"--service-account-private-key-file=" + c.pki.saKey,
			"--root-ca-file=" + c.pki.caFile,
			"--v=2",
		}
		return startProcess("kube-controller-manager", bin, append(args, extra...), filepath.Join(c.logDir, "kube-controller-manager.log"))
	}, func(ctx context.Context, p *process) error {
		// The default ServiceAccount is the first visible sign that the
		// controllers run, and Pods are refused until it exists.
		return waitFor(ctx, p, "default ServiceAccount", func() (bool, error) {
			_, err := cs.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return false, nil
			}
			return err == nil, nil
		})
	})
}

// startWithRetry starts a component and waits until it is ready. A port
// taken between freePort and the bind is retried with new ports.
func (c *Cluster) startWithRetry(ctx context.Context, name string, start func() (*process, error), ready func(context.Context, *process) error) error {
	t0 := time.Now()
	for attempt := 1; ; attempt++ {
		p, err := start()
		if err != nil {
			return err
		}
		c.mu.Lock()
		if c.stopping {
			c.mu.Unlock()
			p.stop(0)
			return errors.New("cluster stopped during start-up")
		}
		c.procs = append(c.procs, p)
		c.mu.Unlock()
		err = ready(ctx, p)
		if err == nil {
			fmt.Fprintf(c.log, "[cluster] %s ready in %s\n", name, time.Since(t0).Round(time.Millisecond))
			go c.watch(p)
			return nil
		}
		if attempt < 3 && p.exited() && addressInUse(p) {
			fmt.Fprintf(c.log, "[cluster] %s: port taken, retrying\n", name)
			c.forget(p)
			continue
		}
		return err
	}
}

func (c *Cluster) forget(p *process) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, q := range c.procs {
		if q == p {
			c.procs = append(c.procs[:i], c.procs[i+1:]...)
			return
		}
	}
}

// watch reports a component that dies while the cluster should be up:
// the symptoms in a test (timeouts, refused connections) would otherwise
// hide the cause.
func (c *Cluster) watch(p *process) {
	select {
	case <-p.done:
	case <-c.stopped:
		return
	}
	c.mu.Lock()
	stopping := c.stopping
	c.mu.Unlock()
	if !stopping {
		fmt.Fprintf(c.log, "[cluster] %v\n", p.failure())
	}
}

// waitFor polls cond until it holds, the process exits or ctx ends.
func waitFor(ctx context.Context, p *process, what string, cond func() (bool, error)) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := cond()
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		if ok {
			return nil
		}
		select {
		case <-p.done:
			return p.failure()
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w; %s log %s ends with:\n%s", what, ctx.Err(), p.name, p.logPath, tailFile(p.logPath, 30))
		case <-tick.C:
		}
	}
}

func (c *Cluster) writeKubeconfigs() error {
	write := func(path, user string, cf certFiles) error {
		cfg := clientcmdapi.NewConfig()
		cfg.Clusters["clb-direct-e2e"] = &clientcmdapi.Cluster{Server: c.host, CertificateAuthorityData: c.pki.caPEM}
		cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificateData: cf.certPEM, ClientKeyData: cf.keyPEM}
		cfg.Contexts["clb-direct-e2e"] = &clientcmdapi.Context{Cluster: "clb-direct-e2e", AuthInfo: user, Namespace: metav1.NamespaceDefault}
		cfg.CurrentContext = "clb-direct-e2e"
		return clientcmd.WriteToFile(*cfg, path)
	}
	c.kubeconfig = filepath.Join(c.dir, "admin.kubeconfig")
	if err := write(c.kubeconfig, "admin", c.pki.admin); err != nil {
		return err
	}
	return write(filepath.Join(c.dir, "kube-controller-manager.kubeconfig"), "kube-controller-manager", c.pki.kcm)
}

func (c *Cluster) adminHTTPClient() (*http.Client, error) {
	pool := x509.NewCertPool()
	pool.AddCert(c.pki.caCert)
	cert, err := tls.X509KeyPair(c.pki.admin.certPEM, c.pki.admin.keyPEM)
	if err != nil {
		return nil, err
	}
	return &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}},
	}, nil
}

// Host is the API server URL, https://127.0.0.1:<port>.
func (c *Cluster) Host() string { return c.host }

// CAFile is the PEM file of the CA that signed the API server's serving
// certificate (and every client certificate of this cluster).
func (c *Cluster) CAFile() string { return c.pki.caFile }

// CAData is the content of CAFile.
func (c *Cluster) CAData() []byte { return append([]byte(nil), c.pki.caPEM...) }

// KubeconfigPath is a self-contained admin kubeconfig (embedded CA and
// client certificate), for kubectl or a controller run with --kubeconfig.
func (c *Cluster) KubeconfigPath() string { return c.kubeconfig }

// AdminToken is a static bearer token of the same admin (system:masters).
func (c *Cluster) AdminToken() string { return c.adminToken }

// EtcdURL is etcd's client URL.
func (c *Cluster) EtcdURL() string { return c.etcdURL }

// LogDir holds etcd.log, kube-apiserver.log and kube-controller-manager.log.
func (c *Cluster) LogDir() string { return c.logDir }

// LogFiles are the components' log files, by component name.
func (c *Cluster) LogFiles() map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := map[string]string{}
	for _, p := range c.procs {
		m[p.name] = p.logPath
	}
	return m
}

// AdminConfig returns a new admin rest.Config (client certificate in
// system:masters) with limits high enough that tests are not throttled.
func (c *Cluster) AdminConfig() *rest.Config {
	return &rest.Config{
		Host: c.host,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   c.CAData(),
			CertData: append([]byte(nil), c.pki.admin.certPEM...),
			KeyData:  append([]byte(nil), c.pki.admin.keyPEM...),
		},
		QPS:   100,
		Burst: 200,
	}
}

// ServiceAccountToken issues a token for an existing ServiceAccount through
// the TokenRequest API, as kubelet does for a Pod, valid for 24h.
func (c *Cluster) ServiceAccountToken(ctx context.Context, namespace, name string) (string, error) {
	cs, err := kubernetes.NewForConfig(c.AdminConfig())
	if err != nil {
		return "", err
	}
	tr, err := cs.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](24 * 60 * 60)},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token for serviceaccount %s/%s: %w", namespace, name, err)
	}
	return tr.Status.Token, nil
}

// ServiceAccountConfig returns a rest.Config that authenticates as an
// existing ServiceAccount, so its RBAC is what is enforced, and the token.
func (c *Cluster) ServiceAccountConfig(ctx context.Context, namespace, name string) (*rest.Config, string, error) {
	token, err := c.ServiceAccountToken(ctx, namespace, name)
	if err != nil {
		return nil, "", err
	}
	return &rest.Config{
		Host:            c.host,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.CAData()},
		QPS:             100,
		Burst:           200,
	}, token, nil
}

// WriteInClusterDir writes token, ca.crt and namespace into dir as a Pod's
// service-account volume has them, for a process that uses
// rest.InClusterConfig with dir mounted at
// /var/run/secrets/kubernetes.io/serviceaccount (see InClusterEnv).
func (c *Cluster) WriteInClusterDir(ctx context.Context, namespace, saName, dir string) error {
	token, err := c.ServiceAccountToken(ctx, namespace, saName)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, data := range map[string][]byte{
		"token":     []byte(token),
		"ca.crt":    c.pki.caPEM,
		"namespace": []byte(namespace),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// InClusterEnv is the environment rest.InClusterConfig reads to find the
// API server.
func (c *Cluster) InClusterEnv() []string {
	return []string{"KUBERNETES_SERVICE_HOST=127.0.0.1", "KUBERNETES_SERVICE_PORT=" + itoa(c.port)}
}

// Stop kills all components (whole process groups) and removes the
// temporary directory, including the logs unless Options.LogDir was set.
// It is safe to call more than once and from several goroutines.
func (c *Cluster) Stop() {
	c.stopOnce.Do(func() {
		c.mu.Lock()
		c.stopping = true
		procs := append([]*process(nil), c.procs...)
		c.mu.Unlock()
		// Reverse start order: clients before the servers they use.
		for i := len(procs) - 1; i >= 0; i-- {
			procs[i].stop(5 * time.Second)
		}
		close(c.stopped)
		os.RemoveAll(c.dir)
		unregister(c)
	})
	<-c.stopped
}

// pids returns the process ids of the components, for tests.
func (c *Cluster) pids() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var pids []int
	for _, p := range c.procs {
		pids = append(pids, p.pid)
	}
	return pids
}

func randomToken() string {
	b := make([]byte, 24)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// live tracks running clusters so that an interrupt (Ctrl-C, SIGTERM from
// a CI timeout) tears them down and removes their directories before the
// process dies. PDEATHSIG alone would kill the components but leave files.
var live struct {
	sync.Mutex
	clusters map[*Cluster]struct{}
	once     sync.Once
}

func register(c *Cluster) {
	live.once.Do(func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
		go func() {
			sig := <-ch
			fmt.Fprintf(os.Stderr, "[cluster] %v: stopping the control plane(s) before exiting\n", sig)
			live.Lock()
			var cs []*Cluster
			for c := range live.clusters {
				cs = append(cs, c)
			}
			live.Unlock()
			for _, c := range cs {
				c.Stop()
			}
			// Die of the signal as if we had never caught it.
			signal.Reset(os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
			if s, ok := sig.(syscall.Signal); ok {
				syscall.Kill(os.Getpid(), s)
			}
			time.Sleep(time.Second)
			os.Exit(2)
		}()
	})
	live.Lock()
	defer live.Unlock()
	if live.clusters == nil {
		live.clusters = map[*Cluster]struct{}{}
	}
	live.clusters[c] = struct{}{}
}

func unregister(c *Cluster) {
	live.Lock()
	defer live.Unlock()
	delete(live.clusters, c)
}

// sweepStaleDirs removes directories of clusters whose test process was
// SIGKILLed (its components died with it through PDEATHSIG, its files did
// not).
func sweepStaleDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), tempPrefix+"*"))
	for _, d := range dirs {
		data, err := os.ReadFile(filepath.Join(d, "owner.pid"))
		if err != nil {
			continue // not ours to judge, or still being created
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil || pid <= 0 || processAlive(pid) {
			continue
		}
		os.RemoveAll(d)
	}
}
