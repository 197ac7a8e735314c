package emulator

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	clb "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/clb/v20180317"
	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common"
	sdkerrors "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/errors"
	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/profile"
)

const (
	testID     = "AKIDemulatortest"
	testKey    = "emulator-test-secret-key"
	testRegion = "ap-guangzhou"
)

// newServer builds a server for a test, closed at its end; mutate adjusts
// the config. It is not serving yet (see serve), so that a test can change
// it first.
func newServer(t *testing.T, mutate func(*Config)) *Server {
	t.Helper()
	cfg := Config{SecretID: testID, SecretKey: testKey, Region: testRegion, ReconcileInterval: 10 * time.Millisecond}
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return srv
}

func serve(t *testing.T, srv *Server) string {
	t.Helper()
	addr, err := srv.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// start is newServer and serve.
func start(t *testing.T, mutate func(*Config)) (*Server, string) {
	t.Helper()
	srv := newServer(t, mutate)
	return srv, serve(t, srv)
}

// newClient is the official SDK's client pointed at the emulator.
func newClient(t *testing.T, addr, id, key string, mutate ...func(*profile.ClientProfile)) *clb.Client {
	t.Helper()
	cpf := profile.NewClientProfile()
	cpf.HttpProfile.Endpoint = addr
	cpf.HttpProfile.Scheme = "http"
	cpf.HttpProfile.ReqTimeout = 10
	for _, m := range mutate {
		m(cpf)
	}
	c, err := clb.NewClient(common.NewCredential(id, key), testRegion, cpf)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// vipNet returns a /16 of loopback addresses no other test or emulator
// instance is likely to use, so that data plane tests can run in
// parallel with other packages.
func vipNet() string {
	return fmt.Sprintf("127.%d.0.0/16", 100+rand.IntN(150))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// wantCode checks that err is an API error with the code.
func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	var sdkErr *sdkerrors.TencentCloudSDKError
	if !errors.As(err, &sdkErr) {
		t.Fatalf("error %v, want an SDK error with code %s", err, code)
	}
	if sdkErr.Code != code {
		t.Fatalf("error %v, want code %s", err, code)
	}
	if sdkErr.RequestId == "" {
		t.Errorf("error %v has no RequestId", err)
	}
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; last: %s", timeout, what, state)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitTask polls DescribeTaskStatus until the task is done; it fails the
// test if the task fails.
func waitTask(t *testing.T, c *clb.Client, taskID string) {
	t.Helper()
	if taskID == "" {
		t.Fatal("no task ID")
	}
	eventually(t, 5*time.Second, "task "+taskID, func() (bool, string) {
		req := clb.NewDescribeTaskStatusRequest()
		req.TaskId = &taskID
		resp, err := c.DescribeTaskStatus(req)
		if err != nil {
			t.Fatal(err)
		}
		switch *resp.Response.Status {
		case 0:
			return true, ""
		case 1:
			t.Fatalf("task %s failed", taskID)
		}
		return false, "running"
	})
}

// mustCreateLB creates an OPEN CLB and waits until it is ready (Status 1).
func mustCreateLB(t *testing.T, c *clb.Client, name string) *clb.LoadBalancer {
	t.Helper()
	req := clb.NewCreateLoadBalancerRequest()
	req.LoadBalancerType = ptr("OPEN")
	req.LoadBalancerName = &name
	resp, err := c.CreateLoadBalancer(req)
	must(t, err)
	id := *resp.Response.LoadBalancerIds[0]
	return waitReady(t, c, id)
}

// waitReady polls DescribeLoadBalancers until the CLB has Status 1.
func waitReady(t *testing.T, c *clb.Client, id string) *clb.LoadBalancer {
	t.Helper()
	var lb *clb.LoadBalancer
	eventually(t, 5*time.Second, "CLB "+id+" ready", func() (bool, string) {
		req := clb.NewDescribeLoadBalancersRequest()
		req.LoadBalancerIds = []*string{&id}
		resp, err := c.DescribeLoadBalancers(req)
		must(t, err)
		if len(resp.Response.LoadBalancerSet) != 1 {
			return false, fmt.Sprintf("%d CLBs", len(resp.Response.LoadBalancerSet))
		}
		lb = resp.Response.LoadBalancerSet[0]
		return *lb.Status == 1, fmt.Sprintf("status %d", *lb.Status)
	})
	return lb
}

// mustCreateListener creates a listener and waits for its task.
func mustCreateListener(t *testing.T, c *clb.Client, lbID, protocol string, port int64, hc *clb.HealthCheck) string {
	t.Helper()
	req := clb.NewCreateListenerRequest()
	req.LoadBalancerId = &lbID
	req.Protocol = &protocol
	req.Ports = []*int64{&port}
	req.ListenerNames = []*string{ptr(fmt.Sprintf("test_%s_%d", protocol, port))}
	req.HealthCheck = hc
	resp, err := c.CreateListener(req)
	must(t, err)
	waitTask(t, c, *resp.Response.RequestId)
	return *resp.Response.ListenerIds[0]
}

// register registers EniIp targets (ip:port → weight) on a listener, in
// the order of their addresses, and waits for the task.
func register(t *testing.T, c *clb.Client, lbID, listenerID string, weights map[string]int64) {
	t.Helper()
	req := clb.NewBatchRegisterTargetsRequest()
	req.LoadBalancerId = &lbID
	for _, addr := range slices.Sorted(maps.Keys(weights)) {
		host, port := splitAddr(t, addr)
		w := weights[addr]
		req.Targets = append(req.Targets, &clb.BatchTarget{ListenerId: &listenerID, EniIp: &host, Port: &port, Weight: ptr(w)})
	}
	resp, err := c.BatchRegisterTargets(req)
	must(t, err)
	if len(resp.Response.FailListenerIdSet) > 0 {
		t.Fatalf("FailListenerIdSet %v", strs(resp.Response.FailListenerIdSet))
	}
	waitTask(t, c, *resp.Response.RequestId)
}

func splitAddr(t *testing.T, addr string) (string, int64) {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	must(t, err)
	p, err := strconv.ParseInt(port, 10, 64)
	must(t, err)
	return host, p
}

// targetHealth returns "Alive"/"Dead"/"Unknown" (with HealthStatus) of
// every target of a CLB, by "ip:port".
func targetHealth(t *testing.T, c *clb.Client, lbID string) map[string]string {
	t.Helper()
	req := clb.NewDescribeTargetHealthRequest()
	req.LoadBalancerIds = []*string{&lbID}
	resp, err := c.DescribeTargetHealth(req)
	must(t, err)
	out := map[string]string{}
	for _, lb := range resp.Response.LoadBalancers {
		for _, l := range lb.Listeners {
			for _, r := range l.Rules {
				for _, tg := range r.Targets {
					key := net.JoinHostPort(deref(tg.IP), strconv.FormatInt(*tg.Port, 10))
					if tg.TargetId != nil {
						key = net.JoinHostPort(*tg.TargetId, strconv.FormatInt(*tg.Port, 10))
					}
					out[key] = fmt.Sprintf("%s/%v", *tg.HealthStatusDetial, *tg.HealthStatus)
				}
			}
		}
	}
	return out
}

// freeClosedPort returns an address on ip where nothing listens.
func freeClosedPort(t *testing.T, network, ip string) string {
	t.Helper()
	switch network {
	case "udp":
		pc, err := net.ListenPacket("udp", ip+":0")
		must(t, err)
		addr := pc.LocalAddr().String()
		pc.Close()
		return addr
	default:
		ln, err := net.Listen("tcp", ip+":0")
		must(t, err)
		addr := ln.Addr().String()
		ln.Close()
		return addr
	}
}

// tcpBackend is a target that greets each connection with its name, then
// echoes.
func tcpBackend(t *testing.T, ip, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	must(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				fmt.Fprintln(conn, name)
				_, _ = io.Copy(conn, conn)
			}()
		}
	}()
	return ln.Addr().String()
}

// udpBackend answers every datagram with its name.
func udpBackend(t *testing.T, ip, name string) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", ip+":0")
	must(t, err)
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo([]byte(name), from)
		}
	}()
	return pc.LocalAddr().String()
}

// greeting connects to addr and returns the first line the target sends
// ("" if the connection is closed without one) and the connection.
func greeting(t *testing.T, addr string) (string, net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	must(t, err)
	_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("reading the greeting through %s: %v", addr, err)
	}
	return strings.TrimSpace(line), conn, r
}

// rawCall is a hand-made API call: signed like the SDK signs (TC3, the
// documented algorithm, written out here independently of the server),
// with each piece overridable to test what the server refuses.
type rawCall struct {
	addr      string
	action    string
	body      string
	timestamp time.Time
	service   string
	id, key   string
	version   string
	region    string
	// tamper changes the body after signing.
	tamper string
}

func (rc rawCall) do(t *testing.T) (status int, envelope map[string]any) {
	t.Helper()
	if rc.timestamp.IsZero() {
		rc.timestamp = time.Now()
	}
	set := func(v *string, def string) {
		if *v == "" {
			*v = def
		}
	}
	set(&rc.service, "clb")
	set(&rc.id, testID)
	set(&rc.key, testKey)
	set(&rc.version, "2018-03-17")
	set(&rc.region, testRegion)
	ts := strconv.FormatInt(rc.timestamp.Unix(), 10)
	date := rc.timestamp.UTC().Format("2006-01-02")
	sum := sha256.Sum256([]byte(rc.body))
	canonical := "POST\n/\n\ncontent-type:application/json\nhost:" + rc.addr + "\n\ncontent-type;host\n" + hex.EncodeToString(sum[:])
	creq := sha256.Sum256([]byte(canonical))
	scope := date + "/" + rc.service + "/tc3_request"
	toSign := "TC3-HMAC-SHA256\n" + ts + "\n" + scope + "\n" + hex.EncodeToString(creq[:])
	mac := func(key []byte, msg string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	k := mac(mac(mac([]byte("TC3"+rc.key), date), rc.service), "tc3_request")
	sig := hex.EncodeToString(mac(k, toSign))

	body := rc.body
	if rc.tamper != "" {
		body = rc.tamper
	}
	req, err := http.NewRequest(http.MethodPost, "http://"+rc.addr+"/", strings.NewReader(body))
	must(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-TC-Action", rc.action)
	req.Header.Set("X-TC-Version", rc.version)
	req.Header.Set("X-TC-Region", rc.region)
	req.Header.Set("X-TC-Timestamp", ts)
	req.Header.Set("Authorization", fmt.Sprintf("TC3-HMAC-SHA256 Credential=%s/%s, SignedHeaders=content-type;host, Signature=%s", rc.id, scope, sig))
	return send(t, req)
}

func send(t *testing.T, req *http.Request) (int, map[string]any) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	must(t, err)
	var env map[string]any
	if err := json.Unmarshal(data, &env); err != nil {
		t.Fatalf("response %q is not JSON: %v", data, err)
	}
	return resp.StatusCode, env
}

// errorCode returns the envelope's Error.Code ("" if none).
func errorCode(env map[string]any) string {
	r, _ := env["Response"].(map[string]any)
	e, _ := r["Error"].(map[string]any)
	code, _ := e["Code"].(string)
	return code
}

// adminDo calls the admin API.
func adminDo(t *testing.T, addr, method, path string, in, out any) int {
	t.Helper()
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		must(t, err)
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, "http://"+addr+path, body)
	must(t, err)
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	defer resp.Body.Close()
	if out != nil && resp.StatusCode/100 == 2 {
		must(t, json.NewDecoder(resp.Body).Decode(out))
	}
	return resp.StatusCode
}

// jsonOf renders an SDK value for a failure message.
func jsonOf(v any) string {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(data)
}
