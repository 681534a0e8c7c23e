package testcert_test

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"testing"

	"github.com/loomtrain/loom/internal/testcert"
)

// TestIssueVerifies checks that a leaf verifies against its CA for
// 127.0.0.1 as both server and client, and not against another CA.
func TestIssueVerifies(t *testing.T) {
	dir := t.TempDir()
	ca, err := testcert.NewCA(dir, "ca")
	if err != nil {
		t.Fatal(err)
	}
	other, err := testcert.NewCA(dir, "other-ca")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue("node")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(leaf.Cert, leaf.Key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	pool := func(path string) *x509.CertPool {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		p := x509.NewCertPool()
		if !p.AppendCertsFromPEM(b) {
			t.Fatalf("%s: no certificate", path)
		}
		return p
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool(ca.Path), DNSName: "127.0.0.1", KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			t.Errorf("Verify(own CA, usage %v) = %v, want nil", usage, err)
		}
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool(other.Path), DNSName: "127.0.0.1"}); err == nil {
		t.Error("Verify(other CA) = nil, want an unknown-authority error")
	}
}
