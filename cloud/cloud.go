// Package cloud is the seam between the controller and a CLB account. Its
// types are ours, not the SDK's: the controller decides in these words, and
// each implementation (cloud/tencent over the official SDK, cloud/fake in
// memory) translates them. One method is one CLB API call, so the caller sees
// and controls the cost of what it asks for; splitting work into calls that
// respect the API's limits is the caller's job (see Batches).
package cloud

import (
	"context"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
)

// Limits of the CLB API that shape how callers split their work.
const (
	// MaxBackendsPerBatch is the most targets BatchRegisterTargets,
	// BatchDeregisterTargets and BatchModifyTargetWeight accept in one call.
	MaxBackendsPerBatch = 500
	// MaxDescribeLimit is the largest page a Describe call returns.
	MaxDescribeLimit = 100
	// DefaultListenersPerLoadBalancer and DefaultBackendsPerListener are the
	// account quotas most accounts have; DescribeQuota tells the real ones.
	DefaultListenersPerLoadBalancer = 50
	DefaultBackendsPerListener      = 200
	// MaxWeight is the largest backend weight the CLB accepts.
	MaxWeight = 100
	// MaxInternetBandwidthOut is the largest outbound bandwidth, in Mbps, a
	// public CLB may be given; the smallest is 0.
	MaxInternetBandwidthOut = 2048
)

// Ownership tags: a CLB carrying all three, with our cluster and the
// Service's UID, was created by us for that Service and is ours to delete.
const (
	TagCreatedBy   = "tke-createdBy-flag"
	TagClusterID   = "tke-clusterId"
	TagServiceUUID = "tke-lb-serviceuuid"
	// CreatedByValue is the value TagCreatedBy carries on CLBs we created.
	CreatedByValue = "yes"
)

// Protocol of a layer-4 listener.
type Protocol string

const (
	ProtocolTCP Protocol = "TCP"
	ProtocolUDP Protocol = "UDP"
)

// LoadBalancer is a CLB instance.
type LoadBalancer struct {
	ID   string
	Name string
	// SubnetID is set for an internal (VPC) CLB and empty for a public one.
	SubnetID string
	// VIPs are the addresses clients connect to; empty until the CLB is ready.
	VIPs []string
	Tags map[string]string
	// InternetMaxBandwidthOut is a public CLB's outbound bandwidth cap in
	// Mbps, as DescribeLoadBalancers reports it. 0 means none is reported
	// (an internal CLB has none) or a cap of 0: either way there is nothing
	// to compare a wanted bandwidth with but the value itself.
	InternetMaxBandwidthOut int64
}

// OwnedBy reports whether the CLB carries the ownership tags of the given
// cluster and Service UID, which is what makes it ours to delete.
func (lb LoadBalancer) OwnedBy(clusterID, serviceUID string) bool {
	return lb.Tags[TagCreatedBy] == CreatedByValue &&
		lb.Tags[TagClusterID] == clusterID &&
		lb.Tags[TagServiceUUID] == serviceUID
}

// LoadBalancerSpec is what CreateLoadBalancer needs.
type LoadBalancerSpec struct {
	Name string
	// SubnetID makes the CLB internal, in that subnet; empty means public.
	SubnetID string
	Tags     map[string]string
	// ClientToken makes a retried create return the CLB the first attempt
	// made instead of a second one.
	ClientToken string
	// ExtensiveParameters are more CreateLoadBalancer request parameters, by
	// their API names and in the API's JSON shapes, laid over the request as
	// TKE does with the Service annotation
	// service.kubernetes.io/service.extensiveParameters, e.g.
	//
	//	{"InternetAccessible": {"InternetChargeType": "TRAFFIC_POSTPAID_BY_HOUR",
	//	 "InternetMaxBandwidthOut": 10}, "VipIsp": "CMCC", "ZoneId": "ap-guangzhou-3"}
	//
	// The parameters that the rest of the spec and the account's
	// configuration decide (see CheckExtensiveParameters) cannot be set
	// this way, so that no annotation can make the CLB untracked or put it
	// in another VPC. CreateLoadBalancer fails with a KindTerminal error,
	// creating nothing, for such a parameter, for a name the API does not
	// have, at the top (compared exactly, as the API does) or inside a
	// parameter, and for a value of the wrong type. The new CLB reports
	// InternetAccessible.InternetMaxBandwidthOut as its
	// InternetMaxBandwidthOut (public CLBs only).
	ExtensiveParameters map[string]any
}

// reservedCreateParameters are the CreateLoadBalancer parameters that
// implementations set from a LoadBalancerSpec and their own configuration.
// Number is among them because one call must make exactly the one CLB that
// its ClientToken and tags track.
var reservedCreateParameters = []string{
	"ClientToken", "Forward", "LoadBalancerName", "LoadBalancerType", "Number", "SubnetId", "Tags", "VpcId",
}

// IsReservedCreateParameter reports whether name is a CreateLoadBalancer
// parameter that ExtensiveParameters may not set.
func IsReservedCreateParameter(name string) bool {
	return slices.Contains(reservedCreateParameters, name)
}

// CheckExtensiveParameters refuses extensive parameters that would override
// what a LoadBalancerSpec decides: it returns a KindTerminal *Error
// (InvalidParameter) naming them, or nil. Both implementations call it
// before anything else, so the refusal is the same everywhere and can be
// shown to the user as is.
func CheckExtensiveParameters(params map[string]any) error {
	var reserved []string
	for _, name := range slices.Sorted(maps.Keys(params)) {
		if IsReservedCreateParameter(name) {
			reserved = append(reserved, name)
		}
	}
	if len(reserved) == 0 {
		return nil
	}
	return NewError("CreateLoadBalancer", CodeInvalidParameter, fmt.Sprintf(
		"extensive parameters may not set %s: the controller sets %s itself",
		strings.Join(reserved, ", "), strings.Join(reservedCreateParameters, ", ")), "")
}

// LoadBalancerAttributes are the settings of an existing CLB that
// ModifyLoadBalancerAttributes changes; a nil field is left as it is.
type LoadBalancerAttributes struct {
	// InternetMaxBandwidthOut is a public CLB's outbound bandwidth cap, in
	// Mbps, 0 to MaxInternetBandwidthOut.
	InternetMaxBandwidthOut *int64
}

// LoadBalancerQuery selects CLBs: by ID when IDs is set, otherwise by tags
// (all must match). Implementations page through every result.
type LoadBalancerQuery struct {
	IDs  []string
	Tags map[string]string
}

// HealthCheck is a listener's health check towards its backends.
type HealthCheck struct {
	Enabled            bool
	IntervalSeconds    int64
	TimeoutSeconds     int64
	HealthyThreshold   int64
	UnhealthyThreshold int64
	// CheckType is TCP, HTTP or CUSTOM; empty means the protocol's default.
	CheckType  string
	HTTPCode   int64
	HTTPPath   string
	HTTPDomain string
	HTTPMethod string
}

// ListenerSpec is the configurable part of a listener.
type ListenerSpec struct {
	// Name identifies the listener's owner: the controller names the
	// listeners it creates so that it never touches anyone else's.
	Name     string
	Protocol Protocol
	Port     int32
	// HealthCheck nil leaves the CLB's default.
	HealthCheck *HealthCheck
	// SessionExpireSeconds 0 disables session persistence.
	SessionExpireSeconds int64
	// Scheduler is WRR or LEAST_CONN; empty leaves the CLB's default (WRR).
	Scheduler string
}

// Listener is a listener that exists on a CLB.
type Listener struct {
	ID string
	ListenerSpec
}

// Backend is one real server behind a listener: a Pod (by IP, the CLB's
// "EniIp") or a Node (by instance ID), on a port, with a weight.
type Backend struct {
	IP         string
	InstanceID string
	Port       int32
	Weight     int32
}

// BackendKey identifies a backend on a listener regardless of its weight.
type BackendKey struct {
	IP         string
	InstanceID string
	Port       int32
}

// Key returns the identity of the backend.
func (b Backend) Key() BackendKey {
	return BackendKey{IP: b.IP, InstanceID: b.InstanceID, Port: b.Port}
}

func (k BackendKey) String() string {
	host := k.IP
	if host == "" {
		host = k.InstanceID
	}
	return net.JoinHostPort(host, strconv.Itoa(int(k.Port)))
}

// ListenerBackend is a backend on a given listener: the unit of the batch
// calls.
type ListenerBackend struct {
	ListenerID string
	Backend
}

// BackendHealth is what the CLB's health check says of one backend.
type BackendHealth struct {
	LoadBalancerID string
	ListenerID     string
	IP             string
	// InstanceID is set for a Node registered by instance ID.
	InstanceID string
	Port       int32
	Healthy    bool
	// Detail is the CLB's explanation (e.g. "Alive", "Dead", "Unknown").
	Detail string
}

// Quota holds the account limits that vary per account.
type Quota struct {
	ListenersPerLoadBalancer int
	BackendsPerListener      int
}

// Interface is a CLB account. Every method is one API call (writes wait for
// their asynchronous task to finish) and returns an *Error classified by
// Kind on failure.
type Interface interface {
	DescribeLoadBalancers(ctx context.Context, query LoadBalancerQuery) ([]LoadBalancer, error)
	// CreateLoadBalancer returns once the CLB is ready, with its VIPs.
	CreateLoadBalancer(ctx context.Context, spec LoadBalancerSpec) (LoadBalancer, error)
	DeleteLoadBalancer(ctx context.Context, loadBalancerID string) error
	// ModifyLoadBalancerAttributes changes what attrs sets and leaves the
	// rest. A bandwidth out of range, or one for an internal CLB, which has
	// none, is refused with a KindTerminal error.
	ModifyLoadBalancerAttributes(ctx context.Context, loadBalancerID string, attrs LoadBalancerAttributes) error

	DescribeListeners(ctx context.Context, loadBalancerID string) ([]Listener, error)
	// CreateListener returns the listener as DescribeListeners reports it:
	// spec with the CLB's defaults for what it leaves out.
	CreateListener(ctx context.Context, loadBalancerID string, spec ListenerSpec) (Listener, error)
	// ModifyListener changes the listener's health check, session persistence
	// and scheduler to those of spec. As the API, it changes only what spec
	// sets: a nil health check or an empty scheduler keeps the listener's,
	// the zero fields of an enabled check keep theirs, and a disabled check
	// keeps its settings.
	ModifyListener(ctx context.Context, loadBalancerID, listenerID string, spec ListenerSpec) error
	// DeleteListener removes the listener and every backend on it.
	DeleteListener(ctx context.Context, loadBalancerID, listenerID string) error

	// DescribeBackends returns the backends of every listener of the CLB,
	// keyed by listener ID.
	DescribeBackends(ctx context.Context, loadBalancerID string) (map[string][]Backend, error)
	// RegisterBackends, DeregisterBackends and ModifyBackendWeights take at
	// most MaxBackendsPerBatch backends, on any listeners of one CLB. When
	// only some listeners fail the error is a *PartialFailure naming them,
	// except for ModifyBackendWeights: the API cannot name them, so it fails
	// as a whole (a transient FailedOperation), which is safe to repeat.
	RegisterBackends(ctx context.Context, loadBalancerID string, backends []ListenerBackend) error
	DeregisterBackends(ctx context.Context, loadBalancerID string, backends []ListenerBackend) error
	ModifyBackendWeights(ctx context.Context, loadBalancerID string, backends []ListenerBackend) error

	DescribeBackendHealth(ctx context.Context, loadBalancerIDs []string) ([]BackendHealth, error)
	DescribeQuota(ctx context.Context) (Quota, error)
}

// Batches splits backends into consecutive batches of at most size, keeping
// the order, so that one batch is one call.
func Batches(backends []ListenerBackend, size int) [][]ListenerBackend {
	if size <= 0 {
		panic(fmt.Sprintf("cloud.Batches: size %d", size))
	}
	var out [][]ListenerBackend
	for len(backends) > size {
		out = append(out, backends[:size:size])
		backends = backends[size:]
	}
	if len(backends) > 0 {
		out = append(out, backends)
	}
	return out
}
