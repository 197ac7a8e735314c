package cluster

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// StartForTest starts a cluster for t and stops it when t ends. The logs
// go to a directory of their own, which is kept, and whose files' ends
// are printed, when t has failed. With $CLB_DIRECT_E2E_LOGS set, they go
// to <that>/<test name> and are always kept.
func StartForTest(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if dir := os.Getenv("CLB_DIRECT_E2E_LOGS"); dir != "" && opts.LogDir == "" {
		opts.LogDir = filepath.Join(dir, strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()))
	}
	ownLogs := opts.LogDir == ""
	if ownLogs {
		dir, err := os.MkdirTemp("", "clb-direct-logs-")
		if err != nil {
			t.Fatal(err)
		}
		opts.LogDir = dir
	}
	// Not t.Context(): it is cancelled before cleanups run, which would
	// stop the cluster before the logs can be reported.
	c, err := Start(context.Background(), opts)
	if err != nil {
		if ownLogs {
			t.Logf("component logs kept in %s", opts.LogDir)
		}
		t.Fatalf("start cluster: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			files := c.LogFiles()
			names := make([]string, 0, len(files))
			for n := range files {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, n := range names {
				t.Logf("%s log %s ends with:\n%s", n, files[n], tailFile(files[n], 15))
			}
			t.Logf("component logs kept in %s", c.LogDir())
		}
		c.Stop()
		if ownLogs && !t.Failed() {
			os.RemoveAll(opts.LogDir)
		}
	})
	return c
}
