package emulator

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"clb-direct/cloud"
	"clb-direct/cloud/fake"
)

// TestHealthThresholds feeds probe results to the checker by hand:
// HealthNum successes in a row make a target Alive, UnHealthNum failures in
// a row Dead, and anything less changes nothing.
func TestHealthThresholds(t *testing.T) {
	c := fake.New(fake.WithDefaultHealthy(false), fake.WithDefaultHealthDetail(healthUnknown))
	ctx := context.Background()
	lb, err := c.CreateLoadBalancer(ctx, cloud.LoadBalancerSpec{})
	must(t, err)
	hc := cloud.HealthCheck{Enabled: true, IntervalSeconds: 5, TimeoutSeconds: 2, HealthyThreshold: 3, UnhealthyThreshold: 2}
	l, err := c.CreateListener(ctx, lb.ID, cloud.ListenerSpec{Protocol: cloud.ProtocolTCP, Port: 80, HealthCheck: &hc})
	must(t, err)
	b := cloud.Backend{IP: "10.0.0.1", Port: 8080, Weight: 10}
	must(t, c.RegisterBackends(ctx, lb.ID, []cloud.ListenerBackend{{ListenerID: l.ID, Backend: b}}))

	h := newHealthChecker(c, 1, time.Hour)
	key := targetKey{lbID: lb.ID, listenerID: l.ID, backend: b.Key()}
	h.targets[key] = &probeState{hc: hc}
	detail := func() string {
		s := c.Snapshot().LoadBalancers[0].Listeners[0].Backends[0]
		if s.Healthy != (s.HealthDetail == healthAlive) {
			t.Fatalf("Healthy %v with detail %s", s.Healthy, s.HealthDetail)
		}
		return s.HealthDetail
	}
	failed := errors.New("refused")
	steps := []struct {
		err  error
		want string
	}{
		{nil, healthUnknown}, {nil, healthUnknown}, {failed, healthUnknown}, // the streak is broken
		{nil, healthUnknown}, {nil, healthUnknown}, {nil, healthAlive},
		{failed, healthAlive}, {nil, healthAlive}, {failed, healthAlive}, {failed, healthDead},
		{nil, healthDead}, {nil, healthDead}, {nil, healthAlive},
	}
	for i, s := range steps {
		h.apply(probeResult{key: key, err: s.err})
		if got := detail(); got != s.want {
			t.Fatalf("after result %d (err %v): %s, want %s", i, s.err, got, s.want)
		}
	}

	// A result of a probe started before the state started over is dropped.
	h.targets[key].gen++
	h.apply(probeResult{key: key, gen: 0, err: failed})
	h.apply(probeResult{key: key, gen: 0, err: failed})
	if got := detail(); got != healthAlive {
		t.Errorf("stale results changed the verdict to %s", got)
	}

	// A fresh target that fails is Dead after UnHealthNum failures.
	b2 := cloud.Backend{IP: "10.0.0.2", Port: 8080, Weight: 10}
	must(t, c.RegisterBackends(ctx, lb.ID, []cloud.ListenerBackend{{ListenerID: l.ID, Backend: b2}}))
	key2 := targetKey{lbID: lb.ID, listenerID: l.ID, backend: b2.Key()}
	h.targets[key2] = &probeState{hc: hc}
	h.apply(probeResult{key: key2, err: failed})
	h.apply(probeResult{key: key2, err: failed})
	if s := c.Snapshot().LoadBalancers[0].Listeners[0].Backends[1]; s.HealthDetail != healthDead {
		t.Errorf("a new target after 2 failures: %s, want Dead", s.HealthDetail)
	}
}

func TestProbe(t *testing.T) {
	ctx := context.Background()
	timeout := 200 * time.Millisecond
	tcp := cloud.HealthCheck{CheckType: "TCP"}
	httpCheck := func(code int64) cloud.HealthCheck {
		return cloud.HealthCheck{CheckType: "HTTP", HTTPPath: "/healthz", HTTPCode: code, HTTPDomain: "app.example"}
	}
	silentUDP, err := net.ListenPacket("udp", "127.0.0.1:0")
	must(t, err)
	defer silentUDP.Close()
	hostSeen := make(chan string, 10)
	withHost := httpBackendFunc(t, "127.0.0.1", func(w http.ResponseWriter, r *http.Request) {
		hostSeen <- r.Host
		w.WriteHeader(http.StatusNoContent)
	})

	cases := []struct {
		name     string
		protocol cloud.Protocol
		hc       cloud.HealthCheck
		addr     string
		healthy  bool
	}{
		{"TCP open", cloud.ProtocolTCP, tcp, tcpBackend(t, "127.0.0.1", "x"), true},
		{"TCP closed", cloud.ProtocolTCP, tcp, freeClosedPort(t, "tcp", "127.0.0.1"), false},
		{"default check is TCP", cloud.ProtocolTCP, cloud.HealthCheck{}, tcpBackend(t, "127.0.0.1", "x"), true},
		{"HTTP 2xx wanted, 200", cloud.ProtocolTCP, httpCheck(2), httpBackend(t, "127.0.0.1", http.StatusOK), true},
		{"HTTP 2xx wanted, 500", cloud.ProtocolTCP, httpCheck(2), httpBackend(t, "127.0.0.1", http.StatusInternalServerError), false},
		{"HTTP 2xx or 5xx wanted, 500", cloud.ProtocolTCP, httpCheck(2 | 16), httpBackend(t, "127.0.0.1", http.StatusInternalServerError), true},
		{"HTTP any (0), 404 elsewhere", cloud.ProtocolTCP, cloud.HealthCheck{CheckType: "HTTP"}, httpBackend(t, "127.0.0.1", http.StatusOK), true},
		{"HTTP with domain", cloud.ProtocolTCP, httpCheck(2), withHost, true},
		{"HTTP closed", cloud.ProtocolTCP, httpCheck(31), freeClosedPort(t, "tcp", "127.0.0.1"), false},
		{"UDP answering", cloud.ProtocolUDP, cloud.HealthCheck{}, udpBackend(t, "127.0.0.1", "x"), true},
		{"UDP silent", cloud.ProtocolUDP, cloud.HealthCheck{}, silentUDP.LocalAddr().String(), true},
		{"UDP closed", cloud.ProtocolUDP, cloud.HealthCheck{}, freeClosedPort(t, "udp", "127.0.0.1"), false},
		{"UDP CUSTOM answering", cloud.ProtocolUDP, cloud.HealthCheck{CheckType: "CUSTOM"}, udpBackend(t, "127.0.0.1", "x"), true},
		{"UDP CUSTOM silent", cloud.ProtocolUDP, cloud.HealthCheck{CheckType: "CUSTOM"}, silentUDP.LocalAddr().String(), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, err := probe(ctx, tc.protocol, tc.hc, tc.addr, timeout)
			if (err == nil) != tc.healthy {
				t.Errorf("probe of %s: status %q, err %v; want healthy %v", tc.addr, status, err, tc.healthy)
			}
		})
	}
	select {
	case host := <-hostSeen:
		if host != "app.example" {
			t.Errorf("the HTTP check sent Host %q, want HttpCheckDomain", host)
		}
	default:
		t.Error("the HTTP check with a domain reached no server")
	}
}

func httpBackendFunc(t *testing.T, ip string, h http.HandlerFunc) string {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	must(t, err)
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func TestHTTPCodeMask(t *testing.T) {
	cases := []struct {
		mask   int64
		status int
		want   bool
	}{
		{2, 200, true}, {2, 204, true}, {2, 302, false}, {4, 302, true}, {8, 404, true},
		{16, 503, true}, {16, 200, false}, {1, 101, true}, {0, 500, true}, {31, 404, true}, {31, 600, false},
	}
	for _, tc := range cases {
		if got := httpCodeMatches(tc.mask, tc.status); got != tc.want {
			t.Errorf("HttpCode %d, status %d: %v, want %v", tc.mask, tc.status, got, tc.want)
		}
	}
}

func TestVIPAllocator(t *testing.T) {
	vip := vipAllocator(netip.MustParsePrefix("127.2.0.0/16"))
	cases := map[int]string{1: "127.2.0.1", 2: "127.2.0.2", 254: "127.2.0.254", 255: "127.2.1.1", 509: "127.2.2.1",
		254*256 + 1: "127.2.0.1"}
	for seq, want := range cases {
		if got := vip(seq, false); got != want {
			t.Errorf("CLB %d: VIP %s, want %s", seq, got, want)
		}
	}
	small := vipAllocator(netip.MustParsePrefix("127.9.9.0/24"))
	if got := small(255, true); got != "127.9.9.1" {
		t.Errorf("a /24 wraps to %s, want 127.9.9.1", got)
	}
}
