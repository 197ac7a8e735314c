package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"clb-direct/cloud/emulator"
	"clb-direct/controller"
	"clb-direct/test/env"
)

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// startEmulator starts an emulator of the test's own (an empty account, its
// own call log and faults), stopped when the test ends, after the fixture's
// cleanup, which still needs it.
func startEmulator(t *testing.T, extra ...string) *env.Emulator {
	t.Helper()
	requireE2E(t)
	em, err := e.StartEmulator(t.Context(), extra...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = em.Process.Stop(5 * time.Second) })
	return em
}

// secret is a credential the controller must never print.
type secret struct{ what, value string }

// leaks returns where in text any of the secrets appears: whole, base64-
// encoded, or any 16 characters of its random part (a truncated print).
func leaks(text string, secrets []secret, randomPart func(string) string) []string {
	var found []string
	for _, s := range secrets {
		needles := []string{s.value, base64.StdEncoding.EncodeToString([]byte(s.value))}
		r := randomPart(s.value)
		for i := 0; i+16 <= len(r); i++ {
			needles = append(needles, r[i:i+16])
		}
		for _, n := range needles {
			if i := strings.Index(text, n); i >= 0 {
				found = append(found, fmt.Sprintf("%s (%q) at offset %d: …%s…", s.what, n, i, text[max(0, i-80):min(len(text), i+len(n)+40)]))
				break
			}
		}
	}
	return found
}

// hexDumpLine is a line of encoding/hex.Dump's output.
var hexDumpLine = regexp.MustCompile(`^\s*[0-9a-f]{8}  ((?:[0-9a-f]{2} {1,2}){1,16}) *\|`)

// decodeHexDumps returns the bytes of every hex dump in text, one dump a
// line.
func decodeHexDumps(text string) string {
	var out strings.Builder
	inDump := false
	for _, line := range strings.Split(text, "\n") {
		m := hexDumpLine.FindStringSubmatch(line)
		if m == nil {
			if inDump {
				out.WriteByte('\n')
			}
			inDump = false
			continue
		}
		inDump = true
		b, err := hex.DecodeString(strings.ReplaceAll(m[1], " ", ""))
		if err == nil {
			out.Write(b)
		}
	}
	return out.String()
}

func httpBody(url string) string {
	client := &http.Client{Timeout: 3 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return "GET " + url + ": " + err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

// clusterObjects is every Event (both APIs), Service, Pod, Lease and
// TkeServiceConfig in the cluster, as JSON.
func (f *fixture) clusterObjects() map[string]string {
	f.t.Helper()
	out := map[string]string{}
	add := func(what string, list any, err error) {
		if err != nil {
			f.t.Fatalf("listing %s: %v", what, err)
		}
		data, err := json.Marshal(list)
		if err != nil {
			f.t.Fatal(err)
		}
		out[what] = string(data)
	}
	ctx, all := context.Background(), metav1.ListOptions{}
	evs, err := e.Admin.EventsV1().Events("").List(ctx, all)
	add("events (events.k8s.io)", evs, err)
	coreEvs, err := e.Admin.CoreV1().Events("").List(ctx, all)
	add("events (v1)", coreEvs, err)
	svcs, err := e.Admin.CoreV1().Services("").List(ctx, all)
	add("Services", svcs, err)
	pods, err := e.Admin.CoreV1().Pods("").List(ctx, all)
	add("Pods", pods, err)
	leases, err := e.Admin.CoordinationV1().Leases("").List(ctx, all)
	add("Leases", leases, err)
	configs, err := f.serviceConfigs().List(ctx, all)
	add("TkeServiceConfigs", configs, err)
	return out
}

// Bound: none. The controller reads its credentials as deploy/ gives them
// (a Secret volume, --cloud-credentials-file) and goes through an
// authentication failure with a wrong key, a rotation to the right key and
// session token, throttling, a terminal error whose message echoes the
// credentials (as a misbehaving endpoint might), transient errors, the
// deletion of the CLB, and a SIGQUIT goroutine dump. Then neither the
// SecretKey (right or wrong) nor the session tokens appear in its log
// (at -v=10, which also logs the Kubernetes API traffic), in any Event,
// Service, Pod, Lease or TkeServiceConfig, or in /metrics, /healthz or
// /readyz. The SecretId may appear: it is not a secret (the emulator's call
// log names callers by it).
func TestCredentialsNeverLeak(t *testing.T) {
	requireE2E(t)
	// Distinctive values: a prefix, then 32 random hex characters.
	secretID := "AKIDleakcanary" + randomHex(8)
	secretKey := "KEYcanary" + randomHex(16)
	wrongKey := "WRONGcanary" + randomHex(16)
	token := "TOKENcanary" + randomHex(16)
	rotatedToken := "ROTATEDcanary" + randomHex(16)
	secrets := []secret{{"the SecretKey", secretKey}, {"the wrong SecretKey", wrongKey},
		{"the session token", token}, {"the rotated session token", rotatedToken}}
	randomPart := func(s string) string { return s[len(s)-32:] }

	em := startEmulator(t, "--extra-credential", secretID+":"+secretKey)
	// All goroutines in the SIGQUIT dump, not just one.
	t.Setenv("GOTRACEBACK", "all")
	f := newFixture(t, env.ControllerOptions{
		Emulator: em, SecretID: secretID, SecretKey: wrongKey, SessionToken: token, CredentialsFile: true,
		Args: []string{"-v", "10", "--terminal-error-retry-period", "2s"},
	})
	ctrl := f.ctrl

	// The checks grep what they are given: they must find a secret where
	// there is one. The credentials volume holds the first key and token.
	var volume strings.Builder
	_ = filepath.WalkDir(filepath.Join(e.Dir, "controllers", f.ns, "credentials"), func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			data, _ := os.ReadFile(path)
			volume.Write(data)
		}
		return nil
	})
	if got := leaks(volume.String()+secretKey+rotatedToken, secrets, randomPart); len(got) != len(secrets) {
		t.Fatalf("the leak check finds %d of the %d secrets in a text holding them all: %q", len(got), len(secrets), got)
	}

	// 1. A wrong SecretKey: every call fails authentication.
	f.createDeployment("web", 2)
	f.createService("web", direct)
	f.waitEvent(30*time.Second, "web", corev1.EventTypeWarning, controller.ReasonSyncFailed, "AuthFailure")

	// 2. The Secret is rotated to the right key and a new token: the
	// controller re-reads it and converges.
	if err := ctrl.RotateCredentials(secretID, secretKey, rotatedToken); err != nil {
		t.Fatal(err)
	}
	f.expectBackends("web", "web", 2, 30*time.Second)

	// 3. Throttling, retried inside the adapter.
	if err := em.SetFaults(f.ctx, emulator.FaultSettings{FailNext: &emulator.FailNext{Action: "BatchRegisterTargets", Count: 2, Code: "RequestLimitExceeded"}}); err != nil {
		t.Fatal(err)
	}
	f.scale("web", 3)
	f.expectBackends("web", "web", 3, 30*time.Second)

	// 4. A terminal error whose message quotes the credentials back.
	echo := fmt.Sprintf("not allowed for SecretKey=%s Token=%s SecretId=%s", secretKey, rotatedToken, secretID)
	if err := em.SetFaults(f.ctx, emulator.FaultSettings{FailNext: &emulator.FailNext{Action: "BatchRegisterTargets", Count: 1, Code: "UnauthorizedOperation", Message: echo}}); err != nil {
		t.Fatal(err)
	}
	f.scale("web", 4)
	note := f.waitEvent(30*time.Second, "web", corev1.EventTypeWarning, controller.ReasonSyncFailed, "UnauthorizedOperation")
	t.Logf("the terminal error's event: %s", note)
	f.expectBackends("web", "web", 4, 30*time.Second)

	// 5. Transient errors, retried.
	if err := em.SetFaults(f.ctx, emulator.FaultSettings{FailNext: &emulator.FailNext{Action: "BatchDeregisterTargets", Count: 2, Code: "InternalError", Message: echo}}); err != nil {
		t.Fatal(err)
	}
	f.scale("web", 2)
	f.expectBackends("web", "web", 2, 30*time.Second)

	// What the controller wrote to the cluster and serves, then the CLB's
	// deletion and a goroutine dump into its log.
	texts := f.clusterObjects()
	texts["/metrics"] = httpBody("http://" + ctrl.MetricsAddr + "/metrics")
	texts["/healthz"] = httpBody("http://" + ctrl.HealthAddr + "/healthz")
	texts["/readyz"] = httpBody("http://" + ctrl.HealthAddr + "/readyz")
	if !strings.Contains(texts["/metrics"], `clbdirect_cloud_api_calls_total{action="BatchRegisterTargets",result="terminal"} 1`) {
		t.Errorf("/metrics does not count the terminal error: is it the controller's?")
	}
	f.deleteService("web", 30*time.Second)
	if err := syscall.Kill(ctrl.Pid(), syscall.SIGQUIT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ctrl.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the controller did not exit on SIGQUIT")
	}
	// It died holding the Lease: free it, so the next test's controller
	// need not wait for it to expire.
	if err := e.Admin.CoordinationV1().Leases(env.ControllerNamespace).Delete(f.ctx, "clb-direct", metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Error(err)
	}
	logData, err := os.ReadFile(ctrl.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	log := string(logData)
	texts["the controller's log "+ctrl.LogPath] = log
	// client-go logs protobuf bodies as hex dumps, 16 bytes a line: read
	// them whole.
	texts["the bodies hex-dumped in the controller's log"] = decodeHexDumps(log)

	// Each path was taken.
	calls, err := em.Calls(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	codes := map[string]int{}
	for _, c := range calls {
		if c.Client == secretID {
			codes[c.ErrorCode]++
		}
	}
	for _, want := range []string{"", "RequestLimitExceeded", "UnauthorizedOperation", "InternalError"} {
		if codes[want] == 0 {
			t.Errorf("the emulator answered no call of %s with %q (codes: %v)", secretID, want, codes)
		}
	}
	for what, want := range map[string]string{
		"the authentication failure":          "AuthFailure",
		"the rotation":                        "CLB API credentials changed",
		"the Kubernetes API traffic (-v=10)":  "Request Body",
		"the CLB's deletion":                  "Deleted CLB",
		"the SIGQUIT dump of every goroutine": "goroutine ",
		"the terminal error, redacted":        "SecretKey=[REDACTED]",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("the controller's log has no %s (%q)", what, want)
		}
	}
	if !strings.Contains(log, "SIGQUIT") {
		t.Errorf("the controller's log has no SIGQUIT dump")
	}
	if !strings.Contains(texts["the bodies hex-dumped in the controller's log"], "Deleted CLB") {
		t.Errorf("the hex-dumped bodies in the controller's log do not hold the event of the CLB's deletion: are they decoded?")
	}

	for where, text := range texts {
		for _, leak := range leaks(text, secrets, randomPart) {
			t.Errorf("%s shows %s", where, leak)
		}
	}
	if strings.Contains(log, secretID) {
		t.Logf("note: the SecretId appears in the controller's log (allowed)")
	}
	f.ctrl = nil // it is gone, after the SIGQUIT: nothing left to stop
}
