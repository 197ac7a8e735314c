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
// created, deleted, made unready and ready again, relabelled out of their
// Service; Services' target ports flipped, a second port added and
// removed, Services deleted and created again.
type churner struct {
	w    *world
	rng  *rand.Rand
	log  io.Writer
	stop chan struct{}
	done chan struct{}

	mu     sync.Mutex
	counts map[string]int
	errors int
	// unready are the Pods the test made unready (namespace-less names).
	unready map[string]bool
}

func (w *world) startChurn(rng *rand.Rand, log io.Writer) *churner {
	c := &churner{w: w, rng: rng, log: log, stop: make(chan struct{}), done: make(chan struct{}), counts: map[string]int{}, unready: map[string]bool{}}
	go c.run()
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

func (c *churner) run() {
	defer close(c.done)
	for {
		select {
		case <-c.stop:
			return
		case <-time.After(randIn(c.rng, 200*time.Millisecond, 900*time.Millisecond)):
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		what, err := c.step(ctx)
		cancel()
		c.mu.Lock()
		if what != "" {
			c.counts[what]++
		}
		if err != nil {
			c.errors++
			fmt.Fprintf(c.log, "chaos: churn %s: %v\n", what, err)
		}
		c.mu.Unlock()
	}
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
		return "delete Pod", w.mayUndesire(p.UID, "", func() error {
			return podsAPI.Delete(ctx, p.Name, metav1.DeleteOptions{})
		})
	case r < 50 && len(pods) > 0:
		p := pick()
		c.mu.Lock()
		wasUnready := c.unready[p.Name]
		c.unready[p.Name] = !wasUnready
		c.mu.Unlock()
		if wasUnready {
			e.Sim.SetReady(namespace, p.Name, true)
			return "make Pod ready again", nil
		}
		return "make Pod unready", w.mayUndesire(p.UID, "", func() error {
			e.Sim.SetReady(namespace, p.Name, false)
			return nil
		})
	case r < 58 && len(pods) > 1:
		p := pick()
		return "relabel Pod out of its Service", w.mayUndesire(p.UID, "", func() error {
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
		svc, err := services.Get(ctx, churnName(i), metav1.GetOptions{})
		if err != nil || svc.DeletionTimestamp != nil {
			return "", nil
		}
		return "flip target port", w.mayUndesire("", svc.UID, func() error {
			for j := range svc.Spec.Ports {
				if svc.Spec.Ports[j].Port != 80 {
					continue
				}
				if svc.Spec.Ports[j].TargetPort.StrVal == "http" {
					svc.Spec.Ports[j].TargetPort = intstr.FromString("alt")
				} else {
					svc.Spec.Ports[j].TargetPort = intstr.FromString("http")
				}
			}
			_, err := services.Update(ctx, svc, metav1.UpdateOptions{})
			return err
		})
	case r < 86:
		svc, err := services.Get(ctx, churnName(i), metav1.GetOptions{})
		if err != nil || svc.DeletionTimestamp != nil {
			return "", nil
		}
		what := "add port 81"
		if len(svc.Spec.Ports) > 1 {
			what = "remove port 81"
		}
		return what, w.mayUndesire("", svc.UID, func() error {
			if len(svc.Spec.Ports) > 1 {
				svc.Spec.Ports = svc.Spec.Ports[:1]
			} else {
				svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{Name: "extra", Port: 81, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("http")})
			}
			_, err := services.Update(ctx, svc, metav1.UpdateOptions{})
			return err
		})
	case r < 92:
		svc, err := services.Get(ctx, churnName(i), metav1.GetOptions{})
		if err != nil || svc.DeletionTimestamp != nil {
			return "", nil
		}
		err = w.mayUndesire("", svc.UID, func() error {
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
