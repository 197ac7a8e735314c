package cluster

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// process is one control-plane component running in its own process group.
type process struct {
	name    string
	logPath string
	pid     int
	done    chan struct{} // closed when the process has exited
	err     error         // Wait's result, valid after done
}

// startProcess runs bin with its output appended to logPath.
//
// The child gets its own process group (so a terminal's Ctrl-C does not hit
// it half-way through our own teardown, and Stop can kill the whole group)
// and PDEATHSIG=SIGKILL, so it dies with the test binary even when that is
// killed without any chance to clean up.
func startProcess(name, bin string, args []string, logPath string) (*process, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(logf, "$ %s %s\n", bin, strings.Join(args, " "))
	p := &process{name: name, logPath: logPath, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		// PDEATHSIG fires when the *thread* that forked the child exits,
		// not the process. Pinning this goroutine to its thread for the
		// child's whole life keeps the Go runtime from retiring that thread
		// under a running child. The goroutine never unlocks: its thread is
		// discarded when it returns, which is after the child has exited.
		runtime.LockOSThread()
		defer logf.Close()
		cmd := exec.Command(bin, args...)
		cmd.Stdout = logf
		cmd.Stderr = logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		p.pid = cmd.Process.Pid
		started <- nil
		p.err = cmd.Wait()
		close(p.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return p, nil
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop asks the process group to terminate and kills it after grace.
func (p *process) stop(grace time.Duration) {
	if !p.exited() {
		_ = syscall.Kill(-p.pid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(grace):
		}
	}
	// Kill the group even after the leader exited: anything it forked
	// would otherwise outlive the cluster.
	_ = syscall.Kill(-p.pid, syscall.SIGKILL)
	<-p.done
}

// failure describes an unexpected exit, with the end of the log.
func (p *process) failure() error {
	return fmt.Errorf("%s exited: %v; log %s ends with:\n%s", p.name, p.err, p.logPath, tailFile(p.logPath, 30))
}

// freePort asks the kernel for an unused loopback port. Another process may
// grab it before the component binds it; start retries for that case.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func freePorts(n int) ([]int, error) {
	// Hold all listeners until every port is known so the kernel does not
	// hand out the same port twice.
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func addressInUse(p *process) bool {
	return strings.Contains(tailFile(p.logPath, 50), "address already in use")
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func itoa(i int) string { return strconv.Itoa(i) }
