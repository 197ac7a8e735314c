package controller

import (
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"

	"clb-direct/cloud"
)

// work syncs the test Service as the controller's workers do, for as long
// as it is in the queue, and returns how many syncs that was. It fails the
// test if the Service is ever rate-limited (a hot loop).
func (f *fixture) work() int {
	f.t.Helper()
	n := 0
	for f.ctrl.queue.Len() > 0 {
		n++
		if !f.ctrl.processNextWorkItem(f.ctx) {
			f.t.Fatal("queue shut down")
		}
		if r := f.ctrl.queue.NumRequeues(testKey); r != 0 {
			f.t.Fatalf("the Service was requeued with the failure rate limiter (%d requeues): a hot loop", r)
		}
	}
	return n
}

// queuedAfter steps the fake clock by d and reports whether that queued the
// Service again (the delaying queue hands a due key over in a goroutine of
// its own: give it wait).
func (f *fixture) queuedAfter(d, wait time.Duration) bool {
	f.clock.Step(d)
	deadline := time.Now().Add(wait)
	for f.ctrl.queue.Len() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	return f.ctrl.queue.Len() > 0
}

// retries syncs the queued Service, then n times: checks it is not queued
// again a second before the terminal retry delay, is queued at the delay,
// and syncs it. It returns the syncs.
func (f *fixture) retries(n int) int {
	f.t.Helper()
	delay := f.ctrl.opts.TerminalRetryDelay
	syncs := f.work()
	for range n {
		if f.queuedAfter(delay-time.Second, 20*time.Millisecond) {
			f.t.Fatalf("retried sooner than the terminal retry delay %s", delay)
		}
		if !f.queuedAfter(time.Second, 2*time.Second) {
			f.t.Fatalf("not retried after the terminal retry delay %s", delay)
		}
		syncs += f.work()
	}
	return syncs
}

// warnings drains the events and returns the Warnings.
func (f *fixture) warnings() []string {
	var out []string
	for _, e := range f.events() {
		if strings.HasPrefix(e, v1.EventTypeWarning) {
			out = append(out, e)
		}
	}
	return out
}

// A failure only a person can fix is evented once while it stands, not on
// every slow retry; once it is gone, the next one is evented again.
func TestStandingFailureIsEventedOnce(t *testing.T) {
	f := newFixture(t, nil, directService(func(s *v1.Service) { s.Annotations[AnnotationExistingLoadBalancer] = "lb-nothere" }), readyPod("a", "10.0.0.1"))
	f.ctrl.queue.Add(testKey)
	f.retries(4)
	if w := f.warnings(); len(w) != 1 || !strings.Contains(w[0], "SyncLoadBalancerFailed") || !strings.Contains(w[0], "lb-nothere") {
		t.Errorf("Warnings %q, want one SyncLoadBalancerFailed naming lb-nothere", w)
	}

	// The user creates the CLB: the Service syncs.
	f.cloud.AddLoadBalancer(cloud.LoadBalancer{ID: "lb-nothere"})
	if !f.queuedAfter(f.ctrl.opts.TerminalRetryDelay, 2*time.Second) {
		t.Fatal("not retried")
	}
	f.work()
	if w := f.warnings(); len(w) != 0 {
		t.Errorf("Warnings %q after the CLB was created, want none", w)
	}
	if got := f.loadBalancerID(); got != "lb-nothere" {
		t.Fatalf("the Service records CLB %q, want lb-nothere", got)
	}

	// It names another CLB that does not exist: evented again, once.
	f.updateService(func(s *v1.Service) { s.Annotations[AnnotationExistingLoadBalancer] = "lb-gone" })
	f.refresh()
	f.ctrl.queue.Add(testKey)
	f.retries(2)
	if w := f.warnings(); len(w) != 1 || !strings.Contains(w[0], "lb-gone") {
		t.Errorf("Warnings %q, want one naming lb-gone", w)
	}
}

// Parameters of the extensive-parameters annotation that the API refuses:
// the Warning says to look at the annotation; other refusals do not blame
// it.
func TestRefusedExtensiveParametersNameTheAnnotation(t *testing.T) {
	f := newFixture(t, nil, directService(func(s *v1.Service) {
		s.Annotations[AnnotationExtensiveParameters] = `{"VipIsp":5}`
	}))
	if err := f.sync(); cloud.KindOf(err) != cloud.KindTerminal {
		t.Fatalf("sync: %v, want a terminal error", err)
	}
	if w := f.warnings(); len(w) != 1 || !strings.Contains(w[0], AnnotationExtensiveParameters) || !strings.Contains(w[0], "VipIsp") {
		t.Errorf("Warnings %q, want one naming annotation %s and the parameter", w, AnnotationExtensiveParameters)
	}

	g := newFixture(t, nil, directService(func(s *v1.Service) {
		s.Annotations[AnnotationExtensiveParameters] = `{"VipIsp":"CMCC"}`
	}))
	g.cloud.FailNext("CreateLoadBalancer", 1, cloud.NewError("CreateLoadBalancer", cloud.CodeUnauthorized, "no permission", ""))
	if err := g.sync(); err == nil {
		t.Fatal("sync succeeded despite the refusal")
	}
	if w := g.warnings(); len(w) != 1 || strings.Contains(w[0], AnnotationExtensiveParameters) {
		t.Errorf("Warnings %q: a refusal for want of permission must not blame the annotation", w)
	}
}
