package e2e

import (
	"bufio"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"clb-direct/test/env"
)

// metric reads one sample from the controller's /metrics: series is the
// metric name with its labels as exposed, e.g.
// `clbdirect_cloud_api_calls_total{action="BatchRegisterTargets",result="ok"}`.
func metric(ctrl *env.Controller, series string) (float64, error) {
	client := &http.Client{Timeout: 3 * time.Second}
	resp, err := client.Get("http://" + ctrl.MetricsAddr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	scanner := bufio.NewScanner(resp.Body)
	scanner.Buffer(nil, 1<<20)
	for scanner.Scan() {
		if value, ok := strings.CutPrefix(scanner.Text(), series+" "); ok {
			return strconv.ParseFloat(value, 64)
		}
	}
	if err := scanner.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no sample %s", series)
}

// expectMetric waits until the sample satisfies cond.
func (f *fixture) expectMetric(ctrl *env.Controller, series, want string, cond func(float64) bool) {
	f.t.Helper()
	f.waitFor(10*time.Second, series+" "+want, func() (bool, string) {
		v, err := metric(ctrl, series)
		if err != nil {
			return false, err.Error()
		}
		return cond(v), fmt.Sprintf("%s is %v", series, v)
	})
}

func equal(want float64) func(float64) bool { return func(v float64) bool { return v == want } }

func positive(v float64) bool { return v > 0 }
