package readiness

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	v1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2/ktesting"

	"clb-direct/internal/testcert"
)

// stubSelector answers a fixed value and records the Pods it was asked about.
type stubSelector struct {
	selected bool
	mu       sync.Mutex
	asked    []string // namespace/name or namespace/generateName*
}

func (s *stubSelector) SelectedByDirectAccess(pod *v1.Pod) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	name := pod.Name
	if name == "" {
		name = pod.GenerateName + "*"
	}
	s.asked = append(s.asked, pod.Namespace+"/"+name)
	return s.selected
}

func (s *stubSelector) questions() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.asked...)
}

func newInjector(t *testing.T, selected bool) (*Injector, *stubSelector) {
	logger, _ := ktesting.NewTestContext(t)
	sel := &stubSelector{selected: selected}
	return &Injector{Selector: sel, Logger: logger}, sel
}

const (
	gatePatchNew    = `[{"op":"add","path":"/spec/readinessGates","value":[{"conditionType":"cloud.tencent.com/load-balancer-backendgroup-ready"}]}]`
	gatePatchAppend = `[{"op":"add","path":"/spec/readinessGates/-","value":{"conditionType":"cloud.tencent.com/load-balancer-backendgroup-ready"}}]`
)

// podJSON is a Pod as the API server sends it on create: a generated name,
// a namespace only when the client gave one.
func podJSON(namespace, gates string) string {
	ns := ""
	if namespace != "" {
		ns = `"namespace":"` + namespace + `",`
	}
	g := ""
	if gates != "" {
		g = `"readinessGates":` + gates + `,`
	}
	return `{"apiVersion":"v1","kind":"Pod","metadata":{` + ns + `"generateName":"web-7d9f-","labels":{"app":"web"}},` +
		`"spec":{` + g + `"containers":[{"name":"app","image":"nginx"}]}}`
}

func reviewJSON(uid, operation, resource, subresource, namespace, object string) string {
	sub := ""
	if subresource != "" {
		sub = `"subResource":"` + subresource + `",`
	}
	return `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{` +
		`"uid":"` + uid + `","kind":{"group":"","version":"v1","kind":"Pod"},` +
		`"resource":{"group":"","version":"v1","resource":"` + resource + `"},` + sub +
		`"namespace":"` + namespace + `","operation":"` + operation + `",` +
		`"userInfo":{"username":"system:serviceaccount:kube-system:replicaset-controller"},` +
		`"object":` + object + `,"dryRun":false}}`
}

func post(t *testing.T, h http.Handler, body string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/mutate-pods", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func allowedJSON(uid string) string {
	return `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","response":{"uid":"` + uid + `","allowed":true}}` + "\n"
}

func patchedJSON(uid, patch string) string {
	return `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","response":{"uid":"` + uid + `","allowed":true,` +
		`"patch":"` + base64.StdEncoding.EncodeToString([]byte(patch)) + `","patchType":"JSONPatch"}}` + "\n"
}

func TestInjectorGolden(t *testing.T) {
	tests := []struct {
		name     string
		selected bool
		request  string
		want     string
		// wantAsked is what the Selector must have been asked, nil for nothing.
		wantAsked []string
		// wantGates are the gates of the Pod once the patch is applied.
		wantGates []v1.PodReadinessGate
	}{
		{
			name:      "selected Pod without gates",
			selected:  true,
			request:   reviewJSON("uid-1", "CREATE", "pods", "", "team-a", podJSON("team-a", "")),
			want:      patchedJSON("uid-1", gatePatchNew),
			wantAsked: []string{"team-a/web-7d9f-*"},
			wantGates: []v1.PodReadinessGate{{ConditionType: GateConditionType}},
		},
		{
			name:      "selected Pod with an empty gate list",
			selected:  true,
			request:   reviewJSON("uid-1b", "CREATE", "pods", "", "team-a", podJSON("team-a", `[]`)),
			want:      patchedJSON("uid-1b", gatePatchNew),
			wantAsked: []string{"team-a/web-7d9f-*"},
			wantGates: []v1.PodReadinessGate{{ConditionType: GateConditionType}},
		},
		{
			name:      "selected Pod with other gates",
			selected:  true,
			request:   reviewJSON("uid-2", "CREATE", "pods", "", "team-a", podJSON("team-a", `[{"conditionType":"example.com/other"}]`)),
			want:      patchedJSON("uid-2", gatePatchAppend),
			wantAsked: []string{"team-a/web-7d9f-*"},
			wantGates: []v1.PodReadinessGate{{ConditionType: "example.com/other"}, {ConditionType: GateConditionType}},
		},
		{
			name:     "Pod already gated",
			selected: true,
			request: reviewJSON("uid-3", "CREATE", "pods", "", "team-a",
				podJSON("team-a", `[{"conditionType":"example.com/other"},{"conditionType":"cloud.tencent.com/load-balancer-backendgroup-ready"}]`)),
			want: allowedJSON("uid-3"),
		},
		{
			name:      "Pod not selected",
			selected:  false,
			request:   reviewJSON("uid-4", "CREATE", "pods", "", "team-a", podJSON("team-a", "")),
			want:      allowedJSON("uid-4"),
			wantAsked: []string{"team-a/web-7d9f-*"},
		},
		{
			name:      "namespace from the request",
			selected:  true,
			request:   reviewJSON("uid-5", "CREATE", "pods", "", "team-b", podJSON("", "")),
			want:      patchedJSON("uid-5", gatePatchNew),
			wantAsked: []string{"team-b/web-7d9f-*"},
			wantGates: []v1.PodReadinessGate{{ConditionType: GateConditionType}},
		},
		{
			name:     "update",
			selected: true,
			request:  reviewJSON("uid-6", "UPDATE", "pods", "", "team-a", podJSON("team-a", "")),
			want:     allowedJSON("uid-6"),
		},
		{
			name:     "delete",
			selected: true,
			request:  reviewJSON("uid-6b", "DELETE", "pods", "", "team-a", "null"),
			want:     allowedJSON("uid-6b"),
		},
		{
			name:     "other resource",
			selected: true,
			request:  reviewJSON("uid-7", "CREATE", "services", "", "team-a", `{"apiVersion":"v1","kind":"Service","metadata":{"name":"web"}}`),
			want:     allowedJSON("uid-7"),
		},
		{
			name:     "pod subresource",
			selected: true,
			request:  reviewJSON("uid-8", "CREATE", "pods", "binding", "team-a", `{"apiVersion":"v1","kind":"Binding","metadata":{"name":"web"}}`),
			want:     allowedJSON("uid-8"),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in, sel := newInjector(t, tc.selected)
			rec := post(t, in, tc.request)
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if got := rec.Body.String(); got != tc.want {
				t.Errorf("response:\n got  %s\n want %s", got, tc.want)
			}
			if diff := cmp.Diff(tc.wantAsked, sel.questions()); diff != "" {
				t.Errorf("Selector asked (-want +got):\n%s", diff)
			}

			var out admissionv1.AdmissionReview
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
				t.Fatalf("decoding the response: %v", err)
			}
			var sent admissionv1.AdmissionReview
			if err := json.Unmarshal([]byte(tc.request), &sent); err != nil {
				t.Fatal(err)
			}
			if out.Response == nil || out.Response.UID != sent.Request.UID || !out.Response.Allowed || out.Request != nil {
				t.Fatalf("response %+v does not answer request %s", out.Response, sent.Request.UID)
			}
			if tc.wantGates == nil {
				if out.Response.Patch != nil || out.Response.PatchType != nil {
					t.Errorf("unexpected patch %s", out.Response.Patch)
				}
				return
			}
			if out.Response.PatchType == nil || *out.Response.PatchType != admissionv1.PatchTypeJSONPatch {
				t.Fatalf("patch type %v", out.Response.PatchType)
			}
			patch, err := jsonpatch.DecodePatch(out.Response.Patch)
			if err != nil {
				t.Fatalf("decoding the patch: %v", err)
			}
			patched, err := patch.Apply(sent.Request.Object.Raw)
			if err != nil {
				t.Fatalf("applying the patch: %v", err)
			}
			var pod v1.Pod
			if err := json.Unmarshal(patched, &pod); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.wantGates, pod.Spec.ReadinessGates); diff != "" {
				t.Errorf("gates after the patch (-want +got):\n%s", diff)
			}
			if len(pod.Spec.Containers) != 1 || pod.Spec.Containers[0].Image != "nginx" || pod.Labels["app"] != "web" {
				t.Errorf("the patch changed more than the gates: %+v", pod)
			}
			// A reinvocation of the webhook on the patched Pod leaves it
			// alone.
			again := post(t, in, reviewJSON("uid-again", "CREATE", "pods", "", "team-a", string(patched)))
			if got, want := again.Body.String(), allowedJSON("uid-again"); got != want {
				t.Errorf("second pass over the patched Pod:\n got  %s\n want %s", got, want)
			}
		})
	}
}

func TestInjectorRefusesWhatItCannotRead(t *testing.T) {
	valid := reviewJSON("uid-1", "CREATE", "pods", "", "team-a", podJSON("team-a", ""))
	padded := func(n int) string { return valid + strings.Repeat(" ", n-len(valid)) }
	tests := []struct {
		name   string
		method string
		body   string
		want   int
	}{
		{"GET", http.MethodGet, "", http.StatusMethodNotAllowed},
		{"PUT", http.MethodPut, valid, http.StatusMethodNotAllowed},
		{"malformed JSON", http.MethodPost, `{"kind":"AdmissionReview",`, http.StatusBadRequest},
		{"empty body", http.MethodPost, ``, http.StatusBadRequest},
		{"not an object", http.MethodPost, `[1,2]`, http.StatusBadRequest},
		{"null", http.MethodPost, `null`, http.StatusBadRequest},
		{"no request", http.MethodPost, `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1"}`, http.StatusBadRequest},
		{"Pod is not an object", http.MethodPost, reviewJSON("uid-2", "CREATE", "pods", "", "team-a", `[1]`), http.StatusBadRequest},
		{"Pod spec of the wrong type", http.MethodPost, reviewJSON("uid-3", "CREATE", "pods", "", "team-a", `{"spec":"oops"}`), http.StatusBadRequest},
		{"Pod missing", http.MethodPost, reviewJSON("uid-4", "CREATE", "pods", "", "team-a", `null`), http.StatusBadRequest},
		{"oversized", http.MethodPost, padded(maxAdmissionReviewBytes + 1), http.StatusBadRequest},
		{"largest accepted", http.MethodPost, padded(maxAdmissionReviewBytes), http.StatusOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in, _ := newInjector(t, true)
			req := httptest.NewRequest(tc.method, "/mutate-pods", strings.NewReader(tc.body))
			rec := httptest.NewRecorder()
			in.ServeHTTP(rec, req) // a panic fails the test
			if rec.Code != tc.want {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.want, rec.Body)
			}
			if tc.want == http.StatusOK {
				if got := rec.Body.String(); got != patchedJSON("uid-1", gatePatchNew) {
					t.Errorf("response %s", got)
				}
				return
			}
			if strings.Contains(rec.Body.String(), `"response"`) {
				t.Errorf("an error answered with a review: %s", rec.Body)
			}
		})
	}
}

// TestInjectorOverHTTP serves the webhook as the API server reaches it.
func TestInjectorOverHTTP(t *testing.T) {
	in, sel := newInjector(t, true)
	srv := httptest.NewServer(in)
	defer srv.Close()
	resp, err := http.Post(srv.URL, "application/json", strings.NewReader(reviewJSON("uid-h", "CREATE", "pods", "", "team-c", podJSON("", ""))))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || buf.String() != patchedJSON("uid-h", gatePatchNew) {
		t.Errorf("status %d, body %s", resp.StatusCode, buf.String())
	}
	if got := sel.questions(); len(got) != 1 || got[0] != "team-c/web-7d9f-*" {
		t.Errorf("Selector asked %q", got)
	}

	resp, err = http.Post(srv.URL, "application/json", strings.NewReader("{"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("malformed review: status %d", resp.StatusCode)
	}
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// touch gives the files a distinct modification time, as a Secret volume
// update does, however fast the test writes.
func touch(t *testing.T, when time.Time, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if err := os.Chtimes(p, when, when); err != nil {
			t.Fatal(err)
		}
	}
}

func servedDER(t *testing.T, r *CertificateReloader) []byte {
	t.Helper()
	cert, err := r.GetCertificate(nil)
	if err != nil {
		t.Fatalf("GetCertificate: %v", err)
	}
	if cert == nil || len(cert.Certificate) == 0 {
		t.Fatal("GetCertificate returned no certificate")
	}
	return cert.Certificate[0]
}

func TestCertificateReloader(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

	first := testcert.Write(t, certFile, keyFile, "first.example", time.Time{}).Raw
	touch(t, base, certFile, keyFile)
	r, err := NewCertificateReloader(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if got := servedDER(t, r); !bytes.Equal(got, first) {
		t.Fatal("not serving the first certificate")
	}

	// Renewed: the new pair is served without a restart.
	second := testcert.Write(t, certFile, keyFile, "second.example", time.Time{}).Raw
	touch(t, base.Add(time.Hour), certFile, keyFile)
	if got := servedDER(t, r); !bytes.Equal(got, second) {
		t.Fatal("not serving the renewed certificate")
	}

	// A corrupt write keeps the last good pair.
	writeFile(t, certFile, []byte("-----BEGIN CERTIFICATE-----\ngarbage\n"))
	touch(t, base.Add(2*time.Hour), certFile)
	if got := servedDER(t, r); !bytes.Equal(got, second) {
		t.Fatal("a corrupt certificate replaced the good one")
	}

	// Half a rotation (a new certificate, the old key) keeps it too.
	otherDir := t.TempDir()
	third := testcert.Write(t, certFile, filepath.Join(otherDir, "unused.key"), "third.example", time.Time{}).Raw
	touch(t, base.Add(3*time.Hour), certFile)
	if got := servedDER(t, r); !bytes.Equal(got, second) {
		t.Fatal("a certificate that does not match the key replaced the good one")
	}

	// Once the rotation is complete, the new pair is served.
	writeFile(t, keyFile, mustRead(t, filepath.Join(otherDir, "unused.key")))
	touch(t, base.Add(4*time.Hour), keyFile)
	if got := servedDER(t, r); !bytes.Equal(got, third) {
		t.Fatal("not serving the certificate of the completed rotation")
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCertificateReloaderFailsAtStartOnABadPair(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if _, err := NewCertificateReloader(certFile, keyFile); err == nil {
		t.Error("missing files: no error")
	}
	testcert.Write(t, certFile, keyFile, "a.example", time.Time{})
	writeFile(t, keyFile, []byte("not a key"))
	if _, err := NewCertificateReloader(certFile, keyFile); err == nil {
		t.Error("corrupt key: no error")
	}
}
