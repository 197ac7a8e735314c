package tencent

import (
	"context"
	"errors"
	"fmt"
	"time"

	clb "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/clb/v20180317"
	"k8s.io/klog/v2"

	"clb-direct/cloud"
)

// Task statuses DescribeTaskStatus reports.
const (
	taskDone    = 0
	taskFailed  = 1
	taskRunning = 2
)

// waitTask returns once the task an asynchronous write started (its TaskId
// is the write's RequestId) is done, with a transient FailedOperation error
// when it failed.
func (c *Cloud) waitTask(ctx context.Context, action, lbID string, taskID *string) error {
	if taskID == nil || *taskID == "" {
		return cloud.NewError(action, CodeMalformedResponse, "the response has no RequestId to wait for", "")
	}
	id := *taskID
	return c.pollUntil(ctx, action, "task "+id, func(ctx context.Context) (bool, error) {
		req := clb.NewDescribeTaskStatusRequest()
		req.TaskId = &id
		resp, err := send(ctx, c, op{lbID: lbID, idempotent: true}, req, (*clb.Client).DescribeTaskStatus)
		if err != nil {
			return false, fmt.Errorf("%s: waiting for task %s: %w", action, id, err)
		}
		switch status := resp.Response.Status; {
		case status == nil:
			return false, cloud.NewError(action, CodeMalformedResponse, fmt.Sprintf("DescribeTaskStatus of task %s has no Status", id), id)
		case *status == taskDone:
			return true, nil
		case *status == taskFailed:
			return false, cloud.NewError(action, cloud.CodeFailedOperation, fmt.Sprintf("task %s failed", id), id)
		case *status != taskRunning:
			klog.FromContext(ctx).V(2).Info("Unknown task status; waiting on", "action", action, "task", id, "status", *status)
		}
		return false, nil
	})
}

// pollUntil calls check at a growing interval until it reports done or an
// error, ctx ends, or Options.Timeout passes, which is a transient
// CodeTaskTimeout error: the task may still succeed, and the caller's
// next attempt sees.
func (c *Cloud) pollUntil(ctx context.Context, action, what string, check func(context.Context) (bool, error)) error {
	pollCtx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	timedOut := func(err error) error {
		if ctx.Err() != nil {
			return fmt.Errorf("%s: waiting for %s: %w", action, what, ctx.Err())
		}
		if errors.Is(pollCtx.Err(), context.DeadlineExceeded) {
			return cloud.NewError(action, CodeTaskTimeout, fmt.Sprintf("%s not done within %s", what, c.timeout), "")
		}
		return err
	}
	// What was just started is not done yet: the first check waits too,
	// and checking at once would only spend the action's rate limit.
	for interval := c.poll.Initial; ; interval = min(time.Duration(float64(interval)*c.poll.Factor), c.poll.Max) {
		if err := c.sleep(pollCtx, interval); err != nil {
			return timedOut(err)
		}
		done, err := check(pollCtx)
		if err != nil {
			return timedOut(err)
		}
		if done {
			return nil
		}
	}
}
