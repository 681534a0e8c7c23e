// Package authtest makes throwaway certificate authorities and role
// certificates (URI SAN spiffe://loom/role/ROLE[/ID]) for tests of the
// coordinator's roles. Test support only: fresh keys, valid for an hour.
package authtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/loomtrain/loom/internal/grpcauth"
)

// CA signs role certificates.
type CA struct {
	Path string // the CA certificate's PEM file
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	dir  string
}

// Leaf names the PEM files of a certificate and its key.
type Leaf struct{ Cert, Key string }

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	return n
}

// NewCA writes a fresh CA certificate named name into dir.
func NewCA(dir, name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("authtest: CA %s: %w", name, err)
	}
	cert, _ := x509.ParseCertificate(der)
	path := filepath.Join(dir, name+".pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return nil, err
	}
	return &CA{Path: path, cert: cert, key: key, dir: dir}, nil
}

// Issue writes a certificate named name for 127.0.0.1 and localhost
// (server and client use) proving role (none when role is ""), bound to
// worker ID id when id is non-empty.
func (ca *CA) Issue(name string, role grpcauth.Role, id string) (Leaf, error) {
	var uris []*url.URL
	if role != "" {
		u, err := url.Parse(grpcauth.RoleURI(role, id))
		if err != nil {
			return Leaf{}, err
		}
		uris = append(uris, u)
	}
	return ca.IssueURIs(name, uris...)
}

// IssueURIs is Issue with any URI SANs.
func (ca *CA) IssueURIs(name string, uris ...*url.URL) (Leaf, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Leaf{}, err
	}
	tmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, URIs: uris,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return Leaf{}, fmt.Errorf("authtest: leaf %s: %w", name, err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return Leaf{}, err
	}
	l := Leaf{Cert: filepath.Join(ca.dir, name+".pem"), Key: filepath.Join(ca.dir, name+"-key.pem")}
	if err := os.WriteFile(l.Cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return Leaf{}, err
	}
	if err := os.WriteFile(l.Key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return Leaf{}, err
	}
	return l, nil
}

// Cert returns the CA's certificate.
func (ca *CA) Cert() *x509.Certificate { return ca.cert }
