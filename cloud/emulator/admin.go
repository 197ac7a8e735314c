package emulator

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"clb-direct/cloud"
	"clb-direct/cloud/fake"
)

// The admin API, under /admin/, unauthenticated and for loopback clients
// only:
//
//	GET    /admin/state      the account (fake.State) as JSON
//	GET    /admin/calls      the call log, oldest first ([]CallRecord; decodes into []fake.Call too);
//	                         ?action=, ?client=, ?loadBalancerId= filter it
//	DELETE /admin/calls      empties the call log
//	POST   /admin/faults     applies a FaultSettings; returns all settings since the last clear
//	GET    /admin/faults     the settings applied since the last clear
//	DELETE /admin/faults     removes every fault (held and hung requests go on)
//	GET    /admin/injected   how many faults of each kind were injected ({"error/InternalError": 3, ...})
//	DELETE /admin/injected   zeroes those counts
//	GET    /admin/held       the calls whose responses are held now ([]HeldCall)
//	GET    /admin/batches    the batch calls on targets, with every target named ([]BatchRecord);
//	                         ?since=<seq> returns those from that sequence number on
//	DELETE /admin/batches    empties the batch log
//	POST   /admin/health     sets one target's health (HealthSetting); with probing on, the
//	                         prober takes over again from that verdict
//	GET    /admin/instances  the known CVM instance addresses ({"ins-...": "10.0.0.1", ...})
//	POST   /admin/instances  merges the instance addresses given (same shape; an empty
//	                         address forgets the instance); returns them all
//	GET    /admin/dataplane  the data plane's sockets and targets ([]ForwarderStatus)
//	GET    /admin/healthz    "ok"

// FaultSettings is the body of POST /admin/faults. Only the fields present
// change anything; settings accumulate until DELETE /admin/faults.
type FaultSettings struct {
	// Action is the API action ErrorRate and LatencyMs apply to; empty or
	// "*" means every action without a setting of its own.
	Action string `json:"action,omitempty"`
	// ErrorRate is the probability that a call fails with Code (default
	// InternalError) before doing anything.
	ErrorRate *float64 `json:"errorRate,omitempty"`
	Code      string   `json:"code,omitempty"`
	// LatencyMs delays each call before it is served.
	LatencyMs *int64 `json:"latencyMs,omitempty"`
	// TaskFailureRate is the probability that a write's task fails
	// (DescribeTaskStatus says 1 and nothing changes); account-wide.
	TaskFailureRate *float64 `json:"taskFailureRate,omitempty"`
	// PartialFailureRate is the probability that each listener of a batch
	// call fails on its own (FailListenerIdSet); account-wide.
	PartialFailureRate *float64  `json:"partialFailureRate,omitempty"`
	FailNext           *FailNext `json:"failNext,omitempty"`

	// Faults on the wire, in front of the account (see wire.go).
	// ErrorMix fails calls of Action with codes drawn at random.
	ErrorMix *ErrorMix `json:"errorMix,omitempty"`
	// DropResponseRate is the probability that a call of Action is served
	// but its connection is reset instead of answered.
	DropResponseRate *float64  `json:"dropResponseRate,omitempty"`
	HoldNext         *HoldNext `json:"holdNext,omitempty"`
	// APIDown is account-wide.
	APIDown *APIDown `json:"apiDown,omitempty"`
}

// FailNext makes the next Count calls of Action (default: the settings'
// Action, or every action) fail with Code (default: the settings' Code, or
// InternalError) and Message.
type FailNext struct {
	Action  string `json:"action,omitempty"`
	Count   int    `json:"count"`
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

// ApplyFaults applies fault settings, as POST /admin/faults does.
func (s *Server) ApplyFaults(f FaultSettings) error {
	rate := func(name string, p *float64) error {
		if p != nil && (*p < 0 || *p > 1) {
			return fmt.Errorf("%s %g: must be within 0..1", name, *p)
		}
		return nil
	}
	if err := errors.Join(rate("errorRate", f.ErrorRate), rate("taskFailureRate", f.TaskFailureRate),
		rate("partialFailureRate", f.PartialFailureRate), f.checkWire()); err != nil {
		return err
	}
	if f.LatencyMs != nil && *f.LatencyMs < 0 {
		return fmt.Errorf("latencyMs %d: must not be negative", *f.LatencyMs)
	}
	if f.FailNext != nil && f.FailNext.Count < 0 {
		return fmt.Errorf("failNext.count %d: must not be negative", f.FailNext.Count)
	}

	action := f.Action
	if action == "" {
		action = fake.AnyAction
	}
	code := f.Code
	if code == "" {
		code = cloud.CodeInternalError
	}
	if f.ErrorRate != nil {
		s.cloud.SetErrorRate(action, *f.ErrorRate, code)
	}
	if f.LatencyMs != nil {
		s.cloud.SetLatency(action, time.Duration(*f.LatencyMs)*time.Millisecond)
	}
	if f.TaskFailureRate != nil {
		s.cloud.SetTaskFailureRate(*f.TaskFailureRate)
	}
	if f.PartialFailureRate != nil {
		s.cloud.SetPartialFailureRate(*f.PartialFailureRate)
	}
	if fn := f.FailNext; fn != nil {
		fnAction, fnCode, msg := fn.Action, fn.Code, fn.Message
		if fnAction == "" {
			fnAction = action
		}
		if fnCode == "" {
			fnCode = code
		}
		if msg == "" {
			msg = "injected failure"
		}
		s.cloud.FailNext(fnAction, fn.Count, cloud.NewError(fnAction, fnCode, msg, ""))
	}
	s.wire.apply(f, action)
	s.mu.Lock()
	s.faults = append(s.faults, f)
	s.mu.Unlock()
	return nil
}

// ClearFaults removes every fault, the configured initial ones included.
func (s *Server) ClearFaults() {
	s.cloud.ClearFaults()
	s.wire.clear()
	s.mu.Lock()
	s.faults = nil
	s.mu.Unlock()
}

// Faults returns the settings applied since the last clear.
func (s *Server) Faults() []FaultSettings {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]FaultSettings{}, s.faults...)
}

// CallRecord is one logged call in GET /admin/calls. Its fields are named
// as fake.Call's, so the JSON decodes into []fake.Call as well (without
// the error, which is spelled out here instead).
type CallRecord struct {
	Action string
	// Client is the SecretId that signed the call.
	Client         string
	LoadBalancerID string
	ListenerID     string
	Backends       int
	Time           time.Time
	// ErrorCode and ErrorMessage are the API error the call returned.
	ErrorCode    string `json:",omitempty"`
	ErrorMessage string `json:",omitempty"`
	// FailedListenerIDs are the listeners a batch call failed for.
	FailedListenerIDs []string `json:",omitempty"`
}

// Calls returns the call log, oldest first. Only calls that reached the
// account are there: not those refused for their signature or parameters.
func (s *Server) Calls() []CallRecord {
	calls := s.cloud.Calls()
	out := make([]CallRecord, 0, len(calls))
	for _, c := range calls {
		rec := CallRecord{
			Action: c.Action, Client: c.Client, LoadBalancerID: c.LoadBalancerID, ListenerID: c.ListenerID,
			Backends: c.Backends, Time: c.Time,
		}
		var ce *cloud.Error
		var pf *cloud.PartialFailure
		switch {
		case errors.As(c.Err, &ce):
			rec.ErrorCode, rec.ErrorMessage = ce.Code, ce.Message
		case errors.As(c.Err, &pf):
			rec.FailedListenerIDs = pf.FailedListenerIDs
		case c.Err != nil:
			rec.ErrorCode, rec.ErrorMessage = cloud.CodeInternalError, c.Err.Error()
		}
		out = append(out, rec)
	}
	return out
}

// HealthSetting is the body of POST /admin/health: one target's verdict.
type HealthSetting struct {
	LoadBalancerID string `json:"loadBalancerId"`
	ListenerID     string `json:"listenerId"`
	IP             string `json:"ip,omitempty"`
	InstanceID     string `json:"instanceId,omitempty"`
	Port           int32  `json:"port"`
	Healthy        bool   `json:"healthy"`
	// Detail defaults to Alive or Dead.
	Detail string `json:"detail,omitempty"`
}

// SetInstanceAddresses merges instance ID → private IP into the account,
// as POST /admin/instances does; an empty IP forgets the instance. Nothing
// changes if any entry is invalid.
func (s *Server) SetInstanceAddresses(addrs map[string]string) error {
	if err := checkInstanceAddresses(addrs); err != nil {
		return err
	}
	for id, ip := range addrs {
		s.cloud.SetInstanceAddress(id, ip)
	}
	return nil
}

// InstanceAddresses returns the instance addresses the account knows.
func (s *Server) InstanceAddresses() map[string]string {
	if addrs := s.cloud.Snapshot().Instances; addrs != nil {
		return addrs
	}
	return map[string]string{}
}

// checkInstanceAddresses checks instance ID → IP pairs: IDs non-empty, IPs
// addresses or empty.
func checkInstanceAddresses(addrs map[string]string) error {
	var errs []error
	for _, id := range slices.Sorted(maps.Keys(addrs)) {
		switch ip := addrs[id]; {
		case id == "":
			errs = append(errs, errors.New("an instance ID is empty"))
		case ip != "":
			if _, err := netip.ParseAddr(ip); err != nil {
				errs = append(errs, fmt.Errorf("instance %s: %q is not an IP address", id, ip))
			}
		}
	}
	return errors.Join(errs...)
}

// Forwarders describes the data plane (empty when it is off).
func (s *Server) Forwarders() []ForwarderStatus {
	if s.data == nil {
		return []ForwarderStatus{}
	}
	return s.data.status()
}

func (s *Server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /admin/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /admin/state", func(w http.ResponseWriter, _ *http.Request) {
		adminJSON(w, s.cloud.Snapshot())
	})
	mux.HandleFunc("GET /admin/calls", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		out := []CallRecord{}
		for _, c := range s.Calls() {
			if match(q.Get("action"), c.Action) && match(q.Get("client"), c.Client) && match(q.Get("loadBalancerId"), c.LoadBalancerID) {
				out = append(out, c)
			}
		}
		adminJSON(w, out)
	})
	mux.HandleFunc("DELETE /admin/calls", func(w http.ResponseWriter, _ *http.Request) {
		s.cloud.ResetCalls()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /admin/faults", func(w http.ResponseWriter, _ *http.Request) {
		adminJSON(w, s.Faults())
	})
	mux.HandleFunc("POST /admin/faults", func(w http.ResponseWriter, r *http.Request) {
		var f FaultSettings
		if !decodeAdmin(w, r, &f) {
			return
		}
		if err := s.ApplyFaults(f); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		adminJSON(w, s.Faults())
	})
	mux.HandleFunc("DELETE /admin/faults", func(w http.ResponseWriter, _ *http.Request) {
		s.ClearFaults()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /admin/injected", func(w http.ResponseWriter, _ *http.Request) {
		adminJSON(w, s.Injected())
	})
	mux.HandleFunc("DELETE /admin/injected", func(w http.ResponseWriter, _ *http.Request) {
		s.ResetInjected()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /admin/held", func(w http.ResponseWriter, _ *http.Request) {
		adminJSON(w, s.Held())
	})
	mux.HandleFunc("GET /admin/batches", func(w http.ResponseWriter, r *http.Request) {
		since := 0
		if v := r.URL.Query().Get("since"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				http.Error(w, fmt.Sprintf("since=%q: want a sequence number", v), http.StatusBadRequest)
				return
			}
			since = n
		}
		adminJSON(w, s.Batches(since))
	})
	mux.HandleFunc("DELETE /admin/batches", func(w http.ResponseWriter, _ *http.Request) {
		s.ResetBatches()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /admin/health", func(w http.ResponseWriter, r *http.Request) {
		var h HealthSetting
		if !decodeAdmin(w, r, &h) {
			return
		}
		key := cloud.BackendKey{IP: h.IP, InstanceID: h.InstanceID, Port: h.Port}
		if !s.cloud.SetBackendHealth(h.LoadBalancerID, h.ListenerID, key, h.Healthy, h.Detail) {
			http.Error(w, fmt.Sprintf("target %s is not registered on listener %s of %s", key, h.ListenerID, h.LoadBalancerID), http.StatusNotFound)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /admin/instances", func(w http.ResponseWriter, _ *http.Request) {
		adminJSON(w, s.InstanceAddresses())
	})
	mux.HandleFunc("POST /admin/instances", func(w http.ResponseWriter, r *http.Request) {
		var addrs map[string]string
		if !decodeAdmin(w, r, &addrs) {
			return
		}
		if err := s.SetInstanceAddresses(addrs); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		adminJSON(w, s.InstanceAddresses())
	})
	mux.HandleFunc("GET /admin/dataplane", func(w http.ResponseWriter, _ *http.Request) {
		adminJSON(w, s.Forwarders())
	})
	return loopbackOnly(mux)
}

func match(want, got string) bool { return want == "" || want == got }

// loopbackOnly refuses clients that are not on this machine: the admin API
// has no authentication, and the API port may listen on every interface.
func loopbackOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		addr, perr := netip.ParseAddr(host)
		if err != nil || perr != nil || !addr.Unmap().IsLoopback() {
			http.Error(w, "the admin API serves loopback clients only", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func decodeAdmin(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		http.Error(w, "bad JSON: "+err.Error(), http.StatusBadRequest)
		return false
	}
	return true
}

func adminJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
