package emulator

import (
	"cmp"
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"k8s.io/klog/v2"

	"clb-direct/cloud"
	"clb-direct/cloud/fake"
)

// dialTimeout bounds the connection to a target; the client's connection
// is closed when it fails, as a CLB resets one it cannot forward.
const dialTimeout = 3 * time.Second

// dataPlane forwards traffic from each listener's VIP:port to the
// listener's targets. Every ReconcileInterval it re-reads the account:
// listeners that appeared get a socket, listeners that are gone lose theirs
// (and their connections), and every forwarder gets the current targets
// with their weights and health.
//
// A target registered by EniIp is reached at its IP, one registered by
// InstanceId at the instance's address (fake.Cloud.SetInstanceAddress), on
// the target's port; an instance without a known address gets no traffic.
// A new TCP connection or UDP flow goes to an eligible target (weight > 0,
// and healthy, or any health if the listener checks none), chosen by the
// listener's scheduler: smooth weighted round robin (WRR) or fewest active
// connections per weight (LEAST_CONN); with session persistence the same
// client IP keeps its target for SessionExpireTime while that target stays
// eligible. With no eligible target the connection is closed at once. Connections already open are never moved: a target
// whose weight drops to 0, or that is deregistered, drains.
type dataPlane struct {
	cloud   *fake.Cloud
	rescan  time.Duration
	udpIdle time.Duration

	mu         sync.Mutex
	forwarders map[string]*forwarder // by listener ID
}

func newDataPlane(c *fake.Cloud, rescan, udpIdle time.Duration) *dataPlane {
	return &dataPlane{cloud: c, rescan: rescan, udpIdle: udpIdle, forwarders: map[string]*forwarder{}}
}

func (d *dataPlane) run(ctx context.Context) {
	tick := time.NewTicker(d.rescan)
	defer tick.Stop()
	for {
		d.reconcile()
		select {
		case <-ctx.Done():
			d.mu.Lock()
			fs := d.forwarders
			d.forwarders = map[string]*forwarder{}
			d.mu.Unlock()
			for _, f := range fs {
				f.close()
			}
			return
		case <-tick.C:
		}
	}
}

func (d *dataPlane) reconcile() {
	want := map[string]bool{}
	var stale []*forwarder
	snap := d.cloud.Snapshot()
	d.mu.Lock()
	for _, lb := range snap.LoadBalancers {
		if len(lb.VIPs) == 0 {
			continue // still being created
		}
		for _, l := range lb.Listeners {
			want[l.ID] = true
			addr := net.JoinHostPort(lb.VIPs[0], strconv.Itoa(int(l.Port)))
			f := d.forwarders[l.ID]
			if f == nil {
				f = &forwarder{
					lbID: lb.ID, listenerID: l.ID, protocol: l.Protocol, addr: addr, udpIdle: d.udpIdle,
					targets: map[string]*fwdTarget{}, sticky: map[string]stickyEntry{},
					conns: map[io.Closer]struct{}{}, flows: map[string]*udpFlow{},
				}
				f.ctx, f.cancel = context.WithCancel(context.Background())
				d.forwarders[l.ID] = f
			}
			f.update(l, snap.Instances)
			f.listen()
		}
	}
	for id, f := range d.forwarders {
		if !want[id] {
			delete(d.forwarders, id)
			stale = append(stale, f)
		}
	}
	d.mu.Unlock()
	for _, f := range stale {
		f.close()
	}
}

// ForwarderStatus describes one listener's socket in the data plane.
type ForwarderStatus struct {
	LoadBalancerID string
	ListenerID     string
	Protocol       cloud.Protocol
	// Address is VIP:port.
	Address   string
	Listening bool
	// Error is why the socket could not be opened (it is retried).
	Error   string `json:",omitempty"`
	Targets []TargetStatus
}

// TargetStatus is a target as the forwarder sees it.
type TargetStatus struct {
	Address  string
	Weight   int32
	Healthy  bool
	Eligible bool
	// Active counts open connections (TCP) or flows (UDP), including
	// those of a target that is draining.
	Active int
}

// status lists the forwarders by load balancer and listener ID.
func (d *dataPlane) status() []ForwarderStatus {
	d.mu.Lock()
	fs := make([]*forwarder, 0, len(d.forwarders))
	for _, f := range d.forwarders {
		fs = append(fs, f)
	}
	d.mu.Unlock()
	out := make([]ForwarderStatus, 0, len(fs))
	for _, f := range fs {
		out = append(out, f.status())
	}
	slices.SortFunc(out, func(a, b ForwarderStatus) int {
		return cmp.Or(cmp.Compare(a.LoadBalancerID, b.LoadBalancerID), cmp.Compare(a.ListenerID, b.ListenerID))
	})
	return out
}

// forwarder is one listener's socket and its choice of targets.
type forwarder struct {
	lbID, listenerID string
	protocol         cloud.Protocol
	addr             string
	udpIdle          time.Duration
	wg               sync.WaitGroup
	// ctx ends with the forwarder, cancelling dials in progress.
	ctx    context.Context
	cancel context.CancelFunc

	mu sync.Mutex
	// targets holds every target the forwarder knows, by address,
	// including deregistered ones that still have connections; order is
	// the listener's current order of registration.
	targets   map[string]*fwdTarget
	order     []*fwdTarget
	scheduler string
	session   time.Duration
	sticky    map[string]stickyEntry
	ln        net.Listener
	pc        net.PacketConn
	lastErr   error
	closed    bool
	conns     map[io.Closer]struct{}
	flows     map[string]*udpFlow
}

type fwdTarget struct {
	addr     string
	weight   int32
	healthy  bool
	eligible bool
	// current is the smooth WRR running weight.
	current int64
	active  int
}

type stickyEntry struct {
	target  *fwdTarget
	expires time.Time
}

// update takes the listener's current settings and targets; instances
// maps instance IDs to their addresses.
func (f *forwarder) update(l fake.ListenerState, instances map[string]string) {
	checked := l.HealthCheck == nil || l.HealthCheck.Enabled
	f.mu.Lock()
	defer f.mu.Unlock()
	f.scheduler = l.Scheduler
	f.session = time.Duration(l.SessionExpireSeconds) * time.Second
	present := map[string]bool{}
	f.order = f.order[:0]
	for _, b := range l.Backends {
		addr, ok := targetAddress(b.Backend, instances)
		if !ok {
			continue // an instance whose address is unknown
		}
		t := f.targets[addr]
		if t == nil {
			t = &fwdTarget{addr: addr}
			f.targets[addr] = t
		}
		t.weight, t.healthy = b.Weight, b.Healthy || !checked
		t.eligible = t.weight > 0 && t.healthy
		present[addr] = true
		f.order = append(f.order, t)
	}
	for addr, t := range f.targets {
		if !present[addr] {
			t.eligible = false
			if t.active == 0 {
				delete(f.targets, addr)
			}
		}
	}
}

// pick chooses the target of a new connection or flow from client, and
// counts it active; nil when no target is eligible.
func (f *forwarder) pick(client string) *fwdTarget {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	if e, ok := f.sticky[client]; ok && f.session > 0 && now.Before(e.expires) && e.target.eligible {
		e.target.active++
		f.sticky[client] = stickyEntry{target: e.target, expires: now.Add(f.session)}
		return e.target
	}
	var best *fwdTarget
	if f.scheduler == "LEAST_CONN" {
		for _, t := range f.order {
			// Fewest active per weight: a/wa < b/wb without division.
			if t.eligible && (best == nil || int64(t.active)*int64(best.weight) < int64(best.active)*int64(t.weight)) {
				best = t
			}
		}
	} else {
		// Smooth weighted round robin (as nginx): every eligible target
		// gains its weight, the richest is chosen and pays the total.
		var total int64
		for _, t := range f.order {
			if !t.eligible {
				continue
			}
			t.current += int64(t.weight)
			total += int64(t.weight)
			if best == nil || t.current > best.current {
				best = t
			}
		}
		if best != nil {
			best.current -= total
		}
	}
	if best == nil {
		return nil
	}
	best.active++
	if f.session > 0 {
		f.sticky[client] = stickyEntry{target: best, expires: now.Add(f.session)}
	}
	return best
}

// release ends a connection or flow to t.
func (f *forwarder) release(t *fwdTarget) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t.active--
	if t.active == 0 && f.targets[t.addr] == t && !slices.Contains(f.order, t) {
		delete(f.targets, t.addr) // deregistered and drained
	}
}

// listen opens the socket if it is not open yet; a failure is logged
// once and retried on the next reconcile.
func (f *forwarder) listen() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed || f.ln != nil || f.pc != nil {
		return
	}
	var err error
	if f.protocol == cloud.ProtocolUDP {
		f.pc, err = net.ListenPacket("udp", f.addr)
	} else {
		f.ln, err = net.Listen("tcp", f.addr)
	}
	if err != nil {
		if f.lastErr == nil || f.lastErr.Error() != err.Error() {
			klog.ErrorS(err, "Data plane cannot listen", "loadBalancer", f.lbID, "listener", f.listenerID, "address", f.addr)
		}
		f.lastErr = err
		return
	}
	f.lastErr = nil
	klog.V(2).InfoS("Data plane listening", "loadBalancer", f.lbID, "listener", f.listenerID, "protocol", f.protocol, "address", f.addr)
	if f.pc != nil {
		pc := f.pc
		f.wg.Go(func() { f.serveUDP(pc) })
	} else {
		ln := f.ln
		f.wg.Go(func() { f.serveTCP(ln) })
	}
}

// close stops listening and ends every connection and flow: the listener
// is gone.
func (f *forwarder) close() {
	f.cancel()
	f.mu.Lock()
	f.closed = true
	if f.ln != nil {
		f.ln.Close()
	}
	if f.pc != nil {
		f.pc.Close()
	}
	for c := range f.conns {
		c.Close()
	}
	for _, fl := range f.flows {
		fl.upstream.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

// track registers a connection to close with the forwarder; false if the
// forwarder is closing.
func (f *forwarder) track(c io.Closer) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *forwarder) untrack(c io.Closer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.conns, c)
}

func (f *forwarder) status() ForwarderStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := ForwarderStatus{
		LoadBalancerID: f.lbID, ListenerID: f.listenerID, Protocol: f.protocol, Address: f.addr,
		Listening: f.ln != nil || f.pc != nil, Targets: []TargetStatus{},
	}
	if f.lastErr != nil {
		st.Error = f.lastErr.Error()
	}
	seen := map[*fwdTarget]bool{}
	add := func(t *fwdTarget) {
		if !seen[t] {
			seen[t] = true
			st.Targets = append(st.Targets, TargetStatus{Address: t.addr, Weight: t.weight, Healthy: t.healthy, Eligible: t.eligible, Active: t.active})
		}
	}
	for _, t := range f.order {
		add(t)
	}
	for _, t := range f.targets {
		add(t) // draining
	}
	return st
}

func (f *forwarder) serveTCP(ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				klog.ErrorS(err, "Data plane accept failed", "address", f.addr)
			}
			return
		}
		if !f.track(conn) {
			conn.Close()
			return
		}
		f.wg.Go(func() { f.forwardTCP(conn) })
	}
}

func (f *forwarder) forwardTCP(client net.Conn) {
	defer f.untrack(client)
	defer client.Close()
	host, _, _ := net.SplitHostPort(client.RemoteAddr().String())
	t := f.pick(host)
	if t == nil {
		klog.V(4).InfoS("Data plane has no eligible target", "listener", f.listenerID, "client", client.RemoteAddr())
		return
	}
	defer f.release(t)
	dialer := net.Dialer{Timeout: dialTimeout}
	upstream, err := dialer.DialContext(f.ctx, "tcp", t.addr)
	if err != nil {
		klog.V(2).InfoS("Data plane cannot reach target", "listener", f.listenerID, "target", t.addr, "err", err)
		return
	}
	if !f.track(upstream) {
		upstream.Close()
		return
	}
	defer f.untrack(upstream)
	defer upstream.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		pipe(upstream, client)
	}()
	pipe(client, upstream)
	<-done
}

// pipe copies src to dst, then half-closes dst so that the other side
// sees the end of this direction while the other direction goes on.
func pipe(dst, src net.Conn) {
	_, _ = io.Copy(dst, src)
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	} else {
		_ = dst.Close()
	}
}

// udpFlow is the datagrams of one client address through one target.
type udpFlow struct {
	upstream *net.UDPConn
	target   *fwdTarget
	mu       sync.Mutex
	last     time.Time
}

func (fl *udpFlow) touch() {
	fl.mu.Lock()
	fl.last = time.Now()
	fl.mu.Unlock()
}

func (fl *udpFlow) idleSince() time.Time {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	return fl.last
}

func (f *forwarder) serveUDP(pc net.PacketConn) {
	buf := make([]byte, 64<<10)
	for {
		n, client, err := pc.ReadFrom(buf)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				klog.ErrorS(err, "Data plane UDP read failed", "address", f.addr)
			}
			return
		}
		fl := f.flow(pc, client)
		if fl == nil {
			continue // no eligible target: dropped
		}
		fl.touch()
		_, _ = fl.upstream.Write(buf[:n])
	}
}

// flow returns the client's flow, starting one to a chosen target if it
// has none.
func (f *forwarder) flow(pc net.PacketConn, client net.Addr) *udpFlow {
	key := client.String()
	f.mu.Lock()
	fl := f.flows[key]
	f.mu.Unlock()
	if fl != nil {
		return fl
	}
	host, _, _ := net.SplitHostPort(key)
	t := f.pick(host)
	if t == nil {
		return nil
	}
	raddr, err := net.ResolveUDPAddr("udp", t.addr)
	var upstream *net.UDPConn
	if err == nil {
		upstream, err = net.DialUDP("udp", nil, raddr)
	}
	if err != nil {
		f.release(t)
		klog.V(2).InfoS("Data plane cannot reach target", "listener", f.listenerID, "target", t.addr, "err", err)
		return nil
	}
	fl = &udpFlow{upstream: upstream, target: t, last: time.Now()}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		upstream.Close()
		f.release(t)
		return nil
	}
	f.flows[key] = fl
	f.mu.Unlock()
	f.wg.Go(func() { f.relayReplies(pc, client, key, fl) })
	return fl
}

// relayReplies sends the target's datagrams back to the client until the
// flow has been idle for udpIdle or the forwarder closes.
func (f *forwarder) relayReplies(pc net.PacketConn, client net.Addr, key string, fl *udpFlow) {
	defer func() {
		f.mu.Lock()
		if f.flows[key] == fl {
			delete(f.flows, key)
		}
		f.mu.Unlock()
		fl.upstream.Close()
		f.release(fl.target)
	}()
	buf := make([]byte, 64<<10)
	for {
		_ = fl.upstream.SetReadDeadline(fl.idleSince().Add(f.udpIdle))
		n, err := fl.upstream.Read(buf)
		if err != nil {
			var netErr net.Error
			if errors.As(err, &netErr) && netErr.Timeout() && time.Since(fl.idleSince()) < f.udpIdle {
				continue // the client spoke meanwhile
			}
			if errors.Is(err, syscall.ECONNREFUSED) {
				// The target's port is closed (ICMP port unreachable): the
				// flow goes on, as the client may keep sending.
				continue
			}
			return
		}
		fl.touch()
		if _, err := pc.WriteTo(buf[:n], client); err != nil {
			return
		}
	}
}
