package emulator

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"

	clb "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/clb/v20180317"

	"clb-direct/cloud"
	"clb-direct/cloud/fake"
)

// Target types DescribeTargets reports: a target registered by EniIp (a
// Pod) is an ENI, one registered by InstanceId (a Node) a CVM.
const (
	targetTypeENI = "ENI"
	targetTypeCVM = "CVM"
	// defaultWeight is the weight of a target registered without one.
	defaultWeight = 10
	// defaultDescribeLimit is the page of a DescribeLoadBalancers without
	// a Limit.
	defaultDescribeLimit = 20
)

// actionTable lists the actions the emulator implements: every call an
// implementation of cloud.Interface over the SDK needs. The parameter lists
// are checked against the SDK's request types when the table is built.
func actionTable() map[string]*action {
	return map[string]*action{
		"DescribeLoadBalancers": newAction(clb.NewDescribeLoadBalancersRequest, describeLoadBalancers,
			[]string{"LoadBalancerIds", "Filters", "Offset", "Limit"},
			[]string{"Forward", "OrderBy", "OrderType"}),
		// Every parameter beyond the spec's goes to the fake as an
		// extensive parameter, for it to keep or check.
		"CreateLoadBalancer": newAction(clb.NewCreateLoadBalancerRequest, createLoadBalancer,
			[]string{"LoadBalancerType", "LoadBalancerName", "SubnetId", "Tags", "ClientToken", "Number",
				"ProjectId", "AddressIPVersion", "MasterZoneId", "ZoneId", "SlaveZoneId", "InternetAccessible",
				"VipIsp", "Vip", "BandwidthPackageId", "ExclusiveCluster", "SnatPro", "SnatIps", "ClusterTag", "EipAddressId"},
			[]string{"Forward", "VpcId"}),
		"DeleteLoadBalancer": newAction(clb.NewDeleteLoadBalancerRequest, deleteLoadBalancer,
			[]string{"LoadBalancerIds"}, nil),
		"ModifyLoadBalancerAttributes": newAction(clb.NewModifyLoadBalancerAttributesRequest, modifyLoadBalancerAttributes,
			[]string{"LoadBalancerId", "InternetChargeInfo"}, nil),
		"DescribeListeners": newAction(clb.NewDescribeListenersRequest, describeListeners,
			[]string{"LoadBalancerId", "ListenerIds", "Protocol", "Port"}, nil),
		"CreateListener": newAction(clb.NewCreateListenerRequest, createListener,
			[]string{"LoadBalancerId", "Ports", "Protocol", "ListenerNames", "HealthCheck", "SessionExpireTime",
				"Scheduler", "TargetType", "SessionType"},
			[]string{"DeregisterTargetRst"}),
		"ModifyListener": newAction(clb.NewModifyListenerRequest, modifyListener,
			[]string{"LoadBalancerId", "ListenerId", "ListenerName", "SessionExpireTime", "HealthCheck", "Scheduler"},
			[]string{"DeregisterTargetRst"}),
		"DeleteListener": newAction(clb.NewDeleteListenerRequest, deleteListener,
			[]string{"LoadBalancerId", "ListenerId"}, nil),
		"DescribeTargets": newAction(clb.NewDescribeTargetsRequest, describeTargets,
			[]string{"LoadBalancerId", "ListenerIds", "Protocol", "Port"}, nil),
		"BatchRegisterTargets": newAction(clb.NewBatchRegisterTargetsRequest, batchRegisterTargets,
			[]string{"LoadBalancerId", "Targets"}, nil),
		"BatchDeregisterTargets": newAction(clb.NewBatchDeregisterTargetsRequest, batchDeregisterTargets,
			[]string{"LoadBalancerId", "Targets"}, nil),
		"BatchModifyTargetWeight": newAction(clb.NewBatchModifyTargetWeightRequest, batchModifyTargetWeight,
			[]string{"LoadBalancerId", "ModifyList"}, nil),
		"DescribeTargetHealth": newAction(clb.NewDescribeTargetHealthRequest, describeTargetHealth,
			[]string{"LoadBalancerIds"}, nil),
		"DescribeTaskStatus": newAction(clb.NewDescribeTaskStatusRequest, describeTaskStatus,
			[]string{"TaskId"}, nil),
		"DescribeQuota": newAction(clb.NewDescribeQuotaRequest, describeQuota, nil, nil),
	}
}

// --- load balancers ---

func describeLoadBalancers(ctx context.Context, _ *Server, c *fake.Cloud, req *clb.DescribeLoadBalancersRequest) (*clb.DescribeLoadBalancersResponse, string, error) {
	ids := strs(req.LoadBalancerIds)
	tags, err := tagFilters(req.Filters)
	if err != nil {
		return nil, "", err
	}
	offset, limit := int(deref(req.Offset)), int(deref(req.Limit))
	if offset < 0 || limit < 0 || limit > cloud.MaxDescribeLimit {
		return nil, "", apiErr(cloud.CodeInvalidParameterVal, "Offset %d, Limit %d: Offset must be >= 0 and Limit within 1..%d",
			offset, limit, cloud.MaxDescribeLimit)
	}

	var page []cloud.LoadBalancer
	var total int
	if len(ids) > 0 && len(tags) > 0 {
		// The API ANDs IDs and filters; the fake selects by one or the
		// other. The named CLBs fit one call, which is then filtered and
		// paged here.
		if len(ids) > cloud.MaxDescribeLimit {
			return nil, "", apiErr(cloud.CodeInvalidParameterVal, "LoadBalancerIds: at most %d", cloud.MaxDescribeLimit)
		}
		all, _, err := c.ListLoadBalancers(ctx, cloud.LoadBalancerQuery{IDs: ids}, 0, cloud.MaxDescribeLimit)
		if err != nil {
			return nil, "", err
		}
		all = slices.DeleteFunc(all, func(lb cloud.LoadBalancer) bool { return !hasTags(lb, tags) })
		if limit == 0 {
			limit = defaultDescribeLimit
		}
		total = len(all)
		// Not offset+limit, which overflows for an offset near MaxInt.
		start := min(offset, total)
		page = all[start : start+min(limit, total-start)]
	} else {
		page, total, err = c.ListLoadBalancers(ctx, cloud.LoadBalancerQuery{IDs: ids, Tags: tags}, offset, limit)
		if err != nil {
			return nil, "", err
		}
	}

	resp := withBody(clb.NewDescribeLoadBalancersResponse())
	resp.Response.TotalCount = ptr(uint64(total))
	resp.Response.LoadBalancerSet = []*clb.LoadBalancer{}
	for _, lb := range page {
		resp.Response.LoadBalancerSet = append(resp.Response.LoadBalancerSet, sdkLoadBalancer(lb))
	}
	return resp, "", nil
}

// tagFilters reads the Filters of DescribeLoadBalancers; the emulator
// implements tag:<key> with one value, which is what selecting CLBs by
// ownership tags takes.
func tagFilters(filters []*clb.Filter) (map[string]string, error) {
	tags := map[string]string{}
	for _, f := range filters {
		if f == nil {
			continue
		}
		name := deref(f.Name)
		key, ok := strings.CutPrefix(name, "tag:")
		if !ok || key == "" {
			return nil, apiErr(cloud.CodeInvalidParameterVal, "filter %q: the emulator implements tag:<key> filters only", name)
		}
		values := strs(f.Values)
		if len(values) != 1 {
			return nil, apiErr(cloud.CodeInvalidParameterVal, "filter %q: the emulator implements exactly one value per tag filter", name)
		}
		if prev, dup := tags[key]; dup && prev != values[0] {
			return nil, apiErr(cloud.CodeInvalidParameterVal, "filter %q given twice with different values", name)
		}
		tags[key] = values[0]
	}
	return tags, nil
}

func hasTags(lb cloud.LoadBalancer, tags map[string]string) bool {
	for k, v := range tags {
		if got, ok := lb.Tags[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// sdkLoadBalancer describes a CLB as the API does: Status 0 while its
// creation runs (it has no VIP yet), 1 once ready; internal iff it has a
// subnet; NetworkAttributes with the bandwidth, when it has one.
func sdkLoadBalancer(lb cloud.LoadBalancer) *clb.LoadBalancer {
	out := &clb.LoadBalancer{
		LoadBalancerId:   ptr(lb.ID),
		LoadBalancerName: ptr(lb.Name),
		LoadBalancerType: ptr("OPEN"),
		Forward:          ptr(uint64(1)),
		LoadBalancerVips: strPtrs(slices.Clone(lb.VIPs)),
		Status:           ptr(uint64(0)),
		AddressIPVersion: ptr("ipv4"),
		Tags:             []*clb.TagInfo{},
	}
	if len(lb.VIPs) > 0 {
		out.Status = ptr(uint64(1))
	}
	if lb.SubnetID != "" {
		out.LoadBalancerType = ptr("INTERNAL")
		out.SubnetId = ptr(lb.SubnetID)
	}
	if lb.InternetMaxBandwidthOut != 0 {
		out.NetworkAttributes = &clb.InternetAccessible{InternetMaxBandwidthOut: ptr(lb.InternetMaxBandwidthOut)}
	}
	for _, k := range slices.Sorted(maps.Keys(lb.Tags)) {
		out.Tags = append(out.Tags, &clb.TagInfo{TagKey: ptr(k), TagValue: ptr(lb.Tags[k])})
	}
	return out
}

func createLoadBalancer(ctx context.Context, _ *Server, c *fake.Cloud, req *clb.CreateLoadBalancerRequest) (*clb.CreateLoadBalancerResponse, string, error) {
	typ, err := required(req.LoadBalancerType, "LoadBalancerType")
	if err != nil {
		return nil, "", err
	}
	subnet := deref(req.SubnetId)
	switch typ {
	case "OPEN":
		if subnet != "" {
			return nil, "", apiErr(cloud.CodeInvalidParameterVal, "SubnetId: the emulator gives a subnet to INTERNAL CLBs only")
		}
	case "INTERNAL":
		if subnet == "" {
			return nil, "", missing("SubnetId")
		}
	default:
		return nil, "", apiErr(cloud.CodeInvalidParameterVal, "LoadBalancerType %q: must be OPEN or INTERNAL", typ)
	}
	if n := req.Number; n != nil && *n != 1 {
		return nil, "", apiErr(cloud.CodeInvalidParameterVal, "Number %d: the emulator creates one CLB per call", *n)
	}
	var tags map[string]string
	for i, t := range req.Tags {
		if t == nil || deref(t.TagKey) == "" {
			return nil, "", missing(fmt.Sprintf("Tags.%d.TagKey", i))
		}
		if tags == nil {
			tags = map[string]string{}
		}
		tags[*t.TagKey] = deref(t.TagValue)
	}
	token := deref(req.ClientToken)
	if len(token) > 64 {
		return nil, "", apiErr(cloud.CodeInvalidParameterVal, "ClientToken: at most 64 characters")
	}
	extensive, err := extensiveParameters(req)
	if err != nil {
		return nil, "", err
	}
	lbID, taskID, err := c.StartCreateLoadBalancer(ctx, cloud.LoadBalancerSpec{
		Name: deref(req.LoadBalancerName), SubnetID: subnet, Tags: tags, ClientToken: token,
		ExtensiveParameters: extensive,
	})
	if err != nil {
		return nil, "", err
	}
	resp := withBody(clb.NewCreateLoadBalancerResponse())
	resp.Response.LoadBalancerIds = []*string{ptr(lbID)}
	return resp, taskID, nil
}

// extensiveParameters are the parameters of a CreateLoadBalancer request
// beyond those of a cloud.LoadBalancerSpec, in their JSON shapes: what the
// adapter laid over its request from LoadBalancerSpec.ExtensiveParameters.
// The fake keeps or checks them as the API would.
func extensiveParameters(req *clb.CreateLoadBalancerRequest) (map[string]any, error) {
	var params map[string]any
	if err := json.Unmarshal([]byte(req.ToJsonString()), &params); err != nil {
		return nil, fmt.Errorf("re-encoding CreateLoadBalancer: %w", err)
	}
	maps.DeleteFunc(params, func(name string, _ any) bool { return cloud.IsReservedCreateParameter(name) })
	if len(params) == 0 {
		return nil, nil
	}
	return params, nil
}

// modifyLoadBalancerAttributes implements the bandwidth of
// InternetChargeInfo; a change of billing is not modelled, so it is
// refused rather than ignored.
func modifyLoadBalancerAttributes(ctx context.Context, _ *Server, c *fake.Cloud, req *clb.ModifyLoadBalancerAttributesRequest) (*clb.ModifyLoadBalancerAttributesResponse, string, error) {
	lbID, err := required(req.LoadBalancerId, "LoadBalancerId")
	if err != nil {
		return nil, "", err
	}
	var attrs cloud.LoadBalancerAttributes
	if info := req.InternetChargeInfo; info != nil {
		if info.InternetChargeType != nil || info.BandwidthpkgSubType != nil {
			return nil, "", apiErr(cloud.CodeInvalidParameter,
				"the emulator implements InternetChargeInfo.InternetMaxBandwidthOut only, not a change of billing")
		}
		if info.InternetMaxBandwidthOut == nil {
			return nil, "", missing("InternetChargeInfo.InternetMaxBandwidthOut")
		}
		attrs.InternetMaxBandwidthOut = info.InternetMaxBandwidthOut
	}
	taskID, err := c.StartModifyLoadBalancerAttributes(ctx, lbID, attrs)
	if err != nil {
		return nil, "", err
	}
	return withBody(clb.NewModifyLoadBalancerAttributesResponse()), taskID, nil
}

func deleteLoadBalancer(ctx context.Context, _ *Server, c *fake.Cloud, req *clb.DeleteLoadBalancerRequest) (*clb.DeleteLoadBalancerResponse, string, error) {
	ids := strs(req.LoadBalancerIds)
	switch {
	case len(ids) == 0:
		return nil, "", missing("LoadBalancerIds")
	case len(ids) > 1:
		// One task per CLB in the fake: one RequestId could not stand for
		// several.
		return nil, "", apiErr(cloud.CodeInvalidParameterVal, "LoadBalancerIds: the emulator deletes one CLB per call")
	}
	taskID, err := c.StartDeleteLoadBalancer(ctx, ids[0])
	if err != nil {
		return nil, "", err
	}
	return withBody(clb.NewDeleteLoadBalancerResponse()), taskID, nil
}

// --- listeners ---

func describeListeners(ctx context.Context, _ *Server, c *fake.Cloud, req *clb.DescribeListenersRequest) (*clb.DescribeListenersResponse, string, error) {
	lbID, err := required(req.LoadBalancerId, "LoadBalancerId")
	if err != nil {
		return nil, "", err
	}
	listeners, err := c.DescribeListeners(ctx, lbID)
	if err != nil {
		return nil, "", err
	}
	match := listenerFilter(req.ListenerIds, req.Protocol, req.Port)
	resp := withBody(clb.NewDescribeListenersResponse())
	resp.Response.Listeners = []*clb.Listener{}
	for _, l := range listeners {
		if match(l) {
			resp.Response.Listeners = append(resp.Response.Listeners, sdkListener(l))
		}
	}
	resp.Response.TotalCount = ptr(uint64(len(resp.Response.Listeners)))
	return resp, "", nil
}

// listenerFilter selects listeners by the optional ListenerIds, Protocol
// and Port of DescribeListeners and DescribeTargets.
func listenerFilter(ids []*string, protocol *string, port *int64) func(cloud.Listener) bool {
	want := strs(ids)
	return func(l cloud.Listener) bool {
		return (len(want) == 0 || slices.Contains(want, l.ID)) &&
			(protocol == nil || *protocol == string(l.Protocol)) &&
			(port == nil || *port == int64(l.Port))
	}
}

func sdkListener(l cloud.Listener) *clb.Listener {
	return &clb.Listener{
		ListenerId:        ptr(l.ID),
		ListenerName:      ptr(l.Name),
		Protocol:          ptr(string(l.Protocol)),
		Port:              ptr(int64(l.Port)),
		HealthCheck:       sdkHealthCheck(l.HealthCheck),
		Scheduler:         ptr(l.Scheduler),
		SessionExpireTime: ptr(l.SessionExpireSeconds),
		TargetType:        ptr("NODE"),
		SessionType:       ptr("NORMAL"),
	}
}

func sdkHealthCheck(hc *cloud.HealthCheck) *clb.HealthCheck {
	if hc == nil {
		return nil
	}
	out := &clb.HealthCheck{
		HealthSwitch: ptr(int64(0)),
		TimeOut:      ptr(hc.TimeoutSeconds),
		IntervalTime: ptr(hc.IntervalSeconds),
		HealthNum:    ptr(hc.HealthyThreshold),
		UnHealthNum:  ptr(hc.UnhealthyThreshold),
	}
	if hc.Enabled {
		out.HealthSwitch = ptr(int64(1))
	}
	if hc.HTTPCode != 0 {
		out.HttpCode = ptr(hc.HTTPCode)
	}
	optional := []struct {
		dst **string
		v   string
	}{
		{&out.HttpCheckPath, hc.HTTPPath}, {&out.HttpCheckDomain, hc.HTTPDomain},
		{&out.HttpCheckMethod, hc.HTTPMethod}, {&out.CheckType, hc.CheckType},
	}
	for _, o := range optional {
		if o.v != "" {
			*o.dst = ptr(o.v)
		}
	}
	return out
}

// healthCheckFrom lays the fields a request sets over base: the API
// changes only what a call names. Ranges are the fake's to check.
func healthCheckFrom(base cloud.HealthCheck, in *clb.HealthCheck) (cloud.HealthCheck, error) {
	hc := base
	switch deref(in.HealthSwitch) {
	case 0:
		if in.HealthSwitch != nil {
			hc.Enabled = false
		}
	case 1:
		hc.Enabled = true
	default:
		return hc, apiErr(cloud.CodeInvalidParameterVal, "HealthCheck.HealthSwitch %d: must be 0 or 1", *in.HealthSwitch)
	}
	for name, set := range map[string]bool{
		"CheckPort": in.CheckPort != nil, "ContextType": in.ContextType != nil,
		"SendContext": in.SendContext != nil, "RecvContext": in.RecvContext != nil,
	} {
		if set {
			return hc, apiErr(cloud.CodeInvalidParameter, "the emulator does not implement the parameter `HealthCheck.%s`", name)
		}
	}
	// HttpVersion is accepted and ignored: the real API wants it with an
	// HTTP check on a TCP listener, and the prober speaks HTTP/1.1 anyway.
	ints := []struct {
		dst *int64
		v   *int64
	}{
		{&hc.TimeoutSeconds, in.TimeOut}, {&hc.IntervalSeconds, in.IntervalTime},
		{&hc.HealthyThreshold, in.HealthNum}, {&hc.UnhealthyThreshold, in.UnHealthNum}, {&hc.HTTPCode, in.HttpCode},
	}
	for _, f := range ints {
		if f.v != nil {
			*f.dst = *f.v
		}
	}
	texts := []struct {
		dst *string
		v   *string
	}{
		{&hc.HTTPPath, in.HttpCheckPath}, {&hc.HTTPDomain, in.HttpCheckDomain},
		{&hc.HTTPMethod, in.HttpCheckMethod}, {&hc.CheckType, in.CheckType},
	}
	for _, f := range texts {
		if f.v != nil {
			*f.dst = *f.v
		}
	}
	return hc, nil
}

// int32Param converts an integer parameter the model keeps as int32,
// refusing what would wrap around; the fake checks the real range.
func int32Param(v int64, name string) (int32, error) {
	if v < math.MinInt32 || v > math.MaxInt32 {
		return 0, apiErr(cloud.CodeInvalidParameterVal, "%s %d is out of range", name, v)
	}
	return int32(v), nil
}

func createListener(ctx context.Context, _ *Server, c *fake.Cloud, req *clb.CreateListenerRequest) (*clb.CreateListenerResponse, string, error) {
	lbID, err := required(req.LoadBalancerId, "LoadBalancerId")
	if err != nil {
		return nil, "", err
	}
	protocol, err := required(req.Protocol, "Protocol")
	if err != nil {
		return nil, "", err
	}
	switch {
	case len(req.Ports) == 0 || req.Ports[0] == nil:
		return nil, "", missing("Ports")
	case len(req.Ports) > 1:
		// Each listener is a task of its own in the fake, and a CLB runs
		// one task at a time.
		return nil, "", apiErr(cloud.CodeInvalidParameterVal, "Ports: the emulator creates one listener per call")
	case len(req.ListenerNames) > len(req.Ports):
		return nil, "", apiErr(cloud.CodeInvalidParameterVal, "ListenerNames: one name per port")
	case req.TargetType != nil && *req.TargetType != "NODE":
		return nil, "", apiErr(cloud.CodeInvalidParameterVal, "TargetType %q: the emulator implements NODE only", *req.TargetType)
	case req.SessionType != nil && *req.SessionType != "NORMAL":
		return nil, "", apiErr(cloud.CodeInvalidParameterVal, "SessionType %q: the emulator implements NORMAL only", *req.SessionType)
	}
	port, err := int32Param(*req.Ports[0], "Ports.0")
	if err != nil {
		return nil, "", err
	}
	spec := cloud.ListenerSpec{
		Protocol:             cloud.Protocol(protocol),
		Port:                 port,
		SessionExpireSeconds: deref(req.SessionExpireTime),
		Scheduler:            deref(req.Scheduler),
	}
	if names := strs(req.ListenerNames); len(names) > 0 {
		spec.Name = names[0]
	}
	if req.HealthCheck != nil {
		hc, err := healthCheckFrom(cloud.HealthCheck{Enabled: true}, req.HealthCheck)
		if err != nil {
			return nil, "", err
		}
		spec.HealthCheck = &hc
	}
	listenerID, taskID, err := c.StartCreateListener(ctx, lbID, spec)
	if err != nil {
		return nil, "", err
	}
	resp := withBody(clb.NewCreateListenerResponse())
	resp.Response.ListenerIds = []*string{ptr(listenerID)}
	return resp, taskID, nil
}

func modifyListener(ctx context.Context, _ *Server, c *fake.Cloud, req *clb.ModifyListenerRequest) (*clb.ModifyListenerResponse, string, error) {
	lbID, err := required(req.LoadBalancerId, "LoadBalancerId")
	if err != nil {
		return nil, "", err
	}
	listenerID, err := required(req.ListenerId, "ListenerId")
	if err != nil {
		return nil, "", err
	}
	// The API changes what the call names and keeps the rest; the fake's
	// ModifyListener takes the whole session setting and health check, so
	// the current ones fill the gaps. Reading them from a snapshot logs no
	// call. An unknown listener is left for the fake to report.
	spec := cloud.ListenerSpec{Scheduler: deref(req.Scheduler), SessionExpireSeconds: deref(req.SessionExpireTime)}
	if cur, ok := findListener(c.Snapshot(), lbID, listenerID); ok {
		if req.ListenerName != nil && *req.ListenerName != cur.Name {
			return nil, "", apiErr(cloud.CodeInvalidParameter, "ListenerName: the emulator does not rename listeners")
		}
		if req.SessionExpireTime == nil {
			spec.SessionExpireSeconds = cur.SessionExpireSeconds
		}
		if req.HealthCheck != nil {
			base := cloud.HealthCheck{Enabled: true}
			if cur.HealthCheck != nil {
				base = *cur.HealthCheck
			}
			hc, err := healthCheckFrom(base, req.HealthCheck)
			if err != nil {
				return nil, "", err
			}
			spec.HealthCheck = &hc
		}
	}
	taskID, err := c.StartModifyListener(ctx, lbID, listenerID, spec)
	if err != nil {
		return nil, "", err
	}
	return withBody(clb.NewModifyListenerResponse()), taskID, nil
}

func findLoadBalancer(s fake.State, lbID string) (fake.LoadBalancerState, bool) {
	for _, lb := range s.LoadBalancers {
		if lb.ID == lbID {
			return lb, true
		}
	}
	return fake.LoadBalancerState{}, false
}

func findListener(s fake.State, lbID, listenerID string) (fake.ListenerState, bool) {
	lb, _ := findLoadBalancer(s, lbID)
	for _, l := range lb.Listeners {
		if l.ID == listenerID {
			return l, true
		}
	}
	return fake.ListenerState{}, false
}

func deleteListener(ctx context.Context, _ *Server, c *fake.Cloud, req *clb.DeleteListenerRequest) (*clb.DeleteListenerResponse, string, error) {
	lbID, err := required(req.LoadBalancerId, "LoadBalancerId")
	if err != nil {
		return nil, "", err
	}
	listenerID, err := required(req.ListenerId, "ListenerId")
	if err != nil {
		return nil, "", err
	}
	taskID, err := c.StartDeleteListener(ctx, lbID, listenerID)
	if err != nil {
		return nil, "", err
	}
	return withBody(clb.NewDeleteListenerResponse()), taskID, nil
}

// --- targets ---

// describeTargets lists each listener's targets. A target registered by
// EniIp comes back as {Type: "ENI", Port, Weight, PrivateIpAddresses: [ip]}
// and one registered by InstanceId as {Type: "CVM", InstanceId, Port,
// Weight}, with PrivateIpAddresses: [the instance's IP] when the account
// knows it, as the real API reports a CVM's private IP. So the Type alone
// tells which field identifies the target.
func describeTargets(ctx context.Context, _ *Server, c *fake.Cloud, req *clb.DescribeTargetsRequest) (*clb.DescribeTargetsResponse, string, error) {
	lbID, err := required(req.LoadBalancerId, "LoadBalancerId")
	if err != nil {
		return nil, "", err
	}
	backends, err := c.DescribeBackends(ctx, lbID)
	if err != nil {
		return nil, "", err
	}
	// DescribeBackends names listeners by ID only; their protocol, port and
	// order come from the model directly. A listener created or deleted
	// between the two reads is left out, as if the call came a moment
	// earlier or later.
	snap := c.Snapshot()
	lb, _ := findLoadBalancer(snap, lbID)
	match := listenerFilter(req.ListenerIds, req.Protocol, req.Port)
	resp := withBody(clb.NewDescribeTargetsResponse())
	resp.Response.Listeners = []*clb.ListenerBackend{}
	for _, l := range lb.Listeners {
		bs, ok := backends[l.ID]
		if !ok || !match(l.Listener) {
			continue
		}
		out := &clb.ListenerBackend{
			ListenerId: ptr(l.ID), Protocol: ptr(string(l.Protocol)), Port: ptr(int64(l.Port)),
			Targets: []*clb.Backend{},
		}
		for _, b := range bs {
			out.Targets = append(out.Targets, sdkTarget(b, snap.Instances))
		}
		resp.Response.Listeners = append(resp.Response.Listeners, out)
	}
	return resp, "", nil
}

// sdkTarget is a target as DescribeTargets reports it; instances maps
// instance IDs to their addresses.
func sdkTarget(b cloud.Backend, instances map[string]string) *clb.Backend {
	out := &clb.Backend{Port: ptr(int64(b.Port)), Weight: ptr(int64(b.Weight))}
	if b.InstanceID != "" {
		out.Type, out.InstanceId = ptr(targetTypeCVM), ptr(b.InstanceID)
		if ip, ok := instances[b.InstanceID]; ok {
			out.PrivateIpAddresses = []*string{ptr(ip)}
		}
	} else {
		out.Type, out.PrivateIpAddresses = ptr(targetTypeENI), []*string{ptr(b.IP)}
	}
	return out
}

// batchTargets reads the Targets of BatchRegisterTargets and
// BatchDeregisterTargets; a target registered without a weight gets 10.
func batchTargets(targets []*clb.BatchTarget) ([]cloud.ListenerBackend, error) {
	if len(targets) == 0 {
		return nil, missing("Targets")
	}
	out := make([]cloud.ListenerBackend, 0, len(targets))
	for i, t := range targets {
		if t == nil {
			return nil, missing(fmt.Sprintf("Targets.%d", i))
		}
		listenerID, err := required(t.ListenerId, fmt.Sprintf("Targets.%d.ListenerId", i))
		if err != nil {
			return nil, err
		}
		if t.LocationId != nil {
			return nil, apiErr(cloud.CodeInvalidParameter, "Targets.%d.LocationId: the emulator implements layer-4 listeners only", i)
		}
		if t.Port == nil {
			return nil, missing(fmt.Sprintf("Targets.%d.Port", i))
		}
		port, err := int32Param(*t.Port, fmt.Sprintf("Targets.%d.Port", i))
		if err != nil {
			return nil, err
		}
		weight := int32(defaultWeight)
		if t.Weight != nil {
			if weight, err = int32Param(*t.Weight, fmt.Sprintf("Targets.%d.Weight", i)); err != nil {
				return nil, err
			}
		}
		out = append(out, cloud.ListenerBackend{ListenerID: listenerID, Backend: cloud.Backend{
			IP: deref(t.EniIp), InstanceID: deref(t.InstanceId), Port: port, Weight: weight,
		}})
	}
	return out, nil
}

type batchStart func(ctx context.Context, lbID string, backends []cloud.ListenerBackend) (string, []string, error)

// runBatch validates and starts a batch; it returns the task ID and the
// listeners that failed at once (FailListenerIdSet).
func runBatch(ctx context.Context, s *Server, action string, lbIDParam *string, targets []*clb.BatchTarget, start batchStart) (string, []*string, error) {
	lbID, err := required(lbIDParam, "LoadBalancerId")
	if err != nil {
		return "", nil, err
	}
	backends, err := batchTargets(targets)
	if err != nil {
		return "", nil, err
	}
	rec := s.recordBatch(ctx, action, lbID, backends)
	taskID, failed, err := start(ctx, lbID, backends)
	s.finishBatch(rec, taskID, failed, err)
	if err != nil {
		return "", nil, err
	}
	if len(failed) == 0 {
		return taskID, nil, nil
	}
	return taskID, strPtrs(failed), nil
}

func batchRegisterTargets(ctx context.Context, s *Server, c *fake.Cloud, req *clb.BatchRegisterTargetsRequest) (*clb.BatchRegisterTargetsResponse, string, error) {
	taskID, failed, err := runBatch(ctx, s, "BatchRegisterTargets", req.LoadBalancerId, req.Targets, c.StartRegisterBackends)
	if err != nil {
		return nil, "", err
	}
	resp := withBody(clb.NewBatchRegisterTargetsResponse())
	resp.Response.FailListenerIdSet = failed
	return resp, taskID, nil
}

func batchDeregisterTargets(ctx context.Context, s *Server, c *fake.Cloud, req *clb.BatchDeregisterTargetsRequest) (*clb.BatchDeregisterTargetsResponse, string, error) {
	taskID, failed, err := runBatch(ctx, s, "BatchDeregisterTargets", req.LoadBalancerId, req.Targets, c.StartDeregisterBackends)
	if err != nil {
		return nil, "", err
	}
	resp := withBody(clb.NewBatchDeregisterTargetsResponse())
	resp.Response.FailListenerIdSet = failed
	return resp, taskID, nil
}

// batchModifyTargetWeight takes ModifyList [{ListenerId, Targets [{EniIp |
// InstanceId, Port, Weight}], Weight}]: a target's own Weight wins over its
// rule's. The response has no FailListenerIdSet, so a listener the fake
// fails (partial failure injection) fails the whole call with
// FailedOperation, while the task still changes the other listeners:
// setting a weight twice is harmless, so the caller just retries.
func batchModifyTargetWeight(ctx context.Context, s *Server, c *fake.Cloud, req *clb.BatchModifyTargetWeightRequest) (*clb.BatchModifyTargetWeightResponse, string, error) {
	lbID, err := required(req.LoadBalancerId, "LoadBalancerId")
	if err != nil {
		return nil, "", err
	}
	if len(req.ModifyList) == 0 {
		return nil, "", missing("ModifyList")
	}
	var backends []cloud.ListenerBackend
	for i, rule := range req.ModifyList {
		if rule == nil {
			return nil, "", missing(fmt.Sprintf("ModifyList.%d", i))
		}
		listenerID, err := required(rule.ListenerId, fmt.Sprintf("ModifyList.%d.ListenerId", i))
		if err != nil {
			return nil, "", err
		}
		if rule.LocationId != nil || rule.Domain != nil || rule.Url != nil {
			return nil, "", apiErr(cloud.CodeInvalidParameter, "ModifyList.%d: the emulator implements layer-4 listeners only", i)
		}
		if len(rule.Targets) == 0 {
			return nil, "", missing(fmt.Sprintf("ModifyList.%d.Targets", i))
		}
		for j, t := range rule.Targets {
			name := fmt.Sprintf("ModifyList.%d.Targets.%d", i, j)
			if t == nil || t.Port == nil {
				return nil, "", missing(name + ".Port")
			}
			w := t.Weight
			if w == nil {
				w = rule.Weight
			}
			if w == nil {
				return nil, "", missing(name + ".Weight")
			}
			port, err := int32Param(*t.Port, name+".Port")
			if err != nil {
				return nil, "", err
			}
			weight, err := int32Param(*w, name+".Weight")
			if err != nil {
				return nil, "", err
			}
			backends = append(backends, cloud.ListenerBackend{ListenerID: listenerID, Backend: cloud.Backend{
				IP: deref(t.EniIp), InstanceID: deref(t.InstanceId), Port: port, Weight: weight,
			}})
		}
	}
	rec := s.recordBatch(ctx, "BatchModifyTargetWeight", lbID, backends)
	taskID, failed, err := c.StartModifyBackendWeights(ctx, lbID, backends)
	s.finishBatch(rec, taskID, failed, err)
	if err != nil {
		return nil, "", err
	}
	if len(failed) > 0 {
		return nil, "", cloud.NewError("", cloud.CodeFailedOperation,
			fmt.Sprintf("modifying weights failed on listeners %s", strings.Join(failed, ",")), taskID)
	}
	return withBody(clb.NewBatchModifyTargetWeightResponse()), taskID, nil
}

// describeTargetHealth reports, per CLB named, each listener with targets
// and one rule (layer 4 has no rules of its own; LocationId is absent)
// holding {IP, Port, HealthStatus, HealthStatusDetial, TargetId}. IP is the
// EniIp; TargetId is set for targets registered by InstanceId, which are
// reported without an IP even when their instance's address is known, as
// fake.Cloud.DescribeBackendHealth reports them.
func describeTargetHealth(ctx context.Context, _ *Server, c *fake.Cloud, req *clb.DescribeTargetHealthRequest) (*clb.DescribeTargetHealthResponse, string, error) {
	ids := strs(req.LoadBalancerIds)
	health, err := c.DescribeBackendHealth(ctx, ids)
	if err != nil {
		return nil, "", err
	}
	byListener := map[string][]cloud.BackendHealth{}
	var order []string
	for _, h := range health {
		if _, seen := byListener[h.ListenerID]; !seen {
			order = append(order, h.ListenerID)
		}
		byListener[h.ListenerID] = append(byListener[h.ListenerID], h)
	}
	snap := c.Snapshot()

	resp := withBody(clb.NewDescribeTargetHealthResponse())
	resp.Response.LoadBalancers = []*clb.LoadBalancerHealth{}
	done := map[string]bool{}
	for _, id := range ids {
		if done[id] {
			continue
		}
		done[id] = true
		lbState, _ := findLoadBalancer(snap, id)
		lh := &clb.LoadBalancerHealth{LoadBalancerId: ptr(id), LoadBalancerName: ptr(lbState.Name), Listeners: []*clb.ListenerHealth{}}
		for _, listenerID := range order {
			entries := byListener[listenerID]
			if entries[0].LoadBalancerID != id {
				continue
			}
			l, _ := findListener(snap, id, listenerID)
			rule := &clb.RuleHealth{Targets: []*clb.TargetHealth{}}
			// Both lists are in order of registration; when they still
			// agree, the model tells the InstanceId of each target.
			sameOrder := len(l.Backends) == len(entries)
			for i, e := range entries {
				sameOrder = sameOrder && l.Backends[i].IP == e.IP && l.Backends[i].Port == e.Port
			}
			for i, e := range entries {
				th := &clb.TargetHealth{Port: ptr(int64(e.Port)), HealthStatus: ptr(e.Healthy), HealthStatusDetial: ptr(e.Detail)}
				if e.IP != "" {
					th.IP = ptr(e.IP)
				}
				if sameOrder && l.Backends[i].InstanceID != "" {
					th.TargetId = ptr(l.Backends[i].InstanceID)
				}
				rule.Targets = append(rule.Targets, th)
			}
			lh.Listeners = append(lh.Listeners, &clb.ListenerHealth{
				ListenerId: ptr(listenerID), ListenerName: ptr(l.Name), Protocol: ptr(string(l.Protocol)),
				Port: ptr(int64(l.Port)), Rules: []*clb.RuleHealth{rule},
			})
		}
		resp.Response.LoadBalancers = append(resp.Response.LoadBalancers, lh)
	}
	return resp, "", nil
}

// --- tasks and quotas ---

func describeTaskStatus(ctx context.Context, s *Server, c *fake.Cloud, req *clb.DescribeTaskStatusRequest) (*clb.DescribeTaskStatusResponse, string, error) {
	taskID, err := required(req.TaskId, "TaskId")
	if err != nil {
		return nil, "", err
	}
	status, err := c.TaskStatus(ctx, taskID)
	if err != nil {
		return nil, "", err
	}
	if status == fake.TaskFailed {
		s.wire.taskFailed(taskID)
	}
	resp := withBody(clb.NewDescribeTaskStatusResponse())
	resp.Response.Status = ptr(int64(status))
	return resp, "", nil
}

// Quotas the fake does not model; the values are the real defaults.
const (
	defaultCLBQuota          = 500
	defaultListenerRuleQuota = 50
)

func describeQuota(ctx context.Context, _ *Server, c *fake.Cloud, _ *clb.DescribeQuotaRequest) (*clb.DescribeQuotaResponse, string, error) {
	q, err := c.DescribeQuota(ctx)
	if err != nil {
		return nil, "", err
	}
	quota := func(id string, limit int) *clb.Quota {
		return &clb.Quota{QuotaId: ptr(id), QuotaLimit: ptr(int64(limit))}
	}
	resp := withBody(clb.NewDescribeQuotaResponse())
	resp.Response.QuotaSet = []*clb.Quota{
		quota("TOTAL_OPEN_CLB_QUOTA", defaultCLBQuota),
		quota("TOTAL_INTERNAL_CLB_QUOTA", defaultCLBQuota),
		quota("TOTAL_LISTENER_QUOTA", q.ListenersPerLoadBalancer),
		quota("TOTAL_LISTENER_RULE_QUOTA", defaultListenerRuleQuota),
		quota("TOTAL_TARGET_BIND_QUOTA", q.BackendsPerListener),
	}
	return resp, "", nil
}
