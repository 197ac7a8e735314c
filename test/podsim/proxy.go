package podsim

// A kube-proxy stand-in: every simulated Node answers on the nodePorts of
// NodePort and LoadBalancer Services and forwards to the Service's
// endpoints, read from EndpointSlices as kube-proxy reads them.
//
// It is a user-space proxy, so where kube-proxy rewrites packets it copies
// bytes, with these consequences a test may notice:
//   - A node port is only open while the Node has endpoints to send to;
//     otherwise connections are refused (kube-proxy REJECTs when a Service
//     has no endpoints and DROPs on a Node without local endpoints under
//     externalTrafficPolicy Local; a refusal is the faster failure for a
//     test, and a TCP health check sees it the same way).
//   - Endpoints see connections from 127.0.0.1, not from the client.
//   - A TCP connection sticks to the endpoint picked when it was accepted
//     and survives endpoint and Service changes (as conntrack keeps an
//     established flow) until either side closes it or the simulator stops.
//   - A UDP flow (datagrams from one client address) sticks to its endpoint
//     until it is idle for udpFlowIdle or the endpoint stops being used
//     (kube-proxy clears conntrack entries of stale UDP endpoints).

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
)

const (
	// dialTimeout bounds the connection to an endpoint. A simulated Pod
	// answers at once or refuses.
	dialTimeout = 3 * time.Second
	// udpFlowIdle is how long a UDP flow outlives its last datagram, as
	// conntrack's UDP timeout.
	udpFlowIdle = 30 * time.Second
)

// proxy plays kube-proxy for the simulated Nodes.
type proxy struct {
	log     klog.Logger
	nodes   []proxyNode
	udpIdle time.Duration
	// ctx ends when the proxy stops; it cancels dials in progress.
	ctx    context.Context
	cancel context.CancelFunc

	// Set by startProxy; nil in unit tests that call apply directly.
	services corelisters.ServiceLister
	slices   discoverylisters.EndpointSliceLister
	queue    workqueue.TypedRateLimitingInterface[string]
	done     chan struct{}

	// mu guards the frontends. It may be held while taking a frontend's
	// lock or tracker.mu, never the other way round.
	mu        sync.Mutex
	closed    bool
	frontends map[frontendKey]*frontendEntry

	tracker tracker
}

type proxyNode struct {
	name string
	ip   netip.Addr
}

// frontendKey is a socket the proxy listens on.
type frontendKey struct {
	addr  netip.AddrPort
	proto corev1.Protocol
}

func (k frontendKey) String() string { return string(k.proto) + "/" + k.addr.String() }

// frontendSpec is what a frontend should do.
type frontendSpec struct {
	service string // namespace/name, the owner
	port    string // the Service port's name, for logs
	// health makes it the Service's healthCheckNodePort server instead of
	// a forwarder.
	health bool
	// backends are where a forwarder sends new connections, round-robin.
	// Never empty for a forwarder.
	backends []netip.AddrPort
	// localEndpoints is what the health check server reports.
	localEndpoints int
}

type frontendEntry struct {
	spec frontendSpec
	fe   frontend
}

type frontend interface {
	// update takes a new spec of the same kind (health or not) and key.
	update(frontendSpec)
	// close stops listening. Forwarded TCP connections carry on.
	close()
}

// endpoint is one address of an EndpointSlice, for one Service port.
type endpoint struct {
	addr netip.AddrPort
	node string
	// ready means ready and not terminating; serving and terminating
	// are the EndpointSlice conditions, read as kube-proxy reads them.
	ready, serving, terminating bool
}

// startProxy watches Services and EndpointSlices and keeps the nodes'
// node ports in line with them until ctx ends; done closes when every
// socket is closed and every goroutine has returned.
func startProxy(ctx context.Context, client kubernetes.Interface, namespace string, nodes []node, log klog.Logger) (*proxy, error) {
	var pnodes []proxyNode
	for _, n := range nodes {
		if ip, err := netip.ParseAddr(n.ip); err == nil && ip.Is4() {
			pnodes = append(pnodes, proxyNode{name: n.name, ip: ip})
		}
	}
	p := newProxy(log.WithName("proxy"), pnodes)
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(namespace))
	services := factory.Core().V1().Services()
	endpointSlices := factory.Discovery().V1().EndpointSlices()
	p.services = services.Lister()
	p.slices = endpointSlices.Lister()
	p.queue = workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](20*time.Millisecond, 2*time.Second),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "podsim-proxy"})
	p.done = make(chan struct{})

	enqueueService := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			p.queue.Add(key)
		}
	}
	enqueueSlice := func(obj any) {
		if key, ok := sliceServiceKey(obj); ok {
			p.queue.Add(key)
		}
	}
	fail := func(err error) (*proxy, error) {
		p.queue.ShutDown()
		factory.Shutdown()
		p.stop()
		return nil, err
	}
	if _, err := services.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueueService,
		UpdateFunc: func(_, obj any) { enqueueService(obj) },
		DeleteFunc: enqueueService,
	}); err != nil {
		return fail(err)
	}
	if _, err := endpointSlices.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueueSlice,
		UpdateFunc: func(old, obj any) {
			// A slice relabelled to another Service leaves the first.
			enqueueSlice(old)
			enqueueSlice(obj)
		},
		DeleteFunc: enqueueSlice,
	}); err != nil {
		return fail(err)
	}
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), services.Informer().HasSynced, endpointSlices.Informer().HasSynced) {
		return fail(errors.New("podsim: service and endpointslice informers did not sync"))
	}

	worker := make(chan struct{})
	go func() {
		defer close(worker)
		for p.processNext() {
		}
	}()
	go func() {
		<-ctx.Done()
		p.queue.ShutDown()
		<-worker
		factory.Shutdown()
		p.stop()
		close(p.done)
	}()
	return p, nil
}

func newProxy(log klog.Logger, nodes []proxyNode) *proxy {
	ctx, cancel := context.WithCancel(context.Background())
	return &proxy{
		log:       log,
		nodes:     nodes,
		udpIdle:   udpFlowIdle,
		ctx:       ctx,
		cancel:    cancel,
		frontends: map[frontendKey]*frontendEntry{},
		tracker:   tracker{conns: map[io.Closer]struct{}{}},
	}
}

// sliceServiceKey is the namespace/name of the Service an EndpointSlice
// (or its tombstone) belongs to.
func sliceServiceKey(obj any) (string, bool) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok || s == nil {
		return "", false
	}
	name := s.Labels[discoveryv1.LabelServiceName]
	if name == "" {
		return "", false
	}
	return s.Namespace + "/" + name, true
}

func (p *proxy) processNext() bool {
	key, shutdown := p.queue.Get()
	if shutdown {
		return false
	}
	defer p.queue.Done(key)
	if err := p.sync(key); err != nil {
		p.log.Error(err, "Cannot serve the Service's node ports, retrying", "service", key)
		p.queue.AddRateLimited(key)
		return true
	}
	p.queue.Forget(key)
	return true
}

func (p *proxy) sync(key string) error {
	namespace, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	desired := map[frontendKey]frontendSpec{}
	svc, err := p.services.Services(namespace).Get(name)
	switch {
	case apierrors.IsNotFound(err):
		// Gone: close everything it had.
	case err != nil:
		return err
	default:
		eps, err := p.slices.EndpointSlices(namespace).List(labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: name}))
		if err != nil {
			return err
		}
		desired = desiredFrontends(svc, eps, p.nodes)
	}
	return p.apply(key, desired)
}

// desiredFrontends are the sockets the Nodes should have open for svc:
// for every TCP or UDP port with a nodePort, one forwarder on each Node
// that has endpoints to send to, and under externalTrafficPolicy Local a
// health check server on healthCheckNodePort on every Node.
func desiredFrontends(svc *corev1.Service, epSlices []*discoveryv1.EndpointSlice, nodes []proxyNode) map[frontendKey]frontendSpec {
	out := map[frontendKey]frontendSpec{}
	if svc == nil || (svc.Spec.Type != corev1.ServiceTypeNodePort && svc.Spec.Type != corev1.ServiceTypeLoadBalancer) {
		return out
	}
	key := svc.Namespace + "/" + svc.Name
	local := svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
	for _, sp := range svc.Spec.Ports {
		proto := sp.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		if sp.NodePort <= 0 || sp.NodePort > 65535 || (proto != corev1.ProtocolTCP && proto != corev1.ProtocolUDP) {
			continue
		}
		eps := collectEndpoints(epSlices, sp.Name, proto)
		for _, n := range nodes {
			backends := selectEndpoints(eps, local, n.name)
			if len(backends) == 0 {
				continue // refused
			}
			out[frontendKey{netip.AddrPortFrom(n.ip, uint16(sp.NodePort)), proto}] = frontendSpec{
				service: key, port: sp.Name, backends: backends,
			}
		}
	}
	if hc := svc.Spec.HealthCheckNodePort; local && hc > 0 && hc <= 65535 {
		for _, n := range nodes {
			k := frontendKey{netip.AddrPortFrom(n.ip, uint16(hc)), corev1.ProtocolTCP}
			if _, taken := out[k]; taken {
				continue // invalid Service; the forwarder wins
			}
			out[k] = frontendSpec{service: key, port: "healthCheckNodePort", health: true, localEndpoints: localReadyEndpoints(epSlices, n.name)}
		}
	}
	return out
}

// collectEndpoints merges the IPv4 endpoints of the slices for one Service
// port (matched by name and protocol), sorted by address. An address in
// more than one slice counts once, from the slice whose name sorts first.
// Conditions read as kube-proxy reads them: a missing ready or serving
// means true, a missing terminating false.
func collectEndpoints(epSlices []*discoveryv1.EndpointSlice, portName string, proto corev1.Protocol) []endpoint {
	sorted := make([]*discoveryv1.EndpointSlice, 0, len(epSlices))
	for _, s := range epSlices {
		if s != nil && s.AddressType == discoveryv1.AddressTypeIPv4 {
			sorted = append(sorted, s)
		}
	}
	slices.SortFunc(sorted, func(a, b *discoveryv1.EndpointSlice) int {
		return cmp.Compare(a.Name, b.Name)
	})
	var out []endpoint
	seen := map[netip.AddrPort]bool{}
	for _, s := range sorted {
		port, ok := slicePort(s.Ports, portName, proto)
		if !ok {
			continue
		}
		for _, e := range s.Endpoints {
			if len(e.Addresses) == 0 {
				continue
			}
			ip, err := netip.ParseAddr(e.Addresses[0])
			if err != nil || !ip.Is4() {
				continue
			}
			addr := netip.AddrPortFrom(ip, port)
			if seen[addr] {
				continue
			}
			seen[addr] = true
			terminating := ptr.Deref(e.Conditions.Terminating, false)
			out = append(out, endpoint{
				addr:        addr,
				node:        ptr.Deref(e.NodeName, ""),
				ready:       ptr.Deref(e.Conditions.Ready, true) && !terminating,
				serving:     ptr.Deref(e.Conditions.Serving, true),
				terminating: terminating,
			})
		}
	}
	slices.SortFunc(out, func(a, b endpoint) int { return a.addr.Compare(b.addr) })
	return out
}

func slicePort(ports []discoveryv1.EndpointPort, name string, proto corev1.Protocol) (uint16, bool) {
	for _, p := range ports {
		if ptr.Deref(p.Name, "") != name || ptr.Deref(p.Protocol, corev1.ProtocolTCP) != proto {
			continue
		}
		if n := ptr.Deref(p.Port, 0); n > 0 && n <= 65535 {
			return uint16(n), true
		}
	}
	return 0, false
}

// selectEndpoints picks where a Node sends new connections, as kube-proxy
// does: the ready endpoints (with local, only those on the Node), or if
// there are none, the serving terminating ones (again only local ones with
// local). Empty means the Node refuses.
func selectEndpoints(eps []endpoint, local bool, nodeName string) []netip.AddrPort {
	var ready, terminating []netip.AddrPort
	for _, e := range eps {
		if local && e.node != nodeName {
			continue
		}
		switch {
		case e.ready:
			ready = append(ready, e.addr)
		case e.serving && e.terminating:
			terminating = append(terminating, e.addr)
		}
	}
	if len(ready) > 0 {
		return ready
	}
	return terminating
}

// localReadyEndpoints counts the Service's ready endpoints (addresses, over
// all ports) on the Node, which is what kube-proxy's health check server
// reports.
func localReadyEndpoints(epSlices []*discoveryv1.EndpointSlice, nodeName string) int {
	ips := map[string]bool{}
	for _, s := range epSlices {
		if s == nil || s.AddressType != discoveryv1.AddressTypeIPv4 {
			continue
		}
		for _, e := range s.Endpoints {
			if len(e.Addresses) == 0 || ptr.Deref(e.NodeName, "") != nodeName ||
				!ptr.Deref(e.Conditions.Ready, true) || ptr.Deref(e.Conditions.Terminating, false) {
				continue
			}
			ips[e.Addresses[0]] = true
		}
	}
	return len(ips)
}

// apply makes the frontends of Service key those of desired: it closes
// what is no longer wanted, updates what stays and opens what is new. A
// socket it cannot open (taken by another Service during a change, or by
// another process) is reported; the rest is applied anyway.
func (p *proxy) apply(key string, desired map[frontendKey]frontendSpec) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	for k, e := range p.frontends {
		if e.spec.service != key {
			continue
		}
		spec, ok := desired[k]
		if ok && spec.health == e.spec.health {
			e.fe.update(spec)
			e.spec = spec
			continue
		}
		e.fe.close()
		delete(p.frontends, k)
		p.log.V(2).Info("Node port closed", "service", key, "port", e.spec.port, "listen", k)
	}
	var errs []error
	for k, spec := range desired {
		if e, ok := p.frontends[k]; ok {
			if e.spec.service != key {
				errs = append(errs, fmt.Errorf("%s is taken by service %s", k, e.spec.service))
			}
			continue
		}
		fe, err := p.open(k, spec)
		if err != nil {
			errs = append(errs, fmt.Errorf("port %q: %w", spec.port, err))
			continue
		}
		p.frontends[k] = &frontendEntry{spec: spec, fe: fe}
		p.log.V(2).Info("Node port open", "service", key, "port", spec.port, "listen", k, "backends", spec.backends)
	}
	return errors.Join(errs...)
}

// open starts a frontend. Caller holds p.mu.
func (p *proxy) open(k frontendKey, spec frontendSpec) (frontend, error) {
	switch {
	case spec.health:
		return p.openHealth(k, spec)
	case k.proto == corev1.ProtocolTCP:
		return p.openTCP(k, spec)
	case k.proto == corev1.ProtocolUDP:
		return p.openUDP(k, spec)
	}
	return nil, fmt.Errorf("protocol %s not supported", k.proto)
}

// stop closes every socket and waits for every goroutine.
func (p *proxy) stop() {
	p.mu.Lock()
	p.closed = true
	fes := p.frontends
	p.frontends = nil
	p.mu.Unlock()
	for _, e := range fes {
		e.fe.close()
	}
	p.cancel()
	p.tracker.stop()
}

// tracker owns the proxy's goroutines and forwarded connections, so that
// stop leaves none behind. Its lock is taken last.
type tracker struct {
	mu     sync.Mutex
	closed bool
	conns  map[io.Closer]struct{}
	wg     sync.WaitGroup
}

// spawn runs f in a goroutine, unless the proxy has stopped.
func (t *tracker) spawn(f func()) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.wg.Go(f)
	return true
}

// hold registers c to be closed on stop; if the proxy has stopped it
// closes c at once and returns false.
func (t *tracker) hold(c io.Closer) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		c.Close()
		return false
	}
	t.conns[c] = struct{}{}
	return true
}

// release closes c and forgets it.
func (t *tracker) release(c io.Closer) {
	c.Close()
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
}

func (t *tracker) stop() {
	t.mu.Lock()
	t.closed = true
	conns := t.conns
	t.conns = nil
	t.mu.Unlock()
	for c := range conns {
		c.Close()
	}
	t.wg.Wait()
}

// roundRobin hands out backends in turn.
type roundRobin struct {
	mu       sync.Mutex
	backends []netip.AddrPort
	next     int
}

func (r *roundRobin) set(backends []netip.AddrPort) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.backends = backends
}

func (r *roundRobin) pick() (netip.AddrPort, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.backends) == 0 {
		return netip.AddrPort{}, false
	}
	b := r.backends[r.next%len(r.backends)]
	r.next = (r.next + 1) % len(r.backends)
	return b, true
}

// tcpFrontend accepts connections on a node port and splices each to a
// backend.
type tcpFrontend struct {
	p  *proxy
	ln net.Listener
	rr roundRobin
}

func (p *proxy) openTCP(k frontendKey, spec frontendSpec) (frontend, error) {
	ln, err := net.Listen("tcp4", k.addr.String())
	if err != nil {
		return nil, err
	}
	f := &tcpFrontend{p: p, ln: ln}
	f.rr.set(spec.backends)
	if !p.tracker.spawn(f.serve) {
		ln.Close()
		return nil, net.ErrClosed
	}
	return f, nil
}

func (f *tcpFrontend) update(spec frontendSpec) { f.rr.set(spec.backends) }
func (f *tcpFrontend) close()                   { f.ln.Close() }

func (f *tcpFrontend) serve() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors, say: back off a little.
			f.p.log.V(2).Info("Accept failed", "listen", f.ln.Addr(), "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		backend, ok := f.rr.pick()
		if !ok || !f.p.tracker.hold(c) {
			c.Close()
			continue
		}
		if !f.p.tracker.spawn(func() { f.p.forwardTCP(c, backend) }) {
			f.p.tracker.release(c)
		}
	}
}

// forwardTCP connects client to backend and copies both ways until both
// sides have closed (a half-close is passed on) or either fails.
func (p *proxy) forwardTCP(client net.Conn, backend netip.AddrPort) {
	defer p.tracker.release(client)
	d := net.Dialer{Timeout: dialTimeout}
	server, err := d.DialContext(p.ctx, "tcp4", backend.String())
	if err != nil {
		// The endpoint's refusal, passed on as a reset as it would be
		// through DNAT.
		if tc, ok := client.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		p.log.V(2).Info("Cannot reach endpoint", "from", client.LocalAddr(), "endpoint", backend, "err", err)
		return
	}
	if !p.tracker.hold(server) {
		return
	}
	defer p.tracker.release(server)

	var wg sync.WaitGroup
	copyHalf := func(dst, src net.Conn) {
		if _, err := io.Copy(dst, src); err != nil {
			// A reset, or a socket closed by stop: end both directions.
			client.Close()
			server.Close()
			return
		}
		// src sent FIN: pass it on and let the other direction finish.
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		} else {
			dst.Close()
		}
	}
	wg.Go(func() { copyHalf(server, client) })
	copyHalf(client, server)
	wg.Wait()
}

// udpFrontend relays datagrams on a node port. Each client address is a
// flow with a socket of its own towards the backend picked for it.
type udpFrontend struct {
	p    *proxy
	conn *net.UDPConn
	rr   roundRobin

	mu    sync.Mutex
	flows map[netip.AddrPort]*udpFlow // nil once closed
}

type udpFlow struct {
	backend netip.AddrPort
	conn    *net.UDPConn
	last    atomic.Int64 // unix nanoseconds of the last datagram either way
}

func (p *proxy) openUDP(k frontendKey, spec frontendSpec) (frontend, error) {
	conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(k.addr))
	if err != nil {
		return nil, err
	}
	f := &udpFrontend{p: p, conn: conn, flows: map[netip.AddrPort]*udpFlow{}}
	f.rr.set(spec.backends)
	if !p.tracker.spawn(f.serve) {
		conn.Close()
		return nil, net.ErrClosed
	}
	return f, nil
}

// update also ends the flows to backends no longer used, so their next
// datagram goes to a current one.
func (f *udpFrontend) update(spec frontendSpec) {
	f.rr.set(spec.backends)
	f.mu.Lock()
	defer f.mu.Unlock()
	for client, fl := range f.flows {
		if !slices.Contains(spec.backends, fl.backend) {
			fl.conn.Close()
			delete(f.flows, client)
		}
	}
}

func (f *udpFrontend) close() {
	f.conn.Close()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, fl := range f.flows {
		fl.conn.Close()
	}
	f.flows = nil
}

func (f *udpFrontend) serve() {
	buf := make([]byte, 64<<10)
	for {
		n, client, err := f.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			f.p.log.V(2).Info("UDP read failed", "listen", f.conn.LocalAddr(), "err", err)
			time.Sleep(time.Millisecond)
			continue
		}
		fl := f.flow(client)
		if fl == nil {
			continue // dropped
		}
		fl.last.Store(time.Now().UnixNano())
		// An error (the endpoint's port closed) loses the datagram, as
		// UDP may.
		fl.conn.Write(buf[:n])
	}
}

// flow finds or starts the flow of a client.
func (f *udpFrontend) flow(client netip.AddrPort) *udpFlow {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.flows == nil {
		return nil
	}
	if fl := f.flows[client]; fl != nil {
		return fl
	}
	backend, ok := f.rr.pick()
	if !ok {
		return nil
	}
	conn, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(backend))
	if err != nil {
		f.p.log.V(2).Info("Cannot reach endpoint", "from", client, "endpoint", backend, "err", err)
		return nil
	}
	fl := &udpFlow{backend: backend, conn: conn}
	fl.last.Store(time.Now().UnixNano())
	if !f.p.tracker.spawn(func() { f.reply(client, fl) }) {
		conn.Close()
		return nil
	}
	f.flows[client] = fl
	return fl
}

// reply relays the backend's datagrams to the client until the flow is
// idle for udpIdle or closed.
func (f *udpFrontend) reply(client netip.AddrPort, fl *udpFlow) {
	defer f.endFlow(client, fl)
	buf := make([]byte, 64<<10)
	for {
		fl.conn.SetReadDeadline(time.Unix(0, fl.last.Load()).Add(f.p.udpIdle))
		n, err := fl.conn.Read(buf)
		switch {
		case err == nil:
			fl.last.Store(time.Now().UnixNano())
			f.conn.WriteToUDPAddrPort(buf[:n], client)
		case errors.Is(err, syscall.ECONNREFUSED):
			// An earlier datagram found the endpoint's port closed.
		case errors.Is(err, os.ErrDeadlineExceeded):
			if time.Since(time.Unix(0, fl.last.Load())) >= f.p.udpIdle {
				return
			}
		default:
			return // closed
		}
	}
}

func (f *udpFrontend) endFlow(client netip.AddrPort, fl *udpFlow) {
	fl.conn.Close()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.flows != nil && f.flows[client] == fl {
		delete(f.flows, client)
	}
}

// healthFrontend answers on a healthCheckNodePort as kube-proxy does: 200
// while the Node has ready endpoints of the Service, 503 otherwise.
type healthFrontend struct {
	srv   *http.Server
	local atomic.Int64
}

func (p *proxy) openHealth(k frontendKey, spec frontendSpec) (frontend, error) {
	ln, err := net.Listen("tcp4", k.addr.String())
	if err != nil {
		return nil, err
	}
	namespace, name, _ := cache.SplitMetaNamespaceKey(spec.service)
	f := &healthFrontend{}
	f.local.Store(int64(spec.localEndpoints))
	f.srv = &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			n := f.local.Load()
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("X-Content-Type-Options", "nosniff")
			w.Header().Set("X-Load-Balancing-Endpoint-Weight", strconv.FormatInt(n, 10))
			if n > 0 {
				w.WriteHeader(http.StatusOK)
			} else {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
			fmt.Fprintf(w, `{"service":{"namespace":%q,"name":%q},"localEndpoints":%d,"serviceProxyHealthy":true}`, namespace, name, n)
		}),
	}
	if !p.tracker.spawn(func() { f.srv.Serve(ln) }) {
		ln.Close()
		return nil, net.ErrClosed
	}
	return f, nil
}

func (f *healthFrontend) update(spec frontendSpec) { f.local.Store(int64(spec.localEndpoints)) }
func (f *healthFrontend) close()                   { f.srv.Close() }
