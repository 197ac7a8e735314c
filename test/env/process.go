package env

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Process is a child process whose output goes to a log file. It runs in
// its own process group and dies with its parent, so a crashed test leaves
// nothing behind.
type Process struct {
	Name    string
	LogPath string
	cmd     *exec.Cmd
	log     *os.File
	done    chan struct{}
	waitErr error
	mu      sync.Mutex
}

// StartProcess starts bin and, when readyLine is not empty, waits until a
// line of its output contains it; its output goes to logPath. For programs
// outside this package (benchmarks) that start the project's binaries
// without an Env.
func StartProcess(ctx context.Context, name, logPath, readyLine string, env []string, bin string, args ...string) (*Process, error) {
	return startProcess(ctx, name, logPath, readyLine, env, bin, args...)
}

// startProcess starts bin and, when readyLine is not empty, waits until a
// line of its output contains it.
func startProcess(ctx context.Context, name, logPath, readyLine string, env []string, bin string, args ...string) (*Process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening the log of %s: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &Process{Name: name, LogPath: logPath, cmd: cmd, log: logFile, done: make(chan struct{})}
	ready := make(chan struct{})
	var readyOnce sync.Once
	go func() {
		scanner := bufio.NewScanner(pr)
		scanner.Buffer(make([]byte, 64*1024), 1024*1024)
		for scanner.Scan() {
			line := scanner.Text()
			fmt.Fprintln(logFile, line)
			if readyLine != "" && strings.Contains(line, readyLine) {
				readyOnce.Do(func() { close(ready) })
			}
		}
		_, _ = io.Copy(logFile, pr)
	}()
	go func() {
		err := cmd.Wait()
		pw.Close()
		p.mu.Lock()
		p.waitErr = err
		p.mu.Unlock()
		close(p.done)
	}()
	if readyLine == "" {
		return p, nil
	}
	select {
	case <-ready:
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("%s exited before it was ready (%v); its log %s ends with:\n%s", name, p.Err(), logPath, Tail(logPath, 20))
	case <-ctx.Done():
		p.Kill()
		return nil, fmt.Errorf("%s not ready: %w; its log %s ends with:\n%s", name, ctx.Err(), logPath, Tail(logPath, 20))
	}
}

// Pid of the process.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is how the process exited (nil while running or after exit 0).
func (p *Process) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waitErr
}

// Stop sends SIGTERM and waits up to grace for the exit, then kills the
// group. It returns how the process exited.
func (p *Process) Stop(grace time.Duration) error {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.Kill()
	}
	p.log.Close()
	return p.Err()
}

// Kill ends the process group at once (SIGKILL), as a crash would.
func (p *Process) Kill() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// Tail returns the last n lines of a file, for failure messages.
func Tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
