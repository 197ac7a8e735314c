package controller

import (
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// defaultPodEventWindow is how far apart the syncs Pod changes cause to one
// Service are, at least, while the changes keep coming.
const defaultPodEventWindow = time.Second

// podEventPacer gathers a Service's Pod changes into fewer syncs: the first
// change after a quiet window is synced at once, so an isolated change waits
// for nothing, and changes that follow within the window wait for one sync
// at its end. A rollout brings a Service's Pods up one after another; synced
// one at a time, each would cost the CLB a write and a task, when its API
// admits about 20 calls a second and runs one task per CLB at a time.
type podEventPacer struct {
	window time.Duration
	clock  clock.PassiveClock

	mu sync.Mutex
	// last is when each Service's latest sync was (or is) due.
	last map[string]time.Time
}

func newPodEventPacer(window time.Duration, clk clock.PassiveClock) *podEventPacer {
	return &podEventPacer{window: window, clock: clk, last: map[string]time.Time{}}
}

// delay says when to queue a sync of key for a Pod change: after the
// returned delay, or not at all (queue false) when a sync is already due
// later, which sees this change too.
func (p *podEventPacer) delay(key string) (after time.Duration, queue bool) {
	now := p.clock.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	last, seen := p.last[key]
	switch {
	case !seen || !now.Before(last.Add(p.window)):
		p.last[key] = now
		return 0, true
	case last.After(now):
		return 0, false
	default:
		p.last[key] = last.Add(p.window)
		return last.Add(p.window).Sub(now), true
	}
}

// forget drops a deleted Service's state.
func (p *podEventPacer) forget(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.last, key)
}
