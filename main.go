// Command clb-direct registers the Pods of direct-access LoadBalancer
// Services as backends of Tencent Cloud CLBs. This file only wires flags,
// clients, informers, leader election and the controller together.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"sync/atomic"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"clb-direct/cloud"
	"clb-direct/cloud/fake"
	"clb-direct/cloud/instrumented"
	"clb-direct/cloud/tencent"
	"clb-direct/controller"
	"clb-direct/metrics"
	"clb-direct/readiness"
	"clb-direct/tkeconfig"
)

type options struct {
	kubeconfig, master       string
	kubeAPIQPS               float64
	kubeAPIBurst             int
	workers                  int
	resyncPeriod             time.Duration
	clusterID, region        string
	cloudProvider            string
	loadBalancerClass        string
	healthProbeAddr          string
	metricsAddr              string
	metricsCertFile          string
	metricsKeyFile           string
	leaderElect              bool
	leaseDuration            time.Duration
	renewDeadline            time.Duration
	retryPeriod              time.Duration
	leaderElectionNamespace  string
	leaderElectionName       string
	shutdownGracePeriod      time.Duration
	terminalErrorRetryPeriod time.Duration
	readinessPollInterval    time.Duration
	readinessTimeout         time.Duration
	webhookAddr              string
	webhookCertFile          string
	webhookKeyFile           string
	injectReadinessGate      bool
	switchTimeout            time.Duration
	cloud                    tencent.Options
}

// defaultGCPercent is the GOGC the controller runs with unless the GOGC
// environment variable says otherwise. Its heap is mostly informer cache,
// which lives as long as the process, and Go's default of 100 lets the heap
// grow to twice that before collecting: at 2,000 Services × 50,000 Pods
// (test/bench MeasureMemory), 169 MiB resident after the sync instead of
// 130 MiB, for 1.2 s less CPU over the 3.5-minute sync (and next to
// nothing once synced, when little is allocated).
const defaultGCPercent = 50

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	klog.InitFlags(nil)
	var o options
	flag.StringVar(&o.kubeconfig, "kubeconfig", "", "Path to a kubeconfig, to run outside the cluster. Neither this nor --master: in-cluster service account.")
	flag.StringVar(&o.master, "master", "", "Address of the Kubernetes API server; overrides the kubeconfig's.")
	flag.Float64Var(&o.kubeAPIQPS, "kube-api-qps", 50, "Queries per second to the Kubernetes API.")
	flag.IntVar(&o.kubeAPIBurst, "kube-api-burst", 100, "Burst of queries to the Kubernetes API.")
	// Syncs spend their time waiting on the CLB API (its rate limits, its
	// tasks): it takes about 16 in flight to keep every action's budget busy
	// while hundreds of Services start at once.
	flag.IntVar(&o.workers, "workers", 16, "Services synced in parallel.")
	flag.DurationVar(&o.resyncPeriod, "resync-period", 5*time.Minute, "How often every Service's CLB is read again, to repair changes made outside the controller.")
	flag.StringVar(&o.clusterID, "cluster-id", "", "The cluster's ID (e.g. cls-xxxxxxxx); it goes into the ownership tags of every CLB created. Required.")
	flag.StringVar(&o.region, "region", "", "Tencent Cloud region of the CLBs (e.g. ap-guangzhou).")
	flag.StringVar(&o.cloud.Endpoint, "cloud-endpoint", tencent.DefaultEndpoint, "host[:port] of the CLB API.")
	flag.StringVar(&o.cloud.Scheme, "cloud-endpoint-scheme", "https", "Scheme of the CLB API: https, or http for an emulator.")
	flag.StringVar(&o.cloud.VpcID, "vpc-id", "", "VPC that new CLBs are created in: the cluster's, so the CLB reaches Pod IPs. Empty: the account's default VPC (refused for internal CLBs).")
	flag.StringVar(&o.cloud.CredentialsFile, "cloud-credentials-file", "", "Credentials of the CLB API, re-read when they change: a directory (e.g. a Secret volume) with files "+
		tencent.EnvSecretID+", "+tencent.EnvSecretKey+" and optional "+tencent.EnvSessionToken+", or a JSON file {\"secretId\",\"secretKey\",\"token\"}. Empty: the environment variables of the same names.")
	flag.Float64Var(&o.cloud.RateLimit, "cloud-rate-limit", tencent.DefaultRateLimit, "Requests per second to the CLB API, per API action; negative: no limit.")
	flag.DurationVar(&o.cloud.Timeout, "cloud-timeout", tencent.DefaultTimeout, "Timeout of one CLB API call, and of the wait for one asynchronous CLB task.")
	flag.StringVar(&o.cloudProvider, "cloud", "tencent", "CLB implementation: tencent (the real API) or fake (in memory, for trying the controller out).")
	flag.StringVar(&o.loadBalancerClass, "load-balancer-class", "", "Handle Services of this spec.loadBalancerClass; empty handles Services without a class, as TKE's controller does.")
	flag.StringVar(&o.healthProbeAddr, "health-probe-bind-address", ":8081", "Address serving /healthz and /readyz; empty disables them.")
	flag.StringVar(&o.metricsAddr, "metrics-bind-address", ":8080", "Address serving Prometheus metrics at "+metrics.Path+"; empty disables them.")
	flag.StringVar(&o.metricsCertFile, "metrics-cert-file", "", "TLS certificate of the metrics endpoint, served over HTTPS when given (with --metrics-key-file), else plain HTTP; re-read when it changes.")
	flag.StringVar(&o.metricsKeyFile, "metrics-key-file", "", "TLS key of the metrics endpoint; re-read when it changes.")
	flag.BoolVar(&o.leaderElect, "leader-elect", true, "Elect a leader with a Lease so only one replica acts.")
	flag.DurationVar(&o.leaseDuration, "leader-elect-lease-duration", 15*time.Second, "How long a standby waits after the last renewal before taking over.")
	flag.DurationVar(&o.renewDeadline, "leader-elect-renew-deadline", 10*time.Second, "How long the leader keeps trying to renew before giving up leadership.")
	flag.DurationVar(&o.retryPeriod, "leader-elect-retry-period", 2*time.Second, "How often to try to acquire or renew the lease.")
	flag.StringVar(&o.leaderElectionNamespace, "leader-elect-resource-namespace", "", "Namespace of the Lease; defaults to the Pod's namespace in-cluster, else kube-system.")
	flag.StringVar(&o.leaderElectionName, "leader-elect-resource-name", "clb-direct", "Name of the Lease.")
	flag.DurationVar(&o.shutdownGracePeriod, "shutdown-grace-period", 20*time.Second, "On SIGTERM, how long in-flight syncs may run before they are cancelled.")
	flag.DurationVar(&o.terminalErrorRetryPeriod, "terminal-error-retry-period", 5*time.Minute, "How long a Service waits after an error only a person can fix (permissions, quota) before it is tried again.")
	flag.DurationVar(&o.readinessPollInterval, "readiness-poll-interval", time.Second, "While some Pod waits on the readiness gate, how often the CLB's target health is read.")
	flag.DurationVar(&o.readinessTimeout, "readiness-timeout", 10*time.Minute, "After this long without passing the CLB health check, a Pod gets a Warning event saying what to check.")
	flag.StringVar(&o.webhookAddr, "webhook-bind-address", ":9443", "Address of the readiness-gate webhook (HTTPS); served when --webhook-cert-file is given.")
	flag.StringVar(&o.webhookCertFile, "webhook-cert-file", "", "TLS certificate of the webhook (e.g. tls.crt of a mounted Secret); re-read when it changes.")
	flag.StringVar(&o.webhookKeyFile, "webhook-key-file", "", "TLS key of the webhook; re-read when it changes.")
	flag.DurationVar(&o.switchTimeout, "switch-timeout", 2*time.Minute, "When a Service switches between direct access and the classic mode, how long the previous backends stay while the new ones are not all healthy.")
	flag.BoolVar(&o.injectReadinessGate, "inject-readiness-gate", true, "Add the readiness gate to new Pods that a direct-access Service selects, as TKE does.")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	logger := klog.FromContext(ctx)
	if err := run(ctx, o); err != nil {
		logger.Error(err, "clb-direct failed")
		klog.FlushAndExit(klog.ExitFlushTimeout, 1)
	}
	klog.Flush()
}

func run(ctx context.Context, o options) error {
	if o.clusterID == "" {
		return errors.New("--cluster-id is required: it marks the CLBs this controller creates as its own")
	}
	metricsTLS, err := metrics.TLSConfig(o.metricsCertFile, o.metricsKeyFile)
	if err != nil {
		return err
	}
	config, err := restConfig(o)
	if err != nil {
		return err
	}
	config.QPS, config.Burst = float32(o.kubeAPIQPS), o.kubeAPIBurst
	config.UserAgent = "clb-direct"
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		return fmt.Errorf("creating the Kubernetes client: %w", err)
	}
	// Metrics: the workqueue provider must be set before the controller
	// makes its queue; queues made earlier report nothing.
	registry := metrics.NewRegistry()
	workqueue.SetProvider(metrics.NewWorkqueueProvider(registry))
	leading := metrics.NewLeaderGauge(registry)
	inner, err := newCloud(o)
	if err != nil {
		return err
	}
	clb := instrumented.New(inner, registry)

	// Only Services resync: each resync re-reads that Service's CLB to
	// repair drift. Pods need none; their events say all there is.
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTransform(controller.TrimForCache),
		informers.WithCustomResyncConfig(map[metav1.Object]time.Duration{&corev1.Service{}: o.resyncPeriod}))
	broadcaster := events.NewBroadcaster(&events.EventSinkImpl{Interface: client.EventsV1()})
	defer broadcaster.Shutdown()
	if err := broadcaster.StartRecordingToSinkWithContext(ctx); err != nil {
		return fmt.Errorf("starting the event recorder: %w", err)
	}
	recorder := broadcaster.NewRecorder(scheme.Scheme, "clb-direct")
	serverVersion, err := client.Discovery().ServerVersion()
	if err != nil {
		return fmt.Errorf("reading the API server's version: %w", err)
	}
	// Only the one ConfigMap that holds the GlobalRouter opt-in is watched.
	serviceControllerConfig := informers.NewSharedInformerFactoryWithOptions(client, 0,
		informers.WithNamespace(controller.ServiceControllerConfigNamespace), informers.WithTransform(controller.TrimForCache),
		informers.WithTweakListOptions(func(lo *metav1.ListOptions) {
			lo.FieldSelector = fields.OneTermEqualSelector("metadata.name", controller.ServiceControllerConfigName).String()
		}))
	dyn, err := dynamic.NewForConfig(config)
	if err != nil {
		return fmt.Errorf("creating the dynamic client: %w", err)
	}
	serviceConfigs, err := tkeServiceConfigInformer(ctx, client, dyn)
	if err != nil {
		return err
	}
	// Pods, by far the most numerous, are cached compactly.
	pods, err := controller.PodInformer(factory)
	if err != nil {
		return err
	}
	// The controller pokes the readiness worker after registering Pods, and
	// the worker asks the controller where Pods belong: one is made first.
	var gates *readiness.Worker
	ctrl, err := controller.New(ctx, client, clb, recorder, factory.Core().V1().Services(), pods, controller.Options{
		ClusterID:               o.clusterID,
		LoadBalancerClass:       o.loadBalancerClass,
		ResyncPeriod:            o.resyncPeriod,
		TerminalRetryDelay:      o.terminalErrorRetryPeriod,
		ShutdownGracePeriod:     o.shutdownGracePeriod,
		BackendsChanged:         func() { gates.Poke() },
		ServiceControllerConfig: serviceControllerConfig.Core().V1().ConfigMaps(),
		Nodes:                   factory.Core().V1().Nodes(),
		SwitchTimeout:           o.switchTimeout,
		ServiceConfigs:          serviceConfigs,
		Dynamic:                 dyn,
		ServerVersion:           serverVersion.GitVersion,
		Metrics:                 controller.NewMetrics(registry),
	})
	if err != nil {
		return err
	}
	gates, err = readiness.New(ctx, client, clb, ctrl, recorder, pods, readiness.Options{
		PollInterval: o.readinessPollInterval,
		Timeout:      o.readinessTimeout,
		Metrics:      readiness.NewMetrics(registry),
	})
	if err != nil {
		return err
	}
	// Informers start before the election so a standby has warm caches and
	// takes over within one lease duration.
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	serviceControllerConfig.Start(ctx.Done())
	defer serviceControllerConfig.Shutdown()
	if serviceConfigs != nil {
		go serviceConfigs.Informer().RunWithContext(ctx)
	}

	var synced atomic.Bool
	go func() {
		all := true
		for _, ok := range factory.WaitForCacheSync(ctx.Done()) {
			all = all && ok
		}
		synced.Store(all)
	}()
	watchdog := leaderelection.NewLeaderHealthzAdaptor(20 * time.Second)
	if o.healthProbeAddr != "" {
		if err := serveProbes(ctx, o.healthProbeAddr, watchdog, &synced); err != nil {
			return err
		}
	}
	if o.metricsAddr != "" {
		if err := metrics.Serve(ctx, o.metricsAddr, registry, metricsTLS); err != nil {
			return err
		}
	}

	// Every replica answers the webhook; only the leader writes.
	if o.webhookCertFile != "" {
		if err := serveWebhook(ctx, o, ctrl); err != nil {
			return err
		}
	}
	// lead runs while this replica leads: from the election's
	// OnStartedLeading, or at once without an election.
	lead := func(ctx context.Context) error {
		leading.Set(1)
		defer leading.Set(0)
		go gates.Run(ctx)
		return ctrl.Run(ctx, o.workers)
	}
	if !o.leaderElect {
		return lead(ctx)
	}
	return runWithLeaderElection(ctx, o, client, watchdog, lead)
}

// serveWebhook serves the readiness-gate injector over TLS, with the
// certificate re-read when its files change.
func serveWebhook(ctx context.Context, o options, ctrl *controller.Controller) error {
	certs, err := readiness.NewCertificateReloader(o.webhookCertFile, o.webhookKeyFile)
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	var selector readiness.Selector = ctrl
	if !o.injectReadinessGate {
		selector = injectNothing{}
	}
	mux := http.NewServeMux()
	mux.Handle("/mutate-pods", &readiness.Injector{Selector: selector, Logger: klog.FromContext(ctx).WithName("webhook")})
	listener, err := net.Listen("tcp", o.webhookAddr)
	if err != nil {
		return fmt.Errorf("listening for the webhook on %s: %w", o.webhookAddr, err)
	}
	server := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.GetCertificate},
	}
	go func() {
		if err := server.ServeTLS(listener, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			klog.FromContext(ctx).Error(err, "Webhook server failed")
		}
	}()
	context.AfterFunc(ctx, func() { _ = server.Close() })
	return nil
}

// injectNothing turns the injector off (--inject-readiness-gate=false)
// while the webhook keeps answering, so a configured webhook never fails.
type injectNothing struct{}

func (injectNothing) SelectedByDirectAccess(*corev1.Pod) bool { return false }

// tkeServiceConfigInformer watches TkeServiceConfig objects when their CRD
// is installed; without it (nil) Services naming a config get a Warning
// saying so, and the rest works.
func tkeServiceConfigInformer(ctx context.Context, client kubernetes.Interface, dyn dynamic.Interface) (informers.GenericInformer, error) {
	resources, err := client.Discovery().ServerResourcesForGroupVersion(tkeconfig.GVR.GroupVersion().String())
	if apierrors.IsNotFound(err) {
		klog.FromContext(ctx).Info("The TkeServiceConfig CRD is not installed; tke-service-config annotations will be refused", "crd", tkeconfig.GVR.GroupResource())
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("looking for the TkeServiceConfig CRD: %w", err)
	}
	if !slices.ContainsFunc(resources.APIResources, func(r metav1.APIResource) bool { return r.Name == tkeconfig.GVR.Resource }) {
		return nil, nil
	}
	return dynamicinformer.NewDynamicSharedInformerFactory(dyn, 0).ForResource(tkeconfig.GVR), nil
}

func restConfig(o options) (*rest.Config, error) {
	if o.kubeconfig == "" && o.master == "" {
		config, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("no --kubeconfig or --master given, and not running in a cluster: %w", err)
		}
		return config, nil
	}
	config, err := clientcmd.BuildConfigFromFlags(o.master, o.kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig %q: %w", o.kubeconfig, err)
	}
	return config, nil
}

func newCloud(o options) (cloud.Interface, error) {
	switch o.cloudProvider {
	case "fake":
		return fake.New(), nil
	case "tencent":
		opts := o.cloud
		opts.Region = o.region
		c, err := tencent.New(opts)
		if err != nil {
			return nil, err
		}
		return c, nil
	}
	return nil, fmt.Errorf("--cloud=%q: want tencent or fake", o.cloudProvider)
}

// serveProbes serves /healthz (the process is alive and, when leading,
// renewing its lease) and /readyz (the caches are synced).
func serveProbes(ctx context.Context, addr string, watchdog *leaderelection.HealthzAdaptor, synced *atomic.Bool) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if err := watchdog.Check(r); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if !synced.Load() {
			http.Error(w, "informer caches not synced", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	listener, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening for health probes on %s: %w", addr, err)
	}
	server := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := server.Serve(listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
			klog.FromContext(ctx).Error(err, "Health probe server failed")
		}
	}()
	context.AfterFunc(ctx, func() { _ = server.Close() })
	return nil
}

// runWithLeaderElection runs the controller while this replica holds the
// Lease. On SIGTERM the controller drains first and the Lease is released
// after, so the next leader never overlaps with our last writes. A lost
// Lease ends the process at once: another replica may already be writing.
func runWithLeaderElection(ctx context.Context, o options, client kubernetes.Interface, watchdog *leaderelection.HealthzAdaptor, run func(context.Context) error) error {
	logger := klog.FromContext(ctx)
	hostname, err := os.Hostname()
	if err != nil {
		return fmt.Errorf("reading the hostname for the leader election identity: %w", err)
	}
	identity := hostname + "_" + string(uuid.NewUUID())
	namespace := o.leaderElectionNamespace
	if namespace == "" {
		namespace = podNamespace()
	}
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, namespace, o.leaderElectionName,
		client.CoreV1(), client.CoordinationV1(), resourcelock.ResourceLockConfig{Identity: identity})
	if err != nil {
		return fmt.Errorf("creating the leader election lock: %w", err)
	}

	electionCtx, endElection := context.WithCancel(context.WithoutCancel(ctx))
	defer endElection()
	var released atomic.Bool
	release := func() { released.Store(true); endElection() }
	var runErr error
	// Declared first: the callbacks refer to it.
	var elector *leaderelection.LeaderElector
	elector, err = leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   o.leaseDuration,
		RenewDeadline:   o.renewDeadline,
		RetryPeriod:     o.retryPeriod,
		ReleaseOnCancel: true,
		WatchDog:        watchdog,
		Name:            o.leaderElectionName,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(leaderCtx context.Context) {
				logger.Info("Became leader", "identity", identity)
				runCtx, cancel := context.WithCancel(leaderCtx)
				defer cancel()
				stopOnSignal := context.AfterFunc(ctx, cancel)
				defer stopOnSignal()
				go exitWhenLeaseLapses(runCtx, elector, o, &released, identity)
				runErr = run(runCtx)
				// Released on purpose only on a signal or a failure: a lost
				// lease must reach OnStoppedLeading, which exits.
				if ctx.Err() != nil || runErr != nil {
					release()
				}
			},
			OnStoppedLeading: func() {
				if released.Load() {
					logger.Info("Released the lease", "identity", identity)
					return
				}
				logger.Error(nil, "Lost the lease; exiting so that only the new leader acts", "identity", identity)
				klog.FlushAndExit(klog.ExitFlushTimeout, 1)
			},
			OnNewLeader: func(current string) {
				if current != identity {
					logger.Info("Another replica leads", "leader", current)
				}
			},
		},
	})
	if err != nil {
		return fmt.Errorf("configuring leader election: %w", err)
	}
	stopWaiting := context.AfterFunc(ctx, func() {
		if !elector.IsLeader() {
			release()
		}
	})
	defer stopWaiting()
	elector.Run(electionCtx)
	return runErr
}

// exitWhenLeaseLapses ends the process once our last successful renewal
// is older than the renew deadline. client-go gives up renewing only after
// that and then first tries to release the lease (up to another renew
// deadline, e.g. while cut off from the API server), during which a
// standby may already lead: the process must not write meanwhile.
func exitWhenLeaseLapses(ctx context.Context, elector *leaderelection.LeaderElector, o options, released *atomic.Bool, identity string) {
	ticker := time.NewTicker(o.retryPeriod)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		if err := elector.Check(o.renewDeadline - o.leaseDuration); err != nil && !released.Load() {
			klog.FromContext(ctx).Error(err, "The lease was not renewed in time; exiting so that only the new leader acts", "identity", identity)
			klog.FlushAndExit(klog.ExitFlushTimeout, 1)
		}
	}
}

// podNamespace is the namespace the controller runs in, when in a cluster.
func podNamespace() string {
	data, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
	if err != nil || len(data) == 0 {
		return "kube-system"
	}
	return string(data)
}
