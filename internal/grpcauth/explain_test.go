package grpcauth_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	"google.golang.org/grpc/health/grpc_health_v1"

	"github.com/loomtrain/loom/internal/grpcauth"
	"github.com/loomtrain/loom/internal/grpcauth/authtest"
)

// syncBuf is a log destination the server goroutines write concurrently.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func tlsConf(t *testing.T, ca *authtest.CA, name string, role grpcauth.Role, trust *authtest.CA) *tls.Config {
	t.Helper()
	l, err := ca.Issue(name, role, "")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(l.Cert, l.Key)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(trust.Path)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, ClientCAs: pool,
		ClientAuth: tls.RequireAndVerifyClientCert, ServerName: "localhost", MinVersion: tls.VersionTLS13}
}

// TestTLSErrorsSayWhoRejectedWhat (issue 16 part 5): a refused handshake
// names, on the client and in the server's log, whose certificate was
// rejected and by whom, both when the server refuses the client (TLS 1.3
// delivers that on the client's first read) and when the client refuses
// the server.
func TestTLSErrorsSayWhoRejectedWhat(t *testing.T) {
	dir := t.TempDir()
	ca, err := authtest.NewCA(dir, "loom-ca")
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := authtest.NewCA(dir, "stranger-ca")
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuf
	srvConf := tlsConf(t, ca, "c0", grpcauth.Node, ca)
	srvConf.VerifyConnection = grpcauth.RequireRole(nil, grpcauth.Worker)
	g := grpc.NewServer(grpc.Creds(grpcauth.TLSCredentials(srvConf, "coordinator c0", slog.New(slog.NewTextHandler(&logs, nil)))))
	grpc_health_v1.RegisterHealthServer(g, health.NewServer())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(ln)
	defer g.Stop()
	addr := ln.Addr().String()

	call := func(conf *tls.Config) error {
		cc, err := grpc.NewClient(addr, grpcauth.DialOptions("", conf)...)
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err = grpc_health_v1.NewHealthClient(cc).Check(ctx, &grpc_health_v1.HealthCheckRequest{})
		return err
	}
	if err := call(tlsConf(t, ca, "w1", grpcauth.Worker, ca)); err != nil {
		t.Fatalf("a worker certificate of the CA: %v", err)
	}
	for _, tc := range []struct {
		name      string
		conf      *tls.Config
		client    []string // in the client's error
		serverLog []string
	}{
		{"the server refuses the client's certificate", tlsConf(t, stranger, "w9", grpcauth.Worker, ca),
			[]string{"TLS: localhost (" + addr + ") rejected this client: it requires a certificate signed by a CA it trusts", "CN=w9", "issued by", "CN=stranger-ca", "role worker", "its log says why"},
			[]string{"refused a TLS connection", "coordinator c0 rejected the certificate of client 127.0.0.1:", "none presented"}},
		{"the server refuses the client's role", tlsConf(t, ca, "u1", grpcauth.User, ca),
			[]string{"TLS: localhost (" + addr + ") rejected the certificate of this client", "CN=u1", "role user", "bad certificate", "its log says why"},
			[]string{"coordinator c0 rejected the certificate of client 127.0.0.1:", "proves role user; this connection admits only [worker]"}},
		{"the client refuses the server's certificate", tlsConf(t, ca, "w2", grpcauth.Worker, stranger),
			[]string{"TLS: this client rejected the certificate of localhost (" + addr + ")", "CN=c0", "issued by", "CN=loom-ca", "role node", "unknown authority"},
			[]string{"client 127.0.0.1:", "rejected the certificate of coordinator c0", "CN=c0"}},
	} {
		before := len(logs.String())
		err := call(tc.conf)
		if err == nil {
			t.Errorf("%s: the call succeeded", tc.name)
			continue
		}
		for _, want := range tc.client {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: client error %q lacks %q", tc.name, err, want)
			}
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			log := logs.String()[before:]
			missing := ""
			for _, want := range tc.serverLog {
				if !strings.Contains(log, want) {
					missing = want
				}
			}
			if missing == "" {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("%s: server log %q lacks %q", tc.name, log, missing)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}
