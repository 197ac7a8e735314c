package podsim

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"

	"clb-direct/test/cluster"
)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func epSlice(name string, ports []discoveryv1.EndpointPort, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name, Namespace: "ns", Labels: map[string]string{discoveryv1.LabelServiceName: "svc"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       ports,
		Endpoints:   eps,
	}
}

func ep(ip, node string, ready, serving, terminating *bool) discoveryv1.Endpoint {
	e := discoveryv1.Endpoint{
		Addresses:  []string{ip},
		Conditions: discoveryv1.EndpointConditions{Ready: ready, Serving: serving, Terminating: terminating},
	}
	if node != "" {
		e.NodeName = ptr.To(node)
	}
	return e
}

var (
	yes       = ptr.To(true)
	no        = ptr.To(false)
	httpPorts = []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080)}}
)

func TestCollectEndpoints(t *testing.T) {
	odd := epSlice("a-odd", []discoveryv1.EndpointPort{
		{Name: ptr.To("http")},                          // no port number
		{Name: ptr.To("http"), Port: ptr.To[int32](-1)}, // invalid
		{Name: ptr.To("http"), Protocol: ptr.To(corev1.ProtocolUDP), Port: ptr.To[int32](53)}, // wrong protocol
		{Name: ptr.To("http"), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To[int32](8080)},
	},
		discoveryv1.Endpoint{}, // no address
		discoveryv1.Endpoint{Addresses: []string{"not-an-ip"}},
		discoveryv1.Endpoint{Addresses: []string{"::1"}},
		ep("127.1.0.9", "", nil, nil, nil), // no conditions at all: ready
		ep("127.1.0.5", "n1", yes, yes, nil),
	)
	dup := epSlice("b-dup", httpPorts,
		ep("127.1.0.5", "n2", no, no, yes), // the same endpoint in a later slice: ignored
		ep("127.1.0.7", "n2", no, yes, yes),
		ep("127.1.0.6", "n1", yes, yes, yes), // "ready" yet terminating: not ready
		ep("127.1.0.8", "n3", no, no, no),
	)
	ipv6 := epSlice("c-v6", httpPorts, ep("127.1.0.10", "n1", yes, yes, no))
	ipv6.AddressType = discoveryv1.AddressTypeIPv6
	otherPort := epSlice("d-other", []discoveryv1.EndpointPort{{Name: ptr.To("metrics"), Port: ptr.To[int32](9090)}}, ep("127.1.0.11", "n1", yes, yes, no))
	unnamed := epSlice("e-unnamed", []discoveryv1.EndpointPort{{Port: ptr.To[int32](80)}}, ep("127.1.0.12", "n1", yes, yes, no))

	got := collectEndpoints([]*discoveryv1.EndpointSlice{unnamed, dup, nil, otherPort, odd, ipv6}, "http", corev1.ProtocolTCP)
	want := []endpoint{
		{addr: ap("127.1.0.5:8080"), node: "n1", ready: true, serving: true},
		{addr: ap("127.1.0.6:8080"), node: "n1", serving: true, terminating: true},
		{addr: ap("127.1.0.7:8080"), node: "n2", serving: true, terminating: true},
		{addr: ap("127.1.0.8:8080"), node: "n3"},
		{addr: ap("127.1.0.9:8080"), ready: true, serving: true},
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(endpoint{}), cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
		t.Errorf("collectEndpoints (-want +got):\n%s", diff)
	}
	// A Service port without a name matches unnamed slice ports only.
	got = collectEndpoints([]*discoveryv1.EndpointSlice{unnamed, dup}, "", corev1.ProtocolTCP)
	if len(got) != 1 || got[0].addr != ap("127.1.0.12:80") {
		t.Errorf("unnamed port: %+v", got)
	}
	if got := collectEndpoints(nil, "http", corev1.ProtocolTCP); got != nil {
		t.Errorf("no slices: %+v", got)
	}
}

func TestSelectEndpoints(t *testing.T) {
	e := func(addr, node string, ready, serving, terminating bool) endpoint {
		return endpoint{addr: ap(addr), node: node, ready: ready, serving: serving, terminating: terminating}
	}
	readyA := e("127.1.0.1:80", "n1", true, true, false)
	readyB := e("127.1.0.2:80", "n2", true, true, false)
	termA := e("127.1.0.3:80", "n1", false, true, true)
	termB := e("127.1.0.4:80", "n2", false, true, true)
	goneA := e("127.1.0.5:80", "n1", false, false, true)     // terminating, no longer serving
	unreadyA := e("127.1.0.6:80", "n1", false, false, false) // failing its readiness probe
	unreadyServing := e("127.1.0.7:80", "n1", false, true, false)

	for _, tc := range []struct {
		name  string
		eps   []endpoint
		local bool
		node  string
		want  []string
	}{
		{"cluster: every ready endpoint", []endpoint{readyA, readyB, termA, goneA, unreadyA}, false, "n3", []string{"127.1.0.1:80", "127.1.0.2:80"}},
		{"cluster: serving terminating ones when none is ready", []endpoint{termA, termB, goneA, unreadyA, unreadyServing}, false, "n1", []string{"127.1.0.3:80", "127.1.0.4:80"}},
		{"cluster: nothing usable", []endpoint{goneA, unreadyA, unreadyServing}, false, "n1", nil},
		{"cluster: none", nil, false, "n1", nil},
		{"local: only this node's", []endpoint{readyA, readyB, termA}, true, "n1", []string{"127.1.0.1:80"}},
		{"local: no local endpoint", []endpoint{readyA, termA}, true, "n2", nil},
		{"local: local serving terminating beats remote ready", []endpoint{readyB, termA, goneA}, true, "n1", []string{"127.1.0.3:80"}},
		{"local: node without pods", []endpoint{readyA, readyB}, true, "n3", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, a := range selectEndpoints(tc.eps, tc.local, tc.node) {
				got = append(got, a.String())
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestDesiredFrontends(t *testing.T) {
	nodes := []proxyNode{{"n1", netip.MustParseAddr("127.0.1.1")}, {"n2", netip.MustParseAddr("127.0.1.2")}}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "svc", Namespace: "ns"},
		Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeNodePort,
			Ports: []corev1.ServicePort{
				{Name: "http", Port: 80, NodePort: 30080},
				{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP, NodePort: 30053},
				{Name: "sctp", Port: 99, Protocol: corev1.ProtocolSCTP, NodePort: 30099},
				{Name: "none", Port: 81},                   // no nodePort (allocateLoadBalancerNodePorts: false)
				{Name: "bogus", Port: 82, NodePort: 70000}, // cannot happen, must not crash
			},
		},
	}
	eps := []*discoveryv1.EndpointSlice{epSlice("s", []discoveryv1.EndpointPort{
		{Name: ptr.To("http"), Port: ptr.To[int32](8080)},
		{Name: ptr.To("dns"), Protocol: ptr.To(corev1.ProtocolUDP), Port: ptr.To[int32](9000)},
		{Name: ptr.To("sctp"), Protocol: ptr.To(corev1.ProtocolSCTP), Port: ptr.To[int32](9999)},
		{Name: ptr.To("none"), Port: ptr.To[int32](8081)},
		{Name: ptr.To("bogus"), Port: ptr.To[int32](8082)},
	}, ep("127.1.0.1", "n1", yes, yes, no), ep("127.1.0.2", "n3", yes, yes, no))}

	summary := func(m map[frontendKey]frontendSpec) []string {
		var out []string
		for k, s := range m {
			if s.health {
				out = append(out, fmt.Sprintf("%s health=%d", k, s.localEndpoints))
				continue
			}
			out = append(out, fmt.Sprintf("%s %s->%v", k, s.port, s.backends))
		}
		slices.Sort(out)
		return out
	}
	check := func(name string, svc *corev1.Service, eps []*discoveryv1.EndpointSlice, want ...string) {
		t.Helper()
		if diff := cmp.Diff(want, summary(desiredFrontends(svc, eps, nodes))); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}

	check("cluster", svc, eps,
		"TCP/127.0.1.1:30080 http->[127.1.0.1:8080 127.1.0.2:8080]",
		"TCP/127.0.1.2:30080 http->[127.1.0.1:8080 127.1.0.2:8080]",
		"UDP/127.0.1.1:30053 dns->[127.1.0.1:9000 127.1.0.2:9000]",
		"UDP/127.0.1.2:30053 dns->[127.1.0.1:9000 127.1.0.2:9000]",
	)

	lb := svc.DeepCopy()
	lb.Spec.Type = corev1.ServiceTypeLoadBalancer
	lb.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	lb.Spec.HealthCheckNodePort = 32000
	check("local", lb, eps,
		"TCP/127.0.1.1:30080 http->[127.1.0.1:8080]",
		"TCP/127.0.1.1:32000 health=1",
		"TCP/127.0.1.2:32000 health=0",
		"UDP/127.0.1.1:30053 dns->[127.1.0.1:9000]",
	)
	check("local, no endpoints", lb, nil, "TCP/127.0.1.1:32000 health=0", "TCP/127.0.1.2:32000 health=0")
	check("cluster, no endpoints", svc, nil)

	clusterIP := svc.DeepCopy()
	clusterIP.Spec.Type = corev1.ServiceTypeClusterIP
	check("ClusterIP", clusterIP, eps)
	check("nil Service", nil, eps)
}

// TestForwarding drives the frontends directly against servers of the
// test's own: round-robin, draining, refusal, UDP flows, the health check
// server, conflicts, and a stop that leaves nothing behind.
func TestForwarding(t *testing.T) {
	tcpA, tcpB := lineServer(t, "A"), lineServer(t, "B")
	udpA, udpB := udpServer(t, "A"), udpServer(t, "B")
	before := runtime.NumGoroutine()

	p := newProxy(klog.Background(), nil)
	p.udpIdle = 300 * time.Millisecond
	tcpKey := frontendKey{freeAddr(t, "tcp"), corev1.ProtocolTCP}
	udpKey := frontendKey{freeAddr(t, "udp"), corev1.ProtocolUDP}
	hcKey := frontendKey{freeAddr(t, "tcp"), corev1.ProtocolTCP}
	const svc = "ns/svc"
	forward := func(port string, backends ...netip.AddrPort) frontendSpec {
		return frontendSpec{service: svc, port: port, backends: backends}
	}
	apply := func(desired map[frontendKey]frontendSpec) {
		t.Helper()
		if err := p.apply(svc, desired); err != nil {
			t.Fatal(err)
		}
	}

	// Round-robin, a connection at a time.
	apply(map[frontendKey]frontendSpec{tcpKey: forward("http", tcpA, tcpB)})
	var got []string
	var held net.Conn
	for i := range 4 {
		c := dialLine(t, tcpKey.addr)
		got = append(got, exchange(t, c, "hi"))
		if i == 0 {
			held = c
		} else {
			c.Close()
		}
	}
	if want := []string{"A:hi", "B:hi", "A:hi", "B:hi"}; !slices.Equal(got, want) {
		t.Errorf("round-robin: %v, want %v", got, want)
	}

	// A removed endpoint gets no new connections but keeps its own.
	apply(map[frontendKey]frontendSpec{tcpKey: forward("http", tcpB)})
	for range 2 {
		c := dialLine(t, tcpKey.addr)
		if got := exchange(t, c, "new"); got != "B:new" {
			t.Errorf("after A's removal: %q, want B:new", got)
		}
		c.Close()
	}
	if got := exchange(t, held, "still"); got != "A:still" {
		t.Errorf("held connection after A's removal: %q, want A:still", got)
	}

	// No endpoints: the port is closed, established connections carry on.
	apply(nil)
	expectRefused(t, tcpKey.addr)
	if got := exchange(t, held, "drained"); got != "A:drained" {
		t.Errorf("held connection after the port closed: %q, want A:drained", got)
	}
	// A half-close travels through: the backend sees EOF and closes.
	held.(*net.TCPConn).CloseWrite()
	held.SetReadDeadline(time.Now().Add(5 * time.Second))
	if rest, err := io.ReadAll(held); err != nil || len(rest) != 0 {
		t.Errorf("after half-close: %q, %v; want EOF", rest, err)
	}
	held.Close()

	// An endpoint that refuses: the client is reset (so fast on loopback
	// that the dial itself may see it).
	dead := freeAddr(t, "tcp")
	apply(map[frontendKey]frontendSpec{tcpKey: forward("http", dead)})
	c, err := net.DialTimeout("tcp4", tcpKey.addr.String(), 5*time.Second)
	if err == nil {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Read(make([]byte, 1))
		c.Close()
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("through a dead endpoint: %v, want connection reset", err)
	}

	// UDP: a flow per client address, round-robin over new flows, sticky
	// until its endpoint goes or it idles out.
	apply(map[frontendKey]frontendSpec{udpKey: forward("dns", udpA, udpB)})
	s1, s2 := dialUDP(t, udpKey.addr), dialUDP(t, udpKey.addr)
	if got := []string{ask(t, s1), ask(t, s2), ask(t, s1), ask(t, s2)}; !slices.Equal(got, []string{"A", "B", "A", "B"}) {
		t.Errorf("UDP flows: %v, want [A B A B]", got)
	}
	apply(map[frontendKey]frontendSpec{udpKey: forward("dns", udpB)})
	if got := ask(t, s1); got != "B" {
		t.Errorf("UDP flow after its endpoint went: %q, want B", got)
	}
	udp := p.frontends[udpKey].fe.(*udpFrontend)
	flows := func() int {
		udp.mu.Lock()
		defer udp.mu.Unlock()
		return len(udp.flows)
	}
	waitFor(t, "idle UDP flows to expire", time.Second+2*p.udpIdle, func() bool { return flows() == 0 })

	// Health check server: 503 without local endpoints, 200 with.
	hc := frontendSpec{service: svc, port: "healthCheckNodePort", health: true}
	apply(map[frontendKey]frontendSpec{udpKey: forward("dns", udpB), hcKey: hc})
	if code, body := httpGet(t, "http://"+hcKey.addr.String()+"/healthz"); code != 503 || !strings.Contains(body, `"localEndpoints":0`) {
		t.Errorf("health without local endpoints: %d %s", code, body)
	}
	hc.localEndpoints = 2
	apply(map[frontendKey]frontendSpec{udpKey: forward("dns", udpB), hcKey: hc})
	if code, body := httpGet(t, "http://"+hcKey.addr.String()+"/"); code != 200 || body != `{"service":{"namespace":"ns","name":"svc"},"localEndpoints":2,"serviceProxyHealthy":true}` {
		t.Errorf("health with local endpoints: %d %s", code, body)
	}

	// Another Service cannot take a socket in use; the rest of its ports
	// are applied anyway.
	other := frontendSpec{service: "ns/other", port: "x", backends: []netip.AddrPort{tcpA}}
	if err := p.apply("ns/other", map[frontendKey]frontendSpec{udpKey: other, tcpKey: other}); err == nil || !strings.Contains(err.Error(), "taken by service ns/svc") {
		t.Errorf("conflicting apply: %v", err)
	}
	c = dialLine(t, tcpKey.addr)
	if got := exchange(t, c, "other"); got != "A:other" {
		t.Errorf("other Service's port: %q", got)
	}

	// Stop closes listeners and connections and waits for every goroutine.
	p.stop()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("proxied connection still open after stop")
	}
	c.Close()
	expectRefused(t, tcpKey.addr)
	expectRefused(t, hcKey.addr)
	if err := p.apply(svc, map[frontendKey]frontendSpec{tcpKey: forward("http", tcpA)}); err != nil {
		t.Errorf("apply after stop: %v", err)
	}
	expectRefused(t, tcpKey.addr)
	waitFor(t, "goroutines to end", 5*time.Second, func() bool { return runtime.NumGoroutine() <= before })
}

// lineServer answers every line with "<name>:<line>" and closes when the
// client does.
func lineServer(t *testing.T, name string) netip.AddrPort {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					fmt.Fprintf(c, "%s:%s\n", name, sc.Text())
				}
			})
		}
	})
	return netip.MustParseAddrPort(l.Addr().String())
}

func udpServer(t *testing.T, name string) netip.AddrPort {
	t.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(ap("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { c.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			_, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			c.WriteToUDPAddrPort([]byte(name), from)
		}
	}()
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// freeAddr is a loopback address whose port nothing listens on right now.
func freeAddr(t *testing.T, network string) netip.AddrPort {
	t.Helper()
	var addr net.Addr
	if network == "udp" {
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr = c.LocalAddr()
		c.Close()
	} else {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr = l.Addr()
		l.Close()
	}
	return netip.MustParseAddrPort(addr.String())
}

func dialLine(t *testing.T, addr netip.AddrPort) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp4", addr.String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func exchange(t *testing.T, c net.Conn, line string) string {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintln(c, line); err != nil {
		t.Fatal(err)
	}
	// Byte by byte: a buffered reader would swallow the next answers.
	var b strings.Builder
	buf := make([]byte, 1)
	for {
		if _, err := c.Read(buf); err != nil {
			t.Fatalf("reading the answer to %q: %v (so far %q)", line, err, b.String())
		}
		if buf[0] == '\n' {
			return b.String()
		}
		b.WriteByte(buf[0])
	}
}

func dialUDP(t *testing.T, addr netip.AddrPort) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(addr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ask(t *testing.T, c *net.UDPConn) string {
	t.Helper()
	answer, err := udpRoundTrip(c, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return answer
}

func udpRoundTrip(c *net.UDPConn, timeout time.Duration) (string, error) {
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("ping")); err != nil {
		return "", err
	}
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	return string(buf[:n]), err
}

func expectRefused(t *testing.T, addr netip.AddrPort) {
	t.Helper()
	if err := dialErr(addr); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial %s: %v, want connection refused", addr, err)
	}
}

func dialErr(addr netip.AddrPort) error {
	c, err := net.DialTimeout("tcp4", addr.String(), 2*time.Second)
	if err == nil {
		c.Close()
	}
	return err
}

var noKeepAlive = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// httpGet makes a request on a connection of its own.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	code, body, err := tryGet(url)
	if err != nil {
		t.Fatal(err)
	}
	return code, body
}

func tryGet(url string) (int, string, error) {
	resp, err := noKeepAlive.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(t.Context(), 20*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		return cond(), nil
	}); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// TestNodePorts runs the proxy against a real control plane: the
// EndpointSlice controller's slices, Deployments, Service changes.
func TestNodePorts(t *testing.T) {
	if os.Getenv("CLB_DIRECT_E2E") != "1" {
		t.Skip("end-to-end test: set CLB_DIRECT_E2E=1")
	}
	ctx := t.Context()
	began := time.Now()
	c := cluster.StartForTest(t, cluster.Options{})
	t.Logf("cluster started in %s", time.Since(began).Round(time.Millisecond))
	cs, err := kubernetes.NewForConfig(c.AdminConfig())
	if err != nil {
		t.Fatal(err)
	}
	// Pod addresses of our own, so the cluster package's test can run
	// alongside.
	sim, err := Start(ctx, cs, Options{Nodes: 3, NodePorts: true, PodCIDR: "127.3.0.0/16", MaxTerminationGracePeriod: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Stop)

	const ns = "proxy"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "default ServiceAccount", time.Minute, func() bool {
		_, err := cs.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil
	})
	nodeIP := map[string]string{}
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes.Items {
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				nodeIP[n.Name] = a.Address
			}
		}
	}
	if len(nodeIP) != 3 {
		t.Fatalf("node addresses: %v", nodeIP)
	}

	labels := map[string]string{"app": "echo"}
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "echo"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "echo", Image: "registry.example/echo:1",
					Ports: []corev1.ContainerPort{
						{Name: "http", ContainerPort: 8080},
						{Name: "dns", ContainerPort: 9000, Protocol: corev1.ProtocolUDP},
					},
				}}},
			},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	service := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "echo"},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeNodePort,
			Selector: labels,
			Ports: []corev1.ServicePort{
				{Name: "http", Port: 80, TargetPort: intstr.FromString("http")},
				{Name: "dns", Port: 53, TargetPort: intstr.FromInt32(9000), Protocol: corev1.ProtocolUDP},
			},
		},
	}
	svc, err := cs.CoreV1().Services(ns).Create(ctx, service, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "2 ready endpoints", time.Minute, func() bool { return countEndpoints(t, cs, ns, "echo", true) == 2 })
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=echo"})
	if err != nil {
		t.Fatal(err)
	}
	podOn := map[string]string{} // node -> pod
	var podNames []string
	for _, p := range pods.Items {
		podOn[p.Spec.NodeName] = p.Name
		podNames = append(podNames, p.Name)
	}
	if len(podOn) != 2 {
		t.Fatalf("pods on %v, want two nodes", podOn)
	}
	slices.Sort(podNames)
	var empty string // the node without a Pod
	for n := range nodeIP {
		if podOn[n] == "" {
			empty = n
		}
	}
	at := func(node string, port int32) netip.AddrPort {
		return netip.AddrPortFrom(netip.MustParseAddr(nodeIP[node]), uint16(port))
	}
	httpPort, udpPort := svc.Spec.Ports[0].NodePort, svc.Spec.Ports[1].NodePort

	step := time.Now()
	for node := range nodeIP {
		seen := map[string]bool{}
		waitFor(t, "HTTP via "+node+" to reach both pods", 30*time.Second, func() bool {
			if _, body, err := tryGet("http://" + at(node, httpPort).String() + "/"); err == nil {
				seen[body] = true
			}
			return len(seen) == 2
		})
		if got := slices.Sorted(maps.Keys(seen)); !slices.Equal(got, podNames) {
			t.Errorf("HTTP via %s reached %v, want %v", node, got, podNames)
		}
		seen = map[string]bool{}
		waitFor(t, "UDP via "+node+" to reach both pods", 30*time.Second, func() bool {
			c := dialUDP(t, at(node, udpPort))
			defer c.Close()
			if answer, err := udpRoundTrip(c, time.Second); err == nil {
				seen[answer] = true
			}
			return len(seen) == 2
		})
		if got := slices.Sorted(maps.Keys(seen)); !slices.Equal(got, podNames) {
			t.Errorf("UDP via %s reached %v, want %v", node, got, podNames)
		}
	}
	t.Logf("cluster policy: every node reaches both pods over TCP and UDP (%s)", time.Since(step).Round(time.Millisecond))

	// A keep-alive connection through the node that is about to lose its
	// endpoints under Local.
	held, err := net.Dial("tcp4", at(empty, httpPort).String())
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	heldReader := bufio.NewReader(held)
	heldPod := rawGet(t, held, heldReader)

	step = time.Now()
	svc = updateService(t, cs, ns, "echo", func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeLoadBalancer
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	})
	hcPort := svc.Spec.HealthCheckNodePort
	if hcPort == 0 {
		t.Fatal("no healthCheckNodePort allocated")
	}
	waitFor(t, "Local: only nodes with a pod answer, with that pod", 30*time.Second, func() bool {
		if !errors.Is(dialErr(at(empty, httpPort)), syscall.ECONNREFUSED) {
			return false
		}
		for node, pod := range podOn {
			for range 3 {
				if _, body, err := tryGet("http://" + at(node, httpPort).String() + "/"); err != nil || body != pod {
					return false
				}
			}
		}
		return true
	})
	for node, pod := range podOn {
		c := dialUDP(t, at(node, udpPort))
		if got := ask(t, c); got != pod {
			t.Errorf("UDP via %s under Local: %q, want %q", node, got, pod)
		}
	}
	waitFor(t, "health check node port", 30*time.Second, func() bool {
		for node := range nodeIP {
			want := http.StatusOK
			if node == empty {
				want = http.StatusServiceUnavailable
			}
			if code, _, err := tryGet("http://" + at(node, hcPort).String() + "/healthz"); err != nil || code != want {
				return false
			}
		}
		return true
	})
	t.Logf("local policy: refused without a local pod, local pod otherwise, health check 200/503 (%s)", time.Since(step).Round(time.Millisecond))
	if got := rawGet(t, held, heldReader); got != heldPod {
		t.Errorf("connection held across the change answered %q, want %q", got, heldPod)
	}
	held.Close()

	// A new nodePort: the old one closes, the new one answers.
	step = time.Now()
	oldPort := httpPort
	for attempt := 0; ; attempt++ {
		candidate := int32(30000 + rand.IntN(2768))
		if candidate == oldPort || candidate == udpPort || candidate == hcPort {
			continue
		}
		_, err := tryUpdateService(cs, ns, "echo", func(s *corev1.Service) { s.Spec.Ports[0].NodePort = candidate })
		if err == nil {
			httpPort = candidate
			break
		}
		if !apierrors.IsInvalid(err) || attempt == 10 {
			t.Fatal(err)
		}
	}
	waitFor(t, "the nodePort to move", 30*time.Second, func() bool {
		for node, pod := range podOn {
			if !errors.Is(dialErr(at(node, oldPort)), syscall.ECONNREFUSED) {
				return false
			}
			if _, body, err := tryGet("http://" + at(node, httpPort).String() + "/"); err != nil || body != pod {
				return false
			}
		}
		return true
	})
	t.Logf("nodePort %d -> %d followed in %s", oldPort, httpPort, time.Since(step).Round(time.Millisecond))

	// A removed port closes its sockets; the others stay.
	step = time.Now()
	updateService(t, cs, ns, "echo", func(s *corev1.Service) { s.Spec.Ports = s.Spec.Ports[:1] })
	waitFor(t, "the UDP port to close", 30*time.Second, func() bool {
		for node := range podOn {
			c := dialUDP(t, at(node, udpPort))
			_, err := udpRoundTrip(c, 200*time.Millisecond)
			c.Close()
			if err == nil {
				return false
			}
		}
		return true
	})
	for node, pod := range podOn {
		if code, body := httpGet(t, "http://"+at(node, httpPort).String()+"/"); code != 200 || body != pod {
			t.Errorf("HTTP via %s after the UDP port's removal: %d %q", node, code, body)
		}
	}
	t.Logf("removed UDP port closed in %s", time.Since(step).Round(time.Millisecond))

	// A deleted Service closes everything.
	step = time.Now()
	if err := cs.CoreV1().Services(ns).Delete(ctx, "echo", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the deleted Service's ports to close", 30*time.Second, func() bool {
		for node := range nodeIP {
			if !errors.Is(dialErr(at(node, httpPort)), syscall.ECONNREFUSED) || !errors.Is(dialErr(at(node, hcPort)), syscall.ECONNREFUSED) {
				return false
			}
		}
		return true
	})
	t.Logf("deleted Service's ports closed in %s", time.Since(step).Round(time.Millisecond))

	// Scaling to zero: the terminating Pods still serve (kube-proxy's
	// fallback), then every node refuses.
	svc, err = cs.CoreV1().Services(ns).Create(ctx, service, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	httpPort, udpPort = svc.Spec.Ports[0].NodePort, svc.Spec.Ports[1].NodePort
	waitFor(t, "the recreated Service to answer", 30*time.Second, func() bool {
		for node := range nodeIP {
			if _, _, err := tryGet("http://" + at(node, httpPort).String() + "/"); err != nil {
				return false
			}
		}
		return true
	})
	step = time.Now()
	scale, err := cs.AppsV1().Deployments(ns).GetScale(ctx, "echo", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	scale.Spec.Replicas = 0
	if _, err := cs.AppsV1().Deployments(ns).UpdateScale(ctx, "echo", scale, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "endpoints to be terminating", 30*time.Second, func() bool {
		return countEndpoints(t, cs, ns, "echo", false) == 2 && countEndpoints(t, cs, ns, "echo", true) == 0
	})
	for node := range nodeIP {
		if _, body, err := tryGet("http://" + at(node, httpPort).String() + "/"); err != nil || !slices.Contains(podNames, body) {
			t.Errorf("via %s while the pods terminate: %q, %v; want a pod's name", node, body, err)
		}
	}
	waitFor(t, "every node to refuse", 30*time.Second, func() bool {
		for node := range nodeIP {
			if !errors.Is(dialErr(at(node, httpPort)), syscall.ECONNREFUSED) {
				return false
			}
			c := dialUDP(t, at(node, udpPort))
			_, err := udpRoundTrip(c, 200*time.Millisecond)
			c.Close()
			if err == nil {
				return false
			}
		}
		return true
	})
	t.Logf("scaled to 0: served while terminating, then refused, in %s", time.Since(step).Round(time.Millisecond))
}

// countEndpoints counts the Service's endpoints that are ready (ready) or
// serving while terminating (!ready).
func countEndpoints(t *testing.T, cs kubernetes.Interface, ns, name string, ready bool) int {
	list, err := cs.DiscoveryV1().EndpointSlices(ns).List(t.Context(), metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + name})
	if err != nil {
		return -1
	}
	n := 0
	for _, s := range list.Items {
		for _, e := range s.Endpoints {
			c := e.Conditions
			if ready && ptr.Deref(c.Ready, false) || !ready && ptr.Deref(c.Serving, false) && ptr.Deref(c.Terminating, false) {
				n++
			}
		}
	}
	return n
}

func updateService(t *testing.T, cs kubernetes.Interface, ns, name string, change func(*corev1.Service)) *corev1.Service {
	t.Helper()
	svc, err := tryUpdateService(cs, ns, name, change)
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func tryUpdateService(cs kubernetes.Interface, ns, name string, change func(*corev1.Service)) (*corev1.Service, error) {
	var svc *corev1.Service
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		s, err := cs.CoreV1().Services(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		change(s)
		svc, err = cs.CoreV1().Services(ns).Update(context.Background(), s, metav1.UpdateOptions{})
		return err
	})
	return svc, err
}

// rawGet sends a request on a connection kept open across calls and
// returns the body.
func rawGet(t *testing.T, c net.Conn, r *bufio.Reader) string {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: node\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}
