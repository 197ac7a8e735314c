package tencent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"sync"
	"testing"
	"time"

	"k8s.io/klog/v2"
	"k8s.io/klog/v2/textlogger"
)

// Test credentials: long and distinctive, so that finding them anywhere is
// a leak and not a coincidence.
const (
	testSecretID  = "AKIDtestSecretID0123456789abcdef"
	testSecretKey = "testSecretKeyVerySecret0123456789"
	testToken     = "testSessionTokenAlsoSecret987654"
)

// apiError is a handler's answer that is an API error.
type apiError struct{ Code, Message string }

// hangUp is a handler's answer that closes the connection without a
// response: a network failure.
type hangUp struct{}

// handler answers the n-th call (from 0) of its action: with the fields of
// the Response object (a map), an apiError, hangUp, or raw (the whole body).
type handler func(body map[string]any, n int) any

// raw is a response body sent as is.
type raw string

// apiCall is one request the fake API received.
type apiCall struct {
	Action   string
	Body     map[string]any
	SecretID string
	Header   http.Header
	Time     time.Time
}

// fakeAPI is an httptest server speaking the CLB wire protocol: the action
// in X-TC-Action, a JSON body, a JSON envelope back with HTTP 200. Each test
// scripts the actions it needs; DescribeTaskStatus says done unless
// scripted.
type fakeAPI struct {
	t   *testing.T
	srv *httptest.Server

	mu       sync.Mutex
	handlers map[string]handler
	calls    []apiCall
	counts   map[string]int
}

var credentialRE = regexp.MustCompile(`Credential=([^/]+)/`)

func newFakeAPI(t *testing.T) *fakeAPI {
	t.Helper()
	f := &fakeAPI{t: t, handlers: map[string]handler{}, counts: map[string]int{}}
	f.handle("DescribeTaskStatus", func(map[string]any, int) any { return map[string]any{"Status": 0} })
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAPI) handle(action string, h handler) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.handlers[action] = h
}

func (f *fakeAPI) host() string {
	u, err := url.Parse(f.srv.URL)
	if err != nil {
		f.t.Fatal(err)
	}
	return u.Host
}

func (f *fakeAPI) serve(w http.ResponseWriter, r *http.Request) {
	action := r.Header.Get("X-TC-Action")
	data, _ := io.ReadAll(r.Body)
	body := map[string]any{}
	if err := json.Unmarshal(data, &body); err != nil {
		f.t.Errorf("%s: request body is not JSON: %v", action, err)
	}
	call := apiCall{Action: action, Body: body, Header: r.Header.Clone(), Time: time.Now()}
	if m := credentialRE.FindStringSubmatch(r.Header.Get("Authorization")); m != nil {
		call.SecretID = m[1]
	}

	f.mu.Lock()
	f.calls = append(f.calls, call)
	n := f.counts[action]
	f.counts[action]++
	h := f.handlers[action]
	f.mu.Unlock()

	requestID := fmt.Sprintf("req-%s-%d", action, n)
	var answer any = apiError{Code: "InvalidAction", Message: "the test does not serve " + action}
	if h != nil {
		answer = h(body, n)
	}
	var envelope map[string]any
	switch a := answer.(type) {
	case hangUp:
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			_ = conn.Close()
		}
		return
	case raw:
		_, _ = io.WriteString(w, string(a))
		return
	case apiError:
		envelope = map[string]any{"Error": map[string]any{"Code": a.Code, "Message": a.Message}, "RequestId": requestID}
	case map[string]any:
		envelope = a
		if _, ok := envelope["RequestId"]; !ok {
			envelope["RequestId"] = requestID
		}
	default:
		f.t.Errorf("%s: handler answered %T", action, answer)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"Response": envelope})
}

// callsOf returns the calls of an action, or all calls for "".
func (f *fakeAPI) callsOf(action string) []apiCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []apiCall
	for _, c := range f.calls {
		if action == "" || c.Action == action {
			out = append(out, c)
		}
	}
	return out
}

// testRetry keeps retries fast and bounded.
var testRetry = RetryPolicy{
	Throttled:   Backoff{Initial: time.Millisecond, Max: 4 * time.Millisecond, Attempts: 5},
	InOperating: Backoff{Initial: time.Millisecond, Max: 8 * time.Millisecond, Attempts: 6},
	Network:     Backoff{Initial: time.Millisecond, Max: 2 * time.Millisecond, Attempts: 3},
}

// newTestCloud returns a Cloud talking to f with the test credentials from
// the environment, no rate limit and fast retries and polls; mod changes
// the options.
func newTestCloud(t *testing.T, f *fakeAPI, mod func(*Options)) *Cloud {
	t.Helper()
	t.Setenv(EnvSecretID, testSecretID)
	t.Setenv(EnvSecretKey, testSecretKey)
	t.Setenv(EnvSessionToken, testToken)
	o := Options{
		Region:    "ap-test",
		Endpoint:  f.host(),
		Scheme:    "http",
		RateLimit: -1,
		Timeout:   5 * time.Second,
		Retry:     testRetry,
		Poll:      PollPolicy{Initial: time.Millisecond, Max: 4 * time.Millisecond, Factor: 2},
	}
	if mod != nil {
		mod(&o)
	}
	c, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

// syncBuffer is a log sink safe for the concurrent writes of HTTP handlers
// and calls.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// loggingContext returns a context whose logger writes everything, V(10)
// included, to the returned buffer.
func loggingContext(t *testing.T) (context.Context, *syncBuffer) {
	t.Helper()
	buf := &syncBuffer{}
	logger := textlogger.NewLogger(textlogger.NewConfig(textlogger.Verbosity(10), textlogger.Output(buf)))
	return klog.NewContext(t.Context(), logger), buf
}
