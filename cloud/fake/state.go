package fake

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"clb-direct/cloud"
)

// loadBalancer, listener and backend are the account's state. Listeners and
// backends keep their order of creation, which is the order the account
// reports them in.
type loadBalancer struct {
	cloud.LoadBalancer
	// seq orders CLBs by creation.
	seq int
	// clientToken is the token the CLB was created with, and created the
	// task that created it, which a retry with that token returns.
	clientToken string
	created     *task
	listeners   []*listener
}

type listener struct {
	cloud.Listener
	backends []*backend
}

type backend struct {
	cloud.Backend
	healthy bool
	detail  string
}

func (lb *loadBalancer) export() cloud.LoadBalancer {
	out := lb.LoadBalancer
	out.VIPs = slices.Clone(lb.VIPs)
	out.Tags = maps.Clone(lb.Tags)
	return out
}

func (lb *loadBalancer) listener(id string) *listener {
	for _, l := range lb.listeners {
		if l.ID == id {
			return l
		}
	}
	return nil
}

func (l *listener) export() cloud.Listener {
	out := l.Listener
	if l.HealthCheck != nil {
		hc := *l.HealthCheck
		out.HealthCheck = &hc
	}
	return out
}

func (l *listener) backend(key cloud.BackendKey) *backend {
	for _, b := range l.backends {
		if b.Key() == key {
			return b
		}
	}
	return nil
}

// loadBalancersInOrder returns the CLBs in order of creation.
func (c *Cloud) loadBalancersInOrder() []*loadBalancer {
	out := slices.Collect(maps.Values(c.lbs))
	slices.SortFunc(out, func(a, b *loadBalancer) int { return a.seq - b.seq })
	return out
}

// newLoadBalancer adds a CLB under id, or under a fresh ID if id is empty.
func (c *Cloud) newLoadBalancer(id string, lb cloud.LoadBalancer) *loadBalancer {
	c.lbSeq++
	for id == "" {
		candidate := fmt.Sprintf("lb-%08d", c.lbSeq)
		if _, taken := c.lbs[candidate]; !taken {
			id = candidate
			break
		}
		c.lbSeq++ // a test added a CLB under this ID
	}
	lb.ID = id
	out := &loadBalancer{LoadBalancer: lb, seq: c.lbSeq}
	c.lbs[id] = out
	return out
}

// vip is the address of the seq-th CLB, unique for the first 64,000: public
// ones in 198.18.0.0/15, reserved for benchmarks and so never a real host,
// internal ones in 10.0.0.0/8.
func vip(seq int, internal bool) string {
	hi, lo := seq/250%256, seq%250+1
	if internal {
		return fmt.Sprintf("10.200.%d.%d", hi, lo)
	}
	return fmt.Sprintf("198.18.%d.%d", hi, lo)
}

func (c *Cloud) newListenerID() string {
	c.listenerSeq++
	return fmt.Sprintf("lbl-%08d", c.listenerSeq)
}

// removeLoadBalancer forgets the CLB, its listeners and its ClientToken.
func (c *Cloud) removeLoadBalancer(lb *loadBalancer) {
	delete(c.lbs, lb.ID)
	if lb.clientToken != "" {
		delete(c.tokens, lb.clientToken)
	}
}

// State is a deep copy of the account: what the emulator's health checker
// and data plane serve, and what a test compares to account for every cloud
// object. CLBs, listeners and backends are in order of creation; a CLB whose
// creation is still running is there, without VIPs.
type State struct {
	LoadBalancers []LoadBalancerState
	// Instances maps the ID of each CVM instance whose address the account
	// knows (see SetInstanceAddress) to its private IP; nil when none.
	Instances map[string]string
}

type LoadBalancerState struct {
	cloud.LoadBalancer
	Listeners []ListenerState
}

type ListenerState struct {
	cloud.Listener
	Backends []BackendState
}

type BackendState struct {
	cloud.Backend
	Healthy      bool
	HealthDetail string
}

// Snapshot returns the current state, with every task that is due completed.
func (c *Cloud) Snapshot() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.settle()
	var s State
	for _, lb := range c.loadBalancersInOrder() {
		ls := LoadBalancerState{LoadBalancer: lb.export()}
		for _, l := range lb.listeners {
			lst := ListenerState{Listener: l.export()}
			for _, b := range l.backends {
				lst.Backends = append(lst.Backends, BackendState{Backend: b.Backend, Healthy: b.healthy, HealthDetail: b.detail})
			}
			ls.Listeners = append(ls.Listeners, lst)
		}
		s.LoadBalancers = append(s.LoadBalancers, ls)
	}
	if len(c.instances) > 0 {
		s.Instances = maps.Clone(c.instances)
	}
	return s
}

// AddLoadBalancer puts a ready CLB into the account the way someone else
// would have made it: no call is logged, no fault or limit applies. An empty
// ID gets a fresh one, empty VIPs an address. It returns the CLB as stored,
// and panics if the ID is taken, since that is a bug in the test.
func (c *Cloud) AddLoadBalancer(lb cloud.LoadBalancer) cloud.LoadBalancer {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, taken := c.lbs[lb.ID]; taken {
		panic(fmt.Sprintf("fake.AddLoadBalancer: ID %s is taken", lb.ID))
	}
	lb.VIPs = slices.Clone(lb.VIPs)
	lb.Tags = maps.Clone(lb.Tags)
	added := c.newLoadBalancer(lb.ID, lb)
	if len(added.VIPs) == 0 {
		added.VIPs = []string{c.vipFor(added.seq, added.SubnetID != "")}
	}
	return added.export()
}

// AddListener puts a listener onto a CLB the way someone else would have
// made it: no call is logged, no fault, quota or running task applies. It
// returns the listener as stored, and panics on an unknown CLB or a spec the
// API would refuse, since that is a bug in the test.
func (c *Cloud) AddListener(lbID string, spec cloud.ListenerSpec) cloud.Listener {
	c.mu.Lock()
	defer c.mu.Unlock()
	lb, ok := c.lbs[lbID]
	if !ok {
		panic(fmt.Sprintf("fake.AddListener: no LoadBalancer %s", lbID))
	}
	spec, err := listenerToCreate(lb, spec)
	if err != nil {
		panic(fmt.Sprintf("fake.AddListener: %v", err))
	}
	l := &listener{Listener: cloud.Listener{ID: c.newListenerID(), ListenerSpec: spec}}
	lb.listeners = append(lb.listeners, l)
	return l.export()
}

// SetBackendHealth sets what the health check says of a registered backend;
// an empty detail becomes "Alive" or "Dead". It reports whether the backend
// is registered, so that a prober racing a deregistration can ignore it.
func (c *Cloud) SetBackendHealth(lbID, listenerID string, key cloud.BackendKey, healthy bool, detail string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.settle()
	lb, ok := c.lbs[lbID]
	if !ok {
		return false
	}
	l := lb.listener(listenerID)
	if l == nil {
		return false
	}
	b := l.backend(key)
	if b == nil {
		return false
	}
	b.healthy, b.detail = healthy, healthDetail(healthy, detail)
	return true
}

func healthDetail(healthy bool, detail string) string {
	switch {
	case detail != "":
		return detail
	case healthy:
		return "Alive"
	}
	return "Dead"
}

// SetInstanceAddress records the private IP of a CVM instance, as the real
// account knows the address of every instance in it; an empty ip forgets
// the instance. A backend registered by InstanceId is reached at that
// address: the emulator probes it and forwards to it there. No call is
// logged and no fault applies. It panics on an empty instance ID or an ip
// that is not an IP address, since that is a bug in the caller.
func (c *Cloud) SetInstanceAddress(instanceID, ip string) {
	if instanceID == "" {
		panic("fake.SetInstanceAddress: empty instance ID")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if ip == "" {
		delete(c.instances, instanceID)
		return
	}
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		panic(fmt.Sprintf("fake.SetInstanceAddress(%s): %v", instanceID, err))
	}
	if c.instances == nil {
		c.instances = map[string]string{}
	}
	c.instances[instanceID] = addr.String()
}

// InstanceAddress returns the private IP of a CVM instance, if the account
// knows it.
func (c *Cloud) InstanceAddress(instanceID string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ip, ok := c.instances[instanceID]
	return ip, ok
}
