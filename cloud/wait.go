package cloud

import (
	"context"
	"time"

	"k8s.io/utils/clock"
)

// Sleep waits d on clk, or returns ctx's error when ctx ends first. Both
// implementations wait this way (for tasks, backoffs, injected latency), so
// a fake clock drives either in tests.
func Sleep(ctx context.Context, clk clock.Clock, d time.Duration) error {
	t := clk.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C():
		return nil
	}
}
