// Package e2e runs clb-direct against a real kube-apiserver and the CLB
// emulator through the official SDK. Set CLB_DIRECT_E2E=1 to run it (make
// e2e does); the first run builds the control plane (several minutes).
package e2e

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"clb-direct/test/env"
)

// e is the installation every test shares; each test works in its own
// namespace and runs its own controller.
var e *env.Env

func TestMain(m *testing.M) {
	if os.Getenv("CLB_DIRECT_E2E") != "1" {
		fmt.Println("e2e: skipped; set CLB_DIRECT_E2E=1 (make e2e) to run against a real kube-apiserver")
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "clb-direct-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	start := time.Now()
	e, err = env.Start(ctx, env.Options{Dir: dir, Log: os.Stderr, EmulatorArgs: []string{"-v", "2"}, AuditController: true})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: starting the environment:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "e2e: environment up in %s (logs in %s)\n", time.Since(start).Round(time.Millisecond), dir)
	code := m.Run()
	// Last, once every test's controller has stopped: what the controller
	// did with the API server against what deploy/ grants it.
	if !rbacCheck(os.Stdout, code == 0) {
		code = 1
	}
	e.Stop()
	if code == 0 && os.Getenv("CLB_DIRECT_E2E_KEEP") == "" {
		os.RemoveAll(dir)
	} else {
		fmt.Fprintln(os.Stderr, "e2e: logs kept in", dir)
	}
	os.Exit(code)
}

func requireE2E(t *testing.T) {
	t.Helper()
	if e == nil {
		t.Skip("set CLB_DIRECT_E2E=1 to run end-to-end tests")
	}
}
