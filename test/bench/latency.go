package bench

import (
	"context"
	"fmt"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"clb-direct/cloud/emulator"
	"clb-direct/test/env"
)

// latency measures, among LatencyServices idle Services in turn, how long
// one Pod's change takes to reach the cloud (the Pod status write sent →
// the emulator receives the write), and the controller's CPU per change.
// The emulator has no rate limit here: the API's limits are not what is
// measured, and the idle Services' CLBs are set up in seconds.
func (b *bench) latency(ctx context.Context) ([]Result, error) {
	em, err := b.startEmulator(ctx, Limits{TaskDuration: b.cfg.Limits.TaskDuration})
	if err != nil {
		return nil, err
	}
	defer func() { _ = em.Process.Stop(5 * time.Second) }()
	// Neither API's client-side limit holds up setting up a thousand
	// Services (three Service patches each), which is not what is measured.
	ctrl, err := b.startController(ctx, em, "latency", "--cloud-rate-limit", "-1", "--resync-period", "1h",
		"--kube-api-qps", "500", "--kube-api-burst", "1000")
	if err != nil {
		return nil, err
	}
	w := newWorkload(b.env.Admin, "latency", 0, 2)
	if err := w.create(ctx); err != nil {
		return nil, err
	}
	var results []Result
	// Which Pods are not ready: each change flips one.
	unready := map[int]bool{}
	for _, n := range b.cfg.LatencyServices {
		b.logf("One Pod change among %d idle Services", n)
		if err := w.addServices(ctx, n-w.services); err != nil {
			return results, err
		}
		want, err := w.desired(ctx)
		if err != nil {
			return results, err
		}
		if _, err := waitConverged(ctx, em, want, time.Now(), b.cfg.ConvergeTimeout); err != nil {
			return results, fmt.Errorf("setting up %d Services: %w", n, err)
		}
		// The last registrations' tasks finish.
		if err := sleep(ctx, 2*time.Second); err != nil {
			return results, err
		}
		r, err := b.podChanges(ctx, em, w, ctrl, n, unready)
		if err != nil {
			return results, err
		}
		results = append(results, r)
	}
	if len(results) > 1 {
		first, last := results[0], results[len(results)-1]
		ratio := last.Figures["allocsPerEvent"] / max(first.Figures["allocsPerEvent"], 1e-9)
		last.Figures["allocsPerEventRatio"] = ratio
		last.Figures["cpuPerEventRatio"] = last.Figures["cpuMillisPerEvent"] / max(first.Figures["cpuMillisPerEvent"], 1e-9)
		last.Target = fmt.Sprintf("p99 ≤ 50 ms; work (allocations) per event ≤ 1.5 × that at %.0f Services", first.Figures["services"])
		last.Met = ptr.To(last.Figures["p99Millis"] <= 50 && ratio <= 1.5)
		results[len(results)-1] = last
	}
	results[0].Target = "p99 ≤ 50 ms"
	results[0].Met = ptr.To(results[0].Figures["p99Millis"] <= 50)
	_ = ctrl.Stop(30 * time.Second)
	// Leave nothing behind for the next scenarios' controllers: the
	// Services go without their finalizers, as no CLB of theirs matters.
	return results, w.deleteAll(ctx)
}

// podChanges flips one Pod's readiness LatencyEvents times, spread over
// the n Services, one at a time, and matches each to the first write the
// emulator received for its CLB after it.
func (b *bench) podChanges(ctx context.Context, em *env.Emulator, w *workload, ctrl *env.Controller, n int, unready map[int]bool) (Result, error) {
	ids, err := loadBalancerIDs(ctx, b.env, w.namespace)
	if err != nil {
		return Result{}, err
	}
	type event struct {
		clb         string
		sent, acked time.Time
	}
	// One change at a time: latency, not throughput.
	const spacing = 100 * time.Millisecond
	// What the controller spends while idle for as long as the changes
	// take (lease renewals, the runtime) is not work per event.
	idle, err := workDuring(ctx, ctrl, func() error { return sleep(ctx, time.Duration(b.cfg.LatencyEvents)*spacing) })
	if err != nil {
		return Result{}, err
	}
	events := make([]event, 0, b.cfg.LatencyEvents)
	start := time.Now()
	busy, err := workDuring(ctx, ctrl, func() error {
		for k := range b.cfg.LatencyEvents {
			svc := k * 7919 % n // a prime stride visits the Services in a scattered order
			unready[svc] = !unready[svc]
			sent, acked, err := w.setReady(ctx, svc, 0, !unready[svc])
			if err != nil {
				return err
			}
			events = append(events, event{clb: ids[serviceName(svc)], sent: sent, acked: acked})
			if err := sleep(ctx, spacing); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return Result{}, err
	}
	calls, err := callsBetween(ctx, em, start, time.Now())
	if err != nil {
		return Result{}, err
	}
	// From the API server's answer (the event is out) and, for the whole
	// path, from the request.
	var fromEvent, fromRequest []float64
	for _, e := range events {
		i := slices.IndexFunc(calls, func(c emulator.CallRecord) bool {
			return writeActions[c.Action] && c.LoadBalancerID == e.clb && !c.Time.Before(e.sent)
		})
		if i < 0 {
			return Result{}, fmt.Errorf("no write reached CLB %s after the Pod change at %s", e.clb, e.sent.Format(time.StampMicro))
		}
		fromEvent = append(fromEvent, max(0, float64(calls[i].Time.Sub(e.acked))/float64(time.Millisecond)))
		fromRequest = append(fromRequest, float64(calls[i].Time.Sub(e.sent))/float64(time.Millisecond))
	}
	byAction, writes, reads, rejected := countCalls(calls)
	slices.Sort(fromEvent)
	slices.Sort(fromRequest)
	events64 := float64(len(events))
	return Result{Scenario: fmt.Sprintf("one Pod change, %d Services", n), Strategy: "clb-direct",
		Writes: writes, Reads: reads, Rejected: rejected, Calls: byAction,
		Figures: map[string]float64{
			"services":             float64(n),
			"events":               events64,
			"p50Millis":            percentile(fromEvent, 0.50),
			"p99Millis":            percentile(fromEvent, 0.99),
			"maxMillis":            fromEvent[len(fromEvent)-1],
			"p99FromRequestMillis": percentile(fromRequest, 0.99),
			"cpuMillisPerEvent":    (busy.cpu - idle.cpu).Seconds() * 1000 / events64,
			"allocsPerEvent":       (busy.allocs - idle.allocs) / events64,
			"allocKiBPerEvent":     (busy.allocBytes - idle.allocBytes) / 1024 / events64,
			"callsPerEvent":        float64(writes+reads) / events64,
		}}, nil
}

func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))]
}

// work is what a process spent: CPU time, and the allocations its Go
// runtime counted (go_memstats_* on its /metrics), which unlike CPU time
// on a shared machine do not vary from run to run.
type work struct {
	cpu                time.Duration
	allocs, allocBytes float64
}

// workDuring is the work the controller did while fn ran.
func workDuring(ctx context.Context, ctrl *env.Controller, fn func() error) (work, error) {
	before, err := workSoFar(ctx, ctrl)
	if err != nil {
		return work{}, err
	}
	if err := fn(); err != nil {
		return work{}, err
	}
	after, err := workSoFar(ctx, ctrl)
	return work{cpu: after.cpu - before.cpu, allocs: after.allocs - before.allocs, allocBytes: after.allocBytes - before.allocBytes}, err
}

func workSoFar(ctx context.Context, ctrl *env.Controller) (work, error) {
	cpu, err := cpuTime(ctrl.Pid())
	if err != nil {
		return work{}, err
	}
	m, err := scrape(ctx, "http://"+ctrl.MetricsAddr+"/metrics", "go_memstats_mallocs_total", "go_memstats_alloc_bytes_total")
	return work{cpu: cpu, allocs: m["go_memstats_mallocs_total"], allocBytes: m["go_memstats_alloc_bytes_total"]}, err
}

// deleteAll removes the workload: its Services go at once, without their
// finalizers (no controller is left to remove them, and no CLB of theirs
// matters), so no later controller sees them; the namespace takes the rest.
func (w *workload) deleteAll(ctx context.Context) error {
	svcs, err := w.client.CoreV1().Services(w.namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	if err := forEach(ctx, w.parallel, len(svcs.Items), func(ctx context.Context, i int) error {
		services := w.client.CoreV1().Services(w.namespace)
		name := svcs.Items[i].Name
		if _, err := services.Patch(ctx, name, types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{}); err != nil {
			return err
		}
		return services.Delete(ctx, name, metav1.DeleteOptions{})
	}); err != nil {
		return err
	}
	return w.client.CoreV1().Namespaces().Delete(ctx, w.namespace, metav1.DeleteOptions{})
}
