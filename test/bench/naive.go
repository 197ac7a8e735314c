package bench

import (
	"context"
	"fmt"
	"slices"
	"sync"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"clb-direct/cloud"
)

// naive is the strategy simple controllers use, the baseline the benchmark
// compares against: every Pod change is one register or deregister call of
// one target, sent as it comes, with no coalescing and no batching. It
// shares our cloud adapter (rate limiting, retries, task polling), so the
// difference measured is the strategy alone.
type naive struct {
	cloud     cloud.Interface
	client    kubernetes.Interface
	namespace string
	workers   int

	mu sync.Mutex
	// listeners: Service name → its CLB and listener, once created.
	listeners map[string]naiveListener
	ready     map[string]bool // Pod key → registered
	pods      cache.Store
	ops       chan naiveOp
}

type naiveListener struct{ loadBalancerID, listenerID string }

type naiveOp struct {
	service  string
	target   cloud.Backend
	register bool
}

func newNaive(c cloud.Interface, client kubernetes.Interface, namespace string, workers int) *naive {
	return &naive{cloud: c, client: client, namespace: namespace, workers: workers,
		listeners: map[string]naiveListener{}, ready: map[string]bool{}, ops: make(chan naiveOp, 100000)}
}

// run creates a CLB and a listener for every Service, or with adopt takes
// over the CLBs (found by their Service-UID tag) and Pods already
// registered, then follows the Pods until ctx ends. started is closed once
// it follows them.
func (n *naive) run(ctx context.Context, adopt bool, started chan<- struct{}) error {
	factory := informers.NewSharedInformerFactoryWithOptions(n.client, 0, informers.WithNamespace(n.namespace))
	services := factory.Core().V1().Services()
	// Informers made after Start never run.
	servicesSynced := services.Informer().HasSynced
	pods := factory.Core().V1().Pods().Informer()
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), servicesSynced, pods.HasSynced) {
		return ctx.Err()
	}
	svcs, err := services.Lister().List(labels.Everything())
	if err != nil {
		return err
	}
	n.pods = pods.GetStore()
	setUp := n.createLoadBalancer
	if adopt {
		setUp = n.adoptLoadBalancer
		for _, obj := range pods.GetStore().List() {
			pod := obj.(*v1.Pod)
			n.ready[pod.Namespace+"/"+pod.Name] = pod.Status.PodIP != "" && podReady(pod)
		}
	}
	if err := forEach(ctx, n.workers, len(svcs), func(ctx context.Context, i int) error {
		return setUp(ctx, svcs[i])
	}); err != nil {
		return err
	}
	if _, err := pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { n.podChanged(obj) },
		UpdateFunc: func(_, obj any) { n.podChanged(obj) },
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if pod, ok := obj.(*v1.Pod); ok {
				n.enqueue(pod, false)
			}
		},
	}); err != nil {
		return err
	}
	close(started)
	var wg sync.WaitGroup
	for range n.workers {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case op := <-n.ops:
					n.apply(ctx, op)
				}
			}
		})
	}
	wg.Wait()
	return nil
}

func (n *naive) createLoadBalancer(ctx context.Context, svc *v1.Service) error {
	lb, err := n.cloud.CreateLoadBalancer(ctx, cloud.LoadBalancerSpec{Name: "naive-" + svc.Name,
		Tags: map[string]string{cloud.TagServiceUUID: string(svc.UID)}, ClientToken: "naive-" + string(svc.UID)})
	if err != nil {
		return fmt.Errorf("creating the CLB of %s: %w", svc.Name, err)
	}
	l, err := n.cloud.CreateListener(ctx, lb.ID, cloud.ListenerSpec{Name: "naive", Protocol: cloud.ProtocolTCP, Port: 80})
	if err != nil {
		return fmt.Errorf("creating the listener of %s: %w", svc.Name, err)
	}
	n.mu.Lock()
	n.listeners[svc.Name] = naiveListener{loadBalancerID: lb.ID, listenerID: l.ID}
	n.mu.Unlock()
	return nil
}

func (n *naive) adoptLoadBalancer(ctx context.Context, svc *v1.Service) error {
	lbs, err := n.cloud.DescribeLoadBalancers(ctx, cloud.LoadBalancerQuery{Tags: map[string]string{cloud.TagServiceUUID: string(svc.UID)}})
	if err != nil || len(lbs) != 1 {
		return fmt.Errorf("finding the one CLB of %s: %d found, %v", svc.Name, len(lbs), err)
	}
	listeners, err := n.cloud.DescribeListeners(ctx, lbs[0].ID)
	if err != nil || len(listeners) != 1 {
		return fmt.Errorf("finding the one listener of %s: %d found, %v", svc.Name, len(listeners), err)
	}
	l := naiveListener{loadBalancerID: lbs[0].ID, listenerID: listeners[0].ID}
	if err := n.fill(ctx, svc.Name, l); err != nil {
		return err
	}
	n.mu.Lock()
	n.listeners[svc.Name] = l
	n.mu.Unlock()
	return nil
}

// fill registers the Service's ready Pods the CLB lacks, in batches: the
// set-up of a takeover, not the strategy measured.
func (n *naive) fill(ctx context.Context, service string, l naiveListener) error {
	registered, err := n.cloud.DescribeBackends(ctx, l.loadBalancerID)
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for _, t := range registered[l.listenerID] {
		have[t.IP] = true
	}
	var missing []cloud.ListenerBackend
	for _, obj := range n.pods.List() {
		pod := obj.(*v1.Pod)
		if pod.Labels[benchLabel] == service && pod.Status.PodIP != "" && podReady(pod) && !have[pod.Status.PodIP] {
			missing = append(missing, cloud.ListenerBackend{ListenerID: l.listenerID, Backend: naiveTarget(pod)})
		}
	}
	for batch := range slices.Chunk(missing, cloud.MaxBackendsPerBatch) {
		if err := n.cloud.RegisterBackends(ctx, l.loadBalancerID, batch); err != nil {
			return fmt.Errorf("registering the Pods of %s: %w", service, err)
		}
	}
	return nil
}

func naiveTarget(pod *v1.Pod) cloud.Backend {
	return cloud.Backend{IP: pod.Status.PodIP, Port: targetPort, Weight: 10}
}

func (n *naive) podChanged(obj any) {
	pod, ok := obj.(*v1.Pod)
	if !ok {
		return
	}
	n.enqueue(pod, pod.DeletionTimestamp == nil && pod.Status.PodIP != "" && podReady(pod))
}

// enqueue sends one call when the Pod's registration changes.
func (n *naive) enqueue(pod *v1.Pod, ready bool) {
	key := pod.Namespace + "/" + pod.Name
	n.mu.Lock()
	changed := n.ready[key] != ready
	if ready {
		n.ready[key] = true
	} else {
		delete(n.ready, key)
	}
	n.mu.Unlock()
	if changed && pod.Status.PodIP != "" {
		n.ops <- naiveOp{service: pod.Labels[benchLabel], register: ready,
			target: naiveTarget(pod)}
	}
}

// apply makes the call, retrying until it succeeds: the adapter already
// retries throttling and a busy CLB; what is left is a failed task.
func (n *naive) apply(ctx context.Context, op naiveOp) {
	n.mu.Lock()
	l, ok := n.listeners[op.service]
	n.mu.Unlock()
	if !ok {
		return
	}
	target := []cloud.ListenerBackend{{ListenerID: l.listenerID, Backend: op.target}}
	for ctx.Err() == nil {
		var err error
		if op.register {
			err = n.cloud.RegisterBackends(ctx, l.loadBalancerID, target)
		} else {
			err = n.cloud.DeregisterBackends(ctx, l.loadBalancerID, target)
		}
		if err == nil {
			return
		}
	}
}
