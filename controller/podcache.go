package controller

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unique"
	"weak"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/informers"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// The Pod cache. A cluster's Pods outnumber everything else the controller
// watches by far (50,000 Pods behind 2,000 Services is ordinary), so their
// informer is built for memory:
//
//   - A LIST reads the Pods in pages of podListPageSize and trims each
//     page before reading the next. An informer's own first LIST asks for
//     resourceVersion 0, which the API server answers from its cache in
//     one piece, whatever the limit: the whole response and every whole
//     Pod decoded from it stay in memory until the last one is stored,
//     more than a gigabyte for 50,000 Pods, which the Go runtime then
//     returns to the system only slowly.
//   - The cache keeps each Pod as a cachedPod: what TrimForCache keeps,
//     with what the Pods of one template share (labels, annotations,
//     containers, readiness gates) held once for all of them, and the
//     strings they repeat (namespace, node, conditions) interned.
//   - Event handlers and the lister get *v1.Pod views made from it on
//     demand, equal to what TrimForCache makes of the Pod. Several views
//     share maps and slices with the cache and with each other: like any
//     object from an informer, a view must not be modified.

// podListPageSize is how many Pods one LIST page holds.
const podListPageSize = 500

// PodInformer returns the factory's Pod informer, built as described
// above: pass it to New and to readiness.New. Its GetStore and GetIndexer
// hold cachedPods, not Pods, and it must keep its own transform. It fails
// if the factory already made its ordinary Pod informer: there is one
// Pod informer per factory.
func PodInformer(factory informers.SharedInformerFactory) (coreinformers.PodInformer, error) {
	created := false
	informer := factory.InformerFor(&v1.Pod{}, func(client kubernetes.Interface, resync time.Duration) cache.SharedIndexInformer {
		created = true
		return cache.NewSharedIndexInformerWithOptions(pagedPodListWatch(client), &v1.Pod{}, cache.SharedIndexInformerOptions{
			ResyncPeriod: resync,
			Indexers:     cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc},
		})
	})
	if !created {
		return nil, errors.New("controller: the informer factory already has a Pod informer")
	}
	// InformerFor gave it the factory's transform; the cache needs its own.
	if err := informer.SetTransform(packForCache); err != nil {
		return nil, fmt.Errorf("controller: setting the Pod cache's transform: %w", err)
	}
	return podInformer{informer}, nil
}

// pagedPodListWatch lists Pods in pages, packing each page before the next
// is read, and watches them as usual (the transform packs what the watch
// brings). Every LIST is a consistent read, the freshest state: that
// satisfies whatever resource version an informer asks for ("any", or "not
// older than" the last it saw), and unlike "any" it is served in pages.
func pagedPodListWatch(client kubernetes.Interface) cache.ListerWatcher {
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, options metav1.ListOptions) (k8sruntime.Object, error) {
			options.ResourceVersion, options.ResourceVersionMatch, options.Continue = "", "", ""
			options.Limit = podListPageSize
			list := &cachedPodList{}
			for {
				page, err := client.CoreV1().Pods(metav1.NamespaceAll).List(ctx, options)
				if err != nil {
					return nil, err
				}
				for i := range page.Items {
					list.Items = append(list.Items, packPod(trimPod(&page.Items[i])))
				}
				list.ResourceVersion = page.ResourceVersion
				if page.Continue == "" {
					return list, nil
				}
				options.Continue = page.Continue
			}
		},
		WatchFuncWithContext: func(ctx context.Context, options metav1.ListOptions) (watch.Interface, error) {
			return client.CoreV1().Pods(metav1.NamespaceAll).Watch(ctx, options)
		},
	}
}

// packForCache is the Pod cache's transform: a Pod from a watch is
// trimmed and packed; what the paged LIST packed already, and tombstones,
// pass through.
func packForCache(obj any) (any, error) {
	if pod, ok := obj.(*v1.Pod); ok {
		return packPod(trimPod(pod)), nil
	}
	return obj, nil
}

// cachedPod is a Pod as the cache keeps it; pod() makes the *v1.Pod. The
// metadata it keeps is TrimForCache's, in fields of its own rather than an
// ObjectMeta, which would be twice the size (podMeta gives the cache
// access to it).
type cachedPod struct {
	name, namespace   string
	uid               types.UID
	resourceVersion   string
	creationTimestamp metav1.Time
	deletionTimestamp *metav1.Time
	// labels and annotations are shared.
	labels, annotations *stringMap
	nodeName            string
	podIP               string
	phase               v1.PodPhase
	hostNetwork         bool
	conditions          []cachedCondition
	// template holds what the Pods of one template share.
	template *podTemplate
}

// cachedCondition is a kept Pod condition, in a third of a
// v1.PodCondition's size: its type and status, and its reason and message
// (only the readiness gate's has them), are interned; its transition time
// is seconds and nanoseconds (nanoseconds -1: no time).
type cachedCondition struct {
	kind        unique.Handle[conditionKind]
	detail      unique.Handle[conditionDetail]
	seconds     int64
	nanoseconds int32
}

type conditionKind struct {
	conditionType v1.PodConditionType
	status        v1.ConditionStatus
}

type conditionDetail struct{ reason, message string }

func packCondition(c v1.PodCondition) cachedCondition {
	out := cachedCondition{kind: unique.Make(conditionKind{c.Type, c.Status}), nanoseconds: -1}
	if c.Reason != "" || c.Message != "" {
		out.detail = unique.Make(conditionDetail{c.Reason, c.Message})
	}
	if !c.LastTransitionTime.IsZero() {
		out.seconds, out.nanoseconds = c.LastTransitionTime.Unix(), int32(c.LastTransitionTime.Nanosecond())
	}
	return out
}

// condition is the v1.PodCondition; a time comes back as the API
// machinery decodes one, in the local time zone.
func (c cachedCondition) condition() v1.PodCondition {
	kind := c.kind.Value()
	out := v1.PodCondition{Type: kind.conditionType, Status: kind.status}
	if c.detail != (unique.Handle[conditionDetail]{}) {
		detail := c.detail.Value()
		out.Reason, out.Message = detail.reason, detail.message
	}
	if c.nanoseconds >= 0 {
		out.LastTransitionTime = metav1.NewTime(time.Unix(c.seconds, int64(c.nanoseconds)).Local())
	}
	return out
}

// podTemplate is the part of a trimmed Pod its siblings share.
type podTemplate struct {
	readinessGates             []v1.PodReadinessGate
	containers, initContainers []v1.Container
}

// stringMap holds a shared labels or annotations map.
type stringMap struct{ m map[string]string }

func (m *stringMap) get() map[string]string {
	if m == nil {
		return nil
	}
	return m.m
}

var (
	templates  interner[podTemplate]
	stringMaps interner[stringMap]
)

// pod is the Pod as TrimForCache makes it (but for its TypeMeta, which
// the typed clients leave empty anyway).
func (p *cachedPod) pod() *v1.Pod {
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: p.name, Namespace: p.namespace, UID: p.uid, ResourceVersion: p.resourceVersion,
			CreationTimestamp: p.creationTimestamp, DeletionTimestamp: p.deletionTimestamp,
			Labels: p.labels.get(), Annotations: p.annotations.get(),
		},
		Spec: v1.PodSpec{
			NodeName:       p.nodeName,
			HostNetwork:    p.hostNetwork,
			ReadinessGates: p.template.readinessGates,
			Containers:     p.template.containers,
			InitContainers: p.template.initContainers,
		},
		Status: v1.PodStatus{Phase: p.phase, PodIP: p.podIP},
	}
	if len(p.conditions) > 0 {
		pod.Status.Conditions = make([]v1.PodCondition, len(p.conditions))
		for i, c := range p.conditions {
			pod.Status.Conditions[i] = c.condition()
		}
	}
	return pod
}

// packPod packs a trimmed Pod, which it may take parts of.
func packPod(t *v1.Pod) *cachedPod {
	p := &cachedPod{
		name: t.Name, namespace: intern(t.Namespace), uid: t.UID, resourceVersion: t.ResourceVersion,
		creationTimestamp: t.CreationTimestamp, deletionTimestamp: t.DeletionTimestamp,
		labels: internMap(t.Labels), annotations: internMap(t.Annotations),
		nodeName:    intern(t.Spec.NodeName),
		podIP:       t.Status.PodIP,
		phase:       v1.PodPhase(intern(string(t.Status.Phase))),
		hostNetwork: t.Spec.HostNetwork,
	}
	if len(t.Status.Conditions) > 0 {
		p.conditions = make([]cachedCondition, len(t.Status.Conditions))
		for i, c := range t.Status.Conditions {
			p.conditions[i] = packCondition(c)
		}
	}
	p.template = templates.intern(templateKey(t), &podTemplate{
		readinessGates: t.Spec.ReadinessGates,
		containers:     t.Spec.Containers,
		initContainers: t.Spec.InitContainers,
	})
	return p
}

func intern(s string) string {
	if s == "" {
		return ""
	}
	return unique.Make(s).Value()
}

// internMap returns the shared map equal to m (nil stays nil).
func internMap(m map[string]string) *stringMap {
	if m == nil {
		return nil
	}
	var key strings.Builder
	for _, k := range slices.Sorted(maps.Keys(m)) {
		writeKeyPart(&key, k)
		writeKeyPart(&key, m[k])
	}
	return stringMaps.intern(key.String(), &stringMap{m: m})
}

// writeKeyPart appends s to an interning key, length first, so that no two
// lists of parts make the same key.
func writeKeyPart(key *strings.Builder, s string) {
	key.WriteString(strconv.Itoa(len(s)))
	key.WriteByte(':')
	key.WriteString(s)
}

// templateKey is a trimmed Pod's template as a string: equal keys, equal
// templates.
func templateKey(t *v1.Pod) string {
	var key strings.Builder
	for _, g := range t.Spec.ReadinessGates {
		fmt.Fprintf(&key, "g%q", g.ConditionType)
	}
	for i, containers := range [][]v1.Container{t.Spec.Containers, t.Spec.InitContainers} {
		for _, c := range containers {
			fmt.Fprintf(&key, "c%d%q", i, c.Name)
			if c.RestartPolicy != nil {
				fmt.Fprintf(&key, "r%q", *c.RestartPolicy)
			}
			for _, p := range c.Ports {
				fmt.Fprintf(&key, "p%q%d%q", p.Name, p.ContainerPort, p.Protocol)
			}
			for _, r := range []struct {
				kind string
				list v1.ResourceList
			}{{"q", c.Resources.Requests}, {"l", c.Resources.Limits}} {
				for _, name := range slices.Sorted(maps.Keys(r.list)) {
					q := r.list[name]
					fmt.Fprintf(&key, "%s%q%q", r.kind, name, q.String())
				}
			}
		}
	}
	return key.String()
}

// GetObjectKind and DeepCopyObject make a cachedPod a runtime.Object, as
// the items of a LIST must be.
func (p *cachedPod) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

func (p *cachedPod) DeepCopyObject() k8sruntime.Object {
	out := *p
	out.deletionTimestamp = p.deletionTimestamp.DeepCopy()
	// Labels, annotations and the template stay shared: they are
	// never modified.
	out.conditions = slices.Clone(p.conditions)
	return &out
}

// GetObjectMeta gives the cache (keys, indexes, label selectors) the
// metadata of a cached Pod, as meta.Accessor asks.
func (p *cachedPod) GetObjectMeta() metav1.Object { return podMeta{p} }

// podMeta is a cached Pod's metadata as a metav1.Object; the fields the
// cache does not keep read as empty, and setting them does nothing.
type podMeta struct{ p *cachedPod }

func (m podMeta) GetNamespace() string                        { return m.p.namespace }
func (m podMeta) SetNamespace(namespace string)               { m.p.namespace = namespace }
func (m podMeta) GetName() string                             { return m.p.name }
func (m podMeta) SetName(name string)                         { m.p.name = name }
func (m podMeta) GetGenerateName() string                     { return "" }
func (m podMeta) SetGenerateName(string)                      {}
func (m podMeta) GetUID() types.UID                           { return m.p.uid }
func (m podMeta) SetUID(uid types.UID)                        { m.p.uid = uid }
func (m podMeta) GetResourceVersion() string                  { return m.p.resourceVersion }
func (m podMeta) SetResourceVersion(version string)           { m.p.resourceVersion = version }
func (m podMeta) GetGeneration() int64                        { return 0 }
func (m podMeta) SetGeneration(int64)                         {}
func (m podMeta) GetSelfLink() string                         { return "" }
func (m podMeta) SetSelfLink(string)                          {}
func (m podMeta) GetCreationTimestamp() metav1.Time           { return m.p.creationTimestamp }
func (m podMeta) SetCreationTimestamp(timestamp metav1.Time)  { m.p.creationTimestamp = timestamp }
func (m podMeta) GetDeletionTimestamp() *metav1.Time          { return m.p.deletionTimestamp }
func (m podMeta) SetDeletionTimestamp(timestamp *metav1.Time) { m.p.deletionTimestamp = timestamp }
func (m podMeta) GetDeletionGracePeriodSeconds() *int64       { return nil }
func (m podMeta) SetDeletionGracePeriodSeconds(*int64)        {}
func (m podMeta) GetLabels() map[string]string                { return m.p.labels.get() }
func (m podMeta) SetLabels(labels map[string]string)          { m.p.labels = internMap(labels) }
func (m podMeta) GetAnnotations() map[string]string           { return m.p.annotations.get() }
func (m podMeta) SetAnnotations(annotations map[string]string) {
	m.p.annotations = internMap(annotations)
}
func (m podMeta) GetFinalizers() []string                                    { return nil }
func (m podMeta) SetFinalizers([]string)                                     {}
func (m podMeta) GetOwnerReferences() []metav1.OwnerReference                { return nil }
func (m podMeta) SetOwnerReferences([]metav1.OwnerReference)                 {}
func (m podMeta) GetManagedFields() []metav1.ManagedFieldsEntry              { return nil }
func (m podMeta) SetManagedFields(managedFields []metav1.ManagedFieldsEntry) {}

// cachedPodList is what the paged LIST returns.
type cachedPodList struct {
	metav1.ListMeta
	Items []*cachedPod
}

func (l *cachedPodList) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

func (l *cachedPodList) DeepCopyObject() k8sruntime.Object {
	out := &cachedPodList{Items: make([]*cachedPod, len(l.Items))}
	l.ListMeta.DeepCopyInto(&out.ListMeta)
	for i, p := range l.Items {
		out.Items[i] = p.DeepCopyObject().(*cachedPod)
	}
	return out
}

// interner shares equal values while someone holds them: an entry goes
// once its value is garbage, so a template no Pod uses any more (a
// Deployment rolled on, or deleted) is not kept forever.
type interner[T any] struct {
	mu      sync.Mutex
	entries map[string]weak.Pointer[T]
}

// intern returns the value held for key, or v, which it then holds.
func (in *interner[T]) intern(key string, v *T) *T {
	in.mu.Lock()
	defer in.mu.Unlock()
	if held := in.entries[key].Value(); held != nil {
		return held
	}
	if in.entries == nil {
		in.entries = map[string]weak.Pointer[T]{}
	}
	in.entries[key] = weak.Make(v)
	runtime.AddCleanup(v, in.forget, key)
	return v
}

func (in *interner[T]) forget(key string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	// The key may hold a newer value by now.
	if in.entries[key].Value() == nil {
		delete(in.entries, key)
	}
}

func (in *interner[T]) len() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.entries)
}

// podInformer is the Pod cache as a coreinformers.PodInformer.
type podInformer struct{ informer cache.SharedIndexInformer }

func (p podInformer) Informer() cache.SharedIndexInformer { return podViews{p.informer} }

func (p podInformer) Lister() corelisters.PodLister { return podLister{p.informer.GetIndexer()} }

// podViews hands event handlers *v1.Pod views of the cached Pods.
type podViews struct{ cache.SharedIndexInformer }

func (i podViews) AddEventHandler(handler cache.ResourceEventHandler) (cache.ResourceEventHandlerRegistration, error) {
	return i.SharedIndexInformer.AddEventHandler(viewHandler{handler})
}

func (i podViews) AddEventHandlerWithResyncPeriod(handler cache.ResourceEventHandler, resync time.Duration) (cache.ResourceEventHandlerRegistration, error) {
	return i.SharedIndexInformer.AddEventHandlerWithResyncPeriod(viewHandler{handler}, resync)
}

func (i podViews) AddEventHandlerWithOptions(handler cache.ResourceEventHandler, options cache.HandlerOptions) (cache.ResourceEventHandlerRegistration, error) {
	return i.SharedIndexInformer.AddEventHandlerWithOptions(viewHandler{handler}, options)
}

type viewHandler struct{ handler cache.ResourceEventHandler }

func (h viewHandler) OnAdd(obj any, isInInitialList bool) {
	h.handler.OnAdd(view(obj), isInInitialList)
}
func (h viewHandler) OnUpdate(oldObj, newObj any) { h.handler.OnUpdate(view(oldObj), view(newObj)) }
func (h viewHandler) OnDelete(obj any)            { h.handler.OnDelete(view(obj)) }

// view turns a cached Pod, also in a tombstone, into a *v1.Pod.
func view(obj any) any {
	switch o := obj.(type) {
	case *cachedPod:
		return o.pod()
	case cache.DeletedFinalStateUnknown:
		if p, ok := o.Obj.(*cachedPod); ok {
			o.Obj = p.pod()
		}
		return o
	}
	return obj
}

// podLister is a corelisters.PodLister over the cache.
type podLister struct{ indexer cache.Indexer }

func (l podLister) List(selector labels.Selector) ([]*v1.Pod, error) {
	var out []*v1.Pod
	err := cache.ListAll(l.indexer, selector, func(obj any) { out = appendView(out, obj) })
	return out, err
}

func (l podLister) Pods(namespace string) corelisters.PodNamespaceLister {
	return podNamespaceLister{indexer: l.indexer, namespace: namespace}
}

type podNamespaceLister struct {
	indexer   cache.Indexer
	namespace string
}

func (l podNamespaceLister) List(selector labels.Selector) ([]*v1.Pod, error) {
	var out []*v1.Pod
	err := cache.ListAllByNamespace(l.indexer, l.namespace, selector, func(obj any) { out = appendView(out, obj) })
	return out, err
}

func (l podNamespaceLister) Get(name string) (*v1.Pod, error) {
	obj, exists, err := l.indexer.GetByKey(l.namespace + "/" + name)
	if err != nil {
		return nil, err
	}
	if !exists {
		return nil, apierrors.NewNotFound(v1.Resource("pod"), name)
	}
	pod, ok := view(obj).(*v1.Pod)
	if !ok {
		return nil, fmt.Errorf("unexpected %T in the Pod cache", obj)
	}
	return pod, nil
}

func appendView(pods []*v1.Pod, obj any) []*v1.Pod {
	if pod, ok := view(obj).(*v1.Pod); ok {
		return append(pods, pod)
	}
	return pods
}
