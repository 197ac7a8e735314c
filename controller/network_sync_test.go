package controller

import (
	"slices"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func (f *fixture) setGlobalRouteDirectAccess(value string) {
	f.t.Helper()
	cm, err := f.client.CoreV1().ConfigMaps(ServiceControllerConfigNamespace).Get(f.ctx, ServiceControllerConfigName, metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	cm.Data[GlobalRouteDirectAccessKey] = value
	if _, err := f.client.CoreV1().ConfigMaps(ServiceControllerConfigNamespace).Update(f.ctx, cm, metav1.UpdateOptions{}); err != nil {
		f.t.Fatal(err)
	}
}

func eniPod(p *v1.Pod) {
	p.Spec.Containers[0].Resources.Requests = v1.ResourceList{ResourceENIIP: resource.MustParse("1")}
}

func TestGlobalRouterPodsNeedTheClusterOptIn(t *testing.T) {
	f := newFixture(t, nil, directService(), readyPod("a", "10.0.0.1"))
	f.mustSync()
	lbID := f.loadBalancerID()
	before := f.backends(lbID)

	f.setGlobalRouteDirectAccess("false")
	f.addPods(readyPod("b", "10.0.0.2"))
	f.mustSync()
	f.expectActions()
	evs := f.events()
	if !slices.ContainsFunc(evs, func(e string) bool {
		return strings.HasPrefix(e, "Warning NetworkModeNotSupported") && strings.Contains(e, GlobalRouteDirectAccessKey)
	}) {
		t.Errorf("no Warning explaining the GlobalRouter prerequisite among %q", evs)
	}
	if got := f.backends(lbID); !slices.Equal(got, before) {
		t.Errorf("the CLB changed without the opt-in: %q, want %q", got, before)
	}

	// Opting in applies what waited.
	f.setGlobalRouteDirectAccess("true")
	f.mustSync()
	if got := f.backends(lbID); len(got) != 4 {
		t.Errorf("after the opt-in: %q, want both Pods on both ports", got)
	}
}

func TestVPCCNIPodsNeedNoOptInAndMixedModesWarn(t *testing.T) {
	f := newFixture(t, nil, directService(), readyPod("a", "10.0.0.1", eniPod))
	f.setGlobalRouteDirectAccess("false")
	f.mustSync()
	if got := f.backends(f.loadBalancerID()); len(got) != 2 {
		t.Fatalf("VPC-CNI Pod not registered: %q", got)
	}
	f.events()
	f.setGlobalRouteDirectAccess("true")
	f.addPods(readyPod("b", "10.0.0.2"))
	f.mustSync()
	f.expectEvent("Warning NetworkModeNotSupported")
	if got := f.backends(f.loadBalancerID()); len(got) != 4 {
		t.Errorf("mixed modes warn but still register: %q", got)
	}
}

func TestOldClusterGetsAClearErrorPerService(t *testing.T) {
	f := newFixture(t, nil, directService(), readyPod("a", "10.0.0.1"))
	if reason := unsupportedReason("v1.34.2"); reason != "" {
		t.Fatalf("v1.34.2 is supported, got %q", reason)
	}
	f.ctrl.unsupported = unsupportedReason("v1.12.4-tke.3") // as New sets it
	f.mustSync()
	f.expectActions()
	evs := f.events()
	if !slices.ContainsFunc(evs, func(e string) bool {
		return strings.HasPrefix(e, "Warning DirectAccessUnsupported") && strings.Contains(e, "v1.12.4") && strings.Contains(e, "1.13")
	}) {
		t.Errorf("no clear Warning about the version among %q", evs)
	}
}
