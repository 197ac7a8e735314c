// Command bench runs the scale benchmark (make bench): the controller binary
// against a real kube-apiserver and the CLB emulator with the API's limits
// on, and the naive baseline in the same run. It prints a table and writes
// the report as JSON under _bench/.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"clb-direct/test/bench"
	"clb-direct/test/cluster"
)

func main() {
	cfg := bench.Config{Log: os.Stderr}
	var latencyServices string
	flag.IntVar(&cfg.Services, "services", 200, "Services of the cold start and churn scenarios")
	flag.IntVar(&cfg.PodsPerService, "pods-per-service", 50, "Pods of each of those Services")
	flag.Float64Var(&cfg.Limits.RequestsPerSecond, "rate-limit", 20, "requests per second per action the emulator admits (the CLB API's)")
	flag.DurationVar(&cfg.Limits.TaskDuration, "task-duration", 100*time.Millisecond, "how long each asynchronous CLB task runs")
	flag.IntVar(&cfg.Workers, "workers", 0, "the controller's --workers (0: its default)")
	flag.DurationVar(&cfg.ResyncPeriod, "resync-period", 15*time.Second, "the controller's --resync-period")
	flag.IntVar(&cfg.Resyncs, "resyncs", 5, "resync periods of the steady-state scenario")
	flag.StringVar(&latencyServices, "latency-services", "100,1000", "idle Services the one-Pod-change latency is measured among, comma-separated (empty: skipped)")
	flag.IntVar(&cfg.LatencyEvents, "latency-events", 150, "Pod changes measured at each number of Services")
	flag.IntVar(&cfg.MemoryServices, "memory-services", 2000, "Services of the memory scenario (0: skipped)")
	flag.IntVar(&cfg.MemoryPods, "memory-pods", 50000, "Pods of the memory scenario")
	flag.BoolVar(&cfg.Naive, "naive", true, "run the naive baseline too")
	flag.DurationVar(&cfg.NaiveTimeout, "naive-timeout", 60*time.Second, "longest the baseline runs a scenario; its time is projected from its progress when cut short")
	flag.DurationVar(&cfg.ConvergeTimeout, "converge-timeout", 5*time.Minute, "longest clb-direct may take to converge")
	out := flag.String("out", "", "directory of the JSON report and the run's logs (default _bench/ in the repository)")
	flag.Parse()
	for s := range strings.SplitSeq(latencyServices, ",") {
		var n int
		if _, err := fmt.Sscan(s, &n); err == nil && n > 0 {
			cfg.LatencyServices = append(cfg.LatencyServices, n)
		}
	}
	if err := run(cfg, *out); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(cfg bench.Config, out string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if out == "" {
		repo, err := cluster.RepoRoot()
		if err != nil {
			return err
		}
		out = filepath.Join(repo, "_bench")
	}
	stamp := time.Now().UTC().Format("20060102-150405")
	cfg.Dir = filepath.Join(out, "run-"+stamp)
	report, err := bench.Run(ctx, cfg)
	if report != nil {
		printTable(os.Stdout, report)
		if werr := writeJSON(filepath.Join(out, "bench-"+stamp+".json"), report); werr != nil && err == nil {
			err = werr
		}
	}
	if err != nil {
		return err
	}
	for _, r := range report.Results {
		if r.Met != nil && !*r.Met {
			return fmt.Errorf("%s (%s) missed its target: %s", r.Scenario, r.Strategy, r.Target)
		}
	}
	return nil
}

func writeJSON(path string, report *bench.Report) error {
	data, err := json.MarshalIndent(report, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Println("Report:", path)
	return nil
}

func printTable(w io.Writer, report *bench.Report) {
	fmt.Fprintf(w, "\nclb-direct scale benchmark, %s, %d CPUs; emulator: %.0f req/s per action, tasks of %s\n\n",
		report.Started.Format(time.RFC3339), report.CPUs, report.Config.Limits.RequestsPerSecond, report.Config.Limits.TaskDuration)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tstrategy\ttime\tbound\ttime/bound\twrites (min)\treads\trejected\tvs naive\tfigures\ttarget\tmet")
	naive := map[string]bench.Result{}
	for _, r := range report.Results {
		if r.Strategy == "naive" {
			naive[r.Scenario] = r
		}
	}
	for _, r := range report.Results {
		time := fmt.Sprintf("%.1fs", r.Seconds)
		if r.Projected {
			time = "~" + time + " (projected)"
		}
		bound, ratio := "-", "-"
		if r.BoundSeconds > 0 {
			bound, ratio = fmt.Sprintf("%.1fs", r.BoundSeconds), fmt.Sprintf("%.2f", r.TimeRatio())
		}
		writes := fmt.Sprint(r.Writes)
		if r.MinWrites > 0 {
			writes += fmt.Sprintf(" (%d)", r.MinWrites)
		}
		vsNaive := "-"
		if n, ok := naive[r.Scenario]; ok && r.Strategy != "naive" && n.Seconds > 0 {
			vsNaive = fmt.Sprintf("time %.3f", r.Seconds/n.Seconds)
			// A baseline cut short made only some of its writes.
			if !n.Projected {
				vsNaive += fmt.Sprintf(", writes %.2f", float64(r.Writes)/float64(max(n.Writes, 1)))
			}
		}
		met := "-"
		if r.Met != nil {
			met = map[bool]string{true: "yes", false: "NO"}[*r.Met]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\n",
			r.Scenario, r.Strategy, time, bound, ratio, writes, r.Reads, r.Rejected, vsNaive, figures(r.Figures), r.Target, met)
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
}

func figures(f map[string]float64) string {
	if len(f) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(f))
	for k := range f {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%.3g", k, f[k])
	}
	return strings.Join(parts, " ")
}
