package emulator

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	clb "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/clb/v20180317"
)

// forwarder returns the data plane's view of a listener.
func forwarderOf(srv *Server, listenerID string) (ForwarderStatus, bool) {
	for _, f := range srv.Forwarders() {
		if f.ListenerID == listenerID {
			return f, true
		}
	}
	return ForwarderStatus{}, false
}

// waitForwarder waits until the listener's socket is open and its targets
// have the given eligibility.
func waitForwarder(t *testing.T, srv *Server, listenerID string, eligible map[string]bool) {
	t.Helper()
	eventually(t, 5*time.Second, "the data plane of "+listenerID, func() (bool, string) {
		f, ok := forwarderOf(srv, listenerID)
		if !ok || !f.Listening {
			return false, fmt.Sprintf("%+v", f)
		}
		for _, tg := range f.Targets {
			if want, ok := eligible[tg.Address]; ok && tg.Eligible != want {
				return false, fmt.Sprintf("%+v", f)
			}
		}
		return true, ""
	})
}

func TestDataPlaneTCP(t *testing.T) {
	vipPrefix := vipNet()
	srv, addr := start(t, func(c *Config) {
		c.DataPlane = true
		c.VIPNet = vipPrefix
		c.HealthCheck = true
		c.HealthCheckTimeScale = 0.02 // 5 s → 100 ms
	})
	c := newClient(t, addr, testID, testKey)
	lb := mustCreateLB(t, c, "data-plane")
	lbID, vip := *lb.LoadBalancerId, *lb.LoadBalancerVips[0]
	if !netip.MustParsePrefix(vipPrefix).Contains(netip.MustParseAddr(vip)) {
		t.Fatalf("VIP %s is not in %s", vip, vipPrefix)
	}
	listenerID := mustCreateListener(t, c, lbID, "TCP", 18080, &clb.HealthCheck{HealthNum: ptr(int64(2)), UnHealthNum: ptr(int64(2))})

	a, b := tcpBackend(t, "127.0.0.1", "a"), tcpBackend(t, "127.0.0.1", "b")
	idle := tcpBackend(t, "127.0.0.1", "idle")
	dead := freeClosedPort(t, "tcp", "127.0.0.1")
	register(t, c, lbID, listenerID, map[string]int64{a: 10, b: 30, idle: 0, dead: 10})
	eventually(t, 5*time.Second, "health verdicts", func() (bool, string) {
		h := targetHealth(t, c, lbID)
		return h[a] == "Alive/true" && h[b] == "Alive/true" && h[idle] == "Alive/true" && h[dead] == "Dead/false", fmt.Sprint(h)
	})
	waitForwarder(t, srv, listenerID, map[string]bool{a: true, b: true, idle: false, dead: false})

	// New connections reach healthy targets of weight > 0 only, by weight.
	through := net.JoinHostPort(vip, "18080")
	counts := map[string]int{}
	for range 40 {
		name, conn, _ := greeting(t, through)
		conn.Close()
		counts[name]++
	}
	if counts["a"] != 10 || counts["b"] != 30 || len(counts) != 2 {
		t.Errorf("40 connections reached %v, want a 10 and b 30 (weights 10:30), none elsewhere", counts)
	}

	// A connection to b stays open while b's weight drops to 0: it drains.
	var held net.Conn
	for held == nil {
		name, conn, _ := greeting(t, through)
		if name == "b" {
			held = conn
		} else {
			conn.Close()
		}
	}
	defer held.Close()
	bIP, bPort := splitAddr(t, b)
	weights := clb.NewBatchModifyTargetWeightRequest()
	weights.LoadBalancerId = &lbID
	weights.ModifyList = []*clb.RsWeightRule{{ListenerId: &listenerID, Targets: []*clb.Target{{EniIp: &bIP, Port: &bPort, Weight: ptr(int64(0))}}}}
	resp, err := c.BatchModifyTargetWeight(weights)
	must(t, err)
	waitTask(t, c, *resp.Response.RequestId)
	waitForwarder(t, srv, listenerID, map[string]bool{a: true, b: false})
	for range 10 {
		name, conn, _ := greeting(t, through)
		conn.Close()
		if name != "a" {
			t.Fatalf("a new connection reached %q after b's weight became 0, want a", name)
		}
	}
	echo(t, held, "still flowing")
	if f, _ := forwarderOf(srv, listenerID); !hasActive(f, b, 1) {
		t.Errorf("the data plane does not count b's open connection: %+v", f)
	}

	// Without an eligible target a new connection is closed at once; the
	// draining one goes on.
	aIP, aPort := splitAddr(t, a)
	dereg := clb.NewBatchDeregisterTargetsRequest()
	dereg.LoadBalancerId = &lbID
	dereg.Targets = []*clb.BatchTarget{{ListenerId: &listenerID, EniIp: &aIP, Port: &aPort}}
	dresp, err := c.BatchDeregisterTargets(dereg)
	must(t, err)
	waitTask(t, c, *dresp.Response.RequestId)
	eventually(t, 5*time.Second, "a gone from the data plane", func() (bool, string) {
		f, _ := forwarderOf(srv, listenerID)
		return !hasActive(f, a, -1), fmt.Sprintf("%+v", f)
	})
	if name, conn, _ := greeting(t, through); name != "" {
		conn.Close()
		t.Errorf("a connection with no eligible target reached %q", name)
	} else {
		conn.Close()
	}
	echo(t, held, "draining")

	// Deleting the listener closes its socket and its connections.
	del := clb.NewDeleteListenerRequest()
	del.LoadBalancerId, del.ListenerId = &lbID, &listenerID
	delResp, err := c.DeleteListener(del)
	must(t, err)
	waitTask(t, c, *delResp.Response.RequestId)
	eventually(t, 5*time.Second, "the listener's socket closed", func() (bool, string) {
		conn, err := net.DialTimeout("tcp", through, time.Second)
		if err == nil {
			conn.Close()
			return false, "still accepting"
		}
		return true, ""
	})
	_ = held.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := held.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !isReset(err) {
		t.Errorf("a connection through a deleted listener: read %v, want EOF", err)
	}
}

// hasActive reports whether the forwarder has target addr with n active
// connections (n < 0: with any number).
func hasActive(f ForwarderStatus, addr string, n int) bool {
	for _, tg := range f.Targets {
		if tg.Address == addr {
			return n < 0 || tg.Active == n
		}
	}
	return false
}

func isReset(err error) bool {
	var opErr *net.OpError
	return errors.As(err, &opErr)
}

// echo checks that a connection to a tcpBackend still echoes.
func echo(t *testing.T, conn net.Conn, msg string) {
	t.Helper()
	_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := fmt.Fprintln(conn, msg); err != nil {
		t.Fatalf("writing to a draining connection: %v", err)
	}
	buf := make([]byte, len(msg)+1)
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != msg+"\n" {
		t.Fatalf("echo through a draining connection: %q, %v", buf, err)
	}
}

func TestDataPlaneUDP(t *testing.T) {
	srv, addr := start(t, func(c *Config) {
		c.DataPlane = true
		c.VIPNet = vipNet()
		c.UDPIdleTimeout = time.Second
	})
	c := newClient(t, addr, testID, testKey)
	lb := mustCreateLB(t, c, "udp")
	lbID, vip := *lb.LoadBalancerId, *lb.LoadBalancerVips[0]
	listenerID := mustCreateListener(t, c, lbID, "UDP", 18053, nil)
	u1, u2 := udpBackend(t, "127.0.0.1", "u1"), udpBackend(t, "127.0.0.1", "u2")
	register(t, c, lbID, listenerID, map[string]int64{u1: 10, u2: 10})
	waitForwarder(t, srv, listenerID, map[string]bool{u1: true, u2: true})
	through := net.JoinHostPort(vip, "18053")

	ask := func(conn net.Conn) string {
		t.Helper()
		_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
		_, err := conn.Write([]byte("hi"))
		must(t, err)
		buf := make([]byte, 100)
		n, err := conn.Read(buf)
		must(t, err)
		return string(buf[:n])
	}
	// Each client address is a flow of its own, to one target by weight.
	counts := map[string]int{}
	var clients []net.Conn
	for range 4 {
		conn, err := net.Dial("udp", through)
		must(t, err)
		defer conn.Close()
		clients = append(clients, conn)
		counts[ask(conn)]++
	}
	if counts["u1"] != 2 || counts["u2"] != 2 {
		t.Errorf("4 flows reached %v, want 2 each", counts)
	}
	first := ask(clients[0])
	for range 3 {
		if got := ask(clients[0]); got != first {
			t.Errorf("a flow moved from %s to %s", first, got)
		}
	}

	// With health checks off the admin API decides health: an unhealthy
	// target gets no new flow.
	host, port := splitAddr(t, u1)
	if code := adminDo(t, addr, http.MethodPost, "/admin/health", HealthSetting{
		LoadBalancerID: lbID, ListenerID: listenerID, IP: host, Port: int32(port), Healthy: false,
	}, nil); code != http.StatusNoContent {
		t.Fatalf("POST /admin/health: %d", code)
	}
	waitForwarder(t, srv, listenerID, map[string]bool{u1: false, u2: true})
	for range 4 {
		conn, err := net.Dial("udp", through)
		must(t, err)
		if got := ask(conn); got != "u2" {
			t.Errorf("a new flow reached %s while u1 is unhealthy", got)
		}
		conn.Close()
	}
}
