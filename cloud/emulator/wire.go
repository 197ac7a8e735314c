package emulator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"clb-direct/cloud"
	"clb-direct/cloud/fake"
)

// Faults on the wire, which the emulator injects in front of the account
// (the account's own are error rates of one code, latency, failed tasks and
// partly failed batches): failures with a mix of codes, responses lost after
// the call was served, responses held back until the client gives up, and
// the whole API unreachable while the data plane keeps forwarding. Calls
// failed here never reach the account, so the call log does not have them;
// GET /admin/injected counts every fault injected, by kind.

// ErrorMix fails calls before they reach the account: each call fails with
// probability Rate, with a code drawn at random from Codes.
type ErrorMix struct {
	Rate  float64  `json:"rate"`
	Codes []string `json:"codes"`
}

// HoldNext holds back the successful responses of the next Count calls of
// Action (default: the settings' Action, or every action): the call is
// served (a write's task is started, and runs to its end) but the client
// gets no answer until it gives up or MaxMs passes. A test kills the caller
// meanwhile, to crash it between a cloud write and what it does after.
type HoldNext struct {
	Action string `json:"action,omitempty"`
	Count  int    `json:"count"`
	// MaxMs is how long a response is held at most (default 60000); then
	// it is sent after all.
	MaxMs int64 `json:"maxMs,omitempty"`
}

// APIDown makes the API unreachable for DurationMs from now (0 ends an
// outage at once): every API request is refused (Mode "refuse", the
// default: the connection is reset before any response) or hangs (Mode
// "hang": no response until the outage ends or the client gives up, then a
// reset). The admin API and the data plane are not affected.
type APIDown struct {
	Mode       string `json:"mode,omitempty"`
	DurationMs int64  `json:"durationMs"`
}

// API outage modes.
const (
	APIDownRefuse = "refuse"
	APIDownHang   = "hang"
)

// Kinds of injected faults, the keys of GET /admin/injected. An error of an
// ErrorMix counts as "error/<code>".
const (
	InjectedErrorPrefix    = "error/"
	InjectedDropResponse   = "dropResponse"
	InjectedHoldResponse   = "holdResponse"
	InjectedAPIDownRefused = "apiDown/refused"
	InjectedAPIDownHung    = "apiDown/hung"
	// InjectedTaskFailure counts the distinct tasks DescribeTaskStatus
	// reported failed; InjectedPartialFailure the listeners that batch
	// calls failed for (FailListenerIdSet).
	InjectedTaskFailure    = "taskFailure"
	InjectedPartialFailure = "partialFailure"
)

// HeldCall is a call whose response is being held (GET /admin/held).
type HeldCall struct {
	Action    string
	Client    string
	RequestID string
	Since     time.Time
}

type holdRule struct {
	count int
	max   time.Duration
}

// wireFaults are the faults on the wire and their counts.
type wireFaults struct {
	mu        sync.Mutex
	rand      *mathrand.Rand
	mixes     map[string]ErrorMix
	dropRates map[string]float64
	holds     map[string]*holdRule
	held      map[string]HeldCall
	// release is closed to send every held response and end every hung
	// request: on a clear, or when an outage ends early.
	release   chan struct{}
	downUntil time.Time
	downMode  string
	counts    map[string]int64
	// failedTasks are the tasks already counted as failed.
	failedTasks map[string]bool
}

func newWireFaults(seed uint64) *wireFaults {
	if seed == 0 {
		seed = 1
	}
	return &wireFaults{
		rand:        mathrand.New(mathrand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		mixes:       map[string]ErrorMix{},
		dropRates:   map[string]float64{},
		holds:       map[string]*holdRule{},
		held:        map[string]HeldCall{},
		release:     make(chan struct{}),
		counts:      map[string]int64{},
		failedTasks: map[string]bool{},
	}
}

// check validates the wire fields of a FaultSettings.
func (f FaultSettings) checkWire() error {
	var errs []error
	if m := f.ErrorMix; m != nil {
		if m.Rate < 0 || m.Rate > 1 {
			errs = append(errs, fmt.Errorf("errorMix.rate %g: must be within 0..1", m.Rate))
		}
		if m.Rate > 0 && len(m.Codes) == 0 {
			errs = append(errs, errors.New("errorMix.codes: at least one code is needed"))
		}
		if slices.Contains(m.Codes, "") {
			errs = append(errs, errors.New("errorMix.codes: a code is empty"))
		}
	}
	if p := f.DropResponseRate; p != nil && (*p < 0 || *p > 1) {
		errs = append(errs, fmt.Errorf("dropResponseRate %g: must be within 0..1", *p))
	}
	if h := f.HoldNext; h != nil && (h.Count < 0 || h.MaxMs < 0) {
		errs = append(errs, fmt.Errorf("holdNext: count %d and maxMs %d must not be negative", h.Count, h.MaxMs))
	}
	if d := f.APIDown; d != nil {
		if d.Mode != "" && d.Mode != APIDownRefuse && d.Mode != APIDownHang {
			errs = append(errs, fmt.Errorf("apiDown.mode %q: want %q or %q", d.Mode, APIDownRefuse, APIDownHang))
		}
		if d.DurationMs < 0 {
			errs = append(errs, fmt.Errorf("apiDown.durationMs %d: must not be negative", d.DurationMs))
		}
	}
	return errors.Join(errs...)
}

// apply applies the wire fields of a checked FaultSettings; action is its
// Action, "*" when empty.
func (w *wireFaults) apply(f FaultSettings, action string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if f.ErrorMix != nil {
		w.mixes[action] = ErrorMix{Rate: f.ErrorMix.Rate, Codes: slices.Clone(f.ErrorMix.Codes)}
	}
	if f.DropResponseRate != nil {
		w.dropRates[action] = *f.DropResponseRate
	}
	if h := f.HoldNext; h != nil {
		holdAction := h.Action
		if holdAction == "" {
			holdAction = action
		}
		max := time.Duration(h.MaxMs) * time.Millisecond
		if max == 0 {
			max = time.Minute
		}
		w.holds[holdAction] = &holdRule{count: h.Count, max: max}
	}
	if d := f.APIDown; d != nil {
		if d.DurationMs == 0 {
			w.downUntil = time.Time{}
			w.releaseAll()
		} else {
			w.downUntil = time.Now().Add(time.Duration(d.DurationMs) * time.Millisecond)
			w.downMode = d.Mode
			if w.downMode == "" {
				w.downMode = APIDownRefuse
			}
		}
	}
}

// clear removes every wire fault and lets held and hung requests go; the
// counts stay.
func (w *wireFaults) clear() {
	w.mu.Lock()
	defer w.mu.Unlock()
	clear(w.mixes)
	clear(w.dropRates)
	clear(w.holds)
	w.downUntil = time.Time{}
	w.releaseAll()
}

// releaseAll lets every held or hung request go; w.mu is held.
func (w *wireFaults) releaseAll() {
	close(w.release)
	w.release = make(chan struct{})
}

func (w *wireFaults) chance(p float64) bool { return p > 0 && w.rand.Float64() < p }

// injectError returns the error an ErrorMix injects into this call of
// action, if any.
func (w *wireFaults) injectError(action, requestID string) *cloud.Error {
	w.mu.Lock()
	defer w.mu.Unlock()
	m, ok := w.mixes[action]
	if !ok {
		m = w.mixes[fake.AnyAction]
	}
	if len(m.Codes) == 0 || !w.chance(m.Rate) {
		return nil
	}
	code := m.Codes[w.rand.IntN(len(m.Codes))]
	w.counts[InjectedErrorPrefix+code]++
	return cloud.NewError(action, code, "injected failure", requestID)
}

// drop reports whether the response to this call of action is to be lost.
func (w *wireFaults) drop(action string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	p, ok := w.dropRates[action]
	if !ok {
		p = w.dropRates[fake.AnyAction]
	}
	if !w.chance(p) {
		return false
	}
	w.counts[InjectedDropResponse]++
	return true
}

// hold reports whether the response to this call of action is to be held,
// for how long at most, and what ends the hold early.
func (w *wireFaults) hold(call HeldCall) (time.Duration, <-chan struct{}, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	rule := w.holds[call.Action]
	if rule == nil || rule.count <= 0 {
		rule = w.holds[fake.AnyAction]
	}
	if rule == nil || rule.count <= 0 {
		return 0, nil, false
	}
	rule.count--
	w.counts[InjectedHoldResponse]++
	w.held[call.RequestID] = call
	return rule.max, w.release, true
}

func (w *wireFaults) unhold(requestID string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.held, requestID)
}

// heldCalls lists the calls whose responses are held, oldest first.
func (w *wireFaults) heldCalls() []HeldCall {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]HeldCall, 0, len(w.held))
	for _, c := range w.held {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b HeldCall) int { return a.Since.Compare(b.Since) })
	return out
}

// down reports whether the API is unreachable now: the mode, when the
// outage ends and what ends it early. It counts the request.
func (w *wireFaults) down() (mode string, until time.Time, release <-chan struct{}, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.downUntil.IsZero() || !time.Now().Before(w.downUntil) {
		return "", time.Time{}, nil, false
	}
	if w.downMode == APIDownHang {
		w.counts[InjectedAPIDownHung]++
	} else {
		w.counts[InjectedAPIDownRefused]++
	}
	return w.downMode, w.downUntil, w.release, true
}

// active reports whether responses may be dropped or held, which needs the
// response captured before it is sent.
func (w *wireFaults) active() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range w.dropRates {
		if p > 0 {
			return true
		}
	}
	for _, h := range w.holds {
		if h.count > 0 {
			return true
		}
	}
	return false
}

func (w *wireFaults) count(kind string, n int) {
	if n == 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.counts[kind] += int64(n)
}

// taskFailed counts a task DescribeTaskStatus reports failed, once.
func (w *wireFaults) taskFailed(taskID string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.failedTasks[taskID] {
		w.failedTasks[taskID] = true
		w.counts[InjectedTaskFailure]++
	}
}

func (w *wireFaults) injected() map[string]int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]int64, len(w.counts))
	for k, v := range w.counts {
		out[k] = v
	}
	return out
}

func (w *wireFaults) resetCounts() {
	w.mu.Lock()
	defer w.mu.Unlock()
	clear(w.counts)
	clear(w.failedTasks)
}

// Injected returns how many faults of each kind were injected since the
// start or the last ResetInjected (GET /admin/injected).
func (s *Server) Injected() map[string]int64 { return s.wire.injected() }

// ResetInjected zeroes the counts of injected faults.
func (s *Server) ResetInjected() { s.wire.resetCounts() }

// Held lists the calls whose responses are held now (GET /admin/held).
func (s *Server) Held() []HeldCall { return s.wire.heldCalls() }

// serveAPI serves one API request with the wire faults in force.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	if mode, until, release, down := s.wire.down(); down {
		if mode == APIDownHang {
			timer := time.NewTimer(time.Until(until))
			defer timer.Stop()
			select {
			case <-r.Context().Done():
			case <-release:
			case <-timer.C:
			}
		}
		resetConnection(w)
		return
	}
	if !s.wire.active() {
		s.handleAPI(w, r)
		return
	}
	rec := &capturedResponse{header: http.Header{}}
	call := s.handleAPI(rec, r)
	if s.wire.drop(call.Action) {
		resetConnection(w)
		return
	}
	if call.err == "" {
		call.Since = time.Now()
		if max, release, ok := s.wire.hold(call.HeldCall); ok {
			timer := time.NewTimer(max)
			select {
			case <-r.Context().Done():
			case <-release:
			case <-timer.C:
			}
			timer.Stop()
			s.wire.unhold(call.RequestID)
			if r.Context().Err() != nil {
				return
			}
		}
	}
	rec.sendTo(w)
}

// servedCall is what handleAPI tells serveAPI about a call.
type servedCall struct {
	HeldCall
	// err is the error code of the response, empty for a success.
	err string
}

// resetConnection closes the request's connection without a response,
// with a TCP reset, as an unreachable or crashed endpoint would.
func resetConnection(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

// capturedResponse keeps a response until serveAPI decides its fate.
type capturedResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (c *capturedResponse) Header() http.Header { return c.header }

func (c *capturedResponse) WriteHeader(status int) {
	if c.status == 0 {
		c.status = status
	}
}

func (c *capturedResponse) Write(p []byte) (int, error) {
	c.WriteHeader(http.StatusOK)
	return c.body.Write(p)
}

func (c *capturedResponse) sendTo(w http.ResponseWriter) {
	for k, v := range c.header {
		w.Header()[k] = v
	}
	if c.status == 0 {
		c.status = http.StatusOK
	}
	w.WriteHeader(c.status)
	_, _ = w.Write(c.body.Bytes())
}

// clientKey carries the caller's SecretId in a call's context, for the
// batch log.
type clientKey struct{}

func withClient(ctx context.Context, client string) context.Context {
	return context.WithValue(ctx, clientKey{}, client)
}

func clientOf(ctx context.Context) string {
	s, _ := ctx.Value(clientKey{}).(string)
	return s
}
