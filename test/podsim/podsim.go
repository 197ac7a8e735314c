// Package podsim stands in for the scheduler and the kubelets of a test
// cluster that has neither. It creates Nodes, binds Pods to them, gives
// every Pod an address on 127.0.0.0/8 with a tiny server on each container
// port, and writes Pod status the way a kubelet does, including readiness
// gates written by other controllers. With Options.NodePorts it also plays
// kube-proxy: the Nodes answer on the Services' node ports.
package podsim

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
)

// Options configure Start. The zero value is usable.
type Options struct {
	// Nodes is how many Nodes to create, named NodePrefix1, NodePrefix2, ...
	// Default 3.
	Nodes int
	// NodePrefix defaults to "node-".
	NodePrefix string
	// ProviderIDPrefix is followed by the instance id ("ins-xxxxxxxx") in
	// each Node's spec.providerID, the way TKE names its nodes.
	// Default "qcloud:///800002/".
	ProviderIDPrefix string
	// NodeLabels are added to every Node (kubernetes.io/hostname always is).
	NodeLabels map[string]string
	// PodCIDR is where Pod IPs come from. It must lie in 127.0.0.0/8, the
	// only network these machines let traffic through. Default
	// 127.1.0.0/16. Addresses are not reused until the range wraps, so a
	// stale backend never points at a new Pod by accident.
	PodCIDR string
	// ContainersReadyDelay is how long after its servers start a Pod's
	// containers turn ready (as a readiness probe's initial delay would).
	ContainersReadyDelay time.Duration
	// MaxTerminationGracePeriod caps how long a deleted Pod keeps serving
	// (its terminationGracePeriodSeconds, at most this). Default 3s.
	MaxTerminationGracePeriod time.Duration
	// Namespace restricts the simulator to one namespace. Default: all.
	Namespace string
	// Workers process Pods concurrently (never one Pod twice at a time).
	// Default 4.
	Workers int
	// NodePorts makes every Node answer on the nodePorts of NodePort and
	// LoadBalancer Services (and on healthCheckNodePort), forwarding to
	// the Services' endpoints as kube-proxy does; see proxy.go. Off by
	// default: every simulator's Nodes have the same addresses, so two
	// simulators side by side with NodePorts may both want a port the
	// two API servers happened to allocate alike (the second one logs
	// and retries until the first lets go).
	NodePorts bool
}

// Simulator is a running Pod simulator. It stops when the context given to
// Start is cancelled, or on Stop.
type Simulator struct {
	client kubernetes.Interface
	opts   Options
	log    klog.Logger
	nodes  []node
	byName map[string]*node
	prefix netip.Prefix
	lister corelisters.PodLister
	queue  workqueue.TypedRateLimitingInterface[string]
	cancel context.CancelFunc
	done   chan struct{}
	proxy  *proxy // nil without Options.NodePorts

	mu       sync.Mutex
	pods     map[string]*podState // by namespace/name
	ips      map[netip.Addr]string
	nextIP   netip.Addr
	nextNode int
	// Test-controlled knobs by namespace/name: they hold before the Pod
	// exists and for a later Pod of the same name.
	unhealthy map[string]bool
	unready   map[string]bool
	requests  map[string]*atomic.Int64
}

type node struct {
	name       string
	ip         string
	providerID string
	labels     map[string]string
}

// podState is what the simulator runs for one Pod.
type podState struct {
	uid types.UID
	ip  netip.Addr
	// startedAt is reported in status (whole seconds, as the API stores
	// it); runningSince is the precise start the ready delay counts from.
	startedAt    metav1.Time
	runningSince time.Time
	servers      []closer
	terminateAt  time.Time
}

type closer interface{ Close() error }

// Start creates (or updates) the Nodes, then simulates every Pod until ctx
// ends.
func Start(ctx context.Context, client kubernetes.Interface, opts Options) (*Simulator, error) {
	if opts.Nodes == 0 {
		opts.Nodes = 3
	}
	if opts.NodePrefix == "" {
		opts.NodePrefix = "node-"
	}
	if opts.ProviderIDPrefix == "" {
		opts.ProviderIDPrefix = "qcloud:///800002/"
	}
	if opts.PodCIDR == "" {
		opts.PodCIDR = "127.1.0.0/16"
	}
	if opts.MaxTerminationGracePeriod == 0 {
		opts.MaxTerminationGracePeriod = 3 * time.Second
	}
	if opts.Workers == 0 {
		opts.Workers = 4
	}
	prefix, err := netip.ParsePrefix(opts.PodCIDR)
	if err != nil {
		return nil, fmt.Errorf("podsim: PodCIDR: %w", err)
	}
	prefix = prefix.Masked()
	if !netip.MustParsePrefix("127.0.0.0/8").Contains(prefix.Addr()) || prefix.Bits() < 8 || prefix.Bits() > 30 {
		return nil, fmt.Errorf("podsim: PodCIDR %s must be a /8../30 inside 127.0.0.0/8", prefix)
	}
	s := &Simulator{
		client:    client,
		opts:      opts,
		log:       klog.FromContext(ctx).WithName("podsim"),
		byName:    map[string]*node{},
		prefix:    prefix,
		pods:      map[string]*podState{},
		ips:       map[netip.Addr]string{},
		nextIP:    prefix.Addr(),
		unhealthy: map[string]bool{},
		unready:   map[string]bool{},
		requests:  map[string]*atomic.Int64{},
		done:      make(chan struct{}),
	}
	if err := s.createNodes(ctx); err != nil {
		return nil, err
	}

	ctx, s.cancel = context.WithCancel(ctx)
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(opts.Namespace))
	podInformer := factory.Core().V1().Pods()
	s.lister = podInformer.Lister()
	s.queue = workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "podsim"})
	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			s.queue.Add(key)
		}
	}
	if _, err := podInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
		DeleteFunc: enqueue,
	}); err != nil {
		s.cancel()
		return nil, err
	}
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), podInformer.Informer().HasSynced) {
		s.cancel()
		factory.Shutdown()
		return nil, errors.New("podsim: pod informer did not sync")
	}
	if opts.NodePorts {
		if s.proxy, err = startProxy(ctx, client, opts.Namespace, s.nodes, s.log); err != nil {
			s.cancel()
			factory.Shutdown()
			return nil, err
		}
	}

	var wg sync.WaitGroup
	for range opts.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s.processNext(ctx) {
			}
		}()
	}
	go func() {
		<-ctx.Done()
		s.queue.ShutDown()
		wg.Wait()
		factory.Shutdown()
		s.mu.Lock()
		for _, st := range s.pods {
			stopServers(st)
		}
		s.mu.Unlock()
		if s.proxy != nil {
			<-s.proxy.done
		}
		close(s.done)
	}()
	return s, nil
}

// Stop stops all Pod servers (and node ports) and waits for the workers to
// finish. The API objects are left as they are.
func (s *Simulator) Stop() {
	s.cancel()
	<-s.done
}

// Nodes returns the names of the simulated Nodes.
func (s *Simulator) Nodes() []string {
	names := make([]string, len(s.nodes))
	for i, n := range s.nodes {
		names[i] = n.name
	}
	return names
}

// SetHealthy makes GET /healthz of the Pod's HTTP servers answer 200
// (healthy) or 503, and its UDP servers answer or stay silent. It does not
// touch the Pod's readiness (see SetReady): a load balancer's health check
// and a readiness probe are different things.
func (s *Simulator) SetHealthy(namespace, name string, healthy bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unhealthy[namespace+"/"+name] = !healthy
}

// SetReady makes the Pod's containers ready or not, as a passing or
// failing readiness probe would. ContainersReady and Ready follow.
func (s *Simulator) SetReady(namespace, name string, ready bool) {
	s.mu.Lock()
	s.unready[namespace+"/"+name] = !ready
	s.mu.Unlock()
	s.queue.Add(namespace + "/" + name)
}

// Requests is how many requests (other than /healthz) and UDP datagrams
// the Pod's servers have answered.
func (s *Simulator) Requests(namespace, name string) int64 {
	return s.counter(namespace + "/" + name).Load()
}

func (s *Simulator) counter(key string) *atomic.Int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.requests[key]
	if !ok {
		c = new(atomic.Int64)
		s.requests[key] = c
	}
	return c
}

func (s *Simulator) healthy(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.unhealthy[key]
}

func (s *Simulator) createNodes(ctx context.Context) error {
	for i := 1; i <= s.opts.Nodes; i++ {
		name := fmt.Sprintf("%s%d", s.opts.NodePrefix, i)
		// 127.0.<a>.<b> with b in 1..254: never 127.0.0.1, which is the
		// control plane's and everyone else's.
		n := node{
			name:       name,
			ip:         fmt.Sprintf("127.0.%d.%d", 1+(i-1)/254, 1+(i-1)%254),
			providerID: s.opts.ProviderIDPrefix + instanceID(name),
			labels:     map[string]string{corev1.LabelHostname: name},
		}
		for k, v := range s.opts.NodeLabels {
			n.labels[k] = v
		}
		if err := s.applyNode(ctx, n); err != nil {
			return fmt.Errorf("podsim: node %s: %w", name, err)
		}
		s.nodes = append(s.nodes, n)
	}
	for i := range s.nodes {
		s.byName[s.nodes[i].name] = &s.nodes[i]
	}
	return nil
}

// instanceID derives a stable TKE-like CVM id (ins- and 8 of [a-z0-9]) from
// the node name, so reruns produce the same providerIDs.
func instanceID(name string) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	sum := sha256.Sum256([]byte(name))
	id := make([]byte, 8)
	for i := range id {
		id[i] = alphabet[int(sum[i])%len(alphabet)]
	}
	return "ins-" + string(id)
}

func (s *Simulator) applyNode(ctx context.Context, n node) error {
	nodes := s.client.CoreV1().Nodes()
	obj, err := nodes.Get(ctx, n.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		obj, err = nodes.Create(ctx, &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: n.name, Labels: n.labels},
			Spec:       corev1.NodeSpec{ProviderID: n.providerID},
		}, metav1.CreateOptions{})
	}
	if err != nil {
		return err
	}
	if obj.Spec.ProviderID != n.providerID {
		// providerID can be set once, never changed.
		return fmt.Errorf("exists with providerID %q, want %q", obj.Spec.ProviderID, n.providerID)
	}
	now := metav1.Now().Rfc3339Copy()
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("4"),
		corev1.ResourceMemory: resource.MustParse("8Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	obj = obj.DeepCopy()
	obj.Status = corev1.NodeStatus{
		Capacity:    capacity,
		Allocatable: capacity,
		Phase:       corev1.NodeRunning,
		Conditions: []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
			Message: "kubelet is posting ready status (simulated)", LastHeartbeatTime: now, LastTransitionTime: now,
		}},
		Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: n.ip},
			{Type: corev1.NodeHostName, Address: n.name},
		},
		NodeInfo: corev1.NodeSystemInfo{
			KubeletVersion: "v1.34.2", OperatingSystem: "linux", Architecture: "amd64",
			ContainerRuntimeVersion: "containerd://simulated",
		},
	}
	_, err = s.client.CoreV1().Nodes().UpdateStatus(ctx, obj, metav1.UpdateOptions{})
	return err
}

func (s *Simulator) processNext(ctx context.Context) bool {
	key, shutdown := s.queue.Get()
	if shutdown {
		return false
	}
	defer s.queue.Done(key)
	if err := s.sync(ctx, key); err != nil {
		if ctx.Err() != nil {
			return true
		}
		if apierrors.IsConflict(err) {
			s.log.V(4).Info("Conflict, retrying", "pod", key)
		} else {
			s.log.Error(err, "Sync failed, retrying", "pod", key)
		}
		s.queue.AddRateLimited(key)
		return true
	}
	s.queue.Forget(key)
	return true
}

func (s *Simulator) sync(ctx context.Context, key string) error {
	namespace, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	pod, err := s.lister.Pods(namespace).Get(name)
	if apierrors.IsNotFound(err) {
		s.forgetPod(key)
		return nil
	}
	if err != nil {
		return err
	}
	s.mu.Lock()
	st := s.pods[key]
	s.mu.Unlock()
	if st != nil && st.uid != pod.UID {
		// Same name, new Pod (the old one's delete event was coalesced).
		s.forgetPod(key)
		st = nil
	}
	if pod.Spec.NodeName == "" {
		if pod.DeletionTimestamp != nil {
			return nil // the API server removes unbound Pods by itself
		}
		return s.bind(ctx, pod)
	}
	n, ok := s.byName[pod.Spec.NodeName]
	if !ok {
		return nil // someone else's node
	}
	if pod.DeletionTimestamp != nil {
		return s.terminate(ctx, key, pod, st)
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return nil
	}
	st, err = s.run(key, pod, n, st)
	if err != nil {
		return err
	}
	return s.writeStatus(ctx, key, pod, n, st)
}

// bind plays the scheduler: round-robin over the Nodes that match the Pod's
// nodeSelector.
func (s *Simulator) bind(ctx context.Context, pod *corev1.Pod) error {
	selector := labels.SelectorFromSet(pod.Spec.NodeSelector)
	var candidates []*node
	for i := range s.nodes {
		if selector.Matches(labels.Set(s.nodes[i].labels)) {
			candidates = append(candidates, &s.nodes[i])
		}
	}
	if len(candidates) == 0 {
		s.log.Info("No node matches the Pod's nodeSelector; leaving it pending", "pod", klog.KObj(pod))
		return nil
	}
	s.mu.Lock()
	n := candidates[s.nextNode%len(candidates)]
	s.nextNode++
	s.mu.Unlock()
	err := s.client.CoreV1().Pods(pod.Namespace).Bind(ctx, &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID},
		Target:     corev1.ObjectReference{Kind: "Node", Name: n.name},
	}, metav1.CreateOptions{})
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return nil // already bound or gone: the informer brings the news
	}
	if err == nil {
		s.log.V(2).Info("Bound", "pod", klog.KObj(pod), "node", n.name)
	}
	return err
}

// run makes sure the Pod has an IP and its servers are up.
func (s *Simulator) run(key string, pod *corev1.Pod, n *node, st *podState) (*podState, error) {
	if st != nil {
		return st, nil
	}
	st = &podState{uid: pod.UID, startedAt: metav1.Now().Rfc3339Copy(), runningSince: time.Now()}
	if pod.Status.StartTime != nil {
		// Restarted simulator, same Pod: keep its history.
		st.startedAt = *pod.Status.StartTime
	}
	s.mu.Lock()
	ip, err := s.assignIP(key, pod, n)
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	st.ip = ip
	st.servers = s.startServers(key, pod, ip)
	s.mu.Lock()
	s.pods[key] = st
	s.mu.Unlock()
	s.log.V(2).Info("Pod running", "pod", klog.KObj(pod), "ip", ip, "node", n.name)
	return st, nil
}

// assignIP keeps an address the Pod already has (a restarted simulator)
// and otherwise takes the next free one. Caller holds s.mu.
func (s *Simulator) assignIP(key string, pod *corev1.Pod, n *node) (netip.Addr, error) {
	if pod.Spec.HostNetwork {
		return netip.MustParseAddr(n.ip), nil
	}
	if ip, err := netip.ParseAddr(pod.Status.PodIP); err == nil && s.prefix.Contains(ip) {
		if owner, used := s.ips[ip]; !used || owner == key {
			s.ips[ip] = key
			return ip, nil
		}
	}
	ip := s.nextIP
	for range 1 << (32 - s.prefix.Bits()) {
		ip = ip.Next()
		if !s.prefix.Contains(ip) {
			ip = s.prefix.Addr()
			continue
		}
		b := ip.As4()
		// .0 and .255 are legal on lo but look like network and broadcast
		// addresses to anyone reading a test log; 127.0.0.1 is taken.
		if b[3] == 0 || b[3] == 255 || ip == netip.MustParseAddr("127.0.0.1") {
			continue
		}
		if _, used := s.ips[ip]; used {
			continue
		}
		s.nextIP = ip
		s.ips[ip] = key
		return ip, nil
	}
	return netip.Addr{}, fmt.Errorf("no free address left in %s", s.prefix)
}

// terminate keeps a deleted Pod serving for its grace period (capped), then
// stops it and removes it, as the kubelet does once containers are gone.
func (s *Simulator) terminate(ctx context.Context, key string, pod *corev1.Pod, st *podState) error {
	s.mu.Lock()
	if st == nil {
		st = &podState{uid: pod.UID}
		s.pods[key] = st
	}
	if st.terminateAt.IsZero() {
		grace := int64(corev1.DefaultTerminationGracePeriodSeconds)
		if pod.DeletionGracePeriodSeconds != nil {
			grace = *pod.DeletionGracePeriodSeconds
		} else if pod.Spec.TerminationGracePeriodSeconds != nil {
			grace = *pod.Spec.TerminationGracePeriodSeconds
		}
		st.terminateAt = time.Now().Add(min(time.Duration(grace)*time.Second, s.opts.MaxTerminationGracePeriod))
	}
	wait := time.Until(st.terminateAt)
	s.mu.Unlock()
	if wait > 0 {
		s.queue.AddAfter(key, wait)
		return nil
	}
	s.mu.Lock()
	stopServers(st)
	s.mu.Unlock()
	err := s.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: ptr.To[int64](0),
		Preconditions:      &metav1.Preconditions{UID: &pod.UID},
	})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	if err == nil {
		s.log.V(2).Info("Pod terminated", "pod", klog.KObj(pod))
	}
	return err
}

// forgetPod stops a Pod's servers and frees its IP.
func (s *Simulator) forgetPod(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.pods[key]
	if !ok {
		return
	}
	stopServers(st)
	if s.ips[st.ip] == key {
		delete(s.ips, st.ip)
	}
	delete(s.pods, key)
}

// stopServers closes the Pod's listeners. Caller holds s.mu.
func stopServers(st *podState) {
	for _, srv := range st.servers {
		srv.Close()
	}
	st.servers = nil
}

// writeStatus writes the status a kubelet would report for a running Pod.
// It changes only what a kubelet owns and leaves other conditions (readiness
// gates) as they are; the update carries the resourceVersion, so a
// concurrent writer makes it fail with a conflict and retry on fresh data.
func (s *Simulator) writeStatus(ctx context.Context, key string, pod *corev1.Pod, n *node, st *podState) error {
	now := metav1.Now().Rfc3339Copy()
	status := pod.Status.DeepCopy()
	status.Phase = corev1.PodRunning
	status.HostIP = n.ip
	status.HostIPs = []corev1.HostIP{{IP: n.ip}}
	status.PodIP = st.ip.String()
	status.PodIPs = []corev1.PodIP{{IP: st.ip.String()}}
	if status.StartTime == nil {
		status.StartTime = ptr.To(st.startedAt)
	}

	s.mu.Lock()
	unready := s.unready[key]
	s.mu.Unlock()
	readyAt := st.runningSince.Add(s.opts.ContainersReadyDelay)
	containersReady := !unready && !time.Now().Before(readyAt)
	if !unready && !containersReady {
		s.queue.AddAfter(key, time.Until(readyAt))
	}

	status.ContainerStatuses = containerStatuses(pod, status.ContainerStatuses, st.startedAt, containersReady)
	setCondition(status, corev1.PodReadyToStartContainers, true, "", "", now)
	setCondition(status, corev1.PodInitialized, true, "", "", now)
	setCondition(status, corev1.PodScheduled, true, "", "", now)
	if containersReady {
		setCondition(status, corev1.ContainersReady, true, "", "", now)
	} else {
		setCondition(status, corev1.ContainersReady, false, "ContainersNotReady", unreadyMessage(pod), now)
	}
	ready, reason, msg := containersReady, "ContainersNotReady", unreadyMessage(pod)
	if containersReady {
		ready, reason, msg = readinessGates(pod, status)
	}
	setCondition(status, corev1.PodReady, ready, reason, msg, now)

	if equality.Semantic.DeepEqual(status, &pod.Status) {
		return nil
	}
	updated := pod.DeepCopy()
	updated.Status = *status
	_, err := s.client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, updated, metav1.UpdateOptions{})
	if err == nil {
		s.log.V(3).Info("Pod status written", "pod", klog.KObj(pod), "ready", ready)
	}
	return err
}

// readinessGates evaluates Ready for a Pod whose containers are ready, as
// the kubelet does: every spec.readinessGates condition must be True.
func readinessGates(pod *corev1.Pod, status *corev1.PodStatus) (bool, string, string) {
	var missing, notTrue []string
	for _, gate := range pod.Spec.ReadinessGates {
		c := findCondition(status, gate.ConditionType)
		switch {
		case c == nil:
			missing = append(missing, fmt.Sprintf("corresponding condition of pod readiness gate %q does not exist.", gate.ConditionType))
		case c.Status != corev1.ConditionTrue:
			notTrue = append(notTrue, fmt.Sprintf("the status of pod readiness gate %q is not \"True\", but %v", gate.ConditionType, c.Status))
		}
	}
	if msgs := append(missing, notTrue...); len(msgs) > 0 {
		return false, "ReadinessGatesNotReady", strings.Join(msgs, ", ")
	}
	return true, "", ""
}

func unreadyMessage(pod *corev1.Pod) string {
	names := make([]string, 0, len(pod.Spec.Containers))
	for _, c := range pod.Spec.Containers {
		names = append(names, c.Name)
	}
	sort.Strings(names)
	return fmt.Sprintf("containers with unready status: [%s]", strings.Join(names, " "))
}

func containerStatuses(pod *corev1.Pod, old []corev1.ContainerStatus, started metav1.Time, ready bool) []corev1.ContainerStatus {
	out := make([]corev1.ContainerStatus, 0, len(pod.Spec.Containers))
	for _, c := range pod.Spec.Containers {
		startedAt := started
		for _, o := range old {
			if o.Name == c.Name && o.State.Running != nil {
				startedAt = o.State.Running.StartedAt // keep what was reported
			}
		}
		id := sha256.Sum256([]byte(string(pod.UID) + "/" + c.Name))
		out = append(out, corev1.ContainerStatus{
			Name:        c.Name,
			Image:       c.Image,
			ImageID:     c.Image,
			ContainerID: "containerd://" + hex.EncodeToString(id[:]),
			Ready:       ready,
			Started:     ptr.To(true),
			State:       corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: startedAt}},
		})
	}
	return out
}

func findCondition(status *corev1.PodStatus, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range status.Conditions {
		if status.Conditions[i].Type == t {
			return &status.Conditions[i]
		}
	}
	return nil
}

// setCondition sets one kubelet-owned condition, moving its transition time
// only when its status changes, so an unchanged Pod compares equal and is
// not written again.
func setCondition(status *corev1.PodStatus, t corev1.PodConditionType, value bool, reason, message string, now metav1.Time) {
	cs := corev1.ConditionFalse
	if value {
		cs = corev1.ConditionTrue
	}
	c := findCondition(status, t)
	if c == nil {
		status.Conditions = append(status.Conditions, corev1.PodCondition{
			Type: t, Status: cs, Reason: reason, Message: message, LastTransitionTime: now,
		})
		return
	}
	if c.Status != cs {
		c.LastTransitionTime = now
	}
	c.Status, c.Reason, c.Message = cs, reason, message
}
