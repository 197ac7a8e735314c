package controller

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"

	"clb-direct/cloud"
	"clb-direct/cloud/fake"
)

// badInput is one invalid annotation value or TkeServiceConfig.
type badInput struct {
	name string
	// apply makes the test Service's input invalid.
	apply func(f *fixture)
	// mention are what the Warning must say: what is wrong (the annotation
	// or config, and the value or field) and what to write instead.
	mention []string
	// retried: the error is one only a person can fix but that a change
	// elsewhere may fix (the CLB named does not exist yet, the API refuses
	// a value), so the Service is retried every TerminalRetryDelay;
	// otherwise it is not retried at all until the Service or its config
	// changes (which queues it).
	retried bool
	// newOnly: the input only matters when the CLB is created (extensive
	// parameters), so there is nothing to report for a Service that has
	// its CLB already.
	newOnly bool
}

func badAnnotation(key, value string) func(f *fixture) {
	return func(f *fixture) { f.updateService(func(s *v1.Service) { s.Annotations[key] = value }) }
}

func badInputs() []badInput {
	boolFix := `want "true" or "false"`
	return []badInput{
		{name: "direct-access not a bool", apply: badAnnotation(AnnotationDirectAccess, "yes"), mention: []string{AnnotationDirectAccess, `"yes"`, boolFix}},
		{name: "weight not a number", apply: badAnnotation(AnnotationBackendWeight, "heavy"), mention: []string{AnnotationBackendWeight, `"heavy"`, "integer from 0 to 100"}},
		{name: "weight above 100", apply: badAnnotation(AnnotationBackendWeight, "101"), mention: []string{AnnotationBackendWeight, `"101"`, "integer from 0 to 100"}},
		{name: "weight negative", apply: badAnnotation(AnnotationBackendWeight, "-1"), mention: []string{AnnotationBackendWeight, `"-1"`, "integer from 0 to 100"}},
		{name: "weight fractional", apply: badAnnotation(AnnotationBackendWeight, "2.5"), mention: []string{AnnotationBackendWeight, `"2.5"`, "integer from 0 to 100"}},
		{name: "grace shutdown not a bool", apply: badAnnotation(AnnotationGraceShutdown, "on"), mention: []string{AnnotationGraceShutdown, `"on"`, boolFix}},
		{name: "grace shutdown tkex not a bool", apply: badAnnotation(AnnotationGraceShutdownTKEx, "1x"), mention: []string{AnnotationGraceShutdownTKEx, `"1x"`, boolFix}},
		{name: "auto config not a bool", apply: badAnnotation(AnnotationTkeServiceConfigAuto, "maybe"), mention: []string{AnnotationTkeServiceConfigAuto, `"maybe"`, boolFix}},
		{name: "existing CLB not an ID", apply: badAnnotation(AnnotationExistingLoadBalancer, "my-lb"), mention: []string{AnnotationExistingLoadBalancer, `"my-lb"`, "lb-xxxxxxxx"}},
		{name: "existing CLB does not exist", apply: badAnnotation(AnnotationExistingLoadBalancer, "lb-nothere"), retried: true,
			mention: []string{AnnotationExistingLoadBalancer, "lb-nothere", "does not exist"}},
		{name: "subnet not an ID", apply: badAnnotation(AnnotationInternalSubnet, "vpc-1"), mention: []string{AnnotationInternalSubnet, `"vpc-1"`, "subnet-xxxxxxxx"}},
		{name: "config name not an object name", apply: badAnnotation(AnnotationTkeServiceConfig, "Web_Config"),
			mention: []string{AnnotationTkeServiceConfig, `"Web_Config"`, "not a valid object name"}},
		{name: "config missing", apply: func(f *fixture) { f.updateService(configured) },
			mention: []string{AnnotationTkeServiceConfig, "web-config", "does not exist"}},
		{name: "config interval out of range", apply: func(f *fixture) { f.putConfig(tsc(httpCheckOn80(3))); f.updateService(configured) },
			mention: []string{"web-config", "intervalTime", "5"}},
		{name: "config timeout above interval", apply: func(f *fixture) {
			l := httpCheckOn80(10)
			l["healthCheck"].(map[string]any)["timeout"] = int64(20)
			f.putConfig(tsc(l))
			f.updateService(configured)
		}, mention: []string{"web-config", "timeout", "exceeds intervalTime"}},
		{name: "config scheduler unknown", apply: func(f *fixture) {
			l := httpCheckOn80(10)
			l["scheduler"] = "RANDOM"
			f.putConfig(tsc(l))
			f.updateService(configured)
		}, mention: []string{"web-config", "scheduler", "RANDOM", "WRR"}},
		{name: "config two entries for one port", apply: func(f *fixture) {
			f.putConfig(tsc(httpCheckOn80(10), httpCheckOn80(20)))
			f.updateService(configured)
		}, mention: []string{"web-config", "duplicate"}},
		{name: "config bandwidth out of range", apply: func(f *fixture) {
			u := tsc(httpCheckOn80(10))
			u.Object["spec"].(map[string]any)["loadBalancer"].(map[string]any)["internetMaxBandwidthOut"] = int64(0)
			f.putConfig(u)
			f.updateService(configured)
		}, mention: []string{"web-config", "internetMaxBandwidthOut"}},
		{name: "extensive parameters not JSON", apply: badAnnotation(AnnotationExtensiveParameters, `{"VipIsp":`),
			mention: []string{AnnotationExtensiveParameters, "want a JSON object"}},
		{name: "extensive parameters not an object", apply: badAnnotation(AnnotationExtensiveParameters, `["VipIsp"]`),
			mention: []string{AnnotationExtensiveParameters, "want a JSON object"}},
		{name: "extensive parameters null", apply: badAnnotation(AnnotationExtensiveParameters, `null`),
			mention: []string{AnnotationExtensiveParameters, "want a JSON object"}},
		{name: "extensive parameters set what the controller sets", apply: badAnnotation(AnnotationExtensiveParameters, `{"VpcId":"vpc-1"}`),
			mention: []string{AnnotationExtensiveParameters, "VpcId", "the controller sets"}},
		{name: "extensive parameter the API does not have", apply: badAnnotation(AnnotationExtensiveParameters, `{"Bandwidth":10}`),
			newOnly: true, retried: true, mention: []string{AnnotationExtensiveParameters, "Bandwidth"}},
		{name: "extensive parameter of the wrong type", apply: badAnnotation(AnnotationExtensiveParameters, `{"VipIsp":5}`),
			newOnly: true, retried: true, mention: []string{AnnotationExtensiveParameters, "VipIsp"}},
		{name: "extensive parameter value the API refuses", apply: badAnnotation(AnnotationExtensiveParameters, `{"InternetAccessible":{"InternetChargeType":"FREE"}}`),
			newOnly: true, retried: true, mention: []string{AnnotationExtensiveParameters, "InternetChargeType", "FREE"}},
	}
}

// TestBadInputIsReportedOnceLeavesTheCLBAndIsNotHotLooped: for every
// invalid annotation value and TkeServiceConfig, on a Service that has its
// CLB and on a new one, with Pod changes that would otherwise be applied:
// one Warning event naming what is wrong and what to write instead, however
// often the Service is synced; the CLB exactly as it was (no CLB at all for
// a new Service) and no cloud write that did anything; no cloud call at all
// and no retry unless a change elsewhere can help, and then a retry every
// TerminalRetryDelay, never sooner, never rate-limited, each sync with a
// bounded number of calls.
func TestBadInputIsReportedOnceLeavesTheCLBAndIsNotHotLooped(t *testing.T) {
	for _, tc := range badInputs() {
		for _, start := range []string{"existing CLB", "new Service"} {
			if tc.newOnly && start == "existing CLB" {
				continue
			}
			t.Run(tc.name+"/"+start, func(t *testing.T) {
				t.Parallel()
				checkBadInput(t, tc, start == "new Service")
			})
		}
	}
}

// maxCallsPerSync bounds the cloud calls of one sync of a Service whose
// input is bad: a lookup of the CLB, and a refused create.
const maxCallsPerSync = 2

func checkBadInput(t *testing.T, tc badInput, fresh bool) {
	f := newFixture(t, nil, directService(), readyPod("a", "10.0.0.1"))
	var before fake.State
	if !fresh {
		f.mustSync()
	}
	before = f.cloud.Snapshot()
	f.events()

	tc.apply(f)
	f.addPods(readyPod("b", "10.0.0.2")) // would be registered, were the input valid
	f.refresh()
	f.cloud.ResetCalls()

	// Retried every terminal retry delay, never sooner (three times here),
	// or not at all until the input changes.
	f.ctrl.queue.Add(testKey)
	var syncs int
	if tc.retried {
		syncs = f.retries(3)
	} else {
		syncs = f.work()
		if f.queuedAfter(10*f.ctrl.opts.TerminalRetryDelay, 20*time.Millisecond) {
			t.Errorf("retried, though only a change of the input can help")
		}
	}

	// Another change that concerns the Service syncs it again: the standing
	// problem is not evented again.
	f.addPods(readyPod("c", "10.0.0.3"))
	f.refresh()
	f.ctrl.queue.Add(testKey)
	syncs += f.work()

	// Nothing changed in the cloud; no call unless retried, and a bounded
	// number per sync.
	if after := f.cloud.Snapshot(); !reflect.DeepEqual(after, before) {
		t.Errorf("the account changed:\n before %+v\n after  %+v", before, after)
	}
	calls := f.cloud.Calls()
	for _, c := range calls {
		if !strings.HasPrefix(c.Action, "Describe") && c.Err == nil {
			t.Errorf("a write went through: %+v", c)
		}
	}
	if !tc.retried && len(calls) != 0 {
		t.Errorf("%d cloud calls for input that no call can help: %v", len(calls), actionsOf(calls))
	}
	if len(calls) > maxCallsPerSync*syncs {
		t.Errorf("%d cloud calls in %d syncs, more than %d a sync: %v", len(calls), syncs, maxCallsPerSync, actionsOf(calls))
	}

	// One Warning, saying what to fix.
	warnings := f.warnings()
	if len(warnings) != 1 {
		t.Errorf("%d Warning events in %d syncs, want exactly one: %q", len(warnings), syncs, warnings)
	}
	for _, w := range warnings {
		for _, m := range tc.mention {
			if !strings.Contains(w, m) {
				t.Errorf("the Warning %q does not mention %q", w, m)
			}
		}
	}
}

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

func actionsOf(calls []fake.Call) []string {
	var out []string
	for _, c := range calls {
		s := c.Action
		var ce *cloud.Error
		if errors.As(c.Err, &ce) {
			s += " (" + ce.Code + ")"
		}
		out = append(out, s)
	}
	return out
}

// Keep the table honest: every annotation the controller reads, other
// than its own bookkeeping, has at least one bad value above.
func TestBadInputsCoverEveryAnnotation(t *testing.T) {
	var names []string
	for _, tc := range badInputs() {
		names = append(names, tc.name)
	}
	covered := map[string]bool{}
	for _, tc := range badInputs() {
		for _, m := range tc.mention {
			covered[m] = true
		}
	}
	for _, a := range []string{AnnotationDirectAccess, AnnotationBackendWeight, AnnotationGraceShutdown, AnnotationGraceShutdownTKEx,
		AnnotationExistingLoadBalancer, AnnotationInternalSubnet, AnnotationExtensiveParameters, AnnotationTkeServiceConfig,
		AnnotationTkeServiceConfigAuto} {
		if !covered[a] {
			t.Errorf("no bad value of annotation %s among %s", a, fmt.Sprint(slices.Sorted(slices.Values(names))))
		}
	}
}
