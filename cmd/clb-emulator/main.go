// Command clb-emulator serves the Tencent Cloud CLB API (clb 2018-03-17)
// on a local port, as the official SDK speaks it, over an in-memory
// account, with real health checks and, optionally, a data plane that
// forwards traffic from each CLB's VIP to its targets. See package
// clb-direct/cloud/emulator.
//
//	clb-emulator --listen 127.0.0.1:9000 --secret-id AKIDtest --secret-key secret --region ap-guangzhou
//
// It prints "clb-emulator listening on <address>" once it serves, and exits
// cleanly on SIGTERM or SIGINT.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"k8s.io/klog/v2"

	"clb-direct/cloud/emulator"
)

// credentials collects repeated --extra-credential id:key flags.
type credentials map[string]string

func (c credentials) String() string {
	ids := make([]string, 0, len(c))
	for id := range c {
		ids = append(ids, id)
	}
	return strings.Join(ids, ",")
}

func (c credentials) Set(v string) error {
	id, key, ok := strings.Cut(v, ":")
	if !ok || id == "" || key == "" {
		return errors.New("want <secret-id>:<secret-key>")
	}
	c[id] = key
	return nil
}

// instances collects repeated --instance <instance-id>=<ip> flags.
type instances map[string]string

func (in instances) String() string {
	pairs := make([]string, 0, len(in))
	for _, id := range slices.Sorted(maps.Keys(in)) {
		pairs = append(pairs, id+"="+in[id])
	}
	return strings.Join(pairs, ",")
}

func (in instances) Set(v string) error {
	id, ip, ok := strings.Cut(v, "=")
	if !ok || id == "" {
		return errors.New("want <instance-id>=<ip>")
	}
	if _, err := netip.ParseAddr(ip); err != nil {
		return fmt.Errorf("%q is not an IP address", ip)
	}
	in[id] = ip
	return nil
}

func main() {
	if err := run(os.Args[1:]); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "clb-emulator:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("clb-emulator", flag.ContinueOnError)
	klog.InitFlags(fs)
	extra := credentials{}
	addrs := instances{}
	cfg := emulator.Config{}
	listen := fs.String("listen", "127.0.0.1:9000", "address of the API (and, unless --admin-listen is set, of the admin API under /admin/)")
	adminListen := fs.String("admin-listen", "", "also serve the admin API alone on this address")
	fs.StringVar(&cfg.SecretID, "secret-id", os.Getenv("TENCENTCLOUD_SECRET_ID"), "SecretId requests must be signed with (default $TENCENTCLOUD_SECRET_ID)")
	fs.StringVar(&cfg.SecretKey, "secret-key", os.Getenv("TENCENTCLOUD_SECRET_KEY"), "SecretKey requests must be signed with (default $TENCENTCLOUD_SECRET_KEY)")
	fs.StringVar(&cfg.Region, "region", os.Getenv("TENCENTCLOUD_REGION"), "the region served (default $TENCENTCLOUD_REGION)")
	fs.Var(extra, "extra-credential", "another accepted credential, <secret-id>:<secret-key> (repeatable)")
	fs.DurationVar(&cfg.TaskDuration, "task-duration", 200*time.Millisecond, "how long each asynchronous write runs")
	fs.Float64Var(&cfg.RateLimit, "rate-limit", 20, "requests per second each action admits, account-wide (0: unlimited)")
	fs.IntVar(&cfg.ListenersPerLoadBalancer, "listeners-per-lb", 50, "listener quota per CLB")
	fs.IntVar(&cfg.BackendsPerListener, "backends-per-listener", 200, "target quota per listener")
	fs.BoolVar(&cfg.HealthCheck, "health-check", true, "probe targets for real (TCP, HTTP, UDP); off, every target is healthy")
	fs.Float64Var(&cfg.HealthCheckTimeScale, "health-check-time-scale", 1, "multiplies every listener's health check interval and timeout (0.04 runs 5s as 200ms)")
	fs.BoolVar(&cfg.DataPlane, "data-plane", false, "forward traffic from VIP:port of each listener to its targets")
	fs.StringVar(&cfg.VIPNet, "vip-cidr", "127.2.0.0/16", "prefix the data plane's CLB VIPs come from")
	fs.DurationVar(&cfg.UDPIdleTimeout, "udp-idle-timeout", 60*time.Second, "a UDP flow through the data plane ends after this long without traffic")
	fs.Var(addrs, "instance", "the private IP of a CVM instance, <instance-id>=<ip>: targets registered by InstanceId are probed and forwarded to at <ip>:<port> (repeatable; see also POST /admin/instances)")
	fs.DurationVar(&cfg.ReconcileInterval, "reconcile-interval", 100*time.Millisecond, "how often health checks and the data plane follow changes to the account")
	fs.Float64Var(&cfg.ErrorRate, "error-rate", 0, "probability that any call fails with --error-code")
	fs.StringVar(&cfg.ErrorCode, "error-code", "InternalError", "error code of --error-rate failures")
	fs.DurationVar(&cfg.Latency, "latency", 0, "delay before each call is served")
	fs.Float64Var(&cfg.TaskFailureRate, "task-failure-rate", 0, "probability that a write's task fails")
	fs.Uint64Var(&cfg.Seed, "seed", 0, "seed of the fault randomness (0: fixed default)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	cfg.ExtraCredentials = extra
	cfg.Instances = addrs

	srv, err := emulator.New(cfg)
	if err != nil {
		return err
	}
	defer srv.Close()

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()
	if *adminListen != "" {
		aln, err := net.Listen("tcp", *adminListen)
		if err != nil {
			return err
		}
		go func() { errc <- srv.ServeAdmin(aln) }()
		klog.InfoS("Admin API listening", "address", aln.Addr())
	}
	klog.InfoS("CLB emulator serving", "address", ln.Addr(), "region", cfg.Region, "healthCheck", cfg.HealthCheck,
		"dataPlane", cfg.DataPlane, "taskDuration", cfg.TaskDuration, "rateLimit", cfg.RateLimit)
	// Signals are caught before the line scripts and tests wait for: one
	// that stops the emulator right after it must find the handler.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	fmt.Printf("clb-emulator listening on %s\n", ln.Addr())
	select {
	case <-ctx.Done():
		klog.InfoS("Shutting down")
		return srv.Close()
	case err := <-errc:
		return err
	}
}
