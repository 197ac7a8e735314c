package fake

import (
	"context"
	"fmt"
	"strings"
	"time"

	"clb-direct/cloud"
)

// Task statuses, as DescribeTaskStatus reports them.
const (
	TaskDone    = 0
	TaskFailed  = 1
	TaskRunning = 2
)

// task is the asynchronous part of a write on one CLB.
type task struct {
	id     string
	action string
	lbID   string
	doneAt time.Time
	// fail is decided when the task starts and shows when it completes.
	fail   bool
	status int
	// finish applies the change when the task succeeded, and undoes what
	// must not outlive a failure (a CLB being created).
	finish func(succeeded bool)
}

// startTask starts the task of the write r on the CLB, which must not be
// busy; with no task duration it completes at once.
func (c *Cloud) startTask(r *request, lbID string, finish func(succeeded bool)) *task {
	t := &task{
		id:     r.id,
		action: r.call.Action,
		lbID:   lbID,
		doneAt: c.clock.Now().Add(c.taskDuration),
		fail:   c.chance(c.taskFailureRate),
		status: TaskRunning,
		finish: finish,
	}
	c.tasks[t.id] = t
	c.busy[lbID] = t
	c.settle()
	return t
}

// settle completes every task whose time has come.
func (c *Cloud) settle() {
	now := c.clock.Now()
	for lbID, t := range c.busy {
		if now.Before(t.doneAt) {
			continue
		}
		delete(c.busy, lbID)
		t.status = TaskDone
		if t.fail {
			t.status = TaskFailed
		}
		t.finish(!t.fail)
	}
}

// TaskStatus is DescribeTaskStatus: TaskDone, TaskFailed or TaskRunning for
// the task a write started (its TaskId is the write's RequestId).
func (c *Cloud) TaskStatus(ctx context.Context, taskID string) (int, error) {
	r := c.begin(actionDescribeTaskStatus, "", 0)
	var status int
	err := c.run(ctx, r, func() error {
		t, ok := c.tasks[taskID]
		if !ok {
			return apiError(cloud.CodeInvalidParameterVal, "TaskId %q not found", taskID)
		}
		r.call.LoadBalancerID = t.lbID
		status = t.status
		return nil
	})
	return status, c.end(r, err)
}

// wait returns once the task is done, with an error if it failed or ctx
// ended first.
func (c *Cloud) wait(ctx context.Context, t *task) error {
	for {
		c.mu.Lock()
		c.settle()
		status, left := t.status, t.doneAt.Sub(c.clock.Now())
		c.mu.Unlock()
		switch status {
		case TaskDone:
			return nil
		case TaskFailed:
			return cloud.NewError(t.action, cloud.CodeFailedOperation, fmt.Sprintf("task %s failed", t.id), t.id)
		}
		if err := c.sleep(ctx, left); err != nil {
			return fmt.Errorf("%s: waiting for task %s: %w", t.action, t.id, err)
		}
	}
}

// startFunc validates a write under the lock and starts its task; failed
// names the listeners that a batch failed for.
type startFunc func(r *request) (t *task, failed []string, err error)

// start serves a write's Start form: it returns once the task has started.
func (c *Cloud) start(ctx context.Context, action, lbID string, backends int, fn startFunc) (taskID string, failed []string, err error) {
	r := c.begin(action, lbID, backends)
	var t *task
	err = c.run(ctx, r, func() (err error) {
		t, failed, err = fn(r)
		return err
	})
	if err != nil {
		return "", nil, c.end(r, err)
	}
	c.end(r, partialFailure(action, failed))
	return t.id, failed, nil
}

// write serves a write as cloud.Interface does: it starts the task and waits
// for it. The wait is part of the one logged call, not DescribeTaskStatus
// calls of its own, so that a test counts calls as the controller makes
// them.
func (c *Cloud) write(ctx context.Context, action, lbID string, backends int, fn startFunc) error {
	r := c.begin(action, lbID, backends)
	var t *task
	var failed []string
	err := c.run(ctx, r, func() (err error) {
		t, failed, err = fn(r)
		return err
	})
	if err == nil && len(failed) > 0 && action == actionBatchModifyWeight {
		// BatchModifyTargetWeight has no FailListenerIdSet to name the
		// listeners it failed for: the whole call fails at once, while its
		// task changes the other listeners, as the emulator answers it.
		return c.end(r, weightsFailure(failed, t.id))
	}
	if err == nil {
		err = c.wait(ctx, t)
	}
	if err == nil {
		err = partialFailure(action, failed)
	}
	return c.end(r, err)
}

// weightsFailure is the error of a BatchModifyTargetWeight that failed for
// the given listeners.
func weightsFailure(failed []string, taskID string) error {
	return cloud.NewError(actionBatchModifyWeight, cloud.CodeFailedOperation,
		fmt.Sprintf("modifying weights failed on listeners %s", strings.Join(failed, ",")), taskID)
}

// partialFailure is the error of a batch that failed for the given
// listeners, nil if for none.
func partialFailure(action string, failed []string) error {
	if len(failed) == 0 {
		return nil
	}
	return &cloud.PartialFailure{Action: action, FailedListenerIDs: failed}
}
