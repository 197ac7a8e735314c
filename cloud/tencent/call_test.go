package tencent

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"clb-direct/cloud"
)

func listenersAnswer(map[string]any, int) any {
	return map[string]any{"Listeners": []any{map[string]any{"ListenerId": "lbl-1", "Protocol": "TCP", "Port": 80}}, "TotalCount": 1}
}

// throttledThen answers RequestLimitExceeded to the first n calls, then
// next.
func failingThen(code string, n int, next handler) handler {
	return func(body map[string]any, i int) any {
		if i < n {
			return apiError{Code: code, Message: "try again later"}
		}
		return next(body, i)
	}
}

func wantCloudError(t *testing.T, err error, code string, kind cloud.Kind) *cloud.Error {
	t.Helper()
	var ce *cloud.Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T), want a *cloud.Error", err, err)
	}
	if ce.Code != code || ce.Kind != kind || cloud.KindOf(err) != kind {
		t.Fatalf("error %v: code %s kind %s, want code %s kind %s", err, ce.Code, ce.Kind, code, kind)
	}
	return ce
}

func TestThrottledCallIsRetriedWithBackoff(t *testing.T) {
	f := newFakeAPI(t)
	f.handle("DescribeListeners", failingThen(cloud.CodeRequestLimitExceeded, 3, listenersAnswer))
	backoff := Backoff{Initial: 10 * time.Millisecond, Max: 40 * time.Millisecond, Attempts: 5}
	c := newTestCloud(t, f, func(o *Options) { o.Retry.Throttled = backoff })

	ls, err := c.DescribeListeners(t.Context(), "lb-1")
	if err != nil {
		t.Fatalf("DescribeListeners: %v", err)
	}
	if len(ls) != 1 || ls[0].ID != "lbl-1" {
		t.Errorf("listeners %+v, want lbl-1", ls)
	}
	calls := f.callsOf("DescribeListeners")
	if len(calls) != 4 {
		t.Fatalf("%d calls, want 3 throttled and 1 successful", len(calls))
	}
	// Retry n waits at least half of min(Initial·2ⁿ, Max).
	for i, min := range []time.Duration{5 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond} {
		if gap := calls[i+1].Time.Sub(calls[i].Time); gap < min {
			t.Errorf("retry %d came %s after the call before, want at least %s", i+1, gap, min)
		}
	}
}

func TestThrottlingGivesUpAfterAttempts(t *testing.T) {
	f := newFakeAPI(t)
	f.handle("DescribeListeners", failingThen(cloud.CodeRequestLimitExceeded, 1000, listenersAnswer))
	c := newTestCloud(t, f, nil)

	_, err := c.DescribeListeners(t.Context(), "lb-1")
	wantCloudError(t, err, cloud.CodeRequestLimitExceeded, cloud.KindTransient)
	if n := len(f.callsOf("DescribeListeners")); n != testRetry.Throttled.Attempts {
		t.Errorf("%d calls, want %d", n, testRetry.Throttled.Attempts)
	}
}

func TestResourceInOperatingIsRetried(t *testing.T) {
	t.Run("until it passes", func(t *testing.T) {
		f := newFakeAPI(t)
		f.handle("DeleteListener", failingThen(cloud.CodeResourceInOperating, 4, func(map[string]any, int) any { return map[string]any{} }))
		c := newTestCloud(t, f, nil)
		if err := c.DeleteListener(t.Context(), "lb-1", "lbl-1"); err != nil {
			t.Fatalf("DeleteListener: %v", err)
		}
		if n := len(f.callsOf("DeleteListener")); n != 5 {
			t.Errorf("%d DeleteListener calls, want 5", n)
		}
		// Only the successful call started a task.
		tasks := f.callsOf("DescribeTaskStatus")
		if len(tasks) != 1 || tasks[0].Body["TaskId"] != "req-DeleteListener-4" {
			t.Errorf("DescribeTaskStatus calls %+v, want one for req-DeleteListener-4", tasks)
		}
	})
	t.Run("a storm is bounded", func(t *testing.T) {
		f := newFakeAPI(t)
		f.handle("BatchRegisterTargets", failingThen(cloud.CodeResourceInOperating, 1000, nil))
		c := newTestCloud(t, f, nil)
		err := c.RegisterBackends(t.Context(), "lb-1", []cloud.ListenerBackend{{ListenerID: "lbl-1", Backend: cloud.Backend{IP: "10.0.0.1", Port: 80, Weight: 10}}})
		wantCloudError(t, err, cloud.CodeResourceInOperating, cloud.KindTransient)
		if n := len(f.callsOf("BatchRegisterTargets")); n != testRetry.InOperating.Attempts {
			t.Errorf("%d calls, want %d", n, testRetry.InOperating.Attempts)
		}
	})
}

func TestBackoffDelay(t *testing.T) {
	b := Backoff{Initial: 500 * time.Millisecond, Max: 8 * time.Second}
	for n, full := range []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second, 8 * time.Second} {
		for range 50 {
			if d := b.delay(n); d < full/2 || d > full {
				t.Fatalf("delay(%d) = %s, want within [%s, %s]", n, d, full/2, full)
			}
		}
	}
	if d := b.delay(1000); d > b.Max {
		t.Errorf("delay(1000) = %s, more than Max", d)
	}
}

func TestWriteWaitsForItsTask(t *testing.T) {
	f := newFakeAPI(t)
	f.handle("DeleteListener", func(map[string]any, int) any { return map[string]any{} })
	f.handle("DescribeTaskStatus", func(_ map[string]any, n int) any {
		if n < 3 {
			return map[string]any{"Status": taskRunning}
		}
		return map[string]any{"Status": taskDone}
	})
	c := newTestCloud(t, f, func(o *Options) {
		o.Poll = PollPolicy{Initial: 4 * time.Millisecond, Max: 9 * time.Millisecond, Factor: 1.5}
	})

	if err := c.DeleteListener(t.Context(), "lb-1", "lbl-1"); err != nil {
		t.Fatalf("DeleteListener: %v", err)
	}
	polls := f.callsOf("DescribeTaskStatus")
	if len(polls) != 4 {
		t.Fatalf("%d polls, want 4 (3 running, then done)", len(polls))
	}
	for _, p := range polls {
		if p.Body["TaskId"] != "req-DeleteListener-0" {
			t.Errorf("polled TaskId %v, want the RequestId of DeleteListener", p.Body["TaskId"])
		}
	}
	// The task just started is not polled at once: the first poll waits
	// Initial too, then the intervals grow: 4ms, 6ms, 9ms.
	if gap := polls[0].Time.Sub(f.callsOf("DeleteListener")[0].Time); gap < 4*time.Millisecond {
		t.Errorf("the first poll came %s after the write, want at least 4ms", gap)
	}
	for i, min := range []time.Duration{4 * time.Millisecond, 6 * time.Millisecond, 9 * time.Millisecond} {
		if gap := polls[i+1].Time.Sub(polls[i].Time); gap < min {
			t.Errorf("poll %d came %s after the one before, want at least %s", i+1, gap, min)
		}
	}
	body := f.callsOf("DeleteListener")[0].Body
	if body["LoadBalancerId"] != "lb-1" || body["ListenerId"] != "lbl-1" {
		t.Errorf("DeleteListener body %v", body)
	}
}

func TestFailedTaskIsTransientError(t *testing.T) {
	f := newFakeAPI(t)
	f.handle("DeleteLoadBalancer", func(map[string]any, int) any { return map[string]any{} })
	f.handle("DescribeTaskStatus", func(_ map[string]any, n int) any {
		return map[string]any{"Status": []int{taskRunning, taskFailed}[min(n, 1)]}
	})
	c := newTestCloud(t, f, nil)

	err := c.DeleteLoadBalancer(t.Context(), "lb-1")
	ce := wantCloudError(t, err, cloud.CodeFailedOperation, cloud.KindTransient)
	if ce.Action != "DeleteLoadBalancer" || !strings.Contains(ce.Message, "req-DeleteLoadBalancer-0 failed") {
		t.Errorf("error %v, want DeleteLoadBalancer's task named as failed", err)
	}
	if got := f.callsOf("DeleteLoadBalancer")[0].Body["LoadBalancerIds"]; len(got.([]any)) != 1 || got.([]any)[0] != "lb-1" {
		t.Errorf("LoadBalancerIds %v, want [lb-1]", got)
	}
}

func TestTaskTimeout(t *testing.T) {
	f := newFakeAPI(t)
	f.handle("DeleteListener", func(map[string]any, int) any { return map[string]any{} })
	f.handle("DescribeTaskStatus", func(map[string]any, int) any { return map[string]any{"Status": taskRunning} })
	c := newTestCloud(t, f, func(o *Options) { o.Timeout = 50 * time.Millisecond })

	start := time.Now()
	err := c.DeleteListener(t.Context(), "lb-1", "lbl-1")
	wantCloudError(t, err, CodeTaskTimeout, cloud.KindTransient)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("gave up after %s, want about the 50ms timeout", d)
	}
}

func TestNetworkFailures(t *testing.T) {
	t.Run("a read is retried", func(t *testing.T) {
		f := newFakeAPI(t)
		f.handle("DescribeListeners", func(b map[string]any, n int) any {
			if n == 0 {
				return hangUp{}
			}
			return listenersAnswer(b, n)
		})
		c := newTestCloud(t, f, nil)
		if _, err := c.DescribeListeners(t.Context(), "lb-1"); err != nil {
			t.Fatalf("DescribeListeners: %v", err)
		}
		if n := len(f.callsOf("DescribeListeners")); n != 2 {
			t.Errorf("%d calls, want 2", n)
		}
	})
	t.Run("a read is retried a bounded number of times", func(t *testing.T) {
		f := newFakeAPI(t)
		f.handle("DescribeQuota", func(map[string]any, int) any { return hangUp{} })
		c := newTestCloud(t, f, nil)
		_, err := c.DescribeQuota(t.Context())
		wantCloudError(t, err, CodeNetworkError, cloud.KindTransient)
		if n := len(f.callsOf("DescribeQuota")); n != testRetry.Network.Attempts {
			t.Errorf("%d calls, want %d", n, testRetry.Network.Attempts)
		}
	})
	t.Run("a write that may have been applied is not repeated", func(t *testing.T) {
		f := newFakeAPI(t)
		f.handle("CreateListener", func(map[string]any, int) any { return hangUp{} })
		c := newTestCloud(t, f, nil)
		_, err := c.CreateListener(t.Context(), "lb-1", cloud.ListenerSpec{Protocol: cloud.ProtocolTCP, Port: 80})
		wantCloudError(t, err, CodeNetworkError, cloud.KindTransient)
		if n := len(f.callsOf("CreateListener")); n != 1 {
			t.Errorf("%d calls, want 1", n)
		}
	})
	t.Run("a create with a client token is repeated", func(t *testing.T) {
		f := newFakeAPI(t)
		f.handle("CreateLoadBalancer", func(_ map[string]any, n int) any {
			if n == 0 {
				return hangUp{}
			}
			return map[string]any{"LoadBalancerIds": []string{"lb-new"}}
		})
		f.handle("DescribeLoadBalancers", func(map[string]any, int) any {
			return map[string]any{"TotalCount": 1, "LoadBalancerSet": []any{map[string]any{"LoadBalancerId": "lb-new", "Status": 1}}}
		})
		c := newTestCloud(t, f, nil)
		if _, err := c.CreateLoadBalancer(t.Context(), cloud.LoadBalancerSpec{Name: "a", ClientToken: "token-1"}); err != nil {
			t.Fatalf("CreateLoadBalancer: %v", err)
		}
		calls := f.callsOf("CreateLoadBalancer")
		if len(calls) != 2 || calls[1].Body["ClientToken"] != "token-1" {
			t.Errorf("calls %+v, want 2 with the same ClientToken", calls)
		}
	})
	t.Run("a hung call times out", func(t *testing.T) {
		f := newFakeAPI(t)
		release := make(chan struct{})
		defer close(release)
		f.handle("DescribeTargets", func(map[string]any, int) any { <-release; return map[string]any{} })
		c := newTestCloud(t, f, func(o *Options) { o.Timeout = 30 * time.Millisecond; o.Retry.Network.Attempts = 1 })
		_, err := c.DescribeBackends(t.Context(), "lb-1")
		ce := wantCloudError(t, err, CodeNetworkError, cloud.KindTransient)
		if !strings.Contains(ce.Message, "no response within") {
			t.Errorf("message %q, want it to say the call timed out", ce.Message)
		}
	})
	t.Run("a malformed response is an error", func(t *testing.T) {
		f := newFakeAPI(t)
		f.handle("DescribeQuota", func(map[string]any, int) any { return raw(`{}`) })
		c := newTestCloud(t, f, nil)
		_, err := c.DescribeQuota(t.Context())
		wantCloudError(t, err, CodeMalformedResponse, cloud.KindTransient)
	})
}

func TestErrorClassification(t *testing.T) {
	for _, tc := range []struct {
		code string
		kind cloud.Kind
	}{
		{cloud.CodeLBNotFound, cloud.KindNotFound},
		{cloud.CodeListenerNotFound, cloud.KindNotFound},
		{"AuthFailure.SignatureFailure", cloud.KindTerminal},
		{cloud.CodePortCheckFailed, cloud.KindTerminal},
		{cloud.CodeLimitExceeded, cloud.KindQuota},
		{cloud.CodeInternalError, cloud.KindTransient},
	} {
		t.Run(tc.code, func(t *testing.T) {
			f := newFakeAPI(t)
			f.handle("DescribeTargets", func(map[string]any, int) any { return apiError{Code: tc.code, Message: "no"} })
			c := newTestCloud(t, f, nil)
			_, err := c.DescribeBackends(t.Context(), "lb-1")
			ce := wantCloudError(t, err, tc.code, tc.kind)
			if ce.Action != "DescribeTargets" || ce.Message != "no" || !strings.HasPrefix(ce.RequestID, "req-DescribeTargets-") {
				t.Errorf("error %+v, want action, message and RequestId of the response", ce)
			}
		})
	}
}

func TestContextCancellation(t *testing.T) {
	t.Run("no call with a cancelled context", func(t *testing.T) {
		f := newFakeAPI(t)
		f.handle("DescribeListeners", listenersAnswer)
		c := newTestCloud(t, f, nil)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if _, err := c.DescribeListeners(ctx, "lb-1"); !errors.Is(err, context.Canceled) {
			t.Errorf("error %v, want context.Canceled", err)
		}
		if n := len(f.callsOf("")); n != 0 {
			t.Errorf("%d calls, want none", n)
		}
	})
	t.Run("no poll after cancel", func(t *testing.T) {
		f := newFakeAPI(t)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		f.handle("DeleteListener", func(map[string]any, int) any { return map[string]any{} })
		f.handle("DescribeTaskStatus", func(_ map[string]any, n int) any {
			if n == 1 {
				cancel()
			}
			return map[string]any{"Status": taskRunning}
		})
		c := newTestCloud(t, f, nil)
		err := c.DeleteListener(ctx, "lb-1", "lbl-1")
		if !errors.Is(err, context.Canceled) {
			t.Errorf("error %v, want context.Canceled", err)
		}
		n := len(f.callsOf(""))
		time.Sleep(20 * time.Millisecond)
		if after := len(f.callsOf("")); after != n || n != 3 {
			t.Errorf("%d calls by the return, %d after, want 3 (the write and two polls) and no more", n, after)
		}
	})
	t.Run("a call in flight is aborted", func(t *testing.T) {
		f := newFakeAPI(t)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		release := make(chan struct{})
		defer close(release)
		f.handle("DescribeTargets", func(map[string]any, int) any {
			cancel()
			<-release
			return map[string]any{}
		})
		c := newTestCloud(t, f, nil)
		start := time.Now()
		_, err := c.DescribeBackends(ctx, "lb-1")
		if !errors.Is(err, context.Canceled) {
			t.Errorf("error %v, want context.Canceled", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("returned after %s, want at once on cancel", d)
		}
		if n := len(f.callsOf("DescribeTargets")); n != 1 {
			t.Errorf("%d calls, want 1", n)
		}
	})
	t.Run("a backoff is cut short", func(t *testing.T) {
		f := newFakeAPI(t)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		f.handle("DescribeTargets", func(map[string]any, int) any {
			cancel()
			return apiError{Code: cloud.CodeRequestLimitExceeded, Message: "slow down"}
		})
		c := newTestCloud(t, f, func(o *Options) { o.Retry.Throttled = Backoff{Initial: time.Hour, Max: time.Hour, Attempts: 5} })
		_, err := c.DescribeBackends(ctx, "lb-1")
		if !errors.Is(err, context.Canceled) {
			t.Errorf("error %v, want context.Canceled", err)
		}
		if n := len(f.callsOf("")); n != 1 {
			t.Errorf("%d calls, want 1", n)
		}
	})
}

func TestRateLimitPerAction(t *testing.T) {
	f := newFakeAPI(t)
	f.handle("DescribeListeners", listenersAnswer)
	f.handle("DescribeQuota", func(map[string]any, int) any { return map[string]any{} })
	c := newTestCloud(t, f, func(o *Options) { o.RateLimit = 100 })

	start := time.Now()
	// A burst of 100, then 100/s: 130 calls take at least 300ms.
	for range 130 {
		if _, err := c.DescribeListeners(t.Context(), "lb-1"); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("130 calls at 100/s with a burst of 100 took %s, want about 300ms", d)
	}
	// Another action has its own bucket: not held up by the first.
	start = time.Now()
	for range 20 {
		if _, err := c.DescribeQuota(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d > 150*time.Millisecond {
		t.Errorf("20 DescribeQuota calls took %s; their bucket should be full", d)
	}
}

func TestRequestsAreSignedForTheRegion(t *testing.T) {
	f := newFakeAPI(t)
	f.handle("DescribeQuota", func(map[string]any, int) any { return map[string]any{} })
	c := newTestCloud(t, f, nil)
	if _, err := c.DescribeQuota(t.Context()); err != nil {
		t.Fatal(err)
	}
	h := f.callsOf("DescribeQuota")[0].Header
	if h.Get("X-TC-Region") != "ap-test" || h.Get("X-TC-Version") != "2018-03-17" || h.Get("X-TC-Token") != testToken ||
		!strings.HasPrefix(h.Get("Authorization"), "TC3-HMAC-SHA256 Credential="+testSecretID+"/") ||
		!strings.Contains(h.Get("Authorization"), "/clb/tc3_request") {
		t.Errorf("headers %v", http.Header(h))
	}
}
