package bench

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"clb-direct/controller"
)

// A workload is Services of one TCP port, each selecting its own Pods. The
// benchmark writes the Pods' status itself (IP, Running, Ready): no kubelet
// runs them, so ten thousand Pods cost the API server two writes each and
// the machine nothing else.
type workload struct {
	client    kubernetes.Interface
	namespace string
	services  int
	pods      int // per Service
	// parallel bounds the requests in flight to the API server.
	parallel int

	mu sync.Mutex
	// generation of each Service's Pods: a roll replaces generation g by g+1.
	generation []int
	nextIP     atomic.Uint32
}

const (
	benchLabel = "clb-direct.bench/service"
	genLabel   = "clb-direct.bench/generation"
	targetPort = 8080
	// workloadNode is no Node of the Pod simulator's, which leaves the Pods
	// alone.
	workloadNode = "bench-node"
)

func newWorkload(client kubernetes.Interface, namespace string, services, pods int) *workload {
	return &workload{client: client, namespace: namespace, services: services, pods: pods, parallel: 32}
}

func serviceName(i int) string { return fmt.Sprintf("svc-%04d", i) }

func podName(svc, gen, j int) string { return fmt.Sprintf("svc-%04d-g%d-%03d", svc, gen, j) }

// create makes the namespace, the Services and their Pods, Running and
// Ready.
func (w *workload) create(ctx context.Context) error {
	ns := &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: w.namespace}}
	if _, err := w.client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating namespace %s: %w", w.namespace, err)
	}
	n := w.services
	w.services = 0
	return w.addServices(ctx, n)
}

// addServices adds n Services and their Pods.
func (w *workload) addServices(ctx context.Context, n int) error {
	first := w.services
	if err := forEach(ctx, w.parallel, n, func(ctx context.Context, i int) error {
		return w.createService(ctx, first+i)
	}); err != nil {
		return err
	}
	if err := forEach(ctx, w.parallel, n*w.pods, func(ctx context.Context, k int) error {
		return w.createPod(ctx, first+k/w.pods, 0, k%w.pods)
	}); err != nil {
		return err
	}
	w.mu.Lock()
	w.services += n
	w.generation = append(w.generation, make([]int, n)...)
	w.mu.Unlock()
	return nil
}

func (w *workload) createService(ctx context.Context, i int) error {
	svc := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: serviceName(i), Namespace: w.namespace,
			Annotations: map[string]string{controller.AnnotationDirectAccess: "true"}},
		Spec: v1.ServiceSpec{Type: v1.ServiceTypeLoadBalancer, Selector: map[string]string{benchLabel: serviceName(i)},
			Ports: []v1.ServicePort{{Protocol: v1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(targetPort)}}},
	}
	if _, err := w.client.CoreV1().Services(w.namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating Service %s: %w", svc.Name, err)
	}
	return nil
}

// createPod creates a VPC-CNI Pod (it requests an ENI IP) on workloadNode and
// then gives it the status a kubelet would: an IP, Running, Ready.
func (w *workload) createPod(ctx context.Context, svc, gen, j int) error {
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: podName(svc, gen, j), Namespace: w.namespace,
			Labels: map[string]string{benchLabel: serviceName(svc), genLabel: fmt.Sprint(gen)}},
		Spec: v1.PodSpec{NodeName: workloadNode, Containers: []v1.Container{{Name: "app", Image: "bench",
			Ports: []v1.ContainerPort{{ContainerPort: targetPort}},
			Resources: v1.ResourceRequirements{
				Requests: v1.ResourceList{controller.ResourceENIIP: resource.MustParse("1")},
				Limits:   v1.ResourceList{controller.ResourceENIIP: resource.MustParse("1")}}}}},
	}
	created, err := w.client.CoreV1().Pods(w.namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("creating Pod %s: %w", pod.Name, err)
	}
	now := metav1.Now()
	created.Status = v1.PodStatus{Phase: v1.PodRunning, PodIP: w.allocateIP(), StartTime: &now,
		Conditions: []v1.PodCondition{
			{Type: v1.PodScheduled, Status: v1.ConditionTrue, LastTransitionTime: now},
			{Type: v1.ContainersReady, Status: v1.ConditionTrue, LastTransitionTime: now},
			{Type: v1.PodReady, Status: v1.ConditionTrue, LastTransitionTime: now}}}
	created.Status.PodIPs = []v1.PodIP{{IP: created.Status.PodIP}}
	if _, err := w.client.CoreV1().Pods(w.namespace).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("starting Pod %s: %w", pod.Name, err)
	}
	return nil
}

// allocateIP hands out 10.128.0.0/9 addresses, never the same twice in a
// run, as a VPC's ENIs would while old Pods' addresses are still in use.
func (w *workload) allocateIP() string {
	n := w.nextIP.Add(1)
	base := netip.MustParseAddr("10.128.0.0").As4()
	v := uint32(base[0])<<24 | uint32(base[1])<<16 | n
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}).String()
}

// roll replaces every Service's Pods as a Deployment's rolling update does,
// all Services at once: new Pods come up Ready, then the old ones go.
func (w *workload) roll(ctx context.Context) error {
	return forEach(ctx, w.parallel, w.services, func(ctx context.Context, i int) error {
		w.mu.Lock()
		old := w.generation[i]
		w.generation[i]++
		w.mu.Unlock()
		for j := range w.pods {
			if err := w.createPod(ctx, i, old+1, j); err != nil {
				return err
			}
		}
		zero := int64(0)
		for j := range w.pods {
			// No kubelet confirms a graceful deletion: the Pod goes at once.
			err := w.client.CoreV1().Pods(w.namespace).Delete(ctx, podName(i, old, j), metav1.DeleteOptions{GracePeriodSeconds: &zero})
			if err != nil {
				return fmt.Errorf("deleting Pod %s: %w", podName(i, old, j), err)
			}
		}
		return nil
	})
}

// setReady flips one Pod's Ready condition and returns the times the
// request was sent and the API server's answer came back: the change was
// committed, and its watch event sent, in between.
func (w *workload) setReady(ctx context.Context, svc, j int, ready bool) (sent, acked time.Time, err error) {
	w.mu.Lock()
	gen := w.generation[svc]
	w.mu.Unlock()
	pods := w.client.CoreV1().Pods(w.namespace)
	pod, err := pods.Get(ctx, podName(svc, gen, j), metav1.GetOptions{})
	if err != nil {
		return sent, acked, err
	}
	status := v1.ConditionFalse
	if ready {
		status = v1.ConditionTrue
	}
	for i := range pod.Status.Conditions {
		if t := pod.Status.Conditions[i].Type; t == v1.PodReady || t == v1.ContainersReady {
			pod.Status.Conditions[i].Status = status
		}
	}
	sent = time.Now()
	if _, err := pods.UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		return sent, acked, fmt.Errorf("setting Pod %s ready=%v: %w", pod.Name, ready, err)
	}
	return sent, time.Now(), nil
}

// desired lists, for each Service UID, the Pod addresses (IP:port) its CLB
// should have: its Ready Pods.
func (w *workload) desired(ctx context.Context) (map[types.UID]map[string]bool, error) {
	svcs, err := w.client.CoreV1().Services(w.namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	byName := map[string]types.UID{}
	out := map[types.UID]map[string]bool{}
	for _, s := range svcs.Items {
		byName[s.Name] = s.UID
		out[s.UID] = map[string]bool{}
	}
	pods, err := w.client.CoreV1().Pods(w.namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for _, p := range pods.Items {
		uid, ok := byName[p.Labels[benchLabel]]
		if !ok || p.DeletionTimestamp != nil || p.Status.PodIP == "" || !podReady(&p) {
			continue
		}
		out[uid][fmt.Sprintf("%s:%d", p.Status.PodIP, targetPort)] = true
	}
	return out, nil
}

func podReady(p *v1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == v1.PodReady {
			return c.Status == v1.ConditionTrue
		}
	}
	return false
}

// forEach runs fn for 0..n-1, parallel at a time, and returns the first
// error.
func forEach(ctx context.Context, parallel, n int, fn func(context.Context, int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := atomic.Int64{}
	var wg sync.WaitGroup
	for range min(parallel, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := fn(ctx, i); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return context.Cause(ctx)
}
