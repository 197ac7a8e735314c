package chaos

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"clb-direct/cloud/emulator"
)

const (
	actionDeregister   = "BatchDeregisterTargets"
	actionModifyWeight = "BatchModifyTargetWeight"
)

// serviceOfListener reads the Service UID out of a listener name the
// controller gave (clbdirect_<UID>_<PROTOCOL>_<port>); "" for any other.
func serviceOfListener(name string) types.UID {
	rest, ok := strings.CutPrefix(name, "clbdirect_")
	if !ok {
		return ""
	}
	i := strings.Index(rest, "_")
	if i <= 0 {
		return ""
	}
	return types.UID(rest[:i])
}

// checkDeregistrations holds every target the controller asked the CLB to
// deregister (or to weigh less than the default) against what the test
// did: it must have started, before the call reached the emulator, a
// change that could take that target out of that Service's backends (the
// Pod deleted, made unready, relabelled; the Service's target port moved
// away from the target's port, its port 81 removed for a target on
// listener 81, the Service deleted). The test notes the instant before it
// calls the API server, and the controller cannot learn of a change before
// the API server has made it; and every such change is for good, so a
// target is out of the backends from the first such change on and never
// back. A deregistration that no change preceded was caused by something
// else: an error. Stable Services' Pods never change, so any
// deregistration of one fails. It returns how many targets it checked
// and what is wrong.
func (w *world) checkDeregistrations(records []emulator.BatchRecord, controllerID string) (checked int, problems []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, rec := range records {
		if rec.Client != controllerID || (rec.Action != actionDeregister && rec.Action != actionModifyWeight) {
			continue
		}
		for _, t := range rec.Targets {
			if rec.Action == actionModifyWeight && t.Weight >= backendWeight {
				continue
			}
			checked++
			what := fmt.Sprintf("%s #%d at %s: %s:%d (weight %d) on listener %s %q of CLB %s", rec.Action, rec.Seq,
				rec.Time.Format("15:04:05.000"), t.IP, t.Port, t.Weight, t.ListenerID, t.ListenerName, rec.LoadBalancerID)
			uid := serviceOfListener(t.ListenerName)
			svc := w.services[uid]
			switch {
			case slices.Contains(w.foreignCLBs, rec.LoadBalancerID) || slices.Contains(w.foreignListeners, t.ListenerID):
				problems = append(problems, what+": a foreign target")
				continue
			case svc == nil:
				problems = append(problems, what+": not a listener of any Service the test made")
				continue
			case svc.stable:
				problems = append(problems, what+": a Pod of stable Service "+svc.name+", which never changes")
				continue
			}
			podUID, known := w.podUID[t.IP]
			if !known {
				problems = append(problems, what+": no Pod ever had that IP")
				continue
			}
			listenerPort := listenerPortOf(t.ListenerName)
			var causes []time.Time
			causes = append(causes, w.podUndesired[podUID]...)
			for _, ch := range w.svcUndesired[uid] {
				if (ch.ListenerPort == 0 || ch.ListenerPort == listenerPort) && (ch.TargetPort == 0 || ch.TargetPort == t.Port) {
					causes = append(causes, ch.At)
				}
			}
			if !slices.ContainsFunc(causes, func(c time.Time) bool { return !c.After(rec.Time) }) {
				problems = append(problems, fmt.Sprintf("%s: nothing took Pod %s out of Service %s on that port before (changes that could: %s)",
					what, w.podName[t.IP], svc.name, instants(causes)))
			}
		}
	}
	return checked, problems
}

// listenerPortOf reads the port out of a listener name the controller gave
// (clbdirect_<UID>_<PROTOCOL>_<port>); 0 for any other.
func listenerPortOf(name string) int32 {
	i := strings.LastIndex(name, "_")
	port, err := strconv.ParseInt(name[i+1:], 10, 32)
	if i < 0 || err != nil {
		return 0
	}
	return int32(port)
}

func instants(ts []time.Time) string {
	if len(ts) == 0 {
		return "none"
	}
	var s []string
	for _, t := range ts {
		s = append(s, t.Format("15:04:05.000"))
	}
	return strings.Join(s, ", ")
}

// checkForeignCalls finds every write the controller sent about a foreign
// object: a foreign CLB, the lent CLB itself, or a listener or target of
// the user's on it.
func (w *world) checkForeignCalls(calls []emulator.CallRecord, batches []emulator.BatchRecord, controllerID string) []string {
	var problems []string
	for _, c := range calls {
		if c.Client != controllerID || strings.HasPrefix(c.Action, "Describe") {
			continue
		}
		switch {
		case slices.Contains(w.foreignCLBs, c.LoadBalancerID):
			problems = append(problems, fmt.Sprintf("%s at %s on the foreign CLB %s", c.Action, c.Time.Format("15:04:05.000"), c.LoadBalancerID))
		case c.LoadBalancerID == w.lentCLB && (c.Action == "DeleteLoadBalancer" || c.Action == "ModifyLoadBalancerAttributes"):
			problems = append(problems, fmt.Sprintf("%s at %s on the lent CLB %s", c.Action, c.Time.Format("15:04:05.000"), c.LoadBalancerID))
		case c.ListenerID != "" && slices.Contains(w.foreignListeners, c.ListenerID):
			problems = append(problems, fmt.Sprintf("%s at %s on the user's listener %s", c.Action, c.Time.Format("15:04:05.000"), c.ListenerID))
		}
	}
	for _, b := range batches {
		if b.Client != controllerID {
			continue
		}
		for _, t := range b.Targets {
			if slices.Contains(w.foreignListeners, t.ListenerID) || slices.Contains(w.foreignCLBs, b.LoadBalancerID) {
				problems = append(problems, fmt.Sprintf("%s #%d at %s on the user's listener %s (%s:%d)", b.Action, b.Seq, b.Time.Format("15:04:05.000"), t.ListenerID, t.IP, t.Port))
			}
		}
	}
	return problems
}

// checkForeignUnchanged compares every foreign object with its JSON
// before the faults, byte for byte.
func (w *world) checkForeignUnchanged() []string {
	after, _ := w.foreignJSON()
	var problems []string
	for _, k := range sortedKeys(w.foreignBefore) {
		if after[k] != w.foreignBefore[k] {
			problems = append(problems, fmt.Sprintf("%s changed:\n    before %s\n    after  %s", k, w.foreignBefore[k], after[k]))
		}
	}
	for _, k := range sortedKeys(after) {
		if _, ok := w.foreignBefore[k]; !ok {
			problems = append(problems, fmt.Sprintf("%s appeared: %s", k, after[k]))
		}
	}
	return problems
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// countLines counts the lines of a file that contain any of the needles.
func countLines(path string, needles ...string) int {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n := 0
	for line := range strings.SplitSeq(string(data), "\n") {
		for _, needle := range needles {
			if strings.Contains(line, needle) {
				n++
				break
			}
		}
	}
	return n
}
