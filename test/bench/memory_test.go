package bench

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"clb-direct/test/cluster"
	"clb-direct/test/env"
)

// TestMemorySmall runs MeasureMemory at 100 Services × 1,000 Pods: the
// controller must sync them all within the time allowed and stay under a
// resident size and a heap that leave room for the 2,000 × 50,000
// scenario's 150 MiB. Measured: 38 MiB resident and 8 MiB of heap in use;
// 45 and 15 with trimmed Pods in a plain informer; 63 and 26 with whole
// Pods. Set CLB_DIRECT_E2E=1 to run it.
func TestMemorySmall(t *testing.T) {
	if os.Getenv("CLB_DIRECT_E2E") != "1" {
		t.Skip("set CLB_DIRECT_E2E=1 to run the controller binary")
	}
	const maxRSS, maxHeap = 48 << 20, 12 << 20
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	repo, err := cluster.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bins, err := env.BuildBinaries(ctx, repo, filepath.Join(dir, "bin"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := MeasureMemory(ctx, MemoryConfig{
		ControllerBin: bins.Controller, EmulatorBin: bins.Emulator,
		Services: 100, Pods: 1000, Dir: filepath.Join(dir, "run"),
		Timeout: time.Minute, Log: testWriter{t},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(res)
	if res.Targets != 1000 {
		t.Errorf("%d targets, want 1000", res.Targets)
	}
	if res.RSSBytes > maxRSS {
		t.Errorf("RSS %.1f MiB, want at most %d MiB", float64(res.RSSBytes)/(1<<20), maxRSS>>20)
	}
	if res.HeapInuseBytes == 0 || res.HeapInuseBytes > maxHeap {
		t.Errorf("heap in use %.1f MiB, want at most %d MiB", float64(res.HeapInuseBytes)/(1<<20), maxHeap>>20)
	}
	// The TkeServiceConfig CRD is not installed; nothing else may be
	// missing.
	if unhandled := slices.DeleteFunc(res.Unhandled, func(r string) bool { return r == "GET /apis/cloud.tencent.com/v1alpha1" }); len(unhandled) > 0 {
		t.Errorf("the stub API did not serve %v", unhandled)
	}
	if len(res.LogErrors) > 0 {
		t.Errorf("the controller logged errors:\n%s", res.LogErrors)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
