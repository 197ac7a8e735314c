package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	clb "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/clb/v20180317"
	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common"
	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/profile"
)

// The test binary runs as clb-emulator when this is set, so that the tests
// exercise the real main, flags and signal handling in a child process.
const runAsMain = "CLB_EMULATOR_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runAsMain) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func emulatorCmd(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), runAsMain+"=1")
	return cmd
}

// startEmulator runs the binary with args until the test ends and returns
// it, the address it serves on, and its stderr.
func startEmulator(t *testing.T, args ...string) (*exec.Cmd, string, *bytes.Buffer) {
	t.Helper()
	cmd := emulatorCmd(args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &bytes.Buffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	lines := make(chan string)
	go func() {
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			lines <- s.Text()
		}
		close(lines)
	}()
	select {
	case line := <-lines:
		addr, ok := strings.CutPrefix(line, "clb-emulator listening on ")
		if !ok {
			t.Fatalf("first line %q, want the listening line", line)
		}
		return cmd, addr, stderr
	case <-time.After(10 * time.Second):
		t.Fatalf("no listening line; stderr:\n%s", stderr.String())
	}
	return nil, "", nil
}

func TestServesUntilSIGTERM(t *testing.T) {
	cmd, addr, stderr := startEmulator(t, "--listen", "127.0.0.1:0", "--secret-id", "AKIDmain", "--secret-key", "main-key",
		"--region", "ap-shanghai", "--data-plane", "--vip-cidr", "127.201.0.0/16", "--health-check-time-scale", "0.1")

	cpf := profile.NewClientProfile()
	cpf.HttpProfile.Endpoint, cpf.HttpProfile.Scheme = addr, "http"
	c, err := clb.NewClient(common.NewCredential("AKIDmain", "main-key"), "ap-shanghai", cpf)
	if err != nil {
		t.Fatal(err)
	}
	req := clb.NewCreateLoadBalancerRequest()
	req.LoadBalancerType = new("OPEN")
	resp, err := c.CreateLoadBalancer(req)
	if err != nil {
		t.Fatalf("CreateLoadBalancer through the binary: %v", err)
	}
	if len(resp.Response.LoadBalancerIds) != 1 {
		t.Errorf("CreateLoadBalancer returned %v", resp.Response.LoadBalancerIds)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v; stderr:\n%s", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("still running 10s after SIGTERM")
	}
}

func TestRefusesIncompleteConfig(t *testing.T) {
	cmd := emulatorCmd("--listen", "127.0.0.1:0", "--region", "ap-shanghai")
	cmd.Env = append(cmd.Env, "TENCENTCLOUD_SECRET_ID=", "TENCENTCLOUD_SECRET_KEY=")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "SecretID and SecretKey are required") {
		t.Errorf("without credentials: %v, output %q; want a failure naming them", err, out)
	}
}

func TestInstanceFlag(t *testing.T) {
	_, addr, _ := startEmulator(t, "--listen", "127.0.0.1:0", "--secret-id", "AKIDmain", "--secret-key", "main-key",
		"--region", "ap-shanghai", "--instance", "ins-aaaaaaaa=127.0.1.1", "--instance", "ins-bbbbbbbb=127.0.1.2")
	resp, err := http.Get("http://" + addr + "/admin/instances")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"ins-aaaaaaaa": "127.0.1.1", "ins-bbbbbbbb": "127.0.1.2"}; !maps.Equal(got, want) {
		t.Errorf("GET /admin/instances after --instance flags: %v, want %v", got, want)
	}

	for _, bad := range []string{"ins-aaaaaaaa", "=127.0.1.1", "ins-aaaaaaaa=nope"} {
		cmd := emulatorCmd("--listen", "127.0.0.1:0", "--secret-id", "AKIDmain", "--secret-key", "main-key",
			"--region", "ap-shanghai", "--instance", bad)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "-instance") {
			t.Errorf("--instance %q: %v, output %q; want a failure naming the flag", bad, err, out)
		}
	}
}
