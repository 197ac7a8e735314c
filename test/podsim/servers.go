package podsim

import (
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
)

// startServers opens a server on ip for every container port: HTTP for
// TCP, an echo for UDP. A port that cannot be bound (two hostNetwork Pods
// on one Node, say) is logged and skipped, as a crash-looping container
// would leave it closed.
func (s *Simulator) startServers(key string, pod *corev1.Pod, ip netip.Addr) []closer {
	var servers []closer
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			addr := net.JoinHostPort(ip.String(), strconv.Itoa(int(p.ContainerPort)))
			var srv closer
			var err error
			switch p.Protocol {
			case corev1.ProtocolUDP:
				srv, err = s.serveUDP(key, pod.Name, addr)
			case corev1.ProtocolTCP, "":
				srv, err = s.serveHTTP(key, pod.Namespace, pod.Name, addr)
			default:
				continue // SCTP: nothing on this machine would talk to it
			}
			if err != nil {
				s.log.Error(err, "Cannot serve container port", "pod", klog.KObj(pod), "container", c.Name, "address", addr, "protocol", p.Protocol)
				continue
			}
			servers = append(servers, srv)
		}
	}
	return servers
}

// serveHTTP answers GET /healthz with 200 or 503 (see SetHealthy) and
// every other request with 200 and the Pod's name as the whole body, so a
// test can tell which backend a load balancer picked.
func (s *Simulator) serveHTTP(key, namespace, name, addr string) (closer, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	requests := s.counter(key)
	srv := &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Pod-Name", name)
			w.Header().Set("X-Pod-Namespace", namespace)
			w.Header().Set("Content-Type", "text/plain")
			if r.URL.Path == "/healthz" {
				if !s.healthy(key) {
					w.WriteHeader(http.StatusServiceUnavailable)
					w.Write([]byte("unhealthy"))
					return
				}
				w.Write([]byte("ok"))
				return
			}
			requests.Add(1)
			w.Write([]byte(name))
		}),
	}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error(err, "HTTP server stopped", "pod", key, "address", addr)
		}
	}()
	// Close, not Shutdown: a killed container drops its connections.
	return srv, nil
}

// serveUDP replies to every datagram with the Pod's name, and stays silent
// while the Pod is unhealthy (a UDP health check then times out).
func (s *Simulator) serveUDP(key, name, addr string) (closer, error) {
	conn, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, err
	}
	requests := s.counter(key)
	go func() {
		buf := make([]byte, 64*1024)
		for {
			_, from, err := conn.ReadFrom(buf)
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					s.log.Error(err, "UDP server stopped", "pod", key, "address", addr)
				}
				return
			}
			if !s.healthy(key) {
				continue
			}
			requests.Add(1)
			conn.WriteTo([]byte(name), from)
		}
	}()
	return conn, nil
}
