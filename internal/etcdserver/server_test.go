package etcdserver

import (
	"context"
	"net"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func newClient(t *testing.T, s *Server) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: s.Endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("clientv3.New(%v): %v", s.Endpoints, err)
	}
	return cli
}

func TestStartPutGet(t *testing.T) {
	s := StartForTest(t)
	if len(s.Endpoints) != 1 || !strings.HasPrefix(s.Endpoints[0], "http://127.0.0.1:") {
		t.Fatalf("Endpoints = %v, want one http://127.0.0.1:PORT", s.Endpoints)
	}
	cli := newClient(t, s)
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatalf("Put(k, v): %v", err)
	}
	resp, err := cli.Get(ctx, "k")
	if err != nil {
		t.Fatalf("Get(k): %v", err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("Get(k) = %v, want [k=v]", resp.Kvs)
	}
}

// A server restarted on the same data dir and ports keeps its keys.
func TestRestartKeepsData(t *testing.T) {
	dir := t.TempDir()
	s1, err := Start(dir)
	if err != nil {
		t.Fatalf("Start(%s): %v", dir, err)
	}
	cli := newClient(t, s1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "persist", "yes"); err != nil {
		t.Fatalf("Put: %v", err)
	}
	cli.Close()
	if err := s1.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s1.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	s2, err := StartWithOptions(dir, Options{ClientAddr: s1.ClientAddr, PeerAddr: s1.PeerAddr})
	if err != nil {
		t.Fatalf("Start(%s) again on %s: %v", dir, s1.ClientAddr, err)
	}
	if s2.Endpoints[0] != s1.Endpoints[0] {
		t.Errorf("restarted Endpoints = %v, want %v", s2.Endpoints, s1.Endpoints)
	}
	defer s2.Close()
	cli2 := newClient(t, s2)
	defer cli2.Close()
	resp, err := cli2.Get(ctx, "persist")
	if err != nil {
		t.Fatalf("Get after restart: %v", err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "yes" {
		t.Fatalf("Get(persist) after restart = %v, want [persist=yes]", resp.Kvs)
	}
}

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

	s := StartForTest(t)
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

// Close leaves no goroutine of etcd's behind.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	s, err := StartWithOptions(t.TempDir(), Options{NoFsync: true})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	cli := newClient(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	if _, err := cli.Put(ctx, "a", "b"); err != nil {
		t.Fatalf("Put: %v", err)
	}
	cancel()
	cli.Close()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		t.Fatalf("%d goroutines after Close, %d before:\n%s", n, before, buf)
	}
}

func TestStartRejectsHalfFixedAddrs(t *testing.T) {
	_, err := StartWithOptions(t.TempDir(), Options{ClientAddr: "127.0.0.1:1"})
	if err == nil || !strings.Contains(err.Error(), "both ClientAddr and PeerAddr") {
		t.Fatalf("StartWithOptions(ClientAddr only) = %v, want an error naming both fields", err)
	}
}
