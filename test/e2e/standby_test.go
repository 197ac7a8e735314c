package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"clb-direct/cloud/emulator"
	"clb-direct/controller"
	"clb-direct/test/env"
)

// cloudWrites are the calls of client, in [from, to), that change the
// account: every action but the Describe* reads.
func cloudWrites(calls []emulator.CallRecord, client string, from, to time.Time) (writes []string, reads int) {
	for _, c := range calls {
		if c.Client != client || c.Time.Before(from) || !c.Time.Before(to) {
			continue
		}
		if strings.HasPrefix(c.Action, "Describe") {
			reads++
			continue
		}
		writes = append(writes, fmt.Sprintf("%s %s %s", c.Time.Format("15:04:05.000"), c.Action, c.LoadBalancerID))
	}
	return writes, reads
}

// Bound: none on time. Two replicas sign their CLB calls with different
// SecretIds, so the emulator's call log says which replica made each. While
// the first holds the Lease, through 20 s of churn (Services created,
// re-weighted, deleted and re-created, Deployments scaled), the standby
// makes no write at all; once the leader stops, the standby takes over and
// its writes appear in the same log (the check sees them when they exist).
func TestStandbyNeverWritesToCloud(t *testing.T) {
	standbyID, standbyKey := "AKIDstandby"+randomHex(8), randomHex(16)
	em := startEmulator(t, "--extra-credential", standbyID+":"+standbyKey)
	f := newFixture(t, env.ControllerOptions{Emulator: em})
	leaderID := em.SecretID
	f.expectMetric(f.ctrl, "clbdirect_leader", "= 1", equal(1))
	standby := f.startController(env.ControllerOptions{
		Name: f.ns + "-standby", Emulator: em, SecretID: standbyID, SecretKey: standbyKey, CredentialsFile: true,
	})
	t.Cleanup(func() {
		if f.ctrl != standby {
			standby.Stop(30 * time.Second)
		}
	})
	f.expectMetric(standby, "clbdirect_leader", "= 0", equal(0))
	begin := time.Now()

	// Churn while the first replica leads.
	f.createDeployment("a", 3)
	f.createDeployment("b", 2)
	f.createService("a", direct)
	f.createService("b", direct)
	f.createService("c", direct, selectApp("a"), onPort(8080))
	f.expectBackends("a", "a", 3, 30*time.Second)
	f.expectBackends("b", "b", 2, 30*time.Second)
	for round := 0; time.Since(begin) < 20*time.Second; round++ {
		f.scale("a", int32(2+round%4))
		f.scale("b", int32(1+round%3))
		f.updateService("b", func(s *corev1.Service) {
			s.Annotations[controller.AnnotationBackendWeight] = fmt.Sprint(10 + round%50)
		})
		if round%3 == 2 {
			f.deleteService("c", 30*time.Second)
			f.createService("c", direct, selectApp("a"), onPort(8080))
		}
		time.Sleep(500 * time.Millisecond)
	}
	f.scale("a", 3)
	f.expectBackends("a", "a", 3, 30*time.Second)
	f.expectMetric(f.ctrl, "clbdirect_leader", "= 1", equal(1))
	f.expectMetric(standby, "clbdirect_leader", "= 0", equal(0))

	stopped := time.Now()
	calls, err := em.Calls(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	leaderWrites, _ := cloudWrites(calls, leaderID, begin, stopped)
	standbyWrites, standbyReads := cloudWrites(calls, standbyID, time.Time{}, stopped)
	t.Logf("while the first replica led: %d writes by it; by the standby %d writes and %d reads", len(leaderWrites), len(standbyWrites), standbyReads)
	if len(leaderWrites) == 0 {
		t.Fatalf("the leader made no write during the churn: the churn proves nothing")
	}
	if len(standbyWrites) > 0 {
		t.Errorf("the standby (%s) made %d writes while the leader held the Lease, first:\n%s", standbyID, len(standbyWrites), strings.Join(standbyWrites[:min(20, len(standbyWrites))], "\n"))
	}

	// The leader stops (releasing the Lease): the standby takes over, and
	// its writes are there for the same check to see.
	if err := f.ctrl.Stop(30 * time.Second); err != nil {
		t.Errorf("the leader did not exit cleanly on SIGTERM: %v", err)
	}
	leaderGone := time.Now()
	f.ctrl = standby
	f.expectMetric(standby, "clbdirect_leader", "= 1", equal(1))
	f.scale("a", 5)
	f.expectBackends("a", "a", 5, 30*time.Second)
	calls, err = em.Calls(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	takeoverWrites, _ := cloudWrites(calls, standbyID, stopped, time.Now())
	if len(takeoverWrites) == 0 {
		t.Errorf("the standby took over but the call log has no write of %s: the check could not see one", standbyID)
	}
	if late, _ := cloudWrites(calls, leaderID, leaderGone, time.Now()); len(late) > 0 {
		t.Errorf("the stopped leader (%s) still made %d writes, first:\n%s", leaderID, len(late), strings.Join(late[:min(20, len(late))], "\n"))
	}
	t.Logf("after the takeover: %d writes by the new leader", len(takeoverWrites))
}
