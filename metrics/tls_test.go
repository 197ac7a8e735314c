package metrics

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"clb-direct/internal/testcert"
)

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// scrape GETs the metrics over HTTPS, trusting only cert, on a new
// connection (so a new handshake), and returns the body and the
// certificate the server presented.
func scrape(t *testing.T, addr string, cert *x509.Certificate) (string, *x509.Certificate) {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	client := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
			DisableKeepAlives: true,
		},
	}
	resp, err := client.Get("https://" + addr + Path)
	if err != nil {
		t.Fatalf("GET over HTTPS: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET over HTTPS: %s: %s", resp.Status, body)
	}
	return string(body), resp.TLS.PeerCertificates[0]
}

func TestServeTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	first := testcert.Write(t, certFile, keyFile, "first", base)

	cfg, err := TLSConfig(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	reg := NewRegistry()
	NewLeaderGauge(reg).Set(1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr := freeAddr(t)
	if err := Serve(ctx, addr, reg, cfg); err != nil {
		t.Fatal(err)
	}

	body, served := scrape(t, addr, first)
	if !strings.Contains(body, "clbdirect_leader 1") {
		t.Errorf("HTTPS metrics lack clbdirect_leader 1:\n%s", body)
	}
	if !served.Equal(first) {
		t.Error("not serving the certificate of the files")
	}

	// Plain HTTP to the TLS port gets no metrics.
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + addr + Path)
	if err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK || strings.Contains(string(b), "clbdirect_leader") {
			t.Errorf("plain HTTP to the TLS port: %s, want no metrics:\n%s", resp.Status, b)
		}
	}

	// TLS older than 1.2 is refused.
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS11})
	if err == nil {
		conn.Close()
		t.Error("a TLS 1.1 handshake succeeded")
	}

	// The renewed certificate is served without a restart.
	second := testcert.Write(t, certFile, keyFile, "second", base.Add(time.Hour))
	if _, served := scrape(t, addr, second); !served.Equal(second) {
		t.Error("not serving the renewed certificate")
	}
	if bytes.Equal(first.Raw, second.Raw) {
		t.Fatal("the test wrote the same certificate twice")
	}
}

func TestServePlainHTTPWithoutTLSConfig(t *testing.T) {
	cfg, err := TLSConfig("", "")
	if err != nil || cfg != nil {
		t.Fatalf("TLSConfig without files: %v, %v; want nil, nil (plain HTTP)", cfg, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr := freeAddr(t)
	if err := Serve(ctx, addr, NewRegistry(), cfg); err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + addr + Path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("plain HTTP: %s, want 200", resp.Status)
	}
}

func TestTLSConfigWantsBothFilesAndAGoodPair(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	testcert.Write(t, certFile, keyFile, "a", time.Now())
	for _, tc := range []struct{ cert, key string }{{certFile, ""}, {"", keyFile}} {
		_, err := TLSConfig(tc.cert, tc.key)
		if err == nil || !strings.Contains(err.Error(), "--metrics-cert-file and --metrics-key-file go together") {
			t.Errorf("TLSConfig(%q, %q): %v, want the both-or-neither error", tc.cert, tc.key, err)
		}
	}
	if _, err := TLSConfig(filepath.Join(dir, "missing.crt"), keyFile); err == nil {
		t.Error("TLSConfig with a missing certificate: no error")
	}
}
