package coordinator

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/loomtrain/loom/api/loompb"
	"github.com/loomtrain/loom/internal/grpcauth"
	"github.com/loomtrain/loom/internal/grpcauth/authtest"
)

// newCA writes a throwaway CA certificate named name into dir.
func newCA(t *testing.T, dir, name string) *authtest.CA {
	t.Helper()
	ca, err := authtest.NewCA(dir, name)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// issue writes a certificate for 127.0.0.1 and localhost signed by ca,
// proving role (none if ""), and returns its certificate and key files.
func issue(t *testing.T, ca *authtest.CA, name string, role grpcauth.Role) (cert, key string) {
	t.Helper()
	l, err := ca.Issue(name, role, "")
	if err != nil {
		t.Fatal(err)
	}
	return l.Cert, l.Key
}

func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, dir, "ca")
	caPath := ca.Path
	srvCert, srvKey := issue(t, ca, "server", RoleNode)
	cliCert, cliKey := issue(t, ca, "client", RoleUser)
	strangerCA := newCA(t, dir, "stranger-ca").Path

	serverConf, err := TLSFiles{Cert: srvCert, Key: srvKey, CA: caPath}.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	c := newFakeCluster()
	fsm := NewFSM()
	r := c.add("n1", fsm)
	c.setLeader("n1")
	srv := NewServer(ServerConfig{NodeID: "n1", Raft: r, FSM: fsm, Logger: quietLogger})
	g := grpc.NewServer(append((&Auth{Certs: true, Logger: quietLogger}).ServerOptions(), grpc.Creds(credentials.NewTLS(serverConf)))...)
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
		cc, err := grpc.NewClient(lis.Addr().String(), DialOptions("", conf)...)
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
	cc, err := grpc.NewClient(lis.Addr().String(), DialOptions("", plain)...)
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
// node whose certificate another CA signed is refused, and so is any
// certificate of the CA that does not prove the node role (issue 16: a
// worker's or the CLI's certificate forced elections over TimeoutNow).
func TestPeerTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, dir, "ca")
	caPath := ca.Path
	aCert, aKey := issue(t, ca, "a", RoleNode)
	bCert, bKey := issue(t, ca, "b", RoleNode)
	xCert, xKey := issue(t, newCA(t, dir, "other-ca"), "x", RoleNode)
	wCert, wKey := issue(t, ca, "w", RoleWorker)
	uCert, uKey := issue(t, ca, "u", RoleUser)
	nCert, nKey := issue(t, ca, "n", "")
	handshake := func(server, client TLSFiles) error {
		sc, err := server.PeerConfig(nil)
		if err != nil {
			return err
		}
		cc, err := client.PeerConfig(nil)
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
	for _, c := range []struct{ name, cert, key string }{{"worker", wCert, wKey}, {"user", uCert, uKey}, {"role-less", nCert, nKey}} {
		err := handshake(TLSFiles{Cert: aCert, Key: aKey, CA: caPath}, TLSFiles{Cert: c.cert, Key: c.key, CA: caPath})
		if err == nil || !strings.Contains(err.Error(), "role") {
			t.Errorf("raft handshake from a %s certificate of the same CA = %v, want refused naming the role", c.name, err)
		}
		// And a node does not dial into one either.
		if err := handshake(TLSFiles{Cert: c.cert, Key: c.key, CA: caPath}, TLSFiles{Cert: aCert, Key: aKey, CA: caPath}); err == nil {
			t.Errorf("a node completed a raft handshake with a %s certificate as the server", c.name)
		}
	}
}
