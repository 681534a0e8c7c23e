package etcdserver_test

import (
	"context"
	"github.com/loomtrain/loom/internal/etcdserver"
	"github.com/loomtrain/loom/internal/etcdserver/etcdservertest"
	"runtime"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func newClient(t *testing.T, s *etcdserver.Server) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: s.Endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("clientv3.New(%v): %v", s.Endpoints, err)
	}
	return cli
}

func TestStartPutGet(t *testing.T) {
	s := etcdservertest.Start(t)
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
	s1, err := etcdserver.Start(dir)
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

	s2, err := etcdserver.StartWithOptions(dir, etcdserver.Options{ClientAddr: s1.ClientAddr, PeerAddr: s1.PeerAddr})
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

// Close leaves no goroutine of etcd's behind.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	s, err := etcdserver.StartWithOptions(t.TempDir(), etcdserver.Options{NoFsync: true})
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
	_, err := etcdserver.StartWithOptions(t.TempDir(), etcdserver.Options{ClientAddr: "127.0.0.1:1"})
	if err == nil || !strings.Contains(err.Error(), "both ClientAddr and PeerAddr") {
		t.Fatalf("StartWithOptions(ClientAddr only) = %v, want an error naming both fields", err)
	}
}
