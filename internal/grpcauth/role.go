package grpcauth

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
)

// Role is what a caller of the coordinator is allowed to be. Every caller
// proves exactly one role, with a certificate or a bearer token.
type Role string

// The four roles (see docs/coordinator.md, "Roles").
const (
	// Node is a coordinator node: it speaks Raft, forwards writes to the
	// leader (Cluster.Apply) and joins (Cluster.Join).
	Node Role = "node"
	// Worker is a worker agent: the Workers service, for its own job.
	Worker Role = "worker"
	// User manages jobs: the Jobs service.
	User Role = "user"
	// Admin manages jobs and changes the cluster's membership.
	Admin Role = "admin"
)

// Roles lists every role, in a fixed order.
var Roles = []Role{Node, Worker, User, Admin}

// Valid reports whether r is one of Roles.
func (r Role) Valid() bool {
	switch r {
	case Node, Worker, User, Admin:
		return true
	}
	return false
}

// TrustDomain is the SPIFFE trust domain of role URIs.
const TrustDomain = "loom"

// RoleURI is the URI SAN a certificate carries to prove role r:
// spiffe://loom/role/r. A worker's certificate may name its worker ID
// after the role, spiffe://loom/role/worker/ID, which binds the
// certificate to that worker: it may then speak only for that ID.
func RoleURI(r Role, id string) string {
	u := "spiffe://" + TrustDomain + "/role/" + string(r)
	if id != "" {
		u += "/" + url.PathEscape(id)
	}
	return u
}

// Identity is who a caller proved to be.
type Identity struct {
	Role Role
	// ID is the worker ID a worker's certificate is bound to; "" when the
	// credential does not name one (a worker token, or a certificate
	// naming only the role): such a worker may speak for any worker ID.
	ID string
	// Via is how the role was proven: "certificate", "token" or "open"
	// (authentication is off).
	Via string
	// Name describes the credential for logs and errors: the certificate's
	// subject, or "worker token".
	Name string
}

// CertIdentity reads the role from a certificate's URI SANs. Exactly one
// spiffe://loom/role/... URI must be present; other URIs are ignored.
func CertIdentity(c *x509.Certificate) (Identity, error) {
	var found []Identity
	for _, u := range c.URIs {
		if u.Scheme != "spiffe" || u.Host != TrustDomain {
			continue
		}
		rest, ok := strings.CutPrefix(u.EscapedPath(), "/role/")
		if !ok {
			continue
		}
		role, id, _ := strings.Cut(rest, "/")
		r := Role(role)
		if !r.Valid() {
			return Identity{}, fmt.Errorf("certificate %q names unknown role %q in %s (want one of node, worker, user, admin)", c.Subject.String(), role, u)
		}
		if id != "" {
			if r != Worker {
				return Identity{}, fmt.Errorf("certificate %q: %s: only worker certificates may name an ID", c.Subject.String(), u)
			}
			var err error
			if id, err = url.PathUnescape(id); err != nil || id == "" || strings.Contains(id, "/") {
				return Identity{}, fmt.Errorf("certificate %q: %s: bad worker ID", c.Subject.String(), u)
			}
		}
		found = append(found, Identity{Role: r, ID: id, Via: "certificate", Name: c.Subject.String()})
	}
	switch len(found) {
	case 0:
		return Identity{}, fmt.Errorf("certificate %q carries no role: it needs a URI SAN %s (node, worker, user or admin)", c.Subject.String(), RoleURI("<role>", ""))
	case 1:
		return found[0], nil
	}
	return Identity{}, fmt.Errorf("certificate %q carries %d role URIs; one certificate proves one role", c.Subject.String(), len(found))
}

// RolePools are optional per-role certificate authorities: a certificate
// claiming a role with a pool here must chain to that pool, not merely to
// the server's general trust bundle. A role without a pool accepts any
// certificate the TLS handshake verified.
type RolePools map[Role]*x509.CertPool

// Verify checks the role of a verified peer chain: leaf's role URI, and
// that leaf chains to the role's own CA when one is configured.
// intermediates are the other certificates the peer sent.
func (p RolePools) Verify(leaf *x509.Certificate, intermediates []*x509.Certificate) (Identity, error) {
	id, err := CertIdentity(leaf)
	if err != nil {
		return Identity{}, err
	}
	pool := p[id.Role]
	if pool == nil {
		return id, nil
	}
	inter := x509.NewCertPool()
	for _, c := range intermediates {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return Identity{}, fmt.Errorf("certificate %q claims role %s but is not signed by the %s CA: %v", leaf.Subject.String(), id.Role, id.Role, err)
	}
	return id, nil
}

// RequireRole returns a tls.Config.VerifyConnection callback that refuses
// the handshake unless the peer's certificate proves one of roles (and
// chains to that role's pool, if any). Both ends of a Raft connection use
// it with Node; a client uses it to check that it reached a coordinator.
func RequireRole(pools RolePools, roles ...Role) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("loom: the peer presented no certificate")
		}
		id, err := pools.Verify(cs.PeerCertificates[0], cs.PeerCertificates[1:])
		if err != nil {
			return fmt.Errorf("loom: %w", err)
		}
		for _, r := range roles {
			if id.Role == r {
				return nil
			}
		}
		return fmt.Errorf("loom: certificate %q proves role %s; this connection admits only %v", id.Name, id.Role, roles)
	}
}

// ReadSecret returns a secret from the file path (trailing newline and
// spaces trimmed) or, when path is empty, from the environment variable
// env. It refuses a file that other users may read, and an empty file.
// Secrets never come from the command line: ps shows it to everyone.
func ReadSecret(path, env string) (string, error) {
	if path == "" {
		return strings.TrimSpace(os.Getenv(env)), nil
	}
	st, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	if st.Mode().Perm()&0o007 != 0 {
		return "", fmt.Errorf("token file %s is readable by every user (mode %v); chmod o-rwx it", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("token file %s is empty", path)
	}
	return s, nil
}
