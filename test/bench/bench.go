// Package bench is the scale benchmark: the controller binary against a
// real kube-apiserver and the CLB emulator with the API's limits on, each
// scenario's time and calls set against the floor those limits allow, and
// the naive strategy's in the same run. hack/bench runs it (make bench);
// the tests here run a small version in make test.
package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"clb-direct/cloud"
	"clb-direct/cloud/emulator"
	"clb-direct/cloud/fake"
	"clb-direct/cloud/tencent"
	"clb-direct/controller"
	"clb-direct/test/env"
)

// Config sizes the run.
type Config struct {
	Services       int
	PodsPerService int
	Limits         Limits
	// Workers is the controller's --workers.
	Workers int
	// ResyncPeriod and Resyncs make the steady-state window.
	ResyncPeriod time.Duration
	Resyncs      int
	// LatencyServices are the numbers of idle Services the one-Pod-change
	// latency is measured among (none: skipped), LatencyEvents the Pod
	// changes at each.
	LatencyServices []int
	LatencyEvents   int
	// Naive runs the baseline too; it gets at most NaiveTimeout per
	// scenario, and its time is projected from its progress when it is
	// cut short.
	Naive        bool
	NaiveTimeout time.Duration
	// MemoryServices × MemoryPods is the memory scenario's size (0: skipped).
	MemoryServices, MemoryPods int
	// ConvergeTimeout bounds our controller's scenarios.
	ConvergeTimeout time.Duration
	Dir             string
	Log             io.Writer
}

// Result is one scenario run by one strategy.
type Result struct {
	Scenario string
	Strategy string
	// Seconds is the measured time; Projected marks a run cut short whose
	// time is extrapolated from its progress.
	Seconds   float64
	Projected bool `json:",omitempty"`
	// BoundSeconds is the floor's time under the limits (0: no bound).
	BoundSeconds float64 `json:",omitempty"`
	Writes       int
	MinWrites    int `json:",omitempty"`
	Reads        int
	// Rejected are the calls the API refused (throttled, a busy CLB),
	// which were retried: not in Writes or Reads.
	Rejected int
	Calls    map[string]int
	// Figures are the scenario's own measurements (latencies, reads per
	// CLB per resync, CPU per event, ...).
	Figures map[string]float64 `json:",omitempty"`
	// Target is the goal in words, Met whether it was reached.
	Target string `json:",omitempty"`
	Met    *bool  `json:",omitempty"`
}

// TimeRatio is measured time over the bound.
func (r Result) TimeRatio() float64 {
	if r.BoundSeconds == 0 {
		return 0
	}
	return r.Seconds / r.BoundSeconds
}

// Report is the whole run.
type Report struct {
	Started time.Time
	CPUs    int
	Config  Config
	Results []Result
}

type bench struct {
	cfg Config
	env *env.Env
	log io.Writer
}

// Run starts a control plane and runs every scenario of cfg.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Log == nil {
		cfg.Log = os.Stderr
	}
	// No Deployments, EndpointSlices or garbage collection: the workload
	// makes Pods itself, and those controllers would only compete with the
	// controller measured for the machine's CPUs on every Pod change.
	e, err := env.Start(ctx, env.Options{Dir: cfg.Dir, Log: cfg.Log, Nodes: 1,
		Controllers: []string{"serviceaccount", "serviceaccount-token", "namespace"}})
	if err != nil {
		return nil, err
	}
	defer e.Stop()
	// The environment's emulator has health checks and a data plane on,
	// which a benchmark does not want: each scenario starts its own.
	_ = e.Emulator.Process.Stop(5 * time.Second)
	// The workload's thousands of writes need more than client-go's
	// default 5 requests/s.
	config := e.Cluster.AdminConfig()
	config.QPS, config.Burst = 2000, 4000
	if e.Admin, err = kubernetes.NewForConfig(config); err != nil {
		return nil, err
	}
	b := &bench{cfg: cfg, env: e, log: cfg.Log}
	report := &Report{Started: time.Now(), CPUs: runtime.NumCPU(), Config: cfg}
	add := func(rs []Result, err error) error {
		report.Results = append(report.Results, rs...)
		return err
	}
	if len(cfg.LatencyServices) > 0 {
		if err := add(b.latency(ctx)); err != nil {
			return report, err
		}
	}
	w := newWorkload(e.Admin, "bench", cfg.Services, cfg.PodsPerService)
	b.logf("Creating %d Services and %d Pods...", cfg.Services, cfg.Services*cfg.PodsPerService)
	if err := w.create(ctx); err != nil {
		return report, err
	}
	if err := add(b.scale(ctx, w)); err != nil {
		return report, err
	}
	if cfg.MemoryServices > 0 {
		return report, add(b.memory(ctx))
	}
	return report, nil
}

// memory runs the memory scenario: the controller binary fed by the stub
// API (no kube-apiserver: its memory is the controller's alone to judge).
func (b *bench) memory(ctx context.Context) ([]Result, error) {
	b.logf("Memory: %d Services × %d Pods from the stub API", b.cfg.MemoryServices, b.cfg.MemoryPods)
	m, err := MeasureMemory(ctx, MemoryConfig{ControllerBin: b.env.Bins.Controller, EmulatorBin: b.env.Bins.Emulator,
		Services: b.cfg.MemoryServices, Pods: b.cfg.MemoryPods, Dir: filepath.Join(b.cfg.Dir, "memory"), Log: b.log,
		// Memory after the sync is measured, not how fast it gets there.
		ControllerArgs: []string{"--cloud-rate-limit", "-1", "--kube-api-qps", "1000", "--kube-api-burst", "2000"}})
	if err != nil {
		return nil, err
	}
	const mib = 1 << 20
	rss := float64(m.RSSBytes) / mib
	return []Result{{Scenario: "memory", Strategy: "clb-direct", Seconds: m.SyncTime.Seconds(),
		Figures: map[string]float64{"services": float64(m.Services), "pods": float64(m.Pods), "targets": float64(m.Targets),
			"rssMiB": rss, "heapInuseMiB": float64(m.HeapInuseBytes) / mib, "podJSONBytes": float64(m.PodBytes)},
		Target: "RSS ≤ 150 MiB after sync", Met: ptr.To(rss <= 150 && m.Targets == m.Pods)}}, nil
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.log, time.Now().Format("15:04:05 ")+format+"\n", args...)
}

// startEmulator starts a fresh account with the limits on, no health
// checks (every target healthy) and no data plane.
func (b *bench) startEmulator(ctx context.Context, l Limits) (*env.Emulator, error) {
	em, err := b.env.StartEmulator(ctx, "--rate-limit", strconv.FormatFloat(l.RequestsPerSecond, 'f', -1, 64),
		"--task-duration", l.TaskDuration.String(), "--health-check=false", "--data-plane=false", "--backends-per-listener", "5000")
	if err != nil {
		return nil, err
	}
	return em, nil
}

func (b *bench) startController(ctx context.Context, em *env.Emulator, name string, extra ...string) (*env.Controller, error) {
	args := []string{"--resync-period", b.cfg.ResyncPeriod.String(), "-v", "1"}
	if b.cfg.Workers > 0 {
		args = append(args, "--workers", strconv.Itoa(b.cfg.Workers))
	}
	args = append(args, extra...)
	return b.env.StartController(ctx, env.ControllerOptions{Name: name, Emulator: em, NoWebhook: true, Args: args})
}

// scale runs cold start, steady state and full churn of w: our controller
// on one account, the naive baseline on another. The baseline's cold start
// runs during our steady state, which counts calls (another account's
// traffic does not change them); then both follow the same churn.
func (b *bench) scale(ctx context.Context, w *workload) ([]Result, error) {
	em, err := b.startEmulator(ctx, b.cfg.Limits)
	if err != nil {
		return nil, err
	}
	defer func() { _ = em.Process.Stop(5 * time.Second) }()
	b.logf("Cold start: clb-direct starts with %d Pods running", w.services*w.pods)
	start := time.Now()
	ctrl, err := b.startController(ctx, em, "bench")
	if err != nil {
		return nil, err
	}
	defer func() { _ = ctrl.Stop(30 * time.Second) }()
	want, err := w.desired(ctx)
	if err != nil {
		return nil, err
	}
	conv, err := waitConverged(ctx, em, want, start, b.cfg.ConvergeTimeout)
	if err != nil {
		return nil, fmt.Errorf("cold start: %w", err)
	}
	cold, err := b.result(ctx, em, "cold start", "clb-direct", start, conv, coldStartFloor(w.services, w.pods))
	if err != nil {
		return nil, err
	}
	cold.Target = "time ≤ 1.2 × bound, writes ≤ 1.05 × minimum"
	cold.Met = ptr.To(cold.TimeRatio() <= 1.2 && float64(cold.Writes) <= 1.05*float64(cold.MinWrites))
	results := []Result{cold}

	var baseline *naiveRun
	naiveDone := make(chan error, 1)
	if b.cfg.Naive {
		go func() {
			var err error
			baseline, err = b.naiveColdStart(ctx, w)
			naiveDone <- err
		}()
	}
	steady, err := b.steadyState(ctx, em, w.services)
	if err != nil {
		return results, err
	}
	results = append(results, steady)
	if b.cfg.Naive {
		if err := <-naiveDone; err != nil {
			return results, fmt.Errorf("naive cold start: %w", err)
		}
		defer baseline.stop()
		results = append(results, baseline.cold)
	}

	b.logf("Full churn: every Service's %d Pods replaced", w.pods)
	start = time.Now()
	if err := w.roll(ctx); err != nil {
		return results, err
	}
	kubeDone := time.Since(start)
	if want, err = w.desired(ctx); err != nil {
		return results, err
	}
	var naiveConv converged
	var naiveErr error
	var waiting sync.WaitGroup
	if b.cfg.Naive {
		waiting.Go(func() {
			naiveConv, naiveErr = waitConverged(ctx, baseline.em, want, start, kubeDone+b.cfg.NaiveTimeout)
		})
	}
	conv, err = waitConverged(ctx, em, want, start, b.cfg.ConvergeTimeout)
	waiting.Wait()
	if err != nil {
		return results, fmt.Errorf("churn: %w", err)
	}
	churn, err := b.churnResult(ctx, em, "clb-direct", start, conv, kubeDone, w)
	if err != nil {
		return results, err
	}
	churn.Target = "time ≤ 1.3 × bound"
	churn.Met = ptr.To(churn.TimeRatio() <= 1.3)
	results = append(results, churn)
	if !b.cfg.Naive {
		return results, nil
	}
	if naiveErr != nil {
		return results, fmt.Errorf("naive churn: %w", naiveErr)
	}
	naiveChurn, err := b.churnResult(ctx, baseline.em, "naive", start, naiveConv, kubeDone, w)
	return append(results, naiveChurn), err
}

// churnResult: the floor of a churn is the cloud's, or the time the API
// server took to take the changes plus the last CLB's two tasks, whichever
// is longer: no controller acts on a change before it is made.
func (b *bench) churnResult(ctx context.Context, em *env.Emulator, strategy string, start time.Time, conv converged, kubeDone time.Duration, w *workload) (Result, error) {
	floor := churnFloor(w.services, w.pods)
	r, err := b.result(ctx, em, "full churn", strategy, start, conv, floor)
	if err != nil {
		return r, err
	}
	afterKube := kubeDone + time.Duration(floor.SerialTasks)*b.cfg.Limits.TaskDuration
	r.BoundSeconds = max(r.BoundSeconds, afterKube.Seconds())
	r.Figures = map[string]float64{"kubeSeconds": kubeDone.Seconds()}
	return r, nil
}

// steadyState counts the calls of Resyncs resync periods with nothing
// changing.
func (b *bench) steadyState(ctx context.Context, em *env.Emulator, clbs int) (Result, error) {
	// The writes of the convergence just observed may still be polling
	// their tasks.
	if err := sleep(ctx, 2*time.Second); err != nil {
		return Result{}, err
	}
	window := time.Duration(b.cfg.Resyncs) * b.cfg.ResyncPeriod
	b.logf("Steady state: %d resync periods of %s with nothing changing", b.cfg.Resyncs, b.cfg.ResyncPeriod)
	// A resync's reads come in a burst, and bursts are apart by a quiet
	// spell: the window starts with one, and the bursts in it are the
	// resyncs that reads are counted against.
	quiet := min(2*time.Second, b.cfg.ResyncPeriod/4)
	start, err := nextBurst(ctx, em, quiet, 2*b.cfg.ResyncPeriod+10*time.Second)
	if err != nil {
		return Result{}, fmt.Errorf("waiting for a resync: %w", err)
	}
	if err := sleep(ctx, time.Until(start.Add(window))); err != nil {
		return Result{}, err
	}
	calls, err := callsBetween(ctx, em, start, start.Add(window))
	if err != nil {
		return Result{}, err
	}
	byAction, writes, reads, rejected := countCalls(calls)
	resyncs := 0
	readsOf := map[string]int{}
	for i, c := range calls {
		if i == 0 || c.Time.Sub(calls[i-1].Time) >= quiet {
			resyncs++
		}
		if !writeActions[c.Action] && c.ErrorCode == "" {
			readsOf[c.LoadBalancerID]++
		}
	}
	mostRead := 0
	for _, n := range readsOf {
		mostRead = max(mostRead, n)
	}
	perCLB := float64(reads) / float64(clbs*max(resyncs, 1))
	r := Result{Scenario: "steady state", Strategy: "clb-direct", Seconds: window.Seconds(), Writes: writes, Reads: reads, Rejected: rejected, Calls: byAction,
		Figures: map[string]float64{"resyncs": float64(resyncs), "readsPerCLBPerResync": perCLB, "mostReadsOfOneCLB": float64(mostRead)},
		Target:  "0 writes, ≤ 1 read per CLB per resync"}
	// Every CLB, not only on average.
	r.Met = ptr.To(writes == 0 && perCLB <= 1 && mostRead <= resyncs)
	return r, nil
}

// result counts the calls made between start and convergence.
func (b *bench) result(ctx context.Context, em *env.Emulator, scenario, strategy string, start time.Time, conv converged, floor Floor) (Result, error) {
	calls, err := callsBetween(ctx, em, start, start.Add(conv.took))
	if err != nil {
		return Result{}, err
	}
	byAction, writes, reads, rejected := countCalls(calls)
	b.logf("%s (%s): %.1fs, %d writes (minimum %d), %d reads, %d rejected", scenario, strategy, conv.took.Seconds(), writes, floor.Writes(), reads, rejected)
	return Result{Scenario: scenario, Strategy: strategy, Seconds: conv.took.Seconds(), Projected: conv.projected,
		BoundSeconds: floor.Bound(b.cfg.Limits).Seconds(), Writes: writes, MinWrites: floor.Writes(), Reads: reads, Rejected: rejected, Calls: byAction}, nil
}

// naiveRun is the baseline, after its cold start, following the Pods on
// its own account.
type naiveRun struct {
	em   *env.Emulator
	cold Result
	stop func()
}

// naiveCold start measures the baseline's cold start on a fresh account,
// for NaiveTimeout at most, then has it take over from where it got:
// registering what it had not yet (not measured), so that it enters the
// churn from the same state as our controller.
func (b *bench) naiveColdStart(ctx context.Context, w *workload) (*naiveRun, error) {
	em, err := b.startEmulator(ctx, b.cfg.Limits)
	if err != nil {
		return nil, err
	}
	run := &naiveRun{em: em}
	defer func() {
		if run.stop == nil {
			_ = em.Process.Stop(5 * time.Second)
		}
	}()
	// The adapter reads its credentials from the environment, as the
	// controller binary does.
	os.Setenv(tencent.EnvSecretID, em.SecretID)
	os.Setenv(tencent.EnvSecretKey, em.SecretKey)
	c, err := tencent.New(tencent.Options{Region: em.Region, Endpoint: em.Addr, Scheme: "http",
		RateLimit: b.cfg.Limits.RequestsPerSecond})
	if err != nil {
		return nil, err
	}
	b.logf("Cold start (naive)")
	start := time.Now()
	coldCtx, stopCold := context.WithCancel(ctx)
	defer stopCold()
	done := make(chan error, 1)
	go func() {
		done <- newNaive(c, b.env.Admin, w.namespace, naiveWorkers).run(coldCtx, false, make(chan struct{}))
	}()
	want, err := w.desired(ctx)
	if err != nil {
		return nil, err
	}
	conv, err := waitConverged(ctx, em, want, start, b.cfg.NaiveTimeout)
	if err != nil {
		select {
		case runErr := <-done:
			err = fmt.Errorf("%w (the baseline stopped: %v)", err, runErr)
		default:
		}
		return nil, err
	}
	if run.cold, err = b.result(ctx, em, "cold start", "naive", start, conv, coldStartFloor(w.services, w.pods)); err != nil {
		return nil, err
	}
	stopCold()
	<-done

	followCtx, stopFollowing := context.WithCancel(ctx)
	following := make(chan error, 1)
	started := make(chan struct{})
	go func() { following <- newNaive(c, b.env.Admin, w.namespace, naiveWorkers).run(followCtx, true, started) }()
	select {
	case <-started:
	case err := <-following:
		stopFollowing()
		return nil, fmt.Errorf("the baseline stopped taking over: %w", err)
	}
	run.stop = func() {
		stopFollowing()
		<-following
		_ = em.Process.Stop(5 * time.Second)
	}
	return run, nil
}

// naiveWorkers send the baseline's calls: enough to keep every action's
// rate budget busy.
const naiveWorkers = 32

type converged struct {
	took      time.Duration
	projected bool
}

// waitConverged polls the account until every Service's CLB (found by
// its Service-UID tag) has exactly the wanted targets. After timeout it
// projects the time from the share of the work done, when some was, and
// fails otherwise.
func waitConverged(ctx context.Context, em *env.Emulator, want map[types.UID]map[string]bool, start time.Time, timeout time.Duration) (converged, error) {
	initial := -1
	for {
		state, err := em.State(ctx)
		if err != nil {
			return converged{}, err
		}
		remaining := difference(state, want)
		if remaining == 0 {
			return converged{took: time.Since(start)}, nil
		}
		if initial < 0 || remaining > initial {
			initial = remaining
		}
		if elapsed := time.Since(start); elapsed > timeout {
			done := initial - remaining
			if done <= 0 {
				return converged{}, fmt.Errorf("no progress in %s: %d targets still to change", timeout, remaining)
			}
			return converged{took: time.Duration(float64(elapsed) * float64(initial) / float64(done)), projected: true}, nil
		}
		if err := sleep(ctx, 250*time.Millisecond); err != nil {
			return converged{}, err
		}
	}
}

// difference counts the targets to add or remove, and a Service without a
// CLB (or its listener) as all of its targets to add.
func difference(state fake.State, want map[types.UID]map[string]bool) int {
	have := map[types.UID]map[string]bool{}
	for _, lb := range state.LoadBalancers {
		uid := types.UID(lb.Tags[cloud.TagServiceUUID])
		if _, ok := want[uid]; !ok {
			continue
		}
		set := map[string]bool{}
		for _, l := range lb.Listeners {
			for _, t := range l.Backends {
				set[fmt.Sprintf("%s:%d", t.IP, t.Port)] = true
			}
		}
		have[uid] = set
	}
	n := 0
	for uid, targets := range want {
		got := have[uid]
		for t := range targets {
			if !got[t] {
				n++
			}
		}
		for t := range got {
			if !targets[t] {
				n++
			}
		}
	}
	return n
}

// nextBurst waits for the first call after a quiet spell of at least
// quiet (the start of a resync's reads, not the tail of one under way) and
// returns its time.
func nextBurst(ctx context.Context, em *env.Emulator, quiet, timeout time.Duration) (time.Time, error) {
	last := time.Now()
	calls, err := em.Calls(ctx)
	if err != nil {
		return time.Time{}, err
	}
	if len(calls) > 0 {
		last = calls[len(calls)-1].Time
	}
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); {
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return time.Time{}, err
		}
		calls, err := em.Calls(ctx)
		if err != nil {
			return time.Time{}, err
		}
		for _, c := range calls {
			if !c.Time.After(last) {
				continue
			}
			if c.Time.Sub(last) >= quiet {
				return c.Time, nil
			}
			last = c.Time
		}
	}
	return time.Time{}, fmt.Errorf("no call after %s of quiet within %s", quiet, timeout)
}

// callsBetween is the emulator's call log from start to end.
func callsBetween(ctx context.Context, em *env.Emulator, start, end time.Time) ([]emulator.CallRecord, error) {
	calls, err := em.Calls(ctx)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(calls, func(c emulator.CallRecord) bool { return c.Time.Before(start) || c.Time.After(end) }), nil
}

// loadBalancerIDs maps the Services of a namespace to the CLB each
// recorded.
func loadBalancerIDs(ctx context.Context, e *env.Env, namespace string) (map[string]string, error) {
	svcs, err := e.Admin.CoreV1().Services(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, s := range svcs.Items {
		out[s.Name] = s.Annotations[controller.AnnotationLoadBalancerID]
	}
	return out, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
