package chaos

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// churner changes the churned Services and their Pods at random: Pods
// created, deleted, made unready, relabelled out of their Service;
// Services' target ports moved, a second port added and removed, Services
// deleted and created again. Every change that takes targets out of a
// Service's backends does so for good (see world.podUndesired).
type churner struct {
	w    *world
	rng  *rand.Rand
	log  io.Writer
	stop chan struct{}
	done chan struct{}

	mu     sync.Mutex
	counts map[string]int
	errors int
	// last is when the last change was made.
	last time.Time
	// unready are the Pods the test made unready (namespace-less names).
	unready map[string]bool
}

// startChurn churns until the given time.
func (w *world) startChurn(rng *rand.Rand, log io.Writer, until time.Time) *churner {
	c := &churner{w: w, rng: rng, log: log, stop: make(chan struct{}), done: make(chan struct{}), counts: map[string]int{}, unready: map[string]bool{}}
	go c.run(until)
	return c
}

func (c *churner) finish() map[string]int {
	close(c.stop)
	<-c.done
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for k, v := range c.counts {
		out[k] = v
	}
	out["failed API calls"] = c.errors
	return out
}

func (c *churner) run(until time.Time) {
	defer close(c.done)
	for {
		select {
		case <-c.stop:
			return
		case <-time.After(randIn(c.rng, 200*time.Millisecond, 900*time.Millisecond)):
		}
		if time.Now().After(until) {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		what, err := c.step(ctx)
		cancel()
		c.mu.Lock()
		if what != "" {
			c.counts[what]++
			c.last = time.Now()
		}
		if err != nil {
			c.errors++
			fmt.Fprintf(c.log, "chaos: churn %s: %v\n", what, err)
		}
		c.mu.Unlock()
	}
}

func (c *churner) lastChange() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

// podsOf lists the test's live Pods labelled for churned Service i (or
// relabelled out of it, with out).
func (c *churner) podsOf(i int, out bool) []*corev1.Pod {
	app := churnName(i)
	if out {
		app += "-out"
	}
	var pods []*corev1.Pod
	for _, obj := range c.w.pods.List() {
		p := obj.(*corev1.Pod)
		if p.Labels["churn"] == "true" && p.Labels["app"] == app && p.DeletionTimestamp == nil {
			pods = append(pods, p)
		}
	}
	slices.SortFunc(pods, func(a, b *corev1.Pod) int { return a.CreationTimestamp.Compare(b.CreationTimestamp.Time) })
	return pods
}

// step makes one random change and says which.
func (c *churner) step(ctx context.Context) (string, error) {
	w := c.w
	i := c.rng.IntN(churnCount)
	pods := c.podsOf(i, false)
	pick := func() *corev1.Pod { return pods[c.rng.IntN(len(pods))] }
	services := e.Admin.CoreV1().Services(namespace)
	podsAPI := e.Admin.CoreV1().Pods(namespace)

	switch r := c.rng.IntN(100); {
	case r < 22 && len(pods) < maxChurnPods:
		return "create Pod", w.createPod(i)
	case r < 38 && len(pods) > 1:
		p := pick()
		return "delete Pod", w.podChange(p.UID, func() error {
			return podsAPI.Delete(ctx, p.Name, metav1.DeleteOptions{})
		})
	case r < 48 && len(pods) > 1:
		// For good: a Pod made unready stays so until deleted.
		p := pick()
		c.mu.Lock()
		already := c.unready[p.Name]
		c.unready[p.Name] = true
		c.mu.Unlock()
		if already {
			return "", nil
		}
		return "make Pod unready", w.podChange(p.UID, func() error {
			e.Sim.SetReady(namespace, p.Name, false)
			return nil
		})
	case r < 56 && len(pods) > 1:
		p := pick()
		return "relabel Pod out of its Service", w.podChange(p.UID, func() error {
			patch := fmt.Sprintf(`{"metadata":{"labels":{"app":%q}}}`, churnName(i)+"-out")
			_, err := podsAPI.Patch(ctx, p.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
			return err
		})
	case r < 64:
		out := c.podsOf(i, true)
		if len(out) == 0 {
			return "", nil
		}
		return "delete relabelled Pod", podsAPI.Delete(ctx, out[0].Name, metav1.DeleteOptions{})
	case r < 76:
		// The target port of port 80 moves on through the Pods' ports,
		// never back: 8080 (named http), 8081 (alt), 8082, 8083.
		svc, err := services.Get(ctx, churnName(i), metav1.GetOptions{})
		if err != nil || svc.DeletionTimestamp != nil {
			return "", nil
		}
		current, next := targetPortSequence(svc.Spec.Ports[0].TargetPort)
		if next == nil {
			return "", nil
		}
		return "move target port", w.serviceChange(svc.UID, 80, current, func() error {
			svc.Spec.Ports[0].TargetPort = *next
			_, err := services.Update(ctx, svc, metav1.UpdateOptions{})
			return err
		})
	case r < 86:
		// Port 81 comes once and goes once in a Service's life.
		svc, err := services.Get(ctx, churnName(i), metav1.GetOptions{})
		if err != nil || svc.DeletionTimestamp != nil {
			return "", nil
		}
		if len(svc.Spec.Ports) > 1 {
			return "remove port 81", w.serviceChange(svc.UID, 81, 0, func() error {
				svc.Spec.Ports = svc.Spec.Ports[:1]
				_, err := services.Update(ctx, svc, metav1.UpdateOptions{})
				return err
			})
		}
		w.mu.Lock()
		had := w.port81[svc.UID]
		w.mu.Unlock()
		if had {
			return "", nil
		}
		svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{Name: "extra", Port: 81, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("http")})
		if _, err := services.Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
			return "add port 81", err
		}
		w.mu.Lock()
		w.port81[svc.UID] = true
		w.mu.Unlock()
		return "add port 81", nil
	case r < 92:
		svc, err := services.Get(ctx, churnName(i), metav1.GetOptions{})
		if err != nil || svc.DeletionTimestamp != nil {
			return "", nil
		}
		err = w.serviceChange(svc.UID, 0, 0, func() error {
			return services.Delete(ctx, svc.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &svc.UID}})
		})
		if err == nil {
			w.mu.Lock()
			w.deleted = append(w.deleted, svc.UID)
			w.mu.Unlock()
		}
		return "delete Service", err
	default:
		if _, err := services.Get(ctx, churnName(i), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return "", nil
		}
		return "create Service again", w.createService(serviceSpec(churnName(i), direct), false)
	}
}

// targetPortSequence returns the container port a target port resolves to
// on the test's Pods, and the next one in 8080, 8081, 8082, 8083 (nil
// after the last).
func targetPortSequence(tp intstr.IntOrString) (int32, *intstr.IntOrString) {
	sequence := []intstr.IntOrString{intstr.FromString("http"), intstr.FromString("alt"), intstr.FromInt32(portAlt + 1), intstr.FromInt32(portAlt + 2)}
	ports := []int32{portHTTP, portAlt, portAlt + 1, portAlt + 2}
	for i, v := range sequence {
		if v == tp && i+1 < len(sequence) {
			return ports[i], &sequence[i+1]
		}
		if v == tp {
			return ports[i], nil
		}
	}
	return 0, nil
}
