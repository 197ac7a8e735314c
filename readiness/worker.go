package readiness

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"clb-direct/cloud"
)

// ReasonTimeout is the Warning event on a Pod whose gate did not pass in time.
const ReasonTimeout = "LoadBalancerHealthCheckTimeout"

// Options tune the worker; zero values take defaults.
type Options struct {
	// PollInterval is the time between two rounds while some Pod waits.
	PollInterval time.Duration
	// Timeout is how long a Pod may wait before the user is told (event).
	Timeout time.Duration
	// Metrics records the gate latency and the waiting Pods; nil records
	// nothing.
	Metrics *Metrics
	Clock   clock.WithTicker
}

// Worker patches the gate condition of waiting Pods. It polls the CLB only
// while some Pod waits, with one DescribeTargetHealth call per CLB per
// round for all the Pods on it; settled Pods cost nothing.
type Worker struct {
	client     kubernetes.Interface
	cloud      cloud.Interface
	source     Source
	recorder   events.EventRecorder
	podLister  corelisters.PodLister
	podsSynced cache.InformerSynced
	opts       Options

	mu sync.Mutex
	// waiting holds the keys of Pods whose gate is not yet True.
	waiting map[string]bool
	// warned holds the UIDs of Pods already told about the timeout.
	warned map[types.UID]bool
	// passed holds the UIDs of Pods whose True patch succeeded, until they
	// are deleted: an event older than the patch must not make them wait
	// again (and a health flap turn the gate back to False).
	passed map[types.UID]bool
	// healthySince holds, for the waiting Pods the CLB has reported
	// healthy, when the first such report was read (for the gate latency).
	healthySince map[types.UID]time.Time
	wake         chan struct{}
}

// New wires a worker to the Pod informer.
func New(ctx context.Context, client kubernetes.Interface, clb cloud.Interface, source Source, recorder events.EventRecorder,
	podInformer coreinformers.PodInformer, opts Options) (*Worker, error) {
	if opts.PollInterval <= 0 {
		opts.PollInterval = time.Second
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Minute
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	w := &Worker{
		client: client, cloud: clb, source: source, recorder: recorder,
		podLister: podInformer.Lister(), podsSynced: podInformer.Informer().HasSynced,
		opts: opts, waiting: map[string]bool{}, warned: map[types.UID]bool{}, passed: map[types.UID]bool{},
		healthySince: map[types.UID]time.Time{}, wake: make(chan struct{}, 1),
	}
	logger := klog.FromContext(ctx)
	_, err := podInformer.Informer().AddEventHandlerWithOptions(cache.ResourceEventHandlerFuncs{
		AddFunc:    w.track,
		UpdateFunc: func(_, obj any) { w.track(obj) },
		DeleteFunc: w.untrack,
	}, cache.HandlerOptions{Logger: &logger})
	if err != nil {
		return nil, fmt.Errorf("adding the readiness Pod handler: %w", err)
	}
	return w, nil
}

func (w *Worker) track(obj any) {
	pod, ok := obj.(*v1.Pod)
	if !ok {
		return
	}
	key := cache.MetaObjectToName(pod).String()
	w.mu.Lock()
	defer w.mu.Unlock()
	defer w.countWaiting()
	if !pending(pod) {
		delete(w.waiting, key)
		delete(w.healthySince, pod.UID)
		return
	}
	if w.passed[pod.UID] {
		return
	}
	if !w.waiting[key] {
		w.waiting[key] = true
		w.signal()
	}
}

// countWaiting updates the waiting gauge; w.mu must be held.
func (w *Worker) countWaiting() {
	w.opts.Metrics.setWaiting(len(w.waiting))
}

func (w *Worker) untrack(obj any) {
	if tombstone, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tombstone.Obj
	}
	pod, ok := obj.(*v1.Pod)
	if !ok {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.waiting, cache.MetaObjectToName(pod).String())
	delete(w.warned, pod.UID)
	delete(w.passed, pod.UID)
	delete(w.healthySince, pod.UID)
	w.countWaiting()
}

// Poke asks for a round soon, e.g. after the controller registered Pods.
func (w *Worker) Poke() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.waiting) > 0 {
		w.signal()
	}
}

func (w *Worker) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Run does rounds until ctx is done: one at once when a Pod starts to wait
// or the controller pokes, then every PollInterval while any Pod waits,
// and none while nothing does.
func (w *Worker) Run(ctx context.Context) {
	defer utilruntime.HandleCrashWithContext(ctx)
	logger := klog.FromContext(ctx)
	if !cache.WaitForNamedCacheSyncWithContext(ctx, w.podsSynced, w.source.HasSynced) {
		return
	}
	logger.Info("Starting readiness gate worker", "pollInterval", w.opts.PollInterval, "timeout", w.opts.Timeout)
	ticker := w.opts.Clock.NewTicker(w.opts.PollInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.wake:
		case <-ticker.C():
		}
		if keys := w.waitingKeys(); len(keys) > 0 {
			w.round(ctx, keys)
		}
	}
}

func (w *Worker) waitingKeys() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Sorted(maps.Keys(w.waiting))
}

// round decides the gate of every waiting Pod.
func (w *Worker) round(ctx context.Context, keys []string) {
	logger := klog.FromContext(ctx)
	type waitingPod struct {
		key string
		pod *v1.Pod
		exp Expectation
	}
	var pods []waitingPod
	lbs := map[string]bool{}
	for _, key := range keys {
		namespace, name, _ := cache.SplitMetaNamespaceKey(key)
		pod, err := w.podLister.Pods(namespace).Get(name)
		if err != nil || !pending(pod) {
			continue
		}
		exp := w.source.Expect(pod)
		for _, t := range exp.Targets {
			if t.Registered && t.LoadBalancerID != "" {
				lbs[t.LoadBalancerID] = true
			}
		}
		pods = append(pods, waitingPod{key: key, pod: pod, exp: exp})
	}
	health := map[HealthKey]cloud.BackendHealth{}
	unread := map[string]bool{}
	for _, lbID := range slices.Sorted(maps.Keys(lbs)) {
		reports, err := w.cloud.DescribeBackendHealth(ctx, []string{lbID})
		if err != nil {
			// The Pods on it keep waiting; the next round asks again.
			utilruntime.HandleErrorWithContext(ctx, err, "Reading target health failed", "loadBalancer", lbID)
			unread[lbID] = true
			continue
		}
		for _, h := range reports {
			health[healthKeyOf(h)] = h
		}
	}
	healthRead := w.opts.Clock.Now()
	for _, wp := range pods {
		if slices.ContainsFunc(wp.exp.Targets, func(t Target) bool { return unread[t.LoadBalancerID] }) {
			// Without the CLB's report the verdict would be "no report
			// yet": wrong, and a patch each time the API fails. Leave the
			// condition as it is until a round can read the health.
			continue
		}
		verdict := evaluate(wp.exp, health)
		// Read before the patch: its informer event may forget the Pod
		// (track) before this round gets to observe the latency.
		var since time.Time
		if verdict.Status == v1.ConditionTrue && verdict.Reason == ReasonReady {
			w.mu.Lock()
			if _, ok := w.healthySince[wp.pod.UID]; !ok {
				w.healthySince[wp.pod.UID] = healthRead
			}
			since = w.healthySince[wp.pod.UID]
			w.mu.Unlock()
		}
		if err := w.apply(ctx, wp.pod, verdict); err != nil {
			utilruntime.HandleErrorWithContext(ctx, err, "Patching the readiness gate failed", "pod", klog.KObj(wp.pod))
			continue
		}
		if verdict.Status != v1.ConditionTrue {
			w.warnIfLate(wp.pod, verdict)
		} else {
			// Settled for the Pod's life. Forget it now rather than when the
			// informer brings the patched Pod: until then the lister still
			// has it pending, and a round in between (or a stale event
			// putting it back in the waiting set) would patch it back to
			// False on a health flap.
			w.mu.Lock()
			delete(w.waiting, wp.key)
			w.passed[wp.pod.UID] = true
			if !since.IsZero() {
				w.opts.Metrics.observeGate(w.opts.Clock.Since(since))
			}
			delete(w.healthySince, wp.pod.UID)
			w.countWaiting()
			w.mu.Unlock()
			logger.V(2).Info("Readiness gate passed", "pod", klog.KObj(wp.pod), "reason", verdict.Reason)
		}
	}
}

// apply patches the gate condition when the verdict differs from it.
func (w *Worker) apply(ctx context.Context, pod *v1.Pod, verdict Verdict) error {
	current := gateCondition(pod)
	if current != nil && current.Status == verdict.Status && current.Reason == verdict.Reason && current.Message == verdict.Message {
		return nil
	}
	patch, err := conditionPatch(pod.UID, current, verdict, metav1.NewTime(w.opts.Clock.Now()))
	if err != nil {
		return err
	}
	_, err = w.client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("patching the status of Pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return nil
}

// conditionPatch is a strategic-merge patch of the gate condition alone:
// conditions merge by type, so the kubelet's conditions are left as they
// are. The transition time moves only when the status does.
//
// The Pod's UID rides along as a precondition: the verdict was decided for
// this Pod, and must not land on a successor created under the same name
// while the health was being read.
func conditionPatch(uid types.UID, current *v1.PodCondition, verdict Verdict, now metav1.Time) ([]byte, error) {
	transition := now
	if current != nil && current.Status == verdict.Status && !current.LastTransitionTime.IsZero() {
		transition = current.LastTransitionTime
	}
	condition := v1.PodCondition{
		Type: GateConditionType, Status: verdict.Status, Reason: verdict.Reason, Message: verdict.Message,
		LastTransitionTime: transition,
	}
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"uid": uid},
		"status":   map[string]any{"conditions": []v1.PodCondition{condition}},
	})
	if err != nil {
		return nil, fmt.Errorf("encoding the readiness gate patch: %w", err)
	}
	return patch, nil
}

// warnIfLate tells the user, once per Pod, that its gate has waited longer
// than the timeout, and what to check.
func (w *Worker) warnIfLate(pod *v1.Pod, verdict Verdict) {
	waited := w.opts.Clock.Since(pod.CreationTimestamp.Time)
	if waited < w.opts.Timeout {
		return
	}
	w.mu.Lock()
	if w.warned[pod.UID] {
		w.mu.Unlock()
		return
	}
	w.warned[pod.UID] = true
	w.mu.Unlock()
	w.recorder.Eventf(pod, nil, v1.EventTypeWarning, ReasonTimeout, "ReadinessGate",
		"The CLB has not reported this Pod healthy after %s (%s). Check that the security group lets the CLB reach the Pod's port, that the port serves, and the listener's health check settings.",
		waited.Round(time.Second), verdict.Message)
}
