package tencent

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	testingclock "k8s.io/utils/clock/testing"

	"clb-direct/cloud"
)

func writeJSONCredentials(t *testing.T, path, id, key string) {
	t.Helper()
	data, err := json.Marshal(credentialsFile{SecretID: id, SecretKey: key})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// writeSecretVolume writes credentials as the kubelet does a Secret volume:
// the files are symlinks into a timestamped directory that an update
// replaces by swapping the ..data link.
func writeSecretVolume(t *testing.T, dir, id, key string) {
	t.Helper()
	data := filepath.Join(dir, fmt.Sprintf("..%d", time.Now().UnixNano()))
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, value := range map[string]string{EnvSecretID: id, EnvSecretKey: key + "\n"} {
		if err := os.WriteFile(filepath.Join(data, name), []byte(value), 0o600); err != nil {
			t.Fatal(err)
		}
		link := filepath.Join(dir, name)
		if _, err := os.Lstat(link); err != nil {
			if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
				t.Fatal(err)
			}
		}
	}
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(data), tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
}

func TestCredentialRotation(t *testing.T) {
	for _, tc := range []struct {
		name  string
		path  func(t *testing.T) string
		write func(t *testing.T, path, id, key string)
	}{
		{"JSON file", func(t *testing.T) string { return filepath.Join(t.TempDir(), "credentials.json") }, writeJSONCredentials},
		{"Secret volume", func(t *testing.T) string { return t.TempDir() }, writeSecretVolume},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeAPI(t)
			f.handle("DescribeQuota", ok)
			path := tc.path(t)
			tc.write(t, path, "AKIDfirst0000000000", "firstSecretKey000000")
			c := newTestCloud(t, f, func(o *Options) { o.CredentialsFile, o.CredentialsRefresh = path, time.Nanosecond })

			call := func() string {
				t.Helper()
				if _, err := c.DescribeQuota(t.Context()); err != nil {
					t.Fatal(err)
				}
				calls := f.callsOf("DescribeQuota")
				return calls[len(calls)-1].SecretID
			}
			if id := call(); id != "AKIDfirst0000000000" {
				t.Fatalf("signed with %q, want the file's first secret ID (not the environment's)", id)
			}
			tc.write(t, path, "AKIDsecond000000000", "secondSecretKey00000")
			if id := call(); id != "AKIDsecond000000000" {
				t.Errorf("after rotation signed with %q, want the new secret ID", id)
			}
		})
	}
}

func TestUnreadableCredentialsKeepTheLastGood(t *testing.T) {
	f := newFakeAPI(t)
	f.handle("DescribeQuota", ok)
	path := filepath.Join(t.TempDir(), "credentials.json")
	writeJSONCredentials(t, path, "AKIDfirst0000000000", "firstSecretKey000000")
	c := newTestCloud(t, f, func(o *Options) { o.CredentialsFile, o.CredentialsRefresh = path, time.Nanosecond })
	ctx, logs := loggingContext(t)

	if err := os.WriteFile(path, []byte(`{"secretId": "AKIDhalf`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DescribeQuota(ctx); err != nil {
		t.Fatal(err)
	}
	if id := f.callsOf("DescribeQuota")[0].SecretID; id != "AKIDfirst0000000000" {
		t.Errorf("signed with %q, want the last good secret ID", id)
	}
	if !strings.Contains(logs.String(), "Keeping the current CLB API credentials") || strings.Contains(logs.String(), "AKIDhalf") {
		t.Errorf("log %q: want the failure logged without the content", logs.String())
	}
}

func TestCredentialsFileIsReadAtMostEveryRefresh(t *testing.T) {
	path := filepath.Join(t.TempDir(), "credentials.json")
	writeJSONCredentials(t, path, "AKIDfirst0000000000", "k1")
	clk := testingclock.NewFakePassiveClock(time.Now())
	s, err := newCredentialSource(path, 5*time.Second, clk)
	if err != nil {
		t.Fatal(err)
	}
	writeJSONCredentials(t, path, "AKIDsecond000000000", "k2")
	clk.SetTime(clk.Now().Add(4 * time.Second))
	if got := s.get(t.Context()); got.secretID != "AKIDfirst0000000000" {
		t.Errorf("after 4s: %s, want the first credentials still", got.secretID)
	}
	clk.SetTime(clk.Now().Add(time.Second))
	if got := s.get(t.Context()); got.secretID != "AKIDsecond000000000" || got.secretKey != "k2" {
		t.Errorf("after 5s: %s, want the second credentials", got.secretID)
	}
}

func TestMissingCredentials(t *testing.T) {
	t.Setenv(EnvSecretID, "")
	t.Setenv(EnvSecretKey, "")
	if _, err := New(Options{Region: "ap-test"}); err == nil || !strings.Contains(err.Error(), EnvSecretKey) {
		t.Errorf("New without credentials: %v, want an error naming %s", err, EnvSecretKey)
	}
	path := filepath.Join(t.TempDir(), "credentials.json")
	writeJSONCredentials(t, path, "AKIDonly", "")
	if _, err := New(Options{Region: "ap-test", CredentialsFile: path}); err == nil || !strings.Contains(err.Error(), "secret key") {
		t.Errorf("New with a file without key: %v, want an error", err)
	}
	if err := os.WriteFile(path, []byte(`not json `+testSecretKey), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{Region: "ap-test", CredentialsFile: path}); err == nil || strings.Contains(err.Error(), testSecretKey) {
		t.Errorf("New with a broken file: %v, want an error without the content", err)
	}
}

func TestCredentialsNeverPrint(t *testing.T) {
	creds := credentials{secretID: testSecretID, secretKey: testSecretKey, token: testToken}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d", "%T %v"} {
		out := fmt.Sprintf(verb, creds) + fmt.Sprintf(verb, &creds) + fmt.Sprintf(verb, []any{creds})
		if strings.Contains(out, testSecretKey) || strings.Contains(out, testSecretID) || strings.Contains(out, testToken) ||
			strings.Contains(out, fmt.Sprintf("%x", testSecretKey)) {
			t.Errorf("%s printed a credential: %s", verb, out)
		}
	}
	//lint:ignore SA9005 that marshalling shows nothing is what this checks
	data, _ := json.Marshal(creds)
	if strings.Contains(string(data), testSecretKey) {
		t.Errorf("JSON printed a credential: %s", data)
	}
	if got := creds.redact("id " + testSecretID + " key " + testSecretKey + " token " + testToken); strings.Contains(got, "test") {
		t.Errorf("redact left a credential: %s", got)
	}
}

// TestNoSecretInLogsOrErrors runs every method through successes and every
// kind of failure against a server that echoes the whole request, headers
// included, into its error messages, and checks that neither the log (at
// V(10)) nor any error carries a credential.
func TestNoSecretInLogsOrErrors(t *testing.T) {
	f := newFakeAPI(t)
	path := filepath.Join(t.TempDir(), "credentials.json")
	data, _ := json.Marshal(credentialsFile{SecretID: testSecretID, SecretKey: testSecretKey, Token: testToken})
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	c := newTestCloud(t, f, func(o *Options) { o.CredentialsFile, o.CredentialsRefresh = path, time.Nanosecond })
	ctx, logs := loggingContext(t)

	echo := func(code string) handler {
		return func(body map[string]any, _ int) any {
			return apiError{Code: code, Message: fmt.Sprintf("echo %v %s %s %s", body, testSecretKey, testToken, testSecretID)}
		}
	}
	backends := []cloud.ListenerBackend{podBackend("lbl-1", "10.0.0.1", 80, 10)}
	methods := map[string]func() error{
		"DescribeLoadBalancers": func() error {
			_, err := c.DescribeLoadBalancers(ctx, cloud.LoadBalancerQuery{Tags: map[string]string{"k": "v"}})
			return err
		},
		"CreateLoadBalancer": func() error {
			_, err := c.CreateLoadBalancer(ctx, cloud.LoadBalancerSpec{Name: "n", ClientToken: "t"})
			return err
		},
		"DeleteLoadBalancer": func() error { return c.DeleteLoadBalancer(ctx, "lb-1") },
		"DescribeListeners": func() error {
			_, err := c.DescribeListeners(ctx, "lb-1")
			return err
		},
		"CreateListener": func() error {
			_, err := c.CreateListener(ctx, "lb-1", cloud.ListenerSpec{Protocol: cloud.ProtocolTCP, Port: 80})
			return err
		},
		"ModifyListener": func() error { return c.ModifyListener(ctx, "lb-1", "lbl-1", cloud.ListenerSpec{}) },
		"DeleteListener": func() error { return c.DeleteListener(ctx, "lb-1", "lbl-1") },
		"DescribeTargets": func() error {
			_, err := c.DescribeBackends(ctx, "lb-1")
			return err
		},
		"BatchRegisterTargets":    func() error { return c.RegisterBackends(ctx, "lb-1", backends) },
		"BatchDeregisterTargets":  func() error { return c.DeregisterBackends(ctx, "lb-1", backends) },
		"BatchModifyTargetWeight": func() error { return c.ModifyBackendWeights(ctx, "lb-1", backends) },
		"DescribeTargetHealth": func() error {
			_, err := c.DescribeBackendHealth(ctx, []string{"lb-1"})
			return err
		},
		"DescribeQuota": func() error {
			_, err := c.DescribeQuota(ctx)
			return err
		},
	}
	var errs []string
	run := func(scenario string) {
		for action, call := range methods {
			if err := call(); err != nil {
				errs = append(errs, fmt.Sprintf("%s %s: %v | %+v | %#v", scenario, action, err, err, err))
			}
		}
	}
	// The API's errors, terminal and retried.
	for _, code := range []string{"AuthFailure.SecretIdNotFound", cloud.CodeRequestLimitExceeded, cloud.CodeInternalError} {
		for action := range methods {
			f.handle(action, echo(code))
		}
		run(code)
	}
	// Network failures, and responses that are not JSON and get quoted.
	for action := range methods {
		f.handle(action, func(map[string]any, int) any { return hangUp{} })
	}
	run("hang up")
	for action := range methods {
		f.handle(action, func(body map[string]any, _ int) any {
			return raw(fmt.Sprintf("<html>%v %s</html>", body, testSecretKey))
		})
	}
	run("not JSON")
	// Failed tasks, and successes.
	for action := range methods {
		f.handle(action, ok)
	}
	f.handle("DescribeTaskStatus", echo(cloud.CodeInternalError))
	run("task status error")
	f.handle("DescribeTaskStatus", func(map[string]any, int) any { return map[string]any{"Status": taskFailed} })
	run("task failed")
	f.handle("DescribeTaskStatus", func(map[string]any, int) any { return map[string]any{"Status": taskDone} })
	run("success")

	if len(errs) < 5*len(methods) {
		t.Fatalf("only %d errors: the scenarios did not fail as meant", len(errs))
	}
	log := logs.String()
	if !strings.Contains(log, "CLB API call") || !strings.Contains(log, "Retrying CLB API call") {
		t.Fatalf("the log lacks the calls; is V(4) logging on? %q", log)
	}
	for _, secret := range []string{testSecretKey, testToken, testSecretID} {
		if strings.Contains(log, secret) {
			t.Errorf("the log contains a credential: %s", excerpt(log, secret))
		}
		for _, e := range errs {
			if strings.Contains(e, secret) {
				t.Errorf("an error contains a credential: %s", e)
			}
		}
	}
}

func excerpt(s, sub string) string {
	i := strings.Index(s, sub)
	return s[max(0, i-200):min(len(s), i+len(sub)+50)]
}

// TestConcurrentCallsWhileRotating runs calls in parallel while the
// credentials file changes, for the race detector: limiters, the credential
// source and the per-call SDK clients are shared.
func TestConcurrentCallsWhileRotating(t *testing.T) {
	f := newFakeAPI(t)
	f.handle("DescribeQuota", ok)
	f.handle("BatchRegisterTargets", ok)
	path := filepath.Join(t.TempDir(), "credentials.json")
	writeJSONCredentials(t, path, "AKIDfirst0000000000", "firstSecretKey000000")
	c := newTestCloud(t, f, func(o *Options) { o.CredentialsFile, o.CredentialsRefresh, o.RateLimit = path, time.Nanosecond, 1000 })

	ctx, _ := loggingContext(t)
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 20 {
		wg.Go(func() {
			for range 5 {
				if _, err := c.DescribeQuota(ctx); err != nil {
					errs <- err
				}
				if err := c.RegisterBackends(ctx, "lb-1", []cloud.ListenerBackend{podBackend("lbl-1", "10.0.0.1", int32(i+1), 1)}); err != nil {
					errs <- err
				}
			}
		})
	}
	for i := range 10 {
		writeJSONCredentials(t, path, fmt.Sprintf("AKIDrotated%08d", i), "rotatedSecretKey0000")
		time.Sleep(time.Millisecond)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := len(f.callsOf("DescribeQuota")); n != 100 {
		t.Errorf("%d DescribeQuota calls, want 100", n)
	}
}
