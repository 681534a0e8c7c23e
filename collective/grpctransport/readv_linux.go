package grpctransport

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// readvState is what frameConn's readv needs across the raw-conn callback,
// kept in the conn so that a Read allocates nothing.
type readvState struct {
	raw  syscall.RawConn
	iov  [2]unix.Iovec
	n    int
	err  error
	call func(fd uintptr) bool // c.readvOnce, bound once
}

// readvFunc returns the read function of the read side: one readv into p
// and the read-ahead buffer. Only a *net.TCPConn has a socket to readv
// from; for anything else (a *tls.Conn) it returns c.Conn.Read.
func (c *frameConn) readvFunc() func([]byte) (int, error) {
	tcp, ok := c.Conn.(*net.TCPConn)
	if !ok {
		return c.Conn.Read
	}
	raw, err := tcp.SyscallConn()
	if err != nil {
		return c.Conn.Read
	}
	c.rv.raw = raw
	c.rv.call = c.readvOnce
	return c.readv
}

// readv reads into p and, past it, into the read-ahead buffer (empty on
// entry): the bytes of one call return at most len(p) to the caller and
// keep the rest for the next Read.
func (c *frameConn) readv(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rv.iov[0].Base = &p[0]
	c.rv.iov[0].SetLen(len(p))
	c.rv.iov[1].Base = &c.la[0]
	c.rv.iov[1].SetLen(len(c.la))
	c.rv.n, c.rv.err = 0, nil
	err := c.rv.raw.Read(c.rv.call)
	c.rv.iov[0].Base = nil // do not keep p alive
	n := c.rv.n
	if err == nil {
		err = c.rv.err
	}
	if err != nil {
		return 0, &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
	}
	if n == 0 {
		return 0, io.EOF
	}
	if n > len(p) {
		c.laR, c.laW = 0, n-len(p)
		return len(p), nil
	}
	return n, nil
}

// readvOnce is the syscall.RawConn.Read callback: false asks to wait for
// the socket to become readable.
func (c *frameConn) readvOnce(fd uintptr) bool {
	for {
		n, _, e := unix.Syscall(unix.SYS_READV, fd, uintptr(unsafe.Pointer(&c.rv.iov[0])), uintptr(len(c.rv.iov)))
		switch e {
		case 0:
			c.rv.n = int(n)
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		default:
			c.rv.err = os.NewSyscallError("readv", e)
			return true
		}
	}
}
