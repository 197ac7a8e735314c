package readiness

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"
)

func TestWorkerMetrics(t *testing.T) {
	f := newWorkerFixture(t)
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	f.w.mu.Lock() // the Pod handlers read the options under the lock
	f.w.opts.Metrics = m
	f.w.mu.Unlock()

	var failPatches atomic.Bool
	f.client.PrependReactor("patch", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		if failPatches.Load() {
			return true, nil, errors.New("injected patch failure")
		}
		return false, nil, nil
	})

	f.setHealthOf("a", "10.0.0.1", false)
	if got := testutil.ToFloat64(m.waiting); got != 1 {
		t.Errorf("waiting %v, want 1", got)
	}
	f.round() // unhealthy: the gate stays False, no latency yet
	f.synced("a")
	f.clock.Step(5 * time.Second)

	// The CLB reports the Pod healthy, but the patch fails: the latency
	// runs from this round until the next patch succeeds.
	f.setHealth("10.0.0.1", true, "Alive")
	failPatches.Store(true)
	f.round()
	failPatches.Store(false)
	if n, _ := gateLatency(t, reg); n != 0 {
		t.Errorf("%d gate latencies before the patch succeeded, want 0", n)
	}
	f.clock.Step(2 * time.Second)
	f.round()
	f.expectCondition("a", v1.ConditionTrue, ReasonReady, f.readyMessage())
	if n, sum := gateLatency(t, reg); n != 1 || sum != 2 {
		t.Errorf("%d gate latencies summing to %vs, want one of 2s (from the first healthy round to the successful patch)", n, sum)
	}
	if got := testutil.ToFloat64(m.waiting); got != 0 {
		t.Errorf("waiting %v after the gate passed, want 0", got)
	}
}

// setHealthOf adds a waiting Pod with its backend's health set.
func (f *workerFixture) setHealthOf(name, ip string, healthy bool) {
	f.t.Helper()
	f.prepare(name, ip, f.lb.ID, f.listener.ID)
	f.setHealth(ip, healthy, "Dead")
	f.create(name, ip)
}

// gateLatency returns the sample count and sum of the gate latency.
func gateLatency(t *testing.T, g prometheus.Gatherer) (uint64, float64) {
	t.Helper()
	families, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == "clbdirect_readiness_gate_latency_seconds" {
			h := f.GetMetric()[0].GetHistogram()
			return h.GetSampleCount(), h.GetSampleSum()
		}
	}
	t.Fatal("no gate latency histogram")
	return 0, 0
}
