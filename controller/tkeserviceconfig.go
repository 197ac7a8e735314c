package controller

import (
	"context"
	"fmt"

	v1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/tools/cache"

	"clb-direct/cloud"
	"clb-direct/tkeconfig"
)

// serviceConfigIndex maps "namespace/name" of a TkeServiceConfig to the
// Services that reference it.
const serviceConfigIndex = "tkeServiceConfig"

func serviceConfigIndexFunc(obj any) ([]string, error) {
	svc, ok := obj.(*v1.Service)
	if !ok {
		return nil, nil
	}
	if name := svc.Annotations[AnnotationTkeServiceConfig]; name != "" {
		return []string{svc.Namespace + "/" + name}, nil
	}
	return nil, nil
}

// enqueueConfigServices queues exactly the Services that reference a
// changed TkeServiceConfig.
func (c *Controller) enqueueConfigServices(obj any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		utilruntime.HandleError(fmt.Errorf("computing the key of %T: %w", obj, err))
		return
	}
	svcs, err := c.serviceIndexer.ByIndex(serviceConfigIndex, key)
	if err != nil {
		utilruntime.HandleError(fmt.Errorf("looking up the Services of TkeServiceConfig %s: %w", key, err))
		return
	}
	for _, svc := range svcs {
		c.enqueueService(svc)
	}
}

// serviceConfig returns the TkeServiceConfig the Service names, or nil when
// it names none. A config that is missing or invalid is an error for the
// user: the CLB is left as it is until it is fixed (its change queues the
// Service again).
func (c *Controller) serviceConfig(svc *v1.Service, cfg ServiceConfig) (*tkeconfig.TkeServiceConfig, error) {
	if cfg.TkeServiceConfig == "" {
		return nil, nil
	}
	if c.opts.ServiceConfigs == nil {
		return nil, fmt.Errorf("annotation %s names TkeServiceConfig %q, but the tkeserviceconfigs.cloud.tencent.com CRD is not installed (deploy/crd/)",
			AnnotationTkeServiceConfig, cfg.TkeServiceConfig)
	}
	obj, err := c.opts.ServiceConfigs.Lister().ByNamespace(svc.Namespace).Get(cfg.TkeServiceConfig)
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("TkeServiceConfig %s/%s named by annotation %s does not exist", svc.Namespace, cfg.TkeServiceConfig, AnnotationTkeServiceConfig)
	}
	if err != nil {
		return nil, fmt.Errorf("reading TkeServiceConfig %s/%s: %w", svc.Namespace, cfg.TkeServiceConfig, err)
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return nil, fmt.Errorf("TkeServiceConfig %s/%s: unexpected %T in the cache", svc.Namespace, cfg.TkeServiceConfig, obj)
	}
	tsc, err := tkeconfig.FromUnstructured(u.DeepCopy())
	if err != nil {
		return nil, fmt.Errorf("TkeServiceConfig %s/%s: %w", svc.Namespace, cfg.TkeServiceConfig, err)
	}
	return tsc, nil
}

// withSettings attaches the config's listener settings to the desired
// listeners of the same protocol and port.
func withSettings(desired DesiredState, tsc *tkeconfig.TkeServiceConfig) DesiredState {
	if tsc == nil {
		return desired
	}
	desired.Bandwidth = tsc.LoadBalancer.InternetMaxBandwidthOut
	for i := range desired.Listeners {
		l := &desired.Listeners[i]
		l.Settings = tsc.Listener(string(l.Protocol), l.Port)
	}
	return desired
}

// syncAutoConfig keeps <service>-auto-service-config showing the CLB's
// listener settings. It is owned by the Service, so the garbage collector
// deletes it with the Service.
func (c *Controller) syncAutoConfig(ctx context.Context, svc *v1.Service, observed *ObservedState) error {
	if c.opts.Dynamic == nil || c.opts.ServiceConfigs == nil {
		return fmt.Errorf("annotation %s needs the tkeserviceconfigs.cloud.tencent.com CRD (deploy/crd/)", AnnotationTkeServiceConfigAuto)
	}
	var own []cloud.Listener
	for _, l := range observed.Listeners {
		if ownsListener(svc.UID, l) {
			own = append(own, l)
		}
	}
	want := tkeconfig.AutoConfig(svc.Namespace, svc.Name, svc.UID, own, observed.LoadBalancer.InternetMaxBandwidthOut)
	client := c.opts.Dynamic.Resource(tkeconfig.GVR).Namespace(svc.Namespace)
	current, err := c.opts.ServiceConfigs.Lister().ByNamespace(svc.Namespace).Get(want.GetName())
	if apierrors.IsNotFound(err) {
		if _, err := client.Create(ctx, want, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating TkeServiceConfig %s/%s: %w", svc.Namespace, want.GetName(), err)
		}
		return nil
	}
	if err != nil {
		return err
	}
	u := current.(*unstructured.Unstructured)
	if apiequality.Semantic.DeepEqual(u.Object["spec"], want.Object["spec"]) {
		return nil
	}
	updated := u.DeepCopy()
	updated.Object["spec"] = want.Object["spec"]
	if _, err := client.Update(ctx, updated, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("updating TkeServiceConfig %s/%s: %w", svc.Namespace, want.GetName(), err)
	}
	return nil
}
