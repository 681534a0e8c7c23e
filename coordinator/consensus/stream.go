package consensus

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
)

// streamLayer is a raft.StreamLayer over plain TCP whose Addr is the
// configured advertise address, which may be a DNS name. hashicorp's
// TCPStreamLayer insists on a *net.TCPAddr with an IP, so a StatefulSet pod
// would put its current IP into the Raft configuration and be unreachable
// after a reschedule; here the name lands in the configuration and is
// resolved at every dial.
type streamLayer struct {
	ln        net.Listener
	advertise advertiseAddr
}

var _ raft.StreamLayer = (*streamLayer)(nil)

// advertiseAddr is a net.Addr that prints a host:port verbatim.
type advertiseAddr string

func (a advertiseAddr) Network() string { return "tcp" }
func (a advertiseAddr) String() string  { return string(a) }

func (s *streamLayer) Accept() (net.Conn, error) { return s.ln.Accept() }
func (s *streamLayer) Close() error              { return s.ln.Close() }
func (s *streamLayer) Addr() net.Addr            { return s.advertise }

func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", string(address), timeout)
}

// listen binds bindAddr and works out the address to advertise: advertise
// as given, with a port of 0 replaced by the bound port; or, when advertise
// is empty, the bound address, which must then not be a wildcard.
func listen(bindAddr, advertise string) (*streamLayer, error) {
	ln, err := net.Listen("tcp", bindAddr)
	if err != nil {
		return nil, fmt.Errorf("consensus: BindAddr %q: %w", bindAddr, err)
	}
	return wrapListener(ln, advertise)
}

// wrapListener is listen on a listener already bound; it closes ln on error.
func wrapListener(ln net.Listener, advertise string) (*streamLayer, error) {
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
	return &streamLayer{ln: ln, advertise: advertiseAddr(adv)}, nil
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
		port = strconv.Itoa(bound.Port)
	}
	return net.JoinHostPort(host, port), nil
}
