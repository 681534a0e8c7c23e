package coordinator

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/loomtrain/loom/api/loompb"
)

// writeCert writes a certificate (signed by parent, or self-signed when
// parent is nil) and its key as PEM files and returns them.
func writeCert(t *testing.T, dir, name string, isCA bool, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: isCA,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:    []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent, parentKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	kb, _ := x509.MarshalECPrivateKey(key)
	cp, kp := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	os.WriteFile(cp, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(kp, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return cert, key, cp, kp
}

func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca, caKey, caPath, _ := writeCert(t, dir, "ca", true, nil, nil)
	_, _, srvCert, srvKey := writeCert(t, dir, "server", false, ca, caKey)
	_, _, cliCert, cliKey := writeCert(t, dir, "client", false, ca, caKey)
	_, _, strangerCA, _ := writeCert(t, dir, "stranger-ca", true, nil, nil)

	serverConf, err := TLSFiles{Cert: srvCert, Key: srvKey, CA: caPath}.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	c := newFakeCluster()
	fsm := NewFSM()
	r := c.add("n1", fsm)
	c.setLeader("n1")
	srv := NewServer(ServerConfig{NodeID: "n1", Raft: r, FSM: fsm, Logger: quietLogger})
	g := grpc.NewServer(append(AuthServerOptions(testToken), grpc.Creds(credentials.NewTLS(serverConf)))...)
	srv.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(lis)
	defer g.Stop()

	call := func(files TLSFiles) error {
		conf, err := files.ClientConfig()
		if err != nil {
			return err
		}
		cc, err := grpc.NewClient(lis.Addr().String(), DialOptions(testToken, conf)...)
		if err != nil {
			return err
		}
		defer cc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err = loompb.NewJobsClient(cc).ListJobs(ctx, &loompb.ListJobsRequest{})
		return err
	}
	for _, tc := range []struct {
		name  string
		files TLSFiles
		want  string // "" = success
	}{
		{"client cert signed by the CA", TLSFiles{Cert: cliCert, Key: cliKey, CA: caPath}, ""},
		{"server not trusted", TLSFiles{Cert: cliCert, Key: cliKey, CA: strangerCA}, "certificate"},
		{"no client key pair", TLSFiles{CA: caPath}, "mutual TLS needs a certificate, a key and a CA file"},
	} {
		err := call(tc.files)
		if tc.want == "" && err != nil {
			t.Errorf("%s: ListJobs = %v, want success", tc.name, err)
		}
		if tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: ListJobs = %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
	// A client without any certificate is refused by the server.
	plain, _ := TLSFiles{Cert: cliCert, Key: cliKey, CA: caPath}.ClientConfig()
	plain.Certificates = nil
	cc, err := grpc.NewClient(lis.Addr().String(), DialOptions(testToken, plain)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := loompb.NewJobsClient(cc).ListJobs(ctx, &loompb.ListJobsRequest{}); err == nil {
		t.Error("ListJobs without a client certificate succeeded, want refused")
	}
}

// TestPeerTLS: two nodes with PeerConfig complete a mutual handshake; a
// node whose certificate another CA signed is refused.
func TestPeerTLS(t *testing.T) {
	dir := t.TempDir()
	ca, caKey, caPath, _ := writeCert(t, dir, "ca", true, nil, nil)
	_, _, aCert, aKey := writeCert(t, dir, "a", false, ca, caKey)
	_, _, bCert, bKey := writeCert(t, dir, "b", false, ca, caKey)
	other, otherKey, _, _ := writeCert(t, dir, "other-ca", true, nil, nil)
	_, _, xCert, xKey := writeCert(t, dir, "x", false, other, otherKey)
	handshake := func(server, client TLSFiles) error {
		sc, err := server.PeerConfig()
		if err != nil {
			return err
		}
		cc, err := client.PeerConfig()
		if err != nil {
			return err
		}
		cc.ServerName = "localhost"
		ln, err := tls.Listen("tcp", "127.0.0.1:0", sc)
		if err != nil {
			return err
		}
		defer ln.Close()
		errs := make(chan error, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			errs <- c.(*tls.Conn).Handshake()
		}()
		c, err := tls.Dial("tcp", ln.Addr().String(), cc)
		if err != nil {
			<-errs
			return err
		}
		defer c.Close()
		// In TLS 1.3 the server checks the client's certificate after the
		// client's side is done: its verdict is what counts.
		return <-errs
	}
	if err := handshake(TLSFiles{Cert: aCert, Key: aKey, CA: caPath}, TLSFiles{Cert: bCert, Key: bKey, CA: caPath}); err != nil {
		t.Errorf("handshake between two nodes of the CA: %v", err)
	}
	if err := handshake(TLSFiles{Cert: aCert, Key: aKey, CA: caPath}, TLSFiles{Cert: xCert, Key: xKey, CA: caPath}); err == nil {
		t.Error("handshake with a node of another CA succeeded, want refused")
	}
}
