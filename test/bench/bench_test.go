package bench

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestFloor(t *testing.T) {
	limits := Limits{RequestsPerSecond: 20, TaskDuration: 100 * time.Millisecond}
	cold := coldStartFloor(200, 50)
	// 200 CLBs, 200 listeners, 200 batches of 50 targets.
	if got := cold.Writes(); got != 600 {
		t.Errorf("cold start writes %d, want 600", got)
	}
	// The busiest action: 400 task polls (listener + batch per CLB), the
	// first 20 in the initial burst.
	if got, want := cold.Bound(limits), 19*time.Second; got != want {
		t.Errorf("cold start bound %s, want %s", got, want)
	}
	// 1,200 targets a Service take three batches: 500, 500, 200.
	if got := coldStartFloor(1, 1200).Calls["BatchRegisterTargets"]; got != 3 {
		t.Errorf("1200 targets: %d batches, want 3", got)
	}
	// A single CLB is bound by its chain of tasks, not by the rate.
	if got, want := churnFloor(1, 50).Bound(limits), 200*time.Millisecond; got != want {
		t.Errorf("one CLB's churn bound %s, want %s (register, then deregister)", got, want)
	}
	if got := (Floor{Calls: map[string]int{"DescribeTargets": 1000}}).Bound(Limits{}); got != 0 {
		t.Errorf("no limits: bound %s, want 0", got)
	}
}

// TestSteadyStateWritesNothing is the benchmark made small for make test:
// 10 Services of 5 Pods against the rate-limited emulator. The cold start
// must take the fewest writes, and three resync periods with nothing
// changing no write at all and at most one read per CLB per resync.
func TestSteadyStateWritesNothing(t *testing.T) {
	if os.Getenv("CLB_DIRECT_E2E") == "" {
		t.Skip("set CLB_DIRECT_E2E=1 to run against a real control plane (make e2e)")
	}
	report, err := Run(t.Context(), Config{
		Services: 10, PodsPerService: 5,
		Limits:       Limits{RequestsPerSecond: 20, TaskDuration: 100 * time.Millisecond},
		ResyncPeriod: 2 * time.Second, Resyncs: 3,
		ConvergeTimeout: time.Minute,
		Dir:             filepath.Join(t.TempDir(), "bench"),
		Log:             testWriter{t},
	})
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]Result{}
	for _, r := range report.Results {
		t.Logf("%s: %.1fs, %d writes (minimum %d), %d reads %v %v", r.Scenario, r.Seconds, r.Writes, r.MinWrites, r.Reads, r.Calls, r.Figures)
		byName[r.Scenario] = r
	}
	if cold := byName["cold start"]; cold.Writes != cold.MinWrites {
		t.Errorf("cold start: %d writes, want the minimum %d", cold.Writes, cold.MinWrites)
	}
	steady := byName["steady state"]
	if steady.Writes != 0 {
		t.Errorf("steady state: %d writes, want none: %v", steady.Writes, steady.Calls)
	}
	// Below one: the resyncs' reads; none at all would mean no resync
	// happened and nothing was measured.
	if most, resyncs := steady.Figures["mostReadsOfOneCLB"], steady.Figures["resyncs"]; most > resyncs || resyncs < 3 {
		t.Errorf("steady state: a CLB read %.0f times in %.0f resyncs (want 3 or more, each at most one read): %v", most, resyncs, steady.Calls)
	}
	if perCLB := steady.Figures["readsPerCLBPerResync"]; perCLB > 1 || perCLB < 0.5 {
		t.Errorf("steady state: %.2f reads per CLB per resync, want between 0.5 and 1: %v", perCLB, steady.Calls)
	}
	if churn := byName["full churn"]; churn.Seconds == 0 {
		t.Errorf("no churn measured")
	}
}
