// Package metrics serves clb-direct's Prometheus metrics: the registry the
// other packages register their collectors on, the /metrics endpoint, the
// leader gauge, and client-go's workqueue metrics (see
// NewWorkqueueProvider).
package metrics

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/klog/v2"

	"clb-direct/readiness"
)

// Namespace prefixes the names of clb-direct's own metrics.
const Namespace = "clbdirect"

// Path is where the metrics are served.
const Path = "/metrics"

// NewRegistry returns a registry holding the Go runtime and process
// collectors; the controller's own collectors are added by their packages.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// NewLeaderGauge registers clbdirect_leader: 1 while this replica leads
// (and so reconciles), 0 otherwise.
func NewLeaderGauge(reg prometheus.Registerer) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: Namespace,
		Name:      "leader",
		Help:      "1 while this replica holds the leader Lease and reconciles, 0 otherwise.",
	})
	reg.MustRegister(g)
	return g
}

// Handler serves the metrics of reg in the Prometheus exposition formats,
// and counts its own scrapes and errors in reg.
func Handler(reg *prometheus.Registry) http.Handler {
	return promhttp.InstrumentMetricHandler(reg, promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
}

// TLSConfig serves the metrics over HTTPS (TLS 1.2 or later) with the
// certificate and key in certFile and keyFile, re-read when they change (a
// renewed Secret is used without a restart). Neither given: nil, plain HTTP.
// One without the other is an error, as is a pair that does not load.
func TLSConfig(certFile, keyFile string) (*tls.Config, error) {
	switch {
	case certFile == "" && keyFile == "":
		return nil, nil
	case certFile == "" || keyFile == "":
		return nil, errors.New("--metrics-cert-file and --metrics-key-file go together: give both to serve the metrics over HTTPS, or neither for plain HTTP")
	}
	certs, err := readiness.NewCertificateReloader(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.GetCertificate}, nil
}

// Serve serves Handler(reg) at Path on addr until ctx is done, over HTTPS
// with tlsConfig (see TLSConfig) or plain HTTP when it is nil. It returns
// once the address is bound, so a port already in use fails the start.
func Serve(ctx context.Context, addr string, reg *prometheus.Registry, tlsConfig *tls.Config) error {
	mux := http.NewServeMux()
	mux.Handle(Path, Handler(reg))
	listener, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening for metrics on %s: %w", addr, err)
	}
	server := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, TLSConfig: tlsConfig}
	go func() {
		serve := server.Serve
		if tlsConfig != nil {
			serve = func(l net.Listener) error { return server.ServeTLS(l, "", "") }
		}
		if err := serve(listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
			klog.FromContext(ctx).Error(err, "Metrics server failed")
		}
	}()
	context.AfterFunc(ctx, func() { _ = server.Close() })
	return nil
}
