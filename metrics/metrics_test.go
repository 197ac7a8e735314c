package metrics

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/client-go/util/workqueue"
	testingclock "k8s.io/utils/clock/testing"
)

func TestWorkqueueMetricsMove(t *testing.T) {
	reg := prometheus.NewRegistry()
	provider := NewWorkqueueProvider(reg)
	p := provider.(*workqueueProvider)
	clk := testingclock.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	q := workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "test", MetricsProvider: provider, Clock: clk})
	defer q.ShutDown()

	q.Add("a")
	q.Add("b")
	q.Add("a") // folded into the queued "a": not an add
	if got := testutil.ToFloat64(p.depth.WithLabelValues("test")); got != 2 {
		t.Errorf("depth %v, want 2", got)
	}
	if got := testutil.ToFloat64(p.adds.WithLabelValues("test")); got != 2 {
		t.Errorf("adds %v, want 2", got)
	}

	clk.Step(time.Second)
	item, _ := q.Get()
	if got := testutil.ToFloat64(p.depth.WithLabelValues("test")); got != 1 {
		t.Errorf("depth after Get %v, want 1", got)
	}
	// The unfinished-work loop ticks on the queue's clock.
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(p.longestRunningProcessor.WithLabelValues("test")) == 0 ||
		testutil.ToFloat64(p.unfinishedWork.WithLabelValues("test")) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("unfinished work and longest running processor never moved while an item was processed")
		}
		clk.Step(time.Second)
		time.Sleep(time.Millisecond)
	}
	q.AddRateLimited(item)
	q.Done(item)
	if got := testutil.ToFloat64(p.retries.WithLabelValues("test")); got != 1 {
		t.Errorf("retries %v, want 1", got)
	}

	wantCounts := map[string]int{
		"workqueue_queue_duration_seconds": 1,
		"workqueue_work_duration_seconds":  1,
	}
	for name, want := range wantCounts {
		if got := histogramCount(t, reg, name, "test"); got != want {
			t.Errorf("%s observed %d times, want %d", name, got, want)
		}
	}
	if n := testutil.CollectAndCount(p.depth); n != 1 {
		t.Errorf("%d depth series, want 1 (one queue)", n)
	}
}

// histogramCount is the sample count of the histogram called name whose
// queue label is queue.
func histogramCount(t *testing.T, g prometheus.Gatherer, name, queue string) int {
	t.Helper()
	families, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "name" && l.GetValue() == queue {
					return int(m.GetHistogram().GetSampleCount())
				}
			}
		}
	}
	return 0
}

func TestHandlerServesMetrics(t *testing.T) {
	reg := NewRegistry()
	NewLeaderGauge(reg).Set(1)
	server := httptest.NewServer(Handler(reg))
	defer server.Close()

	resp, err := http.Get(server.URL + Path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %s, want 200: %s", resp.Status, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q, want the text exposition format", ct)
	}
	for _, want := range []string{"\nclbdirect_leader 1\n", "\ngo_goroutines ", "\nprocess_start_time_seconds "} {
		if !strings.Contains(string(body), want) {
			t.Errorf("the metrics do not contain %q:\n%s", strings.TrimSpace(want), body)
		}
	}
}

func TestServeFailsOnABusyAddress(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	if err := Serve(context.Background(), busy.Addr().String(), prometheus.NewRegistry(), nil); err == nil {
		t.Error("Serve on a busy address succeeded, want an error")
	}
}
