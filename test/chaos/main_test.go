// Package chaos is the fault-injection suite: against a real
// kube-apiserver and the CLB emulator, while Services and Pods churn under
// continuous traffic through the CLB data plane, the CLB API fails,
// throttles, holds CLBs "in operation", fails tasks and parts of batches,
// loses responses and goes away for 30 s; the controller is SIGKILLed at
// random and right after its writes; its API server connections break and
// its watches resume on a compacted etcd revision. Once the faults stop,
// every Service's CLB must match its desired state exactly within a bound,
// nothing may leak, nothing foreign may have been touched, no Pod may
// have been deregistered because of an error, and the Services whose Pods
// never changed must not have lost a single request.
//
// Set CLB_DIRECT_E2E=1 to run it (make chaos, make chaos-short):
//
//	CLB_DIRECT_E2E=1 go test -count=1 -v ./test/chaos/ -chaos.duration=5m
package chaos

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"clb-direct/test/env"
)

var (
	faultDuration = flag.Duration("chaos.duration", 90*time.Second, "how long faults are injected")
	convergeBound = flag.Duration("chaos.converge", 60*time.Second, "after the faults stop, the bound within which every CLB must match its Service")
	seedFlag      = flag.Uint64("chaos.seed", 0, "seed of the churn and the fault schedule (0: from the clock)")
)

// e is the installation; seed the run's seed.
var (
	e    *env.Env
	seed uint64
)

func TestMain(m *testing.M) {
	flag.Parse()
	if os.Getenv("CLB_DIRECT_E2E") != "1" {
		fmt.Println("chaos: skipped; set CLB_DIRECT_E2E=1 (make chaos) to run against a real kube-apiserver")
		os.Exit(m.Run())
	}
	seed = *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	dir, err := os.MkdirTemp("", "clb-direct-chaos-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	start := time.Now()
	e, err = env.Start(ctx, env.Options{
		Dir: dir, Log: os.Stderr,
		EmulatorArgs: []string{"-v", "2", "--extra-credential", userSecretID + ":" + userSecretKey, "--seed", strconv.FormatUint(seed, 10)},
		// Without the watch cache, watches of Pods and Services are
		// served from etcd: one that resumes on a compacted revision gets
		// 410 Gone ("too old resource version"), as a watch does in a busy
		// cluster when its cache window has moved on.
		APIServerFlags: []string{"--watch-cache-sizes=pods#0,services#0"},
	})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos: starting the environment:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "chaos: environment up in %s (logs in %s)\n", time.Since(start).Round(time.Millisecond), dir)
	code := m.Run()
	e.Stop()
	if code == 0 && os.Getenv("CLB_DIRECT_E2E_KEEP") == "" {
		os.RemoveAll(dir)
	} else {
		fmt.Fprintln(os.Stderr, "chaos: logs kept in", dir)
	}
	os.Exit(code)
}

func requireE2E(t *testing.T) {
	t.Helper()
	if e == nil {
		t.Skip("set CLB_DIRECT_E2E=1 to run the fault-injection suite")
	}
}
