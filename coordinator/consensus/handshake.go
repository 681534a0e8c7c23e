package consensus

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// The node handshake authenticates a Raft connection with the nodes'
// shared token, both ways, without sending the token: each side proves it
// knows the token by a MAC over both sides' fresh nonces.
//
//	dialer   → acceptor: "LOOMRAFT" version(1) nonceD(32)
//	acceptor → dialer:   nonceA(32) HMAC(token, "acceptor" nonceD nonceA)
//	dialer   → acceptor: HMAC(token, "dialer" nonceD nonceA)
//
// A connection that fails it is closed before hashicorp/raft reads a byte
// of it, so a client without the token cannot send any Raft RPC
// (TimeoutNow included). Over TLS the handshake runs inside the TLS
// session.
const (
	handshakeMagic   = "LOOMRAFT"
	handshakeVersion = 1
	nonceLen         = 32
	// HandshakeTimeout bounds the handshake of one connection.
	HandshakeTimeout = 5 * time.Second
)

// ErrHandshake is the error of a connection that failed the node handshake.
var ErrHandshake = errors.New("raft connection refused: not a node (node token handshake failed)")

func mac(key []byte, label string, nd, na []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(label))
	h.Write(nd)
	h.Write(na)
	return h.Sum(nil)
}

// dialHandshake runs the dialer's side on c.
func dialHandshake(c net.Conn, key []byte) error {
	c.SetDeadline(time.Now().Add(HandshakeTimeout))
	defer c.SetDeadline(time.Time{})
	nd := make([]byte, nonceLen)
	if _, err := rand.Read(nd); err != nil {
		return err
	}
	hello := append([]byte(handshakeMagic), handshakeVersion)
	if _, err := c.Write(append(hello, nd...)); err != nil {
		return fmt.Errorf("raft handshake: %w", err)
	}
	resp := make([]byte, nonceLen+sha256.Size)
	if _, err := io.ReadFull(c, resp); err != nil {
		return fmt.Errorf("raft handshake with %s: %w (is it a node with the same node token?)", c.RemoteAddr(), err)
	}
	na, got := resp[:nonceLen], resp[nonceLen:]
	if !hmac.Equal(got, mac(key, "acceptor", nd, na)) {
		return fmt.Errorf("raft handshake with %s: the peer does not know the node token", c.RemoteAddr())
	}
	if _, err := c.Write(mac(key, "dialer", nd, na)); err != nil {
		return fmt.Errorf("raft handshake: %w", err)
	}
	return nil
}

// acceptHandshake runs the acceptor's side on c.
func acceptHandshake(c net.Conn, key []byte) error {
	c.SetDeadline(time.Now().Add(HandshakeTimeout))
	defer c.SetDeadline(time.Time{})
	hello := make([]byte, len(handshakeMagic)+1+nonceLen)
	if _, err := io.ReadFull(c, hello); err != nil {
		return fmt.Errorf("%w: %v", ErrHandshake, err)
	}
	if string(hello[:len(handshakeMagic)]) != handshakeMagic || hello[len(handshakeMagic)] != handshakeVersion {
		return fmt.Errorf("%w: no node hello", ErrHandshake)
	}
	nd := hello[len(handshakeMagic)+1:]
	na := make([]byte, nonceLen)
	if _, err := rand.Read(na); err != nil {
		return err
	}
	if _, err := c.Write(append(na, mac(key, "acceptor", nd, na)...)); err != nil {
		return fmt.Errorf("%w: %v", ErrHandshake, err)
	}
	got := make([]byte, sha256.Size)
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("%w: %v", ErrHandshake, err)
	}
	if !hmac.Equal(got, mac(key, "dialer", nd, na)) {
		return fmt.Errorf("%w: wrong MAC", ErrHandshake)
	}
	return nil
}

// authConn is an accepted connection whose first Read or Write runs the
// acceptor's handshake (and, over TLS, the TLS handshake with its role
// check): the accept loop never blocks on a slow or hostile client.
type authConn struct {
	net.Conn
	hs     func() error
	once   sync.Once
	err    error
	onFail func(error)
}

func (c *authConn) handshake() error {
	c.once.Do(func() {
		c.err = c.hs()
		if c.err != nil {
			c.onFail(c.err)
			c.Conn.Close()
		}
	})
	return c.err
}

func (c *authConn) Read(p []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *authConn) Write(p []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}
