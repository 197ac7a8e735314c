package fake

import (
	"time"

	"clb-direct/cloud"
)

// faults are the injected failures. A setting for AnyAction applies to the
// actions without a setting of their own.
type faults struct {
	failNext           map[string]*failNext
	errorRates         map[string]errorRate
	latencies          map[string]time.Duration
	taskFailureRate    float64
	partialFailureRate float64
}

type failNext struct {
	n   int
	err error
}

type errorRate struct {
	rate float64
	code string
}

// FailNext makes the next n calls of action fail with err before they do
// anything; a nil err means an InternalError. It replaces the action's
// previous FailNext; n 0 cancels it.
func (c *Cloud) FailNext(action string, n int, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failNext[action] = &failNext{n: n, err: err}
}

// SetErrorRate makes each call of action fail with the given code, before it
// does anything, with probability rate; rate 0 stops it.
func (c *Cloud) SetErrorRate(action string, rate float64, code string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.errorRates[action] = errorRate{rate: rate, code: code}
}

// SetLatency delays each call of action by d on the account's clock before
// it is served.
func (c *Cloud) SetLatency(action string, d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.latencies[action] = d
}

// SetTaskFailureRate makes each task started from now on fail with
// probability rate: TaskStatus reports TaskFailed and the change is not
// applied.
func (c *Cloud) SetTaskFailureRate(rate float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.taskFailureRate = rate
}

// SetPartialFailureRate makes each listener of a batch call fail
// independently with probability rate; the batch applies to the others.
func (c *Cloud) SetPartialFailureRate(rate float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.partialFailureRate = rate
}

// ClearFaults removes every injected fault: FailNext, error rates,
// latencies, the task and partial failure rates.
func (c *Cloud) ClearFaults() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.failNext)
	clear(c.errorRates)
	clear(c.latencies)
	c.taskFailureRate = 0
	c.partialFailureRate = 0
}

// lookup returns the setting for action, or else the one for AnyAction.
func lookup[V any](settings map[string]V, action string) V {
	if v, ok := settings[action]; ok {
		return v
	}
	return settings[AnyAction]
}

// injectedFault returns the error a fault injects into this call of action,
// if any.
func (c *Cloud) injectedFault(action, requestID string) error {
	f := c.failNext[action]
	if f == nil || f.n <= 0 {
		f = c.failNext[AnyAction]
	}
	if f != nil && f.n > 0 {
		f.n--
		if f.err == nil {
			return cloud.NewError(action, cloud.CodeInternalError, "injected failure", requestID)
		}
		return f.err
	}
	if e := lookup(c.errorRates, action); c.chance(e.rate) {
		return cloud.NewError(action, e.code, "injected failure", requestID)
	}
	return nil
}

// chance reports true with probability p. It draws only when p > 0, so that
// a fault switched off does not shift the random sequence of the others.
func (c *Cloud) chance(p float64) bool {
	return p > 0 && c.rand.Float64() < p
}
