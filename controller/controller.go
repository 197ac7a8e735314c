// Package controller registers the Pods of direct-access LoadBalancer
// Services as backends of their CLBs. Informers feed one rate-limited queue
// of Service keys; syncService diffs the desired backends against the CLB
// and applies the difference through cloud.Interface.
package controller

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"clb-direct/cloud"
)

// Options tune the controller; zero values take the defaults below.
type Options struct {
	// ClusterID goes into the ownership tags of the CLBs we create.
	ClusterID string
	// LoadBalancerClass selects the Services we handle: those with exactly
	// this class, or those without a class when empty.
	LoadBalancerClass string
	// ResyncPeriod is how often every Service's CLB is read again to repair
	// changes made behind our back.
	ResyncPeriod time.Duration
	// TerminalRetryDelay is how long a Service waits after an error that
	// retrying cannot fix (permissions, quota) before it is tried again.
	TerminalRetryDelay time.Duration
	// SwitchTimeout bounds how long a Service switching between direct
	// access and the classic mode keeps its previous backends while waiting
	// for the new ones to turn healthy.
	SwitchTimeout time.Duration
	// ShutdownGracePeriod bounds how long in-flight syncs may run after the
	// controller is told to stop.
	ShutdownGracePeriod time.Duration
	// BackendsChanged, if set, is called after a sync changed backends, so
	// the readiness worker looks at waiting Pods at once.
	BackendsChanged func()
	// ServiceConfigs is the informer of TkeServiceConfig objects; nil when
	// the CRD is not installed (Services naming one then get a Warning).
	ServiceConfigs informers.GenericInformer
	// Dynamic writes <service>-auto-service-config objects.
	Dynamic dynamic.Interface
	// ServiceControllerConfig watches kube-system/tke-service-controller-config,
	// whose GlobalRouteDirectAccess lets GlobalRouter Pods be registered;
	// nil means it is never allowed.
	ServiceControllerConfig coreinformers.ConfigMapInformer
	// Nodes enables the classic mode: a LoadBalancer Service without direct
	// access gets its CLB forwarding to the Nodes' NodePorts. Nil leaves
	// such Services alone.
	Nodes coreinformers.NodeInformer
	// ServerVersion is the API server's gitVersion; direct access needs
	// Kubernetes newer than 1.12. Empty skips the check.
	ServerVersion string
	// Metrics records the sync duration and the backend registration
	// latency; nil records nothing.
	Metrics *Metrics
	// PodEventWindow spaces out the syncs a stream of Pod changes causes to
	// one Service (see podEventPacer); zero means defaultPodEventWindow.
	PodEventWindow time.Duration
	// Clock is injected for tests.
	Clock clock.WithTicker
}

const (
	defaultResyncPeriod        = 5 * time.Minute
	defaultTerminalRetryDelay  = 5 * time.Minute
	defaultShutdownGracePeriod = 20 * time.Second
	defaultSwitchTimeout       = 2 * time.Minute
	// selectorIndex maps "namespace/key=value" to the Services whose
	// selector contains that pair; see serviceSelectorIndexFunc.
	selectorIndex = "selectorPair"
)

// Controller keeps the CLBs of direct-access Services in line with their Pods.
type Controller struct {
	client   kubernetes.Interface
	cloud    cloud.Interface
	recorder events.EventRecorder
	opts     Options

	serviceLister  corelisters.ServiceLister
	serviceIndexer cache.Indexer
	podLister      corelisters.PodLister
	// cachesSynced are every informer the controller reads.
	cachesSynced []cache.InformerSynced

	queue workqueue.TypedRateLimitingInterface[string]

	// unsupported explains why this cluster cannot have direct access
	// (its version); empty when it can.
	unsupported string

	observed          observedCache
	podEvents         *podEventPacer
	loadBalancerLocks keyedLocks
	quotas            quotaCache
	switches          switchTracker
	// resyncDue holds the Service keys whose next sync must re-read the CLB.
	resyncDue sync.Map
	// reported holds the last problem message evented per Service, so an
	// unchanged problem is not evented on every sync.
	reported sync.Map
	stopping atomic.Bool
}

// New wires a controller to its informers. Informers must not be started yet:
// New adds an index to the Service informer.
func New(ctx context.Context, client kubernetes.Interface, clb cloud.Interface, recorder events.EventRecorder,
	serviceInformer coreinformers.ServiceInformer, podInformer coreinformers.PodInformer, opts Options) (*Controller, error) {
	if opts.ClusterID == "" {
		return nil, errors.New("controller: a cluster ID is required: it goes into the ownership tags of every CLB")
	}
	if opts.ResyncPeriod <= 0 {
		opts.ResyncPeriod = defaultResyncPeriod
	}
	if opts.TerminalRetryDelay <= 0 {
		opts.TerminalRetryDelay = defaultTerminalRetryDelay
	}
	if opts.SwitchTimeout <= 0 {
		opts.SwitchTimeout = defaultSwitchTimeout
	}
	if opts.ShutdownGracePeriod <= 0 {
		opts.ShutdownGracePeriod = defaultShutdownGracePeriod
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.PodEventWindow <= 0 {
		opts.PodEventWindow = defaultPodEventWindow
	}
	logger := klog.FromContext(ctx)
	c := &Controller{
		client:         client,
		cloud:          clb,
		recorder:       recorder,
		opts:           opts,
		serviceLister:  serviceInformer.Lister(),
		serviceIndexer: serviceInformer.Informer().GetIndexer(),
		podLister:      podInformer.Lister(),
		cachesSynced:   []cache.InformerSynced{serviceInformer.Informer().HasSynced, podInformer.Informer().HasSynced},
		queue:          workqueue.NewTypedRateLimitingQueueWithConfig(newRateLimiter(), workqueue.TypedRateLimitingQueueConfig[string]{Name: "clb-direct", Clock: opts.Clock}),
		observed:       observedCache{entries: map[string]observedEntry{}},
		podEvents:      newPodEventPacer(opts.PodEventWindow, opts.Clock),
	}
	if err := serviceInformer.Informer().AddIndexers(cache.Indexers{
		selectorIndex:      serviceSelectorIndexFunc,
		serviceConfigIndex: serviceConfigIndexFunc,
	}); err != nil {
		return nil, fmt.Errorf("adding the Service indexes: %w", err)
	}
	c.unsupported = unsupportedReason(opts.ServerVersion)
	if opts.Nodes != nil {
		if _, err := opts.Nodes.Informer().AddEventHandlerWithOptions(cache.ResourceEventHandlerFuncs{
			AddFunc: func(any) { c.enqueueClassicServices() },
			UpdateFunc: func(oldObj, newObj any) {
				if nodeChangeMatters(oldObj.(*v1.Node), newObj.(*v1.Node)) {
					c.enqueueClassicServices()
				}
			},
			DeleteFunc: func(any) { c.enqueueClassicServices() },
		}, cache.HandlerOptions{Logger: &logger}); err != nil {
			return nil, fmt.Errorf("adding the Node event handler: %w", err)
		}
		c.cachesSynced = append(c.cachesSynced, opts.Nodes.Informer().HasSynced)
	}
	if opts.ServiceControllerConfig != nil {
		if _, err := opts.ServiceControllerConfig.Informer().AddEventHandlerWithOptions(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { c.enqueueDirectAccessServices() },
			UpdateFunc: func(any, any) { c.enqueueDirectAccessServices() },
			DeleteFunc: func(any) { c.enqueueDirectAccessServices() },
		}, cache.HandlerOptions{Logger: &logger}); err != nil {
			return nil, fmt.Errorf("adding the service controller ConfigMap handler: %w", err)
		}
		c.cachesSynced = append(c.cachesSynced, opts.ServiceControllerConfig.Informer().HasSynced)
	}
	if opts.ServiceConfigs != nil {
		if _, err := opts.ServiceConfigs.Informer().AddEventHandlerWithOptions(cache.ResourceEventHandlerFuncs{
			AddFunc:    c.enqueueConfigServices,
			UpdateFunc: func(_, obj any) { c.enqueueConfigServices(obj) },
			DeleteFunc: c.enqueueConfigServices,
		}, cache.HandlerOptions{Logger: &logger}); err != nil {
			return nil, fmt.Errorf("adding the TkeServiceConfig event handler: %w", err)
		}
		c.cachesSynced = append(c.cachesSynced, opts.ServiceConfigs.Informer().HasSynced)
	}
	resync := opts.ResyncPeriod
	if _, err := serviceInformer.Informer().AddEventHandlerWithOptions(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.enqueueService(obj) },
		UpdateFunc: c.onServiceUpdate,
		DeleteFunc: func(obj any) { c.enqueueService(obj) },
	}, cache.HandlerOptions{Logger: &logger, ResyncPeriod: &resync}); err != nil {
		return nil, fmt.Errorf("adding the Service event handler: %w", err)
	}
	if _, err := podInformer.Informer().AddEventHandlerWithOptions(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.enqueuePodServices(obj.(*v1.Pod)) },
		UpdateFunc: c.onPodUpdate,
		DeleteFunc: c.onPodDelete,
	}, cache.HandlerOptions{Logger: &logger}); err != nil {
		return nil, fmt.Errorf("adding the Pod event handler: %w", err)
	}
	return c, nil
}

// newRateLimiter retries a failing Service from 100ms up to 5 minutes, and
// caps the overall retry rate so that many failing Services cannot flood
// the CLB API.
func newRateLimiter() workqueue.TypedRateLimiter[string] {
	return workqueue.NewTypedMaxOfRateLimiter(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](100*time.Millisecond, 5*time.Minute),
		&workqueue.TypedBucketRateLimiter[string]{Limiter: rate.NewLimiter(rate.Limit(10), 100)},
	)
}

// Run processes Services until ctx is cancelled, then stops taking work,
// lets in-flight syncs finish (within ShutdownGracePeriod) and returns.
func (c *Controller) Run(ctx context.Context, workers int) error {
	defer utilruntime.HandleCrashWithContext(ctx)
	logger := klog.FromContext(ctx)
	logger.Info("Starting clb-direct controller", "workers", workers)
	if !cache.WaitForNamedCacheSyncWithContext(ctx, c.cachesSynced...) {
		c.queue.ShutDown()
		return errors.New("caches did not sync before the controller was stopped")
	}
	// In-flight syncs get a context of their own so that a shutdown does not
	// cut a cloud write and its bookkeeping in half.
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for c.processNextWorkItem(workCtx) {
			}
		})
	}
	<-ctx.Done()
	logger.Info("Stopping clb-direct controller: finishing in-flight syncs", "gracePeriod", c.opts.ShutdownGracePeriod)
	c.stopping.Store(true)
	deadline := time.AfterFunc(c.opts.ShutdownGracePeriod, cancelWork)
	defer deadline.Stop()
	c.queue.ShutDownWithDrain()
	wg.Wait()
	logger.Info("Stopped clb-direct controller")
	return nil
}

func (c *Controller) processNextWorkItem(ctx context.Context) bool {
	key, shutdown := c.queue.Get()
	if shutdown {
		return false
	}
	defer c.queue.Done(key)
	// After shutdown the queue still hands out what it holds; those keys
	// are left for the next leader, which lists everything anyway.
	if c.stopping.Load() {
		return true
	}
	err := c.syncService(ctx, key)
	var pending *requeueAfter
	switch {
	case err == nil:
		c.queue.Forget(key)
	case errors.As(err, &pending):
		c.queue.Forget(key)
		c.queue.AddAfter(key, pending.after)
		klog.FromContext(ctx).V(2).Info("Syncing again soon", "service", key, "after", pending.after, "reason", pending.reason)
	case isSlowRetry(err):
		// Retrying soon cannot help: the user has been told (event), so
		// come back slowly instead of hot-looping on the API.
		c.queue.Forget(key)
		c.queue.AddAfter(key, c.opts.TerminalRetryDelay)
		utilruntime.HandleErrorWithContext(ctx, err, "Syncing Service failed; retrying slowly", "service", key, "retryAfter", c.opts.TerminalRetryDelay)
	default:
		c.queue.AddRateLimited(key)
		utilruntime.HandleErrorWithContext(ctx, err, "Syncing Service failed; retrying", "service", key, "requeues", c.queue.NumRequeues(key))
	}
	return true
}

// isSlowRetry reports whether err needs a person to act before a retry can
// succeed.
func isSlowRetry(err error) bool {
	switch cloud.KindOf(err) {
	case cloud.KindTerminal, cloud.KindQuota:
		return true
	}
	return false
}

func (c *Controller) enqueueService(obj any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		utilruntime.HandleError(fmt.Errorf("computing the key of %T: %w", obj, err))
		return
	}
	c.queue.Add(key)
}

func (c *Controller) onServiceUpdate(oldObj, newObj any) {
	oldSvc, newSvc := oldObj.(*v1.Service), newObj.(*v1.Service)
	// A resync hands the cached object as both old and new; a real update
	// brings a new resource version (the fake clientset leaves it empty).
	if oldObj == newObj || oldSvc.ResourceVersion != "" && oldSvc.ResourceVersion == newSvc.ResourceVersion {
		// A periodic resync: the next sync re-reads the CLB to repair drift.
		key, err := cache.MetaNamespaceKeyFunc(newSvc)
		if err == nil {
			c.resyncDue.Store(key, true)
		}
	}
	c.enqueueService(newSvc)
}

func (c *Controller) onPodUpdate(oldObj, newObj any) {
	oldPod, newPod := oldObj.(*v1.Pod), newObj.(*v1.Pod)
	if !podChangeMatters(oldPod, newPod) {
		return
	}
	c.enqueuePodServices(newPod)
	if !labels.Equals(oldPod.Labels, newPod.Labels) {
		c.enqueuePodServices(oldPod)
	}
}

func (c *Controller) onPodDelete(obj any) {
	pod, ok := obj.(*v1.Pod)
	if !ok {
		tombstone, ok := obj.(cache.DeletedFinalStateUnknown)
		if !ok {
			utilruntime.HandleError(fmt.Errorf("unexpected object in Pod delete event: %T", obj))
			return
		}
		if pod, ok = tombstone.Obj.(*v1.Pod); !ok {
			utilruntime.HandleError(fmt.Errorf("unexpected object in Pod tombstone: %T", tombstone.Obj))
			return
		}
	}
	c.enqueuePodServices(pod)
}

// enqueuePodServices queues the Services whose selector matches the Pod,
// paced per Service.
func (c *Controller) enqueuePodServices(pod *v1.Pod) {
	for _, svc := range c.servicesSelecting(pod) {
		key, err := cache.MetaNamespaceKeyFunc(svc)
		if err != nil {
			utilruntime.HandleError(fmt.Errorf("computing the key of Service %s/%s: %w", svc.Namespace, svc.Name, err))
			continue
		}
		if after, queue := c.podEvents.delay(key); queue {
			c.queue.AddAfter(key, after)
		}
	}
}

// servicesSelecting finds the Services whose selector matches the Pod
// through the selector index rather than a scan of all Services.
func (c *Controller) servicesSelecting(pod *v1.Pod) []*v1.Service {
	podLabels := labels.Set(pod.Labels)
	seen := map[string]bool{}
	var out []*v1.Service
	for k, v := range pod.Labels {
		objs, err := c.serviceIndexer.ByIndex(selectorIndex, selectorPairKey(pod.Namespace, k, v))
		if err != nil {
			utilruntime.HandleError(fmt.Errorf("looking up Services of Pod %s/%s: %w", pod.Namespace, pod.Name, err))
			return nil
		}
		for _, obj := range objs {
			svc := obj.(*v1.Service)
			if seen[svc.Name] || !labels.SelectorFromValidatedSet(svc.Spec.Selector).Matches(podLabels) {
				continue
			}
			seen[svc.Name] = true
			out = append(out, svc)
		}
	}
	return out
}

// unsupportedReason says why a cluster of this version cannot have direct
// access, or "" when it can (or the version was not given).
func unsupportedReason(gitVersion string) string {
	if gitVersion == "" {
		return ""
	}
	ok, err := directAccessSupported(gitVersion)
	switch {
	case err != nil:
		return err.Error()
	case !ok:
		return fmt.Sprintf("Kubernetes %s is too old: CLB direct access needs %s or newer", gitVersion, minDirectAccessVersion)
	}
	return ""
}

// enqueueServicesWhere queues every Service that matches: for the rare
// events that concern many Services at once (a Node, the GlobalRouter
// opt-in).
func (c *Controller) enqueueServicesWhere(match func(*v1.Service) bool) {
	svcs, err := c.serviceLister.List(labels.Everything())
	if err != nil {
		utilruntime.HandleError(fmt.Errorf("listing Services: %w", err))
		return
	}
	for _, svc := range svcs {
		if match(svc) {
			c.enqueueService(svc)
		}
	}
}

// enqueueDirectAccessServices queues the direct-access Services: the
// GlobalRouter switch concerns them all.
func (c *Controller) enqueueDirectAccessServices() { c.enqueueServicesWhere(c.wantsDirectAccess) }

// enqueueClassicServices queues the Services in classic mode: every Node
// change concerns all of their CLBs.
func (c *Controller) enqueueClassicServices() {
	c.enqueueServicesWhere(func(svc *v1.Service) bool {
		return c.handlesClass(svc) && svc.Spec.Type == v1.ServiceTypeLoadBalancer && !c.wantsDirectAccess(svc)
	})
}

// nodeChangeMatters reports whether a Node update can change whether and
// how it is a classic-mode backend; status heartbeats cannot.
func nodeChangeMatters(oldNode, newNode *v1.Node) bool {
	return nodeTakesTraffic(oldNode) != nodeTakesTraffic(newNode) || oldNode.Spec.ProviderID != newNode.Spec.ProviderID
}

// globalRouterAllowed reads the cluster's opt-in for GlobalRouter Pods.
func (c *Controller) globalRouterAllowed(ctx context.Context) bool {
	if c.opts.ServiceControllerConfig == nil {
		return false
	}
	cm, err := c.opts.ServiceControllerConfig.Lister().ConfigMaps(ServiceControllerConfigNamespace).Get(ServiceControllerConfigName)
	if err != nil {
		return false
	}
	allowed, err := globalRouteDirectAccess(cm)
	if err != nil {
		klog.FromContext(ctx).Info("Ignoring an invalid GlobalRouter opt-in", "err", err)
	}
	return allowed
}

// serviceSelectorIndexFunc indexes a Service under one pair of its selector
// (the smallest key): a Pod the Service selects carries that pair, so
// looking up each of a Pod's labels finds every candidate exactly once.
func serviceSelectorIndexFunc(obj any) ([]string, error) {
	svc, ok := obj.(*v1.Service)
	if !ok || len(svc.Spec.Selector) == 0 {
		return nil, nil
	}
	first := ""
	for k := range svc.Spec.Selector {
		if first == "" || k < first {
			first = k
		}
	}
	return []string{selectorPairKey(svc.Namespace, first, svc.Spec.Selector[first])}, nil
}

func selectorPairKey(namespace, key, value string) string {
	return namespace + "/" + key + "=" + value
}

// podChangeMatters reports whether an update can change the Pod's place in
// any Service's desired state; status heartbeats and the like cannot.
func podChangeMatters(oldPod, newPod *v1.Pod) bool {
	return !labels.Equals(oldPod.Labels, newPod.Labels) ||
		oldPod.Status.PodIP != newPod.Status.PodIP ||
		oldPod.Status.Phase != newPod.Status.Phase ||
		(oldPod.DeletionTimestamp == nil) != (newPod.DeletionTimestamp == nil) ||
		isBackendCandidate(oldPod) != isBackendCandidate(newPod)
}
