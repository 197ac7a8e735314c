package bench

import (
	"time"

	"clb-direct/cloud"
	"clb-direct/cloud/emulator"
)

// Limits are the CLB API's limits the emulator enforces, which set the
// floor under any controller's time.
type Limits struct {
	// RequestsPerSecond each action admits, account-wide, with a burst of
	// one second's worth (as the emulator does); 0 is no limit.
	RequestsPerSecond float64
	// TaskDuration is how long each asynchronous write runs; a CLB runs
	// one task at a time.
	TaskDuration time.Duration
}

// writeActions are the actions that change the account.
var writeActions = map[string]bool{
	"CreateLoadBalancer": true, "DeleteLoadBalancer": true, "ModifyLoadBalancerAttributes": true,
	"CreateListener": true, "ModifyListener": true, "DeleteListener": true,
	"BatchRegisterTargets": true, "BatchDeregisterTargets": true, "BatchModifyTargetWeight": true,
	"RegisterTargets": true, "DeregisterTargets": true, "ModifyTargetWeight": true,
}

// Floor is the least a scenario can cost under Limits: the calls of each
// action the API's protocol requires, and the tasks that must run one
// after another on one CLB.
type Floor struct {
	// Calls are the fewest calls per action: each write once per 500
	// targets, each asynchronous write's task polled once
	// (DescribeTaskStatus), each new CLB polled once until it is ready
	// (DescribeLoadBalancers). Reads a controller makes by choice (lookups,
	// audits) are not required and not counted.
	Calls map[string]int
	// SerialTasks is the longest chain of tasks on one CLB.
	SerialTasks int
}

// Writes is the fewest write calls.
func (f Floor) Writes() int {
	n := 0
	for action, c := range f.Calls {
		if writeActions[action] {
			n += c
		}
	}
	return n
}

// Bound is the shortest time the floor can take: the busiest action's
// calls at its rate (less the burst the bucket starts with), or the
// chain of tasks on one CLB, whichever is longer.
func (f Floor) Bound(l Limits) time.Duration {
	var bound time.Duration
	if l.RequestsPerSecond > 0 {
		for _, n := range f.Calls {
			excess := float64(n) - l.RequestsPerSecond
			bound = max(bound, time.Duration(excess/l.RequestsPerSecond*float64(time.Second)))
		}
	}
	return max(bound, time.Duration(f.SerialTasks)*l.TaskDuration)
}

func batches(targets int) int {
	return (targets + cloud.MaxBackendsPerBatch - 1) / cloud.MaxBackendsPerBatch
}

// coldStartFloor: each Service gets a CLB, one listener and its Pods.
func coldStartFloor(services, podsPerService int) Floor {
	registers := services * batches(podsPerService)
	return Floor{
		Calls: map[string]int{
			"CreateLoadBalancer":    services,
			"DescribeLoadBalancers": services,
			"CreateListener":        services,
			"BatchRegisterTargets":  registers,
			"DescribeTaskStatus":    services + registers,
		},
		SerialTasks: 2 + batches(podsPerService),
	}
}

// churnFloor: every Service's Pods are replaced; the new ones must be
// registered and the old ones deregistered.
func churnFloor(services, podsPerService int) Floor {
	perCLB := batches(podsPerService)
	return Floor{
		Calls: map[string]int{
			"BatchRegisterTargets":   services * perCLB,
			"BatchDeregisterTargets": services * perCLB,
			"DescribeTaskStatus":     2 * services * perCLB,
		},
		SerialTasks: 2 * perCLB,
	}
}

// countCalls counts the calls per action, and among those the API served
// the writes and the reads; rejected are those it refused (throttled, a
// busy CLB, an injected fault), which the caller retried.
func countCalls(calls []emulator.CallRecord) (byAction map[string]int, writes, reads, rejected int) {
	byAction = map[string]int{}
	for _, c := range calls {
		byAction[c.Action]++
		switch {
		case c.ErrorCode != "":
			rejected++
		case writeActions[c.Action]:
			writes++
		default:
			reads++
		}
	}
	return byAction, writes, reads, rejected
}
