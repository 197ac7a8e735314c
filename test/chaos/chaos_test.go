package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"clb-direct/cloud"
	"clb-direct/cloud/emulator"
	"clb-direct/controller"
	"clb-direct/test/env"
)

// TestChaos: see the package comment. Bounds: before any fault, the
// workload converges within 2 minutes; after the faults stop, every CLB
// matches its Service within -chaos.converge (60 s); deleting every
// Service then removes every CLB and listener of ours within 60 s.
func TestChaos(t *testing.T) {
	requireE2E(t)
	rng := rand.New(rand.NewPCG(seed, seed>>1|1))
	outageModes := []string{"refuse", "hang"}
	if *faultDuration < 3*time.Minute {
		// One outage in a short run, its mode after the seed.
		outageModes = outageModes[seed%2 : seed%2+1]
	}
	t.Logf("seed %d (again: -chaos.seed=%d), faults for %s, convergence bound %s", seed, seed, *faultDuration, *convergeBound)

	w := newWorld(t)
	host, err := url.Parse(e.Cluster.Host())
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := startProxy(host.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	const name = "chaos"
	controllerLog := filepath.Join(e.Dir, "controllers", name, "controller.log")
	sup := startSupervisor(env.ControllerOptions{Name: name, Args: []string{"--kubeconfig", w.proxyKubeconfig(proxy.Addr())}}, os.Stderr)
	shutDown := false
	defer func() {
		if !shutDown {
			_ = sup.shutdown()
		}
		if t.Failed() {
			t.Logf("controller log %s ends with:\n%s", controllerLog, env.Tail(controllerLog, 60))
		}
	}()
	if _, err := sup.waitRunning(time.Minute); err != nil {
		t.Fatal(err)
	}

	// The workload, converged before any fault. The foreign objects are
	// recorded before the controller sees any Service.
	w.createForeign()
	w.snapshotForeign()
	w.createStable()
	w.createChurnInitial()
	began := time.Now()
	w.waitWorkload(2 * time.Minute)
	_, problems := w.waitConverged(2*time.Minute - time.Since(began))
	took := time.Since(began)
	if len(problems) > 0 {
		t.Fatalf("not converged 2 minutes after the workload was created, before any fault:\n%s", indent(problems))
	}
	t.Logf("workload converged in %s before the faults", took.Round(time.Millisecond))
	stableNames := []string{stableLent}
	for i := range stableCount {
		stableNames = append(stableNames, fmt.Sprintf("stable-%d", i))
	}
	for _, n := range stableNames {
		svc, err := e.Admin.CoreV1().Services(namespace).Get(w.ctx, n, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		w.stableCLB[n] = svc.Annotations[controller.AnnotationLoadBalancerID]
		addr := w.waitHealthy(n, 30*time.Second)
		w.startTraffic(n, func() string { return addr })
	}
	for i := range churnCount {
		w.startTraffic(churnName(i), cachedVIP(churnName(i)))
	}

	// The faults, while the churn goes on.
	in := &injector{sup: sup, proxy: proxy, log: os.Stderr, controller: e.Emulator.SecretID, counts: map[string]int{}}
	// The churn stops a little before the faults (10 s, or an eighth of
	// them), so that what the Services want is settled while the CLB API
	// still fails: reaching it must take the controller's own retries, not
	// the next change.
	faultsBegan := time.Now()
	churnStops := faultsBegan.Add(*faultDuration - min(*faultDuration/8, 10*time.Second))
	churn := w.startChurn(rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64())), os.Stderr, churnStops)
	// When did the CLBs last differ from the Services? Against the time of
	// the last change, that is how long the controller took to converge
	// with the CLB API still failing.
	lastDiff := make(chan time.Time, 1)
	stopWatching := make(chan struct{})
	go func() {
		var last time.Time
		for {
			select {
			case <-stopWatching:
				lastDiff <- last
				return
			case <-time.After(250 * time.Millisecond):
			}
			if len(w.diff(context.Background())) > 0 {
				last = time.Now()
			}
		}
	}()
	if err := in.run(context.Background(), rng, *faultDuration, outageModes); err != nil {
		t.Fatalf("injecting faults: %v", err)
	}
	churned := churn.finish()
	t.Logf("faults stopped after %s", time.Since(faultsBegan).Round(time.Second))

	// Convergence.
	converged, problems := w.waitConverged(*convergeBound)
	if len(problems) > 0 {
		t.Errorf("%s after the faults stopped, the CLBs still differ from the Services:\n%s", *convergeBound, indent(problems))
	} else {
		t.Logf("converged %s after the faults stopped", converged.Round(time.Millisecond))
	}
	close(stopWatching)
	settled := max((<-lastDiff).Sub(churn.lastChange()), 0)
	time.Sleep(2 * time.Second) // traffic through the converged CLBs
	for _, tr := range w.traffic {
		tr.finish()
	}

	ctx := context.Background()
	injected, err := injectedCounts(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// Nothing foreign touched.
	if problems := w.checkForeignUnchanged(); len(problems) > 0 {
		t.Errorf("foreign objects changed:\n%s", indent(problems))
	}
	// The stable Services kept their CLBs and every request.
	for _, n := range stableNames {
		svc, err := e.Admin.CoreV1().Services(namespace).Get(ctx, n, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := svc.Annotations[controller.AnnotationLoadBalancerID]; got != w.stableCLB[n] {
			t.Errorf("stable Service %s moved from CLB %s to %s", n, w.stableCLB[n], got)
		}
		tr := w.traffic[n]
		if tr.failed.Load() > 0 || tr.ok.Load() == 0 {
			t.Errorf("stable Service %s: %d requests served, %d failed, e.g.:\n%s", n, tr.ok.Load(), tr.failed.Load(), indent(tr.errs))
		}
	}
	var churnOK int64
	for i := range churnCount {
		churnOK += w.traffic[churnName(i)].ok.Load()
	}
	if churnOK == 0 {
		t.Errorf("no request through a churned Service succeeded: the traffic did not run")
	}

	// The faults really happened.
	injectedFigures := in.figures()
	tooOld := countLines(controllerLog, "too old resource version", "The resourceVersion for the provided watch is too old")
	kills, exits, starts, startFailures, exitNotes := sup.counts()
	for _, want := range []struct {
		what string
		n    int64
	}{
		{"InternalError", injected["error/"+cloud.CodeInternalError]},
		{"RequestLimitExceeded", injected["error/"+cloud.CodeRequestLimitExceeded]},
		{"ResourceInOperating", injected["error/"+cloud.CodeResourceInOperating]},
		{"failed tasks", injected["taskFailure"]},
		{"partly failed batches", injected["partialFailure"]},
		{"lost responses", injected["dropResponse"]},
		{"held responses", injected["holdResponse"]},
		{"API outage requests", injected["apiDown/refused"] + injected["apiDown/hung"]},
		{"controller kills", int64(kills)},
		{"watches ended by 410 Gone (controller log)", int64(tooOld)},
	} {
		if want.n == 0 {
			t.Errorf("no %s during the faults: this run did not test what it claims", want.what)
		}
	}

	// Deleting every Service removes every CLB and listener of ours.
	svcs, err := e.Admin.CoreV1().Services(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, svc := range svcs.Items {
		if err := w.serviceChange(svc.UID, 0, 0, func() error {
			return e.Admin.CoreV1().Services(namespace).Delete(ctx, svc.Name, metav1.DeleteOptions{})
		}); err != nil {
			t.Errorf("deleting Service %s: %v", svc.Name, err)
		}
	}
	cleaned, leftovers := w.waitCleanedUp(time.Minute)
	if len(leftovers) > 0 {
		t.Errorf("a minute after every Service was deleted:\n%s", indent(leftovers))
	}
	if problems := w.checkForeignUnchanged(); len(problems) > 0 {
		t.Errorf("foreign objects changed by the clean-up:\n%s", indent(problems))
	}
	shutDown = true
	if err := sup.shutdown(); err != nil {
		t.Errorf("the controller did not exit cleanly on SIGTERM: %v", err)
	}

	// Over the whole run, the clean-up included: no write to anything
	// foreign, and no deregistration that no change explains.
	batches, err := batchLog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	calls, err := e.Emulator.Calls(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if problems := w.checkForeignCalls(calls, batches, e.Emulator.SecretID); len(problems) > 0 {
		t.Errorf("the controller wrote to foreign objects:\n%s", indent(problems))
	}
	checked, problems := w.checkDeregistrations(batches, e.Emulator.SecretID)
	if len(problems) > 0 {
		t.Errorf("%d of %d deregistered targets were not taken out by any change:\n%s", len(problems), checked, indent(problems))
	}
	if n := countLines(controllerLog, "panic:", "Observed a panic"); n > 0 {
		t.Errorf("the controller log has %d panics", n)
	}

	// Figures.
	var report []string
	report = append(report, fmt.Sprintf("seed %d; faults for %s; outages: %s", seed, *faultDuration, strings.Join(in.outages, ", ")))
	report = append(report, "faults injected by the emulator:\n"+indent(sortedCounts(injected)))
	report = append(report, "faults injected by the test:\n"+indent(append(sortedCounts(injectedFigures),
		fmt.Sprintf("watches ended by 410 Gone (controller log): %d", tooOld))))
	report = append(report, fmt.Sprintf("controller: %d SIGKILLs, %d exits of its own %v, %d starts (%d did not get ready)", kills, exits, exitNotes, starts, startFailures))
	report = append(report, "churn:\n"+indent(sortedCounts(churned)))
	var reqs []string
	for _, n := range sortedKeys(w.traffic) {
		tr := w.traffic[n]
		reqs = append(reqs, fmt.Sprintf("%s: %d served, %d failed", n, tr.ok.Load(), tr.failed.Load()))
	}
	report = append(report, "requests through the CLBs:\n"+indent(reqs))
	var deregistrations, writes int
	for _, c := range calls {
		if c.Client == e.Emulator.SecretID && !strings.HasPrefix(c.Action, "Describe") {
			writes++
		}
	}
	for _, b := range batches {
		if b.Client == e.Emulator.SecretID && b.Action == actionDeregister {
			deregistrations += len(b.Targets)
		}
	}
	report = append(report, fmt.Sprintf("cloud calls of the controller that reached the account: %d (%d writes); %d targets deregistered, each checked against the changes",
		countClient(calls, e.Emulator.SecretID), writes, deregistrations))
	report = append(report, fmt.Sprintf("time to converge after the faults: %s (bound %s); after the last change, with the CLB API still failing: %s; clean-up after deleting every Service: %s",
		converged.Round(time.Millisecond), *convergeBound, settled.Round(250*time.Millisecond), cleaned.Round(time.Millisecond)))
	fmt.Printf("\n=== chaos figures\n%s\n\n", strings.Join(report, "\n"))
}

func countClient(calls []emulator.CallRecord, client string) int {
	n := 0
	for _, c := range calls {
		if c.Client == client {
			n++
		}
	}
	return n
}

// waitCleanedUp waits until no Service is left and the account has
// nothing but the foreign objects; it returns how long that took, or what
// is left.
func (w *world) waitCleanedUp(timeout time.Duration) (time.Duration, []string) {
	start := time.Now()
	for {
		var left []string
		svcs, err := e.Admin.CoreV1().Services(namespace).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			left = append(left, err.Error())
		} else {
			for _, svc := range svcs.Items {
				left = append(left, fmt.Sprintf("Service %s still exists (finalizers %v)", svc.Name, svc.Finalizers))
			}
		}
		state, err := e.Emulator.State(context.Background())
		if err != nil {
			left = append(left, err.Error())
		} else {
			for _, lb := range state.LoadBalancers {
				switch {
				case slices.Contains(w.foreignCLBs, lb.ID):
				case lb.ID == w.lentCLB:
					for _, l := range lb.Listeners {
						if !slices.Contains(w.foreignListeners, l.ID) {
							left = append(left, fmt.Sprintf("listener %s (%s) left on the lent CLB", l.ID, l.Name))
						}
					}
				default:
					left = append(left, fmt.Sprintf("CLB %s (%s, tags %v) left", lb.ID, lb.Name, lb.Tags))
				}
			}
		}
		if len(left) == 0 {
			return time.Since(start), nil
		}
		if time.Since(start) > timeout {
			return time.Since(start), left
		}
		time.Sleep(250 * time.Millisecond)
	}
}
