package grpcauth

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCertIdentity(t *testing.T) {
	u := func(s string) *url.URL {
		p, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, c := range []struct {
		uris []string
		want Identity
		err  string
	}{
		{[]string{"spiffe://loom/role/node"}, Identity{Role: Node}, ""},
		{[]string{"spiffe://loom/role/worker/w-7"}, Identity{Role: Worker, ID: "w-7"}, ""},
		{[]string{"https://example.com/x", "spiffe://loom/role/admin"}, Identity{Role: Admin}, ""},
		{nil, Identity{}, "carries no role"},
		{[]string{"spiffe://other/role/node"}, Identity{}, "carries no role"},
		{[]string{"spiffe://loom/role/root"}, Identity{}, "unknown role"},
		{[]string{"spiffe://loom/role/user/u1"}, Identity{}, "only worker certificates may name an ID"},
		{[]string{"spiffe://loom/role/user", "spiffe://loom/role/admin"}, Identity{}, "2 role URIs"},
	} {
		cert := &x509.Certificate{Subject: pkix.Name{CommonName: "c"}}
		for _, s := range c.uris {
			cert.URIs = append(cert.URIs, u(s))
		}
		got, err := CertIdentity(cert)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("CertIdentity(%v) = %v, %v; want an error containing %q", c.uris, got, err, c.err)
			}
			continue
		}
		if err != nil || got.Role != c.want.Role || got.ID != c.want.ID || got.Via != "certificate" {
			t.Errorf("CertIdentity(%v) = %+v, %v; want %+v", c.uris, got, err, c.want)
		}
	}
	if got := RoleURI(Worker, "w 1"); got != "spiffe://loom/role/worker/w%201" {
		t.Errorf("RoleURI(worker, %q) = %q", "w 1", got)
	}
}

func TestReadSecret(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("LOOM_TEST_SECRET", " from-env\n")
	if s, err := ReadSecret("", "LOOM_TEST_SECRET"); err != nil || s != "from-env" {
		t.Errorf("ReadSecret(env) = %q, %v", s, err)
	}
	ok := filepath.Join(dir, "ok")
	os.WriteFile(ok, []byte("from-file\n"), 0o600)
	if s, err := ReadSecret(ok, "LOOM_TEST_SECRET"); err != nil || s != "from-file" {
		t.Errorf("ReadSecret(file) = %q, %v; the file wins over the environment", s, err)
	}
	open := filepath.Join(dir, "open")
	os.WriteFile(open, []byte("x"), 0o644)
	os.Chmod(open, 0o644)
	if _, err := ReadSecret(open, ""); err == nil || !strings.Contains(err.Error(), "readable by every user") {
		t.Errorf("ReadSecret(world-readable) = %v, want refused", err)
	}
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	if _, err := ReadSecret(empty, ""); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("ReadSecret(empty) = %v, want refused", err)
	}
}
