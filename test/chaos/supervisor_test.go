package chaos

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"clb-direct/test/env"
)

// supervisor keeps one controller running, as a Deployment's ReplicaSet
// would: whenever it exits (killed by the test, or on its own, e.g. after
// losing its Lease) a new one is started.
type supervisor struct {
	opts env.ControllerOptions
	log  io.Writer

	mu      sync.Mutex
	current *env.Controller
	// since is when current got ready.
	since   time.Time
	killing bool
	// kills are the test's SIGKILLs; exits the controller's own exits;
	// starts every start, the first included; startFailures the starts
	// that did not get to /readyz.
	kills, exits, starts, startFailures int
	exitNotes                           []string

	stop chan struct{}
	done chan struct{}
}

func startSupervisor(opts env.ControllerOptions, log io.Writer) *supervisor {
	s := &supervisor{opts: opts, log: log, stop: make(chan struct{}), done: make(chan struct{})}
	go s.run()
	return s
}

func (s *supervisor) run() {
	defer close(s.done)
	for {
		ctrl, err := e.StartController(context.Background(), s.opts)
		s.mu.Lock()
		s.starts++
		if err != nil {
			s.startFailures++
			s.mu.Unlock()
			fmt.Fprintf(s.log, "chaos: starting the controller failed (will retry): %v\n", firstLine(err.Error()))
			select {
			case <-s.stop:
				return
			case <-time.After(time.Second):
			}
			continue
		}
		s.current, s.since = ctrl, time.Now()
		s.mu.Unlock()
		select {
		case <-s.stop:
			return
		case <-ctrl.Done():
		}
		s.mu.Lock()
		if !s.killing {
			s.exits++
			s.exitNotes = append(s.exitNotes, fmt.Sprintf("%s: %v", time.Now().Format("15:04:05.000"), ctrl.Err()))
		}
		s.current = nil
		s.mu.Unlock()
	}
}

// kill SIGKILLs the running controller, if one runs, and reports whether
// it did. The supervisor starts the next one.
func (s *supervisor) kill() bool {
	s.mu.Lock()
	ctrl := s.current
	if ctrl == nil {
		s.mu.Unlock()
		return false
	}
	s.killing = true
	s.mu.Unlock()
	ctrl.Kill()
	s.mu.Lock()
	s.kills++
	s.mu.Unlock()
	// Wait until the supervisor has seen the exit, so that the next exit
	// it sees is not taken for this kill.
	for {
		s.mu.Lock()
		seen := s.current != ctrl
		if seen {
			s.killing = false
		}
		s.mu.Unlock()
		if seen {
			return true
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// runningFor is how long the current controller has been ready; 0 when
// none runs.
func (s *supervisor) runningFor() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.current == nil {
		return 0
	}
	return time.Since(s.since)
}

// waitRunning waits until a controller runs, for up to timeout.
func (s *supervisor) waitRunning(timeout time.Duration) (*env.Controller, error) {
	deadline := time.Now().Add(timeout)
	for {
		s.mu.Lock()
		ctrl := s.current
		s.mu.Unlock()
		if ctrl != nil {
			return ctrl, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no controller running after %s", timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// shutdown stops supervising and stops the running controller with
// SIGTERM, returning how it exited.
func (s *supervisor) shutdown() error {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	ctrl := s.current
	s.current = nil
	s.mu.Unlock()
	if ctrl == nil {
		return nil
	}
	return ctrl.Stop(30 * time.Second)
}

func (s *supervisor) counts() (kills, exits, starts, startFailures int, notes []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.kills, s.exits, s.starts, s.startFailures, append([]string(nil), s.exitNotes...)
}

func firstLine(s string) string {
	for i, r := range s {
		if r == '\n' {
			return s[:i]
		}
	}
	return s
}
