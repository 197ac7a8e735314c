package emulator

import (
	"fmt"
	"maps"
	"net"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	clb "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/clb/v20180317"
)

// registerInstances registers InstanceId targets (instance → port, weight
// 10) on a listener and waits for the task.
func registerInstances(t *testing.T, c *clb.Client, lbID, listenerID string, ports map[string]int64) {
	t.Helper()
	req := clb.NewBatchRegisterTargetsRequest()
	req.LoadBalancerId = &lbID
	for _, id := range slices.Sorted(maps.Keys(ports)) {
		req.Targets = append(req.Targets, &clb.BatchTarget{ListenerId: &listenerID, InstanceId: ptr(id), Port: ptr(ports[id]), Weight: ptr(int64(10))})
	}
	resp, err := c.BatchRegisterTargets(req)
	must(t, err)
	waitTask(t, c, *resp.Response.RequestId)
}

// TestInstanceTargets registers Nodes by InstanceId, as classic mode does:
// an instance whose address is known is probed and gets traffic at
// <address>:<port>; one without is unhealthy, saying why, until its
// address is set through the admin API.
func TestInstanceTargets(t *testing.T) {
	a := tcpBackend(t, "127.0.1.1", "a")
	b := tcpBackend(t, "127.0.1.2", "b")
	aIP, aPort := splitAddr(t, a)
	bIP, bPort := splitAddr(t, b)
	srv, addr := start(t, func(c *Config) {
		c.DataPlane = true
		c.VIPNet = vipNet()
		c.HealthCheck = true
		c.HealthCheckTimeScale = 0.02 // 5 s → 100 ms
		c.Instances = map[string]string{"ins-aaaaaaaa": aIP}
	})
	c := newClient(t, addr, testID, testKey)
	lb := mustCreateLB(t, c, "instances")
	lbID, vip := *lb.LoadBalancerId, *lb.LoadBalancerVips[0]
	listenerID := mustCreateListener(t, c, lbID, "TCP", 18090, &clb.HealthCheck{HealthNum: ptr(int64(2)), UnHealthNum: ptr(int64(2))})
	registerInstances(t, c, lbID, listenerID, map[string]int64{"ins-aaaaaaaa": aPort, "ins-bbbbbbbb": bPort})

	insA := net.JoinHostPort("ins-aaaaaaaa", strconv.FormatInt(aPort, 10))
	insB := net.JoinHostPort("ins-bbbbbbbb", strconv.FormatInt(bPort, 10))
	eventually(t, 5*time.Second, "instance verdicts", func() (bool, string) {
		h := targetHealth(t, c, lbID)
		return h[insA] == "Alive/true" && h[insB] == healthNoAddress+"/false", fmt.Sprint(h)
	})
	if !strings.Contains(healthNoAddress, "instance address unknown") {
		t.Errorf("the detail of an instance without address %q does not say why", healthNoAddress)
	}

	// DescribeTargets keys both by InstanceId, with the known IP.
	dt := clb.NewDescribeTargetsRequest()
	dt.LoadBalancerId = &lbID
	targets, err := c.DescribeTargets(dt)
	must(t, err)
	var got []string
	for _, tg := range targets.Response.Listeners[0].Targets {
		got = append(got, fmt.Sprintf("%s %s %d %v", *tg.Type, deref(tg.InstanceId), *tg.Port, strs(tg.PrivateIpAddresses)))
	}
	want := []string{fmt.Sprintf("CVM ins-aaaaaaaa %d [%s]", aPort, aIP), fmt.Sprintf("CVM ins-bbbbbbbb %d []", bPort)}
	if !slices.Equal(got, want) {
		t.Errorf("DescribeTargets %q, want %q", got, want)
	}

	// Traffic through the VIP reaches a, the one instance with an address.
	waitForwarder(t, srv, listenerID, map[string]bool{a: true})
	through := net.JoinHostPort(vip, "18090")
	for range 4 {
		name, conn, _ := greeting(t, through)
		conn.Close()
		if name != "a" {
			t.Fatalf("a connection through the VIP reached %q, want a", name)
		}
	}

	// Once b's address is known, b is probed, becomes Alive and shares the
	// traffic by weight.
	var addrs map[string]string
	if code := adminDo(t, addr, http.MethodPost, "/admin/instances", map[string]string{"ins-bbbbbbbb": bIP}, &addrs); code != http.StatusOK {
		t.Fatalf("POST /admin/instances: %d", code)
	}
	eventually(t, 5*time.Second, "b Alive", func() (bool, string) {
		h := targetHealth(t, c, lbID)
		return h[insA] == "Alive/true" && h[insB] == "Alive/true", fmt.Sprint(h)
	})
	waitForwarder(t, srv, listenerID, map[string]bool{a: true, b: true})
	counts := map[string]int{}
	for range 10 {
		name, conn, _ := greeting(t, through)
		conn.Close()
		counts[name]++
	}
	if counts["a"] != 5 || counts["b"] != 5 {
		t.Errorf("10 connections reached %v, want a 5 and b 5 (equal weights)", counts)
	}

	// An instance whose server is gone is Dead, as an ENI target would be.
	if code := adminDo(t, addr, http.MethodPost, "/admin/instances", map[string]string{"ins-bbbbbbbb": "127.0.1.3"}, nil); code != http.StatusOK {
		t.Fatalf("POST /admin/instances: %d", code)
	}
	eventually(t, 5*time.Second, "b Dead at an address where nothing listens", func() (bool, string) {
		h := targetHealth(t, c, lbID)
		return h[insB] == "Dead/false", fmt.Sprint(h)
	})
}

func TestAdminInstances(t *testing.T) {
	srv, addr := start(t, func(c *Config) { c.Instances = map[string]string{"ins-1": "10.0.0.1"} })
	var got map[string]string
	if code := adminDo(t, addr, http.MethodGet, "/admin/instances", nil, &got); code != http.StatusOK ||
		!reflect.DeepEqual(got, map[string]string{"ins-1": "10.0.0.1"}) {
		t.Fatalf("GET /admin/instances: %d %v, want the configured ins-1", code, got)
	}

	// POST merges and returns every address; an empty one forgets.
	got = nil
	code := adminDo(t, addr, http.MethodPost, "/admin/instances", map[string]string{"ins-2": "10.0.0.2", "ins-3": "fd00::3"}, &got)
	want := map[string]string{"ins-1": "10.0.0.1", "ins-2": "10.0.0.2", "ins-3": "fd00::3"}
	if code != http.StatusOK || !reflect.DeepEqual(got, want) {
		t.Errorf("POST /admin/instances: %d %v, want %v", code, got, want)
	}
	got = nil
	code = adminDo(t, addr, http.MethodPost, "/admin/instances", map[string]string{"ins-1": "10.0.0.11", "ins-3": ""}, &got)
	want = map[string]string{"ins-1": "10.0.0.11", "ins-2": "10.0.0.2"}
	if code != http.StatusOK || !reflect.DeepEqual(got, want) {
		t.Errorf("POST /admin/instances changing ins-1, forgetting ins-3: %d %v, want %v", code, got, want)
	}
	if ip, ok := srv.Cloud().InstanceAddress("ins-1"); !ok || ip != "10.0.0.11" {
		t.Errorf("the account has ins-1 at %q, %v; want 10.0.0.11", ip, ok)
	}

	// A bad entry changes nothing.
	for _, body := range []any{map[string]string{"ins-4": "10.0.0.4", "ins-5": "nope"}, map[string]string{"": "10.0.0.4"}, []string{"ins-4"}} {
		if code := adminDo(t, addr, http.MethodPost, "/admin/instances", body, nil); code != http.StatusBadRequest {
			t.Errorf("POST /admin/instances %v: %d, want 400", body, code)
		}
	}
	got = nil
	if adminDo(t, addr, http.MethodGet, "/admin/instances", nil, &got); !reflect.DeepEqual(got, want) {
		t.Errorf("after refused posts: %v, want %v", got, want)
	}

	if _, err := New(Config{SecretID: testID, SecretKey: testKey, Region: testRegion, Instances: map[string]string{"ins-1": "x"}}); err == nil {
		t.Error("New accepted an instance address that is not an IP")
	}
}
