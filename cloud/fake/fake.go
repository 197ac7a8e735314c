// Package fake is an in-memory CLB account: load balancers, listeners,
// backends and the asynchronous tasks that change them, with the real API's
// limits and injectable faults. It is the one model of the account: the
// controller's unit tests use it through cloud.Interface, and the HTTP
// emulator puts the Tencent Cloud wire protocol in front of the same model
// through the Start forms and TaskStatus, so both see the same behaviour.
//
// A write validates its request and starts a task at once. The task applies
// the change when it completes, the task duration (WithTaskDuration) later
// on the injected clock; a task that fails applies nothing. Tasks complete lazily, whenever a call
// looks at the account, so nothing runs in the background and a fake clock
// alone decides when a change lands.
package fake

import (
	"context"
	"crypto/rand"
	"fmt"
	"math"
	mathrand "math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"clb-direct/cloud"
)

// Actions, named as the Tencent Cloud API names them: the call log and the
// fault setters use these names.
const (
	actionDescribeLoadBalancers  = "DescribeLoadBalancers"
	actionCreateLoadBalancer     = "CreateLoadBalancer"
	actionDeleteLoadBalancer     = "DeleteLoadBalancer"
	actionModifyLBAttributes     = "ModifyLoadBalancerAttributes"
	actionDescribeListeners      = "DescribeListeners"
	actionCreateListener         = "CreateListener"
	actionModifyListener         = "ModifyListener"
	actionDeleteListener         = "DeleteListener"
	actionDescribeTargets        = "DescribeTargets"
	actionBatchRegisterTargets   = "BatchRegisterTargets"
	actionBatchDeregisterTargets = "BatchDeregisterTargets"
	actionBatchModifyWeight      = "BatchModifyTargetWeight"
	actionDescribeTargetHealth   = "DescribeTargetHealth"
	actionDescribeQuota          = "DescribeQuota"
	actionDescribeTaskStatus     = "DescribeTaskStatus"
)

// AnyAction, given to a fault setter, stands for every action that has no
// setting of its own.
const AnyAction = "*"

// Limits are the API limits the account enforces. A zero field takes the
// default from package cloud, except RequestsPerSecond, where zero means no
// rate limit.
type Limits struct {
	ListenersPerLoadBalancer int
	BackendsPerListener      int
	// BackendsPerBatch bounds the targets of one batch call.
	BackendsPerBatch int
	// DescribeLimit is the largest page DescribeLoadBalancers returns.
	DescribeLimit int
	// RequestsPerSecond is the rate each action admits, account-wide, with a
	// burst of one second's worth.
	RequestsPerSecond float64
}

func (l Limits) withDefaults() Limits {
	if l.ListenersPerLoadBalancer == 0 {
		l.ListenersPerLoadBalancer = cloud.DefaultListenersPerLoadBalancer
	}
	if l.BackendsPerListener == 0 {
		l.BackendsPerListener = cloud.DefaultBackendsPerListener
	}
	if l.BackendsPerBatch == 0 {
		l.BackendsPerBatch = cloud.MaxBackendsPerBatch
	}
	if l.DescribeLimit == 0 {
		l.DescribeLimit = cloud.MaxDescribeLimit
	}
	return l
}

// Option configures a Cloud made by New.
type Option func(*account)

// WithClock sets the clock that times tasks, latency and rate limits
// (default: the real clock).
func WithClock(c clock.Clock) Option { return func(a *account) { a.clock = c } }

// WithTaskDuration sets how long every task runs (default 0: a write is done
// when its call returns).
func WithTaskDuration(d time.Duration) Option { return func(a *account) { a.taskDuration = d } }

// WithLimits sets the API limits.
func WithLimits(l Limits) Option { return func(a *account) { a.limits = l.withDefaults() } }

// WithSeed seeds the randomness of the fault rates. The default seed is
// fixed, so that a run is reproducible unless asked otherwise.
func WithSeed(seed uint64) Option {
	return func(a *account) { a.rand = mathrand.New(mathrand.NewPCG(seed, seed)) }
}

// WithDefaultHealthy sets what the health check says of a newly registered
// backend (default true) until SetBackendHealth says otherwise.
func WithDefaultHealthy(healthy bool) Option { return func(a *account) { a.defaultHealthy = healthy } }

// WithDefaultHealthDetail sets the detail a newly registered backend starts
// with (default "Alive" or "Dead", after WithDefaultHealthy). The emulator,
// whose prober decides health for real, starts backends "Unknown" as the CLB
// does before its first verdict.
func WithDefaultHealthDetail(detail string) Option {
	return func(a *account) { a.defaultHealthDetail = detail }
}

// WithVIPs sets how a CLB's address is chosen: vipFor gets the CLB's
// creation sequence number (1, 2, ...) and whether it is internal, and must
// return distinct addresses for distinct numbers. The emulator's data plane
// uses it to give CLBs loopback addresses it can listen on.
func WithVIPs(vipFor func(seq int, internal bool) string) Option {
	return func(a *account) { a.vipFor = vipFor }
}

// Cloud is a CLB account. It implements cloud.Interface; its Start forms and
// TaskStatus are the asynchronous API underneath, for the emulator. All
// methods are safe for concurrent use.
type Cloud struct {
	*account
	// client names the caller in the call log.
	client string
}

var _ cloud.Interface = (*Cloud)(nil)

// account is the state that every view of a Cloud shares.
type account struct {
	clock          clock.Clock
	taskDuration   time.Duration
	limits         Limits
	defaultHealthy bool
	// defaultHealthDetail is the detail of a new backend; empty means the
	// one that goes with defaultHealthy.
	defaultHealthDetail string
	vipFor              func(seq int, internal bool) string

	// mu guards everything below. It is never held while a call sleeps for
	// latency or waits for a task.
	mu          sync.Mutex
	rand        *mathrand.Rand
	lbs         map[string]*loadBalancer
	lbSeq       int
	listenerSeq int
	// tokens maps a ClientToken to the CLB created with it, for as long as
	// that CLB exists.
	tokens map[string]string
	tasks  map[string]*task
	// busy holds the running task of each CLB: at most one, as in the API.
	busy    map[string]*task
	calls   []*Call
	buckets map[string]*bucket
	// instances maps a CVM instance ID to its private IP, where known.
	instances map[string]string
	faults
}

// New returns an empty account.
func New(opts ...Option) *Cloud {
	a := &account{
		clock:          clock.RealClock{},
		limits:         Limits{}.withDefaults(),
		defaultHealthy: true,
		vipFor:         vip,
		rand:           mathrand.New(mathrand.NewPCG(1, 1)),
		lbs:            map[string]*loadBalancer{},
		tokens:         map[string]string{},
		tasks:          map[string]*task{},
		busy:           map[string]*task{},
		buckets:        map[string]*bucket{},
		faults: faults{
			failNext:   map[string]*failNext{},
			errorRates: map[string]errorRate{},
			latencies:  map[string]time.Duration{},
		},
	}
	for _, opt := range opts {
		opt(a)
	}
	return &Cloud{account: a}
}

// WithClient returns a view of the same account whose calls the log
// attributes to client (the emulator passes the caller's access key), so a
// test can tell which replica wrote.
func (c *Cloud) WithClient(client string) *Cloud {
	return &Cloud{account: c.account, client: client}
}

// Call is one API call as the account saw it.
type Call struct {
	Action string
	// Client is the name of the view that made the call (see WithClient).
	Client string
	// LoadBalancerID is the CLB the call is about (for CreateLoadBalancer,
	// the one it created); empty for a call about several or none.
	LoadBalancerID string
	// ListenerID is the listener a listener call is about.
	ListenerID string
	// Backends counts the targets of a batch call.
	Backends int
	// Time is when the call arrived, on the account's clock.
	Time time.Time
	// Err is how the call failed: for a cloud.Interface write, after waiting
	// for its task; a partly failed batch records its *cloud.PartialFailure.
	Err error
}

// Calls returns the log of calls, oldest first.
func (c *Cloud) Calls() []Call {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Call, len(c.calls))
	for i, call := range c.calls {
		out[i] = *call
	}
	return out
}

// ResetCalls empties the log.
func (c *Cloud) ResetCalls() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = nil
}

// CountCalls counts the logged calls of the given actions, or all calls when
// none is given.
func (c *Cloud) CountCalls(actions ...string) int {
	n := 0
	for _, call := range c.Calls() {
		if len(actions) == 0 || slices.Contains(actions, call.Action) {
			n++
		}
	}
	return n
}

// WriteCalls returns the logged calls that may change the account: every
// action but the Describe ones.
func (c *Cloud) WriteCalls() []Call {
	var out []Call
	for _, call := range c.Calls() {
		if !strings.HasPrefix(call.Action, "Describe") {
			out = append(out, call)
		}
	}
	return out
}

// request is one call in flight.
type request struct {
	// id is the RequestId, which is also the TaskId of the task a write
	// starts, as in the real API.
	id   string
	call *Call
}

// begin logs a call as it arrives; end records how it went.
func (c *Cloud) begin(action, lbID string, backends int) *request {
	r := &request{id: newRequestID(), call: &Call{Action: action, Client: c.client, LoadBalancerID: lbID, Backends: backends}}
	c.mu.Lock()
	defer c.mu.Unlock()
	r.call.Time = c.clock.Now()
	c.calls = append(c.calls, r.call)
	return r
}

// end records err as the outcome of the call and returns it.
func (c *Cloud) end(r *request, err error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	r.call.Err = err
	return err
}

// run serves a call: it waits out the action's latency, then, under the
// lock, completes due tasks, admits the call past the rate limit and the
// injected faults, and runs fn. An *cloud.Error that fn returns gets the
// call's action and RequestId where it has none.
func (c *Cloud) run(ctx context.Context, r *request, fn func() error) error {
	action := r.call.Action
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", action, err)
	}
	c.mu.Lock()
	latency := lookup(c.latencies, action)
	c.mu.Unlock()
	if latency > 0 {
		if err := c.sleep(ctx, latency); err != nil {
			return fmt.Errorf("%s: %w", action, err)
		}
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	c.settle()
	if !c.takeToken(action) {
		return cloud.NewError(action, cloud.CodeRequestLimitExceeded,
			fmt.Sprintf("more than %g requests per second", c.limits.RequestsPerSecond), r.id)
	}
	if err := c.injectedFault(action, r.id); err != nil {
		return err
	}
	err := fn()
	if ce, ok := err.(*cloud.Error); ok {
		if ce.Action == "" {
			ce.Action = action
		}
		if ce.RequestID == "" {
			ce.RequestID = r.id
		}
	}
	return err
}

// apiError is an error of the call being served; run fills in the action
// and RequestId.
func apiError(code, format string, args ...any) *cloud.Error {
	return cloud.NewError("", code, fmt.Sprintf(format, args...), "")
}

// sleep waits d on the account's clock, or until ctx is done.
func (c *Cloud) sleep(ctx context.Context, d time.Duration) error {
	return cloud.Sleep(ctx, c.clock, d)
}

// bucket is the token bucket of one action.
type bucket struct {
	tokens float64
	last   time.Time
}

// takeToken reports whether the rate limit admits a call of action now, and
// if so spends a token on it.
func (c *Cloud) takeToken(action string) bool {
	rate := c.limits.RequestsPerSecond
	if rate <= 0 {
		return true
	}
	burst := math.Max(1, rate)
	now := c.clock.Now()
	b, ok := c.buckets[action]
	if !ok {
		b = &bucket{tokens: burst, last: now}
		c.buckets[action] = b
	}
	b.tokens = math.Min(burst, b.tokens+now.Sub(b.last).Seconds()*rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// newRequestID returns a random UUID, the shape of a Tencent Cloud
// RequestId.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
