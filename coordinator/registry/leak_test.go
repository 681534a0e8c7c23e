package registry

import (
	"context"
	"runtime"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/loomtrain/loom/internal/etcdserver"
)

func checkGoroutines(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := runtime.NumGoroutine(); got > before {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d goroutines left, %d before:\n%s", got, before, buf[:runtime.Stack(buf, true)])
	}
}

// Registrations and watches end their goroutines when closed or cancelled.
func TestNoGoroutineLeaks(t *testing.T) {
	t.Run("fake", func(t *testing.T) {
		before := runtime.NumGoroutine()
		f := NewFake(nil)
		ctx, cancel := context.WithCancel(context.Background())
		_, ch, err := f.Watch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		r1, _ := f.Register(context.Background(), worker("a"), time.Second)
		rctx, rcancel := context.WithCancel(context.Background())
		r2, _ := f.Register(rctx, worker("b"), time.Second)
		r3, _ := f.Register(context.Background(), worker("c"), time.Second)
		r1.Close()
		rcancel()
		<-r2.Done()
		r3.Orphan()
		cancel()
		for range ch {
		}
		checkGoroutines(t, before)
	})
	t.Run("etcd", func(t *testing.T) {
		before := runtime.NumGoroutine()
		srv, err := etcdserver.StartWithOptions(t.TempDir(), etcdserver.Options{NoFsync: true})
		if err != nil {
			t.Fatal(err)
		}
		cli, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints, DialTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		_, ch, err := Watch(ctx, cli, "/p")
		if err != nil {
			t.Fatal(err)
		}
		r1, err := Register(context.Background(), cli, "/p", worker("a"), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		rctx, rcancel := context.WithCancel(context.Background())
		r2, err := Register(rctx, cli, "/p", worker("b"), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		r1.Close()
		rcancel()
		<-r2.Done()
		r2.Close()
		cancel()
		for range ch {
		}
		cli.Close()
		if err := srv.Close(); err != nil {
			t.Fatal(err)
		}
		checkGoroutines(t, before)
	})
}
