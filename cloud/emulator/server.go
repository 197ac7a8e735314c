// Package emulator serves the Tencent Cloud CLB API (clb/v20180317) over
// HTTP, exactly as the official Go SDK speaks it, in front of the in-memory
// account of package fake. It is a second front door to fake.Cloud, not a
// second model: every action goes through the fake's Start forms, so the
// controller's unit tests (the fake through cloud.Interface) and the
// end-to-end tests (the SDK over the wire) see the same behaviour.
//
// On top of the API it can check the health of registered targets for real
// (TCP connect, HTTP, UDP probes) and run a data plane that forwards
// connections from each CLB's VIP to its healthy targets by weight, so that
// traffic proves what the API says. An unauthenticated admin API under
// /admin/ (loopback clients only) reads the account and the call log and
// injects faults.
package emulator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"sync"
	"time"

	"k8s.io/klog/v2"

	"clb-direct/cloud"
	"clb-direct/cloud/fake"
)

// Config configures a Server. The zero value of an optional field is
// documented with it; the clb-emulator binary has its own flag defaults.
type Config struct {
	// SecretID and SecretKey are the credential requests must be signed
	// with (TC3-HMAC-SHA256). Both are required.
	SecretID, SecretKey string
	// ExtraCredentials are more SecretId → SecretKey pairs, for tests with
	// several clients. The call log names each call's SecretId.
	ExtraCredentials map[string]string
	// Region is the one region the account serves (X-TC-Region). Required.
	Region string

	// TaskDuration is how long each asynchronous write runs (0: done at once).
	TaskDuration time.Duration
	// RateLimit is the requests per second each action admits, account-wide
	// (0: no limit).
	RateLimit float64
	// ListenersPerLoadBalancer and BackendsPerListener are the quotas
	// (0: the package cloud defaults, 50 and 200).
	ListenersPerLoadBalancer int
	BackendsPerListener      int

	// HealthCheck probes registered targets for real and reports the
	// verdicts through DescribeTargetHealth. Off, every target is healthy
	// unless the admin API says otherwise.
	HealthCheck bool
	// HealthCheckTimeScale multiplies every listener's IntervalTime and
	// TimeOut, so that tests can run a 5 s interval in 100 ms (0.02).
	// 0 means 1.
	HealthCheckTimeScale float64

	// DataPlane gives every CLB a VIP from VIPNet and every listener a
	// real socket at VIP:port that forwards to the listener's targets.
	DataPlane bool
	// VIPNet is the IPv4 prefix CLB VIPs come from when DataPlane is on
	// (default 127.2.0.0/16). Anything in 127.0.0.0/8 can be bound on Linux
	// without configuring an address.
	VIPNet string
	// UDPIdleTimeout ends a UDP flow through the data plane after that long
	// without a datagram either way (default 60s).
	UDPIdleTimeout time.Duration

	// Instances maps CVM instance IDs to their private IPs, so that targets
	// registered by InstanceId are probed and forwarded to at
	// <IP>:<target port>, and DescribeTargets reports the IP. The admin API
	// (POST /admin/instances) adds more later.
	Instances map[string]string

	// ReconcileInterval is how often the health checker and the data plane
	// re-read the account to follow registrations (default 100ms).
	ReconcileInterval time.Duration
	// MaxClockSkew is how far X-TC-Timestamp may be from the server's clock
	// (default 5 minutes, as the real API).
	MaxClockSkew time.Duration

	// Initial faults, for every action; the admin API changes them later.
	ErrorRate       float64
	ErrorCode       string // default InternalError
	Latency         time.Duration
	TaskFailureRate float64

	// Seed seeds the fault randomness (0: the fake's fixed default).
	Seed uint64
	// FakeOptions are applied to the account after the emulator's own.
	FakeOptions []fake.Option
}

func (cfg Config) withDefaults() (Config, error) {
	if cfg.SecretID == "" || cfg.SecretKey == "" {
		return cfg, errors.New("emulator: SecretID and SecretKey are required")
	}
	if cfg.Region == "" {
		return cfg, errors.New("emulator: Region is required")
	}
	if cfg.HealthCheckTimeScale == 0 {
		cfg.HealthCheckTimeScale = 1
	}
	if cfg.HealthCheckTimeScale < 0 {
		return cfg, fmt.Errorf("emulator: HealthCheckTimeScale %g must be positive", cfg.HealthCheckTimeScale)
	}
	if cfg.VIPNet == "" {
		cfg.VIPNet = "127.2.0.0/16"
	}
	if cfg.UDPIdleTimeout == 0 {
		cfg.UDPIdleTimeout = 60 * time.Second
	}
	if cfg.ReconcileInterval == 0 {
		cfg.ReconcileInterval = 100 * time.Millisecond
	}
	if cfg.MaxClockSkew == 0 {
		cfg.MaxClockSkew = 5 * time.Minute
	}
	if cfg.ErrorCode == "" {
		cfg.ErrorCode = cloud.CodeInternalError
	}
	if err := checkInstanceAddresses(cfg.Instances); err != nil {
		return cfg, fmt.Errorf("emulator: Instances: %w", err)
	}
	return cfg, nil
}

// Server is a running emulator: the account, its health checker and data
// plane, and the HTTP servers in front. Close stops everything.
type Server struct {
	cfg   Config
	cloud *fake.Cloud
	creds map[string]string
	// actions is the action table; a test may add to it.
	actions map[string]*action
	handler http.Handler

	// ctx ends the background loops when the server closes.
	ctx    context.Context
	cancel context.CancelFunc
	loops  sync.WaitGroup
	health *healthChecker
	data   *dataPlane

	mu      sync.Mutex
	servers []*http.Server
	closed  bool
	// faults are the fault settings posted since the last clear, for
	// GET /admin/faults (the fake cannot report its own).
	faults []FaultSettings
	// wire are the faults injected in front of the account (wire.go).
	wire *wireFaults
	// batches logs the targets of every batch call (batches.go).
	batches batchLog
}

// New builds the account and starts the health checker and data plane if
// configured. Serve or Start put the API on the network; Handler serves it
// from any http.Server.
func New(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	opts := []fake.Option{
		fake.WithTaskDuration(cfg.TaskDuration),
		fake.WithLimits(fake.Limits{
			ListenersPerLoadBalancer: cfg.ListenersPerLoadBalancer,
			BackendsPerListener:      cfg.BackendsPerListener,
			RequestsPerSecond:        cfg.RateLimit,
		}),
	}
	if cfg.Seed != 0 {
		opts = append(opts, fake.WithSeed(cfg.Seed))
	}
	if cfg.HealthCheck {
		// The prober owns health: a new target is not healthy until it has
		// passed HealthNum probes, as on the real CLB.
		opts = append(opts, fake.WithDefaultHealthy(false), fake.WithDefaultHealthDetail(healthUnknown))
	}
	if cfg.DataPlane {
		prefix, err := netip.ParsePrefix(cfg.VIPNet)
		if err != nil || !prefix.Addr().Is4() || prefix.Bits() > 24 {
			return nil, fmt.Errorf("emulator: VIPNet %q must be an IPv4 prefix of /24 or wider", cfg.VIPNet)
		}
		opts = append(opts, fake.WithVIPs(vipAllocator(prefix.Masked())))
	}
	opts = append(opts, cfg.FakeOptions...)

	s := &Server{
		cfg:   cfg,
		cloud: fake.New(opts...),
		creds: map[string]string{cfg.SecretID: cfg.SecretKey},
		wire:  newWireFaults(cfg.Seed),
	}
	for id, key := range cfg.ExtraCredentials {
		s.creds[id] = key
	}
	s.actions = actionTable()
	s.handler = s.newHandler()

	if cfg.ErrorRate > 0 {
		s.cloud.SetErrorRate(fake.AnyAction, cfg.ErrorRate, cfg.ErrorCode)
	}
	if cfg.Latency > 0 {
		s.cloud.SetLatency(fake.AnyAction, cfg.Latency)
	}
	if cfg.TaskFailureRate > 0 {
		s.cloud.SetTaskFailureRate(cfg.TaskFailureRate)
	}
	for id, ip := range cfg.Instances {
		s.cloud.SetInstanceAddress(id, ip)
	}

	s.ctx, s.cancel = context.WithCancel(context.Background())
	if cfg.HealthCheck {
		s.health = newHealthChecker(s.cloud, cfg.HealthCheckTimeScale, cfg.ReconcileInterval)
		s.loops.Go(func() { s.health.run(s.ctx) })
	}
	if cfg.DataPlane {
		s.data = newDataPlane(s.cloud, cfg.ReconcileInterval, cfg.UDPIdleTimeout)
		s.loops.Go(func() { s.data.run(s.ctx) })
	}
	return s, nil
}

// vipAllocator returns the fake's VIP chooser for a prefix: the seq-th CLB
// gets the seq-th address, skipping .0 and .255 so that no VIP looks like a
// network or broadcast address. It wraps around after the prefix is used up.
func vipAllocator(prefix netip.Prefix) func(seq int, internal bool) string {
	size := 1 << (32 - prefix.Bits())
	usable := size / 256 * 254
	base := prefix.Addr().As4()
	start := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	return func(seq int, _ bool) string {
		i := (seq - 1) % usable
		if i < 0 {
			i += usable
		}
		n := start + uint32(i/254*256+i%254+1)
		return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}).String()
	}
}

// Cloud returns the account the server serves, for tests that set it up or
// inspect it directly.
func (s *Server) Cloud() *fake.Cloud { return s.cloud }

// Handler serves the API on "/" and the admin API under "/admin/".
func (s *Server) Handler() http.Handler { return s.handler }

// AdminHandler serves the admin API alone (under "/admin/"), for a
// separate admin port.
func (s *Server) AdminHandler() http.Handler { return s.adminHandler() }

func (s *Server) newHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/admin/", s.adminHandler())
	mux.HandleFunc("/", s.serveAPI)
	return mux
}

// Serve serves Handler on l until Close; it returns nil after Close.
func (s *Server) Serve(l net.Listener) error {
	return s.serve(l, s.handler)
}

// ServeAdmin serves AdminHandler on l until Close.
func (s *Server) ServeAdmin(l net.Listener) error {
	return s.serve(l, s.adminHandler())
}

func (s *Server) serve(l net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = l.Close()
		return nil
	}
	s.servers = append(s.servers, srv)
	s.mu.Unlock()
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Start listens on addr (e.g. "127.0.0.1:0") and serves in the
// background; it returns the address it listens on.
func (s *Server) Start(addr string) (string, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return "", err
	}
	go func() {
		if err := s.Serve(l); err != nil {
			klog.ErrorS(err, "Serving the CLB API stopped", "address", l.Addr())
		}
	}()
	return l.Addr().String(), nil
}

// Close stops serving (requests in flight get a second to finish), stops
// the health checker and closes the data plane with every connection
// through it.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	servers := s.servers
	s.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var errs []error
	for _, srv := range servers {
		if err := srv.Shutdown(ctx); err != nil {
			errs = append(errs, srv.Close())
		}
	}
	s.cancel()
	s.loops.Wait()
	return errors.Join(errs...)
}

// maxBodyBytes bounds a request body; the real API refuses more than 10 MB.
const maxBodyBytes = 10 << 20

// handleAPI serves one API call. Every outcome is HTTP 200 with the API's
// JSON envelope, as the real endpoint answers, including a panic in a
// handler: the SDK reports any other status as a network-level error.
// serveAPI puts the wire faults around it.
func (s *Server) handleAPI(w http.ResponseWriter, r *http.Request) (served servedCall) {
	start := time.Now()
	requestID := newRequestID()
	action := r.Header.Get("X-TC-Action")
	var client, code string
	defer func() {
		if p := recover(); p != nil {
			klog.ErrorS(nil, "Panic serving a CLB API call", "action", action, "panic", p, "stack", string(debug.Stack()))
			code = cloud.CodeInternalError
			writeError(w, cloud.NewError(action, code, "internal error", requestID))
		}
		klog.V(2).InfoS("CLB API call", "action", action, "client", client, "code", code, "duration", time.Since(start))
		served = servedCall{HeldCall: HeldCall{Action: action, Client: client, RequestID: requestID}, err: code}
	}()

	resp, err := s.call(r, requestID, &client)
	if err != nil {
		code = err.Code
		if err.RequestID == "" {
			err.RequestID = requestID
		}
		writeError(w, err)
		return served
	}
	writeJSON(w, resp)
	return served
}

// call authenticates and runs one API call; it returns the response, with
// its RequestId set, or the error for the envelope.
func (s *Server) call(r *http.Request, requestID string, client *string) (any, *cloud.Error) {
	action := r.Header.Get("X-TC-Action")
	fail := func(code, format string, args ...any) *cloud.Error {
		return cloud.NewError(action, code, fmt.Sprintf(format, args...), requestID)
	}
	if r.URL.Path != "/" {
		return nil, fail("InvalidRequest", "path %q: the API is served on /", r.URL.Path)
	}
	if r.Method != http.MethodPost {
		// The SDK signs GET requests differently (parameters in the query);
		// it defaults to POST, the one form this emulator implements.
		return nil, fail("UnsupportedProtocol", "method %s: the emulator serves POST with a JSON body only", r.Method)
	}
	body, readErr := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
	if readErr != nil {
		return nil, fail(cloud.CodeInvalidParameter, "reading the body: %v", readErr)
	}
	if len(body) > maxBodyBytes {
		return nil, fail("RequestSizeLimitExceeded", "the body exceeds %d bytes", maxBodyBytes)
	}

	secretID, err := s.authenticate(r, body, time.Now())
	if err != nil {
		err.Action, err.RequestID = action, requestID
		return nil, err
	}
	*client = secretID

	switch {
	case action == "":
		return nil, fail(cloud.CodeMissingParameter, "the X-TC-Action header is missing")
	case r.Header.Get("X-TC-Version") == "":
		return nil, fail(cloud.CodeMissingParameter, "the X-TC-Version header is missing")
	case r.Header.Get("X-TC-Version") != apiVersion:
		return nil, fail("NoSuchVersion", "version %q: this endpoint serves clb %s", r.Header.Get("X-TC-Version"), apiVersion)
	case r.Header.Get("X-TC-Region") == "":
		return nil, fail(cloud.CodeMissingParameter, "the X-TC-Region header is missing")
	case r.Header.Get("X-TC-Region") != s.cfg.Region:
		return nil, fail("UnsupportedRegion", "region %q: this endpoint serves %s", r.Header.Get("X-TC-Region"), s.cfg.Region)
	}
	a, ok := s.actions[action]
	if !ok {
		return nil, fail("InvalidAction", "action %s does not exist or is not implemented by the emulator", action)
	}
	if err := s.wire.injectError(action, requestID); err != nil {
		return nil, err
	}
	if body = bytes.TrimSpace(body); len(body) == 0 {
		body = []byte("{}")
	}
	resp, id, callErr := a.serve(withClient(r.Context(), secretID), s, s.cloud.WithClient(secretID), body)
	if callErr != nil {
		return nil, asAPIError(action, requestID, callErr)
	}
	if id == "" {
		id = requestID
	}
	setRequestID(resp, id)
	return resp, nil
}

// asAPIError maps any error of an action to the envelope's: the fake's
// *cloud.Error keeps its code and RequestId; anything else (a cancelled
// request) is an InternalError.
func asAPIError(action, requestID string, err error) *cloud.Error {
	var ce *cloud.Error
	if errors.As(err, &ce) {
		out := *ce
		if out.RequestID == "" {
			out.RequestID = requestID
		}
		return &out
	}
	return cloud.NewError(action, cloud.CodeInternalError, err.Error(), requestID)
}

// errorEnvelope is the API's error response.
type errorEnvelope struct {
	Response struct {
		Error struct {
			Code    string `json:"Code"`
			Message string `json:"Message"`
		} `json:"Error"`
		RequestID string `json:"RequestId"`
	} `json:"Response"`
}

func writeError(w http.ResponseWriter, err *cloud.Error) {
	var env errorEnvelope
	env.Response.Error.Code = err.Code
	env.Response.Error.Message = err.Message
	env.Response.RequestID = err.RequestID
	writeJSON(w, env)
}

func writeJSON(w http.ResponseWriter, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		// Only a bug gets here: every response is a plain struct.
		panic(fmt.Sprintf("encoding a response: %v", err))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(data)
}
