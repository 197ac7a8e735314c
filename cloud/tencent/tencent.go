// Package tencent implements cloud.Interface over Tencent Cloud's CLB API
// (tencentcloud-sdk-go, clb/v20180317).
//
// The SDK version we can use (v1.0.162) has no retries, no rate limiting and
// no context support, so this package adds them around every call:
//
//   - a token bucket per API action (the API's limit is per action and
//     account), waited on with the caller's context;
//   - retries with exponential backoff and jitter, bounded, for throttling
//     (RequestLimitExceeded), a task running on the CLB
//     (FailedOperation.ResourceInOperating), and network failures of calls
//     that are safe to repeat (reads, and writes whose repetition changes
//     nothing);
//   - a timeout per HTTP call, and the caller's context on the HTTP request
//     itself, so that a cancelled context stops the call in flight and no
//     call or poll starts after it;
//   - waiting for asynchronous writes: DescribeTaskStatus with the write's
//     RequestId, or DescribeLoadBalancers for a CLB being created, polled at
//     a growing interval.
//
// Credentials come from the environment (TENCENTCLOUD_SECRET_ID,
// TENCENTCLOUD_SECRET_KEY, optional TENCENTCLOUD_SESSION_TOKEN), read once,
// or from Options.CredentialsFile, read again every few seconds so rotated
// keys work without a restart. That path is either a directory holding one
// file per variable above, named as the variable (what a Kubernetes Secret
// with those keys gives as a volume), or a JSON file
// {"secretId": "...", "secretKey": "...", "token": "..."} (token optional).
// Credentials never reach a log line or an error: they print redacted, and
// error messages from the API are scrubbed of them.
//
// Batching: one method is one API call, except DescribeLoadBalancers, which
// pages (100 a page, 20 IDs a call), and DescribeBackendHealth, which asks
// for 20 CLBs a call. The batch writes refuse more than
// cloud.MaxBackendsPerBatch backends without calling.
package tencent

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"sync"
	"time"

	clb "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/clb/v20180317"
	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/profile"
	"golang.org/x/time/rate"
	"k8s.io/utils/clock"

	"clb-direct/cloud"
)

// DefaultEndpoint is the CLB API's public endpoint, the SDK's default.
const DefaultEndpoint = "clb.tencentcloudapi.com"

// Defaults of Options.
const (
	DefaultRateLimit          = 20
	DefaultTimeout            = 30 * time.Second
	DefaultCredentialsRefresh = 5 * time.Second
)

// Options configure a Cloud. Only Region is required.
type Options struct {
	// Region of the CLBs, e.g. ap-guangzhou.
	Region string
	// Endpoint is the API's host[:port]; empty means DefaultEndpoint.
	Endpoint string
	// Scheme is "https" (the default) or "http" (an emulator).
	Scheme string
	// VpcID is the VPC new CLBs are created in: the cluster's, so that the
	// CLB reaches Pod IPs. Empty leaves it to the API (the default VPC),
	// which the API refuses for internal CLBs.
	VpcID string
	// CredentialsFile, when set, is read instead of the environment and read
	// again while the process runs, so rotated keys take effect without a
	// restart. See loadCredentialsFile for the formats.
	CredentialsFile string
	// CredentialsRefresh is how often CredentialsFile is read again;
	// zero means DefaultCredentialsRefresh.
	CredentialsRefresh time.Duration
	// RateLimit is the requests per second this client sends per API action,
	// with a burst of one second's worth; zero means DefaultRateLimit and a
	// negative value no limit.
	RateLimit float64
	// Timeout bounds one HTTP call, and separately the wait for one
	// asynchronous task; zero means DefaultTimeout.
	Timeout time.Duration
	// Retry and Poll default to DefaultRetryPolicy and DefaultPollPolicy
	// field by field; tests make them small.
	Retry RetryPolicy
	Poll  PollPolicy
	// Clock times backoffs, polls and credential refreshes; nil means the
	// real clock.
	Clock clock.Clock
	// Transport carries the HTTP requests; nil means a clone of
	// http.DefaultTransport.
	Transport http.RoundTripper
}

// Backoff is an exponential backoff with jitter: the n-th retry waits a
// random duration between half and all of min(Initial·2ⁿ, Max).
type Backoff struct {
	Initial, Max time.Duration
	// Attempts bounds the calls made for one request, the first included;
	// 1 means no retry.
	Attempts int
}

// RetryPolicy says which failures are retried, how often and how late.
type RetryPolicy struct {
	// Throttled is for RequestLimitExceeded: the API refused the call
	// before doing anything, so any call may be repeated.
	Throttled Backoff
	// InOperating is for FailedOperation.ResourceInOperating: another task
	// runs on the CLB and the call was refused, so any call may be repeated.
	InOperating Backoff
	// Network is for failures where the call may or may not have reached
	// the API (network errors, InternalError); only reads and idempotent
	// writes are repeated.
	Network Backoff
}

// DefaultRetryPolicy follows what Tencent's own controllers do: about a
// second after throttling, 500ms–8s while a CLB is busy, and a couple of
// quick retries of a read that met a network failure.
var DefaultRetryPolicy = RetryPolicy{
	Throttled:   Backoff{Initial: time.Second, Max: 8 * time.Second, Attempts: 5},
	InOperating: Backoff{Initial: 500 * time.Millisecond, Max: 8 * time.Second, Attempts: 6},
	Network:     Backoff{Initial: 200 * time.Millisecond, Max: 2 * time.Second, Attempts: 3},
}

// PollPolicy paces the polls of an asynchronous task: fast at first, since
// most tasks end within a second, then slower, to spare the rate limit.
type PollPolicy struct {
	Initial, Max time.Duration
	Factor       float64
}

// DefaultPollPolicy polls after 100ms, then ×1.5 up to every 2s.
var DefaultPollPolicy = PollPolicy{Initial: 100 * time.Millisecond, Max: 2 * time.Second, Factor: 1.5}

// Cloud is a CLB account reached through the Tencent Cloud API. It is safe
// for concurrent use.
type Cloud struct {
	region    string
	vpcID     string
	profile   *profile.ClientProfile
	transport http.RoundTripper
	creds     *credentialSource
	rateLimit rate.Limit
	burst     int
	timeout   time.Duration
	retry     RetryPolicy
	poll      PollPolicy
	clock     clock.Clock

	mu       sync.Mutex
	limiters map[string]*rate.Limiter
}

var _ cloud.Interface = (*Cloud)(nil)

// New returns a Cloud for the options, with credentials read from
// CredentialsFile or else from the environment (TENCENTCLOUD_SECRET_ID,
// TENCENTCLOUD_SECRET_KEY, optional TENCENTCLOUD_SESSION_TOKEN).
func New(o Options) (*Cloud, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	creds, err := newCredentialSource(o.CredentialsFile, o.CredentialsRefresh, o.Clock)
	if err != nil {
		return nil, err
	}
	c := &Cloud{
		region:    o.Region,
		vpcID:     o.VpcID,
		profile:   clientProfile(o),
		transport: o.Transport,
		creds:     creds,
		rateLimit: rate.Inf,
		burst:     1,
		timeout:   o.Timeout,
		retry:     o.Retry,
		poll:      o.Poll,
		clock:     o.Clock,
		limiters:  map[string]*rate.Limiter{},
	}
	if o.RateLimit > 0 {
		c.rateLimit, c.burst = rate.Limit(o.RateLimit), max(1, int(o.RateLimit))
	}
	return c, nil
}

func (o Options) withDefaults() (Options, error) {
	if o.Region == "" {
		return o, errors.New("tencent: a region is required (--region)")
	}
	if o.Endpoint == "" {
		o.Endpoint = DefaultEndpoint
	}
	switch o.Scheme = strings.ToLower(o.Scheme); o.Scheme {
	case "":
		o.Scheme = "https"
	case "http", "https":
	default:
		return o, fmt.Errorf("tencent: scheme %q: want https or http", o.Scheme)
	}
	if o.RateLimit == 0 {
		o.RateLimit = DefaultRateLimit
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.CredentialsRefresh <= 0 {
		o.CredentialsRefresh = DefaultCredentialsRefresh
	}
	o.Retry.Throttled = o.Retry.Throttled.withDefaults(DefaultRetryPolicy.Throttled)
	o.Retry.InOperating = o.Retry.InOperating.withDefaults(DefaultRetryPolicy.InOperating)
	o.Retry.Network = o.Retry.Network.withDefaults(DefaultRetryPolicy.Network)
	if o.Poll.Initial <= 0 {
		o.Poll.Initial = DefaultPollPolicy.Initial
	}
	if o.Poll.Max <= 0 {
		o.Poll.Max = DefaultPollPolicy.Max
	}
	if o.Poll.Factor < 1 {
		o.Poll.Factor = DefaultPollPolicy.Factor
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Transport == nil {
		o.Transport = http.DefaultTransport.(*http.Transport).Clone()
	}
	return o, nil
}

func (b Backoff) withDefaults(def Backoff) Backoff {
	if b.Initial <= 0 {
		b.Initial = def.Initial
	}
	if b.Max <= 0 {
		b.Max = def.Max
	}
	if b.Attempts <= 0 {
		b.Attempts = def.Attempts
	}
	return b
}

// clientProfile is the SDK's profile shared by every call. Its timeout is
// only a backstop: each call's context carries the real one.
func clientProfile(o Options) *profile.ClientProfile {
	p := profile.NewClientProfile()
	p.HttpProfile.Endpoint = o.Endpoint
	p.HttpProfile.Scheme = o.Scheme
	p.HttpProfile.ReqTimeout = int(math.Ceil(o.Timeout.Seconds()))
	// English messages end up in events users read.
	p.Language = "en-US"
	// Debug would dump requests, token header included, to the log.
	p.Debug = false
	return p
}

// limiter returns the token bucket of an API action.
func (c *Cloud) limiter(action string) *rate.Limiter {
	c.mu.Lock()
	defer c.mu.Unlock()
	l, ok := c.limiters[action]
	if !ok {
		l = rate.NewLimiter(c.rateLimit, c.burst)
		c.limiters[action] = l
	}
	return l
}

// newAPI returns an SDK client for one HTTP call. A client per call is
// cheap, and it is how the SDK, which takes no context, gets one: its
// transport puts ctx on the request. It also lets rotated credentials take
// effect without mutating a client another call is using.
func (c *Cloud) newAPI(ctx context.Context, creds credentials) (*clb.Client, error) {
	api, err := clb.NewClient(creds.sdk(), c.region, c.profile)
	if err != nil {
		return nil, fmt.Errorf("creating the CLB API client: %w", err)
	}
	api.WithHttpTransport(ctxTransport{ctx: ctx, base: c.transport})
	return api, nil
}
