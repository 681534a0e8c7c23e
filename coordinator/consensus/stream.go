package consensus

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/loomtrain/loom/internal/grpcauth"
)

// streamLayer is a raft.StreamLayer over plain TCP whose Addr is the
// configured advertise address, which may be a DNS name. hashicorp's
// TCPStreamLayer insists on a *net.TCPAddr with an IP, so a StatefulSet pod
// would put its current IP into the Raft configuration and be unreachable
// after a reschedule; here the name lands in the configuration and is
// resolved at every dial.
//
// It also tracks its connections and closes them all in Close:
// hashicorp's NetworkTransport closes only its listener, which leaves the
// goroutines serving accepted connections, and the peers' goroutines serving
// pooled outbound ones, blocked in Read after shutdown.
type streamLayer struct {
	ln        net.Listener
	advertise advertiseAddr
	tls       *tls.Config
	key       []byte // the node token; nil: no handshake
	log       *slog.Logger

	mu     sync.Mutex
	conns  map[*trackedConn]struct{}
	closed bool
}

var _ raft.StreamLayer = (*streamLayer)(nil)

// advertiseAddr is a net.Addr that prints a host:port verbatim.
type advertiseAddr string

func (a advertiseAddr) Network() string { return "tcp" }
func (a advertiseAddr) String() string  { return string(a) }

func (s *streamLayer) Addr() net.Addr { return s.advertise }

func (s *streamLayer) Accept() (net.Conn, error) {
	c, err := s.ln.Accept()
	if err != nil {
		return nil, err
	}
	if s.tls == nil && s.key == nil {
		return s.track(c)
	}
	raw := c
	var tc *tls.Conn
	if s.tls != nil {
		tc = tls.Server(c, s.tls)
		c = tc
	}
	ac := &authConn{Conn: c, hs: func() error {
		if tc != nil {
			ctx, cancel := context.WithTimeout(context.Background(), HandshakeTimeout)
			defer cancel()
			if err := tc.HandshakeContext(ctx); err != nil {
				return fmt.Errorf("raft connection refused: %w", grpcauth.ExplainServer(err, "this node's raft port", raw.RemoteAddr().String(), s.tls))
			}
		}
		if s.key != nil {
			return acceptHandshake(c, s.key)
		}
		return nil
	}, onFail: func(err error) {
		s.log.Warn("refused a raft connection", "from", raw.RemoteAddr().String(), "err", err)
	}}
	return s.track(ac)
}

func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	var c net.Conn
	var err error
	if s.tls != nil {
		cfg := s.tls.Clone()
		if cfg.ServerName == "" {
			if host, _, herr := net.SplitHostPort(string(address)); herr == nil {
				cfg.ServerName = host
			}
		}
		c, err = tls.DialWithDialer(d, "tcp", string(address), cfg)
		explain := func(err error) error {
			return grpcauth.ExplainClient(err, "this node", "raft peer "+string(address), cfg)
		}
		if err != nil {
			return nil, explain(err)
		}
		c = grpcauth.ExplainReads(c, explain)
	} else {
		c, err = d.Dial("tcp", string(address))
	}
	if err != nil {
		return nil, err
	}
	if s.key != nil {
		if err := dialHandshake(c, s.key); err != nil {
			c.Close()
			return nil, err
		}
	}
	return s.track(c)
}

// Close closes the listener and every connection still open.
func (s *streamLayer) Close() error {
	s.mu.Lock()
	s.closed = true
	conns := s.conns
	s.conns = nil
	s.mu.Unlock()
	for c := range conns {
		c.Conn.Close()
	}
	return s.ln.Close()
}

func (s *streamLayer) track(c net.Conn) (net.Conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.Close()
		return nil, net.ErrClosed
	}
	if s.conns == nil {
		s.conns = map[*trackedConn]struct{}{}
	}
	tc := &trackedConn{Conn: c, s: s}
	s.conns[tc] = struct{}{}
	return tc, nil
}

// trackedConn forgets itself in its stream layer when closed.
type trackedConn struct {
	net.Conn
	s *streamLayer
}

func (c *trackedConn) Close() error {
	c.s.mu.Lock()
	delete(c.s.conns, c)
	c.s.mu.Unlock()
	return c.Conn.Close()
}

// listen binds bindAddr and works out the address to advertise: advertise
// as given, with a port of 0 replaced by the bound port; or, when advertise
// is empty, the bound address, which must then not be a wildcard.
func listen(bindAddr, advertise string, sec security) (*streamLayer, error) {
	ln, err := net.Listen("tcp", bindAddr)
	if err != nil {
		return nil, fmt.Errorf("consensus: BindAddr %q: %w", bindAddr, err)
	}
	return wrapListener(ln, advertise, sec)
}

// security is how the stream layer authenticates connections.
type security struct {
	tls *tls.Config
	key []byte
	log *slog.Logger
}

// wrapListener is listen on a listener already bound; it closes ln on error.
func wrapListener(ln net.Listener, advertise string, sec security) (*streamLayer, error) {
	tcp, ok := ln.Addr().(*net.TCPAddr)
	if !ok {
		ln.Close()
		return nil, fmt.Errorf("consensus: listener on %s is not TCP", ln.Addr())
	}
	adv, err := advertiseFor(tcp, advertise)
	if err != nil {
		ln.Close()
		return nil, err
	}
	if sec.log == nil {
		sec.log = slog.Default()
	}
	return &streamLayer{ln: ln, advertise: advertiseAddr(adv), tls: sec.tls, key: sec.key, log: sec.log}, nil
}

// advertiseFor is the pure part of listen.
func advertiseFor(bound *net.TCPAddr, advertise string) (string, error) {
	if advertise == "" {
		if bound.IP == nil || bound.IP.IsUnspecified() {
			return "", fmt.Errorf("consensus: AdvertiseAddr is empty and BindAddr %s is a wildcard address other nodes cannot dial; set AdvertiseAddr (e.g. the pod's DNS name)", bound)
		}
		return bound.String(), nil
	}
	host, port, err := net.SplitHostPort(advertise)
	if err != nil {
		return "", fmt.Errorf("consensus: AdvertiseAddr %q: want host:port: %w", advertise, err)
	}
	if host == "" {
		return "", fmt.Errorf("consensus: AdvertiseAddr %q: empty host", advertise)
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return "", fmt.Errorf("consensus: AdvertiseAddr %q: a wildcard address cannot be dialled", advertise)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return "", fmt.Errorf("consensus: AdvertiseAddr %q: bad port %q", advertise, port)
	}
	if p == 0 {
		p = bound.Port
	}
	port = strconv.Itoa(p) // normalised: "+70" and "070" become "70"
	return net.JoinHostPort(host, port), nil
}
