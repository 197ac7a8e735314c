package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"clb-direct/cloud"
	"clb-direct/tkeconfig"
)

// Event reasons, for users to filter on.
const (
	ReasonInvalidConfig    = "InvalidConfiguration"
	ReasonBackendProblem   = "BackendNotRegistrable"
	ReasonListenerConflict = "ListenerConflict"
	ReasonQuotaExceeded    = "QuotaExceeded"
	ReasonNetworkMode      = "NetworkModeNotSupported"
	ReasonUnsupported      = "DirectAccessUnsupported"
	ReasonSwitchTimeout    = "ModeSwitchTimeout"
	ReasonCreatedCLB       = "CreatedLoadBalancer"
	ReasonSyncedCLB        = "SyncedLoadBalancer"
	ReasonDeletedCLB       = "DeletedLoadBalancer"
	ReasonSyncFailed       = "SyncLoadBalancerFailed"
	ReasonCleanupFailed    = "CleanupLoadBalancerFailed"
	actionSync             = "Sync"
	actionCleanup          = "Cleanup"
	maxCLBNameLength       = 60
	clientTokenPrefix      = "clbdirect-"
	loadBalancerNamePrefix = "clbdirect"
)

// observedCache remembers each Service's CLB as last read or written, so a
// sync where nothing changed makes no cloud call at all. An entry is dropped
// after any failed write (the CLB may be in any state) and re-read on the
// periodic resync (someone may have changed the CLB behind our back).
type observedCache struct {
	mu      sync.Mutex
	entries map[string]observedEntry
}

// observedEntry remembers which Service the state belongs to: a Service
// deleted and created again under the same name is another Service.
type observedEntry struct {
	serviceUID types.UID
	state      *ObservedState
}

func (o *observedCache) get(key string, serviceUID types.UID) *ObservedState {
	o.mu.Lock()
	defer o.mu.Unlock()
	if e, ok := o.entries[key]; ok && e.serviceUID == serviceUID {
		return e.state
	}
	return nil
}

func (o *observedCache) set(key string, serviceUID types.UID, s *ObservedState) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.entries[key] = observedEntry{serviceUID: serviceUID, state: s}
}

// clone copies the state deeply enough that changing the copy's listeners
// and backends leaves the original as it was.
func (s *ObservedState) clone() *ObservedState {
	out := &ObservedState{LoadBalancer: s.LoadBalancer, Listeners: slices.Clone(s.Listeners), Backends: make(map[string][]cloud.Backend, len(s.Backends)),
		auditListenersNext: s.auditListenersNext, audited: s.audited}
	for id, backends := range s.Backends {
		out.Backends[id] = slices.Clone(backends)
	}
	return out
}

// keyedLocks serialises writers per CLB: Services sharing a user's CLB
// are synced by different workers.
type keyedLocks struct {
	mu    sync.Mutex
	locks map[string]*refMutex
}

type refMutex struct {
	sync.Mutex
	users int
}

// lock locks id and returns the unlock.
func (k *keyedLocks) lock(id string) func() {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*refMutex{}
	}
	m := k.locks[id]
	if m == nil {
		m = &refMutex{}
		k.locks[id] = m
	}
	m.users++
	k.mu.Unlock()
	m.Lock()
	return func() {
		m.Unlock()
		k.mu.Lock()
		if m.users--; m.users == 0 {
			delete(k.locks, id)
		}
		k.mu.Unlock()
	}
}

func (o *observedCache) forget(key string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.entries, key)
}

func (c *Controller) syncService(ctx context.Context, key string) (err error) {
	start := c.opts.Clock.Now()
	logger := klog.LoggerWithValues(klog.FromContext(ctx), "service", key)
	ctx = klog.NewContext(ctx, logger)
	// invalid: the Service's configuration is bad, and nothing was done.
	invalid := false
	defer func() {
		duration := c.opts.Clock.Since(start)
		c.opts.Metrics.observeSync(duration, err, invalid)
		logger.V(4).Info("Finished syncing service", "duration", duration)
	}()

	namespace, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		// A malformed key can never succeed; dropping it is all we can do.
		logger.Error(err, "Dropping malformed queue key")
		return nil
	}
	svc, err := c.serviceLister.Services(namespace).Get(name)
	if apierrors.IsNotFound(err) {
		c.observed.forget(key)
		c.reported.Delete(key)
		c.podEvents.forget(key)
		return nil
	}
	if err != nil {
		return fmt.Errorf("getting Service %s from the cache: %w", key, err)
	}

	if !c.wantsLoadBalancer(svc) {
		return c.cleanupIfOurs(ctx, key, svc)
	}
	cfg, err := parseServiceConfig(svc)
	if err != nil {
		// Whatever the user meant, guessing could drop traffic: leave the
		// CLB exactly as it is until the annotations are fixed. The fix is
		// a Service update, which queues the Service again.
		c.reportOnce(key, svc, v1.EventTypeWarning, ReasonInvalidConfig, err.Error()+"; the load balancer is left unchanged")
		logger.Info("Invalid Service configuration; leaving the load balancer unchanged", "err", err)
		invalid = true
		return nil
	}
	if !cfg.DirectAccess && c.opts.Nodes == nil {
		// Without Nodes there is no classic mode to fall back to.
		return c.cleanupIfOurs(ctx, key, svc)
	}
	if cfg.DirectAccess && c.unsupported != "" {
		c.reportOnce(key, svc, v1.EventTypeWarning, ReasonUnsupported, c.unsupported+"; the load balancer is left unchanged")
		return nil
	}
	tsc, err := c.serviceConfig(svc, cfg)
	if err != nil {
		// As with a bad annotation: tell the user, leave the CLB as it is;
		// fixing or creating the config queues the Service again.
		c.reportOnce(key, svc, v1.EventTypeWarning, ReasonInvalidConfig, err.Error()+"; the load balancer is left unchanged")
		logger.Info("Invalid TkeServiceConfig; leaving the load balancer unchanged", "err", err)
		invalid = true
		return nil
	}
	err = c.ensure(ctx, key, svc, cfg, tsc)
	var pending *requeueAfter
	switch {
	case err != nil && !errors.As(err, &pending):
		c.reportSyncFailure(key, svc, err)
	case err == nil:
		c.reported.Delete(key + "/failed")
	}
	return err
}

// requestIDs matches the RequestId in an API error's text, which differs
// on every call.
var requestIDs = regexp.MustCompile(` \(RequestId [^)]*\)`)

// reportSyncFailure events a failed sync. A failure only a person can fix
// (retried every TerminalRetryDelay) stands until they do, so, like an
// invalid annotation, it is evented once: the same failure again, whatever
// its RequestId, is not repeated on every slow retry.
func (c *Controller) reportSyncFailure(key string, svc *v1.Service, err error) {
	msg := fmt.Sprintf("%s (%s error, will retry)", err, cloud.KindOf(err))
	if !isSlowRetry(err) {
		c.reported.Delete(key + "/failed")
		c.recorder.Eventf(svc, nil, v1.EventTypeWarning, ReasonSyncFailed, actionSync, "%s", msg)
		return
	}
	standing := ReasonSyncFailed + requestIDs.ReplaceAllString(msg, "")
	if last, ok := c.reported.Load(key + "/failed"); ok && last == standing {
		return
	}
	c.reported.Store(key+"/failed", standing)
	c.recorder.Eventf(svc, nil, v1.EventTypeWarning, ReasonSyncFailed, actionSync, "%s", msg)
}

func (c *Controller) handlesClass(svc *v1.Service) bool {
	if svc.Spec.LoadBalancerClass == nil {
		return c.opts.LoadBalancerClass == ""
	}
	return *svc.Spec.LoadBalancerClass == c.opts.LoadBalancerClass
}

// wantsLoadBalancer reports whether the Service is a LoadBalancer of our
// class that is not being deleted: one whose CLB the controller keeps.
func (c *Controller) wantsLoadBalancer(svc *v1.Service) bool {
	return c.handlesClass(svc) && svc.Spec.Type == v1.ServiceTypeLoadBalancer && svc.DeletionTimestamp == nil
}

// ensure makes the Service's CLB match its Pods.
func (c *Controller) ensure(ctx context.Context, key string, svc *v1.Service, cfg ServiceConfig, tsc *tkeconfig.TkeServiceConfig) error {
	svc, err := c.addFinalizer(ctx, svc)
	if err != nil {
		return err
	}
	pods, err := c.selectedPods(svc)
	if err != nil {
		return err
	}
	var desired DesiredState
	if cfg.DirectAccess {
		_, networkProblem, blocked := checkNetworkModes(pods, c.globalRouterAllowed(ctx))
		if blocked {
			c.reportOnce(key+"/network", svc, v1.EventTypeWarning, ReasonNetworkMode, networkProblem+"; the load balancer is left unchanged")
			return nil
		}
		if networkProblem != "" {
			c.reportOnce(key+"/network", svc, v1.EventTypeWarning, ReasonNetworkMode, networkProblem)
		} else {
			c.reported.Delete(key + "/network")
		}
		desired = buildDesiredState(svc, cfg, pods)
	} else {
		nodes, err := c.opts.Nodes.Lister().List(labels.Everything())
		if err != nil {
			return fmt.Errorf("listing Nodes: %w", err)
		}
		desired = buildClassicDesiredState(svc, cfg, nodes, readyEndpointNodes(pods))
	}
	desired = withSettings(desired, tsc)
	if len(desired.Problems) > 0 {
		c.reportOnce(key, svc, v1.EventTypeWarning, ReasonBackendProblem, strings.Join(desired.Problems, "; "))
	} else {
		c.reported.Delete(key)
	}

	svc, observed, err := c.syncLoadBalancer(ctx, key, svc, cfg, desired, pods)
	var pending *requeueAfter
	if err != nil && !errors.As(err, &pending) {
		return err
	}
	// A Service that moved to another CLB (tke-existed-lbid set, changed or
	// removed) releases the ones it had now that the new one serves; they
	// stay recorded on the Service until then, so no error loses one.
	if svc, err = c.releasePrevious(ctx, svc, observed.LoadBalancer.ID); err != nil {
		return err
	}
	if err := c.patchIngress(ctx, svc, observed.LoadBalancer.VIPs); err != nil {
		return err
	}
	if cfg.AutoServiceConfig {
		// Last: a failure here must not hold back the status or a release.
		if err := c.syncAutoConfig(ctx, svc, observed); err != nil {
			c.reportOnce(key+"/auto", svc, v1.EventTypeWarning, ReasonInvalidConfig, err.Error())
			return err
		}
	}
	if pending != nil {
		return pending
	}
	return nil
}

// releasePrevious releases the CLBs recorded as the Service's previous ones
// (all but current), then forgets them.
func (c *Controller) releasePrevious(ctx context.Context, svc *v1.Service, current string) (*v1.Service, error) {
	previous := previousLoadBalancers(svc)
	if len(previous) == 0 {
		return svc, nil
	}
	for _, id := range previous {
		if id == current {
			continue
		}
		if err := c.release(ctx, svc, id); err != nil {
			return svc, err
		}
	}
	patch := map[string]any{"metadata": map[string]any{"annotations": map[string]any{AnnotationPreviousLoadBalancers: nil}}}
	return c.patchService(ctx, svc, patch, "")
}

// previousLoadBalancers reads the CLBs the Service still has to release.
func previousLoadBalancers(svc *v1.Service) []string {
	v := svc.Annotations[AnnotationPreviousLoadBalancers]
	if v == "" {
		return nil
	}
	return strings.Split(v, ",")
}

// syncLoadBalancer brings the Service's CLB to the desired state and
// returns it as it now is, with the Service as last patched. pods are the Service's, for the registration
// latency metric.
func (c *Controller) syncLoadBalancer(ctx context.Context, key string, svc *v1.Service, cfg ServiceConfig, desired DesiredState, pods []*v1.Pod) (*v1.Service, *ObservedState, error) {
	logger := klog.FromContext(ctx)
	if cfg.ExistingLoadBalancerID != "" {
		// Several Services may share the user's CLB: one writer at a time.
		defer c.loadBalancerLocks.lock(cfg.ExistingLoadBalancerID)()
	}
	observed, err := c.observe(ctx, key, svc, cfg)
	if err != nil {
		return nil, nil, err
	}
	// Record the CLB on the Service before changing anything on it, so the
	// CLB is found again (and cleaned up) whatever happens next.
	if svc, err = c.setLoadBalancerAnnotation(ctx, svc, observed.LoadBalancer.ID); err != nil {
		return nil, nil, err
	}

	if desired.Bandwidth != nil && !observed.LoadBalancer.OwnedBy(c.opts.ClusterID, string(svc.UID)) {
		// The bandwidth is the CLB's, shared by whoever uses it: only the
		// owner sets it.
		c.reportOnce(key+"/bandwidth", svc, v1.EventTypeWarning, ReasonInvalidConfig, fmt.Sprintf(
			"internetMaxBandwidthOut of TkeServiceConfig %s is ignored: CLB %s is not this Service's own", cfg.TkeServiceConfig, observed.LoadBalancer.ID))
		desired.Bandwidth = nil
	}
	quota, matters, err := c.quotas.get(ctx, c, desired)
	if err != nil {
		return nil, nil, err
	}
	var quotaProblems []string
	if matters {
		desired, quotaProblems = fitQuota(desired, *observed, svc.UID, quota)
	}
	if len(quotaProblems) > 0 {
		c.reportOnce(key+"/quota", svc, v1.EventTypeWarning, ReasonQuotaExceeded, strings.Join(quotaProblems, "; "))
	} else {
		c.reported.Delete(key + "/quota")
	}
	plan := planChanges(svc.UID, desired, *observed)
	switching, err := c.holdSwitch(ctx, key, svc, cfg.DirectAccess, observed, desired, &plan)
	if err != nil {
		return nil, nil, err
	}
	if len(plan.Conflicts) > 0 {
		c.recorder.Eventf(svc, nil, v1.EventTypeWarning, ReasonListenerConflict, actionSync,
			"CLB %s already has listeners on %s that this Service did not create; those ports are left alone",
			observed.LoadBalancer.ID, listenerKeys(plan.Conflicts))
	}
	if !plan.Empty() {
		logger.V(2).Info("Applying plan", "loadBalancer", observed.LoadBalancer.ID,
			"createListeners", len(plan.CreateListeners), "register", len(plan.Register),
			"modifyWeight", len(plan.ModifyWeight), "deregister", len(plan.Deregister), "deleteListeners", len(plan.DeleteListeners))
		if err := c.applyPlan(ctx, observed, plan, c.registrationObserver(pods)); err != nil {
			c.observed.forget(key)
			if cloud.KindOf(err) == cloud.KindQuota {
				c.quotas.invalidate()
			}
			return nil, nil, err
		}
		c.recorder.Eventf(svc, nil, v1.EventTypeNormal, ReasonSyncedCLB, actionSync,
			"CLB %s: %d listeners created, %d backends registered, %d re-weighted, %d deregistered, %d listeners deleted",
			observed.LoadBalancer.ID, len(plan.CreateListeners), len(plan.Register), len(plan.ModifyWeight), len(plan.Deregister), len(plan.DeleteListeners))
	}
	c.observed.set(key, svc.UID, observed)
	if !plan.Empty() && c.opts.BackendsChanged != nil {
		// After the cache holds the new state: the readiness worker reads it.
		c.opts.BackendsChanged()
	}
	if switching {
		return svc, observed, &requeueAfter{after: switchPollInterval,
			reason: "switching modes: the previous backends stay until the new ones are healthy"}
	}
	return svc, observed, nil
}

// selectedPods lists the Pods the Service's selector matches. A Service
// without a selector selects nothing: its endpoints are managed by hand, and
// direct access has no Pods to register.
func (c *Controller) selectedPods(svc *v1.Service) ([]*v1.Pod, error) {
	if len(svc.Spec.Selector) == 0 {
		return nil, nil
	}
	pods, err := c.podLister.Pods(svc.Namespace).List(labels.SelectorFromValidatedSet(svc.Spec.Selector))
	if err != nil {
		return nil, fmt.Errorf("listing the Pods of Service %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	return pods, nil
}

// observe returns the Service's CLB with its listeners and backends, from
// the cache when it is trustworthy, otherwise from the cloud, creating the
// CLB if there is none.
func (c *Controller) observe(ctx context.Context, key string, svc *v1.Service, cfg ServiceConfig) (*ObservedState, error) {
	_, resync := c.resyncDue.LoadAndDelete(key)
	cached := c.observed.get(key, svc.UID)
	recordedID := svc.Annotations[AnnotationLoadBalancerID]
	// A CLB shared with other Services (the user's) is read on every sync:
	// their listeners change without this Service's cache knowing.
	if cached != nil && cfg.ExistingLoadBalancerID == "" && cached.LoadBalancer.OwnedBy(c.opts.ClusterID, string(svc.UID)) &&
		(recordedID == "" || recordedID == cached.LoadBalancer.ID) {
		// Resyncs can come closer together than their period (a relist
		// looks like one too): a CLB is audited at most once per half
		// period, so a resync costs at most one read per CLB.
		if !resync || c.opts.Clock.Since(cached.audited) < c.opts.ResyncPeriod/2 {
			// A copy: apply changes it as writes succeed, while the
			// readiness worker reads the cached one.
			return cached.clone(), nil
		}
		audited, err := c.audit(ctx, cached)
		if err == nil || !errors.Is(err, errListenersDrifted) && !cloud.IsNotFound(err) {
			return audited, err
		}
		klog.FromContext(ctx).Info("The CLB changed behind our back; reading it whole", "loadBalancer", cached.LoadBalancer.ID, "reason", err)
	}
	c.observed.forget(key)
	var lb cloud.LoadBalancer
	var err error
	if cfg.ExistingLoadBalancerID != "" {
		lb, err = c.existingLoadBalancer(ctx, cfg.ExistingLoadBalancerID)
	} else {
		var found bool
		lb, found, err = c.findLoadBalancer(ctx, svc)
		if err == nil && found && !lb.OwnedBy(c.opts.ClusterID, string(svc.UID)) {
			// The recorded CLB is a user's the Service no longer names: it
			// goes back to a CLB of its own, and releases the user's (its
			// listeners there) once that one serves.
			lb, found, err = c.findOwnLoadBalancer(ctx, svc)
		}
		if err == nil && !found {
			lb, err = c.createLoadBalancer(ctx, svc, cfg)
			if err != nil {
				return nil, err
			}
			return &ObservedState{LoadBalancer: lb, Backends: map[string][]cloud.Backend{}}, nil
		}
	}
	if err != nil {
		return nil, err
	}
	listeners, err := c.cloud.DescribeListeners(ctx, lb.ID)
	if err != nil {
		return nil, fmt.Errorf("reading the listeners of CLB %s: %w", lb.ID, err)
	}
	backends, err := c.cloud.DescribeBackends(ctx, lb.ID)
	if err != nil {
		return nil, fmt.Errorf("reading the backends of CLB %s: %w", lb.ID, err)
	}
	return &ObservedState{LoadBalancer: lb, Listeners: listeners, Backends: backends}, nil
}

// errListenersDrifted: the CLB's listeners are not those last seen.
var errListenersDrifted = errors.New("its listeners are not those last seen")

// audit is a resync's read of a CLB of our own: one call, alternating
// between the targets (what carries traffic) and the listeners' settings,
// so that a resync costs one read per CLB and each half is checked every
// second period. Either read fails with NotFound when the CLB is gone, and
// with errListenersDrifted when a listener came or went: then the caller
// reads the CLB whole.
func (c *Controller) audit(ctx context.Context, cached *ObservedState) (*ObservedState, error) {
	s := cached.clone()
	id := s.LoadBalancer.ID
	lastSeen := sortedListenerIDs(s.Listeners)
	if s.auditListenersNext {
		listeners, err := c.cloud.DescribeListeners(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("reading the listeners of CLB %s: %w", id, err)
		}
		if !slices.Equal(sortedListenerIDs(listeners), lastSeen) {
			return nil, errListenersDrifted
		}
		s.Listeners = listeners
	} else {
		backends, err := c.cloud.DescribeBackends(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("reading the backends of CLB %s: %w", id, err)
		}
		// DescribeBackends has an entry for every listener, even empty.
		if !slices.Equal(slices.Sorted(maps.Keys(backends)), lastSeen) {
			return nil, errListenersDrifted
		}
		s.Backends = backends
	}
	s.auditListenersNext = !s.auditListenersNext
	s.audited = c.opts.Clock.Now()
	return s, nil
}

func sortedListenerIDs(listeners []cloud.Listener) []string {
	ids := make([]string, len(listeners))
	for i, l := range listeners {
		ids[i] = l.ID
	}
	slices.Sort(ids)
	return ids
}

// existingLoadBalancer looks up the user's CLB. Its absence is the user's
// to fix (a typo, a deleted CLB): nothing is created in its place.
func (c *Controller) existingLoadBalancer(ctx context.Context, id string) (cloud.LoadBalancer, error) {
	lb, found, err := c.lookupLoadBalancer(ctx, id)
	if err != nil {
		return cloud.LoadBalancer{}, err
	}
	if !found {
		return cloud.LoadBalancer{}, &cloud.Error{Action: "DescribeLoadBalancers", Code: cloud.CodeLBNotFound, Kind: cloud.KindTerminal,
			Message: fmt.Sprintf("CLB %s named by annotation %s does not exist; nothing is created in its place", id, AnnotationExistingLoadBalancer)}
	}
	return lb, nil
}

// lookupLoadBalancer reads one CLB by ID; one that does not exist is not
// an error (the API answers either an empty list or NotFound).
func (c *Controller) lookupLoadBalancer(ctx context.Context, id string) (cloud.LoadBalancer, bool, error) {
	lbs, err := c.cloud.DescribeLoadBalancers(ctx, cloud.LoadBalancerQuery{IDs: []string{id}})
	if err != nil && !cloud.IsNotFound(err) {
		return cloud.LoadBalancer{}, false, fmt.Errorf("looking up CLB %s: %w", id, err)
	}
	if len(lbs) == 0 {
		return cloud.LoadBalancer{}, false, nil
	}
	return lbs[0], true, nil
}

// findLoadBalancer finds the Service's CLB by the ID it recorded, or else by
// our ownership tags (a CLB created before its ID could be recorded).
func (c *Controller) findLoadBalancer(ctx context.Context, svc *v1.Service) (cloud.LoadBalancer, bool, error) {
	if id := svc.Annotations[AnnotationLoadBalancerID]; id != "" {
		lb, found, err := c.lookupLoadBalancer(ctx, id)
		if err != nil || found {
			return lb, found, err
		}
		klog.FromContext(ctx).Info("The Service's CLB is gone; looking for another one of ours, or creating one", "loadBalancer", id)
	}
	return c.findOwnLoadBalancer(ctx, svc)
}

// findOwnLoadBalancer finds a CLB carrying the Service's ownership tags.
func (c *Controller) findOwnLoadBalancer(ctx context.Context, svc *v1.Service) (cloud.LoadBalancer, bool, error) {
	lbs, err := c.cloud.DescribeLoadBalancers(ctx, cloud.LoadBalancerQuery{Tags: c.ownershipTags(svc)})
	if err != nil {
		return cloud.LoadBalancer{}, false, fmt.Errorf("looking up the CLB of Service %s/%s by tags: %w", svc.Namespace, svc.Name, err)
	}
	if len(lbs) == 0 {
		return cloud.LoadBalancer{}, false, nil
	}
	if len(lbs) > 1 {
		klog.FromContext(ctx).Info("Several CLBs carry this Service's ownership tags; using the first", "loadBalancers", len(lbs), "using", lbs[0].ID)
	}
	return lbs[0], true, nil
}

func (c *Controller) ownershipTags(svc *v1.Service) map[string]string {
	return map[string]string{
		cloud.TagCreatedBy:   cloud.CreatedByValue,
		cloud.TagClusterID:   c.opts.ClusterID,
		cloud.TagServiceUUID: string(svc.UID),
	}
}

func (c *Controller) createLoadBalancer(ctx context.Context, svc *v1.Service, cfg ServiceConfig) (cloud.LoadBalancer, error) {
	spec := cloud.LoadBalancerSpec{
		Name:        loadBalancerName(c.opts.ClusterID, svc),
		SubnetID:    cfg.InternalSubnetID,
		Tags:        c.ownershipTags(svc),
		ClientToken: clientToken(svc),
	}
	if cfg.ExtensiveParameters != "" {
		// Validated when the annotation was parsed.
		if err := json.Unmarshal([]byte(cfg.ExtensiveParameters), &spec.ExtensiveParameters); err != nil {
			return cloud.LoadBalancer{}, fmt.Errorf("annotation %s: %w", AnnotationExtensiveParameters, err)
		}
	}
	lb, err := c.cloud.CreateLoadBalancer(ctx, spec)
	if err != nil && cfg.ExtensiveParameters != "" && parametersRefused(err) {
		// The user's parameters go to the API as they are: say where to
		// look, or the Warning names a parameter without saying whose.
		return cloud.LoadBalancer{}, fmt.Errorf("creating a CLB for Service %s/%s: the API refused its parameters; check annotation %s, whose parameters it was given as they are: %w",
			svc.Namespace, svc.Name, AnnotationExtensiveParameters, err)
	}
	if err != nil {
		return cloud.LoadBalancer{}, fmt.Errorf("creating a CLB for Service %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	klog.FromContext(ctx).Info("Created CLB", "loadBalancer", lb.ID, "vips", lb.VIPs)
	c.recorder.Eventf(svc, nil, v1.EventTypeNormal, ReasonCreatedCLB, actionSync, "Created CLB %s", lb.ID)
	return lb, nil
}

// parametersRefused reports whether the API refused a call for its
// parameters: an unknown name, a wrong type or a value out of range.
func parametersRefused(err error) bool {
	var ce *cloud.Error
	if !errors.As(err, &ce) || ce.Kind != cloud.KindTerminal {
		return false
	}
	switch {
	case ce.Code == cloud.CodeInvalidParameter, ce.Code == cloud.CodeUnknownParameter, ce.Code == cloud.CodeMissingParameter,
		ce.Code == cloud.CodeInvalidParameterVal, strings.HasPrefix(ce.Code, cloud.CodeInvalidParameterVal+"."):
		return true
	}
	return false
}

// loadBalancerName names a CLB after its cluster and Service so people can
// tell whose it is in the console.
func loadBalancerName(clusterID string, svc *v1.Service) string {
	name := fmt.Sprintf("%s_%s_%s_%s", loadBalancerNamePrefix, clusterID, svc.Namespace, svc.Name)
	if len(name) > maxCLBNameLength {
		name = name[:maxCLBNameLength]
	}
	return name
}

// clientToken makes a retried CreateLoadBalancer (after a timeout, or a
// crash before the ID was recorded) return the CLB the first attempt
// created. It depends on the CLB the Service had before, so that a CLB
// deleted behind our back is replaced by a new one, not "found" again.
func clientToken(svc *v1.Service) string {
	sum := sha256.Sum256([]byte(string(svc.UID) + "/" + svc.Annotations[AnnotationLoadBalancerID]))
	return clientTokenPrefix + hex.EncodeToString(sum[:16])
}

// apply carries out the plan, updating observed as each write succeeds. A
// listener whose new backends failed to register keeps its old ones: never
// leave a port with fewer serving backends because of an error.
func (c *Controller) apply(ctx context.Context, observed *ObservedState, plan Plan) error {
	return c.applyPlan(ctx, observed, plan, nil)
}

// applyPlan is apply that also calls registered, if not nil, for each
// backend as soon as the call that registered it succeeded.
func (c *Controller) applyPlan(ctx context.Context, observed *ObservedState, plan Plan, registered func(cloud.Backend)) error {
	lbID := observed.LoadBalancer.ID
	var errs []error
	ids := make(map[ListenerKey]string, len(observed.Listeners)+len(plan.CreateListeners))
	for _, l := range observed.Listeners {
		ids[ListenerKey{Protocol: l.Protocol, Port: l.Port}] = l.ID
	}
	failed := map[ListenerKey]bool{}

	for _, spec := range plan.CreateListeners {
		key := ListenerKey{Protocol: spec.Protocol, Port: spec.Port}
		l, err := c.cloud.CreateListener(ctx, lbID, spec)
		if err != nil {
			failed[key] = true
			errs = append(errs, fmt.Errorf("creating listener %s on CLB %s: %w", key, lbID, err))
			continue
		}
		observed.Listeners = append(observed.Listeners, l)
		ids[key] = l.ID
	}

	if plan.Bandwidth != nil {
		if err := c.cloud.ModifyLoadBalancerAttributes(ctx, lbID, cloud.LoadBalancerAttributes{InternetMaxBandwidthOut: plan.Bandwidth}); err != nil {
			errs = append(errs, fmt.Errorf("setting the bandwidth of CLB %s: %w", lbID, err))
		} else {
			observed.LoadBalancer.InternetMaxBandwidthOut = *plan.Bandwidth
		}
	}
	for _, change := range plan.ModifyListeners {
		l := change.Listener
		if err := c.cloud.ModifyListener(ctx, lbID, l.ID, change.Spec); err != nil {
			errs = append(errs, fmt.Errorf("modifying listener %s (%s:%d) of CLB %s: %w", l.ID, l.Protocol, l.Port, lbID, err))
			continue
		}
		for i := range observed.Listeners {
			if observed.Listeners[i].ID == l.ID {
				observed.Listeners[i].ListenerSpec = change.Spec
			}
		}
	}

	for _, step := range []struct {
		changes []BackendChange
		op      backendOp
	}{
		{plan.Register, backendOp{verb: "registering", call: c.cloud.RegisterBackends, applied: registered}},
		{plan.ModifyWeight, backendOp{verb: "re-weighting", call: c.cloud.ModifyBackendWeights}},
		{plan.Deregister, backendOp{verb: "deregistering", call: c.cloud.DeregisterBackends, removes: true}},
	} {
		errs = append(errs, c.applyBackendChanges(ctx, observed, ids, failed, step.changes, step.op)...)
	}

	for _, l := range plan.DeleteListeners {
		if err := c.cloud.DeleteListener(ctx, lbID, l.ID); err != nil && !cloud.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("deleting listener %s (%s:%d) of CLB %s: %w", l.ID, l.Protocol, l.Port, lbID, err))
			continue
		}
		observed.Listeners = slices.DeleteFunc(observed.Listeners, func(o cloud.Listener) bool { return o.ID == l.ID })
		delete(observed.Backends, l.ID)
	}
	return errors.Join(errs...)
}

// backendOp is one of the three batch calls on backends.
type backendOp struct {
	verb    string
	call    func(ctx context.Context, loadBalancerID string, backends []cloud.ListenerBackend) error
	removes bool
	// applied, if not nil, is called for each backend the call changed.
	applied func(cloud.Backend)
}

// applyBackendChanges sends changes in batches of the API's maximum size,
// across listeners, skipping listeners that already failed in this round
// (deregistering from a listener whose new backends did not register could
// leave it with none). Failed listeners are added to failed.
func (c *Controller) applyBackendChanges(ctx context.Context, observed *ObservedState, ids map[ListenerKey]string,
	failed map[ListenerKey]bool, changes []BackendChange, op backendOp) []error {
	lbID := observed.LoadBalancer.ID
	keyOf := map[string]ListenerKey{}
	var todo []cloud.ListenerBackend
	for _, ch := range changes {
		id, ok := ids[ch.Listener]
		if !ok || failed[ch.Listener] {
			continue
		}
		keyOf[id] = ch.Listener
		todo = append(todo, cloud.ListenerBackend{ListenerID: id, Backend: ch.Backend})
	}
	var errs []error
	for _, batch := range cloud.Batches(todo, cloud.MaxBackendsPerBatch) {
		err := op.call(ctx, lbID, batch)
		var partial *cloud.PartialFailure
		switch {
		case err == nil:
		case errors.As(err, &partial):
			for _, id := range partial.FailedListenerIDs {
				failed[keyOf[id]] = true
			}
			errs = append(errs, fmt.Errorf("%s backends on CLB %s: %w", op.verb, lbID, err))
		default:
			for _, lb := range batch {
				failed[keyOf[lb.ListenerID]] = true
			}
			errs = append(errs, fmt.Errorf("%s %d backends on CLB %s: %w", op.verb, len(batch), lbID, err))
			continue
		}
		for _, lb := range batch {
			if partial != nil && partial.Failed(lb.ListenerID) {
				continue
			}
			observed.Backends[lb.ListenerID] = applyToBackends(observed.Backends[lb.ListenerID], lb.Backend, op.removes)
			if op.applied != nil {
				op.applied(lb.Backend)
			}
		}
	}
	return errs
}

// applyToBackends records one successful change in the observed backends.
func applyToBackends(current []cloud.Backend, b cloud.Backend, removes bool) []cloud.Backend {
	current = slices.DeleteFunc(current, func(o cloud.Backend) bool { return o.Key() == b.Key() })
	if !removes {
		current = append(current, b)
	}
	return current
}

// cleanupIfOurs removes what the controller made for a Service that no
// longer wants a direct-access CLB (deleted, another type or class, or the
// annotation turned off), then releases the Service. A Service without our
// finalizer was never ours.
func (c *Controller) cleanupIfOurs(ctx context.Context, key string, svc *v1.Service) error {
	if !slices.Contains(svc.Finalizers, Finalizer) {
		return nil
	}
	err := c.cleanup(ctx, key, svc)
	if err != nil {
		c.recorder.Eventf(svc, nil, v1.EventTypeWarning, ReasonCleanupFailed, actionCleanup, "%s (%s error, will retry)", err, cloud.KindOf(err))
	}
	return err
}

func (c *Controller) cleanup(ctx context.Context, key string, svc *v1.Service) error {
	lb, found, err := c.findLoadBalancer(ctx, svc)
	if err != nil {
		return err
	}
	if found {
		if err := c.releaseLoadBalancer(ctx, svc, lb); err != nil {
			return err
		}
	}
	for _, id := range previousLoadBalancers(svc) {
		if err := c.release(ctx, svc, id); err != nil {
			return err
		}
	}
	c.observed.forget(key)
	c.reported.Delete(key)
	if svc.DeletionTimestamp == nil {
		if svc, err = c.setLoadBalancerAnnotation(ctx, svc, ""); err != nil {
			return err
		}
		if err = c.patchIngress(ctx, svc, nil); err != nil {
			return err
		}
	}
	return c.removeFinalizer(ctx, svc)
}

// release gives up a CLB the Service no longer uses, if it still exists.
func (c *Controller) release(ctx context.Context, svc *v1.Service, lbID string) error {
	lb, found, err := c.lookupLoadBalancer(ctx, lbID)
	if err != nil || !found {
		return err
	}
	return c.releaseLoadBalancer(ctx, svc, lb)
}

// releaseLoadBalancer deletes the CLB if its tags say we created it for the
// Service (which removes its listeners and backends with it); from any other
// CLB it deletes only the listeners the Service created.
func (c *Controller) releaseLoadBalancer(ctx context.Context, svc *v1.Service, lb cloud.LoadBalancer) error {
	if !lb.OwnedBy(c.opts.ClusterID, string(svc.UID)) {
		defer c.loadBalancerLocks.lock(lb.ID)()
		return c.deleteOwnListeners(ctx, svc, lb.ID)
	}
	if err := c.cloud.DeleteLoadBalancer(ctx, lb.ID); err != nil && !cloud.IsNotFound(err) {
		return fmt.Errorf("deleting CLB %s: %w", lb.ID, err)
	}
	klog.FromContext(ctx).Info("Deleted CLB", "loadBalancer", lb.ID)
	c.recorder.Eventf(svc, nil, v1.EventTypeNormal, ReasonDeletedCLB, actionCleanup, "Deleted CLB %s", lb.ID)
	return nil
}

// deleteOwnListeners removes the Service's listeners from a CLB that is not
// ours to delete, leaving every other listener as it is.
func (c *Controller) deleteOwnListeners(ctx context.Context, svc *v1.Service, lbID string) error {
	listeners, err := c.cloud.DescribeListeners(ctx, lbID)
	if cloud.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading the listeners of CLB %s: %w", lbID, err)
	}
	for _, l := range listeners {
		if !ownsListener(svc.UID, l) {
			continue
		}
		if err := c.cloud.DeleteListener(ctx, lbID, l.ID); err != nil && !cloud.IsNotFound(err) {
			return fmt.Errorf("deleting listener %s of CLB %s: %w", l.ID, lbID, err)
		}
		klog.FromContext(ctx).Info("Deleted listener", "loadBalancer", lbID, "listener", l.ID, "port", l.Port)
	}
	return nil
}

// reportOnce records an event unless the same message was the last one
// recorded for the Service, so a standing problem is not repeated on every
// sync.
func (c *Controller) reportOnce(key string, svc *v1.Service, eventType, reason, message string) {
	if last, ok := c.reported.Load(key); ok && last == reason+message {
		return
	}
	c.reported.Store(key, reason+message)
	c.recorder.Eventf(svc, nil, eventType, reason, actionSync, "%s", message)
}

func listenerKeys(keys []ListenerKey) string {
	s := make([]string, len(keys))
	for i, k := range keys {
		s[i] = k.String()
	}
	return strings.Join(s, ", ")
}

// addFinalizer makes sure the Service cannot disappear before its cloud
// resources are cleaned up; it runs before anything is created in the cloud.
func (c *Controller) addFinalizer(ctx context.Context, svc *v1.Service) (*v1.Service, error) {
	if slices.Contains(svc.Finalizers, Finalizer) {
		return svc, nil
	}
	return c.patchFinalizers(ctx, svc, append(slices.Clone(svc.Finalizers), Finalizer))
}

func (c *Controller) removeFinalizer(ctx context.Context, svc *v1.Service) error {
	if !slices.Contains(svc.Finalizers, Finalizer) {
		return nil
	}
	_, err := c.patchFinalizers(ctx, svc, slices.DeleteFunc(slices.Clone(svc.Finalizers), func(f string) bool { return f == Finalizer }))
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// patchFinalizers replaces the finalizer list, guarded by the resource
// version we computed it from: another writer's change makes the patch fail
// with a conflict and the Service is synced again, rather than lost.
func (c *Controller) patchFinalizers(ctx context.Context, svc *v1.Service, finalizers []string) (*v1.Service, error) {
	patch := map[string]any{"metadata": map[string]any{"finalizers": finalizers, "resourceVersion": svc.ResourceVersion}}
	return c.patchService(ctx, svc, patch, "")
}

// setLoadBalancerAnnotation records the CLB in use; an empty ID removes the
// annotation.
func (c *Controller) setLoadBalancerAnnotation(ctx context.Context, svc *v1.Service, lbID string) (*v1.Service, error) {
	current, has := svc.Annotations[AnnotationLoadBalancerID]
	if current == lbID && (has || lbID == "") {
		return svc, nil
	}
	var value any = lbID
	if lbID == "" {
		value = nil
	}
	annotations := map[string]any{AnnotationLoadBalancerID: value}
	if lbID == "" {
		annotations[AnnotationPreviousLoadBalancers] = nil
	}
	if current != "" && lbID != "" {
		// Moving to another CLB: the one in use goes on the list of those
		// to release, in the same patch, so it is never forgotten.
		previous := slices.DeleteFunc(append(previousLoadBalancers(svc), current), func(id string) bool { return id == lbID })
		slices.Sort(previous)
		annotations[AnnotationPreviousLoadBalancers] = strings.Join(slices.Compact(previous), ",")
	}
	patch := map[string]any{"metadata": map[string]any{"annotations": annotations}}
	return c.patchService(ctx, svc, patch, "")
}

// patchIngress publishes the CLB's VIPs in the Service status, only when
// they differ from what is there.
func (c *Controller) patchIngress(ctx context.Context, svc *v1.Service, vips []string) error {
	ingress := make([]v1.LoadBalancerIngress, 0, len(vips))
	for _, vip := range vips {
		ingress = append(ingress, v1.LoadBalancerIngress{IP: vip})
	}
	if ingressEqual(svc.Status.LoadBalancer.Ingress, ingress) {
		return nil
	}
	patch := map[string]any{"status": map[string]any{"loadBalancer": map[string]any{"ingress": ingress}}}
	_, err := c.patchService(ctx, svc, patch, "status")
	return err
}

func ingressEqual(a, b []v1.LoadBalancerIngress) bool {
	return slices.EqualFunc(a, b, func(x, y v1.LoadBalancerIngress) bool { return x.IP == y.IP && x.Hostname == y.Hostname })
}

func (c *Controller) patchService(ctx context.Context, svc *v1.Service, patch map[string]any, subresource string) (*v1.Service, error) {
	data, err := json.Marshal(patch)
	if err != nil {
		return nil, fmt.Errorf("encoding a patch of Service %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	var subresources []string
	if subresource != "" {
		subresources = []string{subresource}
	}
	updated, err := c.client.CoreV1().Services(svc.Namespace).Patch(ctx, svc.Name, types.MergePatchType, data, metav1.PatchOptions{}, subresources...)
	if err != nil {
		what := "metadata"
		if subresource != "" {
			what = subresource
		}
		return nil, fmt.Errorf("patching the %s of Service %s/%s: %w", what, svc.Namespace, svc.Name, err)
	}
	return updated, nil
}
