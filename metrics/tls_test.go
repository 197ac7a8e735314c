package metrics

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeKeyPair writes a fresh self-signed certificate for 127.0.0.1 and its
// key, as a Secret volume holds them, and returns the certificate.
func writeKeyPair(t *testing.T, certFile, keyFile, name string, mtime time.Time) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for path, block := range map[string]*pem.Block{
		certFile: {Type: "CERTIFICATE", Bytes: der},
		keyFile:  {Type: "EC PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
		// A distinct modification time, as a Secret volume update gives,
		// however fast the test writes.
		if err := os.Chtimes(path, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

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
	first := writeKeyPair(t, certFile, keyFile, "first", base)

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
	second := writeKeyPair(t, certFile, keyFile, "second", base.Add(time.Hour))
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
	writeKeyPair(t, certFile, keyFile, "a", time.Now())
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
