package readiness

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	v1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
)

// FuzzInjector posts arbitrary bodies to the webhook, whose Selector
// answers selected. It checks that:
//   - it never panics and never answers a 5xx: a body it cannot read gets a
//     400 with a message;
//   - a 200 is an AdmissionReview of the request's apiVersion and kind,
//     with a response and no request, allowing the Pod, with the request's
//     UID;
//   - a patch comes exactly when a selected Pod without the gate is
//     created, has type JSONPatch, only adds to /spec/readinessGates, and,
//     applied to the Pod as the API server serializes it, adds the gate once
//     and changes nothing else.
func FuzzInjector(f *testing.F) {
	for _, seed := range []struct {
		selected bool
		body     string
	}{
		{true, reviewJSON("uid-1", "CREATE", "pods", "", "team-a", podJSON("team-a", ""))},
		{true, reviewJSON("uid-2", "CREATE", "pods", "", "team-a", podJSON("team-a", `[{"conditionType":"example.com/other"}]`))},
		{true, reviewJSON("uid-3", "CREATE", "pods", "", "team-a", podJSON("team-a", `[{"conditionType":"cloud.tencent.com/load-balancer-backendgroup-ready"}]`))},
		{true, reviewJSON("uid-4", "CREATE", "pods", "", "team-b", podJSON("", `[]`))},
		{false, reviewJSON("uid-5", "CREATE", "pods", "", "team-a", podJSON("team-a", ""))},
		{true, reviewJSON("uid-6", "UPDATE", "pods", "", "team-a", podJSON("team-a", ""))},
		{true, reviewJSON("uid-7", "DELETE", "pods", "", "team-a", "null")},
		{true, reviewJSON("uid-8", "CREATE", "pods", "", "team-a", "null")},
		{true, reviewJSON("uid-9", "CREATE", "pods", "binding", "team-a", `{"kind":"Binding"}`)},
		{true, reviewJSON("uid-10", "CREATE", "services", "", "team-a", `{"kind":"Service"}`)},
		{true, reviewJSON("uid-11", "CREATE", "pods", "", "team-a", `{}`)},
		{true, reviewJSON("uid-12", "CREATE", "pods", "", "team-a", `[]`)},
		{true, reviewJSON("uid-13", "CREATE", "pods", "", "team-a", `{"spec":{"readinessGates":null,"containers":[{"name":"a","ports":[{"containerPort":4294967376}]}]}}`)},
		{true, reviewJSON("uid-14", "CREATE", "pods", "", "team-a", `{"Spec":{"ReadinessGates":[{"conditionType":"x"}]}}`)},
		{true, reviewJSON("uid-15", "CREATE", "pods", "", "チーム", `{"metadata":{"name":"ポッド","labels":{"a":"\u0000"}},"spec":{"readinessGates":[{"conditionType":""}]}}`)},
		{true, reviewJSON(`\"quoted\"`, "CREATE", "pods", "", "team-a", podJSON("team-a", "")) + " trailing"},
		{true, `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1"}`},
		{true, `{"request":null}`},
		{true, `{"request":{"uid":"u","operation":"CREATE","resource":{"version":"v1","resource":"pods"},"object":{"spec":{}}}}`},
		{true, `{"kind":"Pod","apiVersion":"v1","request":{"uid":"u"}}`},
		{true, ""},
		{true, "null"},
		{true, "[]"},
		{true, strings.Repeat(`{"a":`, 5000)},
	} {
		f.Add(seed.selected, []byte(seed.body))
	}
	f.Fuzz(func(t *testing.T, selected bool, body []byte) {
		in := &Injector{Selector: &stubSelector{selected: selected}, Logger: klog.Background().V(100)}
		req := httptest.NewRequest(http.MethodPost, "/mutate-pods", strings.NewReader(string(body)))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		in.ServeHTTP(rec, req)

		// What the answer must be: 400 for a review without a request, or
		// the creation of a Pod that does not decode; 200 otherwise.
		var sent admissionv1.AdmissionReview
		var pod v1.Pod
		wantStatus := http.StatusOK
		switch {
		case json.Unmarshal(body, &sent) != nil || sent.Request == nil:
			wantStatus = http.StatusBadRequest
		case wantsPod(sent.Request) && json.Unmarshal(sent.Request.Object.Raw, &pod) != nil:
			wantStatus = http.StatusBadRequest
		}
		if rec.Code != wantStatus {
			t.Fatalf("status %d, want %d: %s", rec.Code, wantStatus, rec.Body)
		}
		if rec.Code != http.StatusOK {
			if strings.TrimSpace(rec.Body.String()) == "" {
				t.Fatalf("a %d without a message", rec.Code)
			}
			return
		}

		var got admissionv1.AdmissionReview
		if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
			t.Fatalf("the answer is not an AdmissionReview: %v: %s", err, rec.Body)
		}
		if got.TypeMeta != sent.TypeMeta {
			t.Errorf("the answer is a %+v, want the request's %+v", got.TypeMeta, sent.TypeMeta)
		}
		resp := got.Response
		if resp == nil || got.Request != nil {
			t.Fatalf("the answer has response %v and request %v, want a response only", resp, got.Request)
		}
		if resp.UID != sent.Request.UID || !resp.Allowed || resp.Result != nil {
			t.Fatalf("response %+v, want UID %q, allowed, no result", resp, sent.Request.UID)
		}
		if (resp.PatchType != nil) != (resp.Patch != nil) || (resp.PatchType != nil && *resp.PatchType != admissionv1.PatchTypeJSONPatch) {
			t.Fatalf("patch %q of type %v", resp.Patch, resp.PatchType)
		}

		if !wantsPod(sent.Request) {
			if resp.Patch != nil {
				t.Fatalf("a patch for a request that is not a Pod's creation: %s", resp.Patch)
			}
			return
		}
		if wantPatch := selected && !hasGate(&pod); wantPatch != (resp.Patch != nil) {
			t.Fatalf("selected %v, gates %v: patch %q", selected, pod.Spec.ReadinessGates, resp.Patch)
		}
		if resp.Patch == nil {
			return
		}
		checkGatePatch(t, &pod, resp.Patch)
	})
}

// wantsPod says whether a request is the creation of a Pod, the only one
// the webhook reads the object of.
func wantsPod(r *admissionv1.AdmissionRequest) bool {
	return r.Resource == podResource && r.SubResource == "" && r.Operation == admissionv1.Create
}

// checkGatePatch checks that patch only adds to /spec/readinessGates and,
// applied to pod as the API server serializes it, adds the gate once and
// changes nothing else.
func checkGatePatch(t *testing.T, pod *v1.Pod, patch []byte) {
	t.Helper()
	var ops []map[string]any
	if err := json.Unmarshal(patch, &ops); err != nil || len(ops) == 0 {
		t.Fatalf("patch %s is not a list of operations: %v", patch, err)
	}
	for _, op := range ops {
		if op["op"] != "add" || (op["path"] != "/spec/readinessGates" && op["path"] != "/spec/readinessGates/-") {
			t.Fatalf("patch %s touches more than /spec/readinessGates", patch)
		}
	}
	decoded, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		t.Fatalf("patch %s is not a JSON patch: %v", patch, err)
	}
	original, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	patched, err := decoded.Apply(original)
	if err != nil {
		t.Fatalf("patch %s does not apply to %s: %v", patch, original, err)
	}
	var before, after v1.Pod
	if err := json.Unmarshal(original, &before); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(patched, &after); err != nil {
		t.Fatalf("the patched Pod does not decode: %v: %s", err, patched)
	}
	wantGates := append(slices.Clone(before.Spec.ReadinessGates), v1.PodReadinessGate{ConditionType: GateConditionType})
	if !reflect.DeepEqual(after.Spec.ReadinessGates, wantGates) {
		t.Fatalf("patched gates %v, want %v", after.Spec.ReadinessGates, wantGates)
	}
	after.Spec.ReadinessGates = before.Spec.ReadinessGates
	if !reflect.DeepEqual(after, before) {
		t.Fatalf("the patch changes more than the gates:\n%s\n%s", original, patched)
	}
}
