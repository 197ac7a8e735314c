package readiness

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
)

// maxAdmissionReviewBytes bounds what the webhook reads: the API server
// sends a Pod, far smaller than this.
const maxAdmissionReviewBytes = 3 << 20

// Selector tells whether a direct-access Service selects a Pod.
type Selector interface {
	SelectedByDirectAccess(pod *v1.Pod) bool
}

// Injector is the mutating admission webhook that adds the readiness gate
// to new Pods that a direct-access Service selects, as TKE's does.
type Injector struct {
	Selector Selector
	Logger   klog.Logger
}

var podResource = metav1.GroupVersionResource{Version: "v1", Resource: "pods"}

func (in *Injector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "admission reviews are POSTed", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxAdmissionReviewBytes+1))
	if err != nil || len(body) > maxAdmissionReviewBytes {
		http.Error(w, "reading the admission review failed or it is too large", http.StatusBadRequest)
		return
	}
	review, err := in.review(body)
	if err != nil {
		in.Logger.V(2).Info("Refusing a malformed admission review", "err", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(review); err != nil {
		in.Logger.Error(err, "Writing the admission response failed")
	}
}

// review answers one AdmissionReview. A request the webhook cannot read is
// an error; a Pod it has no business with is allowed unchanged.
func (in *Injector) review(body []byte) (*admissionv1.AdmissionReview, error) {
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil {
		return nil, fmt.Errorf("decoding the AdmissionReview: %w", err)
	}
	req := review.Request
	if req == nil {
		return nil, fmt.Errorf("the AdmissionReview has no request")
	}
	response := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
	review.Response, review.Request = response, nil
	if req.Resource != podResource || req.SubResource != "" || req.Operation != admissionv1.Create {
		return &review, nil
	}
	var pod v1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		return nil, fmt.Errorf("decoding the Pod: %w", err)
	}
	if pod.Namespace == "" {
		pod.Namespace = req.Namespace
	}
	if hasGate(&pod) || !in.Selector.SelectedByDirectAccess(&pod) {
		return &review, nil
	}
	patch, err := json.Marshal(gatePatch(&pod))
	if err != nil {
		return nil, fmt.Errorf("encoding the patch: %w", err)
	}
	patchType := admissionv1.PatchTypeJSONPatch
	response.Patch, response.PatchType = patch, &patchType
	in.Logger.V(4).Info("Adding the readiness gate", "namespace", pod.Namespace, "pod", pod.Name, "generateName", pod.GenerateName)
	return &review, nil
}

type jsonPatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// gatePatch appends the gate to spec.readinessGates, creating the list when
// the Pod has none.
func gatePatch(pod *v1.Pod) []jsonPatchOp {
	gate := v1.PodReadinessGate{ConditionType: GateConditionType}
	if len(pod.Spec.ReadinessGates) == 0 {
		return []jsonPatchOp{{Op: "add", Path: "/spec/readinessGates", Value: []v1.PodReadinessGate{gate}}}
	}
	return []jsonPatchOp{{Op: "add", Path: "/spec/readinessGates/-", Value: gate}}
}

// CertificateReloader serves a certificate from files mounted from a Secret
// (the webhook's, and the metrics' with --metrics-cert-file),
// reading them again when they change so a renewed certificate is used
// without a restart.
type CertificateReloader struct {
	certFile, keyFile string
	mu                sync.Mutex
	cert              *tls.Certificate
	certMod, keyMod   time.Time
}

// NewCertificateReloader loads the pair once, so a bad pair fails at start.
func NewCertificateReloader(certFile, keyFile string) (*CertificateReloader, error) {
	r := &CertificateReloader{certFile: certFile, keyFile: keyFile}
	if _, err := r.GetCertificate(nil); err != nil {
		return nil, err
	}
	return r, nil
}

// GetCertificate is a tls.Config callback.
func (r *CertificateReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	certInfo, err := os.Stat(r.certFile)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate: %w", err)
	}
	keyInfo, err := os.Stat(r.keyFile)
	if err != nil {
		return nil, fmt.Errorf("TLS key: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cert != nil && certInfo.ModTime().Equal(r.certMod) && keyInfo.ModTime().Equal(r.keyMod) {
		return r.cert, nil
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		if r.cert != nil {
			// A half-written rotation: keep serving the last good pair.
			return r.cert, nil
		}
		return nil, fmt.Errorf("loading the TLS certificate: %w", err)
	}
	r.cert, r.certMod, r.keyMod = &cert, certInfo.ModTime(), keyInfo.ModTime()
	return r.cert, nil
}
