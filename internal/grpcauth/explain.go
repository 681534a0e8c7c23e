package grpcauth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"
)

// A TLS handshake that fails says little on its own: "remote error: tls:
// bad certificate" does not say whose certificate, or who refused it, and
// in TLS 1.3 a server's refusal of the client's certificate reaches the
// client only on its first read, after its own handshake succeeded. The
// functions here put both in the message: "TLS: coordinator 10.0.0.1:7001
// rejected the certificate of this worker ("CN=w1", issued by "CN=ca"):
// remote error: tls: bad certificate (its log says why)".

// ExplainClient rewrites err, a failure of a TLS connection that self
// (for example "this worker", "the loom CLI") opened to peer, to say whose
// certificate was rejected and by whom. conf is self's TLS config, for the
// certificate it presented. Errors that are not about certificates (a
// refused connection, a timeout) come back as they are.
func ExplainClient(err error, self, peer string, conf *tls.Config) error {
	if err == nil || strings.HasPrefix(err.Error(), "TLS: ") {
		return err
	}
	if remoteAlert(err) {
		if strings.Contains(err.Error(), "certificate required") {
			// A TLS 1.3 client sends only a certificate of a CA the
			// server names; it had none to send.
			return fmt.Errorf("TLS: %s rejected %s: it requires a certificate signed by a CA it trusts, and %s's (%s) is not, so none was sent: %w (its log says why)", peer, self, self, presented(conf), err)
		}
		return fmt.Errorf("TLS: %s rejected the certificate of %s (%s): %w (its log says why)", peer, self, presented(conf), err)
	}
	if theirs, ok := verifyFailure(err); ok {
		return fmt.Errorf("TLS: %s rejected the certificate of %s%s: %w", self, peer, theirs, err)
	}
	return err
}

// ExplainServer is ExplainClient for the accepting side: self accepted a
// connection from peer (its address) and the handshake failed.
func ExplainServer(err error, self, peer string, conf *tls.Config) error {
	if err == nil || strings.HasPrefix(err.Error(), "TLS: ") {
		return err
	}
	if remoteAlert(err) {
		return fmt.Errorf("TLS: client %s rejected the certificate of %s (%s): %w", peer, self, presented(conf), err)
	}
	if theirs, ok := verifyFailure(err); ok {
		return fmt.Errorf("TLS: %s rejected the certificate of client %s%s: %w", self, peer, theirs, err)
	}
	return err
}

// remoteAlert reports whether err is a TLS alert the peer sent: it
// refused something of ours. crypto/tls gives it as a *net.OpError with Op
// "remote error".
func remoteAlert(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" {
		return true
	}
	return strings.Contains(err.Error(), "remote error: tls:")
}

// verifyFailure reports whether err is this side refusing the peer's
// certificate, with " (a description of that certificate)" when err
// carries it.
func verifyFailure(err error) (string, bool) {
	var cv *tls.CertificateVerificationError
	if errors.As(err, &cv) {
		if len(cv.UnverifiedCertificates) > 0 {
			return " (" + describe(cv.UnverifiedCertificates[0]) + ")", true
		}
		return "", true
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "didn't provide a certificate"):
		return " (none presented)", true
	case strings.Contains(msg, "loom: certificate"), strings.Contains(msg, "loom: the peer presented no certificate"), strings.Contains(msg, "x509:"):
		// RequireRole's verdict names the certificate itself.
		return "", true
	}
	return "", false
}

// presented describes the certificate conf presents, or says there is none.
func presented(conf *tls.Config) string {
	if conf == nil || len(conf.Certificates) == 0 || len(conf.Certificates[0].Certificate) == 0 {
		return "none presented"
	}
	leaf := conf.Certificates[0].Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(conf.Certificates[0].Certificate[0]); err != nil {
			return "unparseable"
		}
	}
	return describe(leaf)
}

// describe names a certificate by subject, issuer and role.
func describe(c *x509.Certificate) string {
	s := fmt.Sprintf("%q, issued by %q", c.Subject.String(), c.Issuer.String())
	if id, err := CertIdentity(c); err == nil {
		s += ", role " + string(id.Role)
	}
	return s
}

// TLSCredentials are gRPC transport credentials for conf whose handshake
// and first-read failures are explained (ExplainClient, ExplainServer).
// self names this end in messages ("this worker", "coordinator c0"). A
// server's refusals are logged to log when it is non-nil: gRPC itself
// keeps them out of sight.
func TLSCredentials(conf *tls.Config, self string, log *slog.Logger) credentials.TransportCredentials {
	return &explained{TransportCredentials: credentials.NewTLS(conf), conf: conf, self: self, log: log}
}

type explained struct {
	credentials.TransportCredentials
	conf *tls.Config
	self string
	log  *slog.Logger
}

func (e *explained) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	peer := authority
	if a := raw.RemoteAddr(); a != nil && a.String() != authority {
		peer = fmt.Sprintf("%s (%s)", authority, a)
	}
	c, ai, err := e.TransportCredentials.ClientHandshake(ctx, authority, raw)
	if err != nil {
		return nil, nil, ExplainClient(err, e.self, peer, e.conf)
	}
	return ExplainReads(c, func(err error) error { return ExplainClient(err, e.self, peer, e.conf) }), ai, nil
}

// ExplainReads wraps a client's TLS connection so that an alert the peer
// sends after the handshake (in TLS 1.3, the server refusing the client's
// certificate) is passed through explain before Read returns it.
func ExplainReads(c net.Conn, explain func(error) error) net.Conn {
	return &explainedConn{Conn: c, explain: explain}
}

func (e *explained) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	c, ai, err := e.TransportCredentials.ServerHandshake(raw)
	if err != nil {
		err = ExplainServer(err, e.self, raw.RemoteAddr().String(), e.conf)
		if e.log != nil {
			e.log.Warn("refused a TLS connection", "from", raw.RemoteAddr().String(), "err", err)
		}
		return nil, nil, err
	}
	return c, ai, nil
}

func (e *explained) Clone() credentials.TransportCredentials {
	return &explained{TransportCredentials: e.TransportCredentials.Clone(), conf: e.conf, self: e.self, log: e.log}
}

// explainedConn explains read errors: in TLS 1.3 the server's refusal of
// the client's certificate arrives as an alert on the client's first read.
// A write that fails before anything was read may be the same refusal
// (the server closed the connection after its alert): the alert is looked
// for, and the error says what it may mean when none is found.
type explainedConn struct {
	net.Conn
	explain func(error) error
	mu      sync.Mutex
	read    bool // a read succeeded: the peer accepted us
}

func (c *explainedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil && remoteAlert(err) {
		err = c.explain(err)
	}
	if n > 0 {
		c.mu.Lock()
		c.read = true
		c.mu.Unlock()
	}
	return n, err
}

func (c *explainedConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if err == nil {
		return n, nil
	}
	c.mu.Lock()
	read := c.read
	c.mu.Unlock()
	if read {
		return n, err
	}
	// The alert, if the peer sent one, may still be waiting to be read.
	c.Conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	var b [1]byte
	if _, rerr := c.Conn.Read(b[:]); rerr != nil && remoteAlert(rerr) {
		return n, c.explain(rerr)
	}
	return n, fmt.Errorf("%w (the connection broke right after the TLS handshake, before the peer answered: it may have rejected this side's certificate; its log says why)", err)
}
