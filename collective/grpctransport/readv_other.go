//go:build !linux

package grpctransport

// readvState is empty where frameConn has no readv.
type readvState struct{}

// readvFunc returns c.Conn.Read: the read side is Linux-only.
func (c *frameConn) readvFunc() func([]byte) (int, error) { return c.Conn.Read }
