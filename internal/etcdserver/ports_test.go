package etcdserver

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
)

// When another process takes a probed port before etcd binds it, Start
// retries with fresh ports.
func TestStartRetriesOnBindFailure(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	busy := taken.Addr().(*net.TCPAddr).Port
	calls := 0
	pickPorts = func(n int) ([]int, error) {
		calls++
		if calls == 1 {
			ps, err := freePorts(n)
			if err != nil {
				return nil, err
			}
			ps[0] = busy // the client port was "stolen"
			return ps, nil
		}
		return freePorts(n)
	}
	defer func() { pickPorts = freePorts }()

	s, err := StartWithOptions(t.TempDir(), Options{NoFsync: true})
	if err != nil {
		t.Fatalf("StartWithOptions: %v", err)
	}
	defer s.Close()
	if calls < 2 {
		t.Fatalf("pickPorts called %d times, want a retry after the bind failure", calls)
	}
	if strings.HasSuffix(s.Endpoints[0], ":"+strconv.Itoa(busy)) {
		t.Fatalf("Endpoints = %v, still on the taken port %d", s.Endpoints, busy)
	}
}

func TestIsAddrInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = net.Listen("tcp", l.Addr().String())
	if err == nil {
		t.Fatal("second Listen on the same port succeeded")
	}
	if !isAddrInUse(err) {
		t.Errorf("isAddrInUse(%v) = false, want true", err)
	}
	if isAddrInUse(context.DeadlineExceeded) {
		t.Errorf("isAddrInUse(%v) = true, want false", context.DeadlineExceeded)
	}
}
