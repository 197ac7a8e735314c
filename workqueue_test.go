package main

// These tests pin down the client-go workqueue behaviour that the controller's
// correctness rests on. The controller keeps no locks of its own around a
// Service: it relies on the queue to hand a key to one worker at a time, to
// fold repeated events into one reconcile without losing the last one, to back
// off a failing key and to reset that backoff on success, and to let in-flight
// reconciles finish at shutdown. None of that is checked by the compiler, so a
// client-go upgrade that changed any of it would otherwise go unnoticed.
//
// The queue is built by newTestQueue exactly as the controller builds its own
// (per-item exponential backoff, max-of an overall token bucket); only the
// numbers and the clock are the test's.

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	testingclock "k8s.io/utils/clock/testing"
)

// queueParams are the knobs the controller sets on its queue.
type queueParams struct {
	baseDelay time.Duration // first retry delay of a failing key
	maxDelay  time.Duration // cap of the per-key exponential backoff
	qps       float64       // overall retry rate across all keys
	burst     int
}

// testParams keep the overall bucket out of the way (burst far above what a
// test uses), so that delays are the per-key backoff alone and deterministic.
var testParams = queueParams{baseDelay: 10 * time.Millisecond, maxDelay: 80 * time.Millisecond, qps: 10, burst: 1000}

// newTestQueue builds the queue the way the controller does. clk may be nil
// for the real clock.
func newTestQueue(t *testing.T, p queueParams, clk clock.WithTicker) workqueue.TypedRateLimitingInterface[string] {
	t.Helper()
	limiter := workqueue.NewTypedMaxOfRateLimiter(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](p.baseDelay, p.maxDelay),
		&workqueue.TypedBucketRateLimiter[string]{Limiter: rate.NewLimiter(rate.Limit(p.qps), p.burst)},
	)
	q := workqueue.NewTypedRateLimitingQueueWithConfig(limiter, workqueue.TypedRateLimitingQueueConfig[string]{
		Name:  "clb-direct-test-" + t.Name(),
		Clock: clk,
	})
	t.Cleanup(q.ShutDown)
	return q
}

// timerClock is a fake clock that reports every timer the queue asks for. The
// delaying queue arms exactly one timer, for the earliest waiting item, so the
// reported duration is the delay the queue scheduled; and once it is reported
// the timer is armed, so stepping the clock afterwards cannot race with it.
type timerClock struct {
	*testingclock.FakeClock
	timers chan time.Duration
}

func newTimerClock() *timerClock {
	return &timerClock{FakeClock: testingclock.NewFakeClock(time.Unix(1_700_000_000, 0)), timers: make(chan time.Duration, 100)}
}

func (c *timerClock) NewTimer(d time.Duration) clock.Timer {
	tm := c.FakeClock.NewTimer(d)
	c.timers <- d
	return tm
}

// nextTimer returns the delay of the next timer the queue arms.
func (c *timerClock) nextTimer(t *testing.T) time.Duration {
	t.Helper()
	select {
	case d := <-c.timers:
		return d
	case <-time.After(5 * time.Second):
		t.Fatal("the queue armed no timer for a rate-limited key")
		return 0
	}
}

// get is Get with a timeout, failing the test instead of hanging.
func get(t *testing.T, q workqueue.TypedInterface[string]) (string, bool) {
	t.Helper()
	type result struct {
		key      string
		shutdown bool
	}
	ch := make(chan result, 1)
	go func() {
		k, s := q.Get()
		ch <- result{k, s}
	}()
	select {
	case r := <-ch:
		return r.key, r.shutdown
	case <-time.After(5 * time.Second):
		t.Fatal("Get blocked for 5s")
		return "", false
	}
}

// mustGet gets a key and fails unless it is want and the queue is not shut down.
func mustGet(t *testing.T, q workqueue.TypedInterface[string], want string) {
	t.Helper()
	got, shutdown := get(t, q)
	if shutdown || got != want {
		t.Fatalf("Get() = (%q, shutdown=%v), want (%q, false)", got, shutdown, want)
	}
}

// waitLen waits until q.Len() == n.
func waitLen(t *testing.T, q workqueue.TypedInterface[string], n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for q.Len() != n {
		if time.Now().After(deadline) {
			t.Fatalf("queue length %d, want %d", q.Len(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// 1. Many events for a key that is waiting collapse into one reconcile.
func TestWorkqueueCoalescesAddsWhileWaiting(t *testing.T) {
	q := newTestQueue(t, testParams, nil)
	for range 100 {
		q.Add("ns/a")
	}
	q.Add("ns/b")
	q.Add("ns/a")
	if n := q.Len(); n != 2 {
		t.Fatalf("Len() = %d after 101 adds of ns/a and 1 of ns/b, want 2", n)
	}
	mustGet(t, q, "ns/a")
	mustGet(t, q, "ns/b")
	q.Done("ns/a")
	q.Done("ns/b")
	if n := q.Len(); n != 0 {
		t.Fatalf("Len() = %d after processing both keys, want 0: a key was handed out twice", n)
	}
}

// 2a. A key added while it is being processed is held back until Done, then
// handed out exactly once more, however many times it was added.
func TestWorkqueueReaddWhileProcessingRunsOnceMoreAfterDone(t *testing.T) {
	q := newTestQueue(t, testParams, nil)
	q.Add("ns/a")
	mustGet(t, q, "ns/a")
	for range 10 {
		q.Add("ns/a")
	}
	if n := q.Len(); n != 0 {
		t.Fatalf("Len() = %d while ns/a is processing, want 0: a second worker could take it", n)
	}
	q.Done("ns/a")
	if n := q.Len(); n != 1 {
		t.Fatalf("Len() = %d after Done of a re-added key, want 1", n)
	}
	mustGet(t, q, "ns/a")
	q.Done("ns/a")
	if n := q.Len(); n != 0 {
		t.Fatalf("Len() = %d after the second pass, want 0: the re-add was processed more than once", n)
	}
}

// 2b. Under concurrent workers and a stream of adds, no key is ever held by two
// workers at once, and no add is lost: the last add of every key is followed by
// a reconcile that started after it.
func TestWorkqueueKeyNeverProcessedConcurrentlyAndNoAddLost(t *testing.T) {
	const workers, keys, adds = 4, 5, 3000
	q := newTestQueue(t, testParams, nil)

	var (
		inFlight  [keys]atomic.Int32 // workers currently holding key i
		maxHeld   atomic.Int32       // most holders of one key ever seen
		generated [keys]atomic.Int64 // adds of key i made so far
		seen      [keys]atomic.Int64 // generation a reconcile of key i last started from
		processed atomic.Int64
	)
	keyName := func(i int) string { return fmt.Sprintf("ns/svc-%d", i) }
	index := make(map[string]int, keys)
	for i := range keys {
		index[keyName(i)] = i
	}

	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				key, shutdown := q.Get()
				if shutdown {
					return
				}
				i := index[key]
				held := inFlight[i].Add(1)
				for {
					m := maxHeld.Load()
					if held <= m || maxHeld.CompareAndSwap(m, held) {
						break
					}
				}
				seen[i].Store(generated[i].Load())
				time.Sleep(20 * time.Microsecond) // widen the window for overlap
				processed.Add(1)
				inFlight[i].Add(-1)
				q.Done(key)
			}
		}()
	}

	for n := range adds {
		i := n % keys
		generated[i].Add(1)
		q.Add(keyName(i))
		if n%50 == 0 {
			time.Sleep(50 * time.Microsecond) // let workers be mid-reconcile on some adds
		}
	}
	// ShutDown stops new adds; workers still drain what is queued or dirty.
	q.ShutDown()
	wg.Wait()

	if m := maxHeld.Load(); m != 1 {
		t.Fatalf("a key was held by %d workers at once, want at most 1", m)
	}
	for i := range keys {
		if g, s := generated[i].Load(), seen[i].Load(); s != g {
			t.Errorf("%s: last reconcile started at add %d of %d: an add was lost", keyName(i), s, g)
		}
	}
	if p := processed.Load(); p < keys || p > adds {
		t.Fatalf("%d reconciles for %d adds of %d keys, want between %d and %d", p, adds, keys, keys, adds)
	}
}

// 3. A failing key is retried with an exponentially growing, capped delay; the
// queue does not hand it out before that delay; Forget resets the backoff.
func TestWorkqueueRetryBacksOffAndForgetResets(t *testing.T) {
	clk := newTimerClock()
	q := newTestQueue(t, testParams, clk)
	const key = "ns/failing"

	// expectRetryAfter checks the key comes back after exactly want, not before.
	expectRetryAfter := func(want time.Duration) {
		t.Helper()
		if d := clk.nextTimer(t); d != want {
			t.Fatalf("retry scheduled after %v, want %v", d, want)
		}
		clk.Step(want - time.Nanosecond)
		if n := q.Len(); n != 0 {
			t.Fatalf("key handed out 1ns before its %v retry delay", want)
		}
		clk.Step(time.Nanosecond)
		waitLen(t, q, 1)
	}

	q.Add(key)
	// base 10ms doubling, capped at 80ms. Total fake time stays well below
	// the delaying queue's 10s heartbeat, so no other timer is armed.
	for i, want := range []time.Duration{10, 20, 40, 80, 80} {
		mustGet(t, q, key)
		q.AddRateLimited(key) // the reconcile failed
		q.Done(key)
		if n := q.NumRequeues(key); n != i+1 {
			t.Fatalf("NumRequeues = %d after %d failures, want %d", n, i+1, i+1)
		}
		expectRetryAfter(want * time.Millisecond)
	}

	mustGet(t, q, key)
	q.Forget(key) // the reconcile succeeded
	q.Done(key)
	if n := q.NumRequeues(key); n != 0 {
		t.Fatalf("NumRequeues = %d after Forget, want 0", n)
	}
	q.AddRateLimited(key) // fails again later: back to the base delay
	if n := q.NumRequeues(key); n != 1 {
		t.Fatalf("NumRequeues = %d after Forget and one failure, want 1", n)
	}
	expectRetryAfter(testParams.baseDelay)
	mustGet(t, q, key)
	q.Done(key)
}

// 3b. Backoff is per key (one failing Service does not slow another), while the
// overall bucket bounds the retry rate across keys: the delay is the larger.
func TestWorkqueueRateLimiterIsPerKeyBackoffMaxOverallBucket(t *testing.T) {
	p := testParams
	p.qps, p.burst = 0.01, 1 // one token now, the next in 100s
	q := newTestQueue(t, p, newTimerClock())
	limiter := workqueue.NewTypedMaxOfRateLimiter(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](p.baseDelay, p.maxDelay),
		&workqueue.TypedBucketRateLimiter[string]{Limiter: rate.NewLimiter(rate.Limit(p.qps), p.burst)},
	)
	if d := limiter.When("ns/a"); d != p.baseDelay {
		t.Fatalf("first failure of ns/a: delay %v, want base %v", d, p.baseDelay)
	}
	if d := limiter.When("ns/b"); d < 50*time.Second {
		t.Fatalf("ns/b right after ns/a with an empty bucket: delay %v, want the bucket's ~100s", d)
	}
	if n := limiter.NumRequeues("ns/b"); n != 1 {
		t.Fatalf("NumRequeues(ns/b) = %d, want 1", n)
	}
	// Same shape through the queue: requeues are counted per key.
	q.AddRateLimited("ns/a")
	q.AddRateLimited("ns/a")
	q.AddRateLimited("ns/b")
	if a, b := q.NumRequeues("ns/a"), q.NumRequeues("ns/b"); a != 2 || b != 1 {
		t.Fatalf("NumRequeues = (ns/a %d, ns/b %d), want (2, 1)", a, b)
	}
	q.Forget("ns/a")
	if a, b := q.NumRequeues("ns/a"), q.NumRequeues("ns/b"); a != 0 || b != 1 {
		t.Fatalf("after Forget(ns/a): NumRequeues = (ns/a %d, ns/b %d), want (0, 1)", a, b)
	}
}

// 4. Shutdown semantics the controller's stop path is built on.
func TestWorkqueueShutDownWithDrain(t *testing.T) {
	clk := newTimerClock()
	q := newTestQueue(t, testParams, clk)

	q.Add("ns/inflight")
	mustGet(t, q, "ns/inflight")
	q.Add("ns/queued-1")
	q.Add("ns/queued-2")
	q.AddRateLimited("ns/backing-off") // waiting in the delay heap
	backoff := clk.nextTimer(t)

	drained := make(chan struct{})
	go func() {
		q.ShutDownWithDrain()
		close(drained)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for !q.ShuttingDown() {
		if time.Now().After(deadline) {
			t.Fatal("ShuttingDown() stayed false after ShutDownWithDrain")
		}
		time.Sleep(time.Millisecond)
	}

	// It waits for the in-flight reconcile to call Done...
	select {
	case <-drained:
		t.Fatal("ShutDownWithDrain returned while a key was still being processed")
	case <-time.After(50 * time.Millisecond):
	}

	// ...and adds made during shutdown are dropped, delayed or not.
	q.Add("ns/late")
	q.AddRateLimited("ns/late-retry")
	if n := q.Len(); n != 2 {
		t.Fatalf("Len() = %d during shutdown, want the 2 keys queued before it", n)
	}

	q.Done("ns/inflight")
	select {
	case <-drained:
	case <-time.After(5 * time.Second):
		t.Fatal("ShutDownWithDrain did not return after the in-flight key was Done")
	}

	// What really happens to keys queued before shutdown: ShutDownWithDrain
	// waits only for keys being processed, not for queued ones, and Get keeps
	// handing queued keys out (shutdown=false) until the queue is empty. This
	// is why a worker checks whether the controller is stopping before it
	// reconciles a key it got. If client-go starts dropping them or reporting
	// shutdown earlier, this test fails and that check can be revisited.
	mustGet(t, q, "ns/queued-1")
	q.Done("ns/queued-1")
	mustGet(t, q, "ns/queued-2")
	q.Done("ns/queued-2")

	// A key still backing off at shutdown is never handed out, even once its
	// delay has passed.
	clk.Step(backoff)
	if key, shutdown := get(t, q); !shutdown {
		t.Fatalf("Get() = (%q, shutdown=false) on a drained, shut-down queue, want shutdown=true", key)
	}
	if n := q.Len(); n != 0 {
		t.Fatalf("Len() = %d after shutdown, want 0", n)
	}
}

// 4b. A worker blocked in Get on an empty queue is released by shutdown.
func TestWorkqueueShutDownReleasesIdleWorkers(t *testing.T) {
	q := newTestQueue(t, testParams, nil)
	const workers = 3
	done := make(chan bool, workers)
	for range workers {
		go func() {
			_, shutdown := q.Get()
			done <- shutdown
		}()
	}
	q.ShutDownWithDrain() // nothing in flight: returns at once
	for range workers {
		select {
		case shutdown := <-done:
			if !shutdown {
				t.Fatal("an idle worker's Get returned an item, want shutdown=true")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("an idle worker stayed blocked in Get after shutdown")
		}
	}
}
