package emulator

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/klog/v2"

	"clb-direct/cloud"
	"clb-direct/cloud/fake"
)

// Health details, as DescribeTargetHealth spells them.
const (
	healthAlive   = "Alive"
	healthDead    = "Dead"
	healthUnknown = "Unknown"
	// healthNoAddress is the detail of a target registered by InstanceId
	// whose instance has no address the emulator knows: it cannot be
	// probed, so it stays unhealthy until an address is set.
	healthNoAddress = "Unknown: instance address unknown (set it with --instance or POST /admin/instances)"
)

// udpProbePayload is the datagram a UDP health check sends.
var udpProbePayload = []byte("clb-emulator health check\n")

// healthChecker probes every registered target as its listener's health
// check says and writes the verdicts into the account with
// SetBackendHealth.
//
// One goroutine owns all probe state. Every ReconcileInterval it re-reads
// the account (so registrations, deregistrations and health check changes
// take effect within one interval), starts the probes that are due, each in
// a goroutine of its own, and applies the results they send back. A target
// is probed at once when it appears, then every IntervalTime (times the
// time scale); HealthNum successes in a row make it Alive, UnHealthNum
// failures in a row Dead. Until then it stays Unknown, and unhealthy.
//
// A target registered by EniIp is probed at its IP, one registered by
// InstanceId at the instance's address (fake.Cloud.SetInstanceAddress), on
// the target's port. An instance without a known address is unhealthy with
// the detail healthNoAddress; once it has one, it starts over as Unknown.
type healthChecker struct {
	cloud   *fake.Cloud
	scale   float64
	rescan  time.Duration
	targets map[targetKey]*probeState
	results chan probeResult
	probes  sync.WaitGroup
}

type targetKey struct {
	lbID, listenerID string
	backend          cloud.BackendKey
}

type probeState struct {
	// gen changes whenever the state starts over, so that the result of a
	// probe started before is dropped.
	gen      uint64
	healthy  bool
	decided  bool // Alive or Dead, not Unknown
	ok, fail int64
	inFlight bool
	next     time.Time
	hc       cloud.HealthCheck
	// addr is the IP:port probed.
	addr string
}

type probeResult struct {
	key    targetKey
	gen    uint64
	err    error
	status string
}

func newHealthChecker(c *fake.Cloud, scale float64, rescan time.Duration) *healthChecker {
	return &healthChecker{
		cloud:   c,
		scale:   scale,
		rescan:  rescan,
		targets: map[targetKey]*probeState{},
		results: make(chan probeResult),
	}
}

func (h *healthChecker) run(ctx context.Context) {
	defer h.probes.Wait()
	tick := time.NewTicker(h.rescan)
	defer tick.Stop()
	h.round(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case res := <-h.results:
			h.apply(res)
		case <-tick.C:
			h.round(ctx)
		}
	}
}

// scaled converts a health check's seconds to the probing time scale.
func (h *healthChecker) scaled(seconds int64) time.Duration {
	return time.Duration(float64(seconds) * float64(time.Second) * h.scale)
}

// round follows the account and starts the probes that are due.
func (h *healthChecker) round(ctx context.Context) {
	now := time.Now()
	seen := map[targetKey]bool{}
	snap := h.cloud.Snapshot()
	for _, lb := range snap.LoadBalancers {
		for _, l := range lb.Listeners {
			hc := cloud.HealthCheck{Enabled: true, IntervalSeconds: 5, TimeoutSeconds: 2, HealthyThreshold: 3, UnhealthyThreshold: 3}
			if l.HealthCheck != nil {
				hc = *l.HealthCheck
			}
			for _, b := range l.Backends {
				key := targetKey{lbID: lb.ID, listenerID: l.ID, backend: b.Key()}
				seen[key] = true
				h.follow(ctx, key, l.Protocol, hc, b, snap.Instances, now)
			}
		}
	}
	for key := range h.targets {
		if !seen[key] {
			delete(h.targets, key)
		}
	}
}

// follow updates one target's probing from what the account says of it;
// instances maps instance IDs to their addresses.
func (h *healthChecker) follow(ctx context.Context, key targetKey, protocol cloud.Protocol, hc cloud.HealthCheck,
	b fake.BackendState, instances map[string]string, now time.Time) {
	if !hc.Enabled {
		// Without a health check the CLB forwards to every target.
		delete(h.targets, key)
		if !b.Healthy {
			h.cloud.SetBackendHealth(key.lbID, key.listenerID, key.backend, true, healthAlive)
		}
		return
	}
	addr, ok := targetAddress(b.Backend, instances)
	if !ok {
		delete(h.targets, key)
		if b.Healthy || b.HealthDetail != healthNoAddress {
			h.cloud.SetBackendHealth(key.lbID, key.listenerID, key.backend, false, healthNoAddress)
		}
		return
	}
	if b.HealthDetail == healthNoAddress {
		// The instance has an address now: it starts over, undecided.
		h.cloud.SetBackendHealth(key.lbID, key.listenerID, key.backend, false, healthUnknown)
		b.Healthy, b.HealthDetail = false, healthUnknown
	}
	decided := b.HealthDetail != healthUnknown
	st := h.targets[key]
	if st == nil {
		st = &probeState{healthy: b.Healthy, decided: decided, addr: addr, next: now}
		h.targets[key] = st
	}
	if st.healthy != b.Healthy || st.decided != decided || st.addr != addr {
		// Someone else changed the verdict (a re-registration started the
		// target over as Unknown, or the admin API set it), or the
		// instance moved. Start over from there.
		*st = probeState{gen: st.gen + 1, healthy: b.Healthy, decided: decided, addr: addr, next: now}
	}
	st.hc = hc
	if st.inFlight || now.Before(st.next) {
		return
	}
	st.inFlight = true
	st.next = now.Add(h.scaled(hc.IntervalSeconds))
	gen, timeout := st.gen, h.scaled(hc.TimeoutSeconds)
	h.probes.Go(func() {
		status, err := probe(ctx, protocol, hc, addr, timeout)
		select {
		case h.results <- probeResult{key: key, gen: gen, err: err, status: status}:
		case <-ctx.Done():
		}
	})
}

// targetAddress is the IP:port at which a target is reached: its EniIp, or
// its instance's address, which instances maps instance IDs to. ok is false
// for an instance whose address is unknown.
func targetAddress(b cloud.Backend, instances map[string]string) (addr string, ok bool) {
	ip := b.IP
	if ip == "" {
		if ip, ok = instances[b.InstanceID]; !ok {
			return "", false
		}
	}
	return net.JoinHostPort(ip, strconv.Itoa(int(b.Port))), true
}

// apply counts a probe's result and changes the verdict at a threshold.
func (h *healthChecker) apply(res probeResult) {
	st := h.targets[res.key]
	if st == nil || st.gen != res.gen {
		return
	}
	st.inFlight = false
	if res.err == nil {
		st.ok, st.fail = st.ok+1, 0
	} else {
		st.ok, st.fail = 0, st.fail+1
		klog.V(4).InfoS("Health probe failed", "loadBalancer", res.key.lbID, "listener", res.key.listenerID,
			"target", res.key.backend, "err", res.err)
	}
	var verdict string
	switch {
	case res.err == nil && !st.healthy && st.ok >= st.hc.HealthyThreshold:
		verdict = healthAlive
	case res.err != nil && (st.healthy || !st.decided) && st.fail >= st.hc.UnhealthyThreshold:
		verdict = healthDead
	default:
		return
	}
	st.healthy, st.decided = verdict == healthAlive, true
	klog.V(2).InfoS("Target health changed", "loadBalancer", res.key.lbID, "listener", res.key.listenerID,
		"target", res.key.backend, "health", verdict, "lastProbe", res.status, "err", res.err)
	if !h.cloud.SetBackendHealth(res.key.lbID, res.key.listenerID, res.key.backend, st.healthy, verdict) {
		delete(h.targets, res.key) // deregistered meanwhile
	}
}

// probe checks one target once; nil means healthy. status describes what
// the probe saw, for the log.
//
//   - TCP listener, CheckType TCP, empty or CUSTOM: a TCP connection must
//     open within the timeout (CUSTOM's send/expect contexts are not
//     modelled).
//   - TCP listener, CheckType HTTP: HttpCheckMethod (default HEAD) of
//     HttpCheckPath (default /) with Host HttpCheckDomain (default the
//     target's address) must answer within the timeout with a status whose
//     class is in the HttpCode bit mask (1: 1xx, 2: 2xx, 4: 3xx, 8: 4xx,
//     16: 5xx; 0 means 31, any).
//   - UDP listener: a datagram is sent; an ICMP port unreachable (a
//     refused read) is unhealthy, anything else healthy, as the CLB's
//     default UDP check does. With CheckType CUSTOM a reply must arrive
//     within the timeout.
func probe(ctx context.Context, protocol cloud.Protocol, hc cloud.HealthCheck, addr string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch {
	case protocol == cloud.ProtocolUDP:
		return probeUDP(ctx, addr, hc.CheckType == "CUSTOM")
	case strings.EqualFold(hc.CheckType, "HTTP"):
		return probeHTTP(ctx, hc, addr)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	return "connected", conn.Close()
}

func probeHTTP(ctx context.Context, hc cloud.HealthCheck, addr string) (string, error) {
	method, path := hc.HTTPMethod, hc.HTTPPath
	if method == "" {
		method = http.MethodHead
	}
	if path == "" {
		path = "/"
	}
	req, err := http.NewRequestWithContext(ctx, strings.ToUpper(method), "http://"+addr+path, nil)
	if err != nil {
		return "", err
	}
	if hc.HTTPDomain != "" {
		req.Host = hc.HTTPDomain
	}
	req.Header.Set("User-Agent", "clb-emulator-healthcheck")
	transport := &http.Transport{DisableKeepAlives: true}
	defer transport.CloseIdleConnections()
	resp, err := (&http.Client{Transport: transport}).Do(req)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	if !httpCodeMatches(hc.HTTPCode, resp.StatusCode) {
		return resp.Status, fmt.Errorf("status %s is not in HttpCode %d", resp.Status, hc.HTTPCode)
	}
	return resp.Status, nil
}

// httpCodeMatches reports whether status is in the HttpCode bit mask.
func httpCodeMatches(mask int64, status int) bool {
	if mask == 0 {
		mask = 31
	}
	class := status / 100
	if class < 1 || class > 5 {
		return false
	}
	return mask&(1<<(class-1)) != 0
}

func probeUDP(ctx context.Context, addr string, wantReply bool) (string, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "udp", addr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	}
	if _, err := conn.Write(udpProbePayload); err != nil {
		return "", err
	}
	buf := make([]byte, 1500)
	_, err = conn.Read(buf)
	var netErr net.Error
	switch {
	case err == nil:
		return "reply", nil
	case errors.Is(err, syscall.ECONNREFUSED):
		return "port unreachable", err
	case errors.As(err, &netErr) && netErr.Timeout() && !wantReply:
		return "no reply", nil
	}
	return "", err
}
