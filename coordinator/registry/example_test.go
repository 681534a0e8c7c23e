package registry_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/loomtrain/loom/coordinator/registry"
	"github.com/loomtrain/loom/internal/etcdserver"
)

// A worker registers in a real (embedded) etcd; the coordinator watches.
func Example() {
	dir, _ := os.MkdirTemp("", "registry-example")
	defer os.RemoveAll(dir)
	srv, err := etcdserver.Start(dir)
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	cli, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	workers, events, err := registry.Watch(ctx, cli, "/loom/workers")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("workers at start:", len(workers))

	reg, err := registry.Register(ctx, cli, "/loom/workers",
		registry.Worker{ID: "w1", Addr: "10.0.0.7:7100", Host: "gpu-7", GPUs: 8}, 10*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	ev := <-events
	fmt.Println(ev.Type, ev.Worker.ID, ev.Worker.Addr)
	reg.Close() // revokes the lease
	ev = <-events
	fmt.Println(ev.Type, ev.Worker.ID)
	// Output:
	// workers at start: 0
	// up w1 10.0.0.7:7100
	// down w1
}

// The Fake expires a dead worker's lease when its clock says so.
func ExampleFake() {
	clock := registry.NewManualClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	fake := registry.NewFake(clock)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, events, _ := fake.Watch(ctx)

	reg, _ := fake.Register(ctx, registry.Worker{ID: "w1", Addr: "w1:7100", GPUs: 1}, 10*time.Second)
	fmt.Println(<-events)
	reg.Orphan() // the process died: no more keepalives, nothing revoked

	clock.Advance(9 * time.Second)
	fake.Expire()
	fmt.Println("after 9s:", len(fake.Workers()), "worker(s)")
	clock.Advance(time.Second)
	fake.Expire()
	fmt.Println(<-events)
	// Output:
	// up w1
	// after 9s: 1 worker(s)
	// down w1
}
