// Command sandbox runs a whole clb-direct installation on this machine for
// trying it by hand: a real control plane with 3 simulated Nodes, the CLB
// emulator, the controller, and deploy/examples (the echo Deployment and its
// direct-access Service). It is the same installation the end-to-end tests
// use (package test/env), so what they prove is what a newcomer sees.
//
//	go run ./hack/sandbox up      # start in the background (make sandbox)
//	go run ./hack/sandbox status  # is it running, and how to reach it
//	go run ./hack/sandbox down    # stop it (make sandbox-down)
//
// "up" starts "serve" as a detached process, relays its progress and
// returns once the echo Service answers through its CLB. All state lives
// in <repo>/_sandbox: pid, env (source it), ready, sandbox.log and the
// components' logs.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"clb-direct/test/cluster"
	"clb-direct/test/env"
)

// The example the sandbox applies and waits for (deploy/examples).
const (
	exampleNamespace = "default"
	exampleName      = "echo"
	examplePort      = 80
)

func usage() {
	fmt.Fprintf(os.Stderr, `usage: go run ./hack/sandbox <command>

  up [-timeout 30m]  start the sandbox in the background and wait until it
                     serves (running it again just prints how to use it)
  status             whether it runs, and its environment (exit 1 if not)
  down               stop it (nothing to do if it is not running)
  serve              run it in the foreground (what "up" starts)
`)
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	repo, err := cluster.RepoRoot()
	if err != nil {
		fatal(err)
	}
	sb := &sandbox{dir: filepath.Join(repo, "_sandbox"), repo: repo}
	cmd, args := os.Args[1], os.Args[2:]
	switch cmd {
	case "up":
		fs := flag.NewFlagSet("up", flag.ExitOnError)
		timeout := fs.Duration("timeout", 30*time.Minute, "how long to wait for the sandbox (a cold build of the control plane takes most of it)")
		_ = fs.Parse(args)
		err = sb.up(*timeout)
	case "down":
		err = sb.down()
	case "status":
		var running bool
		if running, err = sb.status(); err == nil && !running {
			os.Exit(1)
		}
	case "serve":
		err = sb.serve()
	default:
		usage()
	}
	if err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "sandbox:", err)
	os.Exit(1)
}

// sandbox names the files of one sandbox directory.
type sandbox struct {
	dir  string // <repo>/_sandbox
	repo string
}

func (s *sandbox) path(name ...string) string {
	return filepath.Join(append([]string{s.dir}, name...)...)
}

// The files that describe a running sandbox. They are removed when it
// stops; logs are kept for a post-mortem until the next start.
const (
	pidFile        = "pid"              // serve's pid, written first
	readyFile      = "ready"            // info (JSON), written last
	envFile        = "env"              // shell exports, for `source`
	kubeconfigFile = "admin.kubeconfig" // copy of the cluster's admin kubeconfig
	logFile        = "sandbox.log"      // serve's stdout and stderr
	lockFile       = "lock"             // serializes up and down
)

// info is the content of the ready file: what "up" and "status" print.
type info struct {
	Pid           int       `json:"pid"`
	Started       time.Time `json:"started"`
	Ready         time.Time `json:"ready"`
	VIP           string    `json:"vip"`
	Kubeconfig    string    `json:"kubeconfig"`
	Endpoint      string    `json:"endpoint"`
	ControllerLog string    `json:"controllerLog"`
	LogDir        string    `json:"logDir"`
}

// serving returns the pid in the pid file and whether that process is a
// live sandbox server. A pid file left by a killed server, or whose pid
// now belongs to some other program, counts as not running.
func (s *sandbox) serving() (int, bool) {
	data, err := os.ReadFile(s.path(pidFile))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, isServer(pid)
}

// isServer reports whether pid is alive (not a zombie) and runs
// "<this program> serve".
func isServer(pid int) bool {
	if !alive(pid) {
		return false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	return len(args) >= 2 && args[1] == "serve"
}

// alive reports whether pid exists and has not exited. kill(pid, 0)
// succeeds for a zombie, which a server whose parent ("up") has not
// reaped yet is, so /proc's state is checked too.
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses and
	// may itself contain spaces and parentheses.
	rest := stat[strings.LastIndexByte(string(stat), ')')+1:]
	fields := strings.Fields(string(rest))
	return len(fields) > 0 && fields[0] != "Z" && fields[0] != "X"
}

// lock takes an exclusive flock on the sandbox's lock file so that two
// "up"s cannot both find nothing running and start two servers, and "down"
// cannot miss a server that "up" is starting. The kernel drops the lock if
// the holder dies.
func (s *sandbox) lock() (unlock func(), err error) {
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(s.path(lockFile), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil
}

// removeState removes the files that describe a running sandbox.
func (s *sandbox) removeState() {
	s.removeInfo()
	_ = os.Remove(s.path(pidFile))
}

// removeStateOf is removeState if the pid file still names pid: a newer
// server's files are not ours to remove.
func (s *sandbox) removeStateOf(pid int) {
	data, err := os.ReadFile(s.path(pidFile))
	if err == nil && strings.TrimSpace(string(data)) == strconv.Itoa(pid) {
		s.removeState()
	}
}

// removeInfo removes the files that tell how to reach a sandbox.
func (s *sandbox) removeInfo() {
	for _, f := range []string{readyFile, envFile, kubeconfigFile} {
		_ = os.Remove(s.path(f))
	}
}

func (s *sandbox) readInfo() (info, error) {
	var in info
	data, err := os.ReadFile(s.path(readyFile))
	if err != nil {
		return in, err
	}
	return in, json.Unmarshal(data, &in)
}

// up starts the server unless one runs, and waits until it is ready.
func (s *sandbox) up(timeout time.Duration) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	unlock, err := s.lock()
	if err != nil {
		return err
	}
	pid, running := s.serving()
	var cmd *exec.Cmd
	var offset int64
	if !running {
		s.removeState() // a stale pid file, or files of a killed server
		cmd, offset, err = s.launch()
	}
	unlock()
	if err != nil {
		return err
	}

	if running {
		if in, err := s.readInfo(); err == nil {
			fmt.Printf("A sandbox is already running (pid %d, ready since %s).\n", pid, in.Ready.Format(time.Kitchen))
			s.printInfo(in)
			return nil
		}
		// Another "up" is starting it (or someone ran serve): wait with it.
		fmt.Printf("A sandbox is starting (pid %d); following its log %s\n", pid, s.rel(s.path(logFile)))
		return s.follow(ctx, pid, nil, s.logSize(), timeout)
	}
	began := time.Now()
	fmt.Printf("Starting the sandbox (pid %d, log %s). The very first run builds Kubernetes from source,\n"+
		"which takes many minutes; later ones take well under a minute.\n", cmd.Process.Pid, s.rel(s.path(logFile)))
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	if err := s.follow(ctx, cmd.Process.Pid, exited, offset, timeout); err != nil {
		return err
	}
	fmt.Printf("(up in %s)\n", time.Since(began).Round(time.Second))
	return nil
}

// launch starts "serve" in the background, its output appended to the
// log, and returns it with the log offset its output starts at. The caller
// holds the lock.
func (s *sandbox) launch() (*exec.Cmd, int64, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, 0, err
	}
	log, err := os.OpenFile(s.path(logFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, 0, err
	}
	defer log.Close() // the child has its own copy
	offset := s.logSize()
	fmt.Fprintf(log, "=== sandbox serve, %s ===\n", time.Now().Format(time.RFC3339))
	cmd := exec.Command(self, "serve")
	cmd.Dir = s.repo
	cmd.Stdout, cmd.Stderr = log, log
	// A session of its own: the server outlives this command and the
	// terminal, and a Ctrl-C in the terminal does not reach it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, 0, fmt.Errorf("starting the sandbox server: %w", err)
	}
	// The server writes this too, but only once it runs; writing it here,
	// under the lock, is what keeps a concurrent "up" or "down" from
	// missing it.
	if err := os.WriteFile(s.path(pidFile), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, 0, err
	}
	return cmd, offset, nil
}

func (s *sandbox) logSize() int64 {
	st, err := os.Stat(s.path(logFile))
	if err != nil {
		return 0
	}
	return st.Size()
}

// follow relays the server's log from offset until the ready file
// appears, the server dies (exited, if we are its parent, or its pid going
// away otherwise), the timeout passes or the user interrupts; in the last
// two cases the server is stopped, as a half-started sandbox helps nobody.
func (s *sandbox) follow(ctx context.Context, pid int, exited <-chan error, offset int64, timeout time.Duration) error {
	f, err := os.Open(s.path(logFile))
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return err
	}
	// ReadString keeps a partial last line for the next round, so lines
	// are relayed whole.
	r := bufio.NewReader(f)
	var partial string
	relay := func() {
		for {
			line, err := r.ReadString('\n')
			partial += line
			if err != nil {
				return
			}
			fmt.Print("  | " + partial)
			partial = ""
		}
	}
	deadline := time.After(timeout)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		relay()
		if in, err := s.readInfo(); err == nil && in.Pid == pid {
			fmt.Println()
			s.printInfo(in)
			return nil
		}
		var exitErr error
		died := false
		select {
		case exitErr = <-exited:
			died = true
		case <-ctx.Done():
			fmt.Println("\nInterrupted: stopping the sandbox that was starting...")
			s.stopServer(pid)
			return errors.New("interrupted")
		case <-deadline:
			fmt.Printf("\nThe sandbox is not ready after %s: stopping it.\n", timeout)
			s.stopServer(pid)
			return fmt.Errorf("not ready after %s; the log %s ends with:\n%s", timeout, s.rel(s.path(logFile)), env.Tail(s.path(logFile), 30))
		case <-tick.C:
			died = exited == nil && !isServer(pid)
		}
		if died {
			relay()
			s.removeStateOf(pid)
			if exited != nil {
				// Its whole log of this run has just been relayed.
				return fmt.Errorf("the sandbox server exited (%v) before it was ready; its log (above) is in %s", exitErr, s.rel(s.path(logFile)))
			}
			return fmt.Errorf("the sandbox server exited before it was ready; its log %s ends with:\n%s",
				s.rel(s.path(logFile)), env.Tail(s.path(logFile), 30))
		}
	}
}

// printInfo tells a newcomer what to try next.
func (s *sandbox) printInfo(in info) {
	fmt.Print(`The sandbox runs: a control plane with 3 simulated Nodes, the CLB emulator,
clb-direct, and deploy/examples (Deployment and direct-access Service "echo").

Try:
`)
	w := tabwriter.NewWriter(os.Stdout, 0, 8, 2, ' ', 0)
	for _, line := range [][2]string{
		{"source " + s.rel(s.path(envFile)), "KUBECONFIG, TENCENTCLOUD_* and kubectl on PATH"},
		{"kubectl get svc echo -o wide", "EXTERNAL-IP is the CLB's VIP"},
		{"kubectl get pods -o wide", "the Pod IPs are the CLB's backends"},
		{fmt.Sprintf("curl http://%s:%d/", in.VIP, examplePort), "answered by an echo Pod, with its name"},
		{"kubectl scale deploy echo --replicas=5", "and watch the CLB follow:"},
	} {
		fmt.Fprintf(w, "  %s\t# %s\n", line[0], line[1])
	}
	w.Flush()
	fmt.Print(`  watch -n1 "curl -s http://$TENCENTCLOUD_ENDPOINT/admin/state | jq -c '.LoadBalancers[].Listeners[] | {Port, Backends: [.Backends[] | {IP, Port, Weight, Healthy}]}'"
  curl -s http://$TENCENTCLOUD_ENDPOINT/admin/state | python3 -m json.tool   # the whole CLB account

Logs:
`)
	for _, line := range [][2]string{
		{"clb-direct", s.rel(in.ControllerLog)},
		{"control plane", s.rel(in.LogDir) + "/{etcd,kube-apiserver,kube-controller-manager}.log"},
		{"CLB emulator", s.rel(in.LogDir) + "/clb-emulator-*.log"},
		{"this sandbox", s.rel(s.path(logFile))},
	} {
		fmt.Fprintf(w, "  %s\t%s\n", line[0], line[1])
	}
	w.Flush()
	fmt.Println("\nStop it with: make sandbox-down")
}

// rel shortens path relative to the working directory when it is below it.
func (s *sandbox) rel(path string) string {
	wd, err := os.Getwd()
	if err != nil {
		return path
	}
	if r, err := filepath.Rel(wd, path); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return path
}

// down stops the server: SIGTERM, so it tears everything down itself,
// then after 30s SIGKILL, whose children die with it (PDEATHSIG).
func (s *sandbox) down() error {
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	pid, ok := s.serving()
	if !ok {
		s.removeState()
		fmt.Println("No sandbox is running.")
		return nil
	}
	fmt.Printf("Stopping the sandbox (pid %d)...\n", pid)
	began := time.Now()
	_ = syscall.Kill(pid, syscall.SIGTERM)
	if !waitGone(pid, 30*time.Second) {
		fmt.Println("It did not stop in 30s; killing it.")
		// The server leads its own session and process group.
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		if !waitGone(pid, 5*time.Second) {
			return fmt.Errorf("pid %d survived SIGKILL", pid)
		}
	}
	s.removeState()
	fmt.Printf("Stopped in %s.\n", time.Since(began).Round(100*time.Millisecond))
	return nil
}

// stopServer is down without the lock and the messages, for "up" giving
// up on a server it waits for.
func (s *sandbox) stopServer(pid int) {
	_ = syscall.Kill(pid, syscall.SIGTERM)
	if !waitGone(pid, 30*time.Second) {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		waitGone(pid, 5*time.Second)
	}
	s.removeStateOf(pid)
}

func waitGone(pid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for isServer(pid) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
	return true
}

// status prints whether a sandbox runs and, if it is ready, its env.
func (s *sandbox) status() (bool, error) {
	pid, ok := s.serving()
	if !ok {
		fmt.Println("No sandbox is running. Start one with: make sandbox")
		return false, nil
	}
	in, err := s.readInfo()
	if err != nil {
		fmt.Printf("A sandbox is starting (pid %d); its progress is in %s\n", pid, s.rel(s.path(logFile)))
		return true, nil
	}
	data, err := os.ReadFile(s.path(envFile))
	if err != nil {
		return true, err
	}
	fmt.Printf("A sandbox is running (pid %d, started %s, ready in %s); echo's VIP is %s.\n\n%s:\n%s",
		pid, in.Started.Format(time.Kitchen), in.Ready.Sub(in.Started).Round(time.Second), in.VIP, s.rel(s.path(envFile)), data)
	return true, nil
}

// serve runs the sandbox in the foreground until SIGTERM or SIGINT.
func (s *sandbox) serve() error {
	began := time.Now()
	// ctx is the installation's lifetime (the control plane stops when it
	// is cancelled), so it is cancelled last, after the orderly stop. A
	// signal during start-up cancels it at once to abort a long build or
	// wait; once ready, a signal only starts the orderly stop.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	signalled, gotSignal := context.WithCancel(context.Background())
	go func() {
		<-sigs
		gotSignal()
	}()
	stopAbort := context.AfterFunc(signalled, cancel)
	logf := func(format string, args ...any) {
		fmt.Printf("[sandbox %s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
	}

	if pid, ok := s.serving(); ok && pid != os.Getpid() {
		return fmt.Errorf("a sandbox is already running (pid %d)", pid)
	}
	// Not the pid file: "up" may have written ours already, and removing
	// it even briefly would let another "up" start a second server.
	s.removeInfo()
	// Fresh logs every time, so they tell about this sandbox only.
	for _, d := range []string{"logs", "controllers"} {
		if err := os.RemoveAll(s.path(d)); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(s.path(pidFile), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return err
	}
	defer s.removeStateOf(os.Getpid())

	e, err := env.Start(ctx, env.Options{Dir: s.dir, Log: os.Stdout, Nodes: 3})
	if err != nil {
		return err
	}
	defer func() {
		logf("stopping the emulator, the Pod simulator and the control plane")
		e.Stop()
	}()
	logf("control plane, Pod simulator and emulator up in %s", time.Since(began).Round(100*time.Millisecond))

	// The cluster package installs a process-wide handler that, on SIGTERM
	// or SIGINT, stops the control plane and kills the process with the
	// signal: right for a test binary, but it would race the orderly stop
	// (controller first, exit 0). Now that the control plane runs, take
	// the signals back. Ignore, unlike Reset, leaves no instant in which
	// a signal would kill us.
	signal.Ignore(os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)

	phase := time.Now()
	ctl, err := e.StartController(ctx, env.ControllerOptions{})
	if err != nil {
		return err
	}
	defer func() {
		logf("stopping clb-direct")
		if err := ctl.Stop(10 * time.Second); err != nil {
			logf("clb-direct exited: %v", err)
		}
	}()
	logf("clb-direct ready in %s (log %s)", time.Since(phase).Round(100*time.Millisecond), ctl.LogPath)

	in := info{
		Pid: os.Getpid(), Started: began, Endpoint: e.Emulator.Addr,
		Kubeconfig: s.path(kubeconfigFile), ControllerLog: ctl.LogPath, LogDir: s.path("logs"),
	}
	kubectl, err := s.writeKubectl(ctx, e, in.Kubeconfig)
	if err != nil {
		return err
	}
	// kubectl, not env.ApplyManifests: the examples carry no namespace,
	// like any manifest meant for `kubectl apply`, and ApplyManifests does
	// not default it (the Deployment's create fails with 405). kubectl is
	// also what a user applies them with.
	apply := exec.CommandContext(ctx, kubectl, "apply", "-f", filepath.Join(s.repo, "deploy", "examples"))
	apply.Env = append(os.Environ(), "KUBECONFIG="+in.Kubeconfig)
	apply.Stdout, apply.Stderr = os.Stdout, os.Stdout
	if err := apply.Run(); err != nil {
		return fmt.Errorf("kubectl apply -f deploy/examples: %w", err)
	}
	phase = time.Now()
	logf("applied deploy/examples; waiting for Service %s/%s to get a VIP", exampleNamespace, exampleName)
	vip, err := waitForVIP(ctx, e, ctl, logf)
	if err != nil {
		return err
	}
	logf("VIP %s after %s; waiting for http://%s:%d/ to answer from the Pods", vip, time.Since(phase).Round(100*time.Millisecond), vip, examplePort)
	phase = time.Now()
	if err := waitForHTTP(ctx, fmt.Sprintf("http://%s:%d/", vip, examplePort), logf); err != nil {
		return err
	}
	logf("echo answers through the CLB after %s", time.Since(phase).Round(100*time.Millisecond))

	in.VIP = vip
	if err := s.writeEnv(e, in); err != nil {
		return err
	}
	in.Ready = time.Now()
	data, err := json.MarshalIndent(in, "", "  ")
	if err != nil {
		return err
	}
	// Written last, through a rename: whoever sees it sees everything.
	if err := writeFileAtomic(s.path(readyFile), append(data, '\n')); err != nil {
		return err
	}
	logf("ready in %s", in.Ready.Sub(began).Round(100*time.Millisecond))

	// From here on a signal no longer cancels ctx; if it already did, the
	// wait below returns at once.
	stopAbort()
	select {
	case <-signalled.Done():
	case <-ctl.Done():
		// Leave the rest running: the cluster, the emulator and the logs
		// are what one needs to find out why.
		logf("clb-direct exited unexpectedly (%v); its log %s ends with:\n%s", ctl.Err(), ctl.LogPath, env.Tail(ctl.LogPath, 30))
		<-signalled.Done()
	}
	logf("signal received; shutting down")
	return nil
}

// writeKubectl copies the admin kubeconfig to kubeconfigPath (the
// cluster's own lives in a temporary directory with a random name) and
// links the cached kubectl into _sandbox/bin, which env puts on PATH. It
// returns the link.
func (s *sandbox) writeKubectl(ctx context.Context, e *env.Env, kubeconfigPath string) (string, error) {
	kubeconfig, err := os.ReadFile(e.Cluster.KubeconfigPath())
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(kubeconfigPath, kubeconfig, 0o600); err != nil {
		return "", err
	}
	// Already built by env.Start: this only looks the path up.
	bins, err := cluster.EnsureBinaries(ctx, cluster.BuildOptions{Log: os.Stdout})
	if err != nil {
		return "", err
	}
	link := s.path("bin", "kubectl")
	_ = os.Remove(link)
	return link, os.Symlink(bins.Kubectl, link)
}

// writeEnv writes the env file.
func (s *sandbox) writeEnv(e *env.Env, in info) error {
	binDir := s.path("bin")
	var b strings.Builder
	fmt.Fprintf(&b, "# The clb-direct sandbox (pid %d). Use it with: source %s\n", in.Pid, s.path(envFile))
	for _, kv := range [][2]string{
		{"KUBECONFIG", in.Kubeconfig},
		{"TENCENTCLOUD_ENDPOINT", in.Endpoint},
		{"TENCENTCLOUD_SECRET_ID", e.Emulator.SecretID},
		{"TENCENTCLOUD_SECRET_KEY", e.Emulator.SecretKey},
		{"TENCENTCLOUD_REGION", e.Emulator.Region},
	} {
		fmt.Fprintf(&b, "export %s=%s\n", kv[0], shellQuote(kv[1]))
	}
	// Guarded so that sourcing it twice does not grow PATH.
	fmt.Fprintf(&b, "case \":$PATH:\" in *:%[1]s:*) ;; *) export PATH=%[1]s:\"$PATH\" ;; esac\n", shellQuote(binDir))
	return writeFileAtomic(s.path(envFile), []byte(b.String()))
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// waitForVIP waits until clb-direct has published the CLB's VIP in the
// echo Service's status, reporting progress every 15s.
func waitForVIP(ctx context.Context, e *env.Env, ctl *env.Controller, logf func(string, ...any)) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	lastReport := time.Now()
	for {
		svc, err := e.Admin.CoreV1().Services(exampleNamespace).Get(ctx, exampleName, metav1.GetOptions{})
		if err == nil {
			for _, ing := range svc.Status.LoadBalancer.Ingress {
				if ing.IP != "" {
					return ing.IP, nil
				}
			}
		}
		if time.Since(lastReport) >= 15*time.Second {
			lastReport = time.Now()
			logf("still waiting for the VIP (%s; Service: %v)", podsReady(ctx, e), err)
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("service %s/%s got no VIP: %w (%s); the clb-direct log %s ends with:\n%s",
				exampleNamespace, exampleName, ctx.Err(), podsReady(context.Background(), e), ctl.LogPath, env.Tail(ctl.LogPath, 30))
		case <-ctl.Done():
			return "", fmt.Errorf("clb-direct exited (%v); its log %s ends with:\n%s", ctl.Err(), ctl.LogPath, env.Tail(ctl.LogPath, 30))
		case <-tick.C:
		}
	}
}

// podsReady summarizes the echo Pods, for progress and failure messages.
func podsReady(ctx context.Context, e *env.Env) string {
	pods, err := e.Admin.CoreV1().Pods(exampleNamespace).List(ctx, metav1.ListOptions{
		LabelSelector: labels.Set{"app.kubernetes.io/name": exampleName}.String(),
	})
	if err != nil {
		return "Pods: " + err.Error()
	}
	ready := 0
	for _, p := range pods.Items {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				ready++
			}
		}
	}
	return fmt.Sprintf("%d/%d echo Pods ready", ready, len(pods.Items))
}

// waitForHTTP waits for 5 answers in a row from the Pods through the CLB
// (a Pod's answer carries X-Pod-Name): one lucky request could have hit
// the only backend registered so far.
func waitForHTTP(ctx context.Context, url string, logf func(string, ...any)) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	const want = 5
	streak := 0
	var last string
	lastReport := time.Now()
	for streak < want {
		last = get(ctx, client, url)
		if last == "" {
			streak++
		} else {
			streak = 0
		}
		if time.Since(lastReport) >= 15*time.Second {
			lastReport = time.Now()
			logf("still waiting for %s (last: %s)", url, last)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s does not answer from the Pods: %w (last: %s)", url, ctx.Err(), last)
		case <-time.After(200 * time.Millisecond):
		}
	}
	return nil
}

// get returns "" if url answered 200 from a Pod, else what went wrong.
func get(ctx context.Context, client *http.Client, url string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err.Error()
	}
	resp, err := client.Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	switch {
	case resp.StatusCode != http.StatusOK:
		return resp.Status
	case resp.Header.Get("X-Pod-Name") == "":
		return "200 without X-Pod-Name: not answered by a Pod"
	}
	return ""
}
