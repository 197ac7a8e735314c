package tencent

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"reflect"
	"strings"
	"time"

	clb "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/clb/v20180317"
	sdkerrors "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/errors"
	"k8s.io/klog/v2"

	"clb-direct/cloud"
)

// Codes of failures on our side of the wire. They start with "ClientError."
// as the SDK's own do, and are transient to cloud.KindOfCode.
const (
	// CodeNetworkError is the SDK's code for a request that got no response.
	CodeNetworkError = "ClientError.NetworkError"
	// CodeTaskTimeout: an asynchronous task still ran when Options.Timeout
	// was up; it may still succeed.
	CodeTaskTimeout = "ClientError.TaskTimeout"
	// CodeMalformedResponse: the response lacked what the call needs.
	CodeMalformedResponse = "ClientError.MalformedResponse"
	clientErrorPrefix     = "ClientError."
)

// maxMessageLength bounds the message of an error: the SDK's parse errors
// quote whole response bodies, and errors end up in events.
const maxMessageLength = 512

// request is what every SDK request type is to us.
type request interface{ GetAction() string }

// op describes one API call beyond its request.
type op struct {
	// lbID is the CLB the call is about, for the log.
	lbID string
	// idempotent says that repeating the call changes nothing, so it may be
	// repeated after a failure that leaves unknown whether it was applied.
	idempotent bool
}

// send makes one API call: method is the SDK's method for the request, e.g.
// (*clb.Client).DescribeListeners. It waits for the action's rate limit and
// retries as the RetryPolicy allows; its error is a *cloud.Error, or ctx's
// error when ctx ended first.
func send[Req request, Resp any](ctx context.Context, c *Cloud, o op, req Req, method func(*clb.Client, Req) (Resp, error)) (Resp, error) {
	var resp Resp
	err := c.do(ctx, req.GetAction(), o, func(api *clb.Client) error {
		r, err := method(api, req)
		if err != nil {
			return err
		}
		if !hasResponse(r) {
			return cloud.NewError(req.GetAction(), CodeMalformedResponse, "the response has no Response object", "")
		}
		resp = r
		return nil
	})
	return resp, err
}

// hasResponse reports whether an SDK response has its Response object: the
// SDK leaves the pointer nil when the body lacks it, and every caller reads
// it.
func hasResponse(resp any) bool {
	v := reflect.ValueOf(resp)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		return false
	}
	f := v.Elem().FieldByName("Response")
	return f.IsValid() && f.Kind() == reflect.Pointer && !f.IsNil()
}

// do runs attempt until it succeeds or fails for good.
func (c *Cloud) do(ctx context.Context, action string, o op, attempt func(*clb.Client) error) error {
	var r retrier
	for {
		// Never start a call after the caller gave up.
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("%s: %w", action, err)
		}
		if err := c.limiter(action).Wait(ctx); err != nil {
			return fmt.Errorf("%s: waiting for the client-side rate limit: %w", action, err)
		}
		err := c.attempt(ctx, action, o, attempt)
		if err == nil {
			return nil
		}
		delay, ok := r.next(c.retry, o, err)
		if !ok {
			return err
		}
		klog.FromContext(ctx).V(4).Info("Retrying CLB API call", "action", action, "loadBalancer", o.lbID,
			"code", codeOf(err), "delay", delay)
		if serr := c.sleep(ctx, delay); serr != nil {
			return fmt.Errorf("%s: %w after %w", action, serr, err)
		}
	}
}

// attempt makes one HTTP call with the current credentials, bounded by the
// call timeout, and logs it.
func (c *Cloud) attempt(ctx context.Context, action string, o op, fn func(*clb.Client) error) error {
	creds := c.creds.get(ctx)
	callCtx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	api, err := c.newAPI(callCtx, creds)
	if err != nil {
		return err
	}
	start := c.clock.Now()
	err = c.classify(ctx, callCtx, action, creds, fn(api))
	logger := klog.FromContext(ctx).V(4)
	if logger.Enabled() {
		kv := []any{"action", action, "loadBalancer", o.lbID, "duration", c.clock.Since(start), "code", codeOf(err)}
		var ce *cloud.Error
		if errors.As(err, &ce) {
			kv = append(kv, "requestID", ce.RequestID, "message", ce.Message)
		}
		logger.Info("CLB API call", kv...)
	}
	return err
}

// classify turns what the SDK returned into our error: ctx's error when the
// caller gave up, else a *cloud.Error without credentials in its message.
func (c *Cloud) classify(ctx, callCtx context.Context, action string, creds credentials, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w", action, ctx.Err())
	}
	if errors.Is(callCtx.Err(), context.DeadlineExceeded) {
		return cloud.NewError(action, CodeNetworkError, fmt.Sprintf("no response within %s", c.timeout), "")
	}
	var ce *cloud.Error
	if errors.As(err, &ce) {
		return err
	}
	var sdkErr *sdkerrors.TencentCloudSDKError
	if errors.As(err, &sdkErr) {
		return cloud.NewError(action, sdkErr.Code, message(creds, sdkErr.Message), sdkErr.RequestId)
	}
	return cloud.NewError(action, clientErrorPrefix+"Unknown", message(creds, err.Error()), "")
}

func message(creds credentials, msg string) string {
	msg = creds.redact(msg)
	if len(msg) > maxMessageLength {
		msg = strings.ToValidUTF8(msg[:maxMessageLength], "") + "…"
	}
	return msg
}

// codeOf is the code of a call's outcome for the log.
func codeOf(err error) string {
	var ce *cloud.Error
	switch {
	case err == nil:
		return "OK"
	case errors.As(err, &ce):
		return ce.Code
	case errors.Is(err, context.Canceled):
		return "Canceled"
	case errors.Is(err, context.DeadlineExceeded):
		return "DeadlineExceeded"
	}
	return "Unknown"
}

// retrier counts the retries of one call, per kind of failure.
type retrier struct {
	throttled, inOperating, network int
}

// next returns how long to wait before retrying after err, or false when
// err is not to be retried or its retries are used up.
func (r *retrier) next(p RetryPolicy, o op, err error) (time.Duration, bool) {
	var ce *cloud.Error
	if !errors.As(err, &ce) {
		return 0, false
	}
	var b Backoff
	var n *int
	switch {
	case ce.Code == cloud.CodeRequestLimitExceeded:
		b, n = p.Throttled, &r.throttled
	case ce.Code == cloud.CodeResourceInOperating:
		b, n = p.InOperating, &r.inOperating
	case o.idempotent && (strings.HasPrefix(ce.Code, clientErrorPrefix) || ce.Code == cloud.CodeInternalError):
		// A task timeout or malformed response is not the network's doing.
		if ce.Code == CodeTaskTimeout || ce.Code == CodeMalformedResponse {
			return 0, false
		}
		b, n = p.Network, &r.network
	default:
		return 0, false
	}
	if *n+1 >= b.Attempts {
		return 0, false
	}
	d := b.delay(*n)
	*n++
	return d, true
}

// delay is the wait before retry n (from 0): equal jitter, so that clients
// throttled together spread out but none retries at once.
func (b Backoff) delay(n int) time.Duration {
	d := b.Initial
	for range n {
		if d >= b.Max/2 {
			d = b.Max
			break
		}
		d *= 2
	}
	d = min(d, b.Max)
	half := d / 2
	return half + rand.N(d-half+1)
}

// sleep waits d, or returns ctx's error when it ends first.
func (c *Cloud) sleep(ctx context.Context, d time.Duration) error {
	return cloud.Sleep(ctx, c.clock, d)
}

// ctxTransport gives the SDK's requests, made without a context, the
// context of the call, so cancelling it aborts the request in flight.
type ctxTransport struct {
	ctx  context.Context
	base http.RoundTripper
}

func (t ctxTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	return t.base.RoundTrip(req.WithContext(t.ctx))
}
