package consensus_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"log/slog"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loomtrain/loom/coordinator/consensus/localraft"
)

// mtlsConfig makes a CA and one certificate for "localhost" signed by it,
// usable both to serve and to dial, and requiring the peer's certificate.
func mtlsConfig(t *testing.T) *tls.Config {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "loom test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "coordinator"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS13,
	}
}

// Over mutual TLS a cluster elects, replicates and fails over; a node with a
// certificate from another CA never receives the log.
func TestMutualTLS(t *testing.T) {
	conf := mtlsConfig(t)
	var logs lockedBuf
	c, err := localraft.NewClusterWithOptions(t.TempDir(), 3, localraft.ClusterOptions{TLS: conf, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	want := applyN(t, c, "tls", 20)
	l := converge(t, c)
	checkState(t, c, want)

	c.TLS = mtlsConfig(t) // another CA
	i, err := c.AddNode()
	if err != nil {
		t.Fatal(err)
	}
	// The configuration change commits on the three good voters, but the
	// rogue node cannot complete a handshake with them.
	if err := c.Nodes[l].AddVoter(c.IDs[i], c.Addrs[i], wait); err != nil {
		t.Fatalf("AddVoter: %v", err)
	}
	time.Sleep(time.Second)
	if n := c.FSMs[i].(*localraft.KV).Len(); n != 0 {
		t.Fatalf("node with a foreign certificate holds %d keys, want 0", n)
	}
	// The refusal says whose certificate was rejected, and by whom.
	// The good nodes dial the rogue and refuse its certificate; the rogue
	// logs that its certificate was refused.
	if l := logs.String(); !strings.Contains(l, "TLS: this node rejected the certificate of raft peer localhost:") ||
		!strings.Contains(l, "rejected the certificate of this node's raft port") {
		t.Errorf("no node logged whose certificate its raft port rejected:\n%s", l[max(0, len(l)-3000):])
	}
	if err := c.Nodes[l].RemoveServer(c.IDs[i], wait); err != nil {
		t.Fatalf("RemoveServer: %v", err)
	}
	if err := c.Stop(i); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(l); err != nil {
		t.Fatal(err)
	}
	for k, v := range applyN(t, c, "after", 5) {
		want[k] = v
	}
	converge(t, c)
	checkState(t, c, want)
}

// lockedBuf is a log destination for concurrent writers.
type lockedBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
