// Package stubapi serves, in process, just enough of the Kubernetes API for
// the clb-direct binary to run against it without a kube-apiserver: for
// benchmarks that need tens of thousands of Pods in seconds, which a real
// control plane on a laptop cannot create.
//
// It answers /version, discovery (/api, /apis, /api/v1, events.k8s.io/v1;
// every other group, the TkeServiceConfig CRD's included, is a 404), and for
// Pods, Services, Nodes and ConfigMaps: GET, LIST (label and field
// selectors on metadata.name and metadata.namespace, limit and continue),
// WATCH (from a resource version, or the current state first; bookmarks and
// sendInitialEvents), PATCH of the object and of its status (merge,
// strategic merge and JSON patches, with the resourceVersion and UID
// preconditions a patch may carry). Events (core and events.k8s.io/v1) can
// be created and patched. Everything else is a 404 or a 405 with a Status
// body, and is recorded (Unhandled).
//
// Like the watch cache of a real API server, a LIST with resourceVersion=0
// ignores limit and returns everything at once: that is what an informer's
// first LIST gets, and what its memory must cope with.
//
// Objects are put in with Add, Update and Delete, each a watch event; what
// clients patched can be read back (Services, Patches).
package stubapi

import (
	"bufio"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// DefaultVersion is the gitVersion /version reports unless Options say.
const DefaultVersion = "v1.34.2"

// Options configure a Server.
type Options struct {
	// Version is the gitVersion of /version; DefaultVersion when empty.
	Version string
	// WatchTimeout ends a watch that asked for no timeout; 30 minutes when
	// zero.
	WatchTimeout time.Duration
}

// resource is one kind the server stores.
type resource struct {
	group, version, name, singular, kind string
	namespaced                           bool
	// status says whether it has a status subresource.
	status bool
	// create says whether clients may POST it.
	create bool
	// newObject is its Go type, for strategic merge patches.
	newObject func() runtime.Object
}

func (r *resource) groupVersion() schema.GroupVersion {
	return schema.GroupVersion{Group: r.group, Version: r.version}
}

func (r *resource) gvk() schema.GroupVersionKind { return r.groupVersion().WithKind(r.kind) }

// the resources served, by group version and name.
var resources = []*resource{
	{version: "v1", name: "pods", singular: "pod", kind: "Pod", namespaced: true, status: true,
		newObject: func() runtime.Object { return &corev1.Pod{} }},
	{version: "v1", name: "services", singular: "service", kind: "Service", namespaced: true, status: true,
		newObject: func() runtime.Object { return &corev1.Service{} }},
	{version: "v1", name: "nodes", singular: "node", kind: "Node", status: true,
		newObject: func() runtime.Object { return &corev1.Node{} }},
	{version: "v1", name: "configmaps", singular: "configmap", kind: "ConfigMap", namespaced: true,
		newObject: func() runtime.Object { return &corev1.ConfigMap{} }},
	{version: "v1", name: "events", singular: "event", kind: "Event", namespaced: true, create: true,
		newObject: func() runtime.Object { return &corev1.Event{} }},
	{group: "events.k8s.io", version: "v1", name: "events", singular: "event", kind: "Event", namespaced: true, create: true,
		newObject: func() runtime.Object { return &eventsv1.Event{} }},
}

func lookupResource(gv schema.GroupVersion, name string) *resource {
	for _, r := range resources {
		if r.groupVersion() == gv && r.name == name {
			return r
		}
	}
	return nil
}

// resourceOf finds the resource of a Go object.
func resourceOf(obj runtime.Object) (*resource, error) {
	var gv schema.GroupVersion
	var name string
	switch obj.(type) {
	case *corev1.Pod:
		gv, name = corev1.SchemeGroupVersion, "pods"
	case *corev1.Service:
		gv, name = corev1.SchemeGroupVersion, "services"
	case *corev1.Node:
		gv, name = corev1.SchemeGroupVersion, "nodes"
	case *corev1.ConfigMap:
		gv, name = corev1.SchemeGroupVersion, "configmaps"
	case *corev1.Event:
		gv, name = corev1.SchemeGroupVersion, "events"
	case *eventsv1.Event:
		gv, name = eventsv1.SchemeGroupVersion, "events"
	default:
		return nil, fmt.Errorf("stubapi: %T is not served", obj)
	}
	return lookupResource(gv, name), nil
}

// object is one version of a stored object; never changed once made.
type object struct {
	namespace, name string
	uid             types.UID
	rv              int64
	labels          labels.Set
	// data is the object as served in JSON, with kind, apiVersion and
	// resourceVersion; pb the same in protobuf, without the envelope.
	data, pb []byte
}

func (o *object) key() string { return o.namespace + "/" + o.name }

type store struct {
	objects map[string]*object
	// keys are the objects' keys, sorted; nil when they changed since.
	keys []string
}

func (s *store) sortedKeys() []string {
	if s.keys == nil {
		s.keys = make([]string, 0, len(s.objects))
		for k := range s.objects {
			s.keys = append(s.keys, k)
		}
		sort.Strings(s.keys)
	}
	return s.keys
}

// change is one entry of the watch log.
type change struct {
	res *resource
	typ watch.EventType
	obj *object
}

// Patch is one PATCH the server applied.
type Patch struct {
	Resource, Subresource string
	Namespace, Name       string
	Type                  types.PatchType
	Body                  string
	// Status is the HTTP status answered.
	Status int
}

// Server is a running stub API server.
type Server struct {
	opts Options
	http *httptest.Server
	done chan struct{}
	stop sync.Once

	mu     sync.Mutex
	rv     int64
	stores map[*resource]*store
	// log holds every change, in resource version order.
	log []change
	// changed is closed, and replaced, on every change.
	changed   chan struct{}
	patches   []Patch
	requests  map[string]int
	unhandled []string
}

// Start starts a server on a loopback port.
func Start(opts Options) *Server {
	if opts.Version == "" {
		opts.Version = DefaultVersion
	}
	if opts.WatchTimeout <= 0 {
		opts.WatchTimeout = 30 * time.Minute
	}
	s := &Server{opts: opts, done: make(chan struct{}), stores: map[*resource]*store{}, changed: make(chan struct{}), requests: map[string]int{}}
	for _, r := range resources {
		s.stores[r] = &store{objects: map[string]*object{}}
	}
	s.http = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	return s
}

// URL is the server's address, http://127.0.0.1:<port>.
func (s *Server) URL() string { return s.http.URL }

// Close ends every watch and stops the server.
func (s *Server) Close() {
	s.stop.Do(func() {
		close(s.done)
		s.http.CloseClientConnections()
		s.http.Close()
	})
}

// WriteKubeconfig writes a kubeconfig for the server (no credentials).
func (s *Server) WriteKubeconfig(path string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["stub"] = &clientcmdapi.Cluster{Server: s.URL()}
	cfg.AuthInfos["stub"] = &clientcmdapi.AuthInfo{}
	cfg.Contexts["stub"] = &clientcmdapi.Context{Cluster: "stub", AuthInfo: "stub"}
	cfg.CurrentContext = "stub"
	return clientcmd.WriteToFile(*cfg, path)
}

// Add creates objects (Pods, Services, Nodes, ConfigMaps, Events), each an
// ADDED event. A missing UID or creation time is filled in; the objects
// passed are not changed.
func (s *Server) Add(objs ...runtime.Object) error {
	for _, obj := range objs {
		if err := s.put(obj, true); err != nil {
			return err
		}
	}
	return nil
}

// Update replaces an object, a MODIFIED event.
func (s *Server) Update(obj runtime.Object) error { return s.put(obj, false) }

func (s *Server) put(in runtime.Object, create bool) error {
	res, err := resourceOf(in)
	if err != nil {
		return err
	}
	obj := in.DeepCopyObject()
	accessor, err := meta.Accessor(obj)
	if err != nil {
		return err
	}
	if !res.namespaced {
		accessor.SetNamespace("")
	}
	if accessor.GetName() == "" || res.namespaced && accessor.GetNamespace() == "" {
		return fmt.Errorf("stubapi: a %s needs a name and a namespace", res.kind)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stores[res]
	key := accessor.GetNamespace() + "/" + accessor.GetName()
	current, exists := st.objects[key]
	switch {
	case create && exists:
		return fmt.Errorf("stubapi: %s %s already exists", res.kind, key)
	case !create && !exists:
		return fmt.Errorf("stubapi: %s %s does not exist", res.kind, key)
	}
	if accessor.GetUID() == "" {
		if exists {
			accessor.SetUID(current.uid)
		} else {
			accessor.SetUID(uuid.NewUUID())
		}
	}
	if created := accessor.GetCreationTimestamp(); created.IsZero() {
		accessor.SetCreationTimestamp(metav1.Now())
	}
	typ := watch.Added
	if exists {
		typ = watch.Modified
	}
	return s.storeLocked(res, obj, typ)
}

// Delete deletes an object as the API server does: one with finalizers
// gets a deletion timestamp (MODIFIED) and goes once they are removed,
// others go at once (DELETED).
func (s *Server) Delete(obj runtime.Object) error {
	res, err := resourceOf(obj)
	if err != nil {
		return err
	}
	accessor, err := meta.Accessor(obj)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	current, ok := s.stores[res].objects[accessor.GetNamespace()+"/"+accessor.GetName()]
	if !ok {
		return fmt.Errorf("stubapi: %s %s/%s does not exist", res.kind, accessor.GetNamespace(), accessor.GetName())
	}
	stored, err := decodeObject(res, current.data)
	if err != nil {
		return err
	}
	m, _ := meta.Accessor(stored)
	if m.GetDeletionTimestamp() == nil {
		now := metav1.Now()
		m.SetDeletionTimestamp(&now)
	}
	return s.storeLocked(res, stored, watch.Modified)
}

// storeLocked gives obj the next resource version and stores it; with a
// deletion timestamp and no finalizers left it is deleted instead.
func (s *Server) storeLocked(res *resource, obj runtime.Object, typ watch.EventType) error {
	accessor, err := meta.Accessor(obj)
	if err != nil {
		return err
	}
	obj.GetObjectKind().SetGroupVersionKind(res.gvk())
	s.rv++
	accessor.SetResourceVersion(strconv.FormatInt(s.rv, 10))
	data, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	pb, err := obj.(protoMarshaler).Marshal()
	if err != nil {
		return err
	}
	o := &object{namespace: accessor.GetNamespace(), name: accessor.GetName(), uid: accessor.GetUID(), rv: s.rv,
		labels: labels.Set(accessor.GetLabels()), data: data, pb: pb}
	st := s.stores[res]
	if accessor.GetDeletionTimestamp() != nil && len(accessor.GetFinalizers()) == 0 {
		typ = watch.Deleted
	}
	if _, exists := st.objects[o.key()]; !exists {
		st.keys = nil
	}
	if typ == watch.Deleted {
		delete(st.objects, o.key())
		st.keys = nil
	} else {
		st.objects[o.key()] = o
	}
	s.log = append(s.log, change{res: res, typ: typ, obj: o})
	close(s.changed)
	s.changed = make(chan struct{})
	return nil
}

// protoMarshaler is what the generated API types implement.
type protoMarshaler interface{ Marshal() ([]byte, error) }

func decodeObject(res *resource, data []byte) (runtime.Object, error) {
	obj := res.newObject()
	if err := json.Unmarshal(data, obj); err != nil {
		return nil, err
	}
	return obj, nil
}

// Services returns the stored Services, as clients last left them.
func (s *Server) Services() ([]*corev1.Service, error) {
	objs, err := s.objects(lookupResource(corev1.SchemeGroupVersion, "services"))
	if err != nil {
		return nil, err
	}
	out := make([]*corev1.Service, len(objs))
	for i, o := range objs {
		out[i] = o.(*corev1.Service)
	}
	return out, nil
}

// Events returns the events.k8s.io/v1 Events clients created.
func (s *Server) Events() ([]*eventsv1.Event, error) {
	objs, err := s.objects(lookupResource(eventsv1.SchemeGroupVersion, "events"))
	if err != nil {
		return nil, err
	}
	out := make([]*eventsv1.Event, len(objs))
	for i, o := range objs {
		out[i] = o.(*eventsv1.Event)
	}
	return out, nil
}

func (s *Server) objects(res *resource) ([]runtime.Object, error) {
	s.mu.Lock()
	st := s.stores[res]
	stored := make([]*object, 0, len(st.objects))
	for _, k := range st.sortedKeys() {
		stored = append(stored, st.objects[k])
	}
	s.mu.Unlock()
	out := make([]runtime.Object, len(stored))
	for i, o := range stored {
		obj, err := decodeObject(res, o.data)
		if err != nil {
			return nil, err
		}
		out[i] = obj
	}
	return out, nil
}

// Patches returns every PATCH request, in order, with how it was answered.
func (s *Server) Patches() []Patch {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.patches)
}

// Requests counts the requests served by kind: "list pods", "watch
// services", "patch services/status", "create events.k8s.io/events"...
func (s *Server) Requests() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.requests))
	for k, v := range s.requests {
		out[k] = v
	}
	return out
}

// Unhandled lists the requests answered 404 or 405 for want of support
// ("GET /apis/cloud.tencent.com/v1alpha1"), not those for a missing object.
func (s *Server) Unhandled() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.unhandled)
}

func (s *Server) count(what string) {
	s.mu.Lock()
	s.requests[what]++
	s.mu.Unlock()
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	p := strings.Trim(path.Clean(r.URL.Path), "/")
	parts := strings.Split(p, "/")
	if r.Method == http.MethodGet {
		switch p {
		case "version":
			s.count("version")
			writeJSON(w, http.StatusOK, version.Info{Major: "1", Minor: minor(s.opts.Version), GitVersion: s.opts.Version, Platform: "linux/amd64"})
			return
		case "healthz", "readyz", "livez":
			fmt.Fprint(w, "ok")
			return
		case "api":
			s.count("discovery")
			writeJSON(w, http.StatusOK, metav1.APIVersions{TypeMeta: metav1.TypeMeta{Kind: "APIVersions"}, Versions: []string{"v1"},
				ServerAddressByClientCIDRs: []metav1.ServerAddressByClientCIDR{{ClientCIDR: "0.0.0.0/0", ServerAddress: r.Host}}})
			return
		case "apis":
			s.count("discovery")
			writeJSON(w, http.StatusOK, metav1.APIGroupList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"},
				Groups: []metav1.APIGroup{eventsGroup()}})
			return
		case "apis/events.k8s.io":
			s.count("discovery")
			group := eventsGroup()
			group.TypeMeta = metav1.TypeMeta{Kind: "APIGroup", APIVersion: "v1"}
			writeJSON(w, http.StatusOK, group)
			return
		case "api/v1":
			s.count("discovery")
			writeJSON(w, http.StatusOK, resourceList(corev1.SchemeGroupVersion))
			return
		case "apis/events.k8s.io/v1":
			s.count("discovery")
			writeJSON(w, http.StatusOK, resourceList(eventsv1.SchemeGroupVersion))
			return
		}
	}
	// /api/v1/... or /apis/<group>/<version>/...
	var gv schema.GroupVersion
	var rest []string
	switch {
	case len(parts) >= 3 && parts[0] == "api" && parts[1] == "v1":
		gv, rest = corev1.SchemeGroupVersion, parts[2:]
	case len(parts) >= 4 && parts[0] == "apis":
		gv, rest = schema.GroupVersion{Group: parts[1], Version: parts[2]}, parts[3:]
	default:
		s.notServed(w, r)
		return
	}
	namespace := ""
	if len(rest) >= 2 && rest[0] == "namespaces" && len(rest) >= 3 {
		namespace, rest = rest[1], rest[2:]
	}
	res := lookupResource(gv, rest[0])
	if res == nil || len(rest) > 3 || (namespace != "" && !res.namespaced) {
		s.notServed(w, r)
		return
	}
	name, subresource := "", ""
	if len(rest) >= 2 {
		name = rest[1]
	}
	if len(rest) == 3 {
		subresource = rest[2]
		if subresource != "status" || !res.status {
			s.notServed(w, r)
			return
		}
	}
	if res.namespaced && name != "" && namespace == "" {
		s.notServed(w, r)
		return
	}
	switch {
	case name == "" && r.Method == http.MethodGet:
		if q := r.URL.Query().Get("watch"); q == "true" || q == "1" {
			s.watch(w, r, res, namespace)
		} else {
			s.list(w, r, res, namespace)
		}
	case name == "" && r.Method == http.MethodPost && res.create && namespace != "":
		s.create(w, r, res, namespace)
	case name != "" && r.Method == http.MethodGet:
		s.get(w, r, res, namespace, name, subresource)
	case name != "" && r.Method == http.MethodPatch:
		s.patch(w, r, res, namespace, name, subresource)
	default:
		s.mu.Lock()
		s.unhandled = append(s.unhandled, r.Method+" "+r.URL.Path)
		s.mu.Unlock()
		writeStatus(w, apierrors.NewMethodNotSupported(schema.GroupResource{Group: res.group, Resource: res.name}, strings.ToLower(r.Method)))
	}
}

func (s *Server) notServed(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.unhandled = append(s.unhandled, r.Method+" "+r.URL.Path)
	s.mu.Unlock()
	status := apierrors.NewNotFound(schema.GroupResource{}, "")
	status.ErrStatus.Message = "the server could not find the requested resource"
	status.ErrStatus.Details = nil
	writeStatus(w, status)
}

func minor(gitVersion string) string {
	v := strings.TrimPrefix(gitVersion, "v")
	if _, rest, ok := strings.Cut(v, "."); ok {
		m, _, _ := strings.Cut(rest, ".")
		return m
	}
	return ""
}

func eventsGroup() metav1.APIGroup {
	v := metav1.GroupVersionForDiscovery{GroupVersion: eventsv1.SchemeGroupVersion.String(), Version: "v1"}
	return metav1.APIGroup{Name: eventsv1.GroupName, Versions: []metav1.GroupVersionForDiscovery{v}, PreferredVersion: v}
}

func resourceList(gv schema.GroupVersion) metav1.APIResourceList {
	list := metav1.APIResourceList{TypeMeta: metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"}, GroupVersion: gv.String()}
	for _, r := range resources {
		if r.groupVersion() != gv {
			continue
		}
		verbs := metav1.Verbs{"get", "list", "watch", "patch"}
		if r.create {
			verbs = append(verbs, "create")
		}
		list.APIResources = append(list.APIResources, metav1.APIResource{Name: r.name, SingularName: r.singular, Namespaced: r.namespaced, Kind: r.kind, Verbs: verbs})
		if r.status {
			list.APIResources = append(list.APIResources, metav1.APIResource{Name: r.name + "/status", Namespaced: r.namespaced, Kind: r.kind, Verbs: metav1.Verbs{"get", "patch"}})
		}
	}
	return list
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(data)
}

func writeStatus(w http.ResponseWriter, err *apierrors.StatusError) {
	status := err.ErrStatus
	status.TypeMeta = metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}
	status.Status = metav1.StatusFailure
	writeJSON(w, int(status.Code), status)
}

func badRequest(w http.ResponseWriter, format string, args ...any) {
	writeStatus(w, apierrors.NewBadRequest(fmt.Sprintf(format, args...)))
}

func (r *resource) groupResource() schema.GroupResource {
	return schema.GroupResource{Group: r.group, Resource: r.name}
}

func (r *resource) label() string {
	if r.group == "" {
		return r.name
	}
	return r.group + "/" + r.name
}

// selection is what a LIST or WATCH selects.
type selection struct {
	namespace string
	fields    fields.Selector
	labels    labels.Selector
}

func parseSelection(r *http.Request, namespace string) (selection, error) {
	sel := selection{namespace: namespace, fields: fields.Everything(), labels: labels.Everything()}
	q := r.URL.Query()
	var err error
	if v := q.Get("fieldSelector"); v != "" {
		if sel.fields, err = fields.ParseSelector(v); err != nil {
			return sel, err
		}
		for _, req := range sel.fields.Requirements() {
			if req.Field != "metadata.name" && req.Field != "metadata.namespace" {
				return sel, fmt.Errorf("field label not supported: %s", req.Field)
			}
		}
	}
	if v := q.Get("labelSelector"); v != "" {
		if sel.labels, err = labels.Parse(v); err != nil {
			return sel, err
		}
	}
	return sel, nil
}

func (sel selection) matches(o *object) bool {
	if sel.namespace != "" && o.namespace != sel.namespace {
		return false
	}
	return sel.labels.Matches(o.labels) && sel.fields.Matches(fields.Set{"metadata.name": o.name, "metadata.namespace": o.namespace})
}

// continueToken is the opaque "continue" of a LIST page: where the next
// page starts and the resource version of the first.
type continueToken struct {
	RV    int64  `json:"rv"`
	After string `json:"after"`
}

func (s *Server) list(w http.ResponseWriter, r *http.Request, res *resource, namespace string) {
	s.count("list " + res.label())
	sel, err := parseSelection(r, namespace)
	if err != nil {
		badRequest(w, "%v", err)
		return
	}
	q := r.URL.Query()
	var limit int64
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.ParseInt(v, 10, 64); err != nil || limit < 0 {
			badRequest(w, "invalid limit %q", v)
			return
		}
	}
	var token continueToken
	if v := q.Get("continue"); v != "" {
		data, err := base64.RawURLEncoding.DecodeString(v)
		if err == nil {
			err = json.Unmarshal(data, &token)
		}
		if err != nil {
			badRequest(w, "invalid continue token")
			return
		}
	} else if q.Get("resourceVersion") == "0" {
		// As the watch cache does: "any version" is served whole.
		limit = 0
	}

	s.mu.Lock()
	st := s.stores[res]
	listRV := s.rv
	if token.RV != 0 {
		listRV = token.RV
	}
	keys := st.sortedKeys()
	start := 0
	switch {
	case token.After != "":
		start = sort.SearchStrings(keys, token.After+"\x00")
	case namespace != "":
		start = sort.SearchStrings(keys, namespace+"/")
	}
	var items []*object
	more := false
	for _, k := range keys[start:] {
		o := st.objects[k]
		if namespace != "" && o.namespace != namespace {
			break
		}
		if !sel.matches(o) {
			continue
		}
		if limit > 0 && int64(len(items)) == limit {
			more = true
			break
		}
		items = append(items, o)
	}
	s.mu.Unlock()

	listMeta := metav1.ListMeta{ResourceVersion: strconv.FormatInt(listRV, 10)}
	if more {
		data, _ := json.Marshal(continueToken{RV: listRV, After: items[len(items)-1].key()})
		listMeta.Continue = base64.RawURLEncoding.EncodeToString(data)
	}
	if wantsProtobuf(r) {
		// A List message: its ListMeta (field 1), then each item (2).
		meta, _ := listMeta.Marshal()
		body := appendBytesField(nil, 1, meta)
		for _, o := range items {
			body = appendBytesField(body, 2, o.pb)
		}
		w.Header().Set("Content-Type", protobufType)
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(envelope(res, res.kind+"List", body))
		return
	}
	head, _ := json.Marshal(map[string]any{"kind": res.kind + "List", "apiVersion": res.groupVersion().String(), "metadata": listMeta})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 64<<10)
	// The head without its closing brace, then the items.
	_, _ = bw.Write(head[:len(head)-1])
	_, _ = bw.WriteString(`,"items":[`)
	for i, o := range items {
		if i > 0 {
			_ = bw.WriteByte(',')
		}
		_, _ = bw.Write(o.data)
	}
	_, _ = bw.WriteString("]}")
	_ = bw.Flush()
}

// Protobuf, as the API server speaks it to the clients that ask for it
// (client-go's generated clients do, for built-in types).
const protobufType = "application/vnd.kubernetes.protobuf"

var protobufMagic = []byte{0x6b, 0x38, 0x73, 0x00}

// wantsProtobuf reads the client's preference from Accept.
func wantsProtobuf(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mediaType, _, _ := mime.ParseMediaType(strings.TrimSpace(part))
		switch mediaType {
		case protobufType:
			return true
		case "application/json", "*/*":
			return false
		}
	}
	return false
}

// envelope wraps a protobuf message as the API server sends it: a magic
// number, then a runtime.Unknown naming its kind.
func envelope(res *resource, kind string, raw []byte) []byte {
	u := runtime.Unknown{TypeMeta: runtime.TypeMeta{APIVersion: res.groupVersion().String(), Kind: kind}, Raw: raw}
	data, _ := u.Marshal()
	return append(slices.Clip(protobufMagic), data...)
}

// appendBytesField appends a length-delimited protobuf field.
func appendBytesField(b []byte, field int, data []byte) []byte {
	b = binary.AppendUvarint(b, uint64(field)<<3|2)
	b = binary.AppendUvarint(b, uint64(len(data)))
	return append(b, data...)
}

// writeObject answers one object, in the format the client asked for.
func writeObject(w http.ResponseWriter, r *http.Request, res *resource, o *object, code int) {
	data, contentType := o.data, "application/json"
	if wantsProtobuf(r) {
		data, contentType = envelope(res, res.kind, o.pb), protobufType
	}
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(code)
	_, _ = w.Write(data)
}

func (s *Server) get(w http.ResponseWriter, r *http.Request, res *resource, namespace, name, subresource string) {
	s.count("get " + path.Join(res.label(), subresource))
	s.mu.Lock()
	o, ok := s.stores[res].objects[namespace+"/"+name]
	s.mu.Unlock()
	if !ok {
		writeStatus(w, apierrors.NewNotFound(res.groupResource(), name))
		return
	}
	writeObject(w, r, res, o, http.StatusOK)
}

// watchFrame is one event on a watch stream: JSON objects one after the
// other, or length-prefixed protobuf WatchEvents.
func watchFrame(res *resource, typ watch.EventType, o *object, proto bool) []byte {
	if proto {
		event := metav1.WatchEvent{Type: string(typ), Object: runtime.RawExtension{Raw: envelope(res, res.kind, o.pb)}}
		data, _ := event.Marshal()
		return append(binary.BigEndian.AppendUint32(nil, uint32(len(data))), data...)
	}
	frame := make([]byte, 0, len(o.data)+32)
	frame = append(frame, `{"type":"`...)
	frame = append(frame, typ...)
	frame = append(frame, `","object":`...)
	frame = append(frame, o.data...)
	return append(frame, "}\n"...)
}

func (s *Server) watch(w http.ResponseWriter, r *http.Request, res *resource, namespace string) {
	s.count("watch " + res.label())
	sel, err := parseSelection(r, namespace)
	if err != nil {
		badRequest(w, "%v", err)
		return
	}
	q := r.URL.Query()
	timeout := s.opts.WatchTimeout
	if v := q.Get("timeoutSeconds"); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 {
			timeout = time.Duration(n) * time.Second
		}
	}
	bookmarks := q.Get("allowWatchBookmarks") == "true"
	initialEvents := q.Get("sendInitialEvents") == "true"
	rv := q.Get("resourceVersion")
	var fromRV int64
	if rv != "" && rv != "0" {
		if fromRV, err = strconv.ParseInt(rv, 10, 64); err != nil {
			badRequest(w, "invalid resourceVersion %q", rv)
			return
		}
	}
	if initialEvents && !bookmarks {
		badRequest(w, "sendInitialEvents requires allowWatchBookmarks")
		return
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}

	proto := wantsProtobuf(r)
	s.mu.Lock()
	var frames [][]byte
	var cursor int
	if initialEvents || fromRV == 0 {
		// The current state first, as ADDED events.
		st := s.stores[res]
		for _, k := range st.sortedKeys() {
			if o := st.objects[k]; sel.matches(o) {
				frames = append(frames, watchFrame(res, watch.Added, o, proto))
			}
		}
		cursor = len(s.log)
		if initialEvents {
			frames = append(frames, s.bookmarkLocked(res, true, proto))
		}
	} else {
		cursor = sort.Search(len(s.log), func(i int) bool { return s.log[i].obj.rv > fromRV })
	}
	s.mu.Unlock()

	contentType := "application/json"
	if proto {
		contentType = protobufType + ";stream=watch"
	}
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 64<<10)
	for _, f := range frames {
		_, _ = bw.Write(f)
	}
	frames = nil
	_ = bw.Flush()
	flusher.Flush()
	end := time.NewTimer(timeout)
	defer end.Stop()
	bookmark := time.NewTicker(time.Minute)
	defer bookmark.Stop()
	for {
		s.mu.Lock()
		pending := s.log[cursor:]
		cursor = len(s.log)
		changed := s.changed
		s.mu.Unlock()
		for _, c := range pending {
			if c.res == res && sel.matches(c.obj) {
				_, _ = bw.Write(watchFrame(res, c.typ, c.obj, proto))
			}
		}
		if err := bw.Flush(); err != nil {
			return
		}
		flusher.Flush()
		select {
		case <-changed:
		case <-bookmark.C:
			if bookmarks {
				s.mu.Lock()
				frame := s.bookmarkLocked(res, false, proto)
				s.mu.Unlock()
				_, _ = bw.Write(frame)
			}
		case <-end.C:
			return
		case <-r.Context().Done():
			return
		case <-s.done:
			return
		}
	}
}

// bookmarkLocked is a BOOKMARK at the current resource version; initial
// marks the end of the initial events.
func (s *Server) bookmarkLocked(res *resource, initial, proto bool) []byte {
	obj := res.newObject()
	obj.GetObjectKind().SetGroupVersionKind(res.gvk())
	accessor, _ := meta.Accessor(obj)
	accessor.SetResourceVersion(strconv.FormatInt(s.rv, 10))
	if initial {
		accessor.SetAnnotations(map[string]string{metav1.InitialEventsAnnotationKey: "true"})
	}
	data, _ := json.Marshal(obj)
	pb, _ := obj.(protoMarshaler).Marshal()
	return watchFrame(res, watch.Bookmark, &object{data: data, pb: pb}, proto)
}

const maxBody = 3 << 20

func (s *Server) create(w http.ResponseWriter, r *http.Request, res *resource, namespace string) {
	s.count("create " + res.label())
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	if err != nil {
		badRequest(w, "reading the body: %v", err)
		return
	}
	obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(body, nil, res.newObject())
	if err != nil {
		badRequest(w, "decoding the %s: %v", res.kind, err)
		return
	}
	accessor, _ := meta.Accessor(obj)
	if ns := accessor.GetNamespace(); ns != "" && ns != namespace {
		badRequest(w, "the namespace of the object (%s) does not match the namespace of the request (%s)", ns, namespace)
		return
	}
	accessor.SetNamespace(namespace)
	if accessor.GetName() == "" && accessor.GetGenerateName() != "" {
		accessor.SetName(accessor.GetGenerateName() + string(uuid.NewUUID())[:5])
	}
	if accessor.GetName() == "" {
		writeStatus(w, apierrors.NewInvalid(res.gvk().GroupKind(), "", nil))
		return
	}
	accessor.SetUID(uuid.NewUUID())
	accessor.SetCreationTimestamp(metav1.Now())
	s.mu.Lock()
	if _, exists := s.stores[res].objects[namespace+"/"+accessor.GetName()]; exists {
		s.mu.Unlock()
		writeStatus(w, apierrors.NewAlreadyExists(res.groupResource(), accessor.GetName()))
		return
	}
	err = s.storeLocked(res, obj, watch.Added)
	var created *object
	if err == nil {
		created = s.stores[res].objects[namespace+"/"+accessor.GetName()]
	}
	s.mu.Unlock()
	if err != nil {
		writeStatus(w, apierrors.NewInternalError(err))
		return
	}
	writeObject(w, r, res, created, http.StatusCreated)
}

func (s *Server) patch(w http.ResponseWriter, r *http.Request, res *resource, namespace, name, subresource string) {
	s.count("patch " + path.Join(res.label(), subresource))
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	if err != nil {
		badRequest(w, "reading the body: %v", err)
		return
	}
	mediaType, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	record := Patch{Resource: res.label(), Subresource: subresource, Namespace: namespace, Name: name, Type: types.PatchType(mediaType), Body: string(body)}
	status, answer := s.applyPatch(res, namespace, name, subresource, record.Type, body)
	record.Status = http.StatusOK
	if answer == nil {
		record.Status = int(status.ErrStatus.Code)
	}
	s.mu.Lock()
	s.patches = append(s.patches, record)
	s.mu.Unlock()
	if answer == nil {
		writeStatus(w, status)
		return
	}
	writeObject(w, r, res, answer, http.StatusOK)
}

// applyPatch patches the stored object and returns it, or the error to
// answer.
func (s *Server) applyPatch(res *resource, namespace, name, subresource string, patchType types.PatchType, body []byte) (*apierrors.StatusError, *object) {
	s.mu.Lock()
	defer s.mu.Unlock()
	current, ok := s.stores[res].objects[namespace+"/"+name]
	if !ok {
		return apierrors.NewNotFound(res.groupResource(), name), nil
	}
	var patched []byte
	var err error
	switch patchType {
	case types.MergePatchType:
		patched, err = jsonpatch.MergePatch(current.data, body)
	case types.StrategicMergePatchType:
		patched, err = strategicpatch.StrategicMergePatch(current.data, body, res.newObject())
	case types.JSONPatchType:
		var p jsonpatch.Patch
		if p, err = jsonpatch.DecodePatch(body); err == nil {
			patched, err = p.Apply(current.data)
		}
	default:
		return apierrors.NewGenericServerResponse(http.StatusUnsupportedMediaType, "patch", res.groupResource(), name,
			fmt.Sprintf("the patch type %q is not supported", patchType), 0, false), nil
	}
	if err != nil {
		return apierrors.NewBadRequest(fmt.Sprintf("applying the %s patch: %v", patchType, err)), nil
	}
	var before, after map[string]any
	if err := json.Unmarshal(current.data, &before); err != nil {
		return apierrors.NewInternalError(err), nil
	}
	if err := json.Unmarshal(patched, &after); err != nil {
		return apierrors.NewBadRequest(fmt.Sprintf("the patched object is not an object: %v", err)), nil
	}
	// Preconditions a patch may carry.
	afterMeta, _ := after["metadata"].(map[string]any)
	if rv, _ := afterMeta["resourceVersion"].(string); rv != "" && rv != strconv.FormatInt(current.rv, 10) {
		return apierrors.NewConflict(res.groupResource(), name, errors.New("the object has been modified; please apply your changes to the latest version and try again")), nil
	}
	if uid, _ := afterMeta["uid"].(string); uid != string(current.uid) {
		return apierrors.NewConflict(res.groupResource(), name, fmt.Errorf("precondition failed: UID in precondition: %s, UID in object meta: %s", uid, current.uid)), nil
	}
	// The status subresource changes the status alone; the object
	// everything but.
	result := after
	if subresource == "status" {
		result = before
		result["status"] = after["status"]
	} else if status, ok := before["status"]; ok {
		result["status"] = status
	} else {
		delete(result, "status")
	}
	resultMeta, _ := result["metadata"].(map[string]any)
	beforeMeta, _ := before["metadata"].(map[string]any)
	if resultMeta == nil || resultMeta["name"] != beforeMeta["name"] || resultMeta["namespace"] != beforeMeta["namespace"] {
		return apierrors.NewBadRequest("the name and namespace of an object cannot change"), nil
	}
	data, err := json.Marshal(result)
	if err != nil {
		return apierrors.NewInternalError(err), nil
	}
	obj, err := decodeObject(res, data)
	if err != nil {
		return apierrors.NewInvalid(res.gvk().GroupKind(), name, nil), nil
	}
	// Nothing changed: no new version, no event.
	if normalized, err := json.Marshal(obj); err == nil && string(normalized) == string(current.data) {
		return nil, current
	}
	if err := s.storeLocked(res, obj, watch.Modified); err != nil {
		return apierrors.NewInternalError(err), nil
	}
	return nil, s.log[len(s.log)-1].obj
}
