package chaos

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"clb-direct/cloud"
	"clb-direct/cloud/emulator"
)

// The write actions of the CLB API the controller uses: a
// ResourceInOperating storm hits them, and the controller is killed right
// after the emulator served one of them.
var writeActions = []string{
	"CreateLoadBalancer", "DeleteLoadBalancer", "ModifyLoadBalancerAttributes",
	"CreateListener", "ModifyListener", "DeleteListener",
	"BatchRegisterTargets", "BatchDeregisterTargets", "BatchModifyTargetWeight",
}

// killAfter are the writes after which the controller is killed before it
// hears the answer: it must not lose what the write did (a CLB not yet on
// the Service, a listener, a registration, a CLB deleted but the finalizer
// still there) nor trip over it.
var killAfter = []string{
	"CreateLoadBalancer", "CreateListener", "BatchRegisterTargets", "BatchDeregisterTargets",
	"DeleteListener", "DeleteLoadBalancer",
}

// baseline are the faults in force during the whole run: 20% of every
// call fails with a transient error or a throttle, 15% of the tasks fail,
// each listener of a batch fails 20% of the time, and 3% of the responses
// are lost after the call was served.
func baseline() emulator.FaultSettings {
	return emulator.FaultSettings{
		Action: "*",
		ErrorMix: &emulator.ErrorMix{Rate: 0.2, Codes: []string{
			cloud.CodeInternalError, cloud.CodeRequestLimitExceeded, cloud.CodeResourceInOperating,
		}},
		TaskFailureRate:    ptrTo(0.15),
		PartialFailureRate: ptrTo(0.2),
		DropResponseRate:   ptrTo(0.03),
	}
}

func ptrTo[T any](v T) *T { return &v }

// injector runs the fault schedule: the baseline all along, and on top,
// each on its own clock, ResourceInOperating storms, controller kills (at
// random, or right after a write was served), broken API server
// connections (with etcd compacted meanwhile, so watches resume on a
// compacted revision: 410 Gone), and the CLB API unreachable for 30 s.
// Kills and broken connections stop before the end (see run).
type injector struct {
	sup        *supervisor
	proxy      *tcpProxy
	log        io.Writer
	controller string // the controller's SecretId

	mu     sync.Mutex
	counts map[string]int
	// outages are the API outages: when and how; downUntil ends the
	// current one.
	outages   []string
	downUntil time.Time
	// stormUntil ends the current ResourceInOperating storm.
	stormUntil time.Time
}

func (in *injector) count(kind string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.counts[kind]++
}

func (in *injector) logf(format string, args ...any) {
	fmt.Fprintf(in.log, "chaos: %s "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
}

// run injects faults for d, then stops them all.
func (in *injector) run(ctx context.Context, rng *rand.Rand, d time.Duration, outageModes []string) error {
	if err := e.Emulator.SetFaults(ctx, baseline()); err != nil {
		return err
	}
	end := time.Now().Add(d)
	// The last quarter (25 s at most) has the CLB API's faults only: a
	// restart or a relist makes the controller read everything afresh,
	// which would hide a wrong belief left by an error (a write taken for
	// done), and the convergence that follows must not depend on one.
	quiet := end.Add(-min(d/4, 25*time.Second))
	var wg sync.WaitGroup
	// Each schedule gets a random source of its own, drawn now, so that a
	// seed gives the same schedules whatever the goroutines' timing.
	for _, schedule := range []struct {
		run func(*rand.Rand, time.Time)
		end time.Time
	}{{in.storms, end}, {in.kills, quiet}, {in.watchBreaks, quiet}} {
		r := rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))
		wg.Go(func() { schedule.run(r, schedule.end) })
	}
	// The outages are spread over the run: the n-th of N starts at
	// (2n+1)/(2N+1) of it, and lasts 30 s.
	for n, mode := range outageModes {
		at := time.Duration(float64(d) * float64(2*n+1) / float64(2*len(outageModes)+1))
		wg.Go(func() { in.outage(time.Now().Add(at), mode) })
	}
	wg.Wait()
	if err := adminDelete(context.Background(), "/admin/faults"); err != nil {
		return err
	}
	in.proxy.Unblock()
	return nil
}

// sleepUntil sleeps d, or until end; it reports whether end is not reached.
func sleepUntil(d time.Duration, end time.Time) bool {
	if left := time.Until(end); left < d {
		time.Sleep(max(left, 0))
		return false
	}
	time.Sleep(d)
	return time.Now().Before(end)
}

// storms: every 12-25 s, 6-15 s during which 95% of the writes fail with
// FailedOperation.ResourceInOperating: often longer than the SDK adapter's
// own retries of it (6 attempts, about 8-15 s), so the controller's retries
// are needed too.
func (in *injector) storms(rng *rand.Rand, end time.Time) {
	for sleepUntil(randIn(rng, 12*time.Second, 25*time.Second), end) {
		d := randIn(rng, 6*time.Second, 15*time.Second)
		in.mu.Lock()
		in.stormUntil = time.Now().Add(d)
		in.mu.Unlock()
		in.setWrites(&emulator.ErrorMix{Rate: 0.95, Codes: []string{cloud.CodeResourceInOperating}})
		in.count("ResourceInOperating storm")
		in.logf("ResourceInOperating storm for %s", d.Round(time.Second))
		sleepUntil(d, end)
		in.setWrites(baseline().ErrorMix)
	}
}

func (in *injector) setWrites(mix *emulator.ErrorMix) {
	for _, action := range writeActions {
		if err := e.Emulator.SetFaults(context.Background(), emulator.FaultSettings{Action: action, ErrorMix: mix}); err != nil {
			in.logf("setting faults: %v", err)
		}
	}
}

// kills: every 4-9 s, SIGKILL the controller: right after the emulator
// served a write (its response held back, so the controller never learns
// the outcome) whenever writes can succeed (not in an API outage or a
// storm) and the last kill was not one, else at a random moment.
func (in *injector) kills(rng *rand.Rand, end time.Time) {
	afterWrite := true
	for sleepUntil(randIn(rng, 4*time.Second, 9*time.Second), end) {
		if afterWrite && !in.apiDown() && !in.storming() && in.killAfterWrite(end) {
			afterWrite = false
			continue
		}
		if in.sup.kill() {
			in.count("SIGKILL at a random moment")
			in.logf("killed the controller")
		}
		afterWrite = true
	}
}

// killAfterWrite holds the response to the controller's next write of
// any kind in killAfter and kills the controller while it waits for it.
// It gives up after 8 s without such a write.
func (in *injector) killAfterWrite(end time.Time) bool {
	ctx := context.Background()
	hold := func(count int) {
		for _, action := range killAfter {
			if err := e.Emulator.SetFaults(ctx, emulator.FaultSettings{HoldNext: &emulator.HoldNext{Action: action, Count: count, MaxMs: 30000}}); err != nil {
				in.logf("holding %s: %v", action, err)
			}
		}
	}
	hold(1)
	defer hold(0)
	deadline := time.Now().Add(8 * time.Second)
	for time.Now().Before(deadline) && time.Now().Before(end) {
		held, err := heldCalls(ctx)
		if err != nil {
			in.logf("reading held calls: %v", err)
		}
		for _, h := range held {
			if h.Client == in.controller && in.sup.kill() {
				in.count("SIGKILL right after " + h.Action)
				in.logf("killed the controller right after the emulator served its %s", h.Action)
				return true
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

// watchBreaks: every 8-16 s, reset the controller's API server
// connections; every other time also refuse new ones for a second while
// etcd is compacted up to its current revision, so the watches resume
// from a compacted revision and get 410 Gone (the API server's watch cache
// is off for Pods and Services; see TestMain).
func (in *injector) watchBreaks(rng *rand.Rand, end time.Time) {
	for n := 0; sleepUntil(randIn(rng, 8*time.Second, 16*time.Second), end); n++ {
		if n%2 == 0 {
			in.proxy.Cut()
			in.count("API server connections reset")
			in.logf("reset the controller's API server connections")
			continue
		}
		// A controller that has just started may not watch yet: give it
		// a few seconds, so there is a watch to resume (at most 10 s).
		for wait := time.Now().Add(10 * time.Second); in.sup.runningFor() < 3*time.Second && time.Now().Before(wait); {
			time.Sleep(100 * time.Millisecond)
		}
		in.proxy.Block(time.Second)
		// A write after the watches broke, so their resource version is
		// behind the revision compacted.
		_ = touch(context.Background())
		rev, err := compactEtcd(context.Background())
		if err != nil {
			in.logf("compacting etcd: %v", err)
		} else {
			in.count("API server connections cut for 1 s, etcd compacted")
			in.logf("cut the controller's API server connections and compacted etcd at revision %d", rev)
		}
		time.Sleep(time.Until(in.proxy.blockedUntilTime()))
	}
}

// outage makes the CLB API unreachable for 30 s from at.
func (in *injector) outage(at time.Time, mode string) {
	time.Sleep(time.Until(at))
	if err := e.Emulator.SetFaults(context.Background(), emulator.FaultSettings{APIDown: &emulator.APIDown{Mode: mode, DurationMs: 30000}}); err != nil {
		in.logf("API outage: %v", err)
		return
	}
	in.count("CLB API unreachable for 30 s (" + mode + ")")
	in.logf("the CLB API is unreachable for 30 s (%s)", mode)
	in.mu.Lock()
	in.outages = append(in.outages, fmt.Sprintf("%s %s", time.Now().Format("15:04:05"), mode))
	in.downUntil = time.Now().Add(30 * time.Second)
	in.mu.Unlock()
	time.Sleep(30 * time.Second)
}

func (in *injector) storming() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return time.Now().Before(in.stormUntil)
}

func (in *injector) apiDown() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return time.Now().Before(in.downUntil)
}

func (in *injector) figures() map[string]int {
	in.mu.Lock()
	defer in.mu.Unlock()
	out := map[string]int{}
	for k, v := range in.counts {
		out[k] = v
	}
	return out
}

// --- emulator and etcd helpers ---

func heldCalls(ctx context.Context) ([]emulator.HeldCall, error) {
	var held []emulator.HeldCall
	return held, adminGet(ctx, "/admin/held", &held)
}

func injectedCounts(ctx context.Context) (map[string]int64, error) {
	var counts map[string]int64
	return counts, adminGet(ctx, "/admin/injected", &counts)
}

func batchLog(ctx context.Context) ([]emulator.BatchRecord, error) {
	var records []emulator.BatchRecord
	return records, adminGet(ctx, "/admin/batches", &records)
}

func adminDelete(ctx context.Context, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, "http://"+e.Emulator.Addr+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("DELETE %s: %s", path, resp.Status)
	}
	return nil
}

func adminGet(ctx context.Context, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.Emulator.Addr+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, body)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// touch writes a ConfigMap: one more revision in etcd.
func touch(ctx context.Context) error {
	cms := e.Admin.CoreV1().ConfigMaps(namespace)
	data := map[string]string{"at": time.Now().Format(time.RFC3339Nano)}
	cm, err := cms.Get(ctx, "chaos-tick", metav1.GetOptions{})
	if err != nil {
		_, err = cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "chaos-tick"}, Data: data}, metav1.CreateOptions{})
		return err
	}
	cm.Data = data
	_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
	return err
}

// compactEtcd compacts etcd's history up to its current revision, through
// etcd's JSON gateway, and returns that revision.
func compactEtcd(ctx context.Context) (int64, error) {
	var rangeResp struct {
		Header struct {
			Revision string `json:"revision"`
		} `json:"header"`
	}
	key := base64.StdEncoding.EncodeToString([]byte("/registry/"))
	if err := etcdPost(ctx, "/v3/kv/range", map[string]any{"key": key, "limit": 1, "keys_only": true}, &rangeResp); err != nil {
		return 0, err
	}
	var rev int64
	if _, err := fmt.Sscan(rangeResp.Header.Revision, &rev); err != nil {
		return 0, fmt.Errorf("etcd's revision %q: %w", rangeResp.Header.Revision, err)
	}
	if err := etcdPost(ctx, "/v3/kv/compaction", map[string]any{"revision": rev, "physical": true}, nil); err != nil {
		return 0, err
	}
	return rev, nil
}

func etcdPost(ctx context.Context, path string, in, out any) error {
	data, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.Cluster.EtcdURL()+path, bytes.NewReader(data))
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("etcd %s: %s: %s", path, resp.Status, body)
	}
	if out != nil {
		return json.Unmarshal(body, out)
	}
	return nil
}

// sortedCounts renders counts as "kind: n" lines, sorted.
func sortedCounts[V int | int64](counts map[string]V) []string {
	var lines []string
	for k, v := range counts {
		lines = append(lines, fmt.Sprintf("%s: %d", k, v))
	}
	sort.Strings(lines)
	return lines
}

func indent(lines []string) string {
	if len(lines) == 0 {
		return "  (none)"
	}
	return "  " + strings.Join(lines, "\n  ")
}
